/* Byte-level BPE: the pre-tokenizer's pieces, hand-checked first merges
 * (with a tie), exact round trips of arbitrary bytes (whole and streamed),
 * deterministic training, the file format and every kind of corrupt file. */
#define _POSIX_C_SOURCE 200809L

#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "bpe_internal.h"
#include "ingest.h"
#include "testutil.h"

/* ---- helpers ------------------------------------------------------------ */

static uint32_t rand_u32(tu_rng *r) { return (uint32_t)(tu_uniform(r) * 16777216.0f) ^ (uint32_t)(tu_uniform(r) * 256.0f) << 24; }

/* English-like text: words from a few syllables, spaces, punctuation, newlines. */
static char *synthetic_text(size_t n, uint64_t seed) {
    static const char *syl[] = {"the", "an", "ing", "er", "o", "s", "qu", "ick", "br", "own", "fox", "ju", "mp",
                                "ed", "la", "zy", "do", "g", "and", "i", "n", "t", "e", "ly"};
    static const char *punct[] = {" ", " ", " ", " ", " ", ", ", ". ", "\n", "! ", " 42 ", "\n\n", "'s "};
    tu_rng r;
    tu_seed(&r, seed);
    char *s = malloc(n + 32);
    size_t k = 0;
    while (k < n) {
        int nsyl = 1 + (int)(tu_uniform(&r) * 3);
        for (int j = 0; j < nsyl; j++) k += (size_t)sprintf(s + k, "%s", syl[rand_u32(&r) % 24]);
        k += (size_t)sprintf(s + k, "%s", punct[rand_u32(&r) % 12]);
    }
    s[n] = 0;
    return s;
}

static vttt_bpe *train_on(const void *text, size_t n, int vocab) {
    vttt_bpe_trainer *t;
    vttt_bpe *b;
    ck_assert_int_eq(vttt_bpe_trainer_init(&t, NULL), 0);
    ck_assert_int_eq(vttt_bpe_trainer_feed(t, text, n), 0);
    vttt_bpe_train_params p = vttt_bpe_train_default_params(vocab);
    ck_assert_int_eq(vttt_bpe_trainer_train(t, &p, &b), 0);
    vttt_bpe_trainer_free(&t);
    return b;
}

static void tmp_path(char *out, size_t size, const char *name) {
    snprintf(out, size, "/tmp/vttt_tok_%ld_%s", (long)getpid(), name);
}

/* Encodes text whole and streamed in random pieces, checks both agree and
 * decode back to text. */
static void check_round_trip(const vttt_bpe *b, const uint8_t *text, size_t n, tu_rng *r) {
    vttt_token_buf whole = {0}, streamed = {0};
    ck_assert_int_eq(vttt_bpe_encode(b, text, n, &whole), 0);
    vttt_bpe_encoder *e;
    ck_assert_int_eq(vttt_bpe_encoder_init(&e, b), 0);
    for (size_t i = 0; i < n;) {
        size_t k = (size_t)(tu_uniform(r) * (tu_uniform(r) < 0.5f ? 4 : 600));
        if (k > n - i) k = n - i;
        ck_assert_int_eq(vttt_bpe_encoder_feed(e, text + i, k, &streamed), 0);
        i += k;
    }
    ck_assert_int_eq(vttt_bpe_encoder_finish(e, &streamed), 0);
    vttt_bpe_encoder_free(&e);
    ck_assert_uint_eq(whole.n, streamed.n);
    ck_assert(whole.n == 0 || !memcmp(whole.ids, streamed.ids, whole.n * sizeof *whole.ids));
    uint8_t *dec;
    size_t dn;
    ck_assert_int_eq(vttt_bpe_decode(b, whole.ids, whole.n, &dec, &dn), 0);
    ck_assert_uint_eq(dn, n);
    ck_assert(n == 0 || !memcmp(dec, text, n));
    size_t bad = 0;   /* counted, not asserted per id: every ck_assert costs a write */
    for (size_t i = 0; i < whole.n; i++) bad += whole.ids[i] < 0 || whole.ids[i] >= vttt_bpe_eot(b);
    ck_assert_uint_eq(bad, 0);
    free(dec);
    vttt_token_buf_free(&whole);
    vttt_token_buf_free(&streamed);
}

/* ---- pre-tokenizer and documents ---------------------------------------- */

