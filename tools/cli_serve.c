/*
 * `vttt serve`: the streaming next-frame daemon over HTTP (infer/infer.h,
 * vttt_server_*). The main thread only waits for signals: SIGTERM or
 * SIGINT stop accepting connections, let in-flight requests finish and
 * exit 0; the model loads in the background while /health answers 503.
 */
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>

#include "cli.h"
#include "infer.h"

#define CMD "vttt serve"

static int usage(int status) {
    fprintf(status ? stderr : stdout,
            "usage: vttt serve [--model DIR] [--encoder DIR] [options]\n"
            "  --model DIR (default: the shipped general video model for --size S, 64 or 128), --encoder\n"
            "  DIR (default: DIR/encoder); --decode auto|mixture|expect|argmax|sample (as vttt predict)\n"
            "  serves next-frame prediction over HTTP: POST /v1/streams opens a stream, POST\n"
            "  /v1/streams/{id}/frames takes a frame (PNG, or raw rgb24 with ?width=&height=) and answers the\n"
            "  predicted next frame (PNG; ?format=json for token ids, ?format=rgb24 for raw; ?horizon=K for\n"
            "  K frames). Also GET|DELETE /v1/streams/{id}, POST /v1/streams/{id}/snapshot (POST the bytes\n"
            "  to /v1/streams to restore), GET /health, GET /metrics (Prometheus). See infer/README.md.\n"
            "options:\n"
            "  --listen HOST:PORT    address to listen on (127.0.0.1:8080; port 0 picks a free one)\n"
            "  --token TOKEN         require 'Authorization: Bearer TOKEN' (required off loopback; also\n"
            "                        $VTTT_SERVE_TOKEN, which keeps it out of the process list)\n"
            "  --snapshot-key FILE   sign snapshots with HMAC-SHA256 keyed by FILE's bytes (16..4096) and\n"
            "                        restore only snapshots signed with it (unsigned or altered: 400)\n"
            "  --max-streams N       open streams (64); more -> 429\n"
            "  --max-body BYTES      request body size (16777216); more -> 413\n"
            "  --max-horizon K       frames predicted per request (16)\n"
            "  --idle-timeout S      close streams unused for S seconds (600; 0 never)\n"
            "  --request-timeout S   a request waiting longer for the model -> 503 (30)\n"
            "  --queue N             model jobs waiting (256); more -> 503 with Retry-After\n"
            "  --batch N             frames of distinct streams per model step (1: no batching, the default;\n"
            "                        on the CPU batching measured no faster and used more memory)\n"
            "  --threads N           HTTP threads (4)\n"
            "  --model-threads N     OpenMP/OpenBLAS threads for the model (0, the default: OMP_NUM_THREADS\n"
            "                        or all cores; small work runs on one of them whatever N)\n"
            "  --drain S             on SIGTERM, how long in-flight requests get (30)\n"
            "  --max-connections N   open client connections (1024; fewer where ulimit -n is lower, which the\n"
            "                        daemon raises to its hard limit); more are answered 503 and closed\n"
            "  --max-connections-per-ip N\n"
            "                        connections from one client address (256; 0 no limit); more are closed\n"
            "                        at once (behind a proxy every client has the proxy's address)\n"
            "  --request-deadline S  a connection must deliver a whole request, head and body, within S seconds\n"
            "                        of opening or of its last answer, however slowly it sends, or it is\n"
            "                        closed (30)\n"
            "  --quiet               errors only\n"
            "SIGTERM/SIGINT: stop accepting, drain, exit 0. Exit 1 when the model cannot load.\n");
    return status;
}

static int parse_num(const char *opt, const char *s, double lo, double hi, double *v) {
    char *end;
    errno = 0;
    double x = strtod(s, &end);
    if (!*s || *end || errno || !(x >= lo && x <= hi)) {
        fprintf(stderr, CMD ": %s wants a number in [%g, %g], not '%s'\n", opt, lo, hi, s);
        return -1;
    }
    *v = x;
    return 0;
}

