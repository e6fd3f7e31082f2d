/* `vttt lm`: scoring and sampling with a model directory. Internal to
 * tools/: cli_lm.c (dispatch, score), lm_input.c (token inputs, windows),
 * lm_position.c (loss by position), lm_sample.c (generation). */
#ifndef VTTT_TOOLS_LM_H
#define VTTT_TOOLS_LM_H

#include <stdint.h>

#include "ingest.h"
#include "model.h"

/* Where the tokens to score come from: a file of whitespace-separated ids
 * or a token shard (--tokens), or a text file encoded with a tokenizer
 * (--text, --tokenizer) the way `vttt ingest text` writes it: each
 * document after an <|endoftext|> token. */
typedef struct lm_input {
    const char *tokens, *text, *tokenizer;
    int32_t doc_sep;   /* set by lm_input_read: the tokenizer's <|endoftext|> for --text, else -1 */
} lm_input;

/* Parses --tokens/--text/--tokenizer at argv[*i] (advancing *i past the
 * value): 1 when taken, 0 when argv[*i] is another option. */
int lm_input_parse(lm_input *in, int argc, char **argv, int *i);
/* Checks that exactly one source is given (with a tokenizer for text);
 * prints a message naming cmd and returns nonzero otherwise. */
int lm_input_check(const lm_input *in, const char *cmd);
/* Reads the tokens into out and checks every id against the vocabulary
 * V; messages on stderr name cmd, the file and the problem. 0 or a
 * negative VTTT_E* code. */
int lm_input_read(lm_input *in, const char *cmd, int V, vttt_token_buf *out);

/* Loads DIR (config.json + model.safetensors); a message naming cmd and
 * DIR on failure. */
int lm_model_load(vttt_model **m, const char *dir, const char *cmd);

/* DIR itself, or DIR/latest when DIR is a training run directory. */
void lm_model_dir(const char *dir, char *out, size_t n);

/* The context a model was trained on (tokens) and where that figure
 * comes from (a static string): for a training checkpoint (trainer_state.json
 * beside config.json) the trainer's --seq for TTT layers (their state is
 * carried over the whole sequence) and --window for attention (its
 * windows are independent); otherwise max_position_embeddings. 0, or an
 * error after a message naming cmd (an unreadable trainer_state.json). */
typedef struct lm_context {
    int64_t tokens;
    const char *from;
} lm_context;
int lm_trained_context(const char *dir, const vttt_model_config *cfg, const char *cmd, lm_context *out);
/* The positions an attention model was trained on: the smaller of the
 * trained context and max_position_embeddings. */
int64_t lm_attention_positions(const vttt_model_config *cfg, const lm_context *ctx);
/* A warning on stderr when an attention model is asked to read windows of
 * T tokens, more than it was trained on; nothing for TTT layers. */
void lm_warn_context(const char *cmd, const char *dir, const vttt_model_config *cfg, const lm_context *ctx,
                     int64_t T);

/* Evaluation of n_windows windows of T tokens each, stored one after the
 * other in tokens (n_windows * T), up to `batch` windows per forward (the
 * generation path: memory independent of T for TTT models). Each window
 * starts from the learned initial state and predicts its own tokens
 * shift..T-1 (shift: vttt_model_config_target_shift). fn gets, window by
 * window in order, losses (T): losses[t] is the NLL (nats) of the window's
 * token t + shift; the last shift entries are 0. */
typedef int (*lm_window_fn)(void *user, int64_t window, const float *losses, int T);
int lm_eval_windows(vttt_model *m, const int32_t *tokens, int64_t n_windows, int T, int batch, lm_window_fn fn,
                    void *user);
/* The same with the targets given: targets (n_windows * T) beside tokens,
 * targets[i] the token to predict at tokens[i], so that every losses[t]
 * counts (the trainer's validation windows: targets = tokens + shift). */
int lm_eval_windows_targets(vttt_model *m, const int32_t *tokens, const int32_t *targets, int64_t n_windows, int T,
                            int batch, lm_window_fn fn, void *user);

/* Threads for OpenMP and OpenBLAS (n > 0; 0 keeps the defaults: all
 * cores, or OMP_NUM_THREADS). */
void lm_set_threads(int n);

/* Parses a positive int option value; prints a message and returns
 * nonzero when it is not one. */
int lm_parse_int(const char *cmd, const char *opt, const char *s, long long lo, long long hi, long long *out);

/* In-context copying (lm_repeat.c): every document of ids (n; split at
 * sep, or one document when sep < 0) is cut into nearly equal pieces of
 * at most T/2 - 1 tokens, and each piece is evaluated from the initial
 * state as `sep piece sep piece` (`piece piece` without a separator).
 * The same tokens are scored in both copies: the piece's (all of them
 * after a separator, else all but its first). Means are over all scored
 * tokens; se_drop is the standard error of the drop with pieces as the
 * independent samples (the ratio estimator's: sqrt(n/(n-1) *
 * sum_j w_j^2 (d_j - drop)^2) / sum_j w_j, w_j the tokens and d_j the
 * drop of piece j; NaN with one piece). max_pieces: 0 for all. Text
 * models only (target shift 1). 0, or an error after a message naming
 * cmd. */
typedef struct lm_repeat_stats {
    int64_t pieces, tokens;                 /* tokens: scored per copy, all pieces */
    double nll_first, nll_second, se_drop;  /* nats per token */
} lm_repeat_stats;
int lm_repeat_eval(vttt_model *m, const int32_t *ids, int64_t n, int32_t sep, int64_t T, int batch,
                   int64_t max_pieces, lm_repeat_stats *out, const char *cmd);

int cli_lm_loss_by_position(int argc, char **argv);   /* lm_position.c */
int cli_lm_sample(int argc, char **argv);             /* lm_sample.c */

#endif
