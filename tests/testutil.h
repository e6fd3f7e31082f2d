/* Shared test helpers: deterministic random data, error measures, finite
 * differences, captured logs, temporary files and the Check runner. Every
 * tests/test_*.c program links tests/testutil.c. Helpers marked "(in a
 * test)" fail the running Check test on error; the others may also be used
 * from main(). */
#ifndef VTTT_TESTUTIL_H
#define VTTT_TESTUTIL_H
#include <check.h>
#include <stddef.h>
#include <stdint.h>

#include "ttt.h"

/* ---- random data and error measures ------------------------------------- */

typedef struct { uint64_t s; } tu_rng;
void tu_seed(tu_rng *r, uint64_t seed);
float tu_uniform(tu_rng *r);                 /* [0, 1) */
float tu_normal(tu_rng *r);                  /* N(0, 1) */
void tu_fill_normal(tu_rng *r, float *x, size_t n, float scale);
/* A malloc'd buffer of n values N(0, scale^2) (in a test). */
float *tu_alloc_normal(tu_rng *r, size_t n, float scale);
/* max |a-b| / max(max|b|, tiny): relative error on the scale of b. */
double tu_rel_err(const float *a, const float *b, size_t n);
double tu_max_abs(const float *a, size_t n);

/* Central difference (loss(p + eps) - loss(p - eps)) / (2 eps) of loss(ctx)
 * with respect to the one value *p, which is restored afterwards. */
double tu_central_diff(float *p, float eps, double (*loss)(void *ctx), void *ctx);
/* A malloc'd buffer of n copies of v (at least one element; in a test). */
float *tu_alloc_fill(size_t n, float v);
/* sum a[i] * b[i], accumulated in double. */
double tu_dot(const float *a, const float *b, size_t n);

/* How tu_check_fd compares: central-difference step, the bound on the
 * relative error, the value grad was filled with before the backward
 * (which adds to it), and whether an all-zero difference fails. */
typedef struct {
    float eps;
    double tol;
    float grad_fill;
    int nonzero;
} tu_fd_opts;
/* Asserts that grad (n) matches the central difference of loss over every
 * element of p (each restored afterwards). */
void tu_check_fd(const char *what, double (*loss)(void *ctx), void *ctx, float *p, const float *grad, size_t n,
                 const tu_fd_opts *o);

/* ---- layers ------------------------------------------------------------- */

/* Fills every parameter of a TTT layer, in parameter-list order from seed,
 * with values at a general point: N(0, s^2) with s = proj_gain/sqrt(width)
 * for the projections, 0.15 for W1/W2, 0.5 for the learning-rate bias and
 * 0.1 for the rest; norm weights are shifted by +1. */
void tu_layer_randomize(vttt_layer *l, uint64_t seed, float proj_gain);
/* The layer's parameter tensor called name (in a test: it must exist). */
vttt_param_info tu_layer_param(vttt_layer *l, const char *name);
/* A layer of kind at width D with H heads, mini-batch b and checkpoint
 * group (0: the default), randomized by tu_layer_randomize(seed, 1), with
 * one token offset pushed below -1/i so the max(0, .) clamp is hit: the
 * layer that the CUDA checks (test_ttt_cuda, test_cuda_emu) compare. */
vttt_layer *tu_layer_clamped(vttt_layer_kind kind, int D, int H, int b, int group, uint64_t seed);

/* One training step of model m on a device against the CPU model, the
 * check that test_ttt_cuda (a GPU) and test_cuda_emu (the emulated CUDA
 * table) share. m's parameters are first moved off the initializer by
 * N(0, 0.05^2) noise (seed 3); tokens (i*37+5) mod vocab, B x T, no
 * targets; the step runs through vttt_model_dev_init on be (ops NULL) or
 * ttt_model_dev_init_ops with ops. Fills the CPU and device losses and
 * returns the worst relative error of a parameter gradient over the
 * model's *n_tensors tensors (its name in *worst_name). log_msg (may be
 * NULL): a message buffer to quote when the device step fails. */
struct ttt_dev_ops;
struct vttt_model;
double tu_model_dev_step_check(struct vttt_model *m, const vttt_backend *be, const struct ttt_dev_ops *ops, int B,
                               int T, int vocab, const char *log_msg, float *l_cpu, float *l_dev,
                               const char **worst_name, int *n_tensors);

/* ---- logs ------------------------------------------------------------- */

/* What the library logged: the last message or, with append, every message
 * one per line (cut at the buffer's end). */
typedef struct {
    char text[4096];
    int count; /* messages seen */
    int append;
} tu_log;
/* A logger into c (cleared) that passes messages up to level
 * (VTTT_LOG_ERROR .. VTTT_LOG_DEBUG). */
vttt_logger tu_log_capture(tu_log *c, int level, int append);
/* A logger that drops every message. */
vttt_logger tu_log_quiet(void);

/* ---- files ------------------------------------------------------------ */

/* Makes a fresh directory $TMPDIR/vttt_<tag>_XXXXXX (/tmp without TMPDIR)
 * and writes its path into dir; ends the program with a message if it
 * cannot (also when the path does not fit in size bytes). */
void tu_tmpdir(char *dir, size_t size, const char *tag);
/* Removes dir and everything below it; only paths that contain "/vttt_"
 * (those of tu_tmpdir), as a guard against removing anything else. */
void tu_rm_rf(const char *dir);
/* The number of entries in dir, "." and ".." aside (in a test). */
int tu_count_entries(const char *dir);
/* Writes n bytes to path, replacing it (in a test). */
void tu_write_file(const char *path, const void *p, size_t n);
/* The whole file, malloc'd with a NUL after its last byte, and its size in
 * *n (n may be NULL) (in a test). */
void *tu_read_file(const char *path, size_t *n);

/* ---- running ---------------------------------------------------------- */

/* Runs the test case tc as the suite `name` with the given fork mode
 * (CK_FORK_GETENV: Check's default, CK_FORK from the environment) and
 * returns the program's exit status: 0 when every test passed, else 1. */
int tu_run(const char *name, TCase *tc, enum fork_status fork);
/* Opens CUDA device 0 into *gpu with lg. Returns 0, or the exit status for
 * the program: 77 (ctest's "skipped") after one SKIP line saying that
 * `what` is not run where there is no device, 1 on other failures.
 * last_msg: the buffer where lg keeps the last message logged. */
int tu_cuda_open(vttt_backend **gpu, const vttt_logger *lg, const char *last_msg, const char *what);
#endif
