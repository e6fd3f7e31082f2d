/*
 * infer/serve_worker.c — the daemon's model thread. It loads the
 * predictor, then runs the jobs that HTTP handlers queue (open a stream,
 * push a frame, snapshot), one at a time or, for frames of distinct
 * streams with horizon 1, up to max_batch at once in one
 * vttt_stream_push_batch call. Jobs whose client has gone or whose
 * deadline passed are dropped unrun. Between jobs it expires idle streams
 * and frees the streams of dead table entries: it is the only thread that
 * touches the predictor or a vttt_stream.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cblas.h>
#include <omp.h>

#include "serve_internal.h"

/* The predictor's logger: keeps the last message for the job's answer and
 * passes it on to the server's logger. */
static void worker_log(void *user, int level, const char *msg) {
    serve_worker *w = user;
    if (level <= VTTT_LOG_WARNING) snprintf(w->msg, sizeof w->msg, "%s", msg);
    vttt_log(&w->srv->p.log, level, "%s", msg);
}

static int load(serve_worker *w) {
    serve_server *srv = w->srv;
    w->lg = (vttt_logger){worker_log, w, srv->p.log.level > VTTT_LOG_INFO ? srv->p.log.level : VTTT_LOG_INFO};
    double t0 = serve_now_s();
    int err = vttt_predictor_open(&w->pred, srv->model_dir, srv->encoder_dir, &w->lg);
    if (!err) err = vttt_predictor_set_snapshot_key(w->pred, srv->p.snapshot_key, srv->p.snapshot_key_n);
    if (!err) err = vttt_predictor_set_decoding(w->pred, srv->p.decoding);
    if (err) return err;
    w->S = vttt_predictor_frame_size(w->pred);
    w->T = vttt_predictor_tokens_per_frame(w->pred);
    vttt_stream *s = NULL;
    err = vttt_stream_open(&s, w->pred);
    if (err) return err;
    w->stream_bytes = vttt_stream_state_bytes(s);
    vttt_stream_free(&s);
    size_t B = (size_t)w->max_batch, frame = (size_t)w->S * (size_t)w->S * 3;
    w->batch_rgb = malloc(B * frame);
    w->batch_pred = malloc(B * frame);
    w->batch_tok = malloc(B * (size_t)w->T * sizeof(int32_t));
    if (!w->batch_rgb || !w->batch_pred || !w->batch_tok) return VTTT_ENOMEM;
    vttt_log(&srv->p.log, VTTT_LOG_INFO, "serve: model loaded in %.2f s: frames %dx%d, %d tokens per frame, %zu state bytes per stream",
             serve_now_s() - t0, w->S, w->S, w->T, w->stream_bytes);
    return 0;
}

/* Expires idle streams and frees the streams nobody references any more. */
static void housekeeping(serve_worker *w) {
    serve_server *srv = w->srv;
    double now = serve_now_s();
    w->housekeeping_s = now;
    if (srv->p.idle_timeout_s > 0) {
        int n = serve_table_expire(&srv->table, now, srv->p.idle_timeout_s);
        if (n) {
            atomic_fetch_add(&srv->metrics.streams_expired, (uint_fast64_t)n);
            vttt_log(&srv->p.log, VTTT_LOG_INFO, "serve: %d idle stream(s) expired", n);
        }
    }
    for (serve_entry *e = serve_table_collect(&srv->table), *n; e; e = n) {
        n = e->next;
        vttt_stream_free(&e->stream);
        free(e);
    }
}

/* A client that closed its connection while its job waited: recv() with
 * MSG_PEEK sees the end of the stream (HTTP/1.1 clients do not half-close
 * while waiting for an answer). */
static int client_gone(struct MHD_Connection *c) {
    if (!c) return 0;
    const union MHD_ConnectionInfo *ci = MHD_get_connection_info(c, MHD_CONNECTION_INFO_CONNECTION_FD);
    if (!ci) return 0;
    char b;
    ssize_t r = recv(ci->connect_fd, &b, 1, MSG_PEEK | MSG_DONTWAIT);
    return r == 0 || (r < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR);
}