START_TEST(test_pieces) {
    const char *text = "Hello, world!  foo\n\nbar 123abc \t\n x\x80\xff\x01\x01";
    const char *want[] = {"Hello", ",", " world", "!", " ", " foo", "\n\n", "bar", " 123", "abc", " \t\n", " x\x80\xff",
                          "\x01\x01"};
    size_t n = strlen(text), pos = 0;
    for (size_t i = 0; i < sizeof want / sizeof *want; i++) {
        ck_assert_uint_lt(pos, n);
        size_t k = bpe_piece_len((const uint8_t *)text + pos, n - pos, 1);
        ck_assert_msg(k == strlen(want[i]) && !memcmp(text + pos, want[i], k), "piece %zu: got '%.*s' want '%s'", i,
                      (int)k, text + pos, want[i]);
        pos += k;
    }
    ck_assert_uint_eq(pos, n);
    /* unfinished without final, and the piece cap */
    ck_assert_uint_eq(bpe_piece_len((const uint8_t *)"abc", 3, 0), 0);
    ck_assert_uint_eq(bpe_piece_len((const uint8_t *)" ", 1, 0), 0);
    ck_assert_uint_eq(bpe_piece_len((const uint8_t *)"ab ", 3, 0), 2);
    uint8_t run[300];
    memset(run, 'a', sizeof run);
    ck_assert_uint_eq(bpe_piece_len(run, sizeof run, 0), VTTT_BPE_MAX_PIECE);
}
END_TEST

START_TEST(test_documents) {
    const char *s = "  doc1 <|endoftext|>\n doc2\n<|endoftext|><|endoftext|>  \n<|endoftext|>doc3<|endoftext";
    const char *want[] = {"doc1", "doc2", "doc3<|endoftext"};
    size_t pos = 0, len, k = 0;
    const uint8_t *doc;
    while (vttt_text_next_document((const uint8_t *)s, strlen(s), &pos, &doc, &len)) {
        ck_assert_uint_lt(k, 3);
        ck_assert_uint_eq(len, strlen(want[k]));
        ck_assert(!memcmp(doc, want[k], len));
        k++;
    }
    ck_assert_uint_eq(k, 3);
    pos = 0;
    ck_assert_int_eq(vttt_text_next_document((const uint8_t *)" \n ", 3, &pos, &doc, &len), 0);
}
END_TEST

typedef struct {
    vttt_token_buf ids;
    int64_t last_doc;
    int pieces, stop_at;
} doc_ids;

static int collect_ids(void *user, int64_t doc, size_t done, const int32_t *ids, size_t n) {
    doc_ids *c = user;
    (void)done;
    ck_assert(doc == c->last_doc || doc == c->last_doc + 1);
    c->last_doc = doc;
    if (++c->pieces == c->stop_at) return VTTT_EIO;
    return vttt_token_buf_append(&c->ids, ids, n);
}

/* vttt_text_encode_documents: each document (one over 1 MiB, encoded in
 * parts) is <|endoftext|> then vttt_bpe_encode of its trimmed text; fn's
 * error stops it. */
START_TEST(test_documents_as_ids) {
    size_t big = (3u << 19) + 77, n = big + 64;
    char *s = malloc(n + 1), *words = synthetic_text(big, 5);
    words[0] = 'x', words[big - 1] = 'y';   /* nothing to trim */
    vttt_bpe *b = train_on(words, 20000, 400);
    int k = snprintf(s, n + 1, " a b <|endoftext|>\n");
    memcpy(s + k, words, big);
    snprintf(s + k + big, n + 1 - k - big, "<|endoftext|>c");
    size_t len = strlen(s);
    vttt_token_buf want = {0};
    int32_t eot = vttt_bpe_eot(b);
    const char *docs[] = {"a b", words, "c"};
    for (int d = 0; d < 3; d++) {
        ck_assert_int_eq(vttt_token_buf_append(&want, &eot, 1), 0);
        ck_assert_int_eq(vttt_bpe_encode(b, docs[d], d == 1 ? big : strlen(docs[d]), &want), 0);
    }
    doc_ids c = {.last_doc = 0};
    ck_assert_int_eq(vttt_text_encode_documents(b, (const uint8_t *)s, len, collect_ids, &c), 0);
    ck_assert_uint_eq(c.ids.n, want.n);
    ck_assert(!memcmp(c.ids.ids, want.ids, want.n * sizeof(int32_t)));
    ck_assert_int_eq(c.last_doc, 2);
    ck_assert_int_ge(c.pieces, 7);   /* 3 tokens, 1 + 2 + 1 parts */
    vttt_token_buf all = {0};
    ck_assert_int_eq(vttt_text_encode(b, (const uint8_t *)s, len, &all), 0);
    ck_assert_uint_eq(all.n, want.n);
    ck_assert(!memcmp(all.ids, want.ids, want.n * sizeof(int32_t)));
    doc_ids stop = {.last_doc = 0, .stop_at = 3};
    ck_assert_int_eq(vttt_text_encode_documents(b, (const uint8_t *)s, len, collect_ids, &stop), VTTT_EIO);
    ck_assert_int_eq(stop.pieces, 3);
    vttt_token_buf_free(&c.ids), vttt_token_buf_free(&stop.ids), vttt_token_buf_free(&all), vttt_token_buf_free(&want);
    vttt_bpe_free(&b);
    free(words), free(s);
}
END_TEST

