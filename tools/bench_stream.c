/* `vttt bench stream`: the cost of a stream's frame step against its
 * position (it must not grow: the TTT state is constant), and batching n
 * streams into one model step (vttt_stream_push_batch) against n separate
 * pushes. Uses a trained model + tokenizer (--model/--encoder) or, by
 * default, random ones of the tiny preset (64x64 frames, 64 tokens per
 * frame, vocab 1000). Tokens pushed are the model's own predictions fed
 * back, so no tokenizer time is counted in the model figures. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"
#include "infer.h"
#include "lm.h"

#define CMD "vttt bench stream"

static void usage(FILE *f) {
    fprintf(f, "usage: vttt bench stream [--model DIR --encoder DIR] [--preset tiny] [--layer ttt_mlp|ttt_linear]\n"
               "                         [--frames N (100000)] [--at LIST (100,100000)] [--span N (20)]\n"
               "                         [--batches LIST (1,8,64)] [--batch-frames N (8)] [--threads N]\n"
               "  prints ms per frame step of one stream around each frame index of --at (averaged over\n"
               "  --span frames ending there), the state bytes and the process RSS there; then frames/s of\n"
               "  n streams pushed separately vs batched into one model step.\n");
}

typedef struct {
    const char *model, *encoder, *preset, *layer;
    long long frames, span, batch_frames, threads;
    char at[256], batches[256];
} opts;

static long rss_kib(void) {
    long pages = 0, rss = 0;
    FILE *f = fopen("/proc/self/statm", "r");
    if (!f) return -1;
    if (fscanf(f, "%ld %ld", &pages, &rss) != 2) rss = -1;
    fclose(f);
    return rss < 0 ? -1 : rss * (sysconf(_SC_PAGESIZE) / 1024);
}

/* Random tokenizer + video model saved under a temporary directory. */
static int make_random(const opts *o, char *dir, size_t n, char *model, char *enc) {
    snprintf(dir, n, "/tmp/vttt_bench_stream_XXXXXX");
    if (!mkdtemp(dir)) return VTTT_EIO;
    snprintf(model, 600, "%s/model", dir);
    snprintf(enc, 600, "%s/enc", dir);
    vttt_encoder_config ec = vttt_encoder_default_config();
    vttt_encoder *e = NULL;
    int err = vttt_encoder_init(&e, &ec, 1, NULL);
    vttt_model_config c = vttt_model_default_config();
    if (!err) err = vttt_model_config_preset(&c, o->preset, NULL);
    if (err) return err;
    c.vocab_size = vttt_encoder_vocab_size(e), c.tokens_per_frame = vttt_encoder_tokens_per_frame(e);
    c.seq_kind = !strcmp(o->layer, "ttt_linear") ? VTTT_LAYER_TTT_LINEAR : VTTT_LAYER_TTT_MLP;
    vttt_model *m = NULL;
    err = vttt_encoder_save(e, enc);
    if (!err) err = vttt_model_init(&m, &c, NULL);
    if (!err) vttt_model_init_weights(m, 1), err = vttt_model_save(m, model);
    vttt_model_free(&m);
    vttt_encoder_free(&e);
    return err;
}

/* Removes what make_random wrote. */
static void remove_random(const char *dir, const char *model, const char *enc) {
    const char *sub[2] = {model, enc}, *files[2] = {"config.json", "model.safetensors"};
    char path[700];
    for (int i = 0; i < 2; i++) {
        for (int j = 0; j < 2; j++) {
            snprintf(path, sizeof path, "%s/%s", sub[i], files[j]);
            unlink(path);
        }
        rmdir(sub[i]);
    }
    if (rmdir(dir) != 0) fprintf(stderr, CMD ": could not remove %s\n", dir);
}

static int parse_list(const char *s, long long *v, int max) {
    int n = 0;
    for (const char *p = s; *p && n < max;) {
        char *end;
        long long x = strtoll(p, &end, 10);
        if (end == p || x < 1) return -1;
        v[n++] = x;
        p = *end == ',' ? end + 1 : end;
        if (*end && *end != ',') return -1;
    }
    return n;
}

/* One stream pushed to the largest --at; times the span before each. */
static int bench_positions(vttt_predictor *p, const opts *o) {
    long long at[16];
    int na = parse_list(o->at, at, 16), P = vttt_predictor_tokens_per_frame(p);
    if (na <= 0) return fprintf(stderr, CMD ": bad --at list '%s'\n", o->at), VTTT_EINVAL;
    vttt_stream *s = NULL;
    int err = vttt_stream_open(&s, p);
    int32_t *tok = calloc((size_t)P, sizeof *tok), *next = malloc((size_t)P * sizeof *next);
    if (err || !tok || !next) return free(tok), free(next), vttt_stream_free(&s), err ? err : VTTT_ENOMEM;
    printf("stream cost per frame (%d tokens per frame)\n%12s %12s %14s %12s\n", P, "frame", "ms/frame", "state bytes",
           "RSS KiB");
    double t0 = 0.0;
    int k = 0;
    for (long long f = 1; !err && f <= o->frames && k < na; f++) {
        if (f == at[k] - o->span + 1 || (f == 1 && at[k] - o->span + 1 < 1)) t0 = cli_now_s();
        err = vttt_stream_push_tokens(s, tok, 1, next);
        memcpy(tok, next, (size_t)P * sizeof *tok);
        if (!err && f == at[k]) {
            long long span = at[k] < o->span ? at[k] : o->span;
            printf("%12lld %12.3f %14zu %12ld\n", f, 1e3 * (cli_now_s() - t0) / (double)span,
                   vttt_stream_state_bytes(s), rss_kib());
            fflush(stdout);
            k++;
        }
    }
    vttt_stream_free(&s);
    free(tok), free(next);
    return err;
}

