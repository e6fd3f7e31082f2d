/*
 * Model-state batching and snapshots (ttt/model_state_batch.c,
 * ttt/model_state_io.c): gathering one-sequence states into one batched
 * state, a prefill, and scattering back gives the logits and states of
 * separate prefills; a saved state loads into a fresh state that continues
 * exactly like the original; snapshots of another model, another batch
 * size, truncated, damaged or non-finite bytes are refused.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "model.h"
#include "testutil.h"

#define SAME_TOL 1e-5
#define P 8 /* tokens per frame */

/* Case i: 0 TTT-MLP (Mamba backbone: pre-conv and share_qk conv states),
 * 1 TTT-Linear (Transformer backbone), 2 attention. */
static vttt_model_config case_config(int i) {
    vttt_model_config c = vttt_model_default_config();
    ck_assert_int_eq(vttt_model_config_preset(&c, "test", NULL), VTTT_OK);
    c.vocab_size = 16, c.hidden_size = 16, c.intermediate_size = 24, c.num_hidden_layers = 2;
    c.num_attention_heads = 2, c.mini_batch_size = 4, c.max_position_embeddings = 256;
    c.tokens_per_frame = P;
    c.seq_kind = i == 0 ? VTTT_LAYER_TTT_MLP : i == 1 ? VTTT_LAYER_TTT_LINEAR : VTTT_LAYER_ATTENTION;
    ck_assert_int_eq(vttt_model_config_backbone(&c, i == 0 ? "mamba" : "transformer", NULL), VTTT_OK);
    if (i == 2) c.share_qk = c.use_gate = 0;
    return c;
}

static vttt_model *make_model(const vttt_model_config *c, uint64_t seed, const vttt_logger *lg) {
    vttt_model *m = NULL;
    ck_assert_int_eq(vttt_model_init(&m, c, lg), VTTT_OK);
    vttt_model_init_weights(m, seed);
    /* larger TTT weights than the init so that states differ visibly */
    int n;
    const vttt_model_tensor *t = vttt_model_tensors(m, &n);
    tu_rng r;
    tu_seed(&r, seed + 1);
    for (int i = 0; i < n; i++)
        if (strstr(t[i].name, ".W1") || strstr(t[i].name, ".W2") || strstr(t[i].name, "embed"))
            for (int64_t j = 0; j < t[i].numel; j++) t[i].data[j] = 0.3f * tu_normal(&r);
    return m;
}

static int32_t *rand_tokens(int n, int V, uint64_t seed) {
    tu_rng r;
    tu_seed(&r, seed);
    int32_t *t = malloc((size_t)n * sizeof *t);
    for (int i = 0; i < n; i++) t[i] = (int32_t)(tu_uniform(&r) * V) % V;
    return t;
}

START_TEST(test_gather_scatter) {
    vttt_model_config c = case_config(_i);
    vttt_model *m = make_model(&c, 10 + _i, NULL);
    enum { N = 3 };
    int V = c.vocab_size, attn = c.seq_kind == VTTT_LAYER_ATTENTION;
    int frames[N] = {2, attn ? 2 : 5, attn ? 2 : 1}; /* attention: positions must be equal */
    vttt_model_state *s[N], *ref[N], *bat = NULL;
    for (int i = 0; i < N; i++) {
        ck_assert_int_eq(vttt_model_state_init(&s[i], m, 1, 0), VTTT_OK);
        ck_assert_int_eq(vttt_model_state_init(&ref[i], m, 1, 0), VTTT_OK);
        int32_t *hist = rand_tokens(frames[i] * P, V, 100 + i);
        ck_assert_int_eq(vttt_model_prefill(m, s[i], hist, frames[i] * P, NULL, 0), VTTT_OK);
        ck_assert_int_eq(vttt_model_state_copy(ref[i], s[i]), VTTT_OK);
        free(hist);
    }
    ck_assert_int_eq(vttt_model_state_init(&bat, m, N, 0), VTTT_OK);
    int32_t *next = rand_tokens(N * P, V, 7);
    float *lb = malloc((size_t)N * P * V * sizeof(float)), *lr = malloc((size_t)P * V * sizeof(float));
    ck_assert_int_eq(vttt_model_state_gather(bat, s, N), VTTT_OK);
    ck_assert_int_eq(vttt_model_prefill(m, bat, next, P, lb, 1), VTTT_OK);
    ck_assert_int_eq(vttt_model_state_scatter(s, N, bat), VTTT_OK);
    for (int i = 0; i < N; i++) {
        ck_assert_int_eq(vttt_model_prefill(m, ref[i], next + i * P, P, lr, 1), VTTT_OK);
        double e = tu_rel_err(lb + (size_t)i * P * V, lr, (size_t)P * V);
        ck_assert_msg(e <= SAME_TOL, "case %d seq %d: batched logits differ: %.3e", _i, i, e);
        ck_assert_int_eq(vttt_model_state_position(s[i]), (frames[i] + 1) * P);
    }
    /* the scattered states continue like the separate ones */
    int32_t *more = rand_tokens(P, V, 8);
    float *l2 = malloc((size_t)P * V * sizeof(float));
    for (int i = 0; i < N; i++) {
        ck_assert_int_eq(vttt_model_prefill(m, s[i], more, P, l2, 1), VTTT_OK);
        ck_assert_int_eq(vttt_model_prefill(m, ref[i], more, P, lr, 1), VTTT_OK);
        double e = tu_rel_err(l2, lr, (size_t)P * V);
        ck_assert_msg(e <= SAME_TOL, "case %d seq %d: scattered state continues differently: %.3e", _i, i, e);
    }
    for (int i = 0; i < N; i++) vttt_model_state_free(&s[i]), vttt_model_state_free(&ref[i]);
    vttt_model_state_free(&bat);
    free(next), free(more), free(lb), free(lr), free(l2);
    vttt_model_free(&m);
}
END_TEST

