/* Frame shards: the documented byte layout, round trips with random access
 * to any window, the writer's atomicity (nothing under the final name until
 * finished; a crashed or aborted writer leaves no complete-looking shard),
 * the reader refusing truncated, padded and malformed files, and a failing
 * write (RLIMIT_FSIZE) reported as VTTT_EIO with nothing left behind. */
#include <check.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include "ingest_testutil.h"

static char g_dir[256];

static vttt_frame_shard_info shape(int w, int h, int c, const char *source) {
    vttt_frame_shard_info in;
    memset(&in, 0, sizeof in);
    in.width = w;
    in.height = h;
    in.channels = c;
    in.fps_num = 30000;
    in.fps_den = 1001;
    snprintf(in.source, sizeof in.source, "%s", source);
    return in;
}

/* Frame f, byte i: a pattern that differs between frames and positions. */
static uint8_t pattern(int64_t f, size_t i) { return (uint8_t)(f * 31 + i * 7 + (i >> 8)); }

static void fill(uint8_t *buf, int64_t first, int64_t n, size_t fb) {
    for (int64_t f = 0; f < n; f++)
        for (size_t i = 0; i < fb; i++) buf[f * fb + i] = pattern(first + f, i);
}

/* Writes n frames of the given shape to path in chunks of up to 7. */
static int write_shard(const char *path, const vttt_frame_shard_info *in, int64_t n, uint32_t flags) {
    vttt_frame_shard_writer *w = NULL;
    int ret = vttt_frame_shard_writer_open(&w, path, in, NULL);
    if (ret < 0) return ret;
    size_t fb = vttt_frame_shard_frame_bytes(in);
    uint8_t *buf = malloc(7 * fb);
    for (int64_t f = 0; f < n && ret == 0;) {
        int64_t k = n - f < 7 ? n - f : 7;
        fill(buf, f, k, fb);
        ret = vttt_frame_shard_writer_write(w, buf, k);
        f += k;
    }
    free(buf);
    if (ret < 0) {
        vttt_frame_shard_writer_abort(&w);
        return ret;
    }
    ck_assert_int_eq(vttt_frame_shard_writer_count(w), n);
    return vttt_frame_shard_writer_finish(&w, flags);
}

START_TEST(test_round_trip_random_access) {
    char *path = it_path(g_dir, "rt.vfr");
    vttt_frame_shard_info in = shape(17, 9, 3, "videos/clip one.mp4");
    ck_assert_int_eq(write_shard(path, &in, 100, 0), 0);
    vttt_frame_shard *s = NULL;
    ck_assert_int_eq(vttt_frame_shard_open(&s, path, NULL), 0);
    const vttt_frame_shard_info *got = vttt_frame_shard_get_info(s);
    ck_assert_int_eq(got->width, 17);
    ck_assert_int_eq(got->height, 9);
    ck_assert_int_eq(got->channels, 3);
    ck_assert_int_eq(got->fps_num, 30000);
    ck_assert_int_eq(got->fps_den, 1001);
    ck_assert_int_eq(got->frame_count, 100);
    ck_assert_uint_eq(got->flags, 0);
    ck_assert_str_eq(got->source, "videos/clip one.mp4");
    ck_assert(got->source_id == vttt_frame_shard_source_id("videos/clip one.mp4"));
    size_t fb = 17 * 9 * 3;
    uint8_t *buf = malloc(100 * fb), *want = malloc(100 * fb);
    uint64_t r = 7;
    for (int t = 0; t < 200; t++) {  /* random windows, edges included */
        r = r * 6364136223846793005ull + 1442695040888963407ull;
        int64_t first = (int64_t)((r >> 33) % 101), count = (int64_t)((r >> 20) % (uint64_t)(101 - first));
        if (t == 0) first = 0, count = 100;
        if (t == 1) first = 99, count = 1;
        if (t == 2) first = 100, count = 0;
        ck_assert_int_eq(vttt_frame_shard_read(s, first, count, buf), 0);
        fill(want, first, count, fb);
        ck_assert(memcmp(buf, want, (size_t)count * fb) == 0);
    }
    ck_assert_int_eq(vttt_frame_shard_read(s, 95, 6, buf), VTTT_EINVAL);
    ck_assert_int_eq(vttt_frame_shard_read(s, -1, 1, buf), VTTT_EINVAL);
    ck_assert_int_eq(vttt_frame_shard_read(s, 101, 0, buf), VTTT_EINVAL);
    vttt_frame_shard_close(&s);
    ck_assert_ptr_null(s);
    ck_assert_int_eq(it_file_size(path), 4096 + 100 * (int64_t)fb);
    free(buf), free(want), free(path);
}
END_TEST