/* ---- training ----------------------------------------------------------- */

/* Words hug x10, pug x5, pun x12, bun x4, hugs x5, one per line (newlines
 * are pieces of their own). By hand: (u,g) 20 -> 256; (u,n) 16 -> 257;
 * (h,ug) 15 -> 258; (p,un) 12 -> 259; then (p,ug) and (hug,s) tie at 5 and
 * the smaller first id wins: (p,ug) -> 260, (hug,s) -> 261; (b,un) 4 -> 262.
 * Then no pair is left. */
START_TEST(test_first_merges) {
    const char *words[] = {"hug", "pug", "pun", "bun", "hugs"};
    const int counts[] = {10, 5, 12, 4, 5};
    char text[512];
    size_t k = 0;
    for (int round = 0; round < 12; round++)
        for (int w = 0; w < 5; w++)
            if (round < counts[w]) k += (size_t)sprintf(text + k, "%s\n", words[w]);
    vttt_bpe *b = train_on(text, k, 1000);
    const int32_t want[][2] = {{'u', 'g'}, {'u', 'n'}, {'h', 256}, {'p', 257}, {'p', 256}, {258, 's'}, {'b', 257}};
    ck_assert_int_eq(vttt_bpe_num_merges(b), 7);
    ck_assert_int_eq(vttt_bpe_vocab_size(b), 264);
    ck_assert_int_eq(vttt_bpe_eot(b), 263);
    for (int i = 0; i < 7; i++) {
        int32_t x, y;
        vttt_bpe_merge(b, i, &x, &y);
        ck_assert_msg(x == want[i][0] && y == want[i][1], "merge %d: (%d, %d), want (%d, %d)", i, x, y, want[i][0],
                      want[i][1]);
    }
    /* " bun" is one space then bun; "hub" has no merge */
    vttt_token_buf ids = {0};
    ck_assert_int_eq(vttt_bpe_encode(b, "hugs bun hub", 12, &ids), 0);
    const int32_t want_ids[] = {261, ' ', 262, ' ', 'h', 'u', 'b'};
    ck_assert_uint_eq(ids.n, 7);
    ck_assert(!memcmp(ids.ids, want_ids, sizeof want_ids));
    const uint8_t *bytes;
    size_t len;
    ck_assert_int_eq(vttt_bpe_token_bytes(b, 261, &bytes, &len), 0);
    ck_assert(len == 4 && !memcmp(bytes, "hugs", 4));
    ck_assert_int_eq(vttt_bpe_token_bytes(b, 263, &bytes, &len), 0);
    ck_assert(len == 13 && !memcmp(bytes, "<|endoftext|>", 13));
    ck_assert_int_eq(vttt_bpe_token_bytes(b, 264, &bytes, &len), VTTT_EINVAL);
    ck_assert_int_eq(vttt_bpe_token_bytes(b, -1, &bytes, &len), VTTT_EINVAL);
    vttt_token_buf_free(&ids);
    vttt_bpe_free(&b);

    /* vocab_size caps the merges; min_count 6 stops before the ties */
    b = train_on(text, k, 259);
    ck_assert_int_eq(vttt_bpe_num_merges(b), 2);
    vttt_bpe_free(&b);
    vttt_bpe_trainer *t;
    tu_log cap;
    vttt_logger lg = tu_log_capture(&cap, VTTT_LOG_DEBUG, 1);
    ck_assert_int_eq(vttt_bpe_trainer_init(&t, &lg), 0);
    ck_assert_int_eq(vttt_bpe_trainer_feed(t, text, k), 0);
    vttt_bpe_train_params p = vttt_bpe_train_default_params(1000);
    p.min_count = 6;
    ck_assert_int_eq(vttt_bpe_trainer_train(t, &p, &b), 0);
    ck_assert_int_eq(vttt_bpe_num_merges(b), 4);
    vttt_bpe_free(&b);
    p.vocab_size = 256;
    ck_assert_int_eq(vttt_bpe_trainer_train(t, &p, &b), VTTT_EINVAL);
    ck_assert_ptr_null(b);
    ck_assert_ptr_nonnull(strstr(cap.text, "vocab size 256"));
    vttt_bpe_trainer_free(&t);
}
END_TEST

