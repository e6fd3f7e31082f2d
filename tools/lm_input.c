/* Inputs of `vttt lm`: token ids from a text list, a token shard or
 * tokenized text; model loading; window-by-window evaluation. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cblas.h>
#include <omp.h>

#include "lm.h"
#include "token_ids.h"

int lm_parse_int(const char *cmd, const char *opt, const char *s, long long lo, long long hi, long long *out) {
    char *end;
    long long v = strtoll(s, &end, 10);
    if (end == s || *end || v < lo || v > hi) {
        fprintf(stderr, "%s: %s wants an integer in %lld..%lld (got '%s')\n", cmd, opt, lo, hi, s);
        return 1;
    }
    *out = v;
    return 0;
}

void lm_set_threads(int n) {
    if (n <= 0) return;
    omp_set_num_threads(n);
    openblas_set_num_threads(n);
}

int lm_input_parse(lm_input *in, int argc, char **argv, int *i) {
    const char *a = argv[*i];
    const char **slot = !strcmp(a, "--tokens") ? &in->tokens
                        : !strcmp(a, "--text") ? &in->text
                        : !strcmp(a, "--tokenizer") ? &in->tokenizer
                                                    : NULL;
    if (!slot || *i + 1 >= argc) return 0;
    *slot = argv[++*i];
    return 1;
}

int lm_input_check(const lm_input *in, const char *cmd) {
    if (!in->tokens == !in->text) {
        fprintf(stderr, "%s: give exactly one of --tokens FILE or --text FILE\n", cmd);
        return 1;
    }
    if (in->text && !in->tokenizer) {
        fprintf(stderr, "%s: --text needs --tokenizer FILE (the BPE tokenizer the model was trained with)\n", cmd);
        return 1;
    }
    return 0;
}

/* Encodes a text file as `vttt ingest text` does (vttt_text_encode): every
 * document after an <|endoftext|> token. */
static int read_text(lm_input *in, const char *cmd, int V, vttt_token_buf *out) {
    vttt_bpe *bpe;
    int err = vttt_bpe_load(&bpe, in->tokenizer, NULL);
    if (err) return err;
    in->doc_sep = vttt_bpe_eot(bpe);
    if (vttt_bpe_vocab_size(bpe) > V) {
        fprintf(stderr, "%s: the tokenizer %s has %d tokens but the model only %d: not the model's tokenizer\n", cmd,
                in->tokenizer, vttt_bpe_vocab_size(bpe), V);
        vttt_bpe_free(&bpe);
        return VTTT_EINVAL;
    }
    vttt_text_file f;
    if (!(err = vttt_text_file_open(&f, in->text, NULL))) {
        err = vttt_text_encode(bpe, f.data, f.n, out);
        vttt_text_file_close(&f);
    }
    vttt_bpe_free(&bpe);
    return err;
}

int lm_input_read(lm_input *in, const char *cmd, int V, vttt_token_buf *out) {
    in->doc_sep = -1;
    const char *path = in->tokens ? in->tokens : in->text;
    int err = in->tokens ? token_ids_read(in->tokens, out) : read_text(in, cmd, V, out);
    if (err) {
        fprintf(stderr, "%s: cannot read tokens from %s (%s)\n", cmd, path, vttt_strerror(err));
        return err;
    }
    for (size_t i = 0; i < out->n; i++) {
        if (out->ids[i] >= V) {
            fprintf(stderr, "%s: %s: token %zu is id %d, outside the model's vocabulary 0..%d\n", cmd, path, i,
                    (int)out->ids[i], V - 1);
            return VTTT_EINVAL;
        }
    }
    return 0;
}

/* A training run directory (train/train.h) stands for its newest
 * checkpoint, RUN/latest. */
int lm_model_load(vttt_model **m, const char *dir, const char *cmd) {
    char path[4096];
    lm_model_dir(dir, path, sizeof path);
    dir = path;
    int err = vttt_model_load(m, dir, NULL);
    if (err)
        fprintf(stderr, "%s: cannot load the model directory %s (%s); it needs config.json and model.safetensors\n",
                cmd, dir, vttt_strerror(err));
    return err;
}

int lm_eval_windows(vttt_model *m, const int32_t *tokens, int64_t n_windows, int T, int batch, lm_window_fn fn,
                    void *user) {
    return lm_eval_windows_targets(m, tokens, NULL, n_windows, T, batch, fn, user);
}

int lm_eval_windows_targets(vttt_model *m, const int32_t *tokens, const int32_t *targets, int64_t n_windows, int T,
                            int batch, lm_window_fn fn, void *user) {
    int err = 0;
    for (int64_t w = 0; !err && w < n_windows; w += batch) {
        int B = n_windows - w < batch ? (int)(n_windows - w) : batch;
        err = vttt_model_forward(m, tokens + w * T, targets ? targets + w * T : NULL, B, T, 0, NULL, NULL);
        const float *losses = err ? NULL : vttt_model_losses(m, NULL);
        for (int b = 0; !err && b < B; b++) err = fn(user, w + b, losses + (size_t)b * T, T);
    }
    return err;
}