static uint32_t le32(const uint8_t *p) { return p[0] | p[1] << 8 | p[2] << 16 | (uint32_t)p[3] << 24; }

/* The layout documented in ingest.h, byte by byte. */
START_TEST(test_layout) {
    char *path = it_path(g_dir, "layout.vfr");
    vttt_frame_shard_info in = shape(4, 2, 3, "src.mkv");
    in.fps_num = 25, in.fps_den = 1;
    ck_assert_int_eq(write_shard(path, &in, 3, VTTT_FRAME_SHARD_PARTIAL), 0);
    FILE *f = fopen(path, "rb");
    uint8_t h[4096 + 3 * 24];
    ck_assert_int_eq(fread(h, 1, sizeof h, f), sizeof h);
    ck_assert_int_eq(fgetc(f), EOF);
    fclose(f);
    ck_assert(memcmp(h, "VTTTVFR\0", 8) == 0);
    ck_assert_uint_eq(le32(h + 8), 1);
    ck_assert_uint_eq(le32(h + 12), 4096);
    ck_assert_uint_eq(le32(h + 16), 4);
    ck_assert_uint_eq(le32(h + 20), 2);
    ck_assert_uint_eq(le32(h + 24), 3);
    ck_assert_uint_eq(le32(h + 28), 25);
    ck_assert_uint_eq(le32(h + 32), 1);
    ck_assert_uint_eq(le32(h + 36), VTTT_FRAME_SHARD_PARTIAL);
    ck_assert_uint_eq(le32(h + 40), 3);
    ck_assert_uint_eq(le32(h + 44), 0);
    uint64_t id = vttt_frame_shard_source_id("src.mkv");
    ck_assert_uint_eq(le32(h + 48), (uint32_t)id);
    ck_assert_uint_eq(le32(h + 52), (uint32_t)(id >> 32));
    ck_assert_uint_eq(le32(h + 56), 7);
    ck_assert(memcmp(h + 64, "src.mkv\0", 8) == 0);
    for (size_t i = 0; i < 3 * 24; i++) ck_assert_uint_eq(h[4096 + i], pattern((int64_t)(i / 24), i % 24));
    /* FNV-1a 64 test vector */
    ck_assert(vttt_frame_shard_source_id("a") == 0xaf63dc4c8601ec8cull);
    free(path);
}
END_TEST

/* Until finish, only "<path>.tmp" exists and it does not open as a shard;
 * abort removes it. A writer killed mid-way leaves the same state. */
START_TEST(test_unfinished_writer_is_not_a_shard) {
    char *path = it_path(g_dir, "unfinished.vfr"), *tmp = it_path(g_dir, "unfinished.vfr.tmp");
    vttt_frame_shard_info in = shape(8, 8, 3, "x");
    pid_t pid = fork();
    if (pid == 0) {
        vttt_frame_shard_writer *w = NULL;
        uint8_t frame[8 * 8 * 3] = {1};
        if (vttt_frame_shard_writer_open(&w, path, &in, NULL) < 0) _exit(1);
        for (int i = 0; i < 10000; i++) vttt_frame_shard_writer_write(w, frame, 1);  /* past the 1 MiB buffer */
        kill(getpid(), SIGKILL);  /* a crash mid-shard */
    }
    int st;
    waitpid(pid, &st, 0);
    ck_assert(WIFSIGNALED(st));
    ck_assert_int_eq(it_file_size(path), -1);
    ck_assert_int_gt(it_file_size(tmp), 4096);
    vttt_frame_shard *s = NULL;
    tu_log c;
    vttt_logger quiet = tu_log_capture(&c, VTTT_LOG_WARNING, 0);
    ck_assert_int_eq(vttt_frame_shard_open(&s, tmp, &quiet), VTTT_EFORMAT);
    ck_assert_ptr_null(s);
    ck_assert(strstr(c.text, "unfinished"));
    /* a new writer for the same path starts over; abort leaves nothing */
    vttt_frame_shard_writer *w = NULL;
    ck_assert_int_eq(vttt_frame_shard_writer_open(&w, path, &in, NULL), 0);
    ck_assert_int_eq(it_file_size(tmp), 4096);
    vttt_frame_shard_writer_abort(&w);
    ck_assert_ptr_null(w);
    ck_assert_int_eq(it_file_size(tmp), -1);
    ck_assert_int_eq(it_file_size(path), -1);
    free(path), free(tmp);
}
END_TEST

