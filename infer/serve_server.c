/*
 * infer/serve_server.c — the daemon's life: checking the parameters,
 * listening (libmicrohttpd, internal thread pool, suspend/resume), the
 * per-request callbacks (authentication, body size limit, body
 * accumulation, completion bookkeeping) and the drain on stop.
 */
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "serve_internal.h"

vttt_server_params vttt_server_default_params(void) {
    vttt_server_params p;
    memset(&p, 0, sizeof p);
    p.listen = "127.0.0.1:8080";
    p.max_streams = 64;
    p.max_body = (size_t)16 << 20;
    p.max_horizon = 16;
    p.idle_timeout_s = 600;
    p.request_timeout_s = 30;
    p.queue_size = 256;
    p.max_batch = 1;   /* batching measured no faster on the CPU (infer/README.md); --batch N turns it on */
    p.http_threads = 4;
    p.model_threads = 0;   /* OpenMP's default; small work stays on one thread (ttt/par.h) */
    p.drain_s = 30;
    return p;
}

static int check_params(const vttt_server_params *p) {
    const char *bad = NULL;
    if (!p->model_dir || !p->encoder_dir) bad = "model_dir and encoder_dir are required";
    else if (p->max_streams < 1 || p->max_streams > 1000000) bad = "max_streams must be in [1, 1000000]";
    else if (p->max_body < 64) bad = "max_body must be at least 64 bytes";
    else if (p->max_horizon < 1 || p->max_horizon > 1024) bad = "max_horizon must be in [1, 1024]";
    else if (!(p->idle_timeout_s >= 0)) bad = "idle_timeout_s must be >= 0 (0: never)";
    else if (!(p->request_timeout_s > 0) || p->request_timeout_s > 86400) bad = "request_timeout_s must be in (0, 86400]";
    else if (p->queue_size < 1) bad = "queue_size must be >= 1";
    else if (p->max_batch < 1 || p->max_batch > 256) bad = "max_batch must be in [1, 256]";
    else if (p->http_threads < 1 || p->http_threads > 256) bad = "http_threads must be in [1, 256]";
    else if (p->model_threads < 0 || p->model_threads > 1024) bad = "model_threads must be in [0, 1024]";
    else if (!(p->drain_s >= 0)) bad = "drain_s must be >= 0";
    else if (p->token && !*p->token) bad = "the token must not be empty";
    if (bad) vttt_log(&p->log, VTTT_LOG_ERROR, "serve: %s", bad);
    return bad ? VTTT_EINVAL : 0;
}

static int endpoint_of(const char *url) {
    if (!strncmp(url, "/v1/streams", 11)) {
        size_t n = strlen(url);
        return n > 7 && !strcmp(url + n - 7, "/frames") ? SERVE_EP_FRAMES : SERVE_EP_STREAMS;
    }
    return SERVE_EP_OTHER;
}

/* The first call of a request (headers only): authentication, refusal
 * while stopping, and the declared body size. */
static enum MHD_Result first_call(serve_req *r, struct MHD_Connection *c, const char *url) {
    serve_server *srv = r->srv;
    r->started = 1;
    if (atomic_load(&srv->stopping)) return serve_reply_error(r, c, MHD_HTTP_SERVICE_UNAVAILABLE, "the server is shutting down");
    if (strcmp(url, "/health") && !serve_auth_ok(c, srv->token))
        return serve_reply_error(r, c, MHD_HTTP_UNAUTHORIZED,
                                 "missing or wrong bearer token: send the header 'Authorization: Bearer <token>'");
    const char *cl = MHD_lookup_connection_value(c, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_LENGTH);
    if (cl && strtoull(cl, NULL, 10) > srv->p.max_body)
        return serve_reply_error(r, c, MHD_HTTP_CONTENT_TOO_LARGE, "request body of %s bytes is over the limit of %zu bytes (--max-body)",
                                 cl, srv->p.max_body);
    return MHD_YES;
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *c, const char *url, const char *method,
                                  const char *version, const char *upload_data, size_t *upload_size, void **con_cls) {
    serve_server *srv = cls;
    serve_req *r = *con_cls;
    if (!r) {
        r = calloc(1, sizeof *r);
        if (!r) return MHD_NO;
        r->srv = srv;
        r->t0 = serve_now_s();
        r->endpoint = endpoint_of(url);
        *con_cls = r;
        atomic_fetch_add(&srv->in_flight, 1);
        return first_call(r, c, url);
    }
    if (r->status) {   /* answered early; the rest of the body is discarded */
        *upload_size = 0;
        return MHD_YES;
    }
    if (*upload_size) {
        r->body_seen += *upload_size;
        if (!r->too_big && r->body_seen > srv->p.max_body) {
            r->too_big = 1;
            serve_buf_free(&r->body);
        }
        if (!r->too_big) serve_buf_append(&r->body, upload_data, *upload_size);
        *upload_size = 0;
        return MHD_YES;
    }
    if (r->too_big)
        return serve_reply_error(r, c, MHD_HTTP_CONTENT_TOO_LARGE, "request body is over the limit of %zu bytes (--max-body)",
                                 srv->p.max_body);
    if (r->body.failed) return serve_reply_error(r, c, MHD_HTTP_SERVICE_UNAVAILABLE, "out of memory for the request body");
    return serve_route(r, c, url, method);
}

