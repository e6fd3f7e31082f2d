/* `vttt tokenizer`: train a byte-level BPE tokenizer, and encode, decode or
 * inspect with one. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cli.h"
#include "ingest.h"
#include "token_ids.h"

static void usage(void) {
    fprintf(stderr,
            "usage:\n"
            "  vttt tokenizer train --vocab-size N --out FILE [--min-count C] [--quiet] INPUT...\n"
            "      learn N-257 merges from text files (\"-\": stdin); \"<|endoftext|>\" in the text\n"
            "      separates documents and is not learnt\n"
            "  vttt tokenizer encode --tokenizer FILE [--raw] [--show] [--stats] [--quiet] (--text STRING | INPUT...)\n"
            "      print the ids (space separated), or with --show one token per line; --stats\n"
            "      prints bytes, tokens and MB/s to stderr; --quiet prints no ids. The text is\n"
            "      taken as `vttt ingest text` takes it: each document (a file, or a part between\n"
            "      \"<|endoftext|>\" markers, trimmed) after an <|endoftext|> token, the same ids as\n"
            "      in the shards; --raw: the bytes as they are (\"<|endoftext|>\" as ordinary bytes)\n"
            "  vttt tokenizer decode --tokenizer FILE [INPUT]\n"
            "      write the bytes of the ids in INPUT (whitespace separated ids, or a token\n"
            "      shard; default stdin) to stdout\n"
            "  vttt tokenizer info FILE\n"
            "      vocabulary size, special token, first and longest tokens\n");
}

/* Writes bytes as a quoted string, escaping what is not printable ASCII. */
static void print_escaped(FILE *out, const uint8_t *p, size_t n) {
    fputc('\'', out);
    for (size_t i = 0; i < n; i++) {
        uint8_t c = p[i];
        if (c == '\n') fputs("\\n", out);
        else if (c == '\t') fputs("\\t", out);
        else if (c == '\\' || c == '\'') fprintf(out, "\\%c", c);
        else if (c >= 0x20 && c < 0x7f) fputc(c, out);
        else fprintf(out, "\\x%02x", c);
    }
    fputc('\'', out);
}

/* ---- train -------------------------------------------------------------- */

/* Feeds every document of one file to the trainer. */
static int feed_file(vttt_bpe_trainer *t, const char *path, uint64_t *bytes) {
    vttt_text_file f;
    int err = vttt_text_file_open(&f, path, NULL);
    if (err) return err;
    size_t pos = 0, len;
    const uint8_t *doc;
    while (!err && vttt_text_next_document(f.data, f.n, &pos, &doc, &len)) {
        err = vttt_bpe_trainer_feed(t, doc, len);
        if (!err) err = vttt_bpe_trainer_end_document(t);
    }
    *bytes += f.n;
    vttt_text_file_close(&f);
    return err;
}

static void print_merges(FILE *out, const vttt_bpe *b, int count) {
    for (int i = 0; i < count && i < vttt_bpe_num_merges(b); i++) {
        const uint8_t *p;
        size_t n;
        vttt_bpe_token_bytes(b, 256 + i, &p, &n);
        fprintf(out, "  %5d ", 256 + i);
        print_escaped(out, p, n);
        fputc('\n', out);
    }
}

static int cmd_train(int argc, char **argv) {
    const char *out = NULL;
    vttt_bpe_train_params p = vttt_bpe_train_default_params(0);
    int quiet = 0, n_in = 0;
    char **in = argv;   /* inputs, gathered in place over argv[0..] */
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--vocab-size") && i + 1 < argc) p.vocab_size = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--out") && i + 1 < argc) out = argv[++i];
        else if (!strcmp(argv[i], "--min-count") && i + 1 < argc) p.min_count = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--quiet")) quiet = 1;
        else if (argv[i][0] == '-' && argv[i][1]) return usage(), strcmp(argv[i], "--help") && strcmp(argv[i], "-h") ? 2 : 0;
        else in[n_in++] = argv[i];
    }
    if (!out || !p.vocab_size || !n_in) return usage(), 2;
    vttt_logger lg = {NULL, NULL, quiet ? VTTT_LOG_WARNING : VTTT_LOG_INFO};
    p.log_every = quiet ? 0 : 1000;
    vttt_bpe_trainer *t;
    vttt_bpe *b = NULL;
    if (vttt_bpe_trainer_init(&t, &lg)) return 1;
    double t0 = cli_now_s();
    uint64_t bytes = 0;
    int err = 0;
    for (int i = 0; !err && i < n_in; i++) err = feed_file(t, in[i], &bytes);
    double t1 = cli_now_s();
    size_t pieces = 0;
    uint64_t fed;
    vttt_bpe_trainer_stats(t, &fed, &pieces);
    if (!err && !quiet)
        fprintf(stderr, "read %.2f MB from %d file(s) in %.2f s: %zu distinct pieces\n", (double)bytes / 1e6, n_in,
                t1 - t0, pieces);
    if (!err) err = vttt_bpe_trainer_train(t, &p, &b);
    double t2 = cli_now_s();
    if (!err) err = vttt_bpe_save(b, out, &lg);
    if (!err && !quiet) {
        fprintf(stderr, "learnt %d merges in %.2f s (%.2f s in all): vocab %d, <|endoftext|> = %d, saved %s\n",
                vttt_bpe_num_merges(b), t2 - t1, t2 - t0, vttt_bpe_vocab_size(b), vttt_bpe_eot(b), out);
        fprintf(stderr, "first merges:\n");
        print_merges(stderr, b, 10);
    }
    vttt_bpe_free(&b);
    vttt_bpe_trainer_free(&t);
    if (err) fprintf(stderr, "vttt tokenizer train: failed (%s)\n", vttt_strerror(err));
    return err ? 1 : 0;
}

