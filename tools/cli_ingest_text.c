/* `vttt ingest text`: text files -> BPE token shards in llm.c's layout.
 *
 * Documents are the input files, further split at literal "<|endoftext|>"
 * and trimmed (see vttt_text_next_document). Each document is written as
 * <|endoftext|> followed by its tokens, as llm.c's data scripts do, so every
 * shard starts at a document boundary token. Documents go to the validation
 * split evenly spread: document d (counting from 0 over all inputs) is a
 * validation document when floor((d+1)*F) > floor(d*F); every document of
 * a --val-file goes to validation (and is not counted in d). Each split is cut
 * into shards of --shard-tokens tokens: DIR/train_000000.bin, ...,
 * DIR/val_000000.bin, ... (uint16 tokens when the vocabulary fits, else
 * uint32), and DIR/meta.json records what was written. */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "cli.h"
#include "ingest.h"

typedef struct {
    const char *dir, *name;   /* shards are dir/name_%06d.bin */
    int64_t per_shard;        /* tokens per shard */
    int token_size;
    vttt_token_shard_writer *w;
    int shards;               /* finished shards */
    int64_t tokens, docs;
    cJSON *list;              /* shard file names */
} split_out;

static void usage(void) {
    fprintf(stderr,
            "usage: vttt ingest text --tokenizer FILE --out DIR [--shard-tokens N (100000000)]\n"
            "                        [--val-fraction F] [--val-file FILE]... [--quiet] INPUT...\n"
            "  encodes text files (\"-\": stdin) into token shards DIR/train_NNNNNN.bin and\n"
            "  DIR/val_NNNNNN.bin (llm.c layout); each file, and each part of a file between\n"
            "  \"<|endoftext|>\" markers, is a document, written after an <|endoftext|> token.\n"
            "  --val-fraction F: the share of the INPUTs' documents that go to validation\n"
            "  (0.05; 0 when a --val-file is given); --val-file FILE (repeatable): held-out\n"
            "  text whose documents all go to validation, never to training\n");
}

static void shard_path(const split_out *s, int index, char *out, size_t size) {
    snprintf(out, size, "%s/%s_%06d.bin", s->dir, s->name, index);
}

static int close_shard(split_out *s) {
    char path[4096];
    shard_path(s, s->shards, path, sizeof path);
    int err = vttt_token_shard_writer_close(&s->w);
    if (!err) {
        const char *base = strrchr(path, '/');
        cJSON_AddItemToArray(s->list, cJSON_CreateString(base ? base + 1 : path));
        s->shards++;
    }
    return err;
}

/* Appends ids to the split, opening and closing shards as they fill. */
static int split_write(split_out *s, const int32_t *ids, size_t n) {
    int err = 0;
    while (!err && n > 0) {
        if (!s->w) {
            char path[4096];
            shard_path(s, s->shards, path, sizeof path);
            if ((err = vttt_token_shard_writer_open(&s->w, path, s->token_size, NULL))) break;
        }
        int64_t room = s->per_shard - vttt_token_shard_writer_count(s->w);
        size_t k = (int64_t)n < room ? n : (size_t)room;
        err = vttt_token_shard_writer_append(s->w, ids, k);
        ids += k, n -= k, s->tokens += (int64_t)k;
        if (!err && vttt_token_shard_writer_count(s->w) == s->per_shard) err = close_shard(s);
    }
    return err;
}

/* Removes shards of this split left by an earlier, longer run. */
static void remove_stale(const split_out *s) {
    char path[4096];
    for (int i = s->shards; shard_path(s, i, path, sizeof path), access(path, F_OK) == 0; i++) {
        if (unlink(path) == 0) fprintf(stderr, "removed %s, left by an earlier run\n", path);
        else break;
    }
}

typedef struct {
    const vttt_bpe *bpe;
    double val_fraction;
    int64_t docs;             /* documents seen over all inputs */
    int64_t spread_docs;      /* of them, those of INPUTs (val_fraction spreads them) */
    int all_val;              /* the current file is a --val-file */
    uint64_t bytes, bytes_total;
    double t0, last_report;
    int quiet;
    split_out *train, *val, *cur;   /* cur: the split of the current document */
    int64_t file_doc;         /* the current document's index in its file */
    uint64_t file_bytes;      /* bytes of the earlier inputs */
} ingest_job;

static void report(ingest_job *j, int final);

/* vttt_text_encode_documents's callback: a new document picks its split
 * (spread evenly over all inputs), then its ids go there. */
static int ingest_ids(void *user, int64_t doc, size_t done, const int32_t *ids, size_t n) {
    ingest_job *j = user;
    if (!j->cur || doc != j->file_doc) {
        j->docs++;
        int64_t d = j->all_val ? 0 : j->spread_docs++;
        int to_val = j->all_val || floor((double)(d + 1) * j->val_fraction) > floor((double)d * j->val_fraction);
        j->cur = to_val ? j->val : j->train;
        j->cur->docs++;
        j->file_doc = doc;
        report(j, 0);
    }
    j->bytes = j->file_bytes + done;
    return split_write(j->cur, ids, n);
}

