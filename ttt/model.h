/*
 * ttt/model.h — the language model on top of the sequence layers:
 * token embedding (+ a learned in-frame position embedding for video),
 * blocks, final RMSNorm and the LM head (tied to the embedding by default).
 *
 * Block i (DESIGN.md "The TTT layer"):
 *   [pre_conv: h += conv(RMSNorm(h))]   Mamba backbone
 *   h += SeqLayer(RMSNorm(h))           TTT-Linear, TTT-MLP or attention
 *   h += SwiGLU(RMSNorm(h))
 *
 * A model directory holds config.json (the reference TTTConfig keys plus
 * vttt's own: seq_modeling_block, tokens_per_frame) and model.safetensors
 * with the reference TTTForCausalLM parameter names and layouts
 * (model.embed_tokens.weight, model.layers.{i}.seq_modeling_block.W1, ...,
 * lm_head.weight absent when tied). Include this header from tools/, tests/
 * and train/ only.
 *
 * Conventions as in ttt.h: 0 or a negative VTTT_E* code, messages through
 * the model's logger, tokens are int32 (B, T) row-major, floats are fp32.
 * A model (and a state) is used by one thread at a time.
 */
#ifndef VTTT_MODEL_H
#define VTTT_MODEL_H

#include "ttt.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Field names are the config.json keys unless noted. */
typedef struct vttt_model_config {
    int vocab_size;              /* V */
    int hidden_size;             /* D */
    int intermediate_size;       /* SwiGLU width I */
    int num_hidden_layers;       /* L */
    int num_attention_heads;     /* H (TTT heads too) */
    float rms_norm_eps;          /* 1e-6 */
    float initializer_range;     /* std of the normal init of linear and embedding weights (0.02) */
    int max_position_embeddings; /* default KV-cache length of attention states (2048) */
    int tie_word_embeddings;     /* 1: lm_head.weight is model.embed_tokens.weight */
    float rope_theta;            /* 10000 */
    /* "seq_modeling_block": "ttt" | "attention" with "ttt_layer_type":
     * "linear" | "mlp" */
    vttt_layer_kind seq_kind;
    int mini_batch_size;         /* TTT mini-batch b (16) */
    float ttt_base_lr;           /* 1.0 */
    int pre_conv;                /* Mamba backbone: conv before the sequence layer */
    int conv_kernel;             /* 4, pre-conv and conv_q/conv_k */
    int share_qk;                /* Mamba backbone (TTT only) */
    int use_gate;                /* Mamba backbone (TTT only) */
    int scan_checkpoint_group_size; /* training: mini-batches per stored inner state (0 = auto; memory only) */
    int bos_token_id;            /* 1; -1 = none (null) */
    int eos_token_id;            /* 2; -1 = none */
    int pad_token_id;            /* -1 = none (null) */
    /* vttt: tokens per video frame (0 = text). > 0 adds a learned
     * (tokens_per_frame, D) embedding of the position inside the frame
     * (model.frame_pos_embed.weight) and makes the target shift
     * tokens_per_frame; for TTT it must be a multiple of mini_batch_size. */
    int tokens_per_frame;
} vttt_model_config;

/* The reference TTTConfig defaults (the 1b sizes, vocab 32000, Transformer
 * backbone, TTT-Linear). */
vttt_model_config vttt_model_default_config(void);
/* Sets the four sizes (hidden, intermediate, layers, heads) of a preset:
 * "125m", "350m", "760m", "1b" (the paper's) or the small "tiny" (D 128,
 * 4 layers) and "test" (D 32, 2 layers). VTTT_EINVAL for another name. */
int vttt_model_config_preset(vttt_model_config *cfg, const char *name, const vttt_logger *lg);
/* "transformer": no pre-conv, separate q/k, no gate; "mamba": pre_conv,
 * share_qk, use_gate. VTTT_EINVAL for another name. */
int vttt_model_config_backbone(vttt_model_config *cfg, const char *name, const vttt_logger *lg);
/* VTTT_EINVAL with a message naming the field for a bad or inconsistent
 * configuration. */
int vttt_model_config_check(const vttt_model_config *cfg, const vttt_logger *lg);
/* Distance from an input token to its target: tokens_per_frame, or 1. */
int vttt_model_config_target_shift(const vttt_model_config *cfg);

