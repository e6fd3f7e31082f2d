/*
 * The secret that signs stream snapshots: set on a predictor, read from a
 * key file. The key's bytes are never logged; copies are wiped before
 * they are freed.
 */
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>

#include "infer_internal.h"
#include "token_shard.h" /* vttt_file_read_all */

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

int vttt_snapshot_key_read(const char *path, uint8_t **key, size_t *n, const vttt_logger *lg) {
    if (!path || !key || !n) return VTTT_EINVAL;
    *key = NULL, *n = 0;
    char *buf = NULL;
    size_t len = 0;
    int err = vttt_file_read_all(path, VTTT_SNAPSHOT_KEY_MAX, &buf, &len, lg);
    if (err) {
        vttt_log(lg, VTTT_LOG_ERROR, "%s: cannot read the snapshot key file (a regular file of %d..%d bytes)", path,
                 VTTT_SNAPSHOT_KEY_MIN, VTTT_SNAPSHOT_KEY_MAX);
        return err;
    }
    if (len < VTTT_SNAPSHOT_KEY_MIN) {
        vttt_log(lg, VTTT_LOG_ERROR, "%s: the snapshot key file holds %zu bytes; it must hold %d..%d (e.g. head -c 32 "
                 "/dev/urandom > %s)", path, len, VTTT_SNAPSHOT_KEY_MIN, VTTT_SNAPSHOT_KEY_MAX, path);
        OPENSSL_cleanse(buf, len);
        free(buf);
        return VTTT_EINVAL;
    }
    *key = (uint8_t *)buf, *n = len;
    return VTTT_OK;
}
