/*
 * infer/serve_routes.c — the daemon's URL routing and endpoint handlers:
 *   GET    /health                     200 once the model is loaded, 503 before
 *   GET    /metrics                    Prometheus text
 *   POST   /v1/streams                 open a stream (body: nothing, {} or snapshot bytes)
 *   GET    /v1/streams/{id}            frames seen, state bytes, created / last used
 *   DELETE /v1/streams/{id}            close it
 *   POST   /v1/streams/{id}/frames     push a frame, answer the predicted next one(s)
 *   POST   /v1/streams/{id}/snapshot   the stream's state as bytes
 * What a request means (route, id, query values, the decoded frame, or
 * the 4xx it gets) is decided by serve_request.c without sockets; this
 * file feeds it what libmicrohttpd received and acts on the decision.
 * Handlers that need the model queue a job and suspend the connection;
 * answer_job writes the answer once the model thread is done.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cjson/cJSON.h>

#include "serve_internal.h"

/* j (freed) as a JSON body, without serve_reply_json's trailing newline,
 * with one more header (name: value): the 405's Allow, the 201's
 * Location. */
static enum MHD_Result json_reply_with(serve_req *r, struct MHD_Connection *c, int status, cJSON *j, const char *name,
                                       const char *value) {
    char *s = cJSON_PrintUnformatted(j);
    cJSON_Delete(j);
    if (!s) return MHD_NO;
    struct MHD_Response *resp = MHD_create_response_from_buffer(strlen(s), s, MHD_RESPMEM_MUST_FREE);
    if (!resp) {
        free(s);
        return MHD_NO;
    }
    MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, "application/json");
    MHD_add_response_header(resp, name, value);
    return serve_reply(r, c, status, resp);
}

enum MHD_Result serve_reply_decision(serve_req *r, struct MHD_Connection *c, const serve_decision *d) {
    if (d->status != MHD_HTTP_METHOD_NOT_ALLOWED) return serve_reply_error(r, c, d->status, "%s", d->msg);
    cJSON *j = cJSON_CreateObject();
    cJSON_AddStringToObject(j, "error", d->msg);
    return json_reply_with(r, c, MHD_HTTP_METHOD_NOT_ALLOWED, j, MHD_HTTP_HEADER_ALLOW, d->allow);
}

static enum MHD_Result add_header(void *cls, enum MHD_ValueKind kind, const char *key, const char *value) {
    serve_req *r = cls;
    (void)kind;
    r->headers[r->nheaders].name = key;
    r->headers[r->nheaders].value = value ? value : "";
    r->nheaders++;
    return MHD_YES;
}

int serve_http_of(serve_req *r, struct MHD_Connection *c, const char *method, serve_http *q) {
    int n = MHD_get_connection_values(c, MHD_HEADER_KIND, NULL, NULL);
    free(r->headers);
    r->nheaders = 0;
    r->headers = malloc(sizeof *r->headers * (size_t)(n > 0 ? n : 1));
    if (!r->headers) return VTTT_ENOMEM;
    MHD_get_connection_values(c, MHD_HEADER_KIND, add_header, r);
    memset(q, 0, sizeof *q);
    q->method = method;
    q->target = r->conn && r->conn->target ? r->conn->target : "";
    q->target_n = r->conn && r->conn->target ? r->conn->target_n : 0;
    q->headers = r->headers;
    q->nheaders = r->nheaders;
    q->body = (const uint8_t *)r->body.p;
    q->body_n = r->body.n;
    return 0;
}

serve_rules serve_rules_of(serve_server *srv) {
    serve_rules rules = {atomic_load(&srv->worker.ready) == 1 ? srv->worker.S : 0, srv->p.max_horizon,
                         srv->p.max_body, srv->token};
    return rules;
}