/* config.json. Reading rejects bad JSON, wrong value types, unknown keys
 * and unknown values (VTTT_EFORMAT) and failing vttt_model_config_check
 * (VTTT_EFORMAT, naming the file); Hugging Face's generic keys
 * (architectures, torch_dtype, use_cache, ...) are accepted and ignored.
 * Writing is atomic (temporary file, fsync, rename). */
int vttt_model_config_read(vttt_model_config *cfg, const char *path, const vttt_logger *lg);
/* What vttt_model_config_read does after reading the file (at most 1 MiB,
 * regular files only): parses and checks buf (n bytes, one JSON document),
 * name standing for the file in messages. No side effects besides the log:
 * the entry point for fuzzing. */
int vttt_model_config_parse(vttt_model_config *cfg, const char *buf, size_t n, const char *name,
                            const vttt_logger *lg);
int vttt_model_config_write(const vttt_model_config *cfg, const char *path, const vttt_logger *lg);

typedef struct vttt_model vttt_model;

/* Allocates a model (parameters zero) for cfg. */
int vttt_model_init(vttt_model **out, const vttt_model_config *cfg, const vttt_logger *lg);
void vttt_model_free(vttt_model **m);
const vttt_model_config *vttt_model_get_config(const vttt_model *m);
/* Reference-like initialisation from a seed: linear and embedding weights
 * normal(0, initializer_range); TTT W1, W2 and learnable_ttt_lr_weight
 * normal(0, 0.02); conv weights and biases uniform(+-1/sqrt(conv_kernel))
 * (PyTorch's Conv1d default); norm weights 1; other biases and
 * learnable_token_idx 0. Deterministic for a seed. */
void vttt_model_init_weights(vttt_model *m, uint64_t seed);

/* Changes ttt_base_lr of the model and its TTT layers (the reference
 * recipe warms the TTT-MLP inner base lr up during training); the config,
 * and so a saved config.json, reflects it. VTTT_EINVAL for lr < 0. */
int vttt_model_set_ttt_base_lr(vttt_model *m, float lr);
/* FLOPs of one forward over (B, T) tokens, multiply-adds counted as 2
 * (backward: about twice that). */
double vttt_model_forward_flops(const vttt_model_config *cfg, int B, int T);

/* One named parameter tensor with its gradient (same layout). */
typedef struct vttt_model_tensor {
    char name[96];      /* reference state-dict name */
    float *data;
    float *grad;
    int ndim;
    int64_t shape[VTTT_MAX_DIMS];  /* reference layout */
    int64_t numel;
} vttt_model_tensor;
/* Every parameter tensor (a tied lm_head is not listed: it is
 * model.embed_tokens.weight). Valid until vttt_model_free. */
const vttt_model_tensor *vttt_model_tensors(const vttt_model *m, int *n);
/* The tensor of that name, or NULL. */
const vttt_model_tensor *vttt_model_find_tensor(const vttt_model *m, const char *name);
size_t vttt_model_num_params(const vttt_model *m);   /* scalars, tied lm_head once */

/* The parameters and gradients as a few flat arrays (the model's own block
 * and one per sequence layer), for optimizers and gradient all-reduce.
 * Padding between tensors is zero in both and stays zero under any
 * element-wise update. Returns the count (num_hidden_layers + 1); fills at
 * most max. */
typedef struct vttt_model_block {
    float *params;
    float *grads;
    size_t n;
} vttt_model_block;
int vttt_model_blocks(vttt_model *m, vttt_model_block *out, int max);
void vttt_model_zero_grads(vttt_model *m);

/* Full-sequence forward over tokens (B, T). targets (B, T): the token each
 * position predicts, < 0 ignored; NULL: the tokens shifted by the target
 * shift (the last shift positions ignored). *loss (may be NULL) is the mean
 * cross-entropy over the counted targets (0 when there are none); logits
 * (B, T, V) is filled when not NULL. train != 0 keeps the activations that
 * vttt_model_backward needs (no (B, T, V) logits among them); train == 0
 * runs the generation path chunk by chunk, in memory independent of T for
 * TTT models. Every sequence starts from the learned initial state.
 * VTTT_EINVAL for a token or target outside the vocabulary. With train ==
 * 0 a loss that is not finite (weights large enough to overflow) is
 * VTTT_ENAN with a message (the losses stay readable); with train != 0
 * the caller checks *loss (the trainer stops on it). */
