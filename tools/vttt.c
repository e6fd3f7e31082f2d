/* The vttt command line: one subcommand per job. */
#include <stdio.h>
#include <string.h>

#include "cli.h"

static const cli_command commands[] = {
    {"help", "list the subcommands", cli_help},
    {"example", "run the built-in example: a TTT-MLP layer over a synthetic sequence, three ways", cli_example},
    {"bench", "benchmarks: `vttt bench ttt [--contexts LIST] [--kinds LIST] [--no-train] [--quick]`", cli_bench},
    {"version", "print the version", cli_version},
};

int cli_help(int argc, char **argv) {
    (void)argc;
    (void)argv;
    printf("usage: vttt <command> [options]\n\ncommands:\n");
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
        printf("  %-10s %s\n", commands[i].name, commands[i].help);
    return 0;
}

int cli_version(int argc, char **argv) {
    (void)argc;
    (void)argv;
    printf("vttt 0.1.0\n");
    return 0;
}

int main(int argc, char **argv) {
    if (argc < 2) {
        cli_help(0, NULL);
        return 2;
    }
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
        if (!strcmp(argv[1], commands[i].name)) return commands[i].run(argc - 1, argv + 1);
    fprintf(stderr, "vttt: unknown command '%s'; `vttt help` lists the commands\n", argv[1]);
    return 2;
}
