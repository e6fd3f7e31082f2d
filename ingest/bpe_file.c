/* The tokenizer file (format in bpe.h): atomic save, validating load. */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bpe_internal.h"
#include "token_shard.h"

#define BPE_MAGIC "vttt-bpe"
#define BPE_VERSION 1
#define BPE_PRETOK "vttt-bytes-v1"
#define BPE_MAX_FILE (256u << 20)   /* bytes; far above 4M merges */

int vttt_bpe_save(const vttt_bpe *bpe, const char *path, const vttt_logger *lg) {
    size_t cap = 512 + (size_t)bpe->n_merges * 24, k = 0;
    char *buf = malloc(cap);
    if (!buf) return VTTT_ENOMEM;
    k += (size_t)snprintf(buf + k, cap - k, "%s %d\npretokenizer %s %d\nvocab_size %d\nmerges %d\nendoftext %d\n",
                          BPE_MAGIC, BPE_VERSION, BPE_PRETOK, VTTT_BPE_MAX_PIECE, bpe->vocab_size, bpe->n_merges,
                          vttt_bpe_eot(bpe));
    for (int i = 0; i < bpe->n_merges; i++)
        k += (size_t)snprintf(buf + k, cap - k, "%d %d\n", (int)bpe->merges[2 * i], (int)bpe->merges[2 * i + 1]);
    uint64_t h = bpe_fnv1a(BPE_FNV_OFFSET, buf, k);
    k += (size_t)snprintf(buf + k, cap - k, "checksum %016llx\n", (unsigned long long)h);
    int err = vttt_file_write_atomic(path, buf, k, lg);
    free(buf);
    return err;
}

/* ---- loading ------------------------------------------------------------ */

typedef struct {
    const char *path;
    const char *p;        /* the file */
    size_t n, pos;        /* pos: start of the next line */
    int line;             /* number of the last line returned */
    const vttt_logger *lg;
} bpe_reader;

static int bad(const bpe_reader *r, const char *what) {
    vttt_log(r->lg, VTTT_LOG_ERROR, "%s: line %d: %s", r->path, r->line, what);
    return VTTT_EFORMAT;
}

/* The next line (without its '\n'); 0 at the end of the file. */
static int next_line(bpe_reader *r, const char **s, size_t *len) {
    if (r->pos >= r->n) return 0;
    const char *nl = memchr(r->p + r->pos, '\n', r->n - r->pos);
    *s = r->p + r->pos;
    *len = nl ? (size_t)(nl - *s) : r->n - r->pos;
    r->pos += *len + 1;
    r->line++;
    return 1;
}

/* A decimal number of at most 9 digits filling s[0..n). */
static int parse_num(const char *s, size_t n, int *out) {
    if (n == 0 || n > 9) return 0;
    int v = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9') return 0;
        v = 10 * v + (s[i] - '0');
    }
    *out = v;
    return 1;
}

/* Reads the line "<key> <number>". */
static int read_field(bpe_reader *r, const char *key, int *out) {
    const char *s;
    size_t n, k = strlen(key);
    char msg[160];
    if (!next_line(r, &s, &n)) return bad(r, "the file ends early (truncated?)");
    if (n <= k || memcmp(s, key, k) || s[k] != ' ' || !parse_num(s + k + 1, n - k - 1, out)) {
        snprintf(msg, sizeof msg, "expected \"%s <number>\"", key);
        return bad(r, msg);
    }
    return VTTT_OK;
}

/* The magic line, then the checksum line that ends the file. */
static int check_envelope(bpe_reader *r) {
    const char *s;
    size_t n;
    int version;
    const size_t km = sizeof BPE_MAGIC - 1;
    if (!next_line(r, &s, &n) || n <= km || memcmp(s, BPE_MAGIC " ", km + 1))
        return bad(r, "not a vttt BPE tokenizer file (it does not start with \"" BPE_MAGIC "\")");
    if (!parse_num(s + km + 1, n - km - 1, &version) || version != BPE_VERSION) {
        char msg[160];
        snprintf(msg, sizeof msg, "format version \"%.*s\" is not supported (this build reads version %d)",
                 (int)(n - km - 1 < 20 ? n - km - 1 : 20), s + km + 1, BPE_VERSION);
        return bad(r, msg);
    }
    /* "checksum " + 16 hex digits + "\n" */
    const size_t kc = 26;
    unsigned long long want;
    char hex[17];
    if (r->n < kc || r->p[r->n - 1] != '\n' || memcmp(r->p + r->n - kc, "checksum ", 9) ||
        (r->n > kc && r->p[r->n - kc - 1] != '\n')) {
        vttt_log(r->lg, VTTT_LOG_ERROR, "%s: the file does not end with its checksum line (truncated?)", r->path);
        return VTTT_EFORMAT;
    }
    memcpy(hex, r->p + r->n - 17, 16);
    hex[16] = 0;
    int digits = 1;
    for (int i = 0; i < 16; i++) digits = digits && isxdigit((unsigned char)hex[i]);
    want = strtoull(hex, NULL, 16);
    uint64_t got = bpe_fnv1a(BPE_FNV_OFFSET, r->p, r->n - kc);
    if (!digits || want != got) {
        vttt_log(r->lg, VTTT_LOG_ERROR, "%s: checksum mismatch: the file is corrupt or was edited", r->path);
        return VTTT_EFORMAT;
    }
    r->n -= kc;   /* the rest of the parse stops before the checksum */
    return VTTT_OK;
}

