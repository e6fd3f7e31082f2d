/* PNG encoding and decoding in memory with libpng, and atomic PNG files
 * (see encoder.h; the file goes through ingest's vttt_file_write_atomic,
 * the writer config.json and the shards use too). libpng reports errors by
 * calling an error function that must not return: ours longjmps back into
 * the call that started it, so a malformed, truncated or hostile stream is
 * a VTTT_EFORMAT return code and never an abort. Whatever a call
 * allocated lives in its context struct (not in locals, which setjmp may
 * not preserve) and is freed on the way out. */
#include <png.h>
#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "encoder.h"
#include "token_shard.h"

#define PNG_MAX_SIDE 1000000   /* libpng's own default limit per side */

/* ---- shared error handling ---------------------------------------------- */

typedef struct png_job {
    jmp_buf jmp;
    const vttt_logger *lg;
    const char *what;        /* "decoding a PNG", "encoding a PNG" */
    char msg[256];           /* libpng's message */
    int err;                 /* code to return after the longjmp */
    /* decoding */
    const uint8_t *src;
    size_t src_n, src_pos;
    uint8_t *rgb;            /* (h, w, 3) output */
    png_bytep *rows;
    /* encoding */
    uint8_t *buf;
    size_t len, cap;
} png_job;

static void on_error(png_structp png, png_const_charp msg) {
    png_job *j = png_get_error_ptr(png);
    snprintf(j->msg, sizeof j->msg, "%s", msg ? msg : "unknown error");
    longjmp(j->jmp, 1);
}

/* libpng's warnings (bad ancillary chunks it skips, for instance) are not
 * failures; they go to the log at debug level. */
static void on_warning(png_structp png, png_const_charp msg) {
    png_job *j = png_get_error_ptr(png);
    vttt_log(j->lg, VTTT_LOG_DEBUG, "libpng warning while %s: %s", j->what, msg ? msg : "");
}

/* ---- decoding ----------------------------------------------------------- */

static void read_mem(png_structp png, png_bytep out, png_size_t n) {
    png_job *j = png_get_io_ptr(png);
    if (n > j->src_n - j->src_pos) png_error(png, "truncated data (the stream ends early)");
    memcpy(out, j->src + j->src_pos, n);
    j->src_pos += n;
}

/* Turns any colour type and bit depth into 8-bit RGB: palettes and
 * low-bit gray are expanded, 16-bit samples rounded to 8 bits, gray copied
 * to all three channels, alpha (and tRNS transparency) dropped. */
static void set_rgb8_transforms(png_structp png, png_infop info) {
    int ct = png_get_color_type(png, info);
    if (ct == PNG_COLOR_TYPE_PALETTE) png_set_palette_to_rgb(png);
    if (ct == PNG_COLOR_TYPE_GRAY && png_get_bit_depth(png, info) < 8) png_set_expand_gray_1_2_4_to_8(png);
    if (png_get_bit_depth(png, info) == 16) png_set_scale_16(png);
    if (ct == PNG_COLOR_TYPE_GRAY || ct == PNG_COLOR_TYPE_GRAY_ALPHA) png_set_gray_to_rgb(png);
    png_set_strip_alpha(png);
    (void)png_set_interlace_handling(png);
    png_read_update_info(png, info);
}

/* The body of vttt_png_decode between setjmp and cleanup; png_error
 * longjmps out of it. */
static int decode_body(png_job *j, png_structp png, png_infop info, int64_t max_pixels, int *w, int *h) {
    png_set_read_fn(png, j, read_mem);
    png_set_user_limits(png, PNG_MAX_SIDE, PNG_MAX_SIDE);
    png_read_info(png, info);
    png_uint_32 pw = png_get_image_width(png, info), ph = png_get_image_height(png, info);
    if ((int64_t)pw * (int64_t)ph > max_pixels) {
        vttt_log(j->lg, VTTT_LOG_ERROR,
                 "PNG is %ux%u = %lld pixels, more than the allowed %lld; resize it or raise the limit",
                 (unsigned)pw, (unsigned)ph, (long long)pw * (long long)ph, (long long)max_pixels);
        return VTTT_EINVAL;
    }
    set_rgb8_transforms(png, info);
    size_t stride = (size_t)pw * 3;
    if (png_get_rowbytes(png, info) != stride || png_get_channels(png, info) != 3)
        png_error(png, "unexpected row layout after conversion to RGB");
    j->rgb = malloc(stride * ph);
    j->rows = malloc(sizeof *j->rows * ph);
    if (!j->rgb || !j->rows) {
        vttt_log(j->lg, VTTT_LOG_ERROR, "out of memory decoding a %ux%u PNG", (unsigned)pw, (unsigned)ph);
        return VTTT_ENOMEM;
    }
    for (png_uint_32 r = 0; r < ph; r++) j->rows[r] = j->rgb + r * stride;
    png_read_image(png, j->rows);
    png_read_end(png, NULL);
    *w = (int)pw;
    *h = (int)ph;
    return VTTT_OK;
}

/* Validates the arguments and the signature, then decodes through libpng.
 * On failure *rgb is NULL and nothing is left allocated. */
