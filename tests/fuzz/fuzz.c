/* The fuzz targets' scratch files (see fuzz.h). */
#define _XOPEN_SOURCE 700 /* nftw */
#include "fuzz.h"

#include <fcntl.h>
#include <ftw.h>
#include <string.h>
#include <unistd.h>

void fuzz_log_drop(void *user, int level, const char *msg) {
    (void)user, (void)level, (void)msg;
}

static long accepted;
void fuzz_accepted(void) { accepted++; }
long fuzz_accepted_count(void) { return accepted; }

/* The one scratch directory of the process: fuzz targets run one input at
 * a time in one process, and libFuzzer offers no context pointer. */
static char scratch[512];

static int remove_entry(const char *path, const struct stat *sb, int type, struct FTW *ftw) {
    (void)sb, (void)type, (void)ftw;
    remove(path);
    return 0;
}

/* Removes the scratch directory and everything in it (the stream snapshot
 * target keeps model directories there). */
static void scratch_remove(void) { nftw(scratch, remove_entry, 16, FTW_DEPTH | FTW_PHYS); }

const char *fuzz_dir(void) {
    if (scratch[0]) return scratch;
    const char *tmp = getenv("TMPDIR");
    snprintf(scratch, sizeof scratch, "%s/vttt-fuzz-XXXXXX", tmp && *tmp ? tmp : "/tmp");
    if (!mkdtemp(scratch)) {
        perror("fuzz: mkdtemp");
        abort();
    }
    atexit(scratch_remove);
    return scratch;
}

void fuzz_file(char *path, const char *name, const uint8_t *data, size_t size) {
    snprintf(path, FUZZ_PATH_MAX, "%s/%s", fuzz_dir(), name);
    /* a new file rather than a truncated one: ext4 flushes a file that was
     * truncated and rewritten when it is closed (auto_da_alloc) */
    unlink(path);
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0) {
        perror("fuzz: open");
        abort();
    }
    for (size_t off = 0; off < size;) {
        ssize_t k = write(fd, data + off, size - off);
        if (k <= 0) {
            perror("fuzz: write");
            abort();
        }
        off += (size_t)k;
    }
    close(fd);
}
