/*
 * tests/fuzz/fuzz_models.h — the small models whose state snapshots the
 * snapshot target loads; make_corpus.c writes its seeds with the same
 * models, so that the seeds carry their fingerprints.
 */
#ifndef VTTT_FUZZ_MODELS_H
#define VTTT_FUZZ_MODELS_H

#include "model.h"

#define FUZZ_MODEL_KINDS 3
#define FUZZ_MODEL_MAX_T 32 /* attention's KV-cache length (tokens) */

/* Kind 0: TTT-MLP on the Mamba backbone (pre-conv and share_qk conv
 * states, 4 tokens per frame); 1: TTT-Linear, Transformer backbone; 2:
 * attention. vocab 8, hidden 8, 2 layers, 2 heads, mini-batch 4. */
static inline int fuzz_model_open(int kind, vttt_model **m, vttt_model_state **s, const vttt_logger *lg) {
    vttt_model_config c = vttt_model_default_config();
    int err = vttt_model_config_preset(&c, "test", lg);
    c.vocab_size = 8, c.hidden_size = 8, c.intermediate_size = 8, c.num_hidden_layers = 2;
    c.num_attention_heads = 2, c.mini_batch_size = 4, c.max_position_embeddings = FUZZ_MODEL_MAX_T;
    c.tokens_per_frame = kind == 0 ? 4 : 0;
    c.seq_kind = kind == 0 ? VTTT_LAYER_TTT_MLP : kind == 1 ? VTTT_LAYER_TTT_LINEAR : VTTT_LAYER_ATTENTION;
    if (!err) err = vttt_model_config_backbone(&c, kind == 0 ? "mamba" : "transformer", lg);
    if (!err) err = vttt_model_init(m, &c, lg);
    if (err) return err;
    vttt_model_init_weights(*m, 7 + (uint64_t)kind);
    if ((err = vttt_model_state_init(s, *m, 1, FUZZ_MODEL_MAX_T))) vttt_model_free(m);
    return err;
}

#endif