static void iso_time(char *buf, size_t n, int64_t t) {
    time_t tt = (time_t)t;
    struct tm tm;
    gmtime_r(&tt, &tm);
    strftime(buf, n, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

/* 0 when the model is loaded, else the answer already queued in *ret. */
static int need_model(serve_req *r, struct MHD_Connection *c, enum MHD_Result *ret) {
    int ready = atomic_load(&r->srv->worker.ready);
    if (ready == 1) return 0;
    if (ready == 0)
        *ret = serve_reply_error(r, c, MHD_HTTP_SERVICE_UNAVAILABLE,
                                 "the model is still loading; retry when GET /health answers 200");
    else
        *ret = serve_reply_error(r, c, MHD_HTTP_SERVICE_UNAVAILABLE, "the model failed to load: %s", r->srv->worker.msg);
    return 1;
}

/* Hands the job to the model thread and suspends the connection until it
 * is done (suspending first: the worker may finish before this returns). */
static enum MHD_Result submit(serve_req *r, struct MHD_Connection *c) {
    serve_server *srv = r->srv;
    r->has_job = 1;
    r->job.conn = c;
    r->job.deadline_s = serve_now_s() + srv->p.request_timeout_s;
    MHD_suspend_connection(c);
    if (serve_worker_submit(&srv->worker, &r->job)) {
        r->job.err = VTTT_EAGAIN;
        snprintf(r->job.msg, sizeof r->job.msg, "the model queue is full (%d jobs, --queue-size) or the server is stopping",
                 srv->p.queue_size);
        atomic_store(&r->job.state, SERVE_JOB_DONE);
        MHD_resume_connection(c);
    }
    return MHD_YES;
}

static enum MHD_Result health(serve_req *r, struct MHD_Connection *c) {
    serve_server *srv = r->srv;
    int ready = atomic_load(&srv->worker.ready);
    cJSON *j = cJSON_CreateObject();
    cJSON_AddStringToObject(j, "status", ready == 1 ? "ok" : ready == 0 ? "loading" : "failed");
    if (ready < 0) cJSON_AddStringToObject(j, "error", srv->worker.msg);
    if (ready == 1) {
        cJSON_AddNumberToObject(j, "streams", serve_table_count(&srv->table));
        cJSON_AddNumberToObject(j, "frame_size", srv->worker.S);
        cJSON_AddNumberToObject(j, "tokens_per_frame", srv->worker.T);
        cJSON_AddNumberToObject(j, "state_bytes", (double)srv->worker.stream_bytes);
    }
    return serve_reply_json(r, c, ready == 1 ? MHD_HTTP_OK : MHD_HTTP_SERVICE_UNAVAILABLE, j);
}

static enum MHD_Result metrics(serve_req *r, struct MHD_Connection *c) {
    serve_buf b = {0};
    serve_metrics_render(r->srv, &b);
    if (b.failed) {
        serve_buf_free(&b);
        return serve_reply_error(r, c, MHD_HTTP_SERVICE_UNAVAILABLE, "out of memory");
    }
    return serve_reply_bytes(r, c, MHD_HTTP_OK, "text/plain; version=0.0.4", b.p, b.n);
}

/* POST /v1/streams: a fresh stream, or one restored from the snapshot
 * bytes in the body (serve_request.c decided which). */
static enum MHD_Result open_stream(serve_req *r, struct MHD_Connection *c) {
    serve_server *srv = r->srv;
    enum MHD_Result ret;
    if (need_model(r, c, &ret)) return ret;
    if (serve_table_reserve(&srv->table))
        return serve_reply_error(r, c, MHD_HTTP_TOO_MANY_REQUESTS,
                                 "%d streams are open (--max-streams): close one (DELETE /v1/streams/{id}) or let idle "
                                 "ones expire",
                                 srv->p.max_streams);
    r->reserved = 1;
    r->job.kind = SERVE_JOB_OPEN;
    if (r->d.snapshot_body) {
        r->job.snap = (const uint8_t *)r->body.p;
        r->job.snap_n = r->body.n;
    }
    return submit(r, c);
}

static cJSON *stream_json(const serve_entry *e, double idle_timeout_s) {
    char created[32], used[32];
    iso_time(created, sizeof created, e->created_unix);
    iso_time(used, sizeof used, e->last_used_unix);
    cJSON *j = cJSON_CreateObject();
    cJSON_AddStringToObject(j, "id", e->id);
    cJSON_AddNumberToObject(j, "frames", (double)e->frames);
    cJSON_AddNumberToObject(j, "state_bytes", (double)e->state_bytes);
    cJSON_AddStringToObject(j, "created", created);
    cJSON_AddStringToObject(j, "last_used", used);
    double idle = round((serve_now_s() - e->last_used_s) * 1e3) / 1e3;   /* ms resolution */
    cJSON_AddNumberToObject(j, "idle_seconds", idle);
    if (idle_timeout_s > 0) cJSON_AddNumberToObject(j, "expires_in_seconds", idle_timeout_s - idle);
    return j;
}

static enum MHD_Result unknown_stream(serve_req *r, struct MHD_Connection *c, const char *id) {
    return serve_reply_error(r, c, MHD_HTTP_NOT_FOUND,
                             "no stream '%s' (closed, expired, or never opened): open one with POST /v1/streams", id);
}

static enum MHD_Result stream_info(serve_req *r, struct MHD_Connection *c, const char *id) {
    serve_entry e;
    if (serve_table_peek(&r->srv->table, id, &e)) return unknown_stream(r, c, id);
    return serve_reply_json(r, c, MHD_HTTP_OK, stream_json(&e, r->srv->p.idle_timeout_s));
}

static enum MHD_Result stream_delete(serve_req *r, struct MHD_Connection *c, const char *id) {
    if (serve_table_remove(&r->srv->table, id)) return unknown_stream(r, c, id);
    atomic_fetch_add(&r->srv->metrics.streams_closed, 1);
    cJSON *j = cJSON_CreateObject();
    cJSON_AddStringToObject(j, "id", id);
    cJSON_AddBoolToObject(j, "closed", 1);
    return serve_reply_json(r, c, MHD_HTTP_OK, j);
}

static enum MHD_Result push_frame(serve_req *r, struct MHD_Connection *c, const char *id) {
    serve_server *srv = r->srv;
    enum MHD_Result ret;
    if (need_model(r, c, &ret)) return ret;
    if (!r->d.rgb)   /* judged while the model was loading */
        return serve_reply_error(r, c, MHD_HTTP_SERVICE_UNAVAILABLE, "the model was still loading; retry");
    r->job.entry = serve_table_get(&srv->table, id);
    if (!r->job.entry) return unknown_stream(r, c, id);
    serve_buf_free(&r->body);
    r->job.kind = SERVE_JOB_FRAME;
    r->job.rgb = r->d.rgb;
    r->d.rgb = NULL;
    r->job.horizon = r->d.horizon;
    return submit(r, c);
}

static enum MHD_Result snapshot(serve_req *r, struct MHD_Connection *c, const char *id) {
    enum MHD_Result ret;
    if (need_model(r, c, &ret)) return ret;
    r->job.entry = serve_table_get(&r->srv->table, id);
    if (!r->job.entry) return unknown_stream(r, c, id);
    r->job.kind = SERVE_JOB_SNAPSHOT;
    return submit(r, c);
}

static enum MHD_Result answer_opened(serve_req *r, struct MHD_Connection *c) {
    serve_entry e;
    serve_table *t = &r->srv->table;
    pthread_mutex_lock(&t->mu);
    e = *r->job.opened;
    pthread_mutex_unlock(&t->mu);
    cJSON *j = stream_json(&e, r->srv->p.idle_timeout_s);
    cJSON_AddNumberToObject(j, "frame_size", r->srv->worker.S);
    cJSON_AddNumberToObject(j, "tokens_per_frame", r->srv->worker.T);
    char loc[64];
    snprintf(loc, sizeof loc, "/v1/streams/%s", e.id);
    return json_reply_with(r, c, MHD_HTTP_CREATED, j, MHD_HTTP_HEADER_LOCATION, loc);
}

static enum MHD_Result answer_json_frames(serve_req *r, struct MHD_Connection *c) {
    serve_worker *w = &r->srv->worker;
    serve_job *jb = &r->job;
    cJSON *j = cJSON_CreateObject(), *toks = cJSON_CreateArray();
    cJSON_AddStringToObject(j, "stream", jb->entry->id);
    cJSON_AddNumberToObject(j, "horizon", jb->horizon);
    cJSON_AddNumberToObject(j, "frame_size", w->S);
    cJSON_AddNumberToObject(j, "tokens_per_frame", w->T);
    for (int k = 0; k < jb->horizon; k++)
        cJSON_AddItemToArray(toks, cJSON_CreateIntArray((const int *)jb->tokens + (size_t)k * (size_t)w->T, w->T));
    cJSON_AddItemToObject(j, "tokens", toks);
    return serve_reply_json(r, c, MHD_HTTP_OK, j);
}

/* The predicted frames: JSON token ids, raw rgb24 (horizon, S, S, 3), or
 * a PNG S wide and horizon*S high (the frames top to bottom). */
static enum MHD_Result answer_frames(serve_req *r, struct MHD_Connection *c) {
    serve_worker *w = &r->srv->worker;
    serve_job *j = &r->job;
    if (r->d.want == SERVE_OUT_JSON) return answer_json_frames(r, c);
    size_t n = (size_t)j->horizon * (size_t)w->S * (size_t)w->S * 3;
    if (r->d.want == SERVE_OUT_RAW) {
        uint8_t *p = j->pred;
        j->pred = NULL;
        return serve_reply_bytes(r, c, MHD_HTTP_OK, "application/octet-stream", p, n);
    }
    uint8_t *png = NULL;
    size_t png_n = 0;
    int err = vttt_png_encode(j->pred, w->S, w->S * j->horizon, &png, &png_n, &r->srv->p.log);
    if (err) return serve_reply_error(r, c, MHD_HTTP_INTERNAL_SERVER_ERROR, "cannot encode the PNG: %s", vttt_strerror(err));
    return serve_reply_bytes(r, c, MHD_HTTP_OK, "image/png", png, png_n);
}

static int status_of(int err) {
    switch (err) {
    case VTTT_EINVAL: case VTTT_EFORMAT: return MHD_HTTP_BAD_REQUEST;
    case VTTT_ENOMEM: case VTTT_EAGAIN: return MHD_HTTP_SERVICE_UNAVAILABLE;
    default: return MHD_HTTP_INTERNAL_SERVER_ERROR;
    }
}

static enum MHD_Result answer_job(serve_req *r, struct MHD_Connection *c) {
    serve_job *j = &r->job;
    if (atomic_load(&j->state) != SERVE_JOB_DONE) return MHD_YES;   /* not expected: suspended until done */
    if (j->err == VTTT_EOF) return MHD_NO;   /* the client is gone: close */
    if (j->err) {
        const char *what = j->kind == SERVE_JOB_OPEN ? (j->snap ? "cannot restore the snapshot" : "cannot open a stream")
                           : j->kind == SERVE_JOB_FRAME ? "cannot predict"
                                                        : "cannot snapshot the stream";
        if (j->err == VTTT_EAGAIN) return serve_reply_error(r, c, MHD_HTTP_SERVICE_UNAVAILABLE, "%s", j->msg);
        return serve_reply_error(r, c, status_of(j->err), "%s: %s", what, j->msg);
    }
    if (j->kind == SERVE_JOB_OPEN) return answer_opened(r, c);
    if (j->kind == SERVE_JOB_FRAME) return answer_frames(r, c);
    uint8_t *p = j->out;
    j->out = NULL;
    return serve_reply_bytes(r, c, MHD_HTTP_OK, "application/octet-stream", p, j->out_n);
}

enum MHD_Result serve_route(serve_req *r, struct MHD_Connection *c, const char *method) {
    if (r->has_job) return answer_job(r, c);
    serve_http q;
    serve_rules rules = serve_rules_of(r->srv);
    if (serve_http_of(r, c, method, &q)) return serve_reply_error(r, c, MHD_HTTP_SERVICE_UNAVAILABLE, "out of memory");
    if (serve_http_decide(&rules, &q, &r->d)) return serve_reply_decision(r, c, &r->d);
    switch (r->d.route) {
    case SERVE_ROUTE_HEALTH: return health(r, c);
    case SERVE_ROUTE_METRICS: return metrics(r, c);
    case SERVE_ROUTE_OPEN: return open_stream(r, c);
    case SERVE_ROUTE_INFO: return stream_info(r, c, r->d.id);
    case SERVE_ROUTE_DELETE: return stream_delete(r, c, r->d.id);
    case SERVE_ROUTE_FRAMES: return push_frame(r, c, r->d.id);
    case SERVE_ROUTE_SNAPSHOT: return snapshot(r, c, r->d.id);
    default: return serve_reply_error(r, c, MHD_HTTP_NOT_FOUND, "no route");   /* not reached: decide refuses */
    }
}
