/*
 * The batch ingestion job: many sources, a few at a time (one worker thread
 * per --jobs), each decoded into its own frame shard, with one manifest line
 * per source appended and fsynced as it finishes. A source that fails is
 * recorded with the reason and the job goes on. Re-running the job skips the
 * sources an earlier run finished (see ingest.h for the rules); a shard is
 * only ever complete under its final name, so a crash mid-source leaves at
 * most a "<shard>.tmp" that the next run overwrites.
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "video_internal.h"

typedef struct job {
    const vttt_ingest_job_params *p;
    vttt_video_params video;      /* p->video with the decoder threads settled */
    const vttt_logger *lg;
    const char **todo;            /* sources to process in this run */
    int64_t *todo_bytes;          /* their sizes, -1 unknown */
    int64_t n_todo, next;         /* next: first not yet taken (under mu) */
    int64_t bytes_total;          /* sum of todo_bytes, -1 if any is unknown */
    _Atomic int64_t bytes_done;   /* of finished sources */
    _Atomic int64_t *slot_bytes;  /* bytes read so far by each worker's current source */
    _Atomic int64_t frames;       /* frames written in this run */
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int running;                  /* workers still running (under mu) */
    int fatal;                    /* the manifest cannot be written: stop (under mu) */
    int manifest_fd;
    vttt_ingest_progress prog;    /* file counters (under mu) */
    double t0;
} job;

typedef struct worker_arg {
    job *j;
    int slot;
} worker_arg;

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

vttt_ingest_job_params vttt_ingest_job_default_params(void) {
    vttt_ingest_job_params p;
    memset(&p, 0, sizeof p);
    p.video = vttt_video_default_params();
    p.jobs = 1;
    p.shard_count = 1;
    p.progress_s = 1.0;
    return p;
}

void vttt_ingest_shard_name(const char *source, char *out, size_t n) {
    const char *base = strrchr(source, '/');
    base = base && base[1] ? base + 1 : source;
    const char *dot = strrchr(base, '.');
    size_t len = dot && dot != base ? (size_t)(dot - base) : strlen(base);
    char stem[49];
    size_t k = 0;
    for (size_t i = 0; i < len && k < sizeof stem - 1; i++) {
        char c = base[i];
        int ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' ||
                 c == '_' || c == '.';
        stem[k++] = ok ? c : '_';
    }
    stem[k] = 0;
    snprintf(out, n, "%s-%016llx.vfr", k ? stem : "source",
             (unsigned long long)vttt_frame_shard_source_id(source));
}

static char *join_path(const char *dir, const char *name) {
    size_t n = strlen(dir) + strlen(name) + 2;
    char *s = malloc(n);
    if (s) snprintf(s, n, "%s/%s", dir, name);
    return s;
}

/* mkdir -p */
static int make_dirs(const char *dir, const vttt_logger *lg) {
    char *d = strdup(dir);
    if (!d) return VTTT_ENOMEM;
    for (char *p = d + 1;; p++) {
        if (*p != '/' && *p) continue;
        char c = *p;
        *p = 0;
        if (mkdir(d, 0755) != 0 && errno != EEXIST) {
            vttt_log(lg, VTTT_LOG_ERROR, "cannot create the output directory %s: %s", d, strerror(errno));
            free(d);
            return VTTT_EIO;
        }
        *p = c;
        if (!c) break;
    }
    free(d);
    return 0;
}

/* ---- one source ------------------------------------------------------------ */

static void shard_info_for(vttt_frame_shard_info *si, const char *source, const vttt_video_info *info, int S) {
    memset(si, 0, sizeof *si);
    si->width = si->height = S;
    si->channels = 3;
    si->fps_num = info->out_fps_num;
    si->fps_den = info->out_fps_den;
    snprintf(si->source, sizeof si->source, "%s", source);
    si->source_id = vttt_frame_shard_source_id(source);
}

/* Streams the frames of an open video into w. Returns the video's final
 * code (VTTT_EOF when it ended cleanly) or a write error (*write_failed). */
