/* `vttt ingest <kind> ...`: the ingestion jobs, one per kind of input. */
#include <stdio.h>
#include <string.h>

#include "cli.h"

int cli_ingest(int argc, char **argv) {
    if (argc >= 2 && !strcmp(argv[1], "video")) return cli_ingest_video(argc - 1, argv + 1);
    if (argc >= 2 && !strcmp(argv[1], "text")) return cli_ingest_text(argc - 1, argv + 1);
    fprintf(stderr,
            "usage: vttt ingest video --out DIR [options] FILES... | --list FILE   (video files -> frame shards)\n"
            "       vttt ingest text ...                                        (text -> token shards)\n"
            "`vttt ingest video --help` and `vttt ingest text --help` list the options.\n");
    return argc >= 2 && (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h")) ? 0 : 2;
}
