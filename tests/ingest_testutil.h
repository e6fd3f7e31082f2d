/*
 * Helpers shared by the ingest tests (header-only: every tests/test_*.c is
 * its own program). Videos are made at test time by the ffmpeg command line
 * from its lavfi sources, under a temporary directory; reference frames come
 * from the same command line.
 */
#ifndef VTTT_INGEST_TESTUTIL_H
#define VTTT_INGEST_TESTUTIL_H

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <libavutil/log.h>

#include "ingest.h"
#include "testutil.h"

/* Runs a shell command built from fmt; returns its exit status. */
static inline int it_sh(const char *fmt, ...) {
    char cmd[8192];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(cmd, sizeof cmd, fmt, ap);
    va_end(ap);
    int st = system(cmd);
    return st == -1 ? -1 : (st >> 8) & 0xff;
}

/* Makes dir/name with ffmpeg from a lavfi source and output options; exits
 * the test program if ffmpeg fails (it is a build dependency). */
static inline void it_make_video(const char *dir, const char *name, const char *src, const char *opts) {
    if (it_sh("ffmpeg -nostdin -hide_banner -loglevel error -y -f lavfi -i '%s' %s '%s/%s'", src, opts, dir, name)) {
        fprintf(stderr, "ffmpeg could not make the test video %s (is the ffmpeg command line installed?)\n", name);
        exit(1);
    }
}

static inline char *it_path(const char *dir, const char *name) {
    size_t n = strlen(dir) + strlen(name) + 2;
    char *p = malloc(n);
    snprintf(p, n, "%s/%s", dir, name);
    return p;
}

static inline int64_t it_file_size(const char *path) {
    struct stat st;
    return stat(path, &st) == 0 ? (int64_t)st.st_size : -1;
}

/* Runs `ffmpeg <args> -f rawvideo -pix_fmt rgb24 -` and returns its output
 * (malloc'd) and size in bytes. */
static inline uint8_t *it_ffmpeg_raw(size_t *n, const char *fmt, ...) {
    char args[4096], cmd[8192];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(args, sizeof args, fmt, ap);
    va_end(ap);
    snprintf(cmd, sizeof cmd, "ffmpeg -nostdin -hide_banner -loglevel error %s -f rawvideo -pix_fmt rgb24 -", args);
    FILE *f = popen(cmd, "r");
    size_t cap = 1 << 20, len = 0;
    uint8_t *buf = malloc(cap);
    size_t k;
    while (f && (k = fread(buf + len, 1, cap - len, f)) > 0) {
        len += k;
        if (len == cap) buf = realloc(buf, cap *= 2);
    }
    if (f) pclose(f);
    *n = len;
    return buf;
}

/* Decodes url with the library; returns the frames (malloc'd, (n, S, S, 3)),
 * their times in *times (malloc'd, may be NULL), the count in *n and the
 * final code of the stream in *final (VTTT_EOF when clean). */
static inline uint8_t *it_decode(const char *url, const vttt_video_params *p, int64_t *n, double **times, int *final,
                          const vttt_logger *lg) {
    vttt_video *v = NULL;
    *n = 0;
    if (times) *times = NULL;
    *final = vttt_video_open(&v, url, p, lg, NULL, 0);
    if (*final < 0) return NULL;
    size_t fb = (size_t)p->size * p->size * 3, cap = 64;
    uint8_t *buf = malloc(cap * fb);
    double *ts = malloc(cap * sizeof *ts);
    double t;
    while ((*final = vttt_video_receive_frame(v, buf + *n * fb, &t)) == 0) {
        ts[*n] = t;
        if ((size_t)++*n == cap) {
            cap *= 2;
            buf = realloc(buf, cap * fb);
            ts = realloc(ts, cap * sizeof *ts);
        }
    }
    vttt_video_free(&v);
    if (times) *times = ts;
    else free(ts);
    return buf;
}

/* The lowest per-frame PSNR (dB) between two runs of n frames of fb bytes;
 * identical frames count as 99 dB. */
static inline double it_min_psnr(const uint8_t *a, const uint8_t *b, int64_t n, size_t fb) {
    double worst = 99;
    for (int64_t f = 0; f < n; f++) {
        double se = 0;
        for (size_t i = 0; i < fb; i++) {
            double d = (double)a[f * fb + i] - b[f * fb + i];
            se += d * d;
        }
        double psnr = se == 0 ? 99 : 10 * log10(255.0 * 255.0 / (se / fb));
        if (psnr < worst) worst = psnr;
    }
    return worst;
}

/* Writes a copy of src with bytes flipped (XOR 0xff) at `count` positions
 * spread over its middle half (a fixed pseudo-random pattern), or cut to
 * `keep` bytes when count is 0. */
static inline void it_damage(const char *src, const char *dst, int count, double keep) {
    FILE *f = fopen(src, "rb");
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    uint8_t *d = malloc((size_t)n);
    if (fread(d, 1, (size_t)n, f) != (size_t)n) n = 0;
    fclose(f);
    uint64_t s = 12345;
    for (int i = 0; i < count; i++) {
        s = s * 6364136223846793005ull + 1442695040888963407ull;
        long p = n / 4 + (long)((s >> 33) % (uint64_t)(n / 2));
        d[p] ^= 0xff;
    }
    FILE *o = fopen(dst, "wb");
    fwrite(d, 1, count ? (size_t)n : (size_t)(n * keep), o);
    fclose(o);
    free(d);
}

#endif