/* ---- encode ------------------------------------------------------------- */

typedef struct {
    const vttt_bpe *bpe;
    int show, quiet, raw;
    uint64_t bytes, tokens;
    double seconds;   /* spent encoding */
} encode_job;

static void print_ids(encode_job *j, const vttt_token_buf *ids) {
    if (j->quiet) return;
    for (size_t i = 0; i < ids->n; i++) {
        if (j->show) {
            const uint8_t *p;
            size_t n;
            vttt_bpe_token_bytes(j->bpe, ids->ids[i], &p, &n);
            printf("%d\t", (int)ids->ids[i]);
            print_escaped(stdout, p, n);
            putchar('\n');
        } else {
            printf(j->tokens + i ? " %d" : "%d", (int)ids->ids[i]);
        }
    }
}

static int print_piece(void *user, int64_t doc, size_t done, const int32_t *ids, size_t n) {
    (void)doc, (void)done;
    encode_job *j = user;
    vttt_token_buf b = {(int32_t *)ids, n, n};
    print_ids(j, &b);
    j->tokens += n;
    return 0;
}

/* Encodes one input as documents (vttt_text_encode_documents), or with
 * --raw as one byte stream, 1 MB at a time; prints the ids as they come. */
static int encode_bytes(encode_job *j, vttt_bpe_encoder *e, const uint8_t *p, size_t n) {
    if (!j->raw) {
        double t0 = cli_now_s();
        int err = vttt_text_encode_documents(j->bpe, p, n, print_piece, j);
        j->seconds += cli_now_s() - t0;   /* printing included */
        j->bytes += n;
        return err;
    }
    vttt_token_buf ids = {0};
    size_t off = 0;
    int err;
    do {
        size_t k = n - off < (1u << 20) ? n - off : (1u << 20);
        double t0 = cli_now_s();
        err = vttt_bpe_encoder_feed(e, p + off, k, &ids);
        off += k;
        if (!err && off == n) err = vttt_bpe_encoder_finish(e, &ids);
        j->seconds += cli_now_s() - t0;
        print_ids(j, &ids);
        j->tokens += ids.n;
        ids.n = 0;
    } while (!err && off < n);
    j->bytes += n;
    vttt_token_buf_free(&ids);
    return err;
}

