/* The context a language model was trained on, so that `vttt lm` scores
 * every layer the same way by default (windows of that context) and says
 * when attention is asked to read past the positions it was trained on. */
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "lm.h"
#include "train.h"

void lm_model_dir(const char *dir, char *out, size_t n) {
    char path[4096];
    snprintf(path, sizeof path, "%s/config.json", dir);
    snprintf(out, n, "%s", dir);
    if (access(path, F_OK) == 0) return;
    snprintf(path, sizeof path, "%s/latest/config.json", dir);
    if (access(path, F_OK) == 0) snprintf(out, n, "%s/latest", dir);
}

/* The trainer's settings (trainer_state.json beside config.json) when the
 * directory is a training checkpoint: TTT layers carry their state over
 * a whole --seq sequence, attention's windows are independent. Else the
 * config's max_position_embeddings. A trainer_state.json that is there
 * but unreadable is an error, not a silent fallback. */
int lm_trained_context(const char *dir, const vttt_model_config *cfg, const char *cmd, lm_context *out) {
    char ck[4096], path[4200];
    lm_model_dir(dir, ck, sizeof ck);
    snprintf(path, sizeof path, "%s/trainer_state.json", ck);
    out->tokens = cfg->max_position_embeddings;
    out->from = "max_position_embeddings in config.json";
    if (access(path, F_OK) != 0) return 0;
    vttt_train_params p;
    int err = vttt_train_checkpoint_params(&p, ck, NULL);
    if (err) {
        fprintf(stderr, "%s: cannot read the training context from %s (%s)\n", cmd, path, vttt_strerror(err));
        return err;
    }
    int window = p.window > 0 && p.window < p.seq ? p.window : p.seq;
    int att = cfg->seq_kind == VTTT_LAYER_ATTENTION;
    out->tokens = att ? window : p.seq;
    out->from = att && window < p.seq ? "the training --window (trainer_state.json)" : "the training --seq (trainer_state.json)";
    return 0;
}

int64_t lm_attention_positions(const vttt_model_config *cfg, const lm_context *ctx) {
    return ctx->tokens < cfg->max_position_embeddings ? ctx->tokens : cfg->max_position_embeddings;
}

void lm_warn_context(const char *cmd, const char *dir, const vttt_model_config *cfg, const lm_context *ctx,
                     int64_t T) {
    if (cfg->seq_kind != VTTT_LAYER_ATTENTION) return;
    int64_t lim = lm_attention_positions(cfg, ctx);
    if (T <= lim) return;
    fprintf(stderr,
            "%s: warning: %s is an attention model trained on %lld positions (%s; max_position_embeddings %d) "
            "but is asked to read %lld: the loss past position %lld measures positions it never saw in "
            "training\n",
            cmd, dir, (long long)lim,
            lim == ctx->tokens ? ctx->from : "max_position_embeddings in config.json", cfg->max_position_embeddings,
            (long long)T, (long long)lim - 1);
}
