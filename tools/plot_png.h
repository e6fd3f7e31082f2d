/* A small line-plot writer for the command line tools: one or more series
 * of (x, y) points drawn as lines on linear axes (or a log x axis) with ticks, labels, a
 * title and a legend, written as an RGB PNG (libpng). Text uses a built-in
 * 5x7 bitmap font (printable ASCII), so no font files are needed. */
#ifndef VTTT_TOOLS_PLOT_PNG_H
#define VTTT_TOOLS_PLOT_PNG_H

typedef struct plot_series {
    const char *label;    /* legend entry; NULL or "" for none */
    const double *x, *y;  /* (n) points; a non-finite y breaks the line */
    int n;
    const double *err;    /* (n) error bars y +- err, or NULL; non-finite: none at that point */
} plot_series;

typedef struct plot_params {
    const char *title, *xlabel, *ylabel;   /* NULL: none */
    int width, height;                     /* pixels (960 x 600) */
    /* Axis ranges; NAN (the default) fits the data. */
    double x_min, x_max, y_min, y_max;
    int x_log;   /* 1: a log10 x axis (points with x <= 0 are left out) */
} plot_params;

plot_params plot_default_params(void);
/* Draws the series and writes the PNG to path. 0, or -1 after a message
 * on stderr naming the file (cannot write, no finite point, bad size). */
int plot_png_write(const char *path, const plot_series *series, int n_series, const plot_params *p);

/* Several plots side by side in one PNG, `cols` to a row (the panels of a
 * figure); every panel's params give the same width and height. */
typedef struct plot_panel {
    const plot_series *series;
    int n_series;
    plot_params params;
} plot_panel;
int plot_png_write_panels(const char *path, const plot_panel *panels, int n, int cols);

#endif