int vttt_png_decode(const uint8_t *data, size_t n, uint8_t **rgb, int *w, int *h, int64_t max_pixels,
                    const vttt_logger *lg) {
    if (!rgb || !w || !h) return VTTT_EINVAL;
    *rgb = NULL;
    *w = *h = 0;
    if (max_pixels <= 0) {
        vttt_log(lg, VTTT_LOG_ERROR, "PNG decode: max_pixels must be positive (got %lld)", (long long)max_pixels);
        return VTTT_EINVAL;
    }
    if (!data || n < 8 || png_sig_cmp(data, 0, 8) != 0) {
        vttt_log(lg, VTTT_LOG_ERROR, "not a PNG: %zu bytes without the PNG signature", data ? n : 0);
        return VTTT_EFORMAT;
    }
    png_job *j = calloc(1, sizeof *j);
    if (!j) return VTTT_ENOMEM;
    j->lg = lg, j->what = "decoding a PNG", j->src = data, j->src_n = n;
    png_structp png = png_create_read_struct(PNG_LIBPNG_VER_STRING, j, on_error, on_warning);
    png_infop info = png ? png_create_info_struct(png) : NULL;
    int err;
    if (!png || !info) {
        vttt_log(lg, VTTT_LOG_ERROR, "out of memory starting libpng");
        err = VTTT_ENOMEM;
    } else if (setjmp(j->jmp)) {
        vttt_log(lg, VTTT_LOG_ERROR, "malformed PNG (%zu bytes): %s", n, j->msg);
        err = VTTT_EFORMAT;
    } else {
        err = decode_body(j, png, info, max_pixels, w, h);
    }
    png_destroy_read_struct(png ? &png : NULL, info ? &info : NULL, NULL);
    free(j->rows);
    if (err) {
        free(j->rgb);
        *w = *h = 0;
    } else {
        *rgb = j->rgb;
    }
    free(j);
    return err;
}

/* ---- encoding ----------------------------------------------------------- */

/* Appends to the growing output buffer; png_error (longjmp) when memory
 * runs out, after noting VTTT_ENOMEM. */
static void write_mem(png_structp png, png_bytep p, png_size_t n) {
    png_job *j = png_get_io_ptr(png);
    if (n > j->cap - j->len) {
        size_t cap = j->cap ? j->cap : 4096;
        while (cap - j->len < n) {
            if (cap > SIZE_MAX / 2) break;
            cap *= 2;
        }
        uint8_t *b = cap - j->len >= n ? realloc(j->buf, cap) : NULL;
        if (!b) {
            j->err = VTTT_ENOMEM;
            png_error(png, "out of memory growing the output buffer");
        }
        j->buf = b, j->cap = cap;
    }
    memcpy(j->buf + j->len, p, n);
    j->len += n;
}

static void flush_mem(png_structp png) { (void)png; }

static int encode_body(png_job *j, png_structp png, png_infop info, const uint8_t *rgb, int w, int h) {
    png_set_write_fn(png, j, write_mem, flush_mem);
    png_set_IHDR(png, info, (png_uint_32)w, (png_uint_32)h, 8, PNG_COLOR_TYPE_RGB, PNG_INTERLACE_NONE,
                 PNG_COMPRESSION_TYPE_DEFAULT, PNG_FILTER_TYPE_DEFAULT);
    png_write_info(png, info);
    for (int r = 0; r < h; r++) png_write_row(png, rgb + (size_t)r * w * 3);
    png_write_end(png, NULL);
    return VTTT_OK;
}

/* Encodes 8-bit RGB; the output buffer belongs to the caller on success
 * and is freed here on failure. */
int vttt_png_encode(const uint8_t *rgb, int w, int h, uint8_t **out, size_t *n, const vttt_logger *lg) {
    if (!out || !n) return VTTT_EINVAL;
    *out = NULL;
    *n = 0;
    if (!rgb || w <= 0 || h <= 0 || w > PNG_MAX_SIDE || h > PNG_MAX_SIDE) {
        vttt_log(lg, VTTT_LOG_ERROR, "PNG encode: bad image %dx%d (sides must be 1..%d, pixels non-NULL)", w, h,
                 PNG_MAX_SIDE);
        return VTTT_EINVAL;
    }
    png_job *j = calloc(1, sizeof *j);
    if (!j) return VTTT_ENOMEM;
    j->lg = lg, j->what = "encoding a PNG";
    png_structp png = png_create_write_struct(PNG_LIBPNG_VER_STRING, j, on_error, on_warning);
    png_infop info = png ? png_create_info_struct(png) : NULL;
    int err;
    if (!png || !info) {
        vttt_log(lg, VTTT_LOG_ERROR, "out of memory starting libpng");
        err = VTTT_ENOMEM;
    } else if (setjmp(j->jmp)) {
        err = j->err ? j->err : VTTT_EINVAL;
        vttt_log(lg, VTTT_LOG_ERROR, "PNG encode of a %dx%d image failed: %s", w, h, j->msg);
    } else {
        err = encode_body(j, png, info, rgb, w, h);
    }
    png_destroy_write_struct(png ? &png : NULL, info ? &info : NULL);
    if (err) {
        free(j->buf);
    } else {
        *out = j->buf;
        *n = j->len;
    }
    free(j);
    return err;
}

/* ---- files -------------------------------------------------------------- */

int vttt_png_write(const char *path, const uint8_t *rgb, int w, int h, const vttt_logger *lg) {
    if (!path || !*path) {
        vttt_log(lg, VTTT_LOG_ERROR, "PNG write: no output path");
        return VTTT_EINVAL;
    }
    uint8_t *buf = NULL;
    size_t n = 0;
    int err = vttt_png_encode(rgb, w, h, &buf, &n, lg);
    if (!err) err = vttt_file_write_atomic(path, buf, n, lg);
    free(buf);
    return err;
}