static int cmd_encode(int argc, char **argv) {
    const char *tok = NULL, *text = NULL;
    encode_job j = {0};
    int stats = 0, n_in = 0;
    char **in = argv;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--tokenizer") && i + 1 < argc) tok = argv[++i];
        else if (!strcmp(argv[i], "--text") && i + 1 < argc) text = argv[++i];
        else if (!strcmp(argv[i], "--show")) j.show = 1;
        else if (!strcmp(argv[i], "--raw")) j.raw = 1;
        else if (!strcmp(argv[i], "--stats")) stats = 1;
        else if (!strcmp(argv[i], "--quiet")) j.quiet = 1;
        else if (argv[i][0] == '-' && argv[i][1]) return usage(), strcmp(argv[i], "--help") && strcmp(argv[i], "-h") ? 2 : 0;
        else in[n_in++] = argv[i];
    }
    if (!tok || (!text && !n_in)) return usage(), 2;
    vttt_bpe *b;
    vttt_bpe_encoder *e = NULL;
    if (vttt_bpe_load(&b, tok, NULL)) return 1;
    j.bpe = b;
    int err = vttt_bpe_encoder_init(&e, b);
    if (!err && text) err = encode_bytes(&j, e, (const uint8_t *)text, strlen(text));
    for (int i = 0; !err && i < n_in; i++) {
        vttt_text_file f;
        if ((err = vttt_text_file_open(&f, in[i], NULL))) break;
        err = encode_bytes(&j, e, f.data, f.n);   /* each input is its own stream */
        vttt_text_file_close(&f);
    }
    if (!j.quiet && !j.show && j.tokens) putchar('\n');
    if (!err && stats)
        fprintf(stderr, "%llu bytes -> %llu tokens (%.3f bytes/token) in %.3f s: %.1f MB/s\n",
                (unsigned long long)j.bytes, (unsigned long long)j.tokens,
                j.tokens ? (double)j.bytes / (double)j.tokens : 0.0, j.seconds,
                j.seconds > 0 ? (double)j.bytes / j.seconds / 1e6 : 0.0);
    vttt_bpe_encoder_free(&e);
    vttt_bpe_free(&b);
    if (err) fprintf(stderr, "vttt tokenizer encode: failed (%s)\n", vttt_strerror(err));
    return err ? 1 : 0;
}

/* ---- decode ------------------------------------------------------------- */

static int cmd_decode(int argc, char **argv) {
    const char *tok = NULL, *in = "-";
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--tokenizer") && i + 1 < argc) tok = argv[++i];
        else if (argv[i][0] == '-' && argv[i][1]) return usage(), strcmp(argv[i], "--help") && strcmp(argv[i], "-h") ? 2 : 0;
        else in = argv[i];
    }
    if (!tok) return usage(), 2;
    vttt_bpe *b;
    if (vttt_bpe_load(&b, tok, NULL)) return 1;
    vttt_token_buf ids = {0};
    uint8_t *bytes = NULL;
    size_t n = 0;
    int err = token_ids_read(in, &ids);
    if (!err && (err = vttt_bpe_decode(b, ids.ids, ids.n, &bytes, &n)) == VTTT_EINVAL)
        fprintf(stderr, "%s: an id is outside the tokenizer's vocabulary of %d\n", in, vttt_bpe_vocab_size(b));
    if (!err && fwrite(bytes, 1, n, stdout) != n) err = VTTT_EIO;
    free(bytes);
    vttt_token_buf_free(&ids);
    vttt_bpe_free(&b);
    if (err) fprintf(stderr, "vttt tokenizer decode: failed (%s)\n", vttt_strerror(err));
    return err ? 1 : 0;
}

/* ---- info --------------------------------------------------------------- */

static int cmd_info(int argc, char **argv) {
    if (argc != 2) return usage(), 2;
    vttt_bpe *b;
    if (vttt_bpe_load(&b, argv[1], NULL)) return 1;
    int longest = 0;
    size_t longest_n = 0;
    for (int id = 0; id < vttt_bpe_eot(b); id++) {
        const uint8_t *p;
        size_t n;
        vttt_bpe_token_bytes(b, id, &p, &n);
        if (n > longest_n) longest = id, longest_n = n;
    }
    printf("%s: byte-level BPE, vocab %d = 256 bytes + %d merges + <|endoftext|> (id %d); shards need %d-byte "
           "tokens\n",
           argv[1], vttt_bpe_vocab_size(b), vttt_bpe_num_merges(b), vttt_bpe_eot(b),
           vttt_token_size_for_vocab(vttt_bpe_vocab_size(b)));
    const uint8_t *p;
    size_t n;
    vttt_bpe_token_bytes(b, longest, &p, &n);
    printf("longest token: %d ", longest);
    print_escaped(stdout, p, n);
    printf(" (%zu bytes)\nfirst merges:\n", n);
    fflush(stdout);
    print_merges(stdout, b, 20);
    vttt_bpe_free(&b);
    return 0;
}

int cli_tokenizer(int argc, char **argv) {
    if (argc < 2) return usage(), 2;
    if (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h") || !strcmp(argv[1], "help")) return usage(), 0;
    if (!strcmp(argv[1], "train")) return cmd_train(argc - 1, argv + 1);
    if (!strcmp(argv[1], "encode")) return cmd_encode(argc - 1, argv + 1);
    if (!strcmp(argv[1], "decode")) return cmd_decode(argc - 1, argv + 1);
    if (!strcmp(argv[1], "info")) return cmd_info(argc - 1, argv + 1);
    usage();
    return 2;
}
