/* Image utilities (encoder/image_metrics.c, encoder/png.c): PSNR against
 * hand-computed values, SSIM against an independent numpy implementation
 * (tools/image_oracle.py -> tests/data/image_oracle.txt), PNG round trips,
 * every colour type and bit depth libpng writes decoding to the right RGB,
 * and malformed input (empty, random, truncated at every length, bad CRC,
 * mutated with valid CRCs, too many pixels) rejected without a crash. */
#define _POSIX_C_SOURCE 200809L

#include <check.h>
#include <math.h>
#include <png.h>
#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "encoder.h"
#include "testutil.h"

#define SSIM_ORACLE_TOL 1e-4   /* the task's tolerance against the numpy SSIM */
#define PSNR_ORACLE_TOL 1e-9   /* both compute the same double sum */

/* ---- test images: the same integer recipe as tools/image_oracle.py ------- */

/* a: a smooth pattern; b: a plus uniform noise in [-amp, amp] from a 64-bit
 * LCG, clamped. Both (h, w, 3), malloc'd. */
static void make_pair(int w, int h, int amp, uint64_t seed, uint8_t **pa, uint8_t **pb) {
    uint8_t *a = malloc((size_t)w * h * 3), *b = malloc((size_t)w * h * 3);
    ck_assert(a && b);
    uint64_t x = seed;
    for (int r = 0; r < h; r++)
        for (int c = 0; c < w; c++)
            for (int ch = 0; ch < 3; ch++) {
                int v = (r * 7 + c * 3 + ch * 50 + ((r * c) >> 3)) & 255;
                x = x * 6364136223846793005ULL + 1442695040888963407ULL;
                int n = (int)((x >> 33) % (uint64_t)(2 * amp + 1)) - amp;
                int bv = v + n;
                size_t i = ((size_t)r * w + c) * 3 + ch;
                a[i] = (uint8_t)v;
                b[i] = (uint8_t)(bv < 0 ? 0 : bv > 255 ? 255 : bv);
            }
    *pa = a;
    *pb = b;
}

static uint8_t *random_image(int w, int h, uint64_t seed) {
    tu_rng r;
    tu_seed(&r, seed);
    uint8_t *p = malloc((size_t)w * h * 3);
    ck_assert_ptr_nonnull(p);
    for (size_t i = 0; i < (size_t)w * h * 3; i++) p[i] = (uint8_t)(tu_uniform(&r) * 256.0f);
    return p;
}

/* ---- PSNR / SSIM ---------------------------------------------------------- */

START_TEST(test_psnr_known) {
    uint8_t a[4 * 4 * 3], b[4 * 4 * 3];
    memset(a, 100, sizeof a);
    memset(b, 110, sizeof b);
    /* MSE 100: 10 log10(255^2 / 100) = 10 log10(650.25) */
    ck_assert_double_eq_tol(vttt_image_psnr(a, b, 4, 4), 28.130803608679106, 1e-12);
    /* 1x1: one channel off by 255, MSE 255^2/3: PSNR = 10 log10(3) */
    uint8_t c[3] = {0, 7, 9}, d[3] = {255, 7, 9};
    ck_assert_double_eq_tol(vttt_image_psnr(c, d, 1, 1), 4.771212547196624, 1e-12);
    ck_assert_double_eq(vttt_image_psnr(a, a, 4, 4), 100.0);
    /* symmetric */
    ck_assert_double_eq(vttt_image_psnr(c, d, 1, 1), vttt_image_psnr(d, c, 1, 1));
    ck_assert(isnan(vttt_image_psnr(NULL, b, 4, 4)));
    ck_assert(isnan(vttt_image_psnr(a, b, 0, 4)));
    ck_assert(isnan(vttt_image_psnr(a, b, 4, -1)));
}
END_TEST

