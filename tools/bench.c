#include <stdio.h>
#include "cli.h"
int cli_bench(int argc, char **argv) { (void)argc; (void)argv; fprintf(stderr, "todo\n"); return 1; }
