/* Video decoding against the ffmpeg command line: the same frames (PSNR >=
 * 40 dB; in practice identical) for the same fps/crop/scale over several
 * codecs, containers, odd sizes and variable frame rate sources; frame
 * counts and timestamps of VFR sources; time ranges; pad/stretch and the
 * scaler choice; pipes; damaged inputs; the CUDA fallback; the fps
 * resampler's send/receive contract; bounded memory. Test videos are made
 * by ffmpeg at test time. */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "ingest_testutil.h"
#include "video_internal.h"

#define MIN_PSNR 40.0

static char g_dir[256];   /* the test videos */

typedef struct {
    const char *name, *src, *opts;
} fixture;

/* Codecs x containers x sizes x rates; vfr_*: frames dropped by select
 * (and a timestamp jump), written with their own timestamps. */
static const fixture g_videos[] = {
    {"h264.mp4", "testsrc2=size=320x240:rate=25:duration=2", "-c:v libx264 -threads 1 -pix_fmt yuv420p"},
    {"mpeg4.avi", "mandelbrot=size=320x240:rate=25", "-t 2 -c:v mpeg4 -q:v 3"},
    {"vp9.webm", "life=size=320x200:rate=20:mold=10", "-t 2 -c:v libvpx-vp9 -deadline realtime -cpu-used 8 -b:v 300k"},
    {"mjpeg_odd.mkv", "testsrc2=size=320x240:rate=30", "-t 1.5 -vf scale=323:245 -c:v mjpeg -q:v 3"},
    {"h264_444_odd.mp4", "testsrc2=size=320x240:rate=24", "-t 1 -vf scale=241:321 -c:v libx264 -threads 1 -pix_fmt yuv444p"},
    {"mpeg4_odd.mp4", "mandelbrot=size=320x240:rate=24", "-t 1 -vf scale=323:245,format=yuv420p -c:v mpeg4"},
    {"vfr.mp4", "testsrc2=size=320x240:rate=30:duration=3",
     "-vf select='lt(mod(n\\,10)\\,5)+gt(n\\,60)' -fps_mode vfr -c:v libx264 -threads 1"},
    {"vfr_jump.mkv", "testsrc2=size=320x240:rate=30:duration=3",
     "-vf select='lt(mod(n\\,10)\\,5)+gt(n\\,60)',setpts='N/30/TB+gt(N\\,20)*0.37/TB' -fps_mode vfr -c:v libx264 "
     "-threads 1"},
};
#define N_VIDEOS (int)(sizeof g_videos / sizeof g_videos[0])

static vttt_video_params params(const char *rate) {
    vttt_video_params p = vttt_video_default_params();
    if (rate) ck_assert_int_eq(vttt_video_rate_parse(rate, &p.fps_num, &p.fps_den), 0);
    return p;
}

/* Decodes with the library and with `ffmpeg -i X <vf>`; asserts the same
 * number of frames and PSNR >= 40 dB for every frame. */
static void compare_with_cli(const char *file, const vttt_video_params *p, const char *pre, const char *vf,
                             const char *post) {
    char *path = it_path(g_dir, file);
    int64_t n = 0;
    int final = 0;
    uint8_t *ours = it_decode(path, p, &n, NULL, &final, NULL);
    ck_assert_msg(final == VTTT_EOF, "%s: stream ended with %d", file, final);
    size_t bytes = 0, fb = (size_t)p->size * p->size * 3;
    uint8_t *ref = it_ffmpeg_raw(&bytes, "%s -i '%s' -vf '%s' %s", pre, path, vf, post);
    ck_assert_msg(bytes % fb == 0 && (int64_t)(bytes / fb) == n, "%s (%s): %lld frames, ffmpeg gives %zu", file, vf,
                  (long long)n, bytes / fb);
    double psnr = it_min_psnr(ours, ref, n, fb);
    ck_assert_msg(psnr >= MIN_PSNR, "%s (%s): min PSNR %.2f dB", file, vf, psnr);
    free(ours);
    free(ref);
    free(path);
}