/* "aaaa" joins left to right: (a,a) then (aa,aa); "aaa" is then aa + a. */
START_TEST(test_overlapping_pairs) {
    vttt_bpe *b = train_on("aaaa\naaaa\naaaa\n", 15, 300);
    ck_assert_int_eq(vttt_bpe_num_merges(b), 2);
    int32_t x, y;
    vttt_bpe_merge(b, 0, &x, &y);
    ck_assert(x == 'a' && y == 'a');
    vttt_bpe_merge(b, 1, &x, &y);
    ck_assert(x == 256 && y == 256);
    vttt_token_buf ids = {0};
    ck_assert_int_eq(vttt_bpe_encode(b, "aaa aaaaa", 9, &ids), 0);
    const int32_t want[] = {256, 'a', ' ', 257, 'a'};
    ck_assert_uint_eq(ids.n, 5);
    ck_assert(!memcmp(ids.ids, want, sizeof want));
    vttt_token_buf_free(&ids);
    vttt_bpe_free(&b);
}
END_TEST

START_TEST(test_empty_corpus) {
    vttt_bpe *b = train_on("", 0, 4096);
    ck_assert_int_eq(vttt_bpe_vocab_size(b), 257);
    vttt_token_buf ids = {0};
    ck_assert_int_eq(vttt_bpe_encode(b, "ab", 2, &ids), 0);
    ck_assert(ids.n == 2 && ids.ids[0] == 'a' && ids.ids[1] == 'b');
    vttt_token_buf_free(&ids);
    vttt_bpe_free(&b);
}
END_TEST

/* Trained twice from scratch, and with the text fed in other pieces: the
 * same file byte for byte. Saved and loaded: the same encodings. */
START_TEST(test_deterministic_and_file_round_trip) {
    size_t n = 300000;
    char *text = synthetic_text(n, 7);
    vttt_bpe *b1 = train_on(text, n, 1200);
    ck_assert_int_eq(vttt_bpe_vocab_size(b1), 1200);
    vttt_bpe_trainer *t;
    ck_assert_int_eq(vttt_bpe_trainer_init(&t, NULL), 0);
    int err = 0;
    for (size_t i = 0; i < n; i += 777) err |= vttt_bpe_trainer_feed(t, text + i, n - i < 777 ? n - i : 777);
    ck_assert_int_eq(err, 0);
    vttt_bpe *b2;
    vttt_bpe_train_params p = vttt_bpe_train_default_params(1200);
    ck_assert_int_eq(vttt_bpe_trainer_train(t, &p, &b2), 0);
    vttt_bpe_trainer_free(&t);
    char p1[256], p2[256];
    tmp_path(p1, sizeof p1, "a.bpe");
    tmp_path(p2, sizeof p2, "b.bpe");
    ck_assert_int_eq(vttt_bpe_save(b1, p1, NULL), 0);
    ck_assert_int_eq(vttt_bpe_save(b2, p2, NULL), 0);
    size_t n1, n2;
    unsigned char *f1 = tu_read_file(p1, &n1), *f2 = tu_read_file(p2, &n2);
    ck_assert_uint_eq(n1, n2);
    ck_assert(!memcmp(f1, f2, n1));
    ck_assert(!memcmp(f1, "vttt-bpe 1\n", 11));

    vttt_bpe *b3;
    ck_assert_int_eq(vttt_bpe_load(&b3, p1, NULL), 0);
    ck_assert_int_eq(vttt_bpe_vocab_size(b3), 1200);
    vttt_token_buf x = {0}, y = {0};
    ck_assert_int_eq(vttt_bpe_encode(b1, text, n, &x), 0);
    ck_assert_int_eq(vttt_bpe_encode(b3, text, n, &y), 0);
    ck_assert_uint_eq(x.n, y.n);
    ck_assert(!memcmp(x.ids, y.ids, x.n * sizeof *x.ids));
    ck_assert_msg((double)n / (double)x.n > 2.5, "only %.2f bytes/token on the training text", (double)n / (double)x.n);
    vttt_token_buf_free(&x);
    vttt_token_buf_free(&y);
    free(f1);
    free(f2);
    free(text);
    unlink(p1);
    unlink(p2);
    vttt_bpe_free(&b1);
    vttt_bpe_free(&b2);
    vttt_bpe_free(&b3);
}
END_TEST