/* A progress line, redrawn about once a second on a terminal; the final
 * one always. */
static void report(ingest_job *j, int final) {
    const split_out *train = j->train, *val = j->val;
    double t = cli_now_s();
    if (j->quiet || (!final && (!isatty(STDERR_FILENO) || t - j->last_report < 1.0))) return;
    j->last_report = t;
    double mb = (double)j->bytes / 1e6;
    fprintf(stderr, "\r%.1f/%.1f MB, %lld documents, %lld train + %lld val tokens, %.1f MB/s%s", mb,
            (double)j->bytes_total / 1e6, (long long)j->docs, (long long)train->tokens, (long long)val->tokens,
            mb / (t - j->t0 + 1e-9), final ? "\n" : "");
}

static int ingest_file(ingest_job *j, const char *path) {
    vttt_text_file f;
    int err = vttt_text_file_open(&f, path, NULL);
    if (err) return err;
    j->cur = NULL;
    err = vttt_text_encode_documents(j->bpe, f.data, f.n, ingest_ids, j);
    j->bytes = j->file_bytes += f.n;
    vttt_text_file_close(&f);
    return err;
}

/* DIR/meta.json: the tokenizer and what each split holds (val's "files":
 * the --val-file inputs). */
static int write_meta(const char *dir, const char *tok, const vttt_bpe *b, int token_size, split_out *splits[2],
                      char **val_in, int n_val) {
    cJSON *m = cJSON_CreateObject();
    cJSON_AddStringToObject(m, "format", "llm.c token shards");
    cJSON_AddStringToObject(m, "tokenizer", tok);
    cJSON_AddNumberToObject(m, "vocab_size", vttt_bpe_vocab_size(b));
    cJSON_AddNumberToObject(m, "eot", vttt_bpe_eot(b));
    cJSON_AddNumberToObject(m, "token_bytes", token_size);
    for (int i = 0; i < 2; i++) {
        cJSON *s = cJSON_AddObjectToObject(m, splits[i]->name);
        cJSON_AddNumberToObject(s, "documents", (double)splits[i]->docs);
        cJSON_AddNumberToObject(s, "tokens", (double)splits[i]->tokens);
        cJSON_AddItemToObject(s, "shards", splits[i]->list);
        splits[i]->list = NULL;
        if (i == 1 && n_val)
            cJSON_AddItemToObject(s, "files", cJSON_CreateStringArray((const char *const *)val_in, n_val));
    }
    char *text = cJSON_Print(m), path[4096];
    cJSON_Delete(m);
    if (!text) return VTTT_ENOMEM;
    snprintf(path, sizeof path, "%s/meta.json", dir);
    size_t n = strlen(text);
    text[n] = '\n';   /* cJSON_Print's NUL becomes the final newline */
    int err = vttt_file_write_atomic(path, text, n + 1, NULL);
    free(text);
    return err;
}

/* Creates dir and its missing parents. */
static int make_dirs(const char *dir) {
    char p[4096];
    snprintf(p, sizeof p, "%s", dir);
    for (char *s = p + 1;; s++) {
        int end = *s == '\0';
        if (*s == '/' || end) {
            *s = '\0';
            if (mkdir(p, 0777) != 0 && errno != EEXIST) {
                fprintf(stderr, "vttt ingest text: cannot create %s: %s\n", p, strerror(errno));
                return VTTT_EIO;
            }
            if (end) return VTTT_OK;
            *s = '/';
        }
    }
}

/* The inputs' documents over both splits, then the --val-files' into val. */
static int ingest_all(ingest_job *j, char **in, int n_in, char **val_in, int n_val) {
    int err = VTTT_OK;
    for (int i = 0; !err && i < n_in + n_val; i++) {
        j->all_val = i >= n_in;
        int64_t before = j->val->docs;
        err = ingest_file(j, i < n_in ? in[i] : val_in[i - n_in]);
        if (!err && j->all_val && j->val->docs == before)
            fprintf(stderr, "warning: --val-file %s holds no document\n", val_in[i - n_in]);
    }
    return err;
}

