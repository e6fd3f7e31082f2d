/* Where a video command finds its model and tokenizer: the ones named on
 * the command line, or the shipped general ones (models/video-S, its
 * tokenizer in models/video-S/encoder; see models/README.md). */
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "cli.h"

#ifndef VTTT_MODELS_DIR
#define VTTT_MODELS_DIR "models"
#endif

int cli_video_dirs(const char *cmd, const char **model, const char **encoder, int size, char *mbuf, char *ebuf,
                   size_t n) {
    if (!*model) {
        const char *root = getenv("VTTT_MODELS");
        snprintf(mbuf, n, "%s/video-%d", root && *root ? root : VTTT_MODELS_DIR, size ? size : 64);
        char cfg[4200];
        snprintf(cfg, sizeof cfg, "%s/config.json", mbuf);
        if (access(cfg, R_OK) != 0) {
            fprintf(stderr, "%s: no shipped video model for frames of %d (looked in %s; shipped: 64 and 128); give "
                    "--model DIR (and --encoder DIR), or make one with `vttt video fit`\n", cmd, size ? size : 64,
                    mbuf);
            return 2;
        }
        *model = mbuf;
    }
    if (!*encoder) {
        snprintf(ebuf, n, "%s/encoder", *model);
        *encoder = ebuf;
    }
    return 0;
}
