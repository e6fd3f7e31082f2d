/*
 * The training data: token shards found from a directory, a glob or a
 * file, laid end to end and cut into samples.
 */
#include <dirent.h>
#include <errno.h>
#include <glob.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "data_meta.h"
#include "ingest.h"
#include "train_internal.h"

struct train_data {
    vttt_logger log;
    int n;                    /* shards */
    vttt_token_shard **shards;
    int64_t *start;           /* (n + 1) first token of each shard in the whole */
    int len, stride;
    int64_t samples;
    int meta_vocab, meta_eot;
    int meta_tpf;             /* video: tokens per frame (0: text) */
    /* documents (train_data_use_docs): sample i is the doc_len[i] tokens
     * from doc_start[i] (and their targets), padded with -1 to len */
    int64_t *doc_start;       /* (samples) */
    int32_t *doc_len;         /* (samples) */
    int shift;
};

static int cmp_str(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

static int has_suffix(const char *s, const char *suf) {
    size_t n = strlen(s), k = strlen(suf);
    return n >= k && !strcmp(s + n - k, suf);
}

/* Appends a malloc'd copy of "dir/name" to the list. */
static int push(char ***list, int *n, const char *dir, const char *name) {
    char **l = realloc(*list, (size_t)(*n + 1) * sizeof *l);
    if (!l) return VTTT_ENOMEM;
    *list = l;
    size_t k = strlen(dir) + strlen(name) + 2;
    if (!(l[*n] = malloc(k))) return VTTT_ENOMEM;
    snprintf(l[*n], k, "%s%s%s", dir, *dir ? "/" : "", name);
    (*n)++;
    return VTTT_OK;
}

/* The directory's split_*.bin, or every *.bin when there are none. */
static int list_dir(const char *dir, const char *split, char ***list, int *n, const vttt_logger *lg) {
    for (int pass = 0; pass < 2 && *n == 0; pass++) {
        DIR *d = opendir(dir);
        if (!d) {
            vttt_log(lg, VTTT_LOG_ERROR, "%s: cannot open the directory: %s", dir, strerror(errno));
            return VTTT_EIO;
        }
        size_t k = strlen(split);
        struct dirent *e;
        while ((e = readdir(d))) {
            if (e->d_name[0] == '.' || !has_suffix(e->d_name, ".bin")) continue;
            if (pass == 0 && (strncmp(e->d_name, split, k) || e->d_name[k] != '_')) continue;
            if (push(list, n, dir, e->d_name)) {
                closedir(d);
                return VTTT_ENOMEM;
            }
        }
        closedir(d);
    }
    return VTTT_OK;
}

/* The shard paths of spec, sorted by name. */
static int find_shards(const char *spec, const char *split, char ***list, int *n, const vttt_logger *lg) {
    struct stat sb;
    int err = VTTT_OK;
    *list = NULL, *n = 0;
    if (stat(spec, &sb) == 0 && S_ISDIR(sb.st_mode)) {
        err = list_dir(spec, split, list, n, lg);
    } else if (stat(spec, &sb) == 0) {
        err = push(list, n, "", spec);
    } else {
        glob_t g;
        if (glob(spec, 0, NULL, &g) == 0) {
            for (size_t i = 0; i < g.gl_pathc && !err; i++) err = push(list, n, "", g.gl_pathv[i]);
        }
        globfree(&g);
    }
    if (!err && *n == 0) {
        vttt_log(lg, VTTT_LOG_ERROR, "%s: no token shards found (a directory of %s_*.bin or *.bin shards, a glob "
                 "pattern, or a shard file; `vttt ingest text` writes them)", spec, split);
        err = VTTT_EIO;
    }
    if (!err) qsort(*list, (size_t)*n, sizeof **list, cmp_str);
    return err;
}

/* vocab_size and eot from the meta.json that `vttt ingest text` writes
 * beside its shards, and tokens_per_frame from the one of `vttt encoder
 * encode` (0, -1 and 0 when there is none: llm.c's shards come without).
 * A meta.json that is there but unreadable or malformed is an error (logged
 * naming it), never taken for "text". */
static int read_meta(train_data *d, const char *shard, const vttt_logger *lg) {
    char path[4096];
    vttt_data_meta m;
    int err = vttt_data_meta_path(path, sizeof path, shard);
    if (err) {
        vttt_log(lg, VTTT_LOG_ERROR, "%s: the path of its meta.json is too long", shard);
        return err;
    }
    err = vttt_data_meta_read(&m, path, lg);
    if (err && err != VTTT_EOF) return err;
    d->meta_vocab = m.vocab_size, d->meta_eot = m.eot, d->meta_tpf = m.tokens_per_frame;
    return VTTT_OK;
}

/* Video shards hold whole frames, so that samples (which start at
 * multiples of the sequence length) start at frame boundaries. */
static int check_frames(const train_data *d, const vttt_logger *lg) {
    for (int i = 0; d->meta_tpf > 0 && i < d->n; i++) {
        int64_t k = vttt_token_shard_count(d->shards[i]);
        if (k % d->meta_tpf) {
            vttt_log(lg, VTTT_LOG_ERROR, "%s: %lld tokens are not a whole number of frames of %d tokens (meta.json's "
                     "tokens_per_frame); re-encode the video with `vttt encoder encode`",
                     vttt_token_shard_path(d->shards[i]), (long long)k, d->meta_tpf);
            return VTTT_EFORMAT;
        }
    }
    return VTTT_OK;
}

int train_data_open(train_data **out, const char *spec, const char *split, int len, int stride,
                    const vttt_logger *lg) {
    *out = NULL;
    char **paths = NULL;
    int n = 0, err = find_shards(spec, split, &paths, &n, lg);
    train_data *d = err ? NULL : calloc(1, sizeof *d);
    if (!err && !d) err = VTTT_ENOMEM;
    if (d) {
        if (lg) d->log = *lg;
        d->len = len, d->stride = stride;
        d->shards = calloc((size_t)n, sizeof *d->shards);
        d->start = calloc((size_t)n + 1, sizeof *d->start);
        if (!d->shards || !d->start) err = VTTT_ENOMEM;
        for (int i = 0; !err && i < n; i++) {
            if ((err = vttt_token_shard_open(&d->shards[i], paths[i], lg))) break;
            d->n = i + 1;
            d->start[i + 1] = d->start[i] + vttt_token_shard_count(d->shards[i]);
        }
        if (!err) err = read_meta(d, paths[0], lg);
        if (!err) err = check_frames(d, lg);
    }
    if (!err && d->start[n] < len) {
        vttt_log(lg, VTTT_LOG_ERROR, "%s: the shards hold %lld tokens, fewer than one sample of %d (sequence plus "
                 "target shift); use a shorter --seq or more data", spec, (long long)d->start[n], len);
        err = VTTT_EINVAL;
    }
    if (!err) d->samples = (d->start[n] - len) / stride + 1;
    for (int i = 0; i < n; i++) free(paths[i]);
    free(paths);
    if (err) {
        train_data_close(&d);
        return err;
    }
    *out = d;
    return VTTT_OK;
}

void train_data_close(train_data **dp) {
    if (!dp || !*dp) return;
    train_data *d = *dp;
    for (int i = 0; d->shards && i < d->n; i++) vttt_token_shard_close(&d->shards[i]);
    free(d->shards), free(d->start);
    free(d->doc_start), free(d->doc_len);
    free(d);
    *dp = NULL;
}

int64_t train_data_samples(const train_data *d) { return d->samples; }
int64_t train_data_tokens(const train_data *d) { return d->start[d->n]; }
int train_data_files(const train_data *d) { return d->n; }
int train_data_meta_vocab(const train_data *d) { return d->meta_vocab; }
int train_data_meta_eot(const train_data *d) { return d->meta_eot; }
int train_data_meta_tokens_per_frame(const train_data *d) { return d->meta_tpf; }

const char *train_data_file(const train_data *d, int i, int64_t *tokens) {
    if (tokens) *tokens = vttt_token_shard_count(d->shards[i]);
    return vttt_token_shard_path(d->shards[i]);
}

int64_t train_data_max_id(const train_data *d) {
    int64_t m = -1;
    for (int i = 0; i < d->n; i++) {
        int64_t k = vttt_token_shard_max_id(d->shards[i]);
        if (k > m) m = k;
    }
    return m;
}

int train_data_read_range(const train_data *d, int64_t pos, int64_t n, int32_t *out) {
    if (pos < 0 || n < 0 || pos + n > d->start[d->n]) return VTTT_EINVAL;
    if (n == 0) return VTTT_OK;
    int64_t end = pos + n;
    int f = 0;
    while (d->start[f + 1] <= pos) f++;
    while (pos < end) {
        int64_t take = (d->start[f + 1] < end ? d->start[f + 1] : end) - pos;
        int err = take > 0 ? vttt_token_shard_read(d->shards[f], pos - d->start[f], take, out) : VTTT_OK;
        if (err) return err;
        out += take, pos += take, f++;
    }
    return VTTT_OK;
}

int train_data_read(const train_data *d, int64_t i, int32_t *out) {
    if (i < 0 || i >= d->samples) return VTTT_EINVAL;
    if (!d->doc_start) return train_data_read_range(d, i * d->stride, d->len, out);
    int n = d->doc_len[i] + d->shift;
    for (int t = n; t < d->len; t++) out[t] = -1;
    return train_data_read_range(d, d->doc_start[i], n, out);
}

int train_data_sample_targets(const train_data *d, int64_t i) {
    return d->doc_start ? d->doc_len[i] : d->stride;
}

/* Appends the sample [start, start + n) to the document index (*cap:
 * its allocated length). */
static int push_sample(train_data *d, int64_t start, int n, int64_t *cap) {
    if (d->samples == *cap) {
        int64_t k = *cap ? 2 * *cap : 1024;
        int64_t *s = realloc(d->doc_start, (size_t)k * sizeof *s);
        if (s) d->doc_start = s;
        int32_t *l = s ? realloc(d->doc_len, (size_t)k * sizeof *l) : NULL;
        if (!l) return VTTT_ENOMEM;
        d->doc_len = l, *cap = k;
    }
    d->doc_start[d->samples] = start, d->doc_len[d->samples] = n;
    d->samples++;
    return VTTT_OK;
}

/* The pieces of at most seq tokens of the document [a, b), in order. */
static int push_doc(train_data *d, int64_t a, int64_t b, int seq, int64_t *cap) {
    int err = VTTT_OK;
    for (int64_t s = a; s < b && !err; s += seq) err = push_sample(d, s, (int)(b - s < seq ? b - s : seq), cap);
    return err;
}

int train_data_use_docs(train_data *d, int seq, int shift, int eot) {
    enum { CHUNK = 1 << 16 };
    int64_t N = d->start[d->n], last = N - shift, a = 0, cap = 0;   /* tokens before `last` have targets */
    int32_t *buf = malloc(CHUNK * sizeof *buf);
    int err = buf ? VTTT_OK : VTTT_ENOMEM;
    free(d->doc_start), free(d->doc_len);
    d->doc_start = NULL, d->doc_len = NULL, d->samples = 0, d->shift = shift;
    for (int64_t p0 = 0; p0 < last && !err; p0 += CHUNK) {
        int64_t k = last - p0 < CHUNK ? last - p0 : CHUNK;
        if ((err = train_data_read_range(d, p0, k, buf))) break;
        for (int64_t j = 0; j < k && !err; j++) {
            if (buf[j] != eot || p0 + j == a) continue;
            err = push_doc(d, a, p0 + j, seq, &cap);   /* a document ends where the next one's eot is */
            a = p0 + j;
        }
    }
    if (!err) err = push_doc(d, a, last, seq, &cap);
    free(buf);
    if (!err && d->samples == 0) err = VTTT_EINVAL;
    if (err) vttt_log(&d->log, VTTT_LOG_ERROR, "cannot cut the token shards into documents: %s", vttt_strerror(err));
    return err;
}

void train_sample_cut(const int32_t *s, int w0, int n, int shift, int32_t *tok, int32_t *tgt) {
    for (int t = 0; t < n; t++) {
        tok[t] = s[w0 + t] < 0 ? 0 : s[w0 + t];
        tgt[t] = s[w0 + t + shift];
    }
}
