/*
 * infer/serve_server.c — the daemon's life: checking the parameters,
 * listening (libmicrohttpd, internal thread pool, suspend/resume,
 * connection caps sized to the descriptor limit), the per-request
 * callbacks (what the head decides, body accumulation or discarding,
 * completion bookkeeping) and the drain on stop.
 */
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/resource.h>
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
    p.decoding = VTTT_DECODE_AUTO;
    p.idle_timeout_s = 600;
    p.request_timeout_s = 30;
    p.queue_size = 256;
    p.max_batch = 1;   /* batching measured no faster on the CPU (infer/README.md); --batch N turns it on */
    p.http_threads = 4;
    p.model_threads = 0;   /* OpenMP's default; small work stays on one thread (ttt/par.h) */
    p.drain_s = 30;
    p.max_connections = 1024;
    p.max_connections_per_ip = 256;
    p.request_deadline_s = 30;
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
    else if (p->max_connections < 1 || p->max_connections > 1000000) bad = "max_connections must be in [1, 1000000]";
    else if (p->max_connections_per_ip < 0) bad = "max_connections_per_ip must be >= 0 (0: no limit)";
    else if (!(p->request_deadline_s > 0) || p->request_deadline_s > 86400) bad = "request_deadline_s must be in (0, 86400]";
    else if (p->token && !*p->token) bad = "the token must not be empty";
    if (bad) vttt_log(&p->log, VTTT_LOG_ERROR, "serve: %s", bad);
    return bad ? VTTT_EINVAL : 0;
}

static int endpoint_of(const char *path) {
    if (!strncmp(path, "/v1/streams", 11)) {
        size_t n = strlen(path);
        return n > 7 && !strcmp(path + n - 7, "/frames") ? SERVE_EP_FRAMES : SERVE_EP_STREAMS;
    }
    return SERVE_EP_OTHER;
}

/* A refused request whose body is not read first: its framing is
 * untrusted, the client waits for 100 Continue, or the body is too large
 * to read and discard. Otherwise the body is read and dropped and the
 * refusal answered after it, so that a client that sends its whole body
 * before reading reads the answer instead of a reset connection. */
#define SERVE_DISCARD_MAX ((size_t)64 << 20)

static int answer_at_once(serve_req *r, const serve_http *q) {
    const char *expect = serve_http_header(q, "Expect");
    const char *cl = serve_http_header(q, "Content-Length");
    if (r->head.close || !cl || (expect && !strcasecmp(expect, "100-continue"))) return 1;
    return strtoull(cl, NULL, 10) > r->srv->p.max_body + SERVE_DISCARD_MAX;
}

/* The first call of a request (headers only): the connection cap,
 * refusal while stopping, then what the head alone decides. */