START_TEST(test_crop_matches_cli) {
    /* every source frame (ffmpeg: -fps_mode passthrough) and two rates */
    const char *rates[] = {NULL, "7", "30000/1001"};
    for (int r = 0; r < 3; r++) {
        vttt_video_params p = params(rates[r]);
        char vf[256];
        snprintf(vf, sizeof vf, "%s%s%scrop=min(iw\\,ih):min(iw\\,ih),scale=64:64", rates[r] ? "fps=" : "",
                 rates[r] ? rates[r] : "", rates[r] ? "," : "");
        compare_with_cli(g_videos[_i].name, &p, "", vf, rates[r] ? "" : "-fps_mode passthrough");
    }
}
END_TEST

START_TEST(test_fit_and_scalers_match_cli) {
    const char *files[] = {"h264.mp4", "h264_444_odd.mp4", "mjpeg_odd.mkv"};
    for (int i = 0; i < 3; i++) {
        vttt_video_params p = params("10");
        p.size = 48;
        p.fit = VTTT_VIDEO_FIT_PAD;
        compare_with_cli(files[i], &p, "",
                         "fps=10,scale=48:48:force_original_aspect_ratio=decrease,format=rgb24,"
                         "pad=48:48:(ow-iw)/2:(oh-ih)/2",
                         "");
        p.fit = VTTT_VIDEO_FIT_STRETCH;
        compare_with_cli(files[i], &p, "", "fps=10,scale=48:48", "");
    }
    const char *scalers[] = {"area", "bilinear", "lanczos", "neighbor"};
    for (int i = 0; i < 4; i++) {
        vttt_video_params p = params("10");
        ck_assert_int_eq(vttt_video_scaler_parse(scalers[i], &p.scaler), 0);
        char vf[256];
        snprintf(vf, sizeof vf, "fps=10,crop=min(iw\\,ih):min(iw\\,ih),scale=64:64:flags=%s", scalers[i]);
        compare_with_cli("mpeg4.avi", &p, "", vf, "");
    }
}
END_TEST

/* Frames of vfr.mp4: n in [0, 90) at n/30 s where n % 10 < 5 or n > 60. */
static int vfr_kept(int n) { return n % 10 < 5 || n > 60; }

START_TEST(test_vfr_counts_and_times) {
    char *path = it_path(g_dir, "vfr.mp4");
    vttt_video_params p = params(NULL);
    int64_t n = 0;
    int final = 0;
    double *t = NULL;
    uint8_t *f = it_decode(path, &p, &n, &t, &final, NULL);
    int expect = 0;
    for (int k = 0; k < 90; k++)
        if (vfr_kept(k)) {
            ck_assert_int_lt(expect, n);
            ck_assert_msg(fabs(t[expect] - k / 30.0) < 1e-3, "frame %d at %.4f s, not %.4f", expect, t[expect],
                          k / 30.0);
            expect++;
        }
    ck_assert_int_eq(n, expect);
    free(f), free(t);
    /* at a fixed rate: ticks from 0 up to the end of the last frame (3 s) */
    const char *rates[] = {"7", "30", "50", "12.5"};
    const double r[] = {7, 30, 50, 12.5};
    for (int i = 0; i < 4; i++) {
        p = params(rates[i]);
        f = it_decode(path, &p, &n, &t, &final, NULL);
        ck_assert_int_eq(final, VTTT_EOF);
        ck_assert_int_eq(n, llround(3.0 * r[i]));
        for (int64_t k = 0; k < n; k++) ck_assert(fabs(t[k] - k / r[i]) < 1e-6);
        free(f), free(t);
    }
    free(path);
}
END_TEST

