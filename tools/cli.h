/* The vttt subcommands; each takes argv from its own name on and returns
 * the process exit status. */
#ifndef VTTT_CLI_H
#define VTTT_CLI_H
typedef struct {
    const char *name;
    const char *help;
    int (*run)(int argc, char **argv);
} cli_command;

int cli_help(int argc, char **argv);
int cli_version(int argc, char **argv);
int cli_example(int argc, char **argv);
int cli_bench(int argc, char **argv);
#endif
