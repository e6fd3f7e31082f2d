/* Line plots as PNG files: see plot_png.h. Everything is drawn on an RGB
 * canvas in memory (axes, grid, ticks, lines, text in a built-in bitmap
 * font) and written with libpng's simplified API. */
#include <math.h>
#include <png.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "plot_png.h"

/* The classic 5x7 LCD font for ASCII 32..126: five columns per glyph, bit
 * r of a column is row r from the top (row 7 for descenders). */
static const uint8_t font5x7[95][5] = {
    {0x00, 0x00, 0x00, 0x00, 0x00}, {0x00, 0x00, 0x5F, 0x00, 0x00}, {0x00, 0x07, 0x00, 0x07, 0x00},
    {0x14, 0x7F, 0x14, 0x7F, 0x14}, {0x24, 0x2A, 0x7F, 0x2A, 0x12}, {0x23, 0x13, 0x08, 0x64, 0x62},
    {0x36, 0x49, 0x56, 0x20, 0x50}, {0x00, 0x08, 0x07, 0x03, 0x00}, {0x00, 0x1C, 0x22, 0x41, 0x00},
    {0x00, 0x41, 0x22, 0x1C, 0x00}, {0x2A, 0x1C, 0x7F, 0x1C, 0x2A}, {0x08, 0x08, 0x3E, 0x08, 0x08},
    {0x00, 0x80, 0x70, 0x30, 0x00}, {0x08, 0x08, 0x08, 0x08, 0x08}, {0x00, 0x00, 0x60, 0x60, 0x00},
    {0x20, 0x10, 0x08, 0x04, 0x02}, {0x3E, 0x51, 0x49, 0x45, 0x3E}, {0x00, 0x42, 0x7F, 0x40, 0x00},
    {0x72, 0x49, 0x49, 0x49, 0x46}, {0x21, 0x41, 0x49, 0x4D, 0x33}, {0x18, 0x14, 0x12, 0x7F, 0x10},
    {0x27, 0x45, 0x45, 0x45, 0x39}, {0x3C, 0x4A, 0x49, 0x49, 0x31}, {0x41, 0x21, 0x11, 0x09, 0x07},
    {0x36, 0x49, 0x49, 0x49, 0x36}, {0x46, 0x49, 0x49, 0x29, 0x1E}, {0x00, 0x00, 0x14, 0x00, 0x00},
    {0x00, 0x40, 0x34, 0x00, 0x00}, {0x00, 0x08, 0x14, 0x22, 0x41}, {0x14, 0x14, 0x14, 0x14, 0x14},
    {0x00, 0x41, 0x22, 0x14, 0x08}, {0x02, 0x01, 0x59, 0x09, 0x06}, {0x3E, 0x41, 0x5D, 0x59, 0x4E},
    {0x7C, 0x12, 0x11, 0x12, 0x7C}, {0x7F, 0x49, 0x49, 0x49, 0x36}, {0x3E, 0x41, 0x41, 0x41, 0x22},
    {0x7F, 0x41, 0x41, 0x41, 0x3E}, {0x7F, 0x49, 0x49, 0x49, 0x41}, {0x7F, 0x09, 0x09, 0x09, 0x01},
    {0x3E, 0x41, 0x41, 0x51, 0x73}, {0x7F, 0x08, 0x08, 0x08, 0x7F}, {0x00, 0x41, 0x7F, 0x41, 0x00},
    {0x20, 0x40, 0x41, 0x3F, 0x01}, {0x7F, 0x08, 0x14, 0x22, 0x41}, {0x7F, 0x40, 0x40, 0x40, 0x40},
    {0x7F, 0x02, 0x1C, 0x02, 0x7F}, {0x7F, 0x04, 0x08, 0x10, 0x7F}, {0x3E, 0x41, 0x41, 0x41, 0x3E},
    {0x7F, 0x09, 0x09, 0x09, 0x06}, {0x3E, 0x41, 0x51, 0x21, 0x5E}, {0x7F, 0x09, 0x19, 0x29, 0x46},
    {0x26, 0x49, 0x49, 0x49, 0x32}, {0x03, 0x01, 0x7F, 0x01, 0x03}, {0x3F, 0x40, 0x40, 0x40, 0x3F},
    {0x1F, 0x20, 0x40, 0x20, 0x1F}, {0x3F, 0x40, 0x38, 0x40, 0x3F}, {0x63, 0x14, 0x08, 0x14, 0x63},
    {0x03, 0x04, 0x78, 0x04, 0x03}, {0x61, 0x59, 0x49, 0x4D, 0x43}, {0x00, 0x7F, 0x41, 0x41, 0x41},
    {0x02, 0x04, 0x08, 0x10, 0x20}, {0x00, 0x41, 0x41, 0x41, 0x7F}, {0x04, 0x02, 0x01, 0x02, 0x04},
    {0x40, 0x40, 0x40, 0x40, 0x40}, {0x00, 0x03, 0x07, 0x08, 0x00}, {0x20, 0x54, 0x54, 0x78, 0x40},
    {0x7F, 0x28, 0x44, 0x44, 0x38}, {0x38, 0x44, 0x44, 0x44, 0x28}, {0x38, 0x44, 0x44, 0x28, 0x7F},
    {0x38, 0x54, 0x54, 0x54, 0x18}, {0x00, 0x08, 0x7E, 0x09, 0x02}, {0x18, 0xA4, 0xA4, 0x9C, 0x78},
    {0x7F, 0x08, 0x04, 0x04, 0x78}, {0x00, 0x44, 0x7D, 0x40, 0x00}, {0x20, 0x40, 0x40, 0x3D, 0x00},
    {0x7F, 0x10, 0x28, 0x44, 0x00}, {0x00, 0x41, 0x7F, 0x40, 0x00}, {0x7C, 0x04, 0x78, 0x04, 0x78},
    {0x7C, 0x08, 0x04, 0x04, 0x78}, {0x38, 0x44, 0x44, 0x44, 0x38}, {0xFC, 0x18, 0x24, 0x24, 0x18},
    {0x18, 0x24, 0x24, 0x18, 0xFC}, {0x7C, 0x08, 0x04, 0x04, 0x08}, {0x48, 0x54, 0x54, 0x54, 0x24},
    {0x04, 0x04, 0x3F, 0x44, 0x24}, {0x3C, 0x40, 0x40, 0x20, 0x7C}, {0x1C, 0x20, 0x40, 0x20, 0x1C},
    {0x3C, 0x40, 0x30, 0x40, 0x3C}, {0x44, 0x28, 0x10, 0x28, 0x44}, {0x4C, 0x90, 0x90, 0x90, 0x7C},
    {0x44, 0x64, 0x54, 0x4C, 0x44}, {0x00, 0x08, 0x36, 0x41, 0x00}, {0x00, 0x00, 0x77, 0x00, 0x00},
    {0x00, 0x41, 0x36, 0x08, 0x00}, {0x02, 0x01, 0x02, 0x04, 0x02},
};