/* Marks j done and hands its connection back to libmicrohttpd; j may be
 * freed by the HTTP thread as soon as this returns. */
static void finish(serve_job *j) {
    struct MHD_Connection *c = j->conn;
    atomic_store(&j->state, SERVE_JOB_DONE);
    if (c) MHD_resume_connection(c);
}

static void drop(serve_worker *w, serve_job *j, int err, const char *why) {
    j->err = err;
    snprintf(j->msg, sizeof j->msg, "%s", why);
    atomic_fetch_add(&w->srv->metrics.jobs_cancelled, 1);
    finish(j);
}

static int batchable(const serve_job *j) { return j->kind == SERVE_JOB_FRAME && j->horizon == 1; }

static int seen_has(serve_entry *const *seen, int n, const serve_entry *e) {
    for (int i = 0; i < n; i++)
        if (seen[i] == e) return 1;
    return 0;
}

/* Takes the jobs to run next out of the queue (lock held): the first live
 * job, and when it is a batchable frame, further batchable frames of
 * streams not met earlier in the queue (a stream's jobs keep their order).
 * Expired jobs met on the way go to *dead. Returns the count in batch. */
static int pick(serve_worker *w, serve_job **batch, serve_job **dead, double now) {
    serve_entry *seen[512];
    int n = 0, nseen = 0;
    serve_job *prev = NULL, *j = w->head;
    while (j && n < w->max_batch) {
        serve_job *next = j->next;
        int take = 0, expired = now > j->deadline_s;
        if (!expired) {
            if (nseen == (int)(sizeof seen / sizeof seen[0])) break;   /* too many to track: stop here */
            if (n == 0) take = 1;
            else take = batchable(batch[0]) && batchable(j) && !seen_has(seen, nseen, j->entry);
            if (j->entry) seen[nseen++] = j->entry;
        }
        if (take || expired) {
            if (prev) prev->next = next;
            else w->head = next;
            if (w->tail == j) w->tail = prev;
            w->depth--;
            j->next = NULL;
            if (expired) {
                j->next = *dead;
                *dead = j;
            } else {
                batch[n++] = j;
                atomic_store(&j->state, SERVE_JOB_RUNNING);
            }
        } else {
            prev = j;
        }
        if (n == 1 && !batchable(batch[0])) break;
        j = next;
    }
    return n;
}

static void run_open(serve_worker *w, serve_job *j) {
    serve_server *srv = w->srv;
    vttt_stream *s = NULL;
    j->err = j->snap ? vttt_stream_restore(&s, w->pred, j->snap, j->snap_n) : vttt_stream_open(&s, w->pred);
    if (j->err) return;
    j->opened = serve_table_insert(&srv->table, s, vttt_stream_state_bytes(s));
    if (!j->opened) {
        vttt_stream_free(&s);
        j->err = VTTT_ENOMEM;
        return;
    }
    atomic_fetch_add(&srv->metrics.streams_opened, 1);
    /* A restored stream reports the frames its snapshot had seen. */
    serve_table_touch(&srv->table, j->opened, (int)vttt_stream_frames(s));
}

static void count_frames(serve_worker *w, int frames, int predicted) {
    serve_metrics *m = &w->srv->metrics;
    atomic_fetch_add(&m->frames_in, (uint_fast64_t)frames);
    atomic_fetch_add(&m->frames_out, (uint_fast64_t)predicted);
    atomic_fetch_add(&m->model_steps, 1);
    atomic_fetch_add(&m->batched_frames, (uint_fast64_t)frames);
}

static void run_frame(serve_worker *w, serve_job *j) {
    size_t frame = (size_t)w->S * (size_t)w->S * 3;
    j->pred = malloc((size_t)j->horizon * frame);
    j->tokens = malloc((size_t)j->horizon * (size_t)w->T * sizeof(int32_t));
    if (!j->pred || !j->tokens) {
        j->err = VTTT_ENOMEM;
        return;
    }
    j->err = vttt_stream_push(j->entry->stream, j->rgb, j->horizon, j->pred, j->tokens);
    if (j->err) return;
    serve_table_touch(&w->srv->table, j->entry, 1);
    count_frames(w, 1, j->horizon);
}

