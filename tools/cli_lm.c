/* `vttt lm`: use a trained language model. `score` prints the negative
 * log-likelihood of every token of an input; `loss-by-position` and
 * `sample` live in lm_position.c and lm_sample.c. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "lm.h"

#define SCORE "vttt lm score"

static void usage(void) {
    fprintf(stderr,
            "usage (DIR: a model directory, or a training run directory for its newest checkpoint):\n"
            "  vttt lm score --model DIR (--tokens FILE | --text FILE --tokenizer TOK) [--context T | --whole]\n"
            "                [--batch B] [--summary] [--threads N]\n"
            "      NLL of every predicted token, one line `<position> <token_id> <nll>` (position: the\n"
            "      token's index in the input, nll in nats), then `mean_nll` and `perplexity` lines.\n"
            "      --tokens: whitespace-separated ids or a token shard; --text: a text file, each\n"
            "      document after an <|endoftext|> token as `vttt ingest text` writes it.\n"
            "      The input is cut into windows of T inputs, each from the model's initial state and\n"
            "      predicting the T tokens after its first (the trainer's val_loss at --seq T): every\n"
            "      token but the first is scored once. The default T, the same for every layer, is\n"
            "      the context the model was trained on: the trainer's --seq (attention: --window)\n"
            "      from trainer_state.json in a checkpoint, else max_position_embeddings.\n"
            "      --context T: another window; --whole: the whole input as one sequence (a TTT\n"
            "      state carried over all of it). Attention asked to read past its trained positions\n"
            "      gets a warning on stderr. --summary: only the mean and perplexity\n"
            "  vttt lm loss-by-position --model DIR [--model DIR2 ...] (--tokens FILE | --text F --tokenizer T)\n"
            "                [--context T] [--buckets N] [--log-x] [--png OUT] [--csv OUT] [--repeat] ...\n"
            "      mean NLL (standard error, windows) against the position in the context, one curve\n"
            "      per model; --repeat: the loss on a document's second copy against its first\n"
            "  --threads N: OpenMP/OpenBLAS threads (default: OMP_NUM_THREADS, else all cores)\n"
            "  vttt lm sample --model DIR --tokenizer TOK [--prompt TEXT] [--max-tokens N]\n"
            "                [--temperature X] [--top-k K] [--seed S] [--ids] [--verbose] [--threads N]\n"
            "      generate text after the prompt with prefill + token-by-token decode\n"
            "Run `vttt lm <command> --help` for the details of one command.\n");
}

typedef struct {
    int64_t offset;   /* index in the input of the first window's token 0 */
    int shift;
    int print;
    const int32_t *tokens;
    double sum;
    int64_t count;
} score_job;

static int score_window(void *user, int64_t window, const float *losses, int T) {
    score_job *j = user;
    int64_t base = j->offset + window * T;
    for (int t = 0; t < T; t++) {
        int64_t p = base + t + j->shift;
        if (j->print) printf("%lld %d %.6f\n", (long long)p, (int)j->tokens[p], losses[t]);
        j->sum += losses[t];
        j->count++;
    }
    return 0;
}

/* Scores windows of `context` tokens (0: the trained context; -1: the
 * whole input as one sequence). */