/* n streams: separate pushes vs push_batch, frames/s. */
static int bench_batch(vttt_predictor *p, int n, int frames) {
    int P = vttt_predictor_tokens_per_frame(p), err = VTTT_OK;
    vttt_stream **s = calloc((size_t)n, sizeof *s);
    int32_t *tok = calloc((size_t)n * P, sizeof *tok), *pred = malloc((size_t)n * P * sizeof *pred);
    if (!s || !tok || !pred) err = VTTT_ENOMEM;
    for (int i = 0; !err && i < n; i++) err = vttt_stream_open(&s[i], p);
    int V = vttt_model_get_config(vttt_predictor_model(p))->vocab_size;
    for (int i = 0; i < n * P; i++) tok[i] = (int32_t)(((int64_t)i * 7919) % V);
    double rate[2] = {0, 0};
    for (int mode = 0; !err && mode < 2; mode++) {
        err = vttt_stream_push_batch_tokens(s, n, tok, pred); /* warm-up */
        double t0 = cli_now_s();
        for (int f = 0; !err && f < frames; f++) {
            if (mode) err = vttt_stream_push_batch_tokens(s, n, tok, pred);
            else
                for (int i = 0; !err && i < n; i++) err = vttt_stream_push_tokens(s[i], tok + (size_t)i * P, 1, pred);
        }
        rate[mode] = (double)n * frames / (cli_now_s() - t0);
    }
    if (!err)
        printf("%8d %16.1f %16.1f %10.2fx\n", n, rate[0], rate[1], rate[1] / rate[0]);
    for (int i = 0; s && i < n; i++) vttt_stream_free(&s[i]);
    free(s), free(tok), free(pred);
    return err;
}

static int parse(opts *o, int argc, char **argv) {
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) return 1;
        if (!v) return 2;
        i++;
        if (!strcmp(a, "--model")) o->model = v;
        else if (!strcmp(a, "--encoder")) o->encoder = v;
        else if (!strcmp(a, "--preset")) o->preset = v;
        else if (!strcmp(a, "--layer")) o->layer = v;
        else if (!strcmp(a, "--at")) snprintf(o->at, sizeof o->at, "%s", v);
        else if (!strcmp(a, "--batches")) snprintf(o->batches, sizeof o->batches, "%s", v);
        else if (!strcmp(a, "--frames")) { if (lm_parse_int(CMD, a, v, 1, 1LL << 40, &o->frames)) return 2; }
        else if (!strcmp(a, "--span")) { if (lm_parse_int(CMD, a, v, 1, 1 << 20, &o->span)) return 2; }
        else if (!strcmp(a, "--batch-frames")) { if (lm_parse_int(CMD, a, v, 1, 1 << 20, &o->batch_frames)) return 2; }
        else if (!strcmp(a, "--threads")) { if (lm_parse_int(CMD, a, v, 1, 4096, &o->threads)) return 2; }
        else return 2;
    }
    return (!o->model) != (!o->encoder) ? 2 : 0;
}

int cli_bench_stream(int argc, char **argv) {
    opts o = {.preset = "tiny", .layer = "ttt_mlp", .frames = 100000, .span = 20, .batch_frames = 8,
              .at = "100,100000", .batches = "1,8,64"};
    int r = parse(&o, argc, argv);
    if (r) return usage(r == 1 ? stdout : stderr), r == 1 ? 0 : 2;
    lm_set_threads((int)o.threads);
    char dir[256] = "", model[600], enc[600];
    int err = o.model ? VTTT_OK : make_random(&o, dir, sizeof dir, model, enc);
    vttt_predictor *p = NULL;
    if (!err) err = vttt_predictor_open(&p, o.model ? o.model : model, o.model ? o.encoder : enc, NULL);
    if (!err) {
        const vttt_model_config *c = vttt_model_get_config(vttt_predictor_model(p));
        printf("model: %s, D %d, %d layers, vocab %d, %zu parameters%s\n",
               c->seq_kind == VTTT_LAYER_TTT_MLP ? "ttt_mlp" : c->seq_kind == VTTT_LAYER_TTT_LINEAR ? "ttt_linear"
                                                                                                  : "attention",
               c->hidden_size, c->num_hidden_layers, c->vocab_size, vttt_model_num_params(vttt_predictor_model(p)),
               o.model ? "" : " (random weights)");
        err = bench_positions(p, &o);
    }
    long long nb[16];
    int nn = err ? 0 : parse_list(o.batches, nb, 16);
    if (nn > 0) printf("batching (%lld frames per stream)\n%8s %16s %16s %11s\n", o.batch_frames, "streams",
                       "separate fr/s", "batched fr/s", "speed-up");
    for (int i = 0; !err && i < nn; i++) err = bench_batch(p, (int)nb[i], (int)o.batch_frames);
    vttt_predictor_close(&p);
    if (dir[0]) remove_random(dir, model, enc);
    if (err) fprintf(stderr, CMD ": failed (%s)\n", vttt_strerror(err));
    return err ? 1 : 0;
}