/* Request done (answered, or the connection closed): metrics, then free
 * everything the request held. A request whose job is still with the
 * model thread cannot be here (its connection is suspended until the job
 * is done); if libmicrohttpd ever did that, the request is leaked rather
 * than freed under the worker. */
static void on_completed(void *cls, struct MHD_Connection *c, void **con_cls, enum MHD_RequestTerminationCode toe) {
    serve_server *srv = cls;
    serve_req *r = *con_cls;
    if (!r) return;
    *con_cls = NULL;
    int st = atomic_load(&r->job.state);
    if (r->has_job && (st == SERVE_JOB_QUEUED || st == SERVE_JOB_RUNNING)) {
        vttt_log(&srv->p.log, VTTT_LOG_ERROR, "serve: a request ended while its job was queued (leaked)");
        return;
    }
    serve_metrics_observe(&srv->metrics, r->endpoint, serve_now_s() - r->t0, r->status ? r->status : 499);
    serve_job *j = &r->job;
    free(j->rgb);
    free(j->pred);
    free(j->tokens);
    free(j->out);
    serve_table_put(&srv->table, j->entry);
    serve_table_put(&srv->table, j->opened);
    if (r->reserved && !j->opened) serve_table_unreserve(&srv->table);
    serve_buf_free(&r->body);
    free(r);
    atomic_fetch_sub(&srv->in_flight, 1);
}

static void mhd_log(void *cls, const char *fmt, va_list ap) {
    serve_server *srv = cls;
    char msg[512];
    vsnprintf(msg, sizeof msg, fmt, ap);
    size_t n = strlen(msg);
    while (n && (msg[n - 1] == '\n' || msg[n - 1] == '\r')) msg[--n] = 0;
    vttt_log(&srv->p.log, VTTT_LOG_INFO, "serve: libmicrohttpd: %s", msg);
}

static char *dup_or_null(const char *s, int *fail) {
    if (!s) return NULL;
    char *d = strdup(s);
    if (!d) *fail = 1;
    return d;
}

static void free_server(serve_server *srv) {
    free(srv->model_dir);
    free(srv->encoder_dir);
    free(srv->listen);
    free(srv->token);
    free(srv);
}

