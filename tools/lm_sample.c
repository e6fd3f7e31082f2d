/* `vttt lm sample`: text generation. The prompt (after an <|endoftext|>
 * token, as documents start in `vttt ingest text` shards) is prefilled in
 * one call, then each new token goes through the decode path one at a
 * time: a TTT model's state stays the same size however long the text
 * grows. Sampling is softmax(logits / temperature) over the top-k tokens,
 * drawn with a seeded generator, so a seed gives the same text every run;
 * temperature 0 or top-k 1 is greedy (the most likely token, the lowest id
 * on ties). Generation stops after --max-tokens or at <|endoftext|>.
 *
 * Threads: --threads N, else OMP_NUM_THREADS or all cores; the CPU ops keep
 * work too small to split (one token of a small model) on the calling
 * thread whatever the count (ttt/par.h). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cli.h"
#include "lm.h"

#define CMD "vttt lm sample"

typedef struct {
    const char *dir, *tokenizer, *prompt;
    long long max_tokens, top_k, threads;
    double temperature;
    unsigned long long seed;
    int ids, verbose, no_eot, ignore_eot;
} sample_opts;

typedef struct {
    float logit;
    int32_t id;
} cand;

typedef struct {
    uint64_t rng;   /* splitmix64 state */
    cand *c;        /* (V) scratch */
    int n;          /* ids that may be drawn: the tokenizer's */
} sampler;

static void usage(void) {
    fprintf(stderr,
            "usage: vttt lm sample --model DIR --tokenizer TOK [--prompt TEXT] [--max-tokens N (200)]\n"
            "           [--temperature X (1.0)] [--top-k K (0: all)] [--seed S (1)] [--ids] [--verbose]\n"
            "           [--no-eot] [--ignore-eot] [--threads N]\n"
            "  prints the prompt and its continuation; temperature 0 or top-k 1 is greedy.\n"
            "  --ids: print the generated token ids instead of text; --verbose: state size, speed\n"
            "  (stderr); --no-eot: do not start the prompt with <|endoftext|>; --ignore-eot: keep\n"
            "  going past <|endoftext|>; --threads N: OpenMP/OpenBLAS threads (default:\n"
            "  OMP_NUM_THREADS or all cores)\n");
}

