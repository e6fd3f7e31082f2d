/*
 * infer/serve_conn.c — the daemon's client connections: a list of every
 * open one (libmicrohttpd's connection notifications), the cap past which
 * a connection is answered 503 and closed (--max-connections), each
 * request's target as received (the URI log callback), and the receive
 * deadline (--request-deadline): a sweep thread shuts down connections
 * that have not delivered a whole request (head and body) within the
 * deadline of opening or of their last answer, however slowly they keep
 * sending. libmicrohttpd's own idle timeout restarts on every byte, so a
 * client trickling one header line every few seconds would otherwise hold
 * its connection for ever.
 *
 * The sweep calls shutdown(), never close(): libmicrohttpd owns the
 * descriptor, sees end-of-file and closes the connection itself. Its
 * NOTIFY_CLOSED comes before it closes the descriptor and takes the same
 * mutex, so the sweep never touches a descriptor number reused by another
 * connection.
 */
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>

#include "serve_internal.h"

/* A connection accepted past the cap gets this long to send its request
 * (answered 503) before it is cut. */
#define SERVE_OVER_GRACE_S 1.0

serve_conn *serve_conn_of(struct MHD_Connection *c) {
    const union MHD_ConnectionInfo *ci = MHD_get_connection_info(c, MHD_CONNECTION_INFO_SOCKET_CONTEXT);
    return ci ? ci->socket_context : NULL;
}

void serve_conn_notify(void *cls, struct MHD_Connection *c, void **socket_context, enum MHD_ConnectionNotificationCode code) {
    serve_conns *cs = cls;
    if (code == MHD_CONNECTION_NOTIFY_STARTED) {
        serve_conn *conn = calloc(1, sizeof *conn);
        *socket_context = conn;
        if (!conn) return;   /* untracked: answered 503 by the request handler */
        const union MHD_ConnectionInfo *ci = MHD_get_connection_info(c, MHD_CONNECTION_INFO_CONNECTION_FD);
        conn->fd = ci ? ci->connect_fd : -1;
        conn->since_s = serve_now_s();
        conn->receiving = 1;
        pthread_mutex_lock(&cs->mu);
        conn->over = cs->count >= cs->max;
        cs->count++;
        conn->next = cs->head;
        if (cs->head) cs->head->prev = conn;
        cs->head = conn;
        pthread_mutex_unlock(&cs->mu);
        if (conn->over) atomic_fetch_add(&cs->over_total, 1);
        return;
    }
    serve_conn *conn = *socket_context;
    if (!conn) return;
    *socket_context = NULL;
    pthread_mutex_lock(&cs->mu);
    if (conn->prev) conn->prev->next = conn->next;
    else cs->head = conn->next;
    if (conn->next) conn->next->prev = conn->prev;
    cs->count--;
    pthread_mutex_unlock(&cs->mu);
    free(conn->target);
    free(conn);
}

/* Keeps the target exactly as received (libmicrohttpd decodes the URL it
 * hands the request handler, and a %00 would cut it short there). */
void *serve_conn_uri(void *cls, const char *uri, struct MHD_Connection *c) {
    (void)cls;
    serve_conn *conn = serve_conn_of(c);
    if (conn) {
        free(conn->target);
        conn->target = strdup(uri ? uri : "");
        conn->target_n = conn->target ? strlen(conn->target) : 0;
    }
    return NULL;
}

void serve_conn_received(serve_conns *cs, serve_conn *conn) {
    if (!conn) return;
    pthread_mutex_lock(&cs->mu);
    conn->receiving = 0;
    pthread_mutex_unlock(&cs->mu);
}

void serve_conn_answered(serve_conns *cs, serve_conn *conn) {
    if (!conn) return;
    pthread_mutex_lock(&cs->mu);
    conn->receiving = 1;
    conn->since_s = serve_now_s();
    pthread_mutex_unlock(&cs->mu);
}

int serve_conns_count(serve_conns *cs) {
    pthread_mutex_lock(&cs->mu);
    int n = cs->count;
    pthread_mutex_unlock(&cs->mu);
    return n;
}

/* One pass: shuts down every connection past its deadline. Call locked. */
static void sweep(serve_conns *cs, double now) {
    for (serve_conn *c = cs->head; c; c = c->next) {
        double limit = c->over && cs->deadline_s > SERVE_OVER_GRACE_S ? SERVE_OVER_GRACE_S : cs->deadline_s;
        if (!c->receiving || c->cut || c->fd < 0 || now - c->since_s <= limit) continue;
        shutdown(c->fd, SHUT_RDWR);
        c->cut = 1;
        atomic_fetch_add(&cs->cut_total, 1);
    }
}

static void *sweeper_main(void *arg) {
    serve_conns *cs = arg;
    /* a tenth of the deadline, within [10 ms, 250 ms] */
    double step = cs->deadline_s / 10;
    step = step < 0.01 ? 0.01 : step > 0.25 ? 0.25 : step;
    pthread_mutex_lock(&cs->mu);
    while (!cs->stop) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        long ns = ts.tv_nsec + (long)(step * 1e9);
        ts.tv_sec += ns / 1000000000L;
        ts.tv_nsec = ns % 1000000000L;
        pthread_cond_timedwait(&cs->cv, &cs->mu, &ts);
        if (!cs->stop) sweep(cs, serve_now_s());
    }
    pthread_mutex_unlock(&cs->mu);
    return NULL;
}

int serve_conns_start(serve_conns *cs, int max, double deadline_s) {
    memset(cs, 0, sizeof *cs);
    cs->max = max;
    cs->deadline_s = deadline_s;
    if (pthread_mutex_init(&cs->mu, NULL)) return VTTT_ENOMEM;
    if (pthread_cond_init(&cs->cv, NULL)) {
        pthread_mutex_destroy(&cs->mu);
        return VTTT_ENOMEM;
    }
    if (pthread_create(&cs->sweeper, NULL, sweeper_main, cs)) {
        serve_conns_stop(cs);
        return VTTT_ENOMEM;
    }
    cs->started = 1;
    return 0;
}

/* Stops the sweep; call after MHD_stop_daemon (every connection closed). */
void serve_conns_stop(serve_conns *cs) {
    if (cs->started) {
        pthread_mutex_lock(&cs->mu);
        cs->stop = 1;
        pthread_cond_signal(&cs->cv);
        pthread_mutex_unlock(&cs->mu);
        pthread_join(cs->sweeper, NULL);
        cs->started = 0;
    }
    pthread_cond_destroy(&cs->cv);
    pthread_mutex_destroy(&cs->mu);
}
