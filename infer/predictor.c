/*
 * The predictor: a video model and its frame tokenizer loaded once and
 * checked to agree, plus the scratch that the (serialized) pushes share.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "infer_internal.h"

#define FNV_PRIME 0x100000001b3ull

/* Fingerprint of the model: its configuration's and every parameter's
 * bytes, so that a snapshot is only restored into the model it came from. */
static uint64_t model_fingerprint(const vttt_model *m) {
    uint64_t h = vttt_model_config_fingerprint(vttt_model_get_config(m));
    int n = 0;
    const vttt_model_tensor *t = vttt_model_tensors(m, &n);
    for (int i = 0; i < n; i++) {
        const uint8_t *b = (const uint8_t *)t[i].data;
        size_t nb = (size_t)t[i].numel * sizeof(float);
        for (size_t j = 0; j < nb; j++) h = (h ^ b[j]) * FNV_PRIME;
    }
    return h;
}

/* Model and tokenizer agree on tokens per frame and vocabulary. */
static int check_pair(const vttt_model *m, const vttt_encoder *e, const char *model_dir, const char *encoder_dir,
                      const vttt_logger *lg) {
    const vttt_model_config *c = vttt_model_get_config(m);
    int P = vttt_encoder_tokens_per_frame(e), V = vttt_encoder_vocab_size(e);
    if (c->tokens_per_frame <= 0) {
        vttt_log(lg, VTTT_LOG_ERROR,
                 "predictor: %s is a text model (tokens_per_frame 0); train a video model on the token shards "
                 "of tokenizer %s (`vttt encoder encode`, then `vttt train --data`)",
                 model_dir, encoder_dir);
        return VTTT_EFORMAT;
    }
    if (c->tokens_per_frame != P || c->vocab_size != V) {
        vttt_log(lg, VTTT_LOG_ERROR,
                 "predictor: model %s (tokens_per_frame %d, vocab %d) does not match tokenizer %s (%d tokens per "
                 "frame, vocab %d); use the tokenizer whose token shards the model was trained on",
                 model_dir, c->tokens_per_frame, c->vocab_size, encoder_dir, P, V);
        return VTTT_EFORMAT;
    }
    return VTTT_OK;
}

/* A training run directory (of the model or of the tokenizer) stands for
 * its newest checkpoint (RUN/latest). */
static const char *model_path(const char *dir, char *buf, size_t n) {
    snprintf(buf, n, "%s/config.json", dir);
    if (access(buf, F_OK) == 0) return dir;
    snprintf(buf, n, "%s/latest/config.json", dir);
    if (access(buf, F_OK) != 0) return dir;
    snprintf(buf, n, "%s/latest", dir);
    return buf;
}

