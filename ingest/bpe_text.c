/* Text input for tokenizer tools: whole files, documents in them, and
 * documents as token ids. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "bpe_internal.h"

/* Reads a stream to its end into a malloc'd buffer. */
static int slurp_stream(vttt_text_file *f, FILE *in, const char *name, const vttt_logger *lg) {
    size_t cap = 1 << 20, n = 0;
    uint8_t *p = malloc(cap);
    while (p) {
        n += fread(p + n, 1, cap - n, in);
        if (n < cap) break;
        uint8_t *q = realloc(p, cap *= 2);
        if (!q) free(p);
        p = q;
    }
    if (!p) return VTTT_ENOMEM;
    if (ferror(in)) {
        vttt_log(lg, VTTT_LOG_ERROR, "%s: read failed: %s", name, strerror(errno));
        free(p);
        return VTTT_EIO;
    }
    f->data = f->base = p;
    f->n = n;
    return VTTT_OK;
}

int vttt_text_file_open(vttt_text_file *f, const char *path, const vttt_logger *lg) {
    memset(f, 0, sizeof *f);
    if (!strcmp(path, "-")) return slurp_stream(f, stdin, "standard input", lg);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    struct stat sb;
    if (fd < 0 || fstat(fd, &sb) != 0) {
        vttt_log(lg, VTTT_LOG_ERROR, "%s: cannot open: %s", path, strerror(errno));
        if (fd >= 0) close(fd);
        return VTTT_EIO;
    }
    int err = VTTT_OK;
    if (!S_ISREG(sb.st_mode)) {
        FILE *in = fdopen(fd, "rb");   /* a pipe or device: read it through */
        if (!in) close(fd);
        err = in ? slurp_stream(f, in, path, lg) : VTTT_EIO;
        if (in) fclose(in);
        return err;
    }
    if (sb.st_size > 0) {
        void *p = mmap(NULL, (size_t)sb.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
        if (p == MAP_FAILED) {
            vttt_log(lg, VTTT_LOG_ERROR, "%s: cannot map: %s", path, strerror(errno));
            err = VTTT_EIO;
        } else {
            f->data = f->base = p;
            f->n = f->base_n = (size_t)sb.st_size;
        }
    }
    close(fd);
    return err;
}

void vttt_text_file_close(vttt_text_file *f) {
    if (f->base_n) munmap(f->base, f->base_n);
    else free(f->base);
    memset(f, 0, sizeof *f);
}

/* Offset of the first "<|endoftext|>" in s[0..n), or n. */
static size_t find_eot(const uint8_t *s, size_t n) {
    const size_t m = sizeof VTTT_BPE_EOT_TEXT - 1;
    for (size_t i = 0; i + m <= n;) {
        const uint8_t *lt = memchr(s + i, '<', n - m + 1 - i);
        if (!lt) break;
        i = (size_t)(lt - s);
        if (!memcmp(s + i, VTTT_BPE_EOT_TEXT, m)) return i;
        i++;
    }
    return n;
}

static int is_space(uint8_t c) { return c == ' ' || (c >= '\t' && c <= '\r'); }

int vttt_text_next_document(const uint8_t *s, size_t n, size_t *pos, const uint8_t **doc, size_t *len) {
    while (*pos < n) {
        size_t start = *pos;
        size_t end = start + find_eot(s + start, n - start);
        *pos = end < n ? end + sizeof VTTT_BPE_EOT_TEXT - 1 : n;
        while (start < end && is_space(s[start])) start++;
        while (end > start && is_space(s[end - 1])) end--;
        if (end > start) {
            *doc = s + start;
            *len = end - start;
            return 1;
        }
    }
    return 0;
}

/* One document: its ids into buf, 1 MiB of text at a time, each part to fn. */
static int encode_document(vttt_bpe_encoder *e, vttt_token_buf *buf, const uint8_t *doc, size_t len,
                           vttt_text_ids_fn fn, void *user, int64_t d, size_t done) {
    int err = VTTT_OK;
    for (size_t off = 0; !err && off < len;) {
        size_t k = len - off < ((size_t)1 << 20) ? len - off : ((size_t)1 << 20);
        buf->n = 0;
        err = vttt_bpe_encoder_feed(e, doc + off, k, buf);
        off += k;
        if (!err && off == len) err = vttt_bpe_encoder_finish(e, buf);
        if (!err && buf->n) err = fn(user, d, done, buf->ids, buf->n);
    }
    return err;
}

int vttt_text_encode_documents(const vttt_bpe *bpe, const uint8_t *s, size_t n, vttt_text_ids_fn fn, void *user) {
    vttt_bpe_encoder *e = NULL;
    vttt_token_buf buf = {0};
    int32_t eot = vttt_bpe_eot(bpe);
    int err = vttt_bpe_encoder_init(&e, bpe);
    size_t pos = 0, len;
    const uint8_t *doc;
    for (int64_t d = 0; !err && vttt_text_next_document(s, n, &pos, &doc, &len); d++) {
        err = fn(user, d, pos, &eot, 1);
        if (!err) err = encode_document(e, &buf, doc, len, fn, user, d, pos);
    }
    vttt_token_buf_free(&buf);
    vttt_bpe_encoder_free(&e);
    return err;
}

static int append_ids(void *user, int64_t doc, size_t done, const int32_t *ids, size_t n) {
    (void)doc, (void)done;
    return vttt_token_buf_append(user, ids, n);
}

int vttt_text_encode(const vttt_bpe *bpe, const uint8_t *s, size_t n, vttt_token_buf *out) {
    return vttt_text_encode_documents(bpe, s, n, append_ids, out);
}