START_TEST(test_time_range_matches_cli) {
    const struct {
        const char *file, *rate;
        double start, dur;
    } cases[] = {
        {"h264.mp4", "10", 0.5, 0.75}, {"h264.mp4", "10", 0.53, 0.7}, {"h264.mp4", "10", 0, 1.02},
        {"h264.mp4", NULL, 0.5, 1.0},  {"mpeg4.avi", "7", 1.3, 2.0},  {"vfr.mp4", "10", 0.9, 1.1},
        {"vfr.mp4", NULL, 0.25, 1.5},  {"vfr_jump.mkv", "15", 0.6, 1.0},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        vttt_video_params p = params(cases[i].rate);
        p.start_s = cases[i].start;
        p.duration_s = cases[i].dur;
        char pre[64], vf[256];
        snprintf(pre, sizeof pre, "-ss %g -t %g", cases[i].start, cases[i].dur);
        snprintf(vf, sizeof vf, "%s%s%scrop=min(iw\\,ih):min(iw\\,ih),scale=64:64", cases[i].rate ? "fps=" : "",
                 cases[i].rate ? cases[i].rate : "", cases[i].rate ? "," : "");
        compare_with_cli(cases[i].file, &p, pre, vf, cases[i].rate ? "" : "-fps_mode passthrough");
    }
}
END_TEST

START_TEST(test_bad_inputs_fail_cleanly) {
    char *zero = it_path(g_dir, "zero.mp4"), *text = it_path(g_dir, "text.mp4"), *none = it_path(g_dir, "none.mp4");
    FILE *f = fopen(zero, "wb");
    fclose(f);
    f = fopen(text, "w");
    for (int i = 0; i < 50; i++) fputs("this is a text file, not a video\n", f);
    fclose(f);
    char *audio = it_path(g_dir, "audio_only.m4a");
    it_make_video(g_dir, "audio_only.m4a", "sine=frequency=440:duration=1", "-c:a aac");
    const char *urls[] = {zero, text, none, g_dir, "nosuchprotocol://x", "", audio};
    vttt_video_params p = params(NULL);
    for (int i = 0; i < 7; i++) {
        tu_log c;
        vttt_logger lg = tu_log_capture(&c, VTTT_LOG_WARNING, 0);
        vttt_video *v = (vttt_video *)&c;  /* must come back NULL */
        char err[512] = "x";
        int ret = vttt_video_open(&v, urls[i], &p, &lg, err, sizeof err);
        ck_assert_msg(ret < 0 && v == NULL, "%s opened", urls[i]);
        ck_assert_msg(strlen(err) > 5 && c.count > 0, "%s: no reason given", urls[i]);
    }
    char err[512];
    vttt_video *v = NULL;
    ck_assert(vttt_video_open(&v, zero, &p, NULL, err, sizeof err) == VTTT_EFORMAT && strstr(err, "empty"));
    ck_assert(vttt_video_open(&v, none, &p, NULL, err, sizeof err) == VTTT_EIO);
    ck_assert(vttt_video_open(&v, audio, &p, NULL, err, sizeof err) == VTTT_EFORMAT && strstr(err, "no video stream"));
    p.size = 0;
    ck_assert_int_eq(vttt_video_open(&v, text, &p, NULL, err, sizeof err), VTTT_EINVAL);
    p = params(NULL);
    p.fps_num = -3, p.fps_den = 1;
    ck_assert_int_eq(vttt_video_open(&v, text, &p, NULL, err, sizeof err), VTTT_EINVAL);
    free(zero), free(text), free(none), free(audio);
}
END_TEST

/* Damaged copies end the stream with VTTT_EFORMAT after the frames before
 * the damage, and say where; lenient mode decodes through concealed
 * damage. */