START_TEST(test_ssim_identical_and_monotone) {
    const int amps[] = {0, 2, 8, 40, 128};
    double prev = 2.0;
    for (int i = 0; i < 5; i++) {
        uint8_t *a, *b;
        make_pair(64, 64, amps[i], 77, &a, &b);
        double s = vttt_image_ssim(a, b, 64, 64);
        if (amps[i] == 0) ck_assert_double_eq_tol(s, 1.0, 1e-12);
        ck_assert_msg(s < prev, "SSIM %g at noise %d is not below %g", s, amps[i], prev);
        ck_assert(s > -1.0 && s <= 1.0);
        ck_assert_double_eq_tol(vttt_image_ssim(b, a, 64, 64), s, 1e-12);   /* symmetric */
        ck_assert_double_eq_tol(vttt_image_ssim(a, a, 64, 64), 1.0, 1e-12);
        prev = s;
        free(a);
        free(b);
    }
    uint8_t px[3] = {1, 2, 3};
    ck_assert(isnan(vttt_image_ssim(px, NULL, 1, 1)));
    ck_assert(isnan(vttt_image_ssim(px, px, 0, 1)));
}
END_TEST

START_TEST(test_ssim_psnr_oracle) {
    size_t n = 0;
    char *text = tu_read_file(VTTT_TEST_DATA "/image_oracle.txt", &n);
    int cases = 0;
    for (char *line = strtok(text, "\n"); line; line = strtok(NULL, "\n")) {
        if (line[0] == '#') continue;
        int w, h, amp;
        double want_ssim, want_psnr;
        ck_assert_int_eq(sscanf(line, "%d %d %d %lf %lf", &w, &h, &amp, &want_ssim, &want_psnr), 5);
        uint8_t *a, *b;
        make_pair(w, h, amp, (uint64_t)(w * 1000 + h * 10 + amp), &a, &b);
        double s = vttt_image_ssim(a, b, w, h), p = vttt_image_psnr(a, b, w, h);
        ck_assert_msg(fabs(s - want_ssim) < SSIM_ORACLE_TOL, "%dx%d noise %d: SSIM %.9f, numpy %.9f", w, h, amp, s,
                      want_ssim);
        ck_assert_msg(fabs(p - want_psnr) < PSNR_ORACLE_TOL, "%dx%d noise %d: PSNR %.12f, numpy %.12f", w, h, amp,
                      p, want_psnr);
        free(a);
        free(b);
        cases++;
    }
    ck_assert_int_ge(cases, 8);
    free(text);
}
END_TEST

/* ---- PNG round trips ------------------------------------------------------ */

START_TEST(test_png_round_trip) {
    const int sizes[][2] = {{1, 1}, {37, 23}, {64, 64}, {3, 200}};
    for (int k = 0; k < 4; k++) {
        int w = sizes[k][0], h = sizes[k][1];
        uint8_t *img = random_image(w, h, 100 + k);
        uint8_t *png = NULL, *back = NULL;
        size_t n = 0;
        ck_assert_int_eq(vttt_png_encode(img, w, h, &png, &n, NULL), 0);
        ck_assert(n > 8 && png_sig_cmp(png, 0, 8) == 0);
        int w2 = 0, h2 = 0;
        ck_assert_int_eq(vttt_png_decode(png, n, &back, &w2, &h2, (int64_t)w * h, NULL), 0);
        ck_assert_int_eq(w2, w);
        ck_assert_int_eq(h2, h);
        ck_assert_mem_eq(back, img, (size_t)w * h * 3);
        free(png);
        free(back);
        free(img);
    }
}
END_TEST

START_TEST(test_png_write_file) {
    char dir[128], path[256], bad[300];
    tu_tmpdir(dir, sizeof dir, "png");
    snprintf(path, sizeof path, "%s/frame.png", dir);
    uint8_t *img = random_image(20, 10, 5);
    ck_assert_int_eq(vttt_png_write(path, img, 20, 10, NULL), 0);
    uint8_t *img2 = random_image(20, 10, 6);
    ck_assert_int_eq(vttt_png_write(path, img2, 20, 10, NULL), 0);   /* replaces */
    ck_assert_int_eq(tu_count_entries(dir), 1);                      /* no temporary left */
    size_t n = 0;
    uint8_t *file = tu_read_file(path, &n), *back = NULL;
    int w, h;
    ck_assert_int_eq(vttt_png_decode(file, n, &back, &w, &h, 1 << 20, NULL), 0);
    ck_assert_mem_eq(back, img2, 20 * 10 * 3);
    /* a missing directory: VTTT_EIO naming the path, nothing created */
    snprintf(bad, sizeof bad, "%s/no/such/dir/x.png", dir);
    tu_log cap;
    vttt_logger lg = tu_log_capture(&cap, VTTT_LOG_ERROR, 0);
    ck_assert_int_eq(vttt_png_write(bad, img, 20, 10, &lg), VTTT_EIO);
    ck_assert_msg(strstr(cap.text, bad) != NULL, "message does not name the path: %s", cap.text);
    ck_assert_int_eq(vttt_png_write(NULL, img, 20, 10, &lg), VTTT_EINVAL);
    ck_assert_int_eq(tu_count_entries(dir), 1);
    free(file);
    free(back);
    free(img);
    free(img2);
    tu_rm_rf(dir);
}
END_TEST