#define GLYPH_W 6   /* advance per character, font pixels */
#define TEXT_SCALE 2
#define MAX_TICKS 50   /* per axis, whatever the rounding */

typedef struct {
    uint8_t r, g, b;
} rgb;

static const rgb BLACK = {0, 0, 0}, WHITE = {255, 255, 255}, GRID = {225, 225, 225}, AXIS = {90, 90, 90};
static const rgb PALETTE[] = {{31, 119, 180}, {214, 39, 40},  {44, 160, 44},  {255, 127, 14},
                              {148, 103, 189}, {140, 86, 75}, {227, 119, 194}, {23, 190, 207}};

typedef struct {
    uint8_t *px;                /* (h, w, 3) */
    int w, h;
    int x0, y0, x1, y1;         /* clip rectangle, inclusive */
} canvas;

typedef struct {
    double lo, hi;              /* data range of the axis */
    int p0, p1;                 /* pixel positions of lo and hi */
    int log;                    /* 1: log10 scale (lo > 0) */
} axis;

static void put(canvas *c, int x, int y, rgb col) {
    if (x < c->x0 || x > c->x1 || y < c->y0 || y > c->y1) return;
    uint8_t *p = c->px + 3 * ((size_t)y * c->w + x);
    p[0] = col.r, p[1] = col.g, p[2] = col.b;
}

static void fill(canvas *c, int x, int y, int w, int h, rgb col) {
    for (int j = y; j < y + h; j++)
        for (int i = x; i < x + w; i++) put(c, i, j, col);
}

/* A line of the given thickness (pixels): Bresenham with a square brush. */
static void line(canvas *c, int xa, int ya, int xb, int yb, int thick, rgb col) {
    int dx = abs(xb - xa), dy = -abs(yb - ya), sx = xa < xb ? 1 : -1, sy = ya < yb ? 1 : -1, e = dx + dy;
    int o = (thick - 1) / 2;
    for (;;) {
        fill(c, xa - o, ya - o, thick, thick, col);
        if (xa == xb && ya == yb) break;
        int e2 = 2 * e;
        if (e2 >= dy) e += dy, xa += sx;
        if (e2 <= dx) e += dx, ya += sy;
    }
}