/* Parses argv into p; 0, or the usage exit status (2). */
static int parse_args(int argc, char **argv, vttt_server_params *p, int *quiet, const char **key_file, int *size) {
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--quiet")) {
            *quiet = 1;
            continue;
        }
        if (i + 1 >= argc) {
            fprintf(stderr, CMD ": unknown option or missing value: %s (vttt serve --help)\n", a);
            return 2;
        }
        const char *v = argv[++i];
        double x = 0;
        int bad = 0;
        if (!strcmp(a, "--model")) p->model_dir = v;
        else if (!strcmp(a, "--encoder")) p->encoder_dir = v;
        else if (!strcmp(a, "--listen")) p->listen = v;
        else if (!strcmp(a, "--size")) bad = parse_num(a, v, 8, 1024, &x), *size = (int)x;
        else if (!strcmp(a, "--decode")) {
            if ((p->decoding = vttt_decoding_parse(v)) < -1) {
                fprintf(stderr, CMD ": --decode %s: auto, mixture, expect, argmax or sample\n", v);
                return 2;
            }
        }
        else if (!strcmp(a, "--token")) p->token = v;
        else if (!strcmp(a, "--snapshot-key")) *key_file = v;
        else if (!strcmp(a, "--max-streams")) bad = parse_num(a, v, 1, 1e6, &x), p->max_streams = (int)x;
        else if (!strcmp(a, "--max-body")) bad = parse_num(a, v, 64, 1e12, &x), p->max_body = (size_t)x;
        else if (!strcmp(a, "--max-horizon")) bad = parse_num(a, v, 1, 1024, &x), p->max_horizon = (int)x;
        else if (!strcmp(a, "--idle-timeout")) bad = parse_num(a, v, 0, 1e9, &x), p->idle_timeout_s = x;
        else if (!strcmp(a, "--request-timeout")) bad = parse_num(a, v, 0.001, 86400, &x), p->request_timeout_s = x;
        else if (!strcmp(a, "--queue")) bad = parse_num(a, v, 1, 1e7, &x), p->queue_size = (int)x;
        else if (!strcmp(a, "--batch")) bad = parse_num(a, v, 1, 256, &x), p->max_batch = (int)x;
        else if (!strcmp(a, "--threads")) bad = parse_num(a, v, 1, 256, &x), p->http_threads = (int)x;
        else if (!strcmp(a, "--model-threads")) bad = parse_num(a, v, 0, 1024, &x), p->model_threads = (int)x;
        else if (!strcmp(a, "--drain")) bad = parse_num(a, v, 0, 1e6, &x), p->drain_s = x;
        else if (!strcmp(a, "--max-connections")) bad = parse_num(a, v, 1, 1e6, &x), p->max_connections = (int)x;
        else if (!strcmp(a, "--max-connections-per-ip"))
            bad = parse_num(a, v, 0, 1e6, &x), p->max_connections_per_ip = (int)x;
        else if (!strcmp(a, "--request-deadline")) bad = parse_num(a, v, 0.001, 86400, &x), p->request_deadline_s = x;
        else {
            fprintf(stderr, CMD ": unknown option %s (vttt serve --help)\n", a);
            return 2;
        }
        if (bad) return 2;
    }
    return 0;
}

typedef struct {
    vttt_server *srv;
    pthread_t main_thread;
    int err;
} ready_waiter;

/* Waits for the model and wakes the main thread's sigwait with SIGUSR1. */
static void *wait_ready(void *arg) {
    ready_waiter *rw = arg;
    rw->err = vttt_server_wait_ready(rw->srv);
    pthread_kill(rw->main_thread, SIGUSR1);
    return NULL;
}

static int run(const vttt_server_params *p, int quiet) {
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGUSR1);
    pthread_sigmask(SIG_BLOCK, &set, NULL);   /* every thread started below inherits the mask */
    signal(SIGPIPE, SIG_IGN);
    vttt_server *srv = NULL;
    if (vttt_server_start(&srv, p)) return 1;
    ready_waiter rw = {srv, pthread_self(), 0};
    pthread_t th;
    int have_waiter = !pthread_create(&th, NULL, wait_ready, &rw);
    int status = 0;
    for (;;) {
        int sig = 0;
        if (sigwait(&set, &sig)) continue;
        if (sig == SIGUSR1) {
            if (rw.err) {
                fprintf(stderr, CMD ": cannot load the model (%s); stopping\n", vttt_strerror(rw.err));
                status = 1;
                break;
            }
            if (!quiet) fprintf(stderr, CMD ": ready on port %d\n", vttt_server_port(srv));
            continue;
        }
        if (!quiet) fprintf(stderr, CMD ": %s: draining and stopping\n", sig == SIGTERM ? "SIGTERM" : "SIGINT");
        break;
    }
    if (have_waiter) pthread_join(th, NULL);   /* returns once loading ended, which it always does */
    vttt_server_stop(&srv);
    if (!quiet) fprintf(stderr, CMD ": stopped\n");
    return status;
}

int cli_serve(int argc, char **argv) {
    if (argc >= 2 && (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h"))) return usage(0);
    vttt_server_params p = vttt_server_default_params();
    int quiet = 0;
    p.token = getenv("VTTT_SERVE_TOKEN");
    if (p.token && !*p.token) p.token = NULL;
    const char *key_file = NULL;
    int size = 0;
    int st = parse_args(argc, argv, &p, &quiet, &key_file, &size);
    if (st) return st;
    char mbuf[4096], ebuf[4096];
    if (cli_video_dirs(CMD, &p.model_dir, &p.encoder_dir, size, mbuf, ebuf, sizeof mbuf)) return 2;
    p.log.level = quiet ? VTTT_LOG_ERROR : VTTT_LOG_INFO;
    uint8_t *key = NULL;
    size_t key_n = 0;
    if (key_file && vttt_snapshot_key_read(key_file, &key, &key_n, &p.log)) return 2;
    p.snapshot_key = key, p.snapshot_key_n = key_n;
    st = run(&p, quiet);
    if (key) OPENSSL_cleanse(key, key_n);
    free(key);
    return st;
}