START_TEST(test_png_encode_bad_args) {
    uint8_t px[3] = {0}, *out = (uint8_t *)px;
    size_t n = 7;
    vttt_logger q = tu_log_quiet();
    ck_assert_int_eq(vttt_png_encode(NULL, 1, 1, &out, &n, &q), VTTT_EINVAL);
    ck_assert_ptr_null(out);
    ck_assert_int_eq(n, 0);
    ck_assert_int_eq(vttt_png_encode(px, 0, 1, &out, &n, &q), VTTT_EINVAL);
    ck_assert_int_eq(vttt_png_encode(px, 1, -3, &out, &n, &q), VTTT_EINVAL);
    ck_assert_int_eq(vttt_png_encode(px, 1, 1, NULL, &n, &q), VTTT_EINVAL);
}
END_TEST

/* ---- PNGs of every kind, written with libpng directly --------------------- */

typedef struct {
    uint8_t *buf;
    size_t len, cap;
} membuf;

static void mem_write(png_structp png, png_bytep p, png_size_t n) {
    membuf *m = png_get_io_ptr(png);
    if (m->len + n > m->cap) {
        m->cap = (m->len + n) * 2;
        m->buf = realloc(m->buf, m->cap);
        ck_assert_ptr_nonnull(m->buf);
    }
    memcpy(m->buf + m->len, p, n);
    m->len += n;
}
static void mem_flush(png_structp png) { (void)png; }

/* One PNG of the given colour type, bit depth and interlacing whose raw
 * rows are `rows` (each rowbytes long, samples big-endian as PNG stores
 * them). Palette images get `pal` (npal entries) and, with ntrns > 0, a
 * tRNS chunk. Returns the file in memory. */
static membuf write_png(int w, int h, int ct, int depth, int interlace, uint8_t **rows, const png_color *pal,
                        int npal, int ntrns) {
    membuf m = {0};
    png_structp png = png_create_write_struct(PNG_LIBPNG_VER_STRING, NULL, NULL, NULL);
    png_infop info = png_create_info_struct(png);
    ck_assert(png && info);
    ck_assert_int_eq(setjmp(png_jmpbuf(png)), 0);
    png_set_write_fn(png, &m, mem_write, mem_flush);
    png_set_IHDR(png, info, w, h, depth, ct, interlace, PNG_COMPRESSION_TYPE_DEFAULT, PNG_FILTER_TYPE_DEFAULT);
    if (pal) png_set_PLTE(png, info, pal, npal);
    if (ntrns > 0) {
        png_byte trns[256];
        for (int i = 0; i < ntrns; i++) trns[i] = (png_byte)(i * 37);
        png_set_tRNS(png, info, trns, ntrns, NULL);
    }
    png_write_info(png, info);
    png_write_image(png, rows);
    png_write_end(png, NULL);
    png_destroy_write_struct(&png, &info);
    return m;
}

static void expect_decode(const membuf *m, const uint8_t *want, int w, int h, const char *what) {
    uint8_t *rgb = NULL;
    int w2 = 0, h2 = 0;
    tu_log cap;
    vttt_logger lg = tu_log_capture(&cap, VTTT_LOG_ERROR, 0);
    int err = vttt_png_decode(m->buf, m->len, &rgb, &w2, &h2, (int64_t)w * h, &lg);
    ck_assert_msg(err == 0, "%s: %s (%s)", what, vttt_strerror(err), cap.text);
    ck_assert_int_eq(w2, w);
    ck_assert_int_eq(h2, h);
    for (size_t i = 0; i < (size_t)w * h * 3; i++)
        ck_assert_msg(rgb[i] == want[i], "%s: byte %zu is %d, want %d", what, i, rgb[i], want[i]);
    free(rgb);
}