static int pump(job *j, int slot, vttt_video *v, vttt_frame_shard_writer *w, int64_t *frames, int *write_failed) {
    size_t fb = (size_t)j->video.size * j->video.size * 3;
    uint8_t *rgb = malloc(fb);
    if (!rgb) return VTTT_ENOMEM;
    const vttt_video_info *info = vttt_video_get_info(v);
    int ret;
    while ((ret = vttt_video_receive_frame(v, rgb, NULL)) == 0) {
        if ((ret = vttt_frame_shard_writer_write(w, rgb, 1)) < 0) {
            *write_failed = 1;
            break;
        }
        (*frames)++;
        atomic_fetch_add(&j->frames, 1);
        atomic_store(&j->slot_bytes[slot], info->bytes_read);
    }
    free(rgb);
    return ret;
}

/* Closes the shard according to how the decoding ended and fills r. */
static void conclude(job *j, vttt_video *v, vttt_frame_shard_writer **w, int ret, int write_failed, int64_t frames,
                     const char *shard, ingest_result *r) {
    int keep = ret == VTTT_EOF ? frames > 0 : (!write_failed && j->p->keep_partial && frames > 0);
    if (!keep) vttt_frame_shard_writer_abort(w);
    else if (vttt_frame_shard_writer_finish(w, ret == VTTT_EOF ? 0 : VTTT_FRAME_SHARD_PARTIAL) < 0) {
        snprintf(r->error, sizeof r->error, "cannot finish the shard %s in %s (disk full?)", shard, j->p->out_dir);
        return;
    }
    if (ret == VTTT_EOF && frames == 0)
        snprintf(r->error, sizeof r->error, "no video frames decoded%s",
                 j->video.start_s > 0 || j->video.duration_s > 0 ? " in the selected time range" : "");
    else if (write_failed)
        snprintf(r->error, sizeof r->error, "cannot write the shard %s in %s (disk full?)", shard, j->p->out_dir);
    else if (ret != VTTT_EOF)
        snprintf(r->error, sizeof r->error, "%s", *vttt_video_error(v) ? vttt_video_error(v) : vttt_strerror(ret));
    r->ok = ret == VTTT_EOF && frames > 0;
    r->partial = keep && !r->ok;
    if (keep) {
        snprintf(r->shard, sizeof r->shard, "%s", shard);
        r->frames = frames;
    }
}

static void ingest_one(job *j, int slot, const char *source, ingest_result *r) {
    double t0 = now_s();
    memset(r, 0, sizeof *r);
    r->source = source;
    r->fps_num = j->video.fps_num;
    r->fps_den = j->video.fps_den;
    vttt_video *v = NULL;
    if (vttt_video_open(&v, source, &j->video, j->lg, r->error, sizeof r->error) < 0) {
        r->seconds = now_s() - t0;
        return;
    }
    const vttt_video_info *info = vttt_video_get_info(v);
    char shard[256];
    vttt_ingest_shard_name(source, shard, sizeof shard);
    char *path = join_path(j->p->out_dir, shard);
    vttt_frame_shard_info si;
    shard_info_for(&si, source, info, j->video.size);
    vttt_frame_shard_writer *w = NULL;
    if (!path || vttt_frame_shard_writer_open(&w, path, &si, j->lg) < 0) {
        snprintf(r->error, sizeof r->error, "cannot create the shard %s in %s", shard, j->p->out_dir);
    } else {
        int64_t frames = 0;
        int write_failed = 0;
        int ret = pump(j, slot, v, w, &frames, &write_failed);
        conclude(j, v, &w, ret, write_failed, frames, shard, r);
    }
    r->info = *info;
    r->have_info = 1;
    r->fps_num = info->out_fps_num;
    r->fps_den = info->out_fps_den;
    r->duration_s = r->fps_num > 0 ? (double)r->frames * r->fps_den / r->fps_num : 0;
    free(path);
    vttt_video_free(&v);
    r->seconds = now_s() - t0;
}

/* Appends r's manifest line and fsyncs; the caller holds j->mu. */
static int append_manifest(job *j, const ingest_result *r) {
    char *line = manifest_line(r, &j->video);
    if (!line) return VTTT_ENOMEM;
    size_t n = strlen(line);
    line[n] = '\n';  /* cJSON's buffer has room: it was NUL-terminated */
    ssize_t k = write(j->manifest_fd, line, n + 1);
    int ok = k == (ssize_t)(n + 1) && fdatasync(j->manifest_fd) == 0;
    free(line);
    if (!ok) {
        vttt_log(j->lg, VTTT_LOG_ERROR, "%s: cannot append to the manifest: %s", j->p->out_dir, strerror(errno));
        return VTTT_EIO;
    }
    return 0;
}