START_TEST(test_damaged_streams) {
    const struct {
        const char *src, *dst;
        int flips;
        double keep;
    } cases[] = {
        {"long.mkv", "trunc.mkv", 0, 0.5},    {"long.webm", "trunc.webm", 0, 0.5},
        {"long_fs.mp4", "trunc_fs.mp4", 0, 0.5}, {"long.avi", "trunc.avi", 0, 0.5},
        {"long.mp4", "flip.mp4", 100, 0},     {"long.mkv", "flip.mkv", 100, 0},
        {"long.avi", "flip.avi", 100, 0},
    };
    vttt_video_params p = params(NULL);
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char *src = it_path(g_dir, cases[i].src), *dst = it_path(g_dir, cases[i].dst);
        it_damage(src, dst, cases[i].flips, cases[i].keep);
        vttt_video *v = NULL;
        tu_log c;
        vttt_logger lg = tu_log_capture(&c, VTTT_LOG_WARNING, 0);
        ck_assert_int_eq(vttt_video_open(&v, dst, &p, &lg, NULL, 0), 0);
        uint8_t rgb[64 * 64 * 3];
        int ret, n = 0;
        while ((ret = vttt_video_receive_frame(v, rgb, NULL)) == 0) n++;
        ck_assert_msg(ret == VTTT_EFORMAT, "%s: ended with %d after %d frames", cases[i].dst, ret, n);
        ck_assert_msg(n > 0 && n < 100, "%s: %d frames before the damage", cases[i].dst, n);
        ck_assert_msg(strstr(vttt_video_error(v), " s"), "%s: error '%s' does not say where", cases[i].dst,
                      vttt_video_error(v));
        ck_assert_int_eq(vttt_video_receive_frame(v, rgb, NULL), VTTT_EFORMAT);  /* stays over */
        vttt_video_free(&v);
        ck_assert_ptr_null(v);
        free(src), free(dst);
    }
    char *flip = it_path(g_dir, "flip.mp4");
    p.lenient = 1;
    int64_t n = 0;
    int final = 0;
    free(it_decode(flip, &p, &n, NULL, &final, NULL));
    ck_assert_int_eq(final, VTTT_EOF);
    ck_assert_int_ge(n, 90);
    free(flip);
}
END_TEST

/* "pipe:N" reads a stream from a file descriptor (a non-seekable input). */
START_TEST(test_pipe_input) {
    char *path = it_path(g_dir, "vp9.webm");
    int fds[2];
    ck_assert_int_eq(pipe(fds), 0);
    pid_t pid = fork();
    if (pid == 0) {
        close(fds[0]);
        FILE *f = fopen(path, "rb");
        char buf[4096];
        size_t k;
        while ((k = fread(buf, 1, sizeof buf, f)) > 0)
            if (write(fds[1], buf, k) != (ssize_t)k) break;
        _exit(0);
    }
    close(fds[1]);
    char url[32];
    snprintf(url, sizeof url, "pipe:%d", fds[0]);
    vttt_video_params p = params("10");
    int64_t n1 = 0, n2 = 0;
    int f1 = 0, f2 = 0;
    uint8_t *a = it_decode(url, &p, &n1, NULL, &f1, NULL);
    close(fds[0]);
    waitpid(pid, NULL, 0);
    uint8_t *b = it_decode(path, &p, &n2, NULL, &f2, NULL);
    ck_assert_int_eq(f1, VTTT_EOF);
    ck_assert_int_eq(n1, n2);
    ck_assert_int_eq(n1, 20);
    ck_assert(memcmp(a, b, (size_t)n1 * 64 * 64 * 3) == 0);
    free(a), free(b), free(path);
}
END_TEST

/* --hwaccel cuda: NVDEC where there is a GPU and an FFmpeg built for it,
 * else a warning and software decoding with the same frames. */