/* write_png(w, h, ...) decoded gives want (h, w, 3). */
static void expect_roundtrip(const char *what, int w, int h, int ct, int depth, int interlace, uint8_t **rows,
                             const png_color *pal, int npal, int ntrns, const uint8_t *want) {
    membuf m = write_png(w, h, ct, depth, interlace, rows, pal, npal, ntrns);
    expect_decode(&m, want, w, h, what);
    free(m.buf);
}

/* Gray 8 and 1 bit, gray+alpha, RGBA, 16-bit RGB and gray, palette (4-bit,
 * with tRNS) and an interlaced RGB image. */
START_TEST(test_png_color_types) {
    enum { W = 13, H = 7 };
    uint8_t raw[H][W * 8], *rows[H], want[H * W * 3];
    for (int r = 0; r < H; r++) rows[r] = raw[r];
    const char *what;
#define PIX(r, c) ((uint8_t)((r) * 31 + (c) * 17))
#define SET_WANT(expr_r, expr_g, expr_b)                                                          \
    for (int r = 0; r < H; r++)                                                                   \
        for (int c = 0; c < W; c++) {                                                             \
            uint8_t *o = want + 3 * (r * W + c);                                                  \
            o[0] = (uint8_t)(expr_r), o[1] = (uint8_t)(expr_g), o[2] = (uint8_t)(expr_b);         \
        }

    what = "gray 8-bit";
    for (int r = 0; r < H; r++)
        for (int c = 0; c < W; c++) raw[r][c] = PIX(r, c);
    SET_WANT(PIX(r, c), PIX(r, c), PIX(r, c));
    expect_roundtrip(what, W, H, PNG_COLOR_TYPE_GRAY, 8, PNG_INTERLACE_NONE, rows, NULL, 0, 0, want);

    what = "gray 1-bit";
    memset(raw, 0, sizeof raw);
    for (int r = 0; r < H; r++)
        for (int c = 0; c < W; c++)
            if ((r + c) % 3 == 0) raw[r][c / 8] |= (uint8_t)(0x80 >> (c % 8));
    SET_WANT((r + c) % 3 == 0 ? 255 : 0, (r + c) % 3 == 0 ? 255 : 0, (r + c) % 3 == 0 ? 255 : 0);
    expect_roundtrip(what, W, H, PNG_COLOR_TYPE_GRAY, 1, PNG_INTERLACE_NONE, rows, NULL, 0, 0, want);

    what = "gray+alpha 8-bit";
    for (int r = 0; r < H; r++)
        for (int c = 0; c < W; c++) raw[r][2 * c] = PIX(r, c), raw[r][2 * c + 1] = (uint8_t)(c * 19);
    SET_WANT(PIX(r, c), PIX(r, c), PIX(r, c));
    expect_roundtrip(what, W, H, PNG_COLOR_TYPE_GRAY_ALPHA, 8, PNG_INTERLACE_NONE, rows, NULL, 0, 0, want);

    what = "RGBA 8-bit";
    for (int r = 0; r < H; r++)
        for (int c = 0; c < W; c++) {
            uint8_t *p = &raw[r][4 * c];
            p[0] = PIX(r, c), p[1] = PIX(c, r), p[2] = (uint8_t)(r * c), p[3] = (uint8_t)(r * 40);
        }
    SET_WANT(PIX(r, c), PIX(c, r), r * c);
    expect_roundtrip(what, W, H, PNG_COLOR_TYPE_RGBA, 8, PNG_INTERLACE_NONE, rows, NULL, 0, 0, want);

    /* 16-bit samples v*257 + e (e < 128) round to v */
    what = "RGB 16-bit";
    for (int r = 0; r < H; r++)
        for (int c = 0; c < W; c++)
            for (int ch = 0; ch < 3; ch++) {
                int v = (PIX(r, c) + ch * 60) & 255, s = v * 257 + (v < 255 ? (r * 13 + c) % 120 : 0);
                raw[r][6 * c + 2 * ch] = (uint8_t)(s >> 8), raw[r][6 * c + 2 * ch + 1] = (uint8_t)(s & 255);
            }
    SET_WANT(PIX(r, c) & 255, (PIX(r, c) + 60) & 255, (PIX(r, c) + 120) & 255);
    expect_roundtrip(what, W, H, PNG_COLOR_TYPE_RGB, 16, PNG_INTERLACE_NONE, rows, NULL, 0, 0, want);

    what = "gray 16-bit";
    for (int r = 0; r < H; r++)
        for (int c = 0; c < W; c++) {
            int s = PIX(r, c) * 257;
            raw[r][2 * c] = (uint8_t)(s >> 8), raw[r][2 * c + 1] = (uint8_t)(s & 255);
        }
    SET_WANT(PIX(r, c), PIX(r, c), PIX(r, c));
    expect_roundtrip(what, W, H, PNG_COLOR_TYPE_GRAY, 16, PNG_INTERLACE_NONE, rows, NULL, 0, 0, want);

    what = "palette 4-bit with tRNS";
    png_color pal[16];
    for (int i = 0; i < 16; i++) pal[i] = (png_color){(png_byte)(i * 16), (png_byte)(255 - i * 9), (png_byte)(i * i)};
    memset(raw, 0, sizeof raw);
    for (int r = 0; r < H; r++)
        for (int c = 0; c < W; c++) raw[r][c / 2] |= (uint8_t)(((r * 5 + c) % 16) << (c % 2 ? 0 : 4));
    SET_WANT(pal[(r * 5 + c) % 16].red, pal[(r * 5 + c) % 16].green, pal[(r * 5 + c) % 16].blue);
    expect_roundtrip(what, W, H, PNG_COLOR_TYPE_PALETTE, 4, PNG_INTERLACE_NONE, rows, pal, 16, 5, want);

    what = "RGB 8-bit Adam7";
    for (int r = 0; r < H; r++)
        for (int c = 0; c < 3 * W; c++) raw[r][c] = (uint8_t)(r * 91 + c * 7);
    SET_WANT(r * 91 + 3 * c * 7, r * 91 + (3 * c + 1) * 7, r * 91 + (3 * c + 2) * 7);
    expect_roundtrip(what, W, H, PNG_COLOR_TYPE_RGB, 8, PNG_INTERLACE_ADAM7, rows, NULL, 0, 0, want);
#undef PIX
#undef SET_WANT
}
END_TEST

