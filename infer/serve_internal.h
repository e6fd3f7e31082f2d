/*
 * infer/serve_internal.h — the pieces of the HTTP daemon (vttt serve),
 * internal to infer/. One file per job:
 *   serve_server.c   daemon start/stop, libmicrohttpd callbacks, drain
 *   serve_routes.c   URL routing and the endpoint handlers
 *   serve_table.c    the stream table: ids, references, expiry
 *   serve_worker.c   the model thread: job queue, batching, cancellation
 *   serve_request.c  what a request means, without sockets (serve_request.h)
 *   serve_reply.c    answers: JSON errors, bytes, JSON bodies
 *   serve_conn.c     connections: counts, caps, the receive deadline sweep
 *   serve_metrics.c  counters, latency histograms, Prometheus text
 *   serve_auth.c     listen addresses, loopback check, bearer tokens
 *
 * Threads: libmicrohttpd's pool runs the handlers; a handler that needs
 * the model queues a job, suspends its connection and returns; the model
 * thread runs the job and resumes the connection, whose handler then
 * answers. Only the model thread calls into the predictor and its streams
 * (opening, pushing, snapshots, freeing).
 */
#ifndef VTTT_SERVE_INTERNAL_H
#define VTTT_SERVE_INTERNAL_H

#include <pthread.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include <microhttpd.h>

#include "infer.h"
#include "serve_request.h"