static void *worker(void *arg) {
    job *j = ((worker_arg *)arg)->j;
    int slot = ((worker_arg *)arg)->slot;
    for (;;) {
        pthread_mutex_lock(&j->mu);
        if (j->fatal || j->next >= j->n_todo) break;
        int64_t i = j->next++;
        pthread_mutex_unlock(&j->mu);
        ingest_result r;
        ingest_one(j, slot, j->todo[i], &r);
        pthread_mutex_lock(&j->mu);
        if (append_manifest(j, &r) < 0) j->fatal = 1;
        j->prog.files_done++;
        if (!r.ok) j->prog.files_failed++;
        if (j->todo_bytes[i] > 0) atomic_fetch_add(&j->bytes_done, j->todo_bytes[i]);
        atomic_store(&j->slot_bytes[slot], 0);
        pthread_cond_broadcast(&j->cv);
        pthread_mutex_unlock(&j->mu);
    }
    j->running--;
    pthread_cond_broadcast(&j->cv);
    pthread_mutex_unlock(&j->mu);
    return NULL;
}

/* ---- preparing the list ------------------------------------------------------ */

typedef struct { const char *s; int64_t i; } indexed;

static int cmp_indexed(const void *a, const void *b) {
    const indexed *x = a, *y = b;
    int c = strcmp(x->s, y->s);
    return c ? c : (x->i < y->i ? -1 : x->i > y->i);
}

/* The sources of this shard of the list: duplicates dropped (first kept),
 * then every shard_count-th entry from shard_index. *out is malloc'd. */
static int select_sources(const char *const *sources, int64_t n, const vttt_ingest_job_params *p,
                          const char ***out, int64_t *n_out, const vttt_logger *lg) {
    indexed *ix = malloc((size_t)(n ? n : 1) * sizeof *ix);
    char *dup = calloc((size_t)(n ? n : 1), 1);
    const char **sel = malloc((size_t)(n ? n : 1) * sizeof *sel);
    if (!ix || !dup || !sel) {
        free(ix), free(dup), free(sel);
        return VTTT_ENOMEM;
    }
    for (int64_t i = 0; i < n; i++) ix[i] = (indexed){sources[i], i};
    qsort(ix, (size_t)n, sizeof *ix, cmp_indexed);
    for (int64_t i = 1; i < n; i++)
        if (!strcmp(ix[i].s, ix[i - 1].s)) {
            dup[ix[i].i] = 1;
            vttt_log(lg, VTTT_LOG_WARNING, "%s is listed more than once; taken once", ix[i].s);
        }
    int64_t k = 0, m = 0;
    for (int64_t i = 0; i < n; i++) {
        if (dup[i]) continue;
        if (k++ % p->shard_count == p->shard_index) sel[m++] = sources[i];
    }
    free(ix);
    free(dup);
    *out = sel;
    *n_out = m;
    return 0;
}

static void discard_log(void *user, int level, const char *msg) {
    (void)user, (void)level, (void)msg;
}

/* Did an earlier run finish this source? 1: done ok, 2: recorded failed and
 * not to be retried, 0: to do. */
static int earlier_outcome(const manifest_index *mi, const char *source, const char *key,
                           const vttt_ingest_job_params *p) {
    const manifest_record *r = manifest_index_find(mi, source, key);
    if (!r) return 0;
    if (!r->ok) return p->retry_failed ? 0 : 2;
    char *path = join_path(p->out_dir, r->shard);
    vttt_frame_shard *s = NULL;
    vttt_logger quiet = {discard_log, NULL, 0};
    int done = 0;
    if (path && *r->shard && vttt_frame_shard_open(&s, path, &quiet) == 0) {
        done = vttt_frame_shard_get_info(s)->frame_count == r->frames;
        vttt_frame_shard_close(&s);
    }
    free(path);
    return done;
}

static int64_t source_bytes(const char *source) {
    struct stat st;
    if (strstr(source, "://") || stat(source, &st) != 0 || !S_ISREG(st.st_mode)) return -1;
    return (int64_t)st.st_size;
}

