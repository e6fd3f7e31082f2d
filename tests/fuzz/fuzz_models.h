/*
 * tests/fuzz/fuzz_models.h — the small models whose snapshots the snapshot
 * targets load; make_corpus.c writes their seeds with the same models, so
 * that the seeds carry the right fingerprints.
 */
#ifndef VTTT_FUZZ_MODELS_H
#define VTTT_FUZZ_MODELS_H

#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "infer.h"
#include "model.h"
#include "video_fixture.h"

#define FUZZ_MODEL_KINDS 3
#define FUZZ_MODEL_MAX_T 32 /* attention's KV-cache length (tokens) */
#define FUZZ_STREAM_SIZE 16 /* the stream predictor's frames: 16x16, 4 tokens each */
#define FUZZ_SNAPSHOT_KEY "fuzz-snapshot-key-0123456789"

/* Kind 0: TTT-MLP on the Mamba backbone (pre-conv and share_qk conv
 * states, 4 tokens per frame); 1: TTT-Linear, Transformer backbone; 2:
 * attention. vocab V, hidden 8, 2 layers, 2 heads, mini-batch 4. */
static inline int fuzz_model_config(int kind, int V, vttt_model_config *c, const vttt_logger *lg) {
    *c = vttt_model_default_config();
    int err = vttt_model_config_preset(c, "test", lg);
    c->vocab_size = V, c->hidden_size = 8, c->intermediate_size = 8, c->num_hidden_layers = 2;
    c->num_attention_heads = 2, c->mini_batch_size = 4, c->max_position_embeddings = FUZZ_MODEL_MAX_T;
    c->tokens_per_frame = kind == 0 ? 4 : 0;
    c->seq_kind = kind == 0 ? VTTT_LAYER_TTT_MLP : kind == 1 ? VTTT_LAYER_TTT_LINEAR : VTTT_LAYER_ATTENTION;
    return err ? err : vttt_model_config_backbone(c, kind == 0 ? "mamba" : "transformer", lg);
}

/* A model of that kind (vocabulary 8, weights from a fixed seed) and a
 * one-sequence state of it. */
static inline int fuzz_model_open(int kind, vttt_model **m, vttt_model_state **s, const vttt_logger *lg) {
    vttt_model_config c;
    int err = fuzz_model_config(kind, 8, &c, lg);
    if (!err) err = vttt_model_init(m, &c, lg);
    if (err) return err;
    vttt_model_init_weights(*m, 7 + (uint64_t)kind);
    if ((err = vttt_model_state_init(s, *m, 1, FUZZ_MODEL_MAX_T))) vttt_model_free(m);
    return err;
}

/* A predictor for the stream snapshots: the video fixture's tokenizer for
 * 16x16 frames (4 tokens per frame, vocabulary 125) and a kind-1 model
 * (TTT-Linear) for it, saved under dir (which must exist); signed: with the snapshot key
 * FUZZ_SNAPSHOT_KEY. */
static inline int fuzz_predictor_open(vttt_predictor **p, const char *dir, int signed_, const vttt_logger *lg) {
    char enc[1100], mod[1100]; /* dir is at most FUZZ_PATH_MAX (1024) */
    snprintf(enc, sizeof enc, "%s/enc", dir);
    snprintf(mod, sizeof mod, "%s/model", dir);
    int P = 0, V = 0, err = vf_save_tokenizer(enc, FUZZ_STREAM_SIZE, &P, &V);
    vttt_model_config c;
    vttt_model *m = NULL;
    if (!err) err = fuzz_model_config(1, V, &c, lg);
    c.tokens_per_frame = P;
    if (!err) err = vttt_model_init(&m, &c, lg);
    if (!err) vttt_model_init_weights(m, 11), err = vttt_model_save(m, mod);
    vttt_model_free(&m);
    if (!err) err = vttt_predictor_open(p, mod, enc, lg);
    if (!err && signed_)
        err = vttt_predictor_set_snapshot_key(*p, (const uint8_t *)FUZZ_SNAPSHOT_KEY, strlen(FUZZ_SNAPSHOT_KEY));
    return err;
}

#endif
