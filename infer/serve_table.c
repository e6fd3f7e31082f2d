/*
 * infer/serve_table.c — the daemon's stream table: random ids in a hash
 * table, reference counts so that a stream deleted or expired while a
 * request uses it lives until that request ends, and a dead list that the
 * model thread empties (only it may free streams).
 */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "serve_internal.h"

static uint64_t splitmix64(uint64_t *s) {
    uint64_t z = (*s += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

/* Seeds the id generator from /dev/urandom (ids must not be guessable
 * from one another), falling back to the clock and address. */
static uint64_t random_seed(const void *salt) {
    uint64_t s = 0;
    int fd = open("/dev/urandom", O_RDONLY);
    if (fd >= 0) {
        if (read(fd, &s, sizeof s) != (ssize_t)sizeof s) s = 0;
        close(fd);
    }
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return s ^ (uint64_t)ts.tv_nsec ^ ((uint64_t)ts.tv_sec << 32) ^ (uint64_t)(uintptr_t)salt;
}

static unsigned hash_id(const char *id, int nbuckets) {
    unsigned h = 2166136261u;
    for (; *id; id++) h = (h ^ (unsigned char)*id) * 16777619u;
    return h % (unsigned)nbuckets;
}

int serve_table_init(serve_table *t, int max_streams) {
    memset(t, 0, sizeof *t);
    t->max = max_streams;
    t->nbuckets = max_streams < 64 ? 64 : max_streams;
    t->buckets = calloc((size_t)t->nbuckets, sizeof *t->buckets);
    if (!t->buckets) return VTTT_ENOMEM;
    t->rng = random_seed(t);
    pthread_mutex_init(&t->mu, NULL);
    return 0;
}

static void free_entry(serve_entry *e) {
    vttt_stream_free(&e->stream);
    free(e);
}

void serve_table_destroy(serve_table *t) {
    if (!t->buckets) return;
    for (int b = 0; b < t->nbuckets; b++)
        for (serve_entry *e = t->buckets[b], *n; e; e = n) {
            n = e->next;
            free_entry(e);
        }
    for (serve_entry *e = t->dead, *n; e; e = n) {
        n = e->next;
        free_entry(e);
    }
    free(t->buckets);
    t->buckets = NULL;
    pthread_mutex_destroy(&t->mu);
}

int serve_table_reserve(serve_table *t) {
    pthread_mutex_lock(&t->mu);
    int ok = t->count < t->max;
    if (ok) t->count++;
    pthread_mutex_unlock(&t->mu);
    return ok ? 0 : VTTT_EAGAIN;
}

void serve_table_unreserve(serve_table *t) {
    pthread_mutex_lock(&t->mu);
    t->count--;
    pthread_mutex_unlock(&t->mu);
}

static serve_entry *find_locked(serve_table *t, const char *id, serve_entry ***link) {
    serve_entry **p = &t->buckets[hash_id(id, t->nbuckets)];
    for (; *p; p = &(*p)->next)
        if (!strcmp((*p)->id, id)) {
            if (link) *link = p;
            return *p;
        }
    return NULL;
}

serve_entry *serve_table_insert(serve_table *t, vttt_stream *s, size_t state_bytes) {
    serve_entry *e = calloc(1, sizeof *e);
    if (!e) return NULL;
    e->stream = s;
    e->refs = 2;
    e->listed = 1;
    e->state_bytes = state_bytes;
    e->created_unix = e->last_used_unix = (int64_t)time(NULL);
    e->last_used_s = serve_now_s();
    pthread_mutex_lock(&t->mu);
    do snprintf(e->id, sizeof e->id, "%016llx", (unsigned long long)splitmix64(&t->rng));
    while (find_locked(t, e->id, NULL));
    unsigned b = hash_id(e->id, t->nbuckets);
    e->next = t->buckets[b];
    t->buckets[b] = e;
    pthread_mutex_unlock(&t->mu);
    return e;
}

serve_entry *serve_table_get(serve_table *t, const char *id) {
    pthread_mutex_lock(&t->mu);
    serve_entry *e = find_locked(t, id, NULL);
    if (e) {
        e->refs++;
        e->last_used_s = serve_now_s();
        e->last_used_unix = (int64_t)time(NULL);
    }
    pthread_mutex_unlock(&t->mu);
    return e;
}

static void put_locked(serve_table *t, serve_entry *e) {
    if (--e->refs > 0) return;
    e->next = t->dead;
    t->dead = e;
}

void serve_table_put(serve_table *t, serve_entry *e) {
    if (!e) return;
    pthread_mutex_lock(&t->mu);
    put_locked(t, e);
    pthread_mutex_unlock(&t->mu);
}

static void unlist_locked(serve_table *t, serve_entry **link) {
    serve_entry *e = *link;
    *link = e->next;
    e->next = NULL;
    e->listed = 0;
    t->count--;
    put_locked(t, e);
}

int serve_table_remove(serve_table *t, const char *id) {
    pthread_mutex_lock(&t->mu);
    serve_entry **link = NULL;
    serve_entry *e = find_locked(t, id, &link);
    if (e) unlist_locked(t, link);
    pthread_mutex_unlock(&t->mu);
    return e ? 0 : VTTT_EINVAL;
}

int serve_table_expire(serve_table *t, double now_s, double idle_s) {
    int n = 0;
    pthread_mutex_lock(&t->mu);
    for (int b = 0; b < t->nbuckets; b++) {
        serve_entry **p = &t->buckets[b];
        while (*p) {
            if ((*p)->refs == 1 && now_s - (*p)->last_used_s > idle_s) {
                unlist_locked(t, p);
                n++;
            } else {
                p = &(*p)->next;
            }
        }
    }
    pthread_mutex_unlock(&t->mu);
    return n;
}

int serve_table_peek(serve_table *t, const char *id, serve_entry *copy) {
    pthread_mutex_lock(&t->mu);
    serve_entry *e = find_locked(t, id, NULL);
    if (e) *copy = *e;
    pthread_mutex_unlock(&t->mu);
    return e ? 0 : VTTT_EINVAL;
}

void serve_table_touch(serve_table *t, serve_entry *e, int frames) {
    pthread_mutex_lock(&t->mu);
    e->frames += frames;
    e->last_used_s = serve_now_s();
    e->last_used_unix = (int64_t)time(NULL);
    pthread_mutex_unlock(&t->mu);
}

serve_entry *serve_table_collect(serve_table *t) {
    pthread_mutex_lock(&t->mu);
    serve_entry *d = t->dead;
    t->dead = NULL;
    pthread_mutex_unlock(&t->mu);
    return d;
}

int serve_table_count(serve_table *t) {
    pthread_mutex_lock(&t->mu);
    int n = t->count;
    pthread_mutex_unlock(&t->mu);
    return n;
}