/* The incremental trainer against the definition: every step recounts all
 * pairs of every piece occurrence, takes the most frequent (ties: smaller
 * first id, then smaller second id) and joins it everywhere. */
START_TEST(test_trainer_matches_definition) {
    enum { V = 420, N = 30000 };
    char *text = synthetic_text(N, 13);
    for (int i = 0; i < N; i += 101) text[i] = (char)(i % 251);   /* some odd bytes */
    int32_t *sym = malloc(N * sizeof *sym);
    uint32_t *start = malloc((N + 1) * sizeof *start), n_pieces = 0;
    for (size_t pos = 0; pos < N;) {   /* pieces as [start[i], start[i+1]) in sym */
        start[n_pieces++] = (uint32_t)pos;
        pos += bpe_piece_len((const uint8_t *)text + pos, N - pos, 1);
    }
    start[n_pieces] = N;
    for (int i = 0; i < N; i++) sym[i] = (uint8_t)text[i];
    uint32_t *len = malloc(n_pieces * sizeof *len);
    for (uint32_t i = 0; i < n_pieces; i++) len[i] = start[i + 1] - start[i];
    int64_t *count = malloc((size_t)V * V * sizeof *count);
    int32_t want[V - 257][2];
    int m = 0;
    for (; m < V - 257; m++) {
        memset(count, 0, (size_t)V * V * sizeof *count);
        for (uint32_t i = 0; i < n_pieces; i++)
            for (uint32_t j = 0; j + 1 < len[i]; j++) count[sym[start[i] + j] * V + sym[start[i] + j + 1]]++;
        int64_t best = 1;   /* min_count 2 */
        int bx = -1, by = -1;
        for (int x = 0; x < 256 + m; x++)
            for (int y = 0; y < 256 + m; y++)
                if (count[x * V + y] > best) best = count[x * V + y], bx = x, by = y;
        if (bx < 0) break;
        want[m][0] = bx, want[m][1] = by;
        for (uint32_t i = 0; i < n_pieces; i++) {
            int32_t *t = sym + start[i];
            uint32_t k = 0;
            for (uint32_t j = 0; j < len[i]; k++) {
                if (j + 1 < len[i] && t[j] == bx && t[j + 1] == by) t[k] = 256 + m, j += 2;
                else t[k] = t[j++];
            }
            len[i] = k;
        }
    }
    ck_assert_int_gt(m, 150);
    vttt_bpe *b = train_on(text, N, V);
    ck_assert_int_eq(vttt_bpe_num_merges(b), m);
    int mismatch = -1;
    for (int i = 0; i < m && mismatch < 0; i++) {
        int32_t x, y;
        vttt_bpe_merge(b, i, &x, &y);
        if (x != want[i][0] || y != want[i][1]) mismatch = i;
    }
    ck_assert_msg(mismatch < 0, "merge %d differs from the definition", mismatch);
    vttt_bpe_free(&b);
    free(count), free(len), free(start), free(sym), free(text);
}
END_TEST

/* ---- round trips -------------------------------------------------------- */

static const uint8_t alphabet[] = {' ', ' ', '\n', '\t', 0, 0, 0xff, 0xc3, 0x80, 'a', 'e', 't', 'h', '.', '1', 'Z'};

/* Binary-looking training data (NUL runs, invalid UTF-8) makes merges of
 * any bytes, NUL included. */
static vttt_bpe *train_on_bytes(tu_rng *r, size_t n, int vocab) {
    uint8_t *buf = malloc(n);
    for (size_t i = 0; i < n; i++) buf[i] = i % 7 < 3 ? 0 : alphabet[rand_u32(r) % sizeof alphabet];
    vttt_bpe *b = train_on(buf, n, vocab);
    free(buf);
    int32_t x, y;
    vttt_bpe_merge(b, 0, &x, &y);
    ck_assert(x == 0 && y == 0);
    return b;
}