/* ---- malformed input ------------------------------------------------------ */

/* Decoding must give one of the allowed codes; a success must be a
 * complete image of the claimed size (ASan checks the bytes exist). */
static int decode_code(const uint8_t *p, size_t n, int64_t max_pixels) {
    uint8_t *rgb = (uint8_t *)&n;   /* must be reset */
    int w = -1, h = -1;
    vttt_logger q = tu_log_quiet();
    int err = vttt_png_decode(p, n, &rgb, &w, &h, max_pixels, &q);
    if (err) {
        ck_assert_ptr_null(rgb);
        ck_assert_int_eq(w, 0);
        ck_assert_int_eq(h, 0);
    } else {
        ck_assert(w > 0 && h > 0 && (int64_t)w * h <= max_pixels);
        unsigned sum = 0;
        for (size_t i = 0; i < (size_t)w * h * 3; i++) sum += rgb[i];
        (void)sum;
        free(rgb);
    }
    return err;
}

/* CRC-32 of PNG chunks (ISO 3309, as zlib's crc32). */
static uint32_t crc32_png(const uint8_t *p, size_t n) {
    uint32_t c = 0xffffffffu;
    for (size_t i = 0; i < n; i++) {
        c ^= p[i];
        for (int k = 0; k < 8; k++) c = (c >> 1) ^ (0xedb88320u & (0u - (c & 1u)));
    }
    return c ^ 0xffffffffu;
}