int vttt_predictor_open(vttt_predictor **out, const char *model_dir, const char *encoder_dir,
                        const vttt_logger *lg) {
    if (!out || !model_dir || !encoder_dir) return VTTT_EINVAL;
    *out = NULL;
    char buf[4096], ebuf[4096];
    model_dir = model_path(model_dir, buf, sizeof buf);
    encoder_dir = model_path(encoder_dir, ebuf, sizeof ebuf);
    vttt_predictor *p = calloc(1, sizeof *p);
    if (!p) return VTTT_ENOMEM;
    if (lg) p->log = *lg;
    int err = vttt_model_load(&p->m, model_dir, lg);
    if (!err) err = vttt_encoder_load(&p->e, encoder_dir, lg);
    if (!err) err = check_pair(p->m, p->e, model_dir, encoder_dir, lg);
    if (err) {
        vttt_predictor_close(&p);
        return err;
    }
    p->S = vttt_encoder_get_config(p->e)->image_size;
    p->P = vttt_encoder_tokens_per_frame(p->e);
    p->V = vttt_encoder_vocab_size(p->e);
    p->fingerprint = model_fingerprint(p->m);
    p->M = vttt_encoder_motion_tokens(p->e);
    p->Vc = vttt_encoder_cell_vocab(p->e);
    vttt_encoder_motion_token_range(p->e, 0, &p->mlo[0], &p->mn);
    vttt_encoder_motion_token_range(p->e, 1, &p->mlo[1], &p->mn);
    p->decoding = vttt_encoder_zero_token(p->e) >= 0 ? VTTT_DECODE_MIXTURE : VTTT_DECODE_EXPECT; /* AUTO */
    p->q = malloc((size_t)vttt_encoder_latent_dim(p->e) * p->P * sizeof(float));
    p->pz = malloc((size_t)p->P * sizeof(float));
    size_t fb = (size_t)p->S * p->S * 3;
    p->mix = malloc(fb * sizeof(float)), p->rank_frame = malloc(fb), p->mref = malloc(fb);
    p->mtok = malloc((size_t)4 * (p->M + 1) * sizeof(int32_t));
    p->mp = malloc((size_t)2 * (p->M + 1) * sizeof(float));
    p->rank_tok = malloc((size_t)VTTT_DECODE_TOP * p->P * sizeof(int32_t));
    p->rank_p = malloc((size_t)VTTT_DECODE_TOP * p->P * sizeof(float));
    if (!p->q || !p->pz || !p->mix || !p->rank_frame || !p->mref || !p->mtok || !p->mp || !p->rank_tok || !p->rank_p) {
        vttt_predictor_close(&p);
        return VTTT_ENOMEM;
    }
    *out = p;
    return VTTT_OK;
}

void vttt_predictor_close(vttt_predictor **pp) {
    if (!pp || !*pp) return;
    vttt_predictor *p = *pp;
    vttt_model_state_free(&p->roll);
    vttt_model_state_free(&p->batch);
    vttt_model_free(&p->m);
    vttt_encoder_free(&p->e);
    vttt_predictor_set_snapshot_key(p, NULL, 0); /* wipes the key */
    free(p->logits);
    free(p->tok);
    free(p->q);
    free(p->pz);
    free(p->mix), free(p->rank_frame), free(p->mref), free(p->rank_tok), free(p->rank_p);
    free(p->mtok), free(p->mp);
    free(p->ref);
    free(p);
    *pp = NULL;
}

int vttt_predictor_frame_size(const vttt_predictor *p) { return p->S; }
int vttt_predictor_tokens_per_frame(const vttt_predictor *p) { return p->P; }
vttt_model *vttt_predictor_model(vttt_predictor *p) { return p->m; }
vttt_encoder *vttt_predictor_encoder(vttt_predictor *p) { return p->e; }

int vttt_decoding_parse(const char *s) {
    if (!s) return -2;
    return !strcmp(s, "expect") ? VTTT_DECODE_EXPECT : !strcmp(s, "argmax") ? VTTT_DECODE_ARGMAX
         : !strcmp(s, "sample") ? VTTT_DECODE_SAMPLE : !strcmp(s, "mixture") ? VTTT_DECODE_MIXTURE
         : !strcmp(s, "auto") ? VTTT_DECODE_AUTO : -2;
}

int vttt_predictor_decoding(const vttt_predictor *p) { return p->decoding; }

int vttt_predictor_set_decoding(vttt_predictor *p, int mode) {
    if (!p || mode < VTTT_DECODE_AUTO || mode > VTTT_DECODE_MIXTURE) return VTTT_EINVAL;
    if (mode == VTTT_DECODE_AUTO) mode = vttt_encoder_zero_token(p->e) >= 0 ? VTTT_DECODE_MIXTURE : VTTT_DECODE_EXPECT;
    if (mode == VTTT_DECODE_MIXTURE && vttt_encoder_zero_token(p->e) < 0) {
        vttt_log(&p->log, VTTT_LOG_ERROR, "predictor: --decode mixture needs a DELTA tokenizer");
        return VTTT_EINVAL;
    }
    p->decoding = mode;
    return VTTT_OK;
}