/* n frames of distinct streams in one model step; every job gets the
 * batch's outcome. */
static void run_batch(serve_worker *w, serve_job **jobs, int n) {
    size_t frame = (size_t)w->S * (size_t)w->S * 3, tok = (size_t)w->T;
    vttt_stream *streams[n];
    for (int i = 0; i < n; i++) {
        streams[i] = jobs[i]->entry->stream;
        memcpy(w->batch_rgb + (size_t)i * frame, jobs[i]->rgb, frame);
    }
    int err = vttt_stream_push_batch(streams, n, w->batch_rgb, w->batch_pred, w->batch_tok);
    for (int i = 0; i < n; i++) {
        serve_job *j = jobs[i];
        j->err = err;
        if (err) continue;
        j->pred = malloc(frame);
        j->tokens = malloc(tok * sizeof(int32_t));
        if (!j->pred || !j->tokens) {
            j->err = VTTT_ENOMEM;
            continue;
        }
        memcpy(j->pred, w->batch_pred + (size_t)i * frame, frame);
        memcpy(j->tokens, w->batch_tok + (size_t)i * tok, tok * sizeof(int32_t));
        serve_table_touch(&w->srv->table, j->entry, 1);
    }
    if (!err) count_frames(w, n, n);
}

static void run(serve_worker *w, serve_job **batch, int n) {
    w->msg[0] = 0;
    if (n > 1) {
        run_batch(w, batch, n);
    } else if (batch[0]->kind == SERVE_JOB_OPEN) {
        run_open(w, batch[0]);
    } else if (batch[0]->kind == SERVE_JOB_FRAME) {
        run_frame(w, batch[0]);
    } else {
        batch[0]->err = vttt_stream_snapshot(batch[0]->entry->stream, &batch[0]->out, &batch[0]->out_n);
    }
    for (int i = 0; i < n; i++)
        if (batch[i]->err) snprintf(batch[i]->msg, sizeof batch[i]->msg, "%s", w->msg[0] ? w->msg : vttt_strerror(batch[i]->err));
}

/* Takes jobs out of the queue until told to stop; drops those whose
 * client went away before running them. */
static void serve_loop(serve_worker *w) {
    double period = w->srv->p.idle_timeout_s > 0 ? w->srv->p.idle_timeout_s / 4 : 1.0;
    if (period > 1.0) period = 1.0;
    if (period < 0.01) period = 0.01;
    serve_job *batch[w->max_batch];
    pthread_mutex_lock(&w->mu);
    for (;;) {
        if (!w->head && !w->stop) {
            struct timespec ts;
            clock_gettime(CLOCK_REALTIME, &ts);
            double t = (double)ts.tv_nsec * 1e-9 + period;
            ts.tv_sec += (time_t)t;
            ts.tv_nsec = (long)((t - (double)(time_t)t) * 1e9);
            pthread_cond_timedwait(&w->cv, &w->mu, &ts);
        }
        serve_job *dead = NULL;
        int n = 0;
        if (w->stop == 2) {
            dead = w->head;
            w->head = w->tail = NULL;
            w->depth = 0;
        } else {
            n = pick(w, batch, &dead, serve_now_s());
        }
        int stop = w->stop && !w->head && !n;
        pthread_mutex_unlock(&w->mu);
        for (serve_job *j = dead, *nx; j; j = nx) {
            nx = j->next;
            drop(w, j, VTTT_EAGAIN, w->stop == 2 ? "the server is shutting down" : "timed out waiting for the model");
        }
        int live = 0;
        for (int i = 0; i < n; i++) {
            if (client_gone(batch[i]->conn)) drop(w, batch[i], VTTT_EOF, "client closed the connection");
            else batch[live++] = batch[i];
        }
        if (live) run(w, batch, live);
        for (int i = 0; i < live; i++) finish(batch[i]);
        if (serve_now_s() - w->housekeeping_s >= period) housekeeping(w);
        pthread_mutex_lock(&w->mu);
        if (stop) break;
    }
    pthread_mutex_unlock(&w->mu);
    housekeeping(w);
}