START_TEST(test_hwaccel_cuda_or_fallback) {
    char *path = it_path(g_dir, "h264.mp4");
    vttt_video_params p = params("10");
    p.hwaccel = VTTT_VIDEO_HWACCEL_CUDA;
    tu_log c;
    vttt_logger lg = tu_log_capture(&c, VTTT_LOG_WARNING, 0);
    vttt_video *v = NULL;
    ck_assert_int_eq(vttt_video_open(&v, path, &p, &lg, NULL, 0), 0);
    uint8_t *hw = malloc(20 * 64 * 64 * 3);
    int n = 0, ret;
    while (n < 20 && (ret = vttt_video_receive_frame(v, hw + n * 64 * 64 * 3, NULL)) == 0) n++;
    int on_gpu = vttt_video_get_info(v)->hw;
    vttt_video_free(&v);
    ck_assert_int_eq(n, 20);
    p.hwaccel = VTTT_VIDEO_HWACCEL_NONE;
    int64_t m = 0;
    int final = 0;
    uint8_t *sw = it_decode(path, &p, &m, NULL, &final, NULL);
    ck_assert_int_eq(m, 20);
    if (on_gpu) {
        /* NV12 surfaces instead of yuv420p: the chroma filter differs slightly */
        ck_assert(it_min_psnr(hw, sw, 20, 64 * 64 * 3) > 30);
    } else {
        ck_assert_msg(c.count > 0 && strstr(c.text, "hwaccel cuda"), "no fallback message: '%s'", c.text);
        ck_assert(memcmp(hw, sw, 20 * 64 * 64 * 3) == 0);
    }
    free(hw), free(sw), free(path);
}
END_TEST

static AVFrame *frame_at(int64_t pts) {
    AVFrame *f = av_frame_alloc();
    f->format = AV_PIX_FMT_GRAY8;
    f->width = f->height = 2;
    ck_assert_int_eq(av_frame_get_buffer(f, 0), 0);
    f->pts = pts;
    return f;
}

/* The resampler alone: send/receive contract, drops, repeats and the end. */
START_TEST(test_fps_send_receive) {
    video_fps fps;
    ck_assert_int_eq(video_fps_init(&fps, (AVRational){1, 1000}, 10, 1), 0);
    const int64_t in[] = {0, 40, 80, 250, 260};  /* ms */
    const AVFrame *out;
    int64_t serial, tick;
    ck_assert_int_eq(video_fps_receive_frame(&fps, &out, &serial, &tick), VTTT_EAGAIN);
    int64_t got[16], n = 0, sent = 0;
    while (sent < 5) {
        AVFrame *f = frame_at(in[sent]);
        int ret = video_fps_send_frame(&fps, f);
        av_frame_free(&f);
        if (ret == VTTT_EAGAIN) {
            ck_assert_int_eq(video_fps_receive_frame(&fps, &out, &serial, &tick), 0);
            ck_assert_int_eq(tick, n);
            got[n++] = serial;
            continue;
        }
        ck_assert_int_eq(ret, 0);
        sent++;
        while (video_fps_receive_frame(&fps, &out, &serial, &tick) == 0) {
            ck_assert_int_eq(tick, n);
            got[n++] = serial;
        }
    }
    video_fps_send_eof(&fps, 300);
    AVFrame *late = frame_at(400);
    ck_assert_int_eq(video_fps_send_frame(&fps, late), VTTT_EOF);
    av_frame_free(&late);
    while (video_fps_receive_frame(&fps, &out, &serial, &tick) == 0) got[n++] = serial;
    ck_assert_int_eq(video_fps_receive_frame(&fps, &out, &serial, &tick), VTTT_EOF);
    /* Rounded to 1/10 s the inputs sit at ticks 0, 0, 1, 3, 3 and the end at
     * 3: tick 0 takes frame 1 (the newest at or before it), ticks 1 and 2
     * frame 2 (repeated); frames 3 and 4 start where the input ends. */
    const int64_t expect[] = {1, 2, 2};
    ck_assert_int_eq(n, 3);
    for (int i = 0; i < 3; i++) ck_assert_int_eq(got[i], expect[i]);
    video_fps_free(&fps);
    ck_assert_int_eq(video_fps_init(&fps, (AVRational){1, 1000}, 0, 1), VTTT_EINVAL);
}
END_TEST