START_TEST(test_gather_refuses) {
    vttt_model_config c = case_config(0);
    vttt_model *m = make_model(&c, 3, NULL);
    tu_log cap;
    vttt_logger lg = tu_log_capture(&cap, VTTT_LOG_ERROR, 0);
    vttt_model_config c2 = c;
    c2.hidden_size = 32;
    vttt_model *m2 = NULL;
    ck_assert_int_eq(vttt_model_init(&m2, &c2, &lg), VTTT_OK);
    vttt_model_free(&m);
    ck_assert_int_eq(vttt_model_init(&m, &c, &lg), VTTT_OK);
    vttt_model_state *a = NULL, *b = NULL, *o = NULL, *bat = NULL;
    ck_assert_int_eq(vttt_model_state_init(&a, m, 1, 0), VTTT_OK);
    ck_assert_int_eq(vttt_model_state_init(&b, m, 1, 0), VTTT_OK);
    ck_assert_int_eq(vttt_model_state_init(&o, m2, 1, 0), VTTT_OK);
    ck_assert_int_eq(vttt_model_state_init(&bat, m, 2, 0), VTTT_OK);
    int32_t tok[4] = {1, 2, 3, 4};
    ck_assert_int_eq(vttt_model_prefill(m, b, tok, 4, NULL, 0), VTTT_OK); /* mid-frame: offsets differ */
    vttt_model_state *ab[2] = {a, b}, *ao[2] = {a, o};
    ck_assert_int_eq(vttt_model_state_gather(bat, ab, 2), VTTT_EINVAL);
    ck_assert_ptr_nonnull(strstr(cap.text, "positions"));
    ck_assert_int_eq(vttt_model_state_gather(bat, ao, 2), VTTT_EINVAL);
    ck_assert_int_eq(vttt_model_state_gather(bat, ab, 1), VTTT_EINVAL); /* B 2 for 1 state */
    vttt_model_state_free(&a), vttt_model_state_free(&b), vttt_model_state_free(&o), vttt_model_state_free(&bat);
    vttt_model_free(&m), vttt_model_free(&m2);
}
END_TEST

START_TEST(test_snapshot_roundtrip) {
    vttt_model_config c = case_config(_i);
    vttt_model *m = make_model(&c, 20 + _i, NULL);
    int V = c.vocab_size;
    vttt_model_state *s = NULL, *r = NULL;
    ck_assert_int_eq(vttt_model_state_init(&s, m, 2, 0), VTTT_OK);
    ck_assert_int_eq(vttt_model_state_init(&r, m, 2, 0), VTTT_OK);
    int32_t *tok = rand_tokens(2 * 3 * P, V, 5);
    ck_assert_int_eq(vttt_model_prefill(m, s, tok, 3 * P, NULL, 0), VTTT_OK);
    uint8_t *snap = NULL;
    size_t n = 0;
    ck_assert_int_eq(vttt_model_state_save(s, &snap, &n), VTTT_OK);
    ck_assert_int_eq(vttt_model_state_load(r, snap, n), VTTT_OK);
    ck_assert_int_eq(vttt_model_state_position(r), 3 * P);
    float *la = malloc((size_t)2 * P * V * sizeof(float)), *lb = malloc((size_t)2 * P * V * sizeof(float));
    int32_t *next = rand_tokens(2 * P, V, 6);
    ck_assert_int_eq(vttt_model_prefill(m, s, next, P, la, 1), VTTT_OK);
    ck_assert_int_eq(vttt_model_prefill(m, r, next, P, lb, 1), VTTT_OK);
    ck_assert_msg(!memcmp(la, lb, (size_t)2 * P * V * sizeof(float)), "case %d: restored state differs", _i);
    /* a snapshot of a TTT state has the same size however long the sequence */
    if (c.seq_kind != VTTT_LAYER_ATTENTION) {
        uint8_t *snap2 = NULL;
        size_t n2 = 0;
        ck_assert_int_eq(vttt_model_state_save(s, &snap2, &n2), VTTT_OK);
        ck_assert_uint_eq(n2, n);
        free(snap2);
    }
    free(snap), free(tok), free(next), free(la), free(lb);
    vttt_model_state_free(&s), vttt_model_state_free(&r);
    vttt_model_free(&m);
}
END_TEST