START_TEST(test_round_trip_bytes) {
    char *text = synthetic_text(100000, 3);
    tu_rng r;
    tu_seed(&r, 11);
    vttt_bpe *text_bpe = train_on(text, 100000, 800), *bin_bpe = train_on_bytes(&r, 100000, 600);
    size_t cap = 200000;
    uint8_t *buf = malloc(cap);
    for (int trial = 0; trial < 32; trial++) {
        const vttt_bpe *b = trial % 8 < 4 ? text_bpe : bin_bpe;
        size_t n = trial < 4 ? (size_t)trial : (size_t)(tu_uniform(&r) * (float)cap);
        int mode = trial % 4;
        for (size_t i = 0; i < n; i++) {
            if (mode == 0) buf[i] = (uint8_t)rand_u32(&r);                                    /* any byte */
            else if (mode == 1) buf[i] = alphabet[rand_u32(&r) % sizeof alphabet];          /* runs and spaces */
            else if (mode == 2) buf[i] = (uint8_t)text[i % 100000] ^ (tu_uniform(&r) < 0.01f ? 0x80 : 0);
            else buf[i] = (i / 333) % 2 ? 'a' : ' ';                                        /* long runs */
        }
        check_round_trip(b, buf, n, &r);
    }
    vttt_bpe *b = text_bpe;
    /* the literal special-token text is ordinary bytes */
    const char *lit = "a<|endoftext|>b";
    vttt_token_buf ids = {0};
    ck_assert_int_eq(vttt_bpe_encode(b, lit, strlen(lit), &ids), 0);
    for (size_t i = 0; i < ids.n; i++) ck_assert_int_ne(ids.ids[i], vttt_bpe_eot(b));
    int32_t eot = vttt_bpe_eot(b), bad = vttt_bpe_vocab_size(b);
    uint8_t *dec;
    size_t dn;
    ck_assert_int_eq(vttt_bpe_decode(b, &eot, 1, &dec, &dn), 0);
    ck_assert(dn == 13 && !strcmp((char *)dec, "<|endoftext|>"));
    free(dec);
    ck_assert_int_eq(vttt_bpe_decode(b, &bad, 1, &dec, &dn), VTTT_EINVAL);
    ck_assert_ptr_null(dec);
    vttt_token_buf_free(&ids);
    free(buf);
    free(text);
    vttt_bpe_free(&text_bpe);
    vttt_bpe_free(&bin_bpe);
}
END_TEST

/* The encoder (lowest rank first, ranks updated in place) against the
 * definition: every merge applied in order to every piece, left to right. */
static size_t naive_encode_piece(const vttt_bpe *b, const uint8_t *p, size_t n, int32_t *sym) {
    for (size_t i = 0; i < n; i++) sym[i] = p[i];
    for (int m = 0; m < vttt_bpe_num_merges(b); m++) {
        int32_t x, y;
        vttt_bpe_merge(b, m, &x, &y);
        size_t j = 0;
        for (size_t i = 0; i < n; j++) {
            if (i + 1 < n && sym[i] == x && sym[i + 1] == y) sym[j] = 256 + m, i += 2;
            else sym[j] = sym[i++];
        }
        n = j;
    }
    return n;
}

START_TEST(test_encoder_matches_definition) {
    char *text = synthetic_text(200000, 9);
    vttt_bpe *b = train_on(text, 200000, 700);
    size_t n = 40000;
    vttt_token_buf got = {0}, want = {0};
    text[n / 2] = '\xe9';   /* a byte the training text never had */
    ck_assert_int_eq(vttt_bpe_encode(b, text, n, &got), 0);
    int32_t sym[VTTT_BPE_MAX_PIECE];
    for (size_t pos = 0; pos < n;) {
        size_t k = bpe_piece_len((const uint8_t *)text + pos, n - pos, 1);
        size_t m = naive_encode_piece(b, (const uint8_t *)text + pos, k, sym);
        ck_assert_int_eq(vttt_token_buf_append(&want, sym, m), 0);
        pos += k;
    }
    ck_assert_uint_eq(got.n, want.n);
    ck_assert(!memcmp(got.ids, want.ids, got.n * sizeof *got.ids));
    vttt_token_buf_free(&got);
    vttt_token_buf_free(&want);
    vttt_bpe_free(&b);
    free(text);
}
END_TEST