static void *worker_main(void *arg) {
    serve_worker *w = arg;
    /* The model's OpenMP loops started from this thread use this many
     * threads. OpenBLAS keeps its own process-wide count, so it is set
     * too: this thread is the daemon's only BLAS user. */
    if (w->srv->p.model_threads > 0) {
        openblas_set_num_threads(w->srv->p.model_threads);
        omp_set_num_threads(w->srv->p.model_threads);
    }
    int err = load(w);
    pthread_mutex_lock(&w->mu);
    atomic_store(&w->ready, err ? err : 1);
    pthread_cond_broadcast(&w->ready_cv);
    pthread_mutex_unlock(&w->mu);
    if (err) {
        vttt_log(&w->srv->p.log, VTTT_LOG_ERROR, "serve: cannot load the model: %s",
                 w->msg[0] ? w->msg : vttt_strerror(err));
        /* Nothing to run: wait for stop; handlers answer 503 meanwhile. */
        pthread_mutex_lock(&w->mu);
        while (!w->stop) pthread_cond_wait(&w->cv, &w->mu);
        pthread_mutex_unlock(&w->mu);
        return NULL;
    }
    serve_loop(w);
    return NULL;
}

int serve_worker_start(serve_worker *w, serve_server *srv) {
    memset(w, 0, sizeof *w);
    w->srv = srv;
    w->max_depth = srv->p.queue_size;
    w->max_batch = srv->p.max_batch;
    w->housekeeping_s = serve_now_s();
    pthread_mutex_init(&w->mu, NULL);
    pthread_cond_init(&w->cv, NULL);
    pthread_cond_init(&w->ready_cv, NULL);
    if (pthread_create(&w->thread, NULL, worker_main, w)) {
        vttt_log(&srv->p.log, VTTT_LOG_ERROR, "serve: cannot start the model thread");
        return VTTT_ENOMEM;
    }
    w->started = 1;
    return 0;
}

int serve_worker_submit(serve_worker *w, serve_job *j) {
    pthread_mutex_lock(&w->mu);
    int ok = !w->stop && w->depth < w->max_depth;
    if (ok) {
        j->next = NULL;
        atomic_store(&j->state, SERVE_JOB_QUEUED);
        if (w->tail) w->tail->next = j;
        else w->head = j;
        w->tail = j;
        w->depth++;
        pthread_cond_signal(&w->cv);
    }
    pthread_mutex_unlock(&w->mu);
    return ok ? 0 : VTTT_EAGAIN;
}

int serve_worker_depth(serve_worker *w) {
    pthread_mutex_lock(&w->mu);
    int d = w->depth;
    pthread_mutex_unlock(&w->mu);
    return d;
}

int serve_worker_wait_ready(serve_worker *w) {
    pthread_mutex_lock(&w->mu);
    while (atomic_load(&w->ready) == 0) pthread_cond_wait(&w->ready_cv, &w->mu);
    int r = atomic_load(&w->ready);
    pthread_mutex_unlock(&w->mu);
    return r == 1 ? 0 : r;
}

void serve_worker_stop(serve_worker *w) {
    if (!w->started) return;
    pthread_mutex_lock(&w->mu);
    w->stop = 2;
    pthread_cond_broadcast(&w->cv);
    pthread_mutex_unlock(&w->mu);
    pthread_join(w->thread, NULL);
    w->started = 0;
}

void serve_worker_free(serve_worker *w) {
    vttt_predictor_close(&w->pred);
    free(w->batch_rgb);
    free(w->batch_pred);
    free(w->batch_tok);
    w->batch_rgb = w->batch_pred = NULL;
    w->batch_tok = NULL;
    pthread_mutex_destroy(&w->mu);
    pthread_cond_destroy(&w->cv);
    pthread_cond_destroy(&w->ready_cv);
}