static uint32_t be32(const uint8_t *p) { return (uint32_t)p[0] << 24 | p[1] << 16 | p[2] << 8 | p[3]; }
static void put_be32(uint8_t *p, uint32_t v) { p[0] = v >> 24, p[1] = v >> 16, p[2] = v >> 8, p[3] = (uint8_t)v; }

/* Offset of the first chunk called type (its length field), or 0. */
static size_t find_chunk(const uint8_t *p, size_t n, const char *type) {
    for (size_t o = 8; o + 12 <= n; o += 12 + be32(p + o))
        if (memcmp(p + o + 4, type, 4) == 0) return o;
    return 0;
}

static void fix_crc(uint8_t *p, size_t chunk) {
    uint32_t len = be32(p + chunk);
    put_be32(p + chunk + 8 + len, crc32_png(p + chunk + 4, 4 + len));
}

START_TEST(test_png_rejects_garbage) {
    tu_log cap;
    vttt_logger lg = tu_log_capture(&cap, VTTT_LOG_ERROR, 0);
    uint8_t *rgb = NULL;
    int w, h;
    static const uint8_t empty[1] = {0};
    ck_assert_int_eq(vttt_png_decode(empty, 0, &rgb, &w, &h, 100, &lg), VTTT_EFORMAT);
    ck_assert(strstr(cap.text, "not a PNG") != NULL);
    ck_assert_int_eq(vttt_png_decode(NULL, 10, &rgb, &w, &h, 100, &lg), VTTT_EFORMAT);
    ck_assert_int_eq(vttt_png_decode(empty, 1, NULL, &w, &h, 100, &lg), VTTT_EINVAL);
    ck_assert_int_eq(vttt_png_decode(empty, 1, &rgb, &w, &h, 0, &lg), VTTT_EINVAL);
    /* random bytes, with and without a PNG signature in front */
    tu_rng r;
    tu_seed(&r, 9);
    uint8_t junk[600];
    for (int t = 0; t < 200; t++) {
        size_t n = 1 + (size_t)(tu_uniform(&r) * (sizeof junk - 1));
        for (size_t i = 0; i < n; i++) junk[i] = (uint8_t)(tu_uniform(&r) * 256.0f);
        if (t % 2) memcpy(junk, "\x89PNG\r\n\x1a\n", n < 8 ? n : 8);
        ck_assert_int_eq(decode_code(junk, n, 1 << 20), VTTT_EFORMAT);
    }
}
END_TEST

START_TEST(test_png_truncated_and_bad_crc) {
    uint8_t *img = random_image(19, 11, 3), *png = NULL;
    size_t n = 0;
    ck_assert_int_eq(vttt_png_encode(img, 19, 11, &png, &n, NULL), 0);
    for (size_t k = 0; k < n; k++)
        ck_assert_msg(decode_code(png, k, 1 << 20) == VTTT_EFORMAT, "prefix of %zu of %zu bytes accepted", k, n);
    ck_assert_int_eq(decode_code(png, n, 1 << 20), 0);
    /* a flipped bit in each critical chunk's data or CRC */
    const char *chunks[] = {"IHDR", "IDAT", "IEND"};
    for (int c = 0; c < 3; c++) {
        size_t o = find_chunk(png, n, chunks[c]);
        ck_assert_msg(o > 0, "no %s chunk", chunks[c]);
        size_t spots[2] = {o + 8, o + 8 + be32(png + o)};   /* first data byte (or CRC), CRC */
        for (int s = 0; s < 2; s++) {
            uint8_t *bad = malloc(n);
            memcpy(bad, png, n);
            bad[spots[s]] ^= 0x10;
            tu_log cap;
            vttt_logger lg = tu_log_capture(&cap, VTTT_LOG_ERROR, 0);
            uint8_t *rgb = NULL;
            int w, h;
            ck_assert_msg(vttt_png_decode(bad, n, &rgb, &w, &h, 1 << 20, &lg) == VTTT_EFORMAT,
                          "bad CRC in %s accepted", chunks[c]);
            ck_assert_msg(strstr(cap.text, "malformed PNG") != NULL, "log: %s", cap.text);
            free(bad);
        }
    }
    free(png);
    free(img);
}
END_TEST

/* Byte mutations inside IDAT and IHDR with the CRC recomputed, so that
 * zlib and the header checks (not the CRC) must catch them. */