static int text_width(const char *s) { return (int)strlen(s) * GLYPH_W * TEXT_SCALE; }

/* Draws s with its top-left corner at (x, y); vertical text runs upwards
 * from (x, y) as its bottom-left corner. */
static void text(canvas *c, int x, int y, const char *s, rgb col, int vertical) {
    const int k = TEXT_SCALE;
    for (int n = 0; s[n]; n++) {
        unsigned ch = (unsigned char)s[n];
        const uint8_t *g = font5x7[ch >= 32 && ch < 127 ? ch - 32 : '?' - 32];
        for (int gx = 0; gx < 5; gx++)
            for (int gy = 0; gy < 8; gy++) {
                if (!(g[gx] >> gy & 1)) continue;
                int u = (n * GLYPH_W + gx) * k, v = gy * k;
                if (vertical) fill(c, x + v, y - u - k, k, k, col);
                else fill(c, x + u, y + v, k, k, col);
            }
    }
}

static double scaled(const axis *a, double v) { return a->log ? log10(v) : v; }

static int to_px(const axis *a, double v) {
    double lo = scaled(a, a->lo), hi = scaled(a, a->hi);
    return (int)lround(a->p0 + (scaled(a, v) - lo) / (hi - lo) * (a->p1 - a->p0));
}

/* A value on the axis: finite, and positive on a log axis. */
static int on_axis(const axis *a, double v) { return isfinite(v) && (!a->log || v > 0); }

/* A "nice" tick step (1, 2 or 5 times a power of ten) giving at most
 * about `target` ticks over the range. */
static double tick_step(double lo, double hi, int target) {
    double raw = (hi - lo) / target, p = pow(10, floor(log10(raw))), f = raw / p;
    return (f <= 1 ? 1 : f <= 2 ? 2 : f <= 5 ? 5 : 10) * p;
}

static void tick_label(char *buf, size_t n, double v, double step) {
    int dec = step >= 1 ? 0 : (int)ceil(-log10(step) - 1e-9);
    if (fabs(v) < step * 1e-6) v = 0;
    if (fabs(v) >= 1e7 || (v != 0 && fabs(v) < 1e-4)) snprintf(buf, n, "%.3g", v);
    else snprintf(buf, n, "%.*f", dec, v);
}

/* Grid lines, ticks and tick labels of one axis (horizontal: the x axis). */
static void draw_tick(canvas *c, const axis *a, const axis *other, int horizontal, double v, const char *buf);

/* Log axis ticks: 1, 2 and 5 times each power of ten in the range (only
 * the powers when the range spans more than 4 decades). */
static void draw_log_ticks(canvas *c, const axis *a, const axis *other, int horizontal) {
    static const double mult[3] = {1, 2, 5};
    int many = log10(a->hi / a->lo) > 4, n = 0;
    for (double d = pow(10, floor(log10(a->lo))); d <= a->hi && n < MAX_TICKS; d *= 10)
        for (int m = 0; m < (many ? 1 : 3); m++) {
            double v = d * mult[m];
            if (v < a->lo * (1 - 1e-9) || v > a->hi * (1 + 1e-9)) continue;
            char buf[32];
            snprintf(buf, sizeof buf, "%g", v);
            draw_tick(c, a, other, horizontal, v, buf), n++;
        }
}

static void draw_ticks(canvas *c, const axis *a, const axis *other, int horizontal) {
    if (a->log) {
        draw_log_ticks(c, a, other, horizontal);
        return;
    }
    double step = tick_step(a->lo, a->hi, horizontal ? 8 : 6);
    double k0 = ceil(a->lo / step - 1e-9);
    for (int k = 0; k < MAX_TICKS; k++) {
        double v = (k0 + k) * step;
        if (v > a->hi + step * 1e-9) break;
        char buf[32];
        tick_label(buf, sizeof buf, v, step);
        draw_tick(c, a, other, horizontal, v, buf);
    }
}

/* One grid line, tick and label at v. */
static void draw_tick(canvas *c, const axis *a, const axis *other, int horizontal, double v, const char *buf) {
    int p = to_px(a, v);
    if (horizontal) {
        line(c, p, other->p0, p, other->p1, 1, GRID);
        line(c, p, other->p0, p, other->p0 + 5, 1, AXIS);
        text(c, p - text_width(buf) / 2, other->p0 + 10, buf, BLACK, 0);
    } else {
        line(c, other->p0, p, other->p1, p, 1, GRID);
        line(c, other->p0 - 5, p, other->p0, p, 1, AXIS);
        text(c, other->p0 - 10 - text_width(buf), p - 4 * TEXT_SCALE, buf, BLACK, 0);
    }
}