static int score_run(vttt_model *m, const char *dir, const vttt_token_buf *ids, int64_t context, int batch, int print) {
    const vttt_model_config *cfg = vttt_model_get_config(m);
    int shift = vttt_model_config_target_shift(cfg);
    lm_context ctx;
    int err = lm_trained_context(dir, cfg, SCORE, &ctx);
    if (err) return err;
    int64_t n = (int64_t)ids->n, T = context > 0 ? context : context < 0 ? n : ctx.tokens;
    if (n <= shift) {
        fprintf(stderr, SCORE ": the input has %lld token(s); scoring needs at least %d\n", (long long)n, shift + 1);
        return VTTT_EINVAL;
    }
    if (T > n - shift) T = n - shift;
    if (T > INT32_MAX) T = INT32_MAX;
    lm_warn_context(SCORE, dir, cfg, &ctx, T);
    /* the trainer's validation windows (train/eval.c): inputs [i*T, (i+1)*T)
     * predict the tokens shift later, so every token but the first shift
     * is scored once; the rest is one shorter window */
    score_job j = {.shift = shift, .print = print, .tokens = ids->ids};
    const int32_t *tok = ids->ids;
    int64_t full = (n - shift) / T, rest = n - shift - full * T;
    err = lm_eval_windows_targets(m, tok, tok + shift, full, (int)T, batch, score_window, &j);
    if (!err && rest > 0) {
        j.offset = full * T;
        err = lm_eval_windows_targets(m, tok + full * T, tok + full * T + shift, 1, (int)rest, 1, score_window, &j);
    }
    if (err) {
        fprintf(stderr, SCORE ": evaluation failed (%s)\n", vttt_strerror(err));
        return err;
    }
    double mean = j.count ? j.sum / (double)j.count : 0.0;
    char how[160];
    if (context < 0) snprintf(how, sizeof how, "the whole input as one sequence");
    else snprintf(how, sizeof how, "windows of %lld tokens%s%s", (long long)T, context ? "" : ": the trained context, ",
                  context ? "" : ctx.from);
    printf("mean_nll %.6f (%lld predicted tokens, %s)\nperplexity %.4f\n", mean, (long long)j.count, how, exp(mean));
    return fflush(stdout) ? VTTT_EIO : 0;
}

static int cmd_score(int argc, char **argv) {
    const char *dir = NULL;
    lm_input in = {0};
    long long context = 0, batch = 4, threads = 0;
    int summary = 0, whole = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (lm_input_parse(&in, argc, argv, &i)) continue;
        if (!strcmp(a, "--model") && v) dir = v, i++;
        else if (!strcmp(a, "--context") && v) {
            if (lm_parse_int(SCORE, a, v, 0, INT32_MAX, &context)) return 2;
            i++;
        } else if (!strcmp(a, "--batch") && v) {
            if (lm_parse_int(SCORE, a, v, 1, 1024, &batch)) return 2;
            i++;
        } else if (!strcmp(a, "--threads") && v) {
            if (lm_parse_int(SCORE, a, v, 1, 4096, &threads)) return 2;
            i++;
        } else if (!strcmp(a, "--summary")) summary = 1;
        else if (!strcmp(a, "--whole")) whole = 1;
        else return usage(), strcmp(a, "--help") && strcmp(a, "-h") ? 2 : 0;
    }
    if (!dir) {
        fprintf(stderr, SCORE ": --model DIR is required\n");
        return 2;
    }
    if (whole && context) {
        fprintf(stderr, SCORE ": give --context T or --whole, not both\n");
        return 2;
    }
    if (lm_input_check(&in, SCORE)) return 2;
    lm_set_threads((int)threads);
    vttt_model *m = NULL;
    vttt_token_buf ids = {0};
    int err = lm_model_load(&m, dir, SCORE);
    if (!err) err = lm_input_read(&in, SCORE, vttt_model_get_config(m)->vocab_size, &ids);
    if (!err) err = score_run(m, dir, &ids, whole ? -1 : context, (int)batch, !summary);
    vttt_token_buf_free(&ids);
    vttt_model_free(&m);
    return err ? 1 : 0;
}

int cli_lm(int argc, char **argv) {
    if (argc >= 2 && !strcmp(argv[1], "score")) return cmd_score(argc - 1, argv + 1);
    if (argc >= 2 && !strcmp(argv[1], "loss-by-position")) return cli_lm_loss_by_position(argc - 1, argv + 1);
    if (argc >= 2 && !strcmp(argv[1], "sample")) return cli_lm_sample(argc - 1, argv + 1);
    usage();
    return argc >= 2 && (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h") || !strcmp(argv[1], "help")) ? 0 : 2;
}