int infer_scratch_reserve(vttt_predictor *p, size_t rows) {
    if (rows <= p->cap_rows) return VTTT_OK;
    float *lg = realloc(p->logits, rows * p->V * sizeof(float));
    if (lg) p->logits = lg;
    int32_t *tk = lg ? realloc(p->tok, rows * sizeof(int32_t)) : NULL;
    if (tk) p->tok = tk;
    if (!lg || !tk) {
        vttt_log(&p->log, VTTT_LOG_ERROR, "predictor: cannot allocate logits for %zu tokens", rows);
        return VTTT_ENOMEM;
    }
    p->cap_rows = rows;
    return VTTT_OK;
}

/* The tokens row i of a frame's logits may hold: [*lo, *hi). */
static void row_range(const vttt_predictor *p, int i, int *lo, int *hi) {
    int a = i % p->P;
    if (a < p->M) *lo = p->mlo[a & 1], *hi = p->mlo[a & 1] + p->mn;
    else *lo = 0, *hi = p->Vc;
}

/* Tokens drawn from the softmax of each row (over its range), with a
 * uniform number from a hash of (salt, row): the same stream, frame and
 * row draw the same. */
static void sample_rows(const vttt_predictor *p, const float *logits, int n, uint64_t salt, int32_t *out) {
    for (int i = 0; i < n; i++) {
        int lo, hi;
        row_range(p, i, &lo, &hi);
        const float *r = logits + (size_t)i * p->V;
        uint64_t z = salt * 0x9E3779B97F4A7C15ULL + (uint64_t)i * 0xD1B54A32D192ED03ULL + 1;
        z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
        z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
        double u = (double)((z ^ (z >> 31)) >> 11) * (1.0 / 9007199254740992.0);
        float mx = r[lo];
        for (int v = lo + 1; v < hi; v++) mx = r[v] > mx ? r[v] : mx;
        double sum = 0.0;
        for (int v = lo; v < hi; v++) sum += exp((double)(r[v] - mx));
        double acc = 0.0, target = u * sum;
        int pick = hi - 1;
        for (int v = lo; v < hi; v++) {
            acc += exp((double)(r[v] - mx));
            if (acc > target) {
                pick = v;
                break;
            }
        }
        out[i] = pick;
    }
}

/* MIXTURE: rank_tok/rank_p (TOP, P) = each cell's most likely tokens other
 * than "no change" and their probabilities; pz = "no change"'s. */
static void rank_cells(vttt_predictor *p, const float *logits, int zero) {
    int P = p->P - p->M, V = p->Vc;
    for (int c = 0; c < P; c++) {
        const float *r = logits + (size_t)c * p->V;
        float mx = r[0];
        for (int v = 1; v < V; v++) mx = r[v] > mx ? r[v] : mx;
        double sum = 0.0;
        for (int v = 0; v < V; v++) sum += exp((double)(r[v] - mx));
        p->pz[c] = (float)(exp((double)(r[zero] - mx)) / sum);
        for (int k = 0; k < VTTT_DECODE_TOP; k++) { /* the k-th best, skipping "no change" and earlier ranks */
            int best = -1;
            for (int v = 0; v < V; v++) {
                if (v == zero) continue;
                int taken = 0;
                for (int j = 0; j < k; j++) taken |= p->rank_tok[(size_t)j * P + c] == v;
                if (!taken && (best < 0 || r[v] > r[best])) best = v;
            }
            p->rank_tok[(size_t)k * P + c] = best;
            p->rank_p[(size_t)k * P + c] = (float)(exp((double)(r[best] - mx)) / sum);
        }
    }
}

/* The expected reference of MIXTURE and EXPECT, into p->mref: each region
 * of ref moved by the 4 combinations of the two likeliest displacements of
 * each axis (the softmax of each motion row over its axis's tokens), and
 * averaged with the products of their probabilities, renormalized. */
