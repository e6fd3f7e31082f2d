/*
 * `vttt bench serve`: a load generator for the HTTP daemon. It starts the
 * daemon in this process on a free loopback port (a random model and
 * tokenizer of the default video shapes unless --model/--encoder are
 * given), then for each batching setting and each stream count N runs N
 * client threads, each with its own stream and keep-alive connection,
 * posting frames in a loop for a fixed time. Prints frames/s, p50/p99
 * latency (ms), the mean model batch, RSS and memory per stream.
 */
#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <omp.h>

#include "cli.h"
#include "encoder.h"
#include "http_client.h"
#include "infer.h"
#include "model.h"

#define CMD "vttt bench serve"
#define MAX_COUNTS 16
#define CLIP_FRAMES 8   /* frames each client cycles through */

typedef struct {
    const char *model, *encoder, *preset, *layer;
    int counts[MAX_COUNTS], ncounts;
    double seconds;
    int batch_on, batch_off, batch_size, threads, raw, model_threads;
} bench_opts;

typedef struct {
    int port, S, raw;
    double seconds;
    uint8_t **frames;      /* CLIP_FRAMES bodies */
    size_t *frame_n;
    double *lat;           /* ms */
    size_t nlat, cap;
    int errors;
    pthread_barrier_t *start;
} client;

static int usage(int status) {
    fprintf(status ? stderr : stdout,
            "usage: vttt bench serve [--model DIR --encoder DIR] [options]\n"
            "  --streams LIST    concurrent streams per row (1,8,64)\n"
            "  --seconds S       posting time per row (5)\n"
            "  --batch MODE      both (default), on, off: batching frames of distinct streams\n"
            "  --batch-size N    frames per model step when on (64)\n"
            "  --threads N       HTTP threads (4)\n"
            "  --model-threads N OpenMP/OpenBLAS threads of the model thread (0: OpenMP's default, the default)\n"
            "  --raw             raw rgb24 in and out instead of PNG\n"
            "  --preset NAME     random model size without --model (tiny)\n"
            "  --layer KIND      ttt_mlp (default) or ttt_linear for the random model\n");
    return status;
}

static int parse_opts(int argc, char **argv, bench_opts *o) {
    *o = (bench_opts){.preset = "tiny", .layer = "ttt_mlp", .counts = {1, 8, 64}, .ncounts = 3, .seconds = 5,
                      .batch_on = 1, .batch_off = 1, .batch_size = 64, .threads = 4, .model_threads = 0};
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) return usage(0) - 1;
        if (!strcmp(a, "--raw")) {
            o->raw = 1;
            continue;
        }
        if (!v) return usage(2);
        i++;
        if (!strcmp(a, "--model")) o->model = v;
        else if (!strcmp(a, "--encoder")) o->encoder = v;
        else if (!strcmp(a, "--preset")) o->preset = v;
        else if (!strcmp(a, "--layer")) o->layer = v;
        else if (!strcmp(a, "--seconds")) o->seconds = atof(v);
        else if (!strcmp(a, "--batch-size")) o->batch_size = atoi(v);
        else if (!strcmp(a, "--threads")) o->threads = atoi(v);
        else if (!strcmp(a, "--model-threads")) o->model_threads = atoi(v);
        else if (!strcmp(a, "--batch")) {
            o->batch_on = strcmp(v, "off") != 0;
            o->batch_off = strcmp(v, "on") != 0;
        } else if (!strcmp(a, "--streams")) {
            o->ncounts = 0;
            for (char *s = (char *)v; *s && o->ncounts < MAX_COUNTS;) {
                o->counts[o->ncounts++] = (int)strtol(s, &s, 10);
                if (*s == ',') s++;
            }
        } else return usage(2);
    }
    for (int i = 0; i < o->ncounts; i++)
        if (o->counts[i] < 1 || o->counts[i] > 4096) return usage(2);
    if (!(o->seconds > 0) || o->batch_size < 1 || o->threads < 1) return usage(2);
    return 0;
}