/* The range of the drawable values of one coordinate (x_log: points
 * with x <= 0 left out), widened when empty. */
static int data_range(const plot_series *s, int ns, int use_y, int x_log, double *lo, double *hi) {
    *lo = INFINITY, *hi = -INFINITY;
    for (int i = 0; i < ns; i++)
        for (int j = 0; j < s[i].n; j++) {
            double v = use_y ? s[i].y[j] : s[i].x[j], o = use_y ? s[i].x[j] : s[i].y[j];
            if (!isfinite(v) || !isfinite(o) || (x_log && !(s[i].x[j] > 0))) continue;
            double e = use_y && s[i].err && isfinite(s[i].err[j]) ? fabs(s[i].err[j]) : 0;
            *lo = fmin(*lo, v - e), *hi = fmax(*hi, v + e);
        }
    if (*lo > *hi) return -1;
    if (x_log && !use_y && *hi <= *lo * (1 + 1e-12)) {
        *lo /= 2, *hi *= 2;
    } else if (*hi - *lo < 1e-12 * fmax(1, fabs(*hi))) {
        double d = fmax(0.5, fabs(*hi) * 0.05);
        *lo -= d, *hi += d;
    } else if (use_y) {
        double pad = 0.05 * (*hi - *lo);
        *lo -= pad, *hi += pad;
    }
    return 0;
}

static void draw_series(canvas *c, const axis *ax, const axis *ay, const plot_series *s, rgb col) {
    int have = 0, px = 0, py = 0;
    for (int j = 0; j < s->n; j++) {
        if (!on_axis(ax, s->x[j]) || !isfinite(s->y[j])) {
            have = 0;
            continue;
        }
        int x = to_px(ax, s->x[j]), y = to_px(ay, s->y[j]);
        if (s->err && isfinite(s->err[j])) {   /* a bar with caps */
            int ya = to_px(ay, s->y[j] - fabs(s->err[j])), yb = to_px(ay, s->y[j] + fabs(s->err[j]));
            line(c, x, ya, x, yb, 1, col), line(c, x - 3, ya, x + 3, ya, 1, col), line(c, x - 3, yb, x + 3, yb, 1, col);
        }
        if (have) line(c, px, py, x, y, 2, col);
        else fill(c, x - 1, y - 1, 2, 2, col);
        have = 1, px = x, py = y;
    }
}

static void draw_legend(canvas *c, const axis *ax, const axis *ay, const plot_series *s, int ns) {
    int rows = 0, w = 0, lh = 10 * TEXT_SCALE;
    for (int i = 0; i < ns; i++)
        if (s[i].label && s[i].label[0]) rows++, w = text_width(s[i].label) > w ? text_width(s[i].label) : w;
    if (!rows) return;
    int bw = w + 50, bh = rows * lh + 10, x = ax->p1 - bw - 10, y = ay->p1 + 10, r = 0;
    fill(c, x, y, bw, bh, WHITE);
    line(c, x, y, x + bw, y, 1, AXIS), line(c, x, y + bh, x + bw, y + bh, 1, AXIS);
    line(c, x, y, x, y + bh, 1, AXIS), line(c, x + bw, y, x + bw, y + bh, 1, AXIS);
    for (int i = 0; i < ns; i++) {
        if (!s[i].label || !s[i].label[0]) continue;
        int yy = y + 6 + r++ * lh;
        line(c, x + 8, yy + 4 * TEXT_SCALE, x + 34, yy + 4 * TEXT_SCALE, 3, PALETTE[i % 8]);
        text(c, x + 42, yy, s[i].label, BLACK, 0);
    }
}

/* Axes (ranges and pixel positions) for the canvas and the data. */
static int make_axes(const plot_params *p, const plot_series *s, int ns, axis *ax, axis *ay) {
    if (data_range(s, ns, 0, p->x_log, &ax->lo, &ax->hi) || data_range(s, ns, 1, p->x_log, &ay->lo, &ay->hi))
        return -1;
    if (isfinite(p->x_min)) ax->lo = p->x_min;
    if (isfinite(p->x_max)) ax->hi = p->x_max;
    if (isfinite(p->y_min)) ay->lo = p->y_min;
    if (isfinite(p->y_max)) ay->hi = p->y_max;
    ax->log = p->x_log, ay->log = 0;
    if (!(ax->hi > ax->lo) || !(ay->hi > ay->lo) || (ax->log && !(ax->lo > 0))) return -1;
    ax->p0 = 110, ax->p1 = p->width - 30;
    ay->p0 = p->height - 70, ay->p1 = p->title ? 50 : 20;   /* y grows downwards */
    return 0;
}

