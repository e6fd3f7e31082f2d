/*
 * The secret that signs stream snapshots: set on a predictor, read from a
 * key file. The key's bytes are never logged; copies are wiped before
 * they are freed.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/crypto.h>

#include "infer_internal.h"

int vttt_predictor_set_snapshot_key(vttt_predictor *p, const uint8_t *key, size_t n) {
    if (!p || (n && !key)) return VTTT_EINVAL;
    if (n && (n < VTTT_SNAPSHOT_KEY_MIN || n > VTTT_SNAPSHOT_KEY_MAX)) {
        vttt_log(&p->log, VTTT_LOG_ERROR, "snapshot key: %zu bytes; a key holds %d..%d bytes", n,
                 VTTT_SNAPSHOT_KEY_MIN, VTTT_SNAPSHOT_KEY_MAX);
        return VTTT_EINVAL;
    }
    uint8_t *k = NULL;
    if (n && !(k = malloc(n))) return VTTT_ENOMEM;
    if (n) memcpy(k, key, n);
    if (p->key) OPENSSL_cleanse(p->key, p->key_n);
    free(p->key);
    p->key = k;
    p->key_n = n;
    return VTTT_OK;
}

/* Reads exactly n bytes of fd into buf and checks that nothing follows. */
static int read_exact(int fd, uint8_t *buf, size_t n) {
    size_t got = 0;
    while (got < n) {
        ssize_t r = read(fd, buf + got, n - got);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) return -1;
        got += (size_t)r;
    }
    uint8_t extra;
    ssize_t r;
    while ((r = read(fd, &extra, 1)) < 0 && errno == EINTR) {}
    return r == 0 ? 0 : -1;
}

int vttt_snapshot_key_read(const char *path, uint8_t **key, size_t *n, const vttt_logger *lg) {
    if (!path || !key || !n) return VTTT_EINVAL;
    *key = NULL, *n = 0;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        vttt_log(lg, VTTT_LOG_ERROR, "%s: cannot open the snapshot key file: %s", path, strerror(errno));
        return VTTT_EIO;
    }
    struct stat sb;
    int err = VTTT_OK;
    if (fstat(fd, &sb) != 0 || !S_ISREG(sb.st_mode)) {
        vttt_log(lg, VTTT_LOG_ERROR, "%s: the snapshot key must be a regular file", path);
        err = VTTT_EINVAL;
    } else if (sb.st_size < VTTT_SNAPSHOT_KEY_MIN || sb.st_size > VTTT_SNAPSHOT_KEY_MAX) {
        vttt_log(lg, VTTT_LOG_ERROR, "%s: the snapshot key file holds %lld bytes; it must hold %d..%d (e.g. head -c 32 "
                 "/dev/urandom > %s)", path, (long long)sb.st_size, VTTT_SNAPSHOT_KEY_MIN, VTTT_SNAPSHOT_KEY_MAX, path);
        err = VTTT_EINVAL;
    }
    uint8_t *buf = err ? NULL : malloc((size_t)sb.st_size);
    if (!err && !buf) err = VTTT_ENOMEM;
    if (!err && read_exact(fd, buf, (size_t)sb.st_size) != 0) {
        vttt_log(lg, VTTT_LOG_ERROR, "%s: cannot read the snapshot key file whole (it changed while read?)", path);
        err = VTTT_EIO;
    }
    close(fd);
    if (err) {
        if (buf) OPENSSL_cleanse(buf, (size_t)sb.st_size);
        free(buf);
        return err;
    }
    if (sb.st_mode & (S_IRWXG | S_IRWXO))
        vttt_log(lg, VTTT_LOG_WARNING, "%s: the snapshot key file is readable by others (chmod 600 it)", path);
    *key = buf, *n = (size_t)sb.st_size;
    return VTTT_OK;
}
