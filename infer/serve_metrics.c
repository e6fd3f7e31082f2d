/*
 * infer/serve_metrics.c — the daemon's counters and latency histograms
 * (lock-free atomics, updated by every thread) and their Prometheus text
 * exposition for GET /metrics. Also the small buffer and clock helpers.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "serve_internal.h"

/* Upper bounds of the latency buckets in seconds (+Inf is the last). */
static const double lat_bounds[SERVE_LAT_BUCKETS] = {0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1,
                                                     0.25,  0.5,    1.0,   2.5,  5.0,   10.0, 30.0};
static const char *const ep_names[SERVE_EP_COUNT] = {"frames", "streams", "other"};

double serve_now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static void buf_reserve(serve_buf *b, size_t extra) {
    if (b->failed || b->n + extra + 1 <= b->cap) return;
    size_t cap = b->cap ? b->cap : 256;
    while (cap < b->n + extra + 1) cap *= 2;
    char *p = realloc(b->p, cap);
    if (!p) {
        b->failed = 1;
        return;
    }
    b->p = p;
    b->cap = cap;
}

void serve_buf_append(serve_buf *b, const void *data, size_t n) {
    buf_reserve(b, n);
    if (b->failed) return;
    memcpy(b->p + b->n, data, n);
    b->n += n;
    b->p[b->n] = 0;
}

void serve_buf_printf(serve_buf *b, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    int need = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (need < 0) return;
    buf_reserve(b, (size_t)need);
    if (b->failed) return;
    va_start(ap, fmt);
    vsnprintf(b->p + b->n, (size_t)need + 1, fmt, ap);
    va_end(ap);
    b->n += (size_t)need;
}

void serve_buf_free(serve_buf *b) {
    free(b->p);
    memset(b, 0, sizeof *b);
}

void serve_metrics_observe(serve_metrics *m, int endpoint, double seconds, int status) {
    if (endpoint < 0 || endpoint >= SERVE_EP_COUNT) endpoint = SERVE_EP_OTHER;
    int k = 0;
    while (k < SERVE_LAT_BUCKETS && seconds > lat_bounds[k]) k++;
    atomic_fetch_add(&m->lat_bucket[endpoint][k], 1);
    atomic_fetch_add(&m->lat_sum_us[endpoint], (uint_fast64_t)(seconds * 1e6 + 0.5));
    if (status >= 100 && status < 600) atomic_fetch_add(&m->by_code[status], 1);
}

size_t serve_rss_bytes(void) {
    FILE *f = fopen("/proc/self/statm", "r");
    if (!f) return 0;
    unsigned long long size = 0, rss = 0;
    int ok = fscanf(f, "%llu %llu", &size, &rss) == 2;
    fclose(f);
    long page = sysconf(_SC_PAGESIZE);
    return ok && page > 0 ? (size_t)rss * (size_t)page : 0;
}

static void counter(serve_buf *o, const char *name, const char *help, uint64_t v) {
    serve_buf_printf(o, "# HELP %s %s\n# TYPE %s counter\n%s %llu\n", name, help, name, name,
                     (unsigned long long)v);
}

static void gauge(serve_buf *o, const char *name, const char *help, double v) {
    serve_buf_printf(o, "# HELP %s %s\n# TYPE %s gauge\n%s %.17g\n", name, help, name, name, v);
}

static void render_latency(serve_metrics *m, serve_buf *o) {
    const char *name = "vttt_request_duration_seconds";
    serve_buf_printf(o, "# HELP %s Time from a request's headers to its answer, by endpoint.\n# TYPE %s histogram\n",
                     name, name);
    for (int e = 0; e < SERVE_EP_COUNT; e++) {
        uint64_t cum = 0;
        for (int k = 0; k <= SERVE_LAT_BUCKETS; k++) {
            cum += atomic_load(&m->lat_bucket[e][k]);
            if (k < SERVE_LAT_BUCKETS)
                serve_buf_printf(o, "%s_bucket{endpoint=\"%s\",le=\"%g\"} %llu\n", name, ep_names[e], lat_bounds[k],
                                 (unsigned long long)cum);
            else
                serve_buf_printf(o, "%s_bucket{endpoint=\"%s\",le=\"+Inf\"} %llu\n", name, ep_names[e],
                                 (unsigned long long)cum);
        }
        serve_buf_printf(o, "%s_sum{endpoint=\"%s\"} %.6f\n%s_count{endpoint=\"%s\"} %llu\n", name, ep_names[e],
                         1e-6 * (double)atomic_load(&m->lat_sum_us[e]), name, ep_names[e], (unsigned long long)cum);
    }
}

