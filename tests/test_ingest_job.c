/* The batch job: a list with good and damaged sources (truncated, bytes
 * flipped, zero-length, a text file named .mp4, a missing file) is
 * processed to the end with every damaged source recorded with a reason;
 * --keep-partial keeps the frames before the damage; re-running skips what
 * is done; a job killed with SIGKILL mid-source resumes without taking the
 * half-written shard as done; --shard i/N splits the list; duplicates and
 * changed parameters; the progress callback. */
#include <check.h>
#include <dirent.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "ingest_testutil.h"

static char g_dir[256];      /* fixtures */
static char *g_good[3];      /* good sources */
static char *g_bad[7];       /* damaged or not videos at all */
#define N_GOOD 3
#define N_BAD 7

/* ---- manifest helpers ------------------------------------------------------ */

typedef struct {
    int lines;
    cJSON *items[256];
} manifest;

static void manifest_load(manifest *m, const char *out, const char *name) {
    memset(m, 0, sizeof *m);
    char *path = it_path(out, name);
    FILE *f = fopen(path, "r");
    char line[8192];
    while (f && fgets(line, sizeof line, f) && m->lines < 256) {
        cJSON *o = cJSON_Parse(line);
        if (o) m->items[m->lines++] = o;
    }
    if (f) fclose(f);
    free(path);
}

static void manifest_free(manifest *m) {
    for (int i = 0; i < m->lines; i++) cJSON_Delete(m->items[i]);
}

static const char *str_of(cJSON *o, const char *k) {
    cJSON *it = cJSON_GetObjectItemCaseSensitive(o, k);
    return cJSON_IsString(it) ? it->valuestring : NULL;
}

static double num_of(cJSON *o, const char *k) {
    cJSON *it = cJSON_GetObjectItemCaseSensitive(o, k);
    return cJSON_IsNumber(it) ? it->valuedouble : -1;
}

/* The last line about source, or NULL. */
static cJSON *last_for(manifest *m, const char *source) {
    cJSON *r = NULL;
    for (int i = 0; i < m->lines; i++)
        if (str_of(m->items[i], "source") && !strcmp(str_of(m->items[i], "source"), source)) r = m->items[i];
    return r;
}

/* Opens the shard a manifest line names and checks its frame count. */
static int64_t shard_frames(const char *out, cJSON *line, uint32_t *flags) {
    const char *name = str_of(line, "shard");
    if (!name) return -1;
    char *path = it_path(out, name);
    vttt_frame_shard *s = NULL;
    int64_t n = -1;
    if (vttt_frame_shard_open(&s, path, NULL) == 0) {
        n = vttt_frame_shard_get_info(s)->frame_count;
        if (flags) *flags = vttt_frame_shard_get_info(s)->flags;
        vttt_frame_shard_close(&s);
    }
    free(path);
    return n;
}

static vttt_ingest_job_params job_params(const char *out) {
    vttt_ingest_job_params p = vttt_ingest_job_default_params();
    p.out_dir = out;
    p.video.fps_num = 10;
    p.video.fps_den = 1;
    p.video.size = 32;
    p.progress_s = 0;
    return p;
}

static const char **all_sources(int *n) {
    static const char *list[N_GOOD + N_BAD];
    for (int i = 0; i < N_GOOD; i++) list[i] = g_good[i];
    for (int i = 0; i < N_BAD; i++) list[N_GOOD + i] = g_bad[i];
    *n = N_GOOD + N_BAD;
    return list;
}

static int count_lines(const char *path) {
    FILE *f = fopen(path, "r");
    int n = 0, c;
    while (f && (c = fgetc(f)) != EOF) n += c == '\n';
    if (f) fclose(f);
    return n;
}

static int count_tmp(const char *dir) {
    DIR *d = opendir(dir);
    struct dirent *e;
    int n = 0;
    while (d && (e = readdir(d))) {
        size_t k = strlen(e->d_name);
        n += k > 4 && !strcmp(e->d_name + k - 4, ".tmp");
    }
    if (d) closedir(d);
    return n;
}

/* ---- tests -------------------------------------------------------------------- */