static void corrupt_copy(const char *src, const char *dst, long off, uint8_t val, long truncate_to, int append) {
    it_sh("cp '%s' '%s'", src, dst);
    FILE *f = fopen(dst, "r+b");
    if (off >= 0) {
        fseek(f, off, SEEK_SET);
        fputc(val, f);
    }
    if (append) {
        fseek(f, 0, SEEK_END);
        fputc(0, f);
    }
    fclose(f);
    if (truncate_to >= 0) ck_assert_int_eq(truncate(dst, truncate_to), 0);
}

START_TEST(test_reader_rejects_bad_files) {
    char *good = it_path(g_dir, "good.vfr"), *bad = it_path(g_dir, "bad.vfr");
    vttt_frame_shard_info in = shape(8, 8, 3, "y");
    ck_assert_int_eq(write_shard(good, &in, 10, 0), 0);
    long full = 4096 + 10 * 192;
    const struct {
        long off;
        uint8_t val;
        long trunc;
        int append;
        int want;
    } cases[] = {
        {-1, 0, full - 1, 0, VTTT_EFORMAT},  /* truncated mid-frame */
        {-1, 0, full - 192, 0, VTTT_EFORMAT}, /* a frame short */
        {-1, 0, 100, 0, VTTT_EFORMAT},       /* header cut */
        {-1, 0, 0, 0, VTTT_EFORMAT},         /* empty */
        {-1, 0, -1, 1, VTTT_EFORMAT},        /* trailing byte */
        {0, 'X', -1, 0, VTTT_EFORMAT},       /* magic */
        {8, 9, -1, 0, VTTT_EFORMAT},         /* version */
        {12, 1, -1, 0, VTTT_EFORMAT},        /* header size */
        {19, 0x7f, -1, 0, VTTT_EFORMAT},     /* width huge */
        {24, 0, -1, 0, VTTT_EFORMAT},        /* channels 0 */
        {40, 11, -1, 0, VTTT_EFORMAT},       /* count disagrees with the size */
        {47, 0x80, -1, 0, VTTT_EFORMAT},     /* count negative */
        {46, 0x7f, -1, 0, VTTT_EFORMAT},     /* count * frame bytes overflows */
        {57, 0x7f, -1, 0, VTTT_EFORMAT},     /* source length too long */
        {31, 0x80, -1, 0, VTTT_EFORMAT},     /* fps numerator negative */
        {35, 0x80, -1, 0, VTTT_EFORMAT},     /* fps denominator negative */
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        corrupt_copy(good, bad, cases[i].off, cases[i].val, cases[i].trunc, cases[i].append);
        vttt_frame_shard *s = NULL;
        tu_log c;
        vttt_logger lg = tu_log_capture(&c, VTTT_LOG_WARNING, 0);
        ck_assert_msg(vttt_frame_shard_open(&s, bad, &lg) == cases[i].want, "case %zu opened", i);
        ck_assert_ptr_null(s);
        ck_assert_msg(c.count > 0 && strstr(c.text, bad), "case %zu: message '%s' does not name the file", i, c.text);
    }
    /* a rate of 30/0 (the denominator's one byte zeroed) is refused, naming the rate */
    in.fps_num = 30, in.fps_den = 1;
    ck_assert_int_eq(write_shard(good, &in, 10, 0), 0);
    corrupt_copy(good, bad, 32, 0, -1, 0);
    vttt_frame_shard *s = NULL;
    tu_log c;
    vttt_logger lg = tu_log_capture(&c, VTTT_LOG_WARNING, 0);
    ck_assert_int_eq(vttt_frame_shard_open(&s, bad, &lg), VTTT_EFORMAT);
    ck_assert_msg(strstr(c.text, bad) && strstr(c.text, "frame rate 30/0"), "message: %s", c.text);
    ck_assert_int_eq(vttt_frame_shard_open(&s, "/nonexistent/x.vfr", NULL), VTTT_EIO);
    ck_assert_int_eq(vttt_frame_shard_open(&s, good, NULL), 0);
    vttt_frame_shard_close(&s);
    vttt_frame_shard_close(&s);  /* NULL is fine */
    free(good), free(bad);
}
END_TEST

