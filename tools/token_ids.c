/* Token ids from a token shard or from a text list of decimal ids, for
 * `vttt tokenizer decode` and `vttt lm --tokens`. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "token_ids.h"

static int read_shard(const char *path, vttt_token_buf *out) {
    vttt_token_shard *s;
    int err = vttt_token_shard_open(&s, path, NULL);
    if (err) return err;
    int64_t n = vttt_token_shard_count(s);
    int32_t *tmp = malloc((size_t)(n ? n : 1) * sizeof *tmp);
    err = tmp ? vttt_token_shard_read(s, 0, n, tmp) : VTTT_ENOMEM;
    if (!err) err = vttt_token_buf_append(out, tmp, (size_t)n);
    free(tmp);
    vttt_token_shard_close(&s);
    return err;
}

static int is_space(uint8_t c) { return c == ' ' || (c >= '\t' && c <= '\r'); }

/* Whitespace-separated decimal ids; stops at the first thing that is not
 * one, naming its byte offset. */
static int parse_ids(const char *path, const uint8_t *p, size_t n, vttt_token_buf *out) {
    int err = 0;
    for (size_t i = 0; !err && i < n;) {
        while (i < n && is_space(p[i])) i++;
        if (i == n) break;
        long long v = 0;
        size_t start = i;
        while (i < n && p[i] >= '0' && p[i] <= '9' && v <= INT32_MAX) v = 10 * v + (p[i++] - '0');
        if (i == start || v > INT32_MAX || (i < n && !is_space(p[i]))) {
            fprintf(stderr, "%s: byte %zu: expected a token id (a non-negative integer below 2^31)\n", path, start);
            return VTTT_EFORMAT;
        }
        int32_t id = (int32_t)v;
        err = vttt_token_buf_append(out, &id, 1);
    }
    return err;
}

int token_ids_read(const char *path, vttt_token_buf *out) {
    vttt_text_file f;
    int err = vttt_text_file_open(&f, path, NULL);
    if (err) return err;
    uint32_t magic = 0;
    for (int i = 0; i < 4 && f.n >= 4; i++) magic |= (uint32_t)f.data[i] << (8 * i);
    if (strcmp(path, "-") && (magic == VTTT_SHARD_MAGIC_U16 || magic == VTTT_SHARD_MAGIC_U32)) {
        vttt_text_file_close(&f);
        return read_shard(path, out);
    }
    err = parse_ids(path, f.data, f.n, out);
    vttt_text_file_close(&f);
    return err;
}