/* The header fields; *m is the number of merges. */
static int read_header(bpe_reader *r, int *m) {
    const char *s;
    size_t n;
    char want[64];
    int len = snprintf(want, sizeof want, "pretokenizer %s %d", BPE_PRETOK, VTTT_BPE_MAX_PIECE);
    if (!next_line(r, &s, &n)) return bad(r, "the file ends early (truncated?)");
    if (n != (size_t)len || memcmp(s, want, n))
        return bad(r, "unknown pre-tokenizer (this build has \"" BPE_PRETOK "\" with 128-byte pieces)");
    int vocab, eot, err;
    if ((err = read_field(r, "vocab_size", &vocab)) || (err = read_field(r, "merges", m)) ||
        (err = read_field(r, "endoftext", &eot)))
        return err;
    if (*m > VTTT_BPE_MAX_VOCAB - 257) return bad(r, "too many merges");
    if (vocab != 256 + *m + 1 || eot != vocab - 1)
        return bad(r, "vocab_size must be 256 + merges + 1 and endoftext vocab_size - 1");
    return VTTT_OK;
}

/* M lines "<a> <b>", each id below 256 + its line's merge index. */
static int read_merges(bpe_reader *r, int32_t *merges, int m) {
    for (int i = 0; i < m; i++) {
        const char *s, *sp;
        size_t n;
        int a, b;
        if (!next_line(r, &s, &n)) return bad(r, "fewer merge lines than the header says (truncated?)");
        if (!(sp = memchr(s, ' ', n)) || !parse_num(s, (size_t)(sp - s), &a) ||
            !parse_num(sp + 1, n - (size_t)(sp - s) - 1, &b))
            return bad(r, "expected a merge \"<id> <id>\"");
        if (a >= 256 + i || b >= 256 + i) {
            char msg[160];
            snprintf(msg, sizeof msg, "merge %d joins ids %d and %d, but only ids below %d exist then", i, a, b,
                     256 + i);
            return bad(r, msg);
        }
        merges[2 * i] = a;
        merges[2 * i + 1] = b;
    }
    const char *s;
    size_t n;
    if (next_line(r, &s, &n)) return bad(r, "unexpected line after the merges");
    return VTTT_OK;
}

int vttt_bpe_parse(vttt_bpe **out, const char *data, size_t n, const char *name, const vttt_logger *lg) {
    *out = NULL;
    bpe_reader r = {name, data, n, 0, 0, lg};
    int32_t *merges = NULL;
    int m = 0, err;
    if (!(err = check_envelope(&r)) && !(err = read_header(&r, &m))) {
        /* every merge line takes at least 4 bytes ("a b\n"): no allocation
         * beyond what the file can hold */
        if ((size_t)m > (r.pos < r.n ? r.n - r.pos : 0) / 4) return bad(&r, "fewer merge lines than the header says (truncated?)");
        merges = malloc((size_t)(m ? m : 1) * 2 * sizeof *merges);
        err = merges ? read_merges(&r, merges, m) : VTTT_ENOMEM;
    }
    if (!err && (err = vttt_bpe_from_merges(out, merges, m, lg)) == VTTT_EFORMAT)
        vttt_log(lg, VTTT_LOG_ERROR, "%s: the merges do not form a valid tokenizer", name);
    free(merges);
    return err;
}

int vttt_bpe_load(vttt_bpe **out, const char *path, const vttt_logger *lg) {
    *out = NULL;
    char *data = NULL;
    size_t n = 0;
    int err = vttt_file_read_all(path, BPE_MAX_FILE, &data, &n, lg);
    if (!err) err = vttt_bpe_parse(out, data, n, path, lg);
    free(data);
    return err;
}