static int listen_mhd(serve_server *srv, const struct sockaddr_storage *addr) {
    /* poll(), not epoll: with libmicrohttpd 0.9.75's edge-triggered epoll a
     * client that closes in the middle of its body is sometimes only
     * noticed at the socket timeout (test_client_disconnect). */
    unsigned flags = MHD_USE_POLL_INTERNAL_THREAD | MHD_ALLOW_SUSPEND_RESUME | MHD_USE_ERROR_LOG;
    if (addr->ss_family == AF_INET6) flags |= MHD_USE_IPv6;
    unsigned timeout = (unsigned)ceil(srv->p.request_timeout_s);
    srv->mhd = MHD_start_daemon(flags, 0, NULL, NULL, on_request, srv, MHD_OPTION_EXTERNAL_LOGGER, mhd_log, srv,
                                MHD_OPTION_SOCK_ADDR, addr, MHD_OPTION_THREAD_POOL_SIZE, (unsigned)srv->p.http_threads,
                                MHD_OPTION_NOTIFY_COMPLETED, on_completed, srv, MHD_OPTION_CONNECTION_TIMEOUT,
                                timeout, MHD_OPTION_END);
    if (!srv->mhd) {
        vttt_log(&srv->p.log, VTTT_LOG_ERROR,
                 "serve: cannot listen on %s (address in use or not available here?); pick another --listen", srv->listen);
        return VTTT_EIO;
    }
    const union MHD_DaemonInfo *di = MHD_get_daemon_info(srv->mhd, MHD_DAEMON_INFO_BIND_PORT);
    srv->port = di ? di->port : 0;
    return 0;
}

int vttt_server_start(vttt_server **out, const vttt_server_params *p) {
    *out = NULL;
    int err = check_params(p);
    if (err) return err;
    struct sockaddr_storage addr;
    socklen_t alen;
    int loopback = 0;
    const char *listen = p->listen ? p->listen : "127.0.0.1:8080";
    err = serve_parse_listen(listen, &addr, &alen, &loopback, &p->log);
    if (err) return err;
    if (!loopback && !p->token) {
        vttt_log(&p->log, VTTT_LOG_ERROR, "serve: %s is not a loopback address: set a bearer token (--token) to listen there",
                 listen);
        return VTTT_EINVAL;
    }
    serve_server *srv = calloc(1, sizeof *srv);
    if (!srv) return VTTT_ENOMEM;
    int fail = 0;
    srv->p = *p;
    srv->model_dir = dup_or_null(p->model_dir, &fail);
    srv->encoder_dir = dup_or_null(p->encoder_dir, &fail);
    srv->listen = dup_or_null(listen, &fail);
    srv->token = dup_or_null(p->token, &fail);
    srv->start_s = serve_now_s();
    if (fail || serve_table_init(&srv->table, p->max_streams)) {
        free_server(srv);
        return VTTT_ENOMEM;
    }
    err = serve_worker_start(&srv->worker, srv);
    if (!err) err = listen_mhd(srv, &addr);
    if (err) {
        serve_worker_stop(&srv->worker);
        serve_table_destroy(&srv->table);
        serve_worker_free(&srv->worker);
        free_server(srv);
        return err;
    }
    vttt_log(&p->log, VTTT_LOG_INFO, "serve: listening on %s (port %d)", srv->listen, srv->port);
    *out = srv;
    return 0;
}

int vttt_server_port(const vttt_server *s) { return s->port; }

int vttt_server_wait_ready(vttt_server *s) { return serve_worker_wait_ready(&s->worker); }

/* Sleeps until no request is in flight or max_s passed; 1 when drained. */
static int wait_idle(serve_server *srv, double max_s) {
    double end = serve_now_s() + max_s;
    while (atomic_load(&srv->in_flight) > 0) {
        if (serve_now_s() >= end) return 0;
        struct timespec ts = {0, 5 * 1000 * 1000};
        nanosleep(&ts, NULL);
    }
    return 1;
}

void vttt_server_stop(vttt_server **ps) {
    serve_server *srv = *ps;
    if (!srv) return;
    *ps = NULL;
    atomic_store(&srv->stopping, 1);
    MHD_socket lfd = MHD_quiesce_daemon(srv->mhd);
    if (!wait_idle(srv, srv->p.drain_s))
        vttt_log(&srv->p.log, VTTT_LOG_WARNING, "serve: %d request(s) still running after %.0f s of draining",
                 atomic_load(&srv->in_flight), srv->p.drain_s);
    serve_worker_stop(&srv->worker);   /* answers what is still queued */
    wait_idle(srv, 2.0);
    MHD_stop_daemon(srv->mhd);
    if (lfd != MHD_INVALID_SOCKET) close(lfd);
    serve_table_destroy(&srv->table);
    serve_worker_free(&srv->worker);
    vttt_log(&srv->p.log, VTTT_LOG_INFO, "serve: stopped");
    free_server(srv);
}