static uint64_t fnv1a(const uint8_t *p, size_t n) {
    uint64_t h = 0xcbf29ce484222325ull;
    for (size_t i = 0; i < n; i++) h = (h ^ p[i]) * 0x100000001b3ull;
    return h;
}

/* load must fail with VTTT_EFORMAT, a message containing `what`, and
 * leave the state as it was. */
static void expect_refused(vttt_model_state *s, const uint8_t *d, size_t n, tu_log *cap, const char *what) {
    int64_t pos = vttt_model_state_position(s);
    ck_assert_int_eq(vttt_model_state_load(s, d, n), VTTT_EFORMAT);
    ck_assert_msg(strstr(cap->text, what) != NULL, "expected '%s' in '%s'", what, cap->text);
    ck_assert_int_eq(vttt_model_state_position(s), pos);
}

START_TEST(test_snapshot_refused) {
    tu_log cap;
    vttt_logger lg = tu_log_capture(&cap, VTTT_LOG_ERROR, 0);
    vttt_model_config c = case_config(0), c2 = case_config(0);
    c2.intermediate_size = 32;
    vttt_model *m = NULL, *m2 = NULL;
    ck_assert_int_eq(vttt_model_init(&m, &c, &lg), VTTT_OK);
    ck_assert_int_eq(vttt_model_init(&m2, &c2, &lg), VTTT_OK);
    vttt_model_init_weights(m, 1), vttt_model_init_weights(m2, 1);
    vttt_model_state *s = NULL, *r = NULL, *o = NULL, *b2 = NULL;
    ck_assert_int_eq(vttt_model_state_init(&s, m, 1, 0), VTTT_OK);
    ck_assert_int_eq(vttt_model_state_init(&r, m, 1, 0), VTTT_OK);
    ck_assert_int_eq(vttt_model_state_init(&o, m2, 1, 0), VTTT_OK);
    ck_assert_int_eq(vttt_model_state_init(&b2, m, 2, 0), VTTT_OK);
    int32_t *tok = rand_tokens(2 * P, c.vocab_size, 9);
    ck_assert_int_eq(vttt_model_prefill(m, s, tok, 2 * P, NULL, 0), VTTT_OK);
    uint8_t *snap = NULL;
    size_t n = 0;
    ck_assert_int_eq(vttt_model_state_save(s, &snap, &n), VTTT_OK);
    expect_refused(o, snap, n, &cap, "another configuration");
    expect_refused(b2, snap, n, &cap, "batch size");
    expect_refused(r, snap, n - 1, &cap, "length");
    expect_refused(r, snap, 20, &cap, "not a vttt state snapshot");
    uint8_t *bad = malloc(n);
    memcpy(bad, snap, n);
    bad[n / 2] ^= 0x40;
    expect_refused(r, bad, n, &cap, "checksum");
    memcpy(bad, snap, n);
    float nan = NAN;
    memcpy(bad + 48, &nan, 4); /* first float of layer 0 */
    uint64_t sum = fnv1a(bad, n - 8);
    memcpy(bad + n - 8, &sum, 8);
    expect_refused(r, bad, n, &cap, "non-finite");
    memcpy(bad, snap, n);
    bad[8] = 99; /* version */
    expect_refused(r, bad, n, &cap, "version");
    ck_assert_int_eq(vttt_model_state_load(r, snap, n), VTTT_OK);
    free(bad), free(snap), free(tok);
    vttt_model_state_free(&s), vttt_model_state_free(&r), vttt_model_state_free(&o), vttt_model_state_free(&b2);
    vttt_model_free(&m), vttt_model_free(&m2);
}
END_TEST

