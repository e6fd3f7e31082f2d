/*
 * tests/fuzz/fuzz.h — what the fuzz targets share. Each fuzz_<name>.c
 * defines LLVMFuzzerTestOneInput for one parser; it is linked either with
 * libFuzzer (build-fuzz, clang, tools/fuzz.sh) or with replay_main.c (the
 * normal build's fuzz_replay_<name> tests, which run the committed corpus
 * and regression inputs through the same function).
 */
#ifndef VTTT_FUZZ_H
#define VTTT_FUZZ_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include "ttt.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* A logger that drops every message: the parsers log each rejected input,
 * which would drown the fuzzer's own output. */
void fuzz_log_drop(void *user, int level, const char *msg);
#define FUZZ_QUIET ((vttt_logger){fuzz_log_drop, NULL, VTTT_LOG_ERROR})

/* An invariant of an accepted input. A failure aborts, which libFuzzer and
 * the replay both report as a crash with this message. */
#define FUZZ_CHECK(cond)                                                                    \
    do {                                                                                    \
        if (!(cond)) {                                                                      \
            fprintf(stderr, "%s:%d: fuzz check failed: %s\n", __FILE__, __LINE__, #cond);   \
            abort();                                                                        \
        }                                                                                   \
    } while (0)

/* Counts inputs the parser accepted: the replay requires the seed corpus
 * to hold at least one (a format change that leaves every seed refused
 * means the seeds must be made again, see make_corpus.c). */
void fuzz_accepted(void);
long fuzz_accepted_count(void);

#define FUZZ_PATH_MAX 1024
/* Writes data (size bytes) to the file `name` in this process's scratch
 * directory (made on the first call, removed at exit), for parsers that
 * only read files, and its path into path (FUZZ_PATH_MAX). Aborts when it
 * cannot write: that is the machine's fault, not the input's. */
void fuzz_file(char *path, const char *name, const uint8_t *data, size_t size);
/* The scratch directory itself (made on the first call). */
const char *fuzz_dir(void);

#endif