static int run(ingest_job *j, const char *tok, const char *dir, int64_t per_shard, char **in, int n_in,
               char **val_in, int n_val) {
    int token_size = vttt_token_size_for_vocab(vttt_bpe_vocab_size(j->bpe));
    split_out train = {dir, "train", per_shard, token_size, NULL, 0, 0, 0, cJSON_CreateArray()};
    split_out val = {dir, "val", per_shard, token_size, NULL, 0, 0, 0, cJSON_CreateArray()};
    int err = VTTT_OK;
    j->train = &train, j->val = &val;
    for (int i = 0; !err && i < n_in + n_val; i++) {
        struct stat sb;
        if (stat(i < n_in ? in[i] : val_in[i - n_in], &sb) == 0 && S_ISREG(sb.st_mode))
            j->bytes_total += (uint64_t)sb.st_size;
    }
    j->t0 = cli_now_s();
    err = ingest_all(j, in, n_in, val_in, n_val);
    split_out *splits[2] = {&train, &val};
    for (int i = 0; i < 2; i++) {
        if (splits[i]->w && !err) err = close_shard(splits[i]);
        if (splits[i]->w) vttt_token_shard_writer_abort(&splits[i]->w);
        if (!err) remove_stale(splits[i]);
    }
    report(j, 1);
    if (!err) err = write_meta(dir, tok, j->bpe, token_size, splits, val_in, n_val);
    if (!err && !j->quiet)
        fprintf(stderr, "wrote %d train shard(s) (%lld tokens, %lld documents) and %d val shard(s) (%lld tokens, "
                "%lld documents) of %d-byte tokens to %s in %.2f s\n", train.shards, (long long)train.tokens,
                (long long)train.docs, val.shards, (long long)val.tokens, (long long)val.docs, token_size, dir,
                cli_now_s() - j->t0);
    if (!err && val.tokens == 0 && j->val_fraction > 0 && !n_val)
        fprintf(stderr, "warning: the validation split is empty: %lld document(s) at --val-fraction %g; give more "
                "documents (files, or \"<|endoftext|>\" between documents) or a larger fraction\n",
                (long long)j->docs, j->val_fraction);
    cJSON_Delete(train.list);
    cJSON_Delete(val.list);
    return err;
}

typedef struct {
    const char *tok, *dir;
    long long per_shard;
    char **in, **val_in;      /* INPUTs (gathered in place over argv), --val-files */
    int n_in, n_val;
    int fraction_given;
} ingest_opts;

/* -1: go on; else the exit status (usage, --help). */
static int parse(ingest_opts *o, ingest_job *j, int argc, char **argv) {
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--tokenizer") && i + 1 < argc) o->tok = argv[++i];
        else if (!strcmp(argv[i], "--out") && i + 1 < argc) o->dir = argv[++i];
        else if (!strcmp(argv[i], "--shard-tokens") && i + 1 < argc) o->per_shard = atoll(argv[++i]);
        else if (!strcmp(argv[i], "--val-fraction") && i + 1 < argc)
            j->val_fraction = atof(argv[++i]), o->fraction_given = 1;
        else if (!strcmp(argv[i], "--val-file") && i + 1 < argc) o->val_in[o->n_val++] = argv[++i];
        else if (!strcmp(argv[i], "--quiet")) j->quiet = 1;
        else if (argv[i][0] == '-' && argv[i][1]) return usage(), strcmp(argv[i], "--help") && strcmp(argv[i], "-h") ? 2 : 0;
        else o->in[o->n_in++] = argv[i];
    }
    if (!o->tok || !o->dir || !o->n_in) return usage(), 2;
    if (!o->fraction_given) j->val_fraction = o->n_val ? 0.0 : 0.05;
    if (o->per_shard < 1 || o->per_shard > VTTT_SHARD_MAX_TOKENS || !(j->val_fraction >= 0 && j->val_fraction < 1)) {
        fprintf(stderr, "vttt ingest text: --shard-tokens must be in 1..%d and --val-fraction in [0, 1)\n",
                VTTT_SHARD_MAX_TOKENS);
        return 2;
    }
    for (int a = 0; a < o->n_in; a++)
        for (int v = 0; v < o->n_val; v++)
            if (!strcmp(o->in[a], o->val_in[v])) {
                fprintf(stderr, "vttt ingest text: %s is both an INPUT and a --val-file; held-out text must not "
                        "be trained on\n", o->in[a]);
                return 2;
            }
    return -1;
}

int cli_ingest_text(int argc, char **argv) {
    ingest_opts o = {.per_shard = 100000000, .in = argv, .val_in = calloc((size_t)argc, sizeof(char *))};
    ingest_job j = {0};
    if (!o.val_in) return 1;
    int status = parse(&o, &j, argc, argv);
    vttt_bpe *b = NULL;
    if (status < 0 && (vttt_bpe_load(&b, o.tok, NULL) || make_dirs(o.dir))) status = 1;
    if (status < 0) {
        j.bpe = b;
        int err = run(&j, o.tok, o.dir, o.per_shard, o.in, o.n_in, o.val_in, o.n_val);
        if (err) fprintf(stderr, "vttt ingest text: failed (%s)\n", vttt_strerror(err));
        status = err ? 1 : 0;
    }
    vttt_bpe_free(&b);
    free(o.val_in);
    return status;
}