static int expected_ref(vttt_predictor *p, const float *logits, const uint8_t *ref) {
    int S = p->S, M = p->M, bs = S / VTTT_ENCODER_MOTION_GRID;
    size_t fb = (size_t)S * S * 3;
    for (int i = 0; i < M; i++) { /* row i: axis i & 1 of region i / 2 */
        const float *row = logits + (size_t)i * p->V;
        int lo = p->mlo[i & 1], hi = lo + p->mn, b0 = lo, b1 = -1;
        for (int v = lo; v < hi; v++) b0 = row[v] > row[b0] ? v : b0;
        for (int v = lo; v < hi; v++)
            if (v != b0 && (b1 < 0 || row[v] > row[b1])) b1 = v;
        if (b1 < 0) b1 = b0; /* one token on this axis: the same twice, weights still sum right */
        double sum = 0.0;
        for (int v = lo; v < hi; v++) sum += exp((double)(row[v] - row[b0]));
        p->mtok[i] = b0, p->mtok[(size_t)M + i] = b1; /* ranks 0 and 1 of the row; combined below */
        p->mp[i] = (float)(1.0 / sum), p->mp[(size_t)M + i] = b1 == b0 ? 0.0f : (float)(exp((double)(row[b1] - row[b0])) / sum);
    }
    for (size_t i = 0; i < fb; i++) p->mix[i] = 0.0f;
    int32_t *combo = p->mtok + (size_t)2 * M;
    for (int c = 0; c < 4; c++) { /* c bit 0: rank of x, bit 1: rank of y */
        for (int r = 0; r < M / 2; r++) {
            combo[2 * r] = p->mtok[(size_t)(c & 1) * M + 2 * r];
            combo[2 * r + 1] = p->mtok[(size_t)(c >> 1) * M + 2 * r + 1];
        }
        int err = vttt_encoder_motion_ref(p->e, ref, combo, p->rank_frame);
        if (err) return err;
        for (size_t i = 0; i < fb; i++) {
            size_t px = i / 3;
            int r = (int)(px / S / bs) * VTTT_ENCODER_MOTION_GRID + (int)(px % S) / bs;
            p->mix[i] += p->mp[(size_t)(c & 1) * M + 2 * r] * p->mp[(size_t)(c >> 1) * M + 2 * r + 1] *
                         (float)p->rank_frame[i];
        }
    }
    for (size_t i = 0; i < fb; i++) {
        size_t px = i / 3;
        int r = (int)(px / S / bs) * VTTT_ENCODER_MOTION_GRID + (int)(px % S) / bs;
        float w = (p->mp[2 * r] + p->mp[(size_t)M + 2 * r]) * (p->mp[2 * r + 1] + p->mp[(size_t)M + 2 * r + 1]);
        float v = rintf(p->mix[i] / w);
        p->mref[i] = (uint8_t)(v < 0.0f ? 0.0f : v > 255.0f ? 255.0f : v);
    }
    return VTTT_OK;
}

/* MIXTURE's frame: (pz * ref + sum_k p_k * decode(rank k)) / (pz + sum_k p_k), cell by cell (logits:
 * the cells' rows; ref: the shifted reference). */