START_TEST(test_png_mutations_with_valid_crc) {
    uint8_t *img = random_image(24, 16, 4), *png = NULL;
    size_t n = 0;
    ck_assert_int_eq(vttt_png_encode(img, 24, 16, &png, &n, NULL), 0);
    size_t idat = find_chunk(png, n, "IDAT"), ihdr = find_chunk(png, n, "IHDR");
    ck_assert(idat > 0 && ihdr > 0);
    tu_rng r;
    tu_seed(&r, 21);
    uint8_t *bad = malloc(n);
    int ok = 0, rejected = 0;
    for (int t = 0; t < 3000; t++) {
        memcpy(bad, png, n);
        size_t chunk = t % 4 == 0 ? ihdr : idat;
        uint32_t len = be32(bad + chunk);
        int flips = 1 + t % 3;
        for (int f = 0; f < flips; f++) {
            size_t at = chunk + 8 + (size_t)(tu_uniform(&r) * len);
            bad[at] = (uint8_t)(tu_uniform(&r) * 256.0f);
        }
        fix_crc(bad, chunk);
        int err = decode_code(bad, n, 1 << 20);
        ck_assert_msg(err == 0 || err == VTTT_EFORMAT || err == VTTT_EINVAL, "mutation %d: %s", t,
                      vttt_strerror(err));
        if (err) rejected++;
        else ok++;
    }
    ck_assert_int_gt(rejected, 100);   /* the mutations did reach the checks */
    free(bad);
    free(png);
    free(img);
}
END_TEST

/* max_pixels is checked from the header, before the pixels are allocated:
 * a 60000x60000 image with a tiny IDAT gives VTTT_EINVAL, not ENOMEM. */
START_TEST(test_png_max_pixels) {
    uint8_t *img = random_image(10, 6, 8), *png = NULL, *rgb = NULL;
    size_t n = 0;
    int w, h;
    ck_assert_int_eq(vttt_png_encode(img, 10, 6, &png, &n, NULL), 0);
    ck_assert_int_eq(decode_code(png, n, 60), 0);
    tu_log cap;
    vttt_logger lg = tu_log_capture(&cap, VTTT_LOG_ERROR, 0);
    ck_assert_int_eq(vttt_png_decode(png, n, &rgb, &w, &h, 59, &lg), VTTT_EINVAL);
    ck_assert_ptr_null(rgb);
    ck_assert_msg(strstr(cap.text, "10x6") && strstr(cap.text, "59"), "log: %s", cap.text);
    size_t ihdr = find_chunk(png, n, "IHDR");
    put_be32(png + ihdr + 8, 60000);
    put_be32(png + ihdr + 12, 60000);
    fix_crc(png, ihdr);
    ck_assert_int_eq(vttt_png_decode(png, n, &rgb, &w, &h, 4096 * 4096, &lg), VTTT_EINVAL);
    ck_assert(strstr(cap.text, "60000x60000") != NULL);
    /* allowed by max_pixels: the missing image data is a format error */
    put_be32(png + ihdr + 8, 3000);
    put_be32(png + ihdr + 12, 2000);
    fix_crc(png, ihdr);
    ck_assert_int_eq(decode_code(png, n, 3000 * 2000), VTTT_EFORMAT);
    free(png);
    free(img);
}
END_TEST

int main(void) {
    TCase *tc = tcase_create("image");
    tcase_add_test(tc, test_psnr_known);
    tcase_add_test(tc, test_ssim_identical_and_monotone);
    tcase_add_test(tc, test_ssim_psnr_oracle);
    tcase_add_test(tc, test_png_round_trip);
    tcase_add_test(tc, test_png_write_file);
    tcase_add_test(tc, test_png_encode_bad_args);
    tcase_add_test(tc, test_png_color_types);
    tcase_add_test(tc, test_png_rejects_garbage);
    tcase_add_test(tc, test_png_truncated_and_bad_crc);
    tcase_add_test(tc, test_png_mutations_with_valid_crc);
    tcase_add_test(tc, test_png_max_pixels);
    return tu_run("image", tc, CK_FORK_GETENV);
}