/* Peak memory of decoding a video in a fresh process, in KiB. */
static long peak_kib(const char *path) {
    int fds[2];
    if (pipe(fds) != 0) return -1;
    pid_t pid = fork();
    if (pid == 0) {
        vttt_video_params p = params("25");
        int64_t n = 0;
        int final;
        vttt_video *v = NULL;
        uint8_t rgb[64 * 64 * 3];
        if (vttt_video_open(&v, path, &p, NULL, NULL, 0) == 0)
            while ((final = vttt_video_receive_frame(v, rgb, NULL)) == 0) n++;
        vttt_video_free(&v);
        FILE *s = fopen("/proc/self/status", "r");
        char line[256];
        long kb = -1;
        while (s && fgets(line, sizeof line, s))
            if (!strncmp(line, "VmHWM:", 6)) kb = atol(line + 6);
        if (s) fclose(s);
        if (write(fds[1], &kb, sizeof kb) != sizeof kb) _exit(1);
        _exit(0);
    }
    long kb = -1;
    close(fds[1]);
    if (read(fds[0], &kb, sizeof kb) != sizeof kb) kb = -1;
    close(fds[0]);
    waitpid(pid, NULL, 0);
    return kb;
}

/* Memory does not grow with the video's length: 2 s and 24 s of the same
 * video peak within a few MiB of each other. */
START_TEST(test_memory_bounded) {
#ifdef __SANITIZE_ADDRESS__
    return;  /* AddressSanitizer's quarantine holds freed memory: peaks mean nothing */
#endif
    char *shortv = it_path(g_dir, "mem_short.mp4"), *longv = it_path(g_dir, "mem_long.mp4");
    it_make_video(g_dir, "mem_short.mp4", "testsrc2=size=320x240:rate=25:duration=2",
                  "-c:v libx264 -preset ultrafast -threads 1");
    it_make_video(g_dir, "mem_long.mp4", "testsrc2=size=320x240:rate=25:duration=24",
                  "-c:v libx264 -preset ultrafast -threads 1");
    long a = peak_kib(shortv), b = peak_kib(longv);
    ck_assert_msg(a > 0 && b > 0, "no VmHWM");
    ck_assert_msg(b - a < 8 * 1024, "peak memory grows with length: %ld KiB for 2 s, %ld KiB for 24 s", a, b);
    free(shortv), free(longv);
}
END_TEST

static void make_fixtures(void) {
    tu_tmpdir(g_dir, sizeof g_dir, "ingest_video");
    for (int i = 0; i < N_VIDEOS; i++) it_make_video(g_dir, g_videos[i].name, g_videos[i].src, g_videos[i].opts);
    const char *src = "testsrc2=size=320x240:rate=25:duration=4";
    it_make_video(g_dir, "long.mp4", src, "-c:v libx264 -threads 1 -g 25");
    it_make_video(g_dir, "long_fs.mp4", src, "-c:v libx264 -threads 1 -g 25 -movflags +faststart");
    it_make_video(g_dir, "long.mkv", src, "-c:v libx264 -threads 1 -g 25");
    it_make_video(g_dir, "long.avi", "mandelbrot=size=320x240:rate=25", "-t 4 -c:v mpeg4");
    it_make_video(g_dir, "long.webm", "life=size=320x240:rate=25", "-t 4 -c:v libvpx-vp9 -deadline realtime -cpu-used 8");
}

int main(void) {
    av_log_set_level(AV_LOG_QUIET);
    make_fixtures();
    TCase *tc = tcase_create("core");
    tcase_set_timeout(tc, 120);
    tcase_add_loop_test(tc, test_crop_matches_cli, 0, N_VIDEOS);
    tcase_add_test(tc, test_fit_and_scalers_match_cli);
    tcase_add_test(tc, test_vfr_counts_and_times);
    tcase_add_test(tc, test_time_range_matches_cli);
    tcase_add_test(tc, test_bad_inputs_fail_cleanly);
    tcase_add_test(tc, test_damaged_streams);
    tcase_add_test(tc, test_pipe_input);
    tcase_add_test(tc, test_hwaccel_cuda_or_fallback);
    tcase_add_test(tc, test_fps_send_receive);
    tcase_add_test(tc, test_memory_bounded);
    int status = tu_run("ingest_video", tc, CK_FORK_GETENV);
    tu_rm_rf(g_dir);
    return status;
}