int vttt_model_forward(vttt_model *m, const int32_t *tokens, const int32_t *targets, int B, int T, int train,
                       float *loss, float *logits);
/* Per-position losses (B, T) of the last forward (0 where ignored) and the
 * number of counted targets; NULL before any forward. */
const float *vttt_model_losses(const vttt_model *m, int64_t *n_targets);
/* Logits (n_targets, V) of the rows of the last train forward that had a
 * target, in row order: the LM head over those rows only, for scoring a
 * few positions of each sequence (the multi-query recall benchmark).
 * VTTT_EINVAL before a train forward. */
int vttt_model_target_logits(vttt_model *m, float *logits);
/* Backward of the last train forward: accumulates (+=) the gradient of
 * dloss * loss into every parameter gradient. */
int vttt_model_backward(vttt_model *m, float dloss);

/* A training step on a backend's device (model_dev.c): the same forward
 * and backward as above with every op on the backend (CUDA: cuBLAS, the
 * table's kernels, the fused TTT kernels through vttt_layer_dev), from the
 * learned initial state, TTT layers only. The parameters live on the
 * device (fp32, uploaded from m); the gradients accumulate there until
 * vttt_model_dev_grads_to_host adds them into m's. Buffers for up to
 * max_B x max_T tokens are allocated at init (one arena for the model and
 * one per layer); a step allocates nothing on the device. */
typedef struct vttt_model_dev vttt_model_dev;
int vttt_model_dev_init(vttt_model_dev **out, vttt_model *m, const vttt_backend *be, int max_B, int max_T);
void vttt_model_dev_free(vttt_model_dev **d);
int vttt_model_dev_upload(vttt_model_dev *d);
/* tokens, targets: host (B, T), as vttt_model_forward; *loss the mean. */
int vttt_model_dev_step(vttt_model_dev *d, const int32_t *tokens, const int32_t *targets, int B, int T, float *loss);
int vttt_model_dev_grads_to_host(vttt_model_dev *d);
/* Generation on the device (model_dev_gen.c): a state per B sequences
 * (the layers' device states and the pre-conv states); prefill and decode
 * as vttt_model_prefill / vttt_model_decode, tokens and logits on the
 * host; a decode step replays each layer's CUDA graph. */
typedef struct vttt_model_dev_state vttt_model_dev_state;
int vttt_model_dev_state_init(vttt_model_dev_state **out, vttt_model_dev *d, int B);
void vttt_model_dev_state_free(vttt_model_dev_state **s);
int vttt_model_dev_state_reset(vttt_model_dev_state *s);
int64_t vttt_model_dev_state_position(const vttt_model_dev_state *s);
int vttt_model_dev_prefill(vttt_model_dev *d, vttt_model_dev_state *s, const int32_t *tokens, int T, float *logits,
                           int all_logits);
int vttt_model_dev_decode(vttt_model_dev *d, vttt_model_dev_state *s, const int32_t *tokens, float *logits);

/* Per-sequence generation state: one vttt_state per layer (constant size
 * for TTT; attention's KV cache holds max_T tokens) plus the pre-conv
 * states. */
typedef struct vttt_model_state vttt_model_state;
/* max_T: attention's KV-cache length (0: max_position_embeddings);
 * ignored by TTT models. */
int vttt_model_state_init(vttt_model_state **out, const vttt_model *m, int B, int max_T);
void vttt_model_state_free(vttt_model_state **s);
void vttt_model_state_reset(vttt_model_state *s);
/* dst = src (same model and B; VTTT_EINVAL otherwise): forks a sequence,
 * or keeps a state to come back to. */
int vttt_model_state_copy(vttt_model_state *dst, const vttt_model_state *src);
size_t vttt_model_state_bytes(const vttt_model_state *s);
int64_t vttt_model_state_position(const vttt_model_state *s);
/* Continues the sequences of s by tokens (B, T) (VTTT_EINVAL, s unchanged,
 * past VTTT_MAX_POSITION tokens). logits: (B, T, V) when
 * all_logits, else (B, V) of the last position; may be NULL. */
int vttt_model_prefill(vttt_model *m, vttt_model_state *s, const int32_t *tokens, int T, float *logits,
                       int all_logits);