START_TEST(test_damaged_sources_recorded_job_continues) {
    char out[256];
    tu_tmpdir(out, sizeof out, "job_damaged");
    int n;
    const char **src = all_sources(&n);
    vttt_ingest_job_params p = job_params(out);
    p.jobs = 2;
    vttt_ingest_progress res;
    vttt_logger lg = tu_log_quiet();
    ck_assert_int_eq(vttt_ingest_job_run(src, n, &p, &res, &lg), 0);
    ck_assert_int_eq(res.files_total, n);
    ck_assert_int_eq(res.files_done, n);
    ck_assert_int_eq(res.files_failed, N_BAD);
    ck_assert_int_ge(res.frames, 3 * 20);
    manifest m;
    manifest_load(&m, out, "manifest.jsonl");
    ck_assert_int_eq(m.lines, n);
    for (int i = 0; i < N_GOOD; i++) {
        cJSON *l = last_for(&m, g_good[i]);
        ck_assert_ptr_nonnull(l);
        ck_assert_str_eq(str_of(l, "status"), "ok");
        ck_assert_int_eq(num_of(l, "frames"), 20);
        ck_assert_int_eq(shard_frames(out, l, NULL), 20);
        ck_assert(fabs(num_of(l, "duration") - 2.0) < 1e-9);
        ck_assert(str_of(l, "src_codec") && num_of(l, "src_width") == 320 && num_of(l, "src_fps") > 0);
    }
    for (int i = 0; i < N_BAD; i++) {
        cJSON *l = last_for(&m, g_bad[i]);
        ck_assert_msg(l != NULL, "%s not in the manifest", g_bad[i]);
        ck_assert_str_eq(str_of(l, "status"), "error");
        ck_assert_msg(str_of(l, "error") && strlen(str_of(l, "error")) > 10, "%s: no reason", g_bad[i]);
        ck_assert_int_eq(num_of(l, "frames"), 0);
        ck_assert(cJSON_IsNull(cJSON_GetObjectItemCaseSensitive(l, "shard")));
    }
    manifest_free(&m);
    /* only finished shards and the manifest are left */
    ck_assert_int_eq(count_tmp(out), 0);
    ck_assert_int_eq(it_sh("test $(ls '%s' | grep -c '\\.vfr$') -eq 3", out), 0);

    /* a second run skips everything and still reports the failures */
    ck_assert_int_eq(vttt_ingest_job_run(src, n, &p, &res, &lg), 0);
    ck_assert_int_eq(res.files_skipped, n);
    ck_assert_int_eq(res.files_done, 0);
    ck_assert_int_eq(res.files_failed, N_BAD);
    manifest_load(&m, out, "manifest.jsonl");
    ck_assert_int_eq(m.lines, n);
    manifest_free(&m);

    /* --keep-partial --retry-failed: the frames before the damage are kept */
    p.keep_partial = 1;
    p.retry_failed = 1;
    ck_assert_int_eq(vttt_ingest_job_run(src, n, &p, &res, &lg), 0);
    ck_assert_int_eq(res.files_skipped, N_GOOD);
    ck_assert_int_eq(res.files_done, N_BAD);
    ck_assert_int_eq(res.files_failed, N_BAD);
    manifest_load(&m, out, "manifest.jsonl");
    int partial = 0;
    for (int i = 0; i < N_BAD; i++) {
        cJSON *l = last_for(&m, g_bad[i]);
        uint32_t flags = 0;
        if (!cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(l, "partial"))) continue;
        partial++;
        ck_assert_str_eq(str_of(l, "status"), "error");
        ck_assert_int_gt(num_of(l, "frames"), 0);
        ck_assert_int_eq(shard_frames(out, l, &flags), (int64_t)num_of(l, "frames"));
        ck_assert_uint_eq(flags, VTTT_FRAME_SHARD_PARTIAL);
    }
    ck_assert_int_eq(partial, 3);  /* truncated mkv, flipped mp4, flipped avi */
    manifest_free(&m);
    tu_rm_rf(out);
}
END_TEST

/* Waits until the manifest has at least `lines` lines and a shard is being
 * written; gives up after 30 s. */
static int wait_mid_source(const char *out, int lines) {
    char *path = it_path(out, "manifest.jsonl");
    struct timespec pause = {0, 100000};
    int caught = 0;
    for (int t = 0; t < 300000 && !caught; t++) {
        caught = count_lines(path) >= lines && count_tmp(out) > 0;
        if (!caught) nanosleep(&pause, NULL);
    }
    free(path);
    return caught;
}