static double uniform01(sampler *s) {
    uint64_t z = (s->rng += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return (double)((z ^ (z >> 31)) >> 11) * 0x1.0p-53;
}

/* Larger logit first, then smaller id: a total order, so the result does
 * not depend on qsort's algorithm. */
static int cand_cmp(const void *pa, const void *pb) {
    const cand *a = pa, *b = pb;
    if (a->logit != b->logit) return a->logit > b->logit ? -1 : 1;
    return (a->id > b->id) - (a->id < b->id);
}

/* Draws the next token from logits (V). */
static int32_t sample_next(sampler *s, const float *logits, double temperature, int top_k) {
    int best = 0;
    for (int i = 1; i < s->n; i++)
        if (logits[i] > logits[best]) best = i;
    if (temperature <= 0 || top_k == 1) return best;
    int n = s->n;
    for (int i = 0; i < n; i++) s->c[i] = (cand){logits[i], i};
    if (top_k > 0 && top_k < n) {
        qsort(s->c, (size_t)n, sizeof *s->c, cand_cmp);
        n = top_k;
    }
    double total = 0;
    for (int i = 0; i < n; i++) total += exp(((double)s->c[i].logit - logits[best]) / temperature);
    double u = uniform01(s) * total, acc = 0;
    for (int i = 0; i < n; i++) {
        acc += exp(((double)s->c[i].logit - logits[best]) / temperature);
        if (u < acc) return s->c[i].id;
    }
    return s->c[n - 1].id;   /* rounding at the very end of the range */
}

static void emit(const sample_opts *o, const vttt_bpe *bpe, int32_t id, int first) {
    if (o->ids) {
        printf(first ? "%d" : " %d", (int)id);
    } else {
        const uint8_t *p;
        size_t n;
        if (!vttt_bpe_token_bytes(bpe, id, &p, &n)) fwrite(p, 1, n, stdout);
    }
    fflush(stdout);
}

/* Prefills the prompt, then decodes token by token. */
static int generate(const sample_opts *o, vttt_model *m, const vttt_bpe *bpe, const vttt_token_buf *prompt) {
    const vttt_model_config *cfg = vttt_model_get_config(m);
    int V = cfg->vocab_size, eot = vttt_bpe_eot(bpe);
    vttt_model_state *st = NULL;
    sampler s = {.rng = o->seed * 0x2545F4914F6CDD1Dull + 1, .c = malloc((size_t)V * sizeof(cand)),
                 .n = vttt_bpe_vocab_size(bpe)};
    float *logits = malloc((size_t)V * sizeof *logits);
    int err = s.c && logits ? 0 : VTTT_ENOMEM;
    if (!err) err = vttt_model_state_init(&st, m, 1, (int)(prompt->n + (size_t)o->max_tokens));
    if (!err && o->verbose)
        fprintf(stderr, "state: %zu bytes at position 0\n", vttt_model_state_bytes(st));
    double t0 = cli_now_s();
    if (!err) err = vttt_model_prefill(m, st, prompt->ids, (int)prompt->n, logits, 0);
    double t1 = cli_now_s();
    long long made = 0;
    for (; !err && made < o->max_tokens; made++) {
        int32_t next = sample_next(&s, logits, o->temperature, (int)o->top_k);
        if (next == eot && !o->ignore_eot) break;
        emit(o, bpe, next, made == 0);
        if (made + 1 < o->max_tokens) err = vttt_model_decode(m, st, &next, logits);
    }
    double t2 = cli_now_s();
    printf("\n");
    fflush(stdout);   /* before the --verbose lines on stderr */
    if (err) fprintf(stderr, CMD ": generation failed (%s)\n", vttt_strerror(err));
    if (!err && o->verbose)
        fprintf(stderr, "state: %zu bytes at position %lld\nprefill %zu tokens in %.3f s; %lld tokens in %.3f s "
                        "(%.1f tokens/s)\n", vttt_model_state_bytes(st), (long long)vttt_model_state_position(st),
                prompt->n, t1 - t0, made, t2 - t1, made > 0 && t2 > t1 ? (double)made / (t2 - t1) : 0.0);
    vttt_model_state_free(&st);
    free(logits);
    free(s.c);
    return err;
}

/* The prompt's ids: <|endoftext|> (unless --no-eot) then the text. */
static int encode_prompt(const sample_opts *o, const vttt_bpe *bpe, vttt_token_buf *ids) {
    int32_t eot = vttt_bpe_eot(bpe);
    int err = o->no_eot ? 0 : vttt_token_buf_append(ids, &eot, 1);
    if (!err) err = vttt_bpe_encode(bpe, o->prompt, strlen(o->prompt), ids);
    if (!err && ids->n == 0) {
        fprintf(stderr, CMD ": an empty prompt needs the <|endoftext|> start (drop --no-eot)\n");
        err = VTTT_EINVAL;
    }
    return err;
}

/* 0, or the exit status of a usage error (2) or --help (1 -> 0). */
static int parse(sample_opts *o, int argc, char **argv) {
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        long long seed;
        char *end = NULL;
        if (!strcmp(a, "--model") && v) o->dir = argv[++i];
        else if (!strcmp(a, "--tokenizer") && v) o->tokenizer = argv[++i];
        else if (!strcmp(a, "--prompt") && v) o->prompt = argv[++i];
        else if (!strcmp(a, "--max-tokens") && v) {
            if (lm_parse_int(CMD, a, argv[++i], 0, INT32_MAX / 2, &o->max_tokens)) return 2;
        } else if (!strcmp(a, "--top-k") && v) {
            if (lm_parse_int(CMD, a, argv[++i], 0, INT32_MAX, &o->top_k)) return 2;
        } else if (!strcmp(a, "--threads") && v) {
            if (lm_parse_int(CMD, a, argv[++i], 1, 4096, &o->threads)) return 2;
        } else if (!strcmp(a, "--seed") && v) {
            if (lm_parse_int(CMD, a, argv[++i], 0, INT64_MAX, &seed)) return 2;
            o->seed = (unsigned long long)seed;
        } else if (!strcmp(a, "--temperature") && v) {
            o->temperature = strtod(argv[++i], &end);
            if (end == v || *end || !(o->temperature >= 0) || o->temperature > 1e6) {
                fprintf(stderr, CMD ": --temperature wants a number >= 0 (got '%s')\n", v);
                return 2;
            }
        } else if (!strcmp(a, "--ids")) o->ids = 1;
        else if (!strcmp(a, "--verbose")) o->verbose = 1;
        else if (!strcmp(a, "--no-eot")) o->no_eot = 1;
        else if (!strcmp(a, "--ignore-eot")) o->ignore_eot = 1;
        else return usage(), strcmp(a, "--help") && strcmp(a, "-h") ? 2 : 1;
    }
    if (!o->dir || !o->tokenizer) {
        fprintf(stderr, CMD ": --model DIR and --tokenizer FILE are required\n");
        return 2;
    }
    return 0;
}

int cli_lm_sample(int argc, char **argv) {
    sample_opts o = {.prompt = "", .max_tokens = 200, .temperature = 1.0, .seed = 1};
    int st = parse(&o, argc, argv);
    if (st) return st == 1 ? 0 : st;
    lm_set_threads((int)o.threads);
    vttt_model *m = NULL;
    vttt_bpe *bpe = NULL;
    vttt_token_buf prompt = {0};
    int err = lm_model_load(&m, o.dir, CMD);
    if (!err && (err = vttt_bpe_load(&bpe, o.tokenizer, NULL)))
        fprintf(stderr, CMD ": cannot load the tokenizer %s (%s)\n", o.tokenizer, vttt_strerror(err));
    if (!err && vttt_bpe_vocab_size(bpe) > vttt_model_get_config(m)->vocab_size) {
        fprintf(stderr, CMD ": the tokenizer %s has %d tokens but the model only %d: not the model's tokenizer\n",
                o.tokenizer, vttt_bpe_vocab_size(bpe), vttt_model_get_config(m)->vocab_size);
        err = VTTT_EINVAL;
    }
    if (!err) err = encode_prompt(&o, bpe, &prompt);
    if (!err && !o.ids) fputs(o.prompt, stdout);
    if (!err) err = generate(&o, m, bpe, &prompt);
    vttt_token_buf_free(&prompt);
    vttt_bpe_free(&bpe);
    vttt_model_free(&m);
    return err ? 1 : 0;
}
