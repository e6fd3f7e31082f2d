/*
 * Replays files through a fuzz target's LLVMFuzzerTestOneInput without
 * libFuzzer (the normal build's fuzz_replay_<target> tests):
 *   fuzz_replay_<target> CORPUS_DIR [MORE_DIR_OR_FILE...]
 * CORPUS_DIR must hold at least one file that the parser accepts;
 * further directories may be missing (a target without regressions yet). A crash, a sanitizer report
 * or a failed FUZZ_CHECK ends the run, naming the input on stderr first.
 */
#define _POSIX_C_SOURCE 200809L
#include <dirent.h>
#include <string.h>
#include <sys/stat.h>

#include "fuzz.h"

static int replay_file(const char *path) {
    FILE *f = fopen(path, "rb");
    if (!f) {
        fprintf(stderr, "replay: cannot open %s\n", path);
        return -1;
    }
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    uint8_t *buf = malloc(n > 0 ? (size_t)n : 1);
    if (!buf || n < 0 || fread(buf, 1, (size_t)n, f) != (size_t)n) {
        fprintf(stderr, "replay: cannot read %s\n", path);
        fclose(f);
        free(buf);
        return -1;
    }
    fclose(f);
    fprintf(stderr, "replay: %s (%ld bytes)\n", path, n);
    LLVMFuzzerTestOneInput(buf, (size_t)n);
    free(buf);
    return 0;
}

static int cmp_names(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

/* Replays every regular file of dir (sorted); *count += how many. */
static int replay_dir(const char *dir, int *count) {
    DIR *d = opendir(dir);
    if (!d) return 1;
    char **names = NULL;
    size_t n = 0;
    for (struct dirent *e; (e = readdir(d));) {
        if (e->d_name[0] == '.') continue;
        char **more = realloc(names, (n + 1) * sizeof *names);
        if (!more || !(more[n] = strdup(e->d_name))) return -1;
        names = more, n++;
    }
    closedir(d);
    qsort(names, n, sizeof *names, cmp_names);
    int err = 0;
    for (size_t i = 0; i < n; i++) {
        char path[4096];
        struct stat sb;
        snprintf(path, sizeof path, "%s/%s", dir, names[i]);
        if (!err && stat(path, &sb) == 0 && S_ISREG(sb.st_mode)) {
            err = replay_file(path);
            ++*count;
        }
        free(names[i]);
    }
    free(names);
    return err;
}

int main(int argc, char **argv) {
    if (argc < 2) {
        fprintf(stderr, "usage: %s CORPUS_DIR [MORE_DIR_OR_FILE...]\n", argv[0]);
        return 2;
    }
    int total = 0;
    for (int i = 1; i < argc; i++) {
        int count = 0;
        struct stat sb;
        int err = stat(argv[i], &sb) == 0 && S_ISREG(sb.st_mode) ? (count = 1, replay_file(argv[i]))
                                                                  : replay_dir(argv[i], &count);
        if (err < 0 || (i == 1 && count == 0)) {
            fprintf(stderr, "replay: %s: %s\n", argv[i], err < 0 ? "read failed" : "no inputs (is the corpus there?)");
            return 1;
        }
        total += count;
        if (i == 1 && fuzz_accepted_count() == 0) {
            fprintf(stderr, "replay: the parser accepts none of the inputs in %s: the format changed? make the seeds "
                    "again (tests/fuzz/README.md)\n", argv[1]);
            return 1;
        }
    }
    printf("replayed %d inputs (%ld accepted): no crash\n", total, fuzz_accepted_count());
    return 0;
}