static enum MHD_Result first_call(serve_req *r, struct MHD_Connection *c, const char *method) {
    serve_server *srv = r->srv;
    r->started = 1;
    if (!r->conn || r->conn->over) {
        r->head.close = 1;
        return serve_reply_error(r, c, MHD_HTTP_SERVICE_UNAVAILABLE,
                                 "%d connections are open (--max-connections); retry later", srv->p.max_connections);
    }
    if (atomic_load(&srv->stopping)) return serve_reply_error(r, c, MHD_HTTP_SERVICE_UNAVAILABLE, "the server is shutting down");
    serve_http q;
    serve_rules rules = serve_rules_of(srv);
    if (serve_http_of(r, c, method, &q)) return serve_reply_error(r, c, MHD_HTTP_SERVICE_UNAVAILABLE, "out of memory");
    int refused = serve_http_head(&rules, &q, &r->head);
    r->endpoint = endpoint_of(r->head.path);
    if (!refused) return MHD_YES;
    r->too_big = 1;   /* whatever body comes is dropped */
    return answer_at_once(r, &q) ? serve_reply_decision(r, c, &r->head) : MHD_YES;
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *c, const char *url, const char *method,
                                  const char *version, const char *upload_data, size_t *upload_size, void **con_cls) {
    serve_server *srv = cls;
    serve_req *r = *con_cls;
    (void)url, (void)version;
    if (!r) {
        r = calloc(1, sizeof *r);
        if (!r) return MHD_NO;
        r->srv = srv;
        r->t0 = serve_now_s();
        r->conn = serve_conn_of(c);
        r->endpoint = SERVE_EP_OTHER;
        *con_cls = r;
        atomic_fetch_add(&srv->in_flight, 1);
        return first_call(r, c, method);
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
    serve_conn_received(&srv->conns, r->conn);
    if (r->head.status) return serve_reply_decision(r, c, &r->head);
    if (r->too_big)
        return serve_reply_error(r, c, MHD_HTTP_CONTENT_TOO_LARGE, "request body is over the limit of %zu bytes (--max-body)",
                                 srv->p.max_body);
    if (r->body.failed) return serve_reply_error(r, c, MHD_HTTP_SERVICE_UNAVAILABLE, "out of memory for the request body");
    return serve_route(r, c, method);
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
    serve_conn_answered(&srv->conns, r->conn);
    serve_decision_clear(&r->d);
    free(r->headers);
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

/* Descriptors reserved for everything but client connections: the
 * listening socket, the model and tokenizer files, libmicrohttpd's
 * per-thread wake-up pipes, logs. */
#define SERVE_FD_RESERVE 64

/* Raises the soft descriptor limit to the hard one and returns how many
 * connections libmicrohttpd may hold: srv->p.max_connections plus room
 * to answer a burst past it with 503 (a sixteenth, at least 16), all
 * within the descriptors. The cap shrinks (logged) where they are short. */
static unsigned connection_room(serve_server *srv) {
    struct rlimit rl;
    long fds = 1024;
    if (!getrlimit(RLIMIT_NOFILE, &rl)) {
        if (rl.rlim_cur < rl.rlim_max) {
            rlim_t want = rl.rlim_max == RLIM_INFINITY || rl.rlim_max > 1048576 ? 1048576 : rl.rlim_max;
            if (want > rl.rlim_cur) {
                rl.rlim_cur = want;
                setrlimit(RLIMIT_NOFILE, &rl);
                getrlimit(RLIMIT_NOFILE, &rl);
            }
        }
        fds = rl.rlim_cur == RLIM_INFINITY || rl.rlim_cur > 1048576 ? 1048576 : (long)rl.rlim_cur;
    }
    long usable = fds - SERVE_FD_RESERVE - 2L * srv->p.http_threads;
    long burst = srv->p.max_connections / 16 < 16 ? 16 : srv->p.max_connections / 16;
    if (srv->p.max_connections + burst > usable) {
        long cap = usable * 15 / 16;
        if (cap < 1) cap = 1;
        vttt_log(&srv->p.log, VTTT_LOG_WARNING,
                 "serve: %d connections (--max-connections) do not fit in %ld file descriptors (ulimit -n): serving "
                 "at most %ld; raise ulimit -n for more",
                 srv->p.max_connections, fds, cap);
        srv->p.max_connections = (int)cap;
        burst = usable - cap;
    }
    return (unsigned)(srv->p.max_connections + burst);
}

static int listen_mhd(serve_server *srv, const struct sockaddr_storage *addr) {
    /* poll(), not epoll: with libmicrohttpd 0.9.75's edge-triggered epoll a
     * client that closes in the middle of its body is sometimes only
     * noticed at the socket timeout (test_client_disconnect). */
    unsigned flags = MHD_USE_POLL_INTERNAL_THREAD | MHD_ALLOW_SUSPEND_RESUME | MHD_USE_ERROR_LOG;
    if (addr->ss_family == AF_INET6) flags |= MHD_USE_IPv6;
    unsigned timeout = (unsigned)ceil(srv->p.request_timeout_s);
    unsigned room = connection_room(srv);
    int err = serve_conns_start(&srv->conns, srv->p.max_connections, srv->p.request_deadline_s);
    if (err) return err;
    srv->mhd = MHD_start_daemon(flags, 0, NULL, NULL, on_request, srv, MHD_OPTION_EXTERNAL_LOGGER, mhd_log, srv,
                                MHD_OPTION_SOCK_ADDR, addr, MHD_OPTION_THREAD_POOL_SIZE, (unsigned)srv->p.http_threads,
                                MHD_OPTION_NOTIFY_COMPLETED, on_completed, srv, MHD_OPTION_CONNECTION_TIMEOUT,
                                timeout, MHD_OPTION_CONNECTION_LIMIT, room, MHD_OPTION_PER_IP_CONNECTION_LIMIT,
                                (unsigned)srv->p.max_connections_per_ip, MHD_OPTION_NOTIFY_CONNECTION,
                                serve_conn_notify, &srv->conns, MHD_OPTION_URI_LOG_CALLBACK, serve_conn_uri,
                                &srv->conns, MHD_OPTION_END);
    if (!srv->mhd) {
        serve_conns_stop(&srv->conns);
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
    serve_conns_stop(&srv->conns);
    if (lfd != MHD_INVALID_SOCKET) close(lfd);
    serve_table_destroy(&srv->table);
    serve_worker_free(&srv->worker);
    vttt_log(&srv->p.log, VTTT_LOG_INFO, "serve: stopped");
    free_server(srv);
}