/* kill -9 in the middle of a source, then the same job again. */
START_TEST(test_resume_after_kill) {
    char out[256];
    tu_tmpdir(out, sizeof out, "job_kill");
    const char *src[6];
    char *names[6];
    for (int i = 0; i < 6; i++) {
        char name[32];
        snprintf(name, sizeof name, "long%d.mkv", i);
        names[i] = it_path(g_dir, name);
        it_sh("cp '%s/long.mkv' '%s'", g_dir, names[i]);
        src[i] = names[i];
    }
    vttt_ingest_job_params p = job_params(out);
    p.video.fps_num = 25;
    pid_t pid = fork();
    if (pid == 0) {
        vttt_logger lg = tu_log_quiet();
        vttt_ingest_job_run(src, 6, &p, NULL, &lg);
        _exit(0);
    }
    int caught = wait_mid_source(out, 2);
    kill(pid, SIGKILL);
    int st;
    waitpid(pid, &st, 0);
    ck_assert_msg(caught && WIFSIGNALED(st), "the job was not caught mid-source");
    manifest m;
    manifest_load(&m, out, "manifest.jsonl");
    int done_before = m.lines;
    ck_assert_int_ge(done_before, 2);
    ck_assert_int_lt(done_before, 6);
    manifest_free(&m);
    ck_assert_int_ge(count_tmp(out), 1);

    vttt_ingest_progress res;
    vttt_logger lg = tu_log_quiet();
    ck_assert_int_eq(vttt_ingest_job_run(src, 6, &p, &res, &lg), 0);
    ck_assert_int_eq(res.files_skipped, done_before);
    ck_assert_int_eq(res.files_done, 6 - done_before);
    ck_assert_int_eq(res.files_failed, 0);
    manifest_load(&m, out, "manifest.jsonl");
    ck_assert_int_eq(m.lines, 6);
    for (int i = 0; i < 6; i++) {
        cJSON *l = last_for(&m, src[i]);
        ck_assert_str_eq(str_of(l, "status"), "ok");
        ck_assert_int_eq(shard_frames(out, l, NULL), 100);
    }
    manifest_free(&m);
    ck_assert_int_eq(count_tmp(out), 0);
    for (int i = 0; i < 6; i++) free(names[i]);
    tu_rm_rf(out);
}
END_TEST

/* The crash windows that a kill may or may not hit, made on purpose: a
 * shard renamed but not yet in the manifest, an "ok" line whose shard is
 * damaged, and a manifest line cut short. All are redone. A FIFO named
 * like a manifest does not stop the job. */
START_TEST(test_resume_edge_cases) {
    char out[256];
    tu_tmpdir(out, sizeof out, "job_edges");
    vttt_ingest_job_params p = job_params(out);
    vttt_ingest_progress res;
    vttt_logger lg = tu_log_quiet();
    const char *src[3] = {g_good[0], g_good[1], g_good[2]};
    ck_assert_int_eq(vttt_ingest_job_run(src, 3, &p, &res, &lg), 0);
    manifest m;
    manifest_load(&m, out, "manifest.jsonl");
    char shard1[512];
    snprintf(shard1, sizeof shard1, "%s/%s", out, str_of(last_for(&m, g_good[1]), "shard"));
    manifest_free(&m);
    /* keep only the first line; cut the shard of source 1 short; add half a line */
    it_sh("head -n 1 '%s/manifest.jsonl' > '%s/m' && grep -F '\"%s\"' '%s/manifest.jsonl' >> '%s/m' && "
          "printf '{\"source\":\"%s\",\"sta' >> '%s/m' && mv '%s/m' '%s/manifest.jsonl'",
          out, out, g_good[1], out, out, g_good[2], out, out, out);
    ck_assert_int_eq(truncate(shard1, it_file_size(shard1) - 100), 0);
    manifest_load(&m, out, "manifest.jsonl");
    int first_is_0 = !strcmp(str_of(m.items[0], "source"), g_good[0]);
    manifest_free(&m);
    ck_assert_int_eq(vttt_ingest_job_run(src, 3, &p, &res, &lg), 0);
    ck_assert_int_eq(res.files_skipped, 1);
    ck_assert_int_eq(res.files_done, 2);
    ck_assert(first_is_0);
    manifest_load(&m, out, "manifest.jsonl");
    ck_assert_int_eq(m.lines, 4);  /* the cut line is ignored, and kept apart from the next */
    for (int i = 0; i < 3; i++) {
        cJSON *l = last_for(&m, src[i]);
        ck_assert_str_eq(str_of(l, "status"), "ok");
        ck_assert_int_eq(shard_frames(out, l, NULL), 20);
    }
    manifest_free(&m);
    /* other parameters are another job: nothing is skipped */
    p.video.size = 16;
    ck_assert_int_eq(vttt_ingest_job_run(src, 3, &p, &res, &lg), 0);
    ck_assert_int_eq(res.files_skipped, 0);
    ck_assert_int_eq(res.files_done, 3);
    /* a FIFO where a manifest is looked for is passed over, not waited on */
    char *fifo = it_path(out, "manifest-fifo.jsonl");
    ck_assert_int_eq(mkfifo(fifo, 0644), 0);
    alarm(60);
    ck_assert_int_eq(vttt_ingest_job_run(src, 3, &p, &res, &lg), 0);
    alarm(0);
    ck_assert_int_eq(res.files_skipped, 3);
    free(fifo);
    tu_rm_rf(out);
}
END_TEST