/* Writes pos into the header and layer_pos into every layer of a TTT
 * model's snapshot d (n bytes) and recomputes the checksum, as anyone can. */
static void forge_position(uint8_t *d, size_t n, const vttt_model_config *c, int64_t pos, int64_t layer_pos) {
    int L = c->num_hidden_layers;
    size_t conv = c->pre_conv ? (size_t)L * (c->conv_kernel - 1) * c->hidden_size * sizeof(float) : 0;
    size_t layer = (n - 48 - conv) / L;
    ck_assert_uint_eq((n - 48 - conv) % L, 0);
    memcpy(d + 24, &pos, 8);
    for (int i = 0; i < L; i++) memcpy(d + 40 + i * layer, &layer_pos, 8);
    uint64_t sum = fnv1a(d, n - 8);
    memcpy(d + n - 8, &sum, 8);
}

/* Case _i (TTT-MLP, TTT-Linear): a flipped bit in any byte is refused; a
 * forged position past VTTT_MAX_POSITION (2^40), or layers at another
 * position than the model, are refused even with a valid checksum; a state
 * just below the limit takes tokens up to it and refuses the next one
 * without changing (no signed overflow: test under UBSan too). */
START_TEST(test_snapshot_bounds) {
    tu_log cap;
    vttt_logger lg = tu_log_capture(&cap, VTTT_LOG_ERROR, 0);
    vttt_model_config c = case_config(_i);
    vttt_model *m = make_model(&c, 30 + _i, &lg);
    vttt_model_state *s = NULL, *r = NULL;
    ck_assert_int_eq(vttt_model_state_init(&s, m, 1, 0), VTTT_OK);
    ck_assert_int_eq(vttt_model_state_init(&r, m, 1, 0), VTTT_OK);
    int32_t *tok = rand_tokens(2 * P, c.vocab_size, 11);
    ck_assert_int_eq(vttt_model_prefill(m, s, tok, 2 * P, NULL, 0), VTTT_OK);
    uint8_t *snap = NULL;
    size_t n = 0;
    ck_assert_int_eq(vttt_model_state_save(s, &snap, &n), VTTT_OK);
    uint8_t *bad = malloc(n);
    for (size_t i = 0; i < n; i++) {
        memcpy(bad, snap, n);
        bad[i] ^= (uint8_t)(1u << (i % 8));
        ck_assert_msg(vttt_model_state_load(r, bad, n) == VTTT_EFORMAT, "a flip in byte %zu of %zu was accepted", i, n);
        ck_assert_int_eq(vttt_model_state_position(r), 0);
    }
    const int64_t max = (int64_t)1 << 40; /* VTTT_MAX_POSITION */
    int64_t forged[] = {INT64_MAX - 3, INT64_MAX, max + P, INT64_MIN};
    for (size_t k = 0; k < sizeof forged / sizeof forged[0]; k++) {
        memcpy(bad, snap, n);
        forge_position(bad, n, &c, forged[k], forged[k]);
        expect_refused(r, bad, n, &cap, "position");
    }
    memcpy(bad, snap, n);
    forge_position(bad, n, &c, 2 * P, 3 * P);
    expect_refused(r, bad, n, &cap, "differs from the model's");
    /* just below the limit: the last frame fits, the next token does not */
    memcpy(bad, snap, n);
    forge_position(bad, n, &c, max - P, max - P);
    ck_assert_int_eq(vttt_model_state_load(r, bad, n), VTTT_OK);
    ck_assert_int_eq(vttt_model_prefill(m, r, tok, P, NULL, 0), VTTT_OK);
    ck_assert_int_eq(vttt_model_state_position(r), max);
    cap.text[0] = 0;
    ck_assert_int_eq(vttt_model_decode(m, r, tok, NULL), VTTT_EINVAL);
    ck_assert_msg(strstr(cap.text, "past the limit"), "message: %s", cap.text);
    ck_assert_int_eq(vttt_model_state_position(r), max);
    free(bad), free(snap), free(tok);
    vttt_model_state_free(&s), vttt_model_state_free(&r);
    vttt_model_free(&m);
}
END_TEST

int main(void) {
    TCase *tc = tcase_create("model_state");
    tcase_set_timeout(tc, 60);
    tcase_add_loop_test(tc, test_gather_scatter, 0, 3);
    tcase_add_test(tc, test_gather_refuses);
    tcase_add_loop_test(tc, test_snapshot_roundtrip, 0, 3);
    tcase_add_test(tc, test_snapshot_refused);
    tcase_add_loop_test(tc, test_snapshot_bounds, 0, 2);
    return tu_run("model_state", tc, CK_FORK_GETENV);
}