/* ---- growable text/byte buffer ------------------------------------------ */
typedef struct serve_buf {
    char *p;
    size_t n, cap;
    int failed;   /* an allocation failed; p holds what fitted */
} serve_buf;
void serve_buf_append(serve_buf *b, const void *data, size_t n);
void serve_buf_printf(serve_buf *b, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;
void serve_buf_free(serve_buf *b);

double serve_now_s(void);   /* monotonic seconds */

/* ---- the stream table ---------------------------------------------------- */

/* One open stream. refs: one for the table while it is listed, one per
 * request holding it. The vttt_stream is freed on the model thread once
 * the entry is unlisted and unreferenced (serve_table_collect). Fields
 * below `stream` are guarded by the table's mutex. */
typedef struct serve_entry {
    char id[SERVE_ID_LEN + 1];
    vttt_stream *stream;
    int refs;
    int listed;
    int64_t frames;            /* frames pushed */
    size_t state_bytes;
    int64_t created_unix;      /* seconds since the epoch */
    int64_t last_used_unix;
    double last_used_s;        /* monotonic, for expiry */
    struct serve_entry *next;  /* hash chain / dead list */
} serve_entry;

typedef struct serve_table {
    pthread_mutex_t mu;
    serve_entry **buckets;
    int nbuckets;
    int count;          /* listed + reserved */
    int max;
    uint64_t rng;       /* id generator state */
    serve_entry *dead;  /* unlisted, unreferenced: streams to free */
} serve_table;

int serve_table_init(serve_table *t, int max_streams);
/* Frees every entry and stream (no other thread may use t any more). */
void serve_table_destroy(serve_table *t);
/* Reserves room for one stream: 0, or VTTT_EAGAIN when max are open. */
int serve_table_reserve(serve_table *t);
void serve_table_unreserve(serve_table *t);
/* Lists a new stream in a reserved slot, which it takes over; returns its
 * entry with one reference for the caller (besides the table's), or NULL
 * (no memory: the reservation stays with the caller). */
serve_entry *serve_table_insert(serve_table *t, vttt_stream *s, size_t state_bytes);
/* The entry of id with a reference taken and its last use set to now;
 * NULL when unknown. */
serve_entry *serve_table_get(serve_table *t, const char *id);
void serve_table_put(serve_table *t, serve_entry *e);
/* Unlists id: 0, or VTTT_EINVAL when unknown. */
int serve_table_remove(serve_table *t, const char *id);
/* Unlists streams idle for more than idle_s that no request holds;
 * returns how many. */
int serve_table_expire(serve_table *t, double now_s, double idle_s);
/* A copy of id's entry (no reference taken, last use unchanged): 0, or
 * VTTT_EINVAL when unknown. */
int serve_table_peek(serve_table *t, const char *id, serve_entry *copy);
/* Records a pushed frame. */
void serve_table_touch(serve_table *t, serve_entry *e, int frames);
/* Takes the list of entries whose streams are to be freed. */
serve_entry *serve_table_collect(serve_table *t);
int serve_table_count(serve_table *t);

/* ---- metrics ------------------------------------------------------------- */
#define SERVE_LAT_BUCKETS 14
enum { SERVE_EP_FRAMES = 0, SERVE_EP_STREAMS = 1, SERVE_EP_OTHER = 2, SERVE_EP_COUNT = 3 };
typedef struct serve_metrics {
    atomic_uint_fast64_t frames_in;        /* frames pushed into streams */
    atomic_uint_fast64_t frames_out;       /* frames predicted (horizon included) */
    atomic_uint_fast64_t model_steps;      /* model calls (a batch is one) */
    atomic_uint_fast64_t batched_frames;   /* frames through those calls */
    atomic_uint_fast64_t streams_opened, streams_expired, streams_closed;
    atomic_uint_fast64_t jobs_cancelled;   /* client gone or timed out before running */
    atomic_uint_fast64_t lat_bucket[SERVE_EP_COUNT][SERVE_LAT_BUCKETS + 1];
    atomic_uint_fast64_t lat_sum_us[SERVE_EP_COUNT];
    atomic_uint_fast64_t by_code[600];      /* responses by HTTP status */
} serve_metrics;
void serve_metrics_observe(serve_metrics *m, int endpoint, double seconds, int status);
/* Resident set size of this process in bytes (/proc/self/statm), 0 if unknown. */
size_t serve_rss_bytes(void);
struct vttt_server;
void serve_metrics_render(struct vttt_server *srv, serve_buf *out);

/* ---- model jobs ---------------------------------------------------------- */
typedef enum { SERVE_JOB_OPEN, SERVE_JOB_FRAME, SERVE_JOB_SNAPSHOT } serve_job_kind;
typedef enum { SERVE_JOB_IDLE, SERVE_JOB_QUEUED, SERVE_JOB_RUNNING, SERVE_JOB_DONE } serve_job_state;

/* A request's work for the model thread. Inputs are owned by the request;
 * outputs are malloc'd by the worker and freed with the request. */
typedef struct serve_job {
    serve_job_kind kind;
    serve_entry *entry;            /* FRAME, SNAPSHOT: a reference held by the request */
    uint8_t *rgb;                  /* FRAME: (S, S, 3) */
    int horizon;                   /* FRAME: >= 1 */
    const uint8_t *snap;           /* OPEN: snapshot bytes or NULL for a fresh stream */
    size_t snap_n;
    double deadline_s;             /* monotonic; not started by then -> timed out */
    struct MHD_Connection *conn;   /* resumed when done */
    /* results */
    int err;                       /* VTTT_* code; VTTT_EAGAIN: timed out, VTTT_EOF: cancelled */
    char msg[512];                 /* the library's message on failure */
    uint8_t *pred;                 /* FRAME: (horizon, S, S, 3) */
    int32_t *tokens;               /* FRAME: (horizon, tokens_per_frame) */
    uint8_t *out;                  /* SNAPSHOT bytes */
    size_t out_n;
    serve_entry *opened;           /* OPEN: the new stream, one reference for the request */
    _Atomic int state;             /* serve_job_state */
    struct serve_job *next;
} serve_job;

typedef struct serve_worker {
    pthread_t thread;
    int started;
    pthread_mutex_t mu;
    pthread_cond_t cv;        /* jobs queued, stop */
    pthread_cond_t ready_cv;  /* ready changed */
    serve_job *head, *tail;
    int depth, max_depth;
    int stop;                 /* 1: finish; 2: cancel what is queued and finish */
    int max_batch;
    _Atomic int ready;        /* 0 loading, 1 ready, < 0 the load error */
    char msg[512];            /* the last message the predictor logged (model thread only) */
    vttt_logger lg;           /* the predictor's logger: into msg, then the server's */
    vttt_predictor *pred;
    double housekeeping_s;    /* last expiry / free pass */
    uint8_t *batch_rgb, *batch_pred;   /* (max_batch, S, S, 3) */
    int32_t *batch_tok;                /* (max_batch, T) */
    int S, T;                 /* frame size, tokens per frame */
    size_t stream_bytes;      /* state bytes of a fresh stream */
    struct vttt_server *srv;
} serve_worker;

int serve_worker_start(serve_worker *w, struct vttt_server *srv);
/* Queues a job (state QUEUED): 0, or VTTT_EAGAIN when the queue is full
 * or the worker stopping. */
int serve_worker_submit(serve_worker *w, serve_job *j);
/* Blocks until the model is loaded: 0 or the load error. */
int serve_worker_wait_ready(serve_worker *w);
/* Stops the thread: jobs still queued are answered as cancelled. The
 * predictor stays open (the table's streams need it): close it after
 * serve_table_destroy with serve_worker_free. */
void serve_worker_stop(serve_worker *w);
void serve_worker_free(serve_worker *w);
int serve_worker_depth(serve_worker *w);

/* ---- connections --------------------------------------------------------- */
/* One client connection (libmicrohttpd's socket context), from its
 * NOTIFY_STARTED to its NOTIFY_CLOSED. Fields guarded by the list's mutex,
 * but for target, which only the connection's own thread touches. */
typedef struct serve_conn {
    struct serve_conn *prev, *next;
    int fd;
    double since_s;       /* monotonic: opened, or its last answer sent */
    int receiving;        /* between since_s and a complete request */
    int over;             /* accepted past max: answered 503 and closed */
    int cut;              /* shut down by the deadline sweep */
    char *target;         /* the current request's target as received (malloc'd) */
    size_t target_n;
} serve_conn;

typedef struct serve_conns {
    pthread_mutex_t mu;
    pthread_cond_t cv;          /* stop */
    serve_conn *head;
    int count;                  /* open connections */
    int max;                    /* --max-connections: more are answered 503 */
    double deadline_s;          /* --request-deadline */
    int stop;
    pthread_t sweeper;
    int started;
    atomic_uint_fast64_t cut_total, over_total;
} serve_conns;

int serve_conns_start(serve_conns *cs, int max, double deadline_s);
void serve_conns_stop(serve_conns *cs);
/* libmicrohttpd callbacks (cls: the serve_conns). */
void serve_conn_notify(void *cls, struct MHD_Connection *c, void **socket_context, enum MHD_ConnectionNotificationCode code);
void *serve_conn_uri(void *cls, const char *uri, struct MHD_Connection *c);
serve_conn *serve_conn_of(struct MHD_Connection *c);
/* The request on conn is completely received / answered. */
void serve_conn_received(serve_conns *cs, serve_conn *conn);
void serve_conn_answered(serve_conns *cs, serve_conn *conn);
int serve_conns_count(serve_conns *cs);

/* ---- the server ---------------------------------------------------------- */
struct vttt_server {
    vttt_server_params p;
    char *model_dir, *encoder_dir, *listen, *token;   /* owned copies */
    struct MHD_Daemon *mhd;
    int port;
    serve_table table;
    serve_worker worker;
    serve_metrics metrics;
    serve_conns conns;
    atomic_int in_flight;        /* requests between their first call and completion */
    atomic_int stopping;
    double start_s;
};
typedef struct vttt_server serve_server;

/* One HTTP request in progress (MHD's per-request pointer). */
typedef struct serve_req {
    serve_server *srv;
    double t0;
    int endpoint;                /* SERVE_EP_* */
    int status;                  /* status code answered */
    int started;                 /* past the first (headers-only) call */
    serve_conn *conn;
    serve_decision head;         /* head.status: refused from the head, answered once the body is discarded */
    serve_decision d;            /* the whole request's meaning (serve_request.h) */
    serve_header *headers;       /* every header line (malloc'd; the strings are libmicrohttpd's) */
    int nheaders;
    serve_buf body;
    size_t body_seen;            /* bytes received, kept or not */
    int too_big;
    serve_job job;
    int has_job;
    int reserved;                /* holds a stream-table slot (opening a stream) */
} serve_req;

/* ---- routes and replies -------------------------------------------------- */
/* Handles a complete request (body received, or job finished). */
enum MHD_Result serve_route(serve_req *r, struct MHD_Connection *c, const char *method);
/* Queues a response with status, records it, frees resp. */
enum MHD_Result serve_reply(serve_req *r, struct MHD_Connection *c, int status, struct MHD_Response *resp);
/* {"error": msg} with status (and Retry-After: 1 for 429/503). */
enum MHD_Result serve_reply_error(serve_req *r, struct MHD_Connection *c, int status, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 4, 5)))
#endif
    ;