START_TEST(test_shard_split_and_duplicates) {
    char out[256];
    tu_tmpdir(out, sizeof out, "job_split");
    int n;
    const char **all = all_sources(&n);
    const char *src[N_GOOD + N_BAD + 2];
    memcpy(src, all, (size_t)n * sizeof *src);
    src[n] = g_good[0];  /* listed twice */
    src[n + 1] = g_bad[0];
    vttt_ingest_job_params p = job_params(out);
    vttt_ingest_progress r0, r1, r2;
    vttt_logger lg = tu_log_quiet();
    p.shard_count = 2;
    p.shard_index = 0;
    ck_assert_int_eq(vttt_ingest_job_run(src, n + 2, &p, &r0, &lg), 0);
    p.shard_index = 1;
    ck_assert_int_eq(vttt_ingest_job_run(src, n + 2, &p, &r1, &lg), 0);
    ck_assert_int_eq(r0.files_total + r1.files_total, n);
    ck_assert_int_eq(r0.files_total, (n + 1) / 2);
    manifest m0, m1;
    manifest_load(&m0, out, "manifest-0-of-2.jsonl");
    manifest_load(&m1, out, "manifest-1-of-2.jsonl");
    ck_assert_int_eq(m0.lines + m1.lines, n);
    for (int i = 0; i < n; i++) ck_assert(!!last_for(&m0, all[i]) != !!last_for(&m1, all[i]));
    manifest_free(&m0);
    manifest_free(&m1);
    /* the whole list afterwards: everything is done already */
    p.shard_count = 1;
    p.shard_index = 0;
    ck_assert_int_eq(vttt_ingest_job_run(src, n + 2, &p, &r2, &lg), 0);
    ck_assert_int_eq(r2.files_skipped, n);
    ck_assert_int_eq(r2.files_failed, N_BAD);
    p.shard_index = 2;
    p.shard_count = 2;
    ck_assert_int_eq(vttt_ingest_job_run(src, n, &p, &r2, &lg), VTTT_EINVAL);
    p.shard_index = 0;
    p.out_dir = "/proc/no/such/dir";
    ck_assert_int_lt(vttt_ingest_job_run(src, n, &p, &r2, &lg), 0);
    tu_rm_rf(out);
}
END_TEST

typedef struct {
    int calls, finals;
    vttt_ingest_progress last;
} progress_log;

static void on_progress(void *user, const vttt_ingest_progress *pr) {
    progress_log *l = user;
    l->calls++;
    l->finals += pr->final;
    l->last = *pr;
}

