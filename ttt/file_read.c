/* Whole-file reads for the small documents every stage reads (JSON files,
 * tokenizer files): regular files only, read to the end, with a cap. */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "ttt.h"

/* "a FIFO", "a directory", ... for the not-a-regular-file message. */
static const char *file_kind(mode_t m) {
    if (S_ISDIR(m)) return "a directory";
    if (S_ISFIFO(m)) return "a FIFO";
    if (S_ISCHR(m)) return "a character device";
    if (S_ISBLK(m)) return "a block device";
    if (S_ISSOCK(m)) return "a socket";
    return "not a regular file";
}

/* Reads fd to its end (at most max + 1 bytes, so that a file larger than
 * max is noticed even when it grew after fstat) into *buf. */
static int read_fd(int fd, size_t hint, size_t max, char **buf, size_t *n) {
    size_t cap = (hint < max ? hint : max) + 1, len = 0;
    char *b = malloc(cap + 1);
    if (!b) return VTTT_ENOMEM;
    for (;;) {
        if (len == cap) {
            size_t grow = cap > max / 2 ? max + 1 : 2 * cap;
            if (len > max) break;
            char *nb = realloc(b, grow + 1);
            if (!nb) return free(b), VTTT_ENOMEM;
            b = nb, cap = grow;
        }
        ssize_t k = read(fd, b + len, cap - len);
        if (k < 0 && errno == EINTR) continue;
        if (k < 0) return free(b), VTTT_EIO;
        if (k == 0) break;
        len += (size_t)k;
    }
    b[len] = '\0';
    *buf = b, *n = len;
    return VTTT_OK;
}

int vttt_file_read_all(const char *path, size_t max_bytes, char **out, size_t *n, const vttt_logger *lg) {
    *out = NULL, *n = 0;
    /* O_NONBLOCK: opening a FIFO nobody writes to would otherwise block. */
    int fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
    struct stat st;
    if (fd < 0 || fstat(fd, &st) != 0) {
        vttt_log(lg, VTTT_LOG_ERROR, "%s: cannot open: %s", path, strerror(errno));
        if (fd >= 0) close(fd);
        return VTTT_EIO;
    }
    if (!S_ISREG(st.st_mode)) {
        vttt_log(lg, VTTT_LOG_ERROR, "%s: %s, not a regular file", path, file_kind(st.st_mode));
        close(fd);
        return VTTT_EIO;
    }
    int err = (uint64_t)st.st_size > max_bytes ? VTTT_EFORMAT : read_fd(fd, (size_t)st.st_size, max_bytes, out, n);
    close(fd);
    if (!err && *n > max_bytes) free(*out), *out = NULL, err = VTTT_EFORMAT;
    if (err == VTTT_EFORMAT)
        vttt_log(lg, VTTT_LOG_ERROR, "%s: larger than the limit of %zu bytes", path, max_bytes);
    else if (err == VTTT_EIO)
        vttt_log(lg, VTTT_LOG_ERROR, "%s: read failed: %s", path, strerror(errno));
    return err;
}