/* Splits this shard of the list into done (counted in j->prog) and to do. */
static int plan(job *j, const char *const *sources, int64_t n) {
    const char **sel = NULL;
    int64_t m = 0;
    int ret = select_sources(sources, n, j->p, &sel, &m, j->lg);
    if (ret < 0) return ret;
    manifest_index mi;
    char key[256];
    manifest_params_key(&j->video, key, sizeof key);
    if ((ret = manifest_index_load(&mi, j->p->out_dir, j->lg)) < 0) {
        free(sel);
        return ret;
    }
    j->todo = malloc((size_t)(m ? m : 1) * sizeof *j->todo);
    j->todo_bytes = malloc((size_t)(m ? m : 1) * sizeof *j->todo_bytes);
    if (!j->todo || !j->todo_bytes) ret = VTTT_ENOMEM;
    j->prog.files_total = m;
    j->bytes_total = 0;
    for (int64_t i = 0; ret == 0 && i < m; i++) {
        int outcome = earlier_outcome(&mi, sel[i], key, j->p);
        if (outcome) {
            j->prog.files_skipped++;
            if (outcome == 2) j->prog.files_failed++;
            continue;
        }
        j->todo_bytes[j->n_todo] = source_bytes(sel[i]);
        if (j->todo_bytes[j->n_todo] < 0) j->bytes_total = -1;
        else if (j->bytes_total >= 0) j->bytes_total += j->todo_bytes[j->n_todo];
        j->todo[j->n_todo++] = sel[i];
    }
    manifest_index_free(&mi);
    free(sel);
    return ret;
}

/* ---- running ----------------------------------------------------------------- */

/* Opens the manifest for appending; a last line cut short by a crash is
 * closed with a newline so that it stays a separate (ignored) line. */