/* One token per sequence: tokens (B), logits (B, V). */
int vttt_model_decode(vttt_model *m, vttt_model_state *s, const int32_t *tokens, float *logits);

/* Batching separate sequences into one model step (ttt/model_state_batch.c).
 * gather: dst (B = n) = the n one-sequence states src[i] (B = 1), sequence
 * i from src[i]. The sequences share one position counter, so their
 * positions must agree: equal for models with attention layers; for TTT
 * models congruent modulo the mini-batch size and tokens_per_frame (what
 * rotary, the mini-batch split and the in-frame embedding see), e.g. every
 * stream at a frame boundary. dst takes src[0]'s position. scatter: the
 * inverse, into the states that were gathered (same order): dst[i] =
 * sequence i of src, each position advanced by the tokens src took since
 * the gather (src's position - dst[0]'s). VTTT_EINVAL with a message for
 * other models, batch sizes or positions, or a KV cache too short. */
int vttt_model_state_gather(vttt_model_state *dst, vttt_model_state *const *src, int n);
int vttt_model_state_scatter(vttt_model_state *const *dst, int n, const vttt_model_state *src);

/* Snapshots (ttt/model_state_io.c): the whole state as bytes (host byte
 * order): magic, version, a fingerprint of the model's configuration, the
 * batch size, the position, each layer's state, the pre-conv states and a
 * checksum. *out is malloc'd (the caller frees). Loading into s (same
 * model configuration and B) checks all of it and that every value is
 * finite: VTTT_EFORMAT with a message for a snapshot of another model or
 * batch size, or truncated or damaged bytes, or positions past
 * VTTT_MAX_POSITION or differing between layers; s is unchanged then.
 * The checksum (FNV-1a over every byte) catches damage, not forgery. */
int vttt_model_state_save(const vttt_model_state *s, uint8_t **out, size_t *n);
int vttt_model_state_load(vttt_model_state *s, const uint8_t *data, size_t n);
/* 64-bit FNV-1a fingerprint of the configuration fields that shape the
 * model and its state (everything but training-only settings). */
uint64_t vttt_model_config_fingerprint(const vttt_model_config *cfg);

/* Training on long sequences window by window: a train forward over tokens
 * (B, T) (B = the state's) that starts from the state s instead of the
 * learned initial state and leaves in s the state after the window, so
 * that the next window continues the sequence. targets as in
 * vttt_model_forward (NULL: shifted inside this window). The state's
 * position must be a multiple of mini_batch_size (windows are mini-batch
 * aligned); on failure s is unspecified (reset it). vttt_model_backward
 * then truncates the gradient at the window edge: the carried state is a
 * constant, and the learned initial state gets gradient only from windows
 * at position 0 (the carried conv inputs still feed the conv weights'
 * gradient). Attention layers have no constant-size state: their
 * windows are independent. */
int vttt_model_forward_carry(vttt_model *m, vttt_model_state *s, const int32_t *tokens, const int32_t *targets,
                             int T, float *loss, float *logits);

/* Model directory: DIR/config.json + DIR/model.safetensors. Loading checks
 * the config, that every tensor is present with its exact shape, that there
 * are no others, and that values are finite: VTTT_EFORMAT (VTTT_EIO for
 * unreadable files) with a message naming the file and the tensor. F16,
 * BF16 and F64 tensors are converted; lm_head.weight may be present when
 * tied (it must then equal the embedding). Saving writes F32, creates DIR
 * if needed, and replaces each file atomically. */
int vttt_model_load(vttt_model **out, const char *dir, const vttt_logger *lg);
int vttt_model_save(const vttt_model *m, const char *dir);
/* The parts of the above that other parameter sets built from
 * vttt_model_tensor (the frame tokenizer's) use too: writing n tensors as
 * F32 to a safetensors file with n_meta metadata pairs, and checking that
 * a loaded tensor is finite (VTTT_EFORMAT naming path, tensor and index). */
int vttt_model_tensors_write(const char *path, const vttt_model_tensor *t, int n, const char **meta, int n_meta,
                             const vttt_logger *lg);
int vttt_model_tensor_check_finite(const vttt_model_tensor *t, const char *path, const vttt_logger *lg);

#ifdef __cplusplus
}
#endif
#endif