START_TEST(test_progress_callback) {
    char out[256];
    tu_tmpdir(out, sizeof out, "job_progress");
    vttt_ingest_job_params p = job_params(out);
    progress_log log;
    memset(&log, 0, sizeof log);
    p.progress = on_progress;
    p.progress_user = &log;
    p.progress_s = 0.01;
    vttt_logger lg = tu_log_quiet();
    const char *src[3] = {g_good[0], g_good[1], g_good[2]};
    ck_assert_int_eq(vttt_ingest_job_run(src, 3, &p, NULL, &lg), 0);
    ck_assert_int_ge(log.calls, 1);
    ck_assert_int_eq(log.finals, 1);
    ck_assert(log.last.final);
    ck_assert_int_eq(log.last.files_done, 3);
    ck_assert_int_eq(log.last.frames, 60);
    ck_assert(log.last.frames_per_s > 0 && log.last.elapsed_s > 0 && log.last.eta_s == 0);
    tu_rm_rf(out);
}
END_TEST

START_TEST(test_shard_names) {
    char a[256], b[256], c[256];
    vttt_ingest_shard_name("/data/videos/My Clip (1).mp4", a, sizeof a);
    vttt_ingest_shard_name("/other/videos/My Clip (1).mp4", b, sizeof b);
    vttt_ingest_shard_name("pipe:0", c, sizeof c);
    ck_assert(!strncmp(a, "My_Clip__1_-", 12) && strlen(a) == 12 + 16 + 4);
    ck_assert_str_ne(a, b);
    ck_assert(!strncmp(c, "pipe_0-", 7) && strstr(c, ".vfr"));
}
END_TEST

static void make_fixtures(void) {
    tu_tmpdir(g_dir, sizeof g_dir, "ingest_job");
    it_make_video(g_dir, "a.mp4", "testsrc2=size=320x240:rate=25:duration=2", "-c:v libx264 -threads 1");
    it_make_video(g_dir, "b.avi", "mandelbrot=size=320x240:rate=25", "-t 2 -c:v mpeg4");
    it_make_video(g_dir, "c.mkv", "life=size=320x240:rate=20:mold=10", "-t 2 -c:v mjpeg");
    const char *src = "testsrc2=size=320x240:rate=25:duration=4";
    it_make_video(g_dir, "long.mp4", src, "-c:v libx264 -threads 1 -g 25");
    it_make_video(g_dir, "long.mkv", src, "-c:v libx264 -threads 1 -g 25");
    it_make_video(g_dir, "long.avi", "mandelbrot=size=320x240:rate=25", "-t 4 -c:v mpeg4");
    g_good[0] = it_path(g_dir, "a.mp4");
    g_good[1] = it_path(g_dir, "b.avi");
    g_good[2] = it_path(g_dir, "c.mkv");
    const char *bad[N_BAD] = {"trunc.mkv", "trunc.mp4", "flip.mp4", "flip.avi", "zero.mp4", "text.mp4", "missing.mp4"};
    for (int i = 0; i < N_BAD; i++) g_bad[i] = it_path(g_dir, bad[i]);
    char *lmkv = it_path(g_dir, "long.mkv"), *lmp4 = it_path(g_dir, "long.mp4"), *lavi = it_path(g_dir, "long.avi");
    it_damage(lmkv, g_bad[0], 0, 0.5);
    it_damage(lmp4, g_bad[1], 0, 0.5);  /* the moov atom at the end is lost */
    it_damage(lmp4, g_bad[2], 100, 0);
    it_damage(lavi, g_bad[3], 100, 0);
    it_sh(": > '%s'", g_bad[4]);
    it_sh("yes 'not a video' | head -n 100 > '%s'", g_bad[5]);
    free(lmkv), free(lmp4), free(lavi);
}

int main(void) {
    av_log_set_level(AV_LOG_QUIET);
    make_fixtures();
    TCase *tc = tcase_create("core");
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, test_damaged_sources_recorded_job_continues);
    tcase_add_test(tc, test_resume_after_kill);
    tcase_add_test(tc, test_resume_edge_cases);
    tcase_add_test(tc, test_shard_split_and_duplicates);
    tcase_add_test(tc, test_progress_callback);
    tcase_add_test(tc, test_shard_names);
    int status = tu_run("ingest_job", tc, CK_FORK_GETENV);
    tu_rm_rf(g_dir);
    for (int i = 0; i < N_GOOD; i++) free(g_good[i]);
    for (int i = 0; i < N_BAD; i++) free(g_bad[i]);
    return status;
}