static int mixture_frame(vttt_predictor *p, const float *logits, const uint8_t *ref, uint8_t *out) {
    int S = p->S, P = p->P - p->M, f = vttt_encoder_get_config(p->e)->factor, G = S / f;
    size_t fb = (size_t)S * S * 3;
    rank_cells(p, logits, vttt_encoder_zero_token(p->e));
    for (size_t i = 0; i < fb; i++) {
        size_t px = i / 3;
        int cell = (int)(px / S / f) * G + (int)(px % S) / f;
        p->mix[i] = p->pz[cell] * (ref ? (float)ref[i] : 128.0f);
    }
    int err = VTTT_OK;
    for (int k = 0; k < VTTT_DECODE_TOP && !err; k++) {
        err = vttt_encoder_token_latent(p->e, p->rank_tok + (size_t)k * P, 1, p->q);
        if (!err) err = vttt_encoder_decode_latent(p->e, ref, p->q, 1, p->rank_frame);
        for (size_t i = 0; i < fb && !err; i++) {
            size_t px = i / 3;
            int cell = (int)(px / S / f) * G + (int)(px % S) / f;
            p->mix[i] += p->rank_p[(size_t)k * P + cell] * (float)p->rank_frame[i];
        }
    }
    for (size_t i = 0; i < fb && !err; i++) {
        size_t px = i / 3;
        int cell = (int)(px / S / f) * G + (int)(px % S) / f;
        float w = p->pz[cell];
        for (int k = 0; k < VTTT_DECODE_TOP; k++) w += p->rank_p[(size_t)k * P + cell];
        float v = rintf(p->mix[i] / w);
        out[i] = (uint8_t)(v < 0.0f ? 0.0f : v > 255.0f ? 255.0f : v);
    }
    return err;
}

int infer_next_frame(vttt_predictor *p, const float *logits, uint64_t salt, const uint8_t *ref, int32_t *tokens,
                     uint8_t *out) {
    int err = infer_argmax(p, logits, p->P, p->decoding == VTTT_DECODE_SAMPLE ? NULL : tokens);
    if (err) return err;
    if (p->decoding == VTTT_DECODE_SAMPLE) sample_rows(p, logits, p->P, salt, tokens);
    if (!out) return VTTT_OK;
    /* the cells are decoded on the reference moved by the predicted motion: by the tokens chosen (ARGMAX,
     * SAMPLE), or the expectation over each region's likeliest motions (MIXTURE, EXPECT) */
    const float *cl = logits + (size_t)p->M * p->V;
    if (p->M) {
        if (p->decoding == VTTT_DECODE_MIXTURE || p->decoding == VTTT_DECODE_EXPECT) err = expected_ref(p, logits, ref);
        else err = vttt_encoder_motion_ref(p->e, ref, tokens, p->mref);
        if (err) return err;
        ref = p->mref;
    }
    if (p->decoding == VTTT_DECODE_MIXTURE) return mixture_frame(p, cl, ref, out);
    /* EXPECT with a DELTA tokenizer: each cell keeps the reference with the probability of its "no change"
     * token, and takes the decoding of the expected latent of the other tokens otherwise */
    int split = p->decoding == VTTT_DECODE_EXPECT && vttt_encoder_zero_token(p->e) >= 0;
    if (p->decoding == VTTT_DECODE_EXPECT)
        vttt_encoder_expected_latent(p->e, cl, p->P - p->M, p->V, p->q, split ? p->pz : NULL);
    else err = vttt_encoder_token_latent(p->e, tokens + p->M, 1, p->q);
    if (!err) err = vttt_encoder_decode_latent(p->e, ref, p->q, 1, out);
    if (!err && split) vttt_encoder_blend_unchanged(p->e, ref, p->pz, 1, out);
    return err;
}

int infer_argmax(const vttt_predictor *p, const float *logits, int n, int32_t *out) {
    int V = p->V;
    for (int i = 0; i < n; i++) {
        const float *r = logits + (size_t)i * V;
        for (int v = 0; v < V; v++)
            if (!isfinite(r[v])) {
                vttt_log(&p->log, VTTT_LOG_ERROR, "predict: the model's logit %d at token %d of the frame is not finite "
                         "(%g); the model's weights overflow (check the model)", v, i % p->P, (double)r[v]);
                return VTTT_ENAN;
            }
        int lo, hi;
        row_range(p, i, &lo, &hi);
        int best = lo;
        for (int v = lo; v < hi; v++)
            if (r[v] > r[best]) best = v;
        if (out) out[i] = best;
    }
    return VTTT_OK;
}