/* A random video model and tokenizer of the default shapes in dir. */
static int make_random_model(const bench_opts *o, const char *dir, char *model, char *enc, size_t n) {
    snprintf(model, n, "%s/model", dir);
    snprintf(enc, n, "%s/encoder", dir);
    vttt_encoder_config ec = vttt_encoder_default_config();
    vttt_encoder *e = NULL;
    int err = vttt_encoder_init(&e, &ec, 1, NULL);
    if (!err) err = vttt_encoder_save(e, enc);
    vttt_model_config c = vttt_model_default_config();
    if (!err) err = vttt_model_config_preset(&c, o->preset, NULL);
    if (!err) {
        c.vocab_size = vttt_encoder_vocab_size(e);
        c.tokens_per_frame = vttt_encoder_tokens_per_frame(e);
        c.seq_kind = strcmp(o->layer, "ttt_linear") ? VTTT_LAYER_TTT_MLP : VTTT_LAYER_TTT_LINEAR;
    }
    vttt_encoder_free(&e);
    vttt_model *m = NULL;
    if (!err) err = vttt_model_init(&m, &c, NULL);
    if (!err) {
        vttt_model_init_weights(m, 1);
        err = vttt_model_save(m, model);
    }
    vttt_model_free(&m);
    return err;
}

/* CLIP_FRAMES bodies of a moving gradient, PNG or raw. */
static int make_frames(client *c, uint64_t seed) {
    int S = c->S;
    uint8_t *rgb = malloc((size_t)S * S * 3);
    c->frames = calloc(CLIP_FRAMES, sizeof *c->frames);
    c->frame_n = calloc(CLIP_FRAMES, sizeof *c->frame_n);
    if (!rgb || !c->frames || !c->frame_n) return -1;
    for (int t = 0; t < CLIP_FRAMES; t++) {
        for (int y = 0; y < S; y++)
            for (int x = 0; x < S; x++)
                for (int ch = 0; ch < 3; ch++)
                    rgb[((size_t)y * S + x) * 3 + ch] = (uint8_t)(seed * 37 + (x + 2 * t) * 4 + y * (ch + 1) * 3);
        if (c->raw) {
            c->frames[t] = malloc((size_t)S * S * 3);
            if (!c->frames[t]) return -1;
            memcpy(c->frames[t], rgb, (size_t)S * S * 3);
            c->frame_n[t] = (size_t)S * S * 3;
        } else if (vttt_png_encode(rgb, S, S, &c->frames[t], &c->frame_n[t], NULL)) {
            return -1;
        }
    }
    free(rgb);
    return 0;
}

static void add_lat(client *c, double ms) {
    if (c->nlat == c->cap) {
        size_t cap = c->cap ? 2 * c->cap : 1024;
        double *p = realloc(c->lat, cap * sizeof *p);
        if (!p) return;
        c->lat = p;
        c->cap = cap;
    }
    c->lat[c->nlat++] = ms;
}

/* One client: open a stream, one warm-up frame, then frames until the
 * time is up; the stream is closed at the end. */