static int open_manifest(job *j) {
    char name[64] = VTTT_INGEST_MANIFEST;
    if (j->p->shard_count > 1)
        snprintf(name, sizeof name, "manifest-%d-of-%d.jsonl", j->p->shard_index, j->p->shard_count);
    char *path = join_path(j->p->out_dir, name);
    if (!path) return VTTT_ENOMEM;
    j->manifest_fd = open(path, O_RDWR | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    if (j->manifest_fd < 0) {
        vttt_log(j->lg, VTTT_LOG_ERROR, "cannot open the manifest %s: %s", path, strerror(errno));
        free(path);
        return VTTT_EIO;
    }
    free(path);
    struct stat st;
    char last = '\n';
    if (fstat(j->manifest_fd, &st) == 0 && st.st_size > 0) {
        if (pread(j->manifest_fd, &last, 1, st.st_size - 1) != 1) last = '\n';
    }
    if (last != '\n' && write(j->manifest_fd, "\n", 1) != 1) return VTTT_EIO;
    return 0;
}

/* A snapshot of the progress; the caller holds j->mu. */
static vttt_ingest_progress snapshot(job *j, int final) {
    vttt_ingest_progress p = j->prog;
    p.frames = atomic_load(&j->frames);
    p.elapsed_s = now_s() - j->t0;
    p.frames_per_s = p.elapsed_s > 0 ? p.frames / p.elapsed_s : 0;
    p.final = final;
    p.eta_s = -1;
    int64_t done = atomic_load(&j->bytes_done);
    for (int i = 0; i < j->p->jobs; i++) done += atomic_load(&j->slot_bytes[i]);
    if (final) p.eta_s = 0;
    else if (j->bytes_total > 0 && done > 0) p.eta_s = p.elapsed_s * (double)(j->bytes_total - done) / done;
    else if (p.files_done > 0) p.eta_s = p.elapsed_s * (double)(j->n_todo - p.files_done) / p.files_done;
    return p;
}

/* Runs the workers and reports progress every progress_s from this thread. */
static int run_workers(job *j) {
    int n = j->p->jobs < j->n_todo ? j->p->jobs : (int)j->n_todo;
    pthread_t *t = calloc((size_t)(n ? n : 1), sizeof *t);
    worker_arg *a = calloc((size_t)(n ? n : 1), sizeof *a);
    if (!t || !a) {
        free(t), free(a);
        return VTTT_ENOMEM;
    }
    int created = 0;
    pthread_mutex_lock(&j->mu);
    for (int i = 0; i < n; i++, created++) {
        a[i] = (worker_arg){j, i};
        if (pthread_create(&t[i], NULL, worker, &a[i]) != 0) break;
        j->running++;
    }
    double last = now_s();
    while (j->running > 0) {
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        double step = j->p->progress_s > 0 ? j->p->progress_s : 1.0;
        ts.tv_sec += (time_t)step;
        ts.tv_nsec += (long)((step - (time_t)step) * 1e9);
        if (ts.tv_nsec >= 1000000000L) ts.tv_sec++, ts.tv_nsec -= 1000000000L;
        pthread_cond_timedwait(&j->cv, &j->mu, &ts);
        if (j->p->progress && j->p->progress_s > 0 && now_s() - last >= j->p->progress_s && j->running > 0) {
            vttt_ingest_progress p = snapshot(j, 0);
            last = now_s();
            pthread_mutex_unlock(&j->mu);
            j->p->progress(j->p->progress_user, &p);
            pthread_mutex_lock(&j->mu);
        }
    }
    pthread_mutex_unlock(&j->mu);
    for (int i = 0; i < created; i++) pthread_join(t[i], NULL);
    free(t);
    free(a);
    if (created == 0 && n > 0) {
        vttt_log(j->lg, VTTT_LOG_ERROR, "cannot start worker threads");
        return VTTT_ENOMEM;
    }
    return 0;
}

static int check_job_params(const vttt_ingest_job_params *p, const vttt_logger *lg) {
    if (!p->out_dir || !*p->out_dir) {
        vttt_log(lg, VTTT_LOG_ERROR, "no output directory given");
        return VTTT_EINVAL;
    }
    if (p->jobs < 1 || p->jobs > 1024 || p->shard_count < 1 || p->shard_index < 0 ||
        p->shard_index >= p->shard_count) {
        vttt_log(lg, VTTT_LOG_ERROR, "bad job parameters: jobs %d, shard %d/%d (shards are numbered 0..N-1)",
                 p->jobs, p->shard_index, p->shard_count);
        return VTTT_EINVAL;
    }
    return 0;
}

static int job_init(job *j, const vttt_ingest_job_params *p, const vttt_logger *lg) {
    memset(j, 0, sizeof *j);
    j->p = p;
    j->lg = lg;
    j->video = p->video;
    j->manifest_fd = -1;
    if (j->video.threads == 0 && p->jobs > 1) {
        long cpus = sysconf(_SC_NPROCESSORS_ONLN);
        j->video.threads = cpus > p->jobs ? (int)(cpus / p->jobs) : 1;
    }
    j->slot_bytes = calloc((size_t)p->jobs, sizeof *j->slot_bytes);
    if (!j->slot_bytes) return VTTT_ENOMEM;
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&j->cv, &ca);
    pthread_condattr_destroy(&ca);
    pthread_mutex_init(&j->mu, NULL);
    j->t0 = now_s();
    return 0;
}

static void job_free(job *j) {
    if (j->manifest_fd >= 0) close(j->manifest_fd);
    pthread_cond_destroy(&j->cv);
    pthread_mutex_destroy(&j->mu);
    free(j->slot_bytes);
    free(j->todo);
    free(j->todo_bytes);
}

int vttt_ingest_job_run(const char *const *sources, int64_t n, const vttt_ingest_job_params *p,
                        vttt_ingest_progress *out, const vttt_logger *lg) {
    if (out) memset(out, 0, sizeof *out);
    int ret = check_job_params(p, lg);
    if (ret < 0 || (ret = make_dirs(p->out_dir, lg)) < 0) return ret;
    job j;
    if ((ret = job_init(&j, p, lg)) < 0) {
        free(j.slot_bytes);
        return ret;
    }
    ret = plan(&j, sources, n);
    if (ret == 0) ret = open_manifest(&j);
    if (ret == 0) ret = run_workers(&j);
    if (ret == 0 && j.fatal) ret = VTTT_EIO;
    pthread_mutex_lock(&j.mu);
    vttt_ingest_progress fin = snapshot(&j, 1);
    pthread_mutex_unlock(&j.mu);
    if (p->progress) p->progress(p->progress_user, &fin);
    if (out) *out = fin;
    job_free(&j);
    return ret;
}