static void draw(canvas *c, const plot_params *p, const plot_series *s, int ns, const axis *ax, const axis *ay) {
    memset(c->px, 255, (size_t)c->w * c->h * 3);
    draw_ticks(c, ax, ay, 1);
    draw_ticks(c, ay, ax, 0);
    canvas plot = *c;   /* lines clipped to the plot area */
    plot.x0 = ax->p0, plot.x1 = ax->p1, plot.y0 = ay->p1, plot.y1 = ay->p0;
    for (int i = 0; i < ns; i++) draw_series(&plot, ax, ay, &s[i], PALETTE[i % 8]);
    line(c, ax->p0, ay->p0, ax->p1, ay->p0, 1, AXIS);
    line(c, ax->p0, ay->p0, ax->p0, ay->p1, 1, AXIS);
    draw_legend(c, ax, ay, s, ns);
    if (p->title) text(c, (c->w - text_width(p->title)) / 2, 15, p->title, BLACK, 0);
    if (p->xlabel) text(c, (ax->p0 + ax->p1 - text_width(p->xlabel)) / 2, c->h - 30, p->xlabel, BLACK, 0);
    if (p->ylabel) text(c, 15, (ay->p0 + ay->p1 + text_width(p->ylabel)) / 2, p->ylabel, BLACK, 1);
}

plot_params plot_default_params(void) {
    return (plot_params){NULL, NULL, NULL, 960, 600, NAN, NAN, NAN, NAN, 0};
}

/* c = a fresh canvas of p's size with the plot drawn; 0, or -1 after a
 * message naming path. */
static int render(const char *path, const plot_series *series, int n_series, const plot_params *p, canvas *c) {
    if (p->width < 300 || p->height < 200 || p->width > 10000 || p->height > 10000) {
        fprintf(stderr, "plot %s: size %dx%d outside 300x200..10000x10000\n", path, p->width, p->height);
        return -1;
    }
    axis ax, ay;
    if (make_axes(p, series, n_series, &ax, &ay)) {
        fprintf(stderr, "plot %s: nothing to draw (no finite point, or an empty axis range)\n", path);
        return -1;
    }
    *c = (canvas){malloc((size_t)p->width * p->height * 3), p->width, p->height, 0, 0, p->width - 1, p->height - 1};
    if (!c->px) {
        fprintf(stderr, "plot %s: out of memory\n", path);
        return -1;
    }
    draw(c, p, series, n_series, &ax, &ay);
    return 0;
}

static int write_png(const char *path, const canvas *c) {
    png_image img;
    memset(&img, 0, sizeof img);
    img.version = PNG_IMAGE_VERSION;
    img.width = (png_uint_32)c->w;
    img.height = (png_uint_32)c->h;
    img.format = PNG_FORMAT_RGB;
    int ok = png_image_write_to_file(&img, path, 0, c->px, 0, NULL);
    if (!ok) fprintf(stderr, "plot %s: cannot write the PNG: %s\n", path, img.message);
    png_image_free(&img);
    return ok ? 0 : -1;
}

int plot_png_write(const char *path, const plot_series *series, int n_series, const plot_params *p) {
    canvas c;
    if (render(path, series, n_series, p, &c)) return -1;
    int err = write_png(path, &c);
    free(c.px);
    return err;
}

int plot_png_write_panels(const char *path, const plot_panel *panels, int n, int cols) {
    if (n < 1 || cols < 1) {
        fprintf(stderr, "plot %s: no panels\n", path);
        return -1;
    }
    int rows = (n + cols - 1) / cols, pw = panels[0].params.width, ph = panels[0].params.height;
    canvas all = {calloc((size_t)pw * cols * ph * rows * 3, 1), pw * cols, ph * rows, 0, 0, 0, 0};
    if (!all.px) {
        fprintf(stderr, "plot %s: out of memory\n", path);
        return -1;
    }
    memset(all.px, 255, (size_t)all.w * all.h * 3);
    int err = 0;
    for (int i = 0; i < n && !err; i++) {
        canvas c;
        if (panels[i].params.width != pw || panels[i].params.height != ph) {
            fprintf(stderr, "plot %s: panels must share one size\n", path);
            err = -1;
        } else if (!(err = render(path, panels[i].series, panels[i].n_series, &panels[i].params, &c))) {
            for (int y = 0; y < ph; y++)
                memcpy(all.px + 3 * (((size_t)(i / cols) * ph + y) * all.w + (size_t)(i % cols) * pw),
                       c.px + 3 * (size_t)y * pw, 3 * (size_t)pw);
            free(c.px);
        }
    }
    if (!err) err = write_png(path, &all);
    free(all.px);
    return err;
}