/* ---- invalid tokenizers ------------------------------------------------- */

START_TEST(test_from_merges_rejects) {
    tu_log cap;
    vttt_logger lg = tu_log_capture(&cap, VTTT_LOG_DEBUG, 1);
    vttt_bpe *b;
    const int32_t future[] = {'a', 'b', 256, 258};
    ck_assert_int_eq(vttt_bpe_from_merges(&b, future, 2, &lg), VTTT_EFORMAT);
    ck_assert_ptr_null(b);
    ck_assert_ptr_nonnull(strstr(cap.text, "only ids below 257"));
    const int32_t dup[] = {'a', 'b', 'c', 'd', 'a', 'b'};
    ck_assert_int_eq(vttt_bpe_from_merges(&b, dup, 3, &lg), VTTT_EFORMAT);
    ck_assert_ptr_nonnull(strstr(cap.text, "repeats"));
    int32_t *grow = malloc(16 * sizeof *grow);   /* a, aa, aaaa, ... 256 bytes > one piece */
    grow[0] = grow[1] = 'a';
    for (int i = 1; i < 8; i++) grow[2 * i] = grow[2 * i + 1] = 256 + i - 1;
    ck_assert_int_eq(vttt_bpe_from_merges(&b, grow, 8, &lg), VTTT_EFORMAT);
    ck_assert_ptr_nonnull(strstr(cap.text, "longer than"));
    ck_assert_int_eq(vttt_bpe_from_merges(&b, grow, 7, &lg), 0);
    vttt_bpe_free(&b);
    free(grow);
    ck_assert_int_eq(vttt_bpe_from_merges(&b, NULL, -1, &lg), VTTT_EINVAL);
}
END_TEST

static uint64_t fnv(const char *s, size_t n) {
    uint64_t h = 0xcbf29ce484222325ULL;
    for (size_t i = 0; i < n; i++) h = (h ^ (uint8_t)s[i]) * 0x100000001b3ULL;
    return h;
}

/* Writes body plus a correct checksum line, loads it, and expects `want`
 * with `needle` in a message naming the file. */
static void expect_load(const char *path, const char *body, int with_checksum, int want, const char *needle) {
    char *file = malloc(strlen(body) + 64);
    size_t n = (size_t)sprintf(file, "%s", body);
    if (with_checksum) n += (size_t)sprintf(file + n, "checksum %016llx\n", (unsigned long long)fnv(file, n));
    tu_write_file(path, file, n);
    tu_log cap;
    vttt_logger lg = tu_log_capture(&cap, VTTT_LOG_DEBUG, 1);
    vttt_bpe *b = (vttt_bpe *)&cap;
    int err = vttt_bpe_load(&b, path, &lg);
    ck_assert_msg(err == want, "got %d, want %d for:\n%s\nlog: %s", err, want, body, cap.text);
    if (want) {
        ck_assert_ptr_null(b);
        ck_assert_msg(strstr(cap.text, needle) != NULL, "message lacks '%s': %s", needle, cap.text);
        ck_assert_msg(strstr(cap.text, path) != NULL, "message does not name the file: %s", cap.text);
    }
    vttt_bpe_free(&b);
    free(file);
}

#define HDR(v, m, e) "vttt-bpe 1\npretokenizer vttt-bytes-v1 128\nvocab_size " v "\nmerges " m "\nendoftext " e "\n"