/* A malloc'd buffer as the body (taken over, also on failure). */
enum MHD_Result serve_reply_bytes(serve_req *r, struct MHD_Connection *c, int status, const char *type, void *data,
                                  size_t n);
/* A cJSON value as the body (freed). */
struct cJSON;
enum MHD_Result serve_reply_json(serve_req *r, struct MHD_Connection *c, int status, struct cJSON *json);

/* The request as serve_request.h sees it: method, the target as
 * received, every header (into r->headers), the body so far. 0, or
 * VTTT_ENOMEM. */
int serve_http_of(serve_req *r, struct MHD_Connection *c, const char *method, serve_http *q);
/* The limits requests are judged by; frame_size 0 until the model is loaded. */
serve_rules serve_rules_of(serve_server *srv);
/* Refuses with d's status and message (Allow with 405, Connection: close
 * when d->close). */
enum MHD_Result serve_reply_decision(serve_req *r, struct MHD_Connection *c, const serve_decision *d);

/* ---- listen address and auth -------------------------------------------- */
/* Parses "HOST:PORT" / "[V6]:PORT" into addr; *loopback says whether it is
 * a loopback address. VTTT_EINVAL with a message. */
int serve_parse_listen(const char *s, struct sockaddr_storage *addr, socklen_t *len, int *loopback,
                       const vttt_logger *lg);

#endif