START_TEST(test_writer_bad_arguments) {
    vttt_frame_shard_writer *w = NULL;
    vttt_frame_shard_info in = shape(0, 8, 3, "z");
    char *path = it_path(g_dir, "args.vfr");
    ck_assert_int_eq(vttt_frame_shard_writer_open(&w, path, &in, NULL), VTTT_EINVAL);
    in = shape(8, 8, 5, "z");
    ck_assert_int_eq(vttt_frame_shard_writer_open(&w, path, &in, NULL), VTTT_EINVAL);
    in = shape(8, 8, 3, "z");
    in.fps_num = -1, in.fps_den = 0; /* never written as "-1/0" */
    ck_assert_int_eq(vttt_frame_shard_writer_open(&w, path, &in, NULL), VTTT_EINVAL);
    in.fps_num = 30, in.fps_den = -1;
    ck_assert_int_eq(vttt_frame_shard_writer_open(&w, path, &in, NULL), VTTT_EINVAL);
    ck_assert_int_eq(access(path, F_OK), -1);
    in = shape(8, 8, 3, "z");
    ck_assert_int_eq(vttt_frame_shard_writer_open(&w, "/nonexistent/dir/x.vfr", &in, NULL), VTTT_EIO);
    ck_assert_ptr_null(w);
    /* a very long source string is cut to fit the header */
    char *longsrc = malloc(10000);
    memset(longsrc, 'a', 9999);
    longsrc[9999] = 0;
    snprintf(in.source, sizeof in.source, "%s", longsrc);
    ck_assert_int_eq(write_shard(path, &in, 1, 0), 0);
    vttt_frame_shard *s = NULL;
    ck_assert_int_eq(vttt_frame_shard_open(&s, path, NULL), 0);
    ck_assert_int_eq(strlen(vttt_frame_shard_get_info(s)->source), VTTT_FRAME_SHARD_SOURCE_MAX);
    vttt_frame_shard_close(&s);
    free(longsrc), free(path);
}
END_TEST

/* Fault injection: the file size limit makes a write fail mid-shard. */
START_TEST(test_write_failure) {
    char *path = it_path(g_dir, "full.vfr"), *tmp = it_path(g_dir, "full.vfr.tmp");
    pid_t pid = fork();
    if (pid == 0) {
        signal(SIGXFSZ, SIG_IGN);
        struct rlimit rl = {64 * 1024, 64 * 1024};
        setrlimit(RLIMIT_FSIZE, &rl);
        vttt_frame_shard_info in = shape(64, 64, 3, "big");
        tu_log c;
        vttt_logger quiet = tu_log_capture(&c, VTTT_LOG_WARNING, 0);
        vttt_frame_shard_writer *w = NULL;
        if (vttt_frame_shard_writer_open(&w, path, &in, &quiet) < 0) _exit(2);
        uint8_t *frame = calloc(1, 64 * 64 * 3);
        int ret = 0;
        for (int i = 0; i < 200 && ret == 0; i++) ret = vttt_frame_shard_writer_write(w, frame, 1);
        if (ret == 0) ret = vttt_frame_shard_writer_finish(&w, 0);
        else vttt_frame_shard_writer_abort(&w);
        _exit(ret == VTTT_EIO && c.count > 0 ? 0 : 3);
    }
    int st;
    waitpid(pid, &st, 0);
    ck_assert_msg(WIFEXITED(st) && WEXITSTATUS(st) == 0, "child status %d", st);
    ck_assert_int_eq(it_file_size(path), -1);
    ck_assert_int_eq(it_file_size(tmp), -1);
    free(path), free(tmp);
}
END_TEST

int main(void) {
    tu_tmpdir(g_dir, sizeof g_dir, "ingest_shard");
    TCase *tc = tcase_create("core");
    tcase_add_test(tc, test_round_trip_random_access);
    tcase_add_test(tc, test_layout);
    tcase_add_test(tc, test_unfinished_writer_is_not_a_shard);
    tcase_add_test(tc, test_reader_rejects_bad_files);
    tcase_add_test(tc, test_writer_bad_arguments);
    tcase_add_test(tc, test_write_failure);
    int status = tu_run("ingest_shard", tc, CK_FORK_GETENV);
    tu_rm_rf(g_dir);
    return status;
}