START_TEST(test_load_rejects_bad_files) {
    char path[256];
    tmp_path(path, sizeof path, "bad.bpe");
    expect_load(path, HDR("259", "2", "258") "97 98\n256 99\n", 1, VTTT_OK, "");
    expect_load(path, HDR("259", "2", "258") "97 98\n256 99\n", 0, VTTT_EFORMAT, "truncated");
    expect_load(path, "", 0, VTTT_EFORMAT, "not a vttt BPE tokenizer");
    expect_load(path, "{\"model\": {}}\n", 1, VTTT_EFORMAT, "not a vttt BPE tokenizer");
    expect_load(path, "vttt-bpe 2\n", 1, VTTT_EFORMAT, "version");
    expect_load(path, "vttt-bpe 1\npretokenizer gpt2 128\n", 1, VTTT_EFORMAT, "pre-tokenizer");
    expect_load(path, HDR("260", "2", "258") "97 98\n256 99\n", 1, VTTT_EFORMAT, "vocab_size");
    expect_load(path, HDR("259", "2", "257") "97 98\n256 99\n", 1, VTTT_EFORMAT, "endoftext");
    expect_load(path, HDR("259", "2", "258") "97 98\n257 99\n", 1, VTTT_EFORMAT, "only ids below 257");
    expect_load(path, HDR("259", "2", "258") "97 98\n97 98\n", 1, VTTT_EFORMAT, "repeats");
    expect_load(path, HDR("259", "2", "258") "97 98\n", 1, VTTT_EFORMAT, "fewer merge lines");
    expect_load(path, HDR("259", "2", "258") "97 98\n256 99\n1 2\n", 1, VTTT_EFORMAT, "after the merges");
    expect_load(path, HDR("259", "2", "258") "97 -98\n256 99\n", 1, VTTT_EFORMAT, "expected a merge");
    expect_load(path, HDR("259", "2", "258") "97 98 \n256 99\n", 1, VTTT_EFORMAT, "expected a merge");
    expect_load(path, "vttt-bpe 1\npretokenizer vttt-bytes-v1 128\nvocab_size x\n", 1, VTTT_EFORMAT, "vocab_size");
    unlink(path);
    tu_log cap;
    vttt_logger lg = tu_log_capture(&cap, VTTT_LOG_DEBUG, 1);
    vttt_bpe *b;
    ck_assert_int_eq(vttt_bpe_load(&b, "/nonexistent/dir/tok.bpe", &lg), VTTT_EIO);
    ck_assert_ptr_nonnull(strstr(cap.text, "/nonexistent/dir/tok.bpe"));
}
END_TEST

/* A real saved file: every truncation and every single-byte change in the
 * body is rejected. */
START_TEST(test_load_rejects_truncation_and_corruption) {
    char *text = synthetic_text(50000, 5);
    vttt_bpe *b = train_on(text, 50000, 400);
    char path[256], bad[256];
    tmp_path(path, sizeof path, "good.bpe");
    tmp_path(bad, sizeof bad, "corrupt.bpe");
    ck_assert_int_eq(vttt_bpe_save(b, path, NULL), 0);
    size_t n;
    unsigned char *file = tu_read_file(path, &n);
    tu_log cap;
    vttt_logger lg = tu_log_capture(&cap, VTTT_LOG_DEBUG, 1);
    vttt_bpe *x;
    for (size_t cut = 0; cut < n; cut += (cut < 64 || cut > n - 64) ? 1 : 97) {
        tu_write_file(bad, file, cut);
        ck_assert_msg(vttt_bpe_load(&x, bad, &lg) == VTTT_EFORMAT, "truncated at %zu of %zu accepted", cut, n);
        ck_assert_ptr_null(x);
    }
    for (size_t at = 0; at < n; at += 13) {
        unsigned char saved = file[at];
        file[at] = (unsigned char)(saved == '7' ? '8' : '7');
        tu_write_file(bad, file, n);
        ck_assert_msg(vttt_bpe_load(&x, bad, &lg) == VTTT_EFORMAT, "byte %zu changed, accepted", at);
        file[at] = saved;
    }
    tu_write_file(bad, file, n);
    ck_assert_int_eq(vttt_bpe_load(&x, bad, &lg), 0);
    vttt_bpe_free(&x);
    unlink(path);
    unlink(bad);
    free(file);
    free(text);
    vttt_bpe_free(&b);
}
END_TEST

int main(void) {
    TCase *tc = tcase_create("core");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_pieces);
    tcase_add_test(tc, test_documents);
    tcase_add_test(tc, test_documents_as_ids);
    tcase_add_test(tc, test_first_merges);
    tcase_add_test(tc, test_overlapping_pairs);
    tcase_add_test(tc, test_empty_corpus);
    tcase_add_test(tc, test_trainer_matches_definition);
    tcase_add_test(tc, test_deterministic_and_file_round_trip);
    tcase_add_test(tc, test_round_trip_bytes);
    tcase_add_test(tc, test_encoder_matches_definition);
    tcase_add_test(tc, test_from_merges_rejects);
    tcase_add_test(tc, test_load_rejects_bad_files);
    tcase_add_test(tc, test_load_rejects_truncation_and_corruption);
    return tu_run("tokenizer", tc, CK_FORK_GETENV);
}