static void render_codes(serve_metrics *m, serve_buf *o) {
    serve_buf_printf(o, "# HELP vttt_http_responses_total Responses by HTTP status code.\n"
                        "# TYPE vttt_http_responses_total counter\n");
    for (int c = 100; c < 600; c++) {
        uint64_t v = atomic_load(&m->by_code[c]);
        if (v) serve_buf_printf(o, "vttt_http_responses_total{code=\"%d\"} %llu\n", c, (unsigned long long)v);
    }
    serve_buf_printf(o, "# HELP vttt_http_errors_total Error responses (4xx, 5xx) by HTTP status code.\n"
                        "# TYPE vttt_http_errors_total counter\n");
    for (int c = 400; c < 600; c++) {
        uint64_t v = atomic_load(&m->by_code[c]);
        if (v) serve_buf_printf(o, "vttt_http_errors_total{code=\"%d\"} %llu\n", c, (unsigned long long)v);
    }
}

/* The whole exposition, in the Prometheus text format 0.0.4. */
void serve_metrics_render(serve_server *srv, serve_buf *o) {
    serve_metrics *m = &srv->metrics;
    int ready = atomic_load(&srv->worker.ready);
    gauge(o, "vttt_ready", "1 once the model is loaded.", ready == 1);
    counter(o, "vttt_frames_total", "Frames received and pushed into streams.", atomic_load(&m->frames_in));
    counter(o, "vttt_predicted_frames_total", "Frames predicted (horizon included).", atomic_load(&m->frames_out));
    counter(o, "vttt_model_steps_total", "Model calls on the model thread (a batch counts once).",
            atomic_load(&m->model_steps));
    counter(o, "vttt_model_step_frames_total", "Frames through those model calls (mean batch = this / steps).",
            atomic_load(&m->batched_frames));
    counter(o, "vttt_streams_opened_total", "Streams opened (fresh or from a snapshot).",
            atomic_load(&m->streams_opened));
    counter(o, "vttt_streams_closed_total", "Streams closed by DELETE.", atomic_load(&m->streams_closed));
    counter(o, "vttt_streams_expired_total", "Streams closed after --idle-timeout.", atomic_load(&m->streams_expired));
    counter(o, "vttt_jobs_cancelled_total", "Model jobs dropped before running (client gone, timed out).",
            atomic_load(&m->jobs_cancelled));
    gauge(o, "vttt_streams_active", "Open streams.", (double)serve_table_count(&srv->table));
    gauge(o, "vttt_queue_depth", "Model jobs waiting.", (double)serve_worker_depth(&srv->worker));
    gauge(o, "vttt_requests_in_flight", "HTTP requests being handled.", (double)atomic_load(&srv->in_flight));
    gauge(o, "vttt_connections_open", "Client connections open.", (double)serve_conns_count(&srv->conns));
    counter(o, "vttt_connections_refused_total", "Connections answered 503 and closed past --max-connections.",
            atomic_load(&srv->conns.over_total));
    counter(o, "vttt_connections_cut_total", "Connections closed for not delivering a request within --request-deadline.",
            atomic_load(&srv->conns.cut_total));
    gauge(o, "vttt_stream_state_bytes", "Model state bytes of one stream (constant for TTT models).",
          (double)srv->worker.stream_bytes);
    gauge(o, "process_resident_memory_bytes", "Resident memory size in bytes.", (double)serve_rss_bytes());
    gauge(o, "vttt_uptime_seconds", "Seconds since the server started.", serve_now_s() - srv->start_s);
    render_latency(m, o);
    render_codes(m, o);
}