static void *client_main(void *arg) {
    client *c = arg;
    http_resp r;
    char path[128], id[64] = "";
    int fd = http_connect(c->port, 120);
    if (fd >= 0 && !http_request(fd, "POST", "/v1/streams", NULL, NULL, 0, &r) && r.status == 201) {
        const char *p = strstr(r.body, "\"id\":\"");
        if (p) snprintf(id, sizeof id, "%.16s", p + 6);
    }
    http_resp_free(&r);
    if (c->raw) snprintf(path, sizeof path, "/v1/streams/%s/frames?width=%d&height=%d&format=rgb24", id, c->S, c->S);
    else snprintf(path, sizeof path, "/v1/streams/%s/frames", id);
    const char *hdr = c->raw ? "Content-Type: application/octet-stream\r\n" : "Content-Type: image/png\r\n";
    if (!id[0] || http_request(fd, "POST", path, hdr, c->frames[0], c->frame_n[0], &r) || r.status != 200) c->errors++;
    http_resp_free(&r);
    pthread_barrier_wait(c->start);
    double t_end = cli_now_s() + c->seconds;
    for (int t = 1; id[0] && cli_now_s() < t_end; t++) {
        double t0 = cli_now_s();
        int err = http_request(fd, "POST", path, hdr, c->frames[t % CLIP_FRAMES], c->frame_n[t % CLIP_FRAMES], &r);
        if (err || r.status != 200) {
            c->errors++;
            http_resp_free(&r);
            if (err) break;
            continue;
        }
        http_resp_free(&r);
        add_lat(c, 1e3 * (cli_now_s() - t0));
    }
    if (id[0] && fd >= 0) {
        snprintf(path, sizeof path, "/v1/streams/%s", id);
        http_request(fd, "DELETE", path, NULL, NULL, 0, &r);
        http_resp_free(&r);
    }
    if (fd >= 0) close(fd);
    return NULL;
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* A counter or gauge from GET /metrics, or -1. */
static double metric(int port, const char *name) {
    http_resp r;
    double v = -1;
    if (!http_do(port, "GET", "/metrics", NULL, NULL, 0, &r) && r.status == 200) {
        char pat[128];
        snprintf(pat, sizeof pat, "\n%s ", name);
        const char *p = strstr(r.body, pat);
        if (p) v = atof(p + strlen(pat));
    }
    http_resp_free(&r);
    return v;
}

/* One row: n clients for o->seconds. */
static int run_row(const bench_opts *o, int port, int S, int n, const char *batching) {
    client *cs = calloc((size_t)n, sizeof *cs);
    pthread_t *th = calloc((size_t)n, sizeof *th);
    pthread_barrier_t start;
    pthread_barrier_init(&start, NULL, (unsigned)n + 1);
    double steps0 = metric(port, "vttt_model_steps_total"), frames0 = metric(port, "vttt_model_step_frames_total");
    for (int i = 0; i < n; i++) {
        cs[i] = (client){.port = port, .S = S, .raw = o->raw, .seconds = o->seconds, .start = &start};
        if (make_frames(&cs[i], (uint64_t)i)) return -1;
        pthread_create(&th[i], NULL, client_main, &cs[i]);
    }
    pthread_barrier_wait(&start);
    double t0 = cli_now_s();
    double rss1 = metric(port, "process_resident_memory_bytes");   /* all streams open and warmed up */
    size_t total = 0;
    int errors = 0;
    for (int i = 0; i < n; i++) pthread_join(th[i], NULL);
    double wall = cli_now_s() - t0;
    for (int i = 0; i < n; i++) total += cs[i].nlat, errors += cs[i].errors;
    double *all = malloc((total ? total : 1) * sizeof *all);
    size_t k = 0;
    for (int i = 0; i < n; i++) {
        memcpy(all + k, cs[i].lat, cs[i].nlat * sizeof *all);
        k += cs[i].nlat;
    }
    qsort(all, total, sizeof *all, cmp_double);
    double p50 = total ? all[(size_t)(0.50 * (double)(total - 1))] : NAN;
    double p99 = total ? all[(size_t)(0.99 * (double)(total - 1))] : NAN;
    double steps = metric(port, "vttt_model_steps_total") - steps0;
    double bframes = metric(port, "vttt_model_step_frames_total") - frames0;
    printf("%-8s %7d %9.1f %8.2f %8.2f %10.2f %8.1f %6d\n", batching, n, (double)total / wall, p50, p99,
           steps > 0 ? bframes / steps : 0.0, rss1 / 1048576.0, errors);
    fflush(stdout);
    for (int i = 0; i < n; i++) {
        for (int t = 0; t < CLIP_FRAMES; t++) free(cs[i].frames[t]);
        free(cs[i].frames);
        free(cs[i].frame_n);
        free(cs[i].lat);
    }
    free(all);
    free(cs);
    free(th);
    pthread_barrier_destroy(&start);
    return 0;
}

/* Memory per stream, measured apart from the client threads: the
 * daemon's RSS before and after opening n streams from this thread (and
 * pushing one frame into each, so that every state is touched). */
static void stream_memory(int port, int n, int S) {
    char (*ids)[17] = calloc((size_t)n, sizeof *ids);
    uint8_t *frame = calloc((size_t)S * S, 3);
    int fd = http_connect(port, 120);
    http_resp r;
    double rss0 = metric(port, "process_resident_memory_bytes");
    int opened = 0;
    for (int i = 0; i < n && ids && fd >= 0; i++, opened++) {
        if (http_request(fd, "POST", "/v1/streams", NULL, NULL, 0, &r) || r.status != 201) break;
        const char *p = strstr(r.body, "\"id\":\"");
        if (p) snprintf(ids[i], 17, "%.16s", p + 6);
        http_resp_free(&r);
        char path[128];
        snprintf(path, sizeof path, "/v1/streams/%s/frames?width=%d&height=%d&format=rgb24", ids[i], S, S);
        if (http_request(fd, "POST", path, NULL, frame, (size_t)S * S * 3, &r) || r.status != 200) break;
        http_resp_free(&r);
    }
    http_resp_free(&r);
    double rss1 = metric(port, "process_resident_memory_bytes");
    double state = metric(port, "vttt_stream_state_bytes");
    printf("memory: %d streams opened: RSS %.1f -> %.1f MiB, %.1f KiB per stream (model state %.1f KiB)\n", opened,
           rss0 / 1048576.0, rss1 / 1048576.0, (rss1 - rss0) / 1024.0 / (opened ? opened : 1), state / 1024.0);
    for (int i = 0; i < opened && fd >= 0; i++) {
        char path[64];
        snprintf(path, sizeof path, "/v1/streams/%s", ids[i]);
        http_request(fd, "DELETE", path, NULL, NULL, 0, &r);
        http_resp_free(&r);
    }
    if (fd >= 0) close(fd);
    free(ids);
    free(frame);
}

static int run_setting(const bench_opts *o, const char *model, const char *enc, int batch) {
    vttt_server_params p = vttt_server_default_params();
    int maxn = 1;
    for (int i = 0; i < o->ncounts; i++) maxn = o->counts[i] > maxn ? o->counts[i] : maxn;
    p.model_dir = model, p.encoder_dir = enc, p.listen = "127.0.0.1:0";
    p.max_streams = maxn, p.max_batch = batch, p.http_threads = o->threads, p.queue_size = 4 * maxn + 16;
    p.request_timeout_s = 300;
    p.model_threads = o->model_threads;
    vttt_server *srv = NULL;
    if (vttt_server_start(&srv, &p) || vttt_server_wait_ready(srv)) {
        vttt_server_stop(&srv);
        return 1;
    }
    int port = vttt_server_port(srv), S = 0;
    http_resp r;
    if (!http_do(port, "GET", "/health", NULL, NULL, 0, &r) && r.status == 200) {
        const char *s = strstr(r.body, "\"frame_size\":");
        if (s) S = atoi(s + 13);
    }
    http_resp_free(&r);
    if (batch == 1 || !o->batch_off) stream_memory(port, maxn, S);
    for (int i = 0; S > 0 && i < o->ncounts; i++)
        if (run_row(o, port, S, o->counts[i], batch > 1 ? "on" : "off")) break;
    vttt_server_stop(&srv);
    return S > 0 ? 0 : 1;
}

int cli_bench_serve(int argc, char **argv) {
    bench_opts o;
    int st = parse_opts(argc, argv, &o);
    if (st) return st < 0 ? 0 : st;
    signal(SIGPIPE, SIG_IGN);
    char dir[] = "/tmp/vttt_bench_serve_XXXXXX", model[600], enc[600];
    int tmp = !o.model;
    if (tmp) {
        if (!mkdtemp(dir) || make_random_model(&o, dir, model, enc, sizeof model)) {
            fprintf(stderr, CMD ": cannot make a random model in %s\n", dir);
            return 1;
        }
    } else {
        if (!o.encoder) return usage(2);
        snprintf(model, sizeof model, "%s", o.model);
        snprintf(enc, sizeof enc, "%s", o.encoder);
    }
    printf("%s: model %s, tokenizer %s, %.1f s per row, %s frames in and out, %d HTTP threads, model threads %d\n",
           CMD, tmp ? o.preset : model, tmp ? "default (random)" : enc, o.seconds, o.raw ? "raw rgb24" : "PNG", o.threads,
           o.model_threads > 0 ? o.model_threads : omp_get_max_threads());
    printf("%-8s %7s %9s %8s %8s %10s %8s %6s\n", "batching", "streams", "frames/s", "p50 ms", "p99 ms", "mean batch",
           "RSS MiB", "errors");
    int rc = 0;
    if (o.batch_off) rc |= run_setting(&o, model, enc, 1);
    if (o.batch_on) rc |= run_setting(&o, model, enc, o.batch_size);
    if (tmp) {
        char cmd[700];
        snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
        if (system(cmd)) fprintf(stderr, CMD ": could not remove %s\n", dir);
    }
    return rc;
}
