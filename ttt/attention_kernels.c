/*
 * Causal softmax attention forward on the CPU, FlashAttention style:
 * queries and keys are cut into tiles, the scores of one (query tile, key
 * tile) pair are formed with a small GEMM, and an online softmax folds them
 * into the output, so memory stays O(T) at any sequence length. A few
 * queries against a long KV cache (decode) take a second path that streams
 * the cache row by row for all heads at once, split over key ranges
 * between threads (flash-decoding) and merged at the end.
 *
 * Tile GEMMs go to OpenBLAS from inside OpenMP threads, so OpenBLAS is held
 * at one thread for the duration of each parallel section.
 */

#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>

#include "attention_internal.h"
#include "ops.h"
#include "par.h"
#include "ttt.h"

enum { BR = ATTN_BR, BC = ATTN_BC };

/* Below this many query rows (decode, short prefill) products are plain
 * loops: BLAS would spend more time packing the key tile than multiplying,
 * and the work is bound by reading the KV cache anyway. */
enum { SMALL_ROWS = 8 };

static int64_t min64(int64_t a, int64_t b) { return a < b ? a : b; }

/* Sum of s[0..n) in eight lanes, so it vectorises without -ffast-math. */
static float row_sum(const float *s, int n) {
    float part[8] = {0};
    int c = 0;
    for (; c + 8 <= n; c += 8)
        for (int k = 0; k < 8; k++) part[k] += s[c + k];
    float sum = 0.0f;
    for (; c < n; c++) sum += s[c];
    for (int k = 0; k < 8; k++) sum += part[k];
    return sum;
}

/* Dot product of a and b (n) in eight lanes. */
static float dot8(const float *a, const float *b, int n) {
    float part[8] = {0};
    int d = 0;
    for (; d + 8 <= n; d += 8)
        for (int k = 0; k < 8; k++) part[k] += a[d + k] * b[d + k];
    float sum = 0.0f;
    for (; d < n; d++) sum += a[d] * b[d];
    for (int k = 0; k < 8; k++) sum += part[k];
    return sum;
}

static void axpy(float *y, float a, const float *x, int n) {
    for (int d = 0; d < n; d++) y[d] += a * x[d];
}

typedef struct {
    const float *q, *k, *v; /* q (B,Tq,D); k, v (B,kv_rows,D) */
    int B, Tq, H, f, D;
    int64_t kv_rows, q_off;
    float scale;
} fwd_args;

/* Online-softmax state of one query row, f + 2 floats: the unnormalised
 * output acc (f), then the running max m and the running sum l. */
static void rows_reset(float *st, size_t rows, int f) {
    for (size_t r = 0; r < rows; r++) {
        float *rs = st + r * (f + 2);
        memset(rs, 0, (size_t)f * sizeof(float));
        rs[f] = -INFINITY;
        rs[f + 1] = 0.0f;
    }
}

/* Turns the scores s[0..nv) of one row into exp(s - new max), zeroes
 * s[nv..nc) (masked keys), and rescales the row state rs to the new max. */
static void online_softmax_row(float *s, int nv, int nc, float *rs, int f) {
    float m = rs[f], mx = m;
    for (int c = 0; c < nv; c++) mx = s[c] > mx ? s[c] : mx;
    for (int c = 0; c < nv; c++) s[c] = ttt_expf(s[c] - mx);
    for (int c = nv; c < nc; c++) s[c] = 0.0f;
    if (mx != m) {
        float alpha = isinf(m) ? 0.0f : ttt_expf(m - mx);
        for (int d = 0; d < f + 2; d++) rs[d] *= alpha; /* acc and l */
        rs[f] = mx;
    }
    rs[f + 1] += row_sum(s, nv);
}

/* Merges row states of nsplit key ranges, split s at base + s*stride, into
 * the first. */
static void merge_rows(float *base, size_t rows, size_t stride, int nsplit, int f) {
    for (int s = 1; s < nsplit; s++)
        for (size_t r = 0; r < rows; r++) {
            float *dst = base + r * (f + 2);
            const float *src = base + s * stride + r * (f + 2);
            if (isinf(src[f])) continue;
            float mx = src[f] > dst[f] ? src[f] : dst[f];
            float wd = isinf(dst[f]) ? 0.0f : ttt_expf(dst[f] - mx), ws = ttt_expf(src[f] - mx);
            for (int d = 0; d < f; d++) dst[d] = dst[d] * wd + src[d] * ws;
            dst[f + 1] = dst[f + 1] * wd + src[f + 1] * ws;
            dst[f] = mx;
        }
}

/* Output row (f) and logsumexp (may be NULL) of a finished row state. */
static void finish_row(const float *rs, float *orow, float *lse, int f) {
    float inv = 1.0f / rs[f + 1];
    for (int d = 0; d < f; d++) orow[d] = rs[d] * inv;
    if (lse) *lse = rs[f] + logf(rs[f + 1]);
}

/* How many key ranges to split a pass of `tasks` tasks into: 1 when there
 * are enough tasks for the threads, more (each >= 4 key tiles) for a few
 * queries over a long cache. */
static int split_count(long tasks, int64_t keys, int nth) {
    if (nth <= 1 || tasks >= 2L * nth) return 1;
    long want = (2L * nth + tasks - 1) / tasks;
    int64_t most = keys / (4 * BC);
    return (int)(want < most ? want : most > 1 ? most : 1);
}

/* Start of key range s of nsplit over keys [0, nk), in whole tiles. */
static int64_t split_at(int s, int nsplit, int64_t nk) {
    int64_t chunk = ((nk + BC - 1) / BC + nsplit - 1) / nsplit * BC;
    return min64(s * chunk, nk);
}

/* S (nr, BC) = scale Q (nr, f; row stride D) K (nc, f; row stride D)^T. */
static void tile_scores(float *S, const float *Q, const float *K, int nr, int nc, int f, int D, float scale) {
    if (nr >= SMALL_ROWS) {
        ttt_sgemm(0, 1, nr, nc, f, scale, Q, D, K, D, 0.0f, S, BC);
        return;
    }
    for (int r = 0; r < nr; r++)
        for (int c = 0; c < nc; c++) S[(size_t)r * BC + c] = scale * dot8(Q + (size_t)r * D, K + (size_t)c * D, f);
}

/* acc (nr, f; row stride f+2) += P (nr, BC) V (nc, f; row stride D). */
static void tile_pv(float *acc, const float *P, const float *V, int nr, int nc, int f, int D) {
    if (nr >= SMALL_ROWS) {
        ttt_sgemm(0, 0, nr, f, nc, 1.0f, P, BC, V, D, 1.0f, acc, f + 2);
        return;
    }
    for (int r = 0; r < nr; r++)
        for (int c = 0; c < nc; c++) axpy(acc + (size_t)r * (f + 2), P[(size_t)r * BC + c], V + (size_t)c * D, f);
}

/* Folds keys [kbeg, kend) into the row states st (BR, f+2) of query rows
 * i0 .. i0+nr of head h of batch b. S: (BR, BC) scratch. */
static void fwd_tile(const fwd_args *a, int b, int h, int i0, int nr, int64_t kbeg, int64_t kend, float *st,
                     float *S) {
    const int D = a->D, f = a->f;
    const float *Q = a->q + ((size_t)b * a->Tq + i0) * D + (size_t)h * f;
    const float *K = a->k + (size_t)b * a->kv_rows * D + (size_t)h * f;
    const float *V = a->v + (size_t)b * a->kv_rows * D + (size_t)h * f;
    for (int64_t j0 = kbeg; j0 < kend; j0 += BC) {
        int nc = (int)min64(BC, kend - j0);
        tile_scores(S, Q, K + (size_t)j0 * D, nr, nc, f, D, a->scale);
        for (int r = 0; r < nr; r++)
            online_softmax_row(S + (size_t)r * BC, attn_visible(a->q_off + i0 + r, j0, nc), nc,
                               st + (size_t)r * (f + 2), f);
        tile_pv(st, S, V + (size_t)j0 * D, nr, nc, f, D);
    }
}

/* Query tile `tile` of the tiled pass, numbered so that the longest (last)
 * query tiles come first: batch*H + head bh, first row i0, rows nr. */
typedef struct {
    int bh, i0, nr;
} tile_pos;

static tile_pos tile_at(const fwd_args *a, long tile) {
    long bhs = (long)a->B * a->H;
    int nqt = (a->Tq + BR - 1) / BR, i0 = (nqt - 1 - (int)(tile / bhs)) * BR;
    tile_pos p = {(int)(tile % bhs), i0, a->Tq - i0 < BR ? a->Tq - i0 : BR};
    return p;
}

/* Writes the output rows and logsumexp (lse may be NULL) of a finished
 * query tile from its row states st (BR, f+2). */
static void finish_tile(const fwd_args *a, const float *st, float *o, float *lse, tile_pos p) {
    int b = p.bh / a->H, h = p.bh % a->H, f = a->f;
    for (int r = 0; r < p.nr; r++)
        finish_row(st + (size_t)r * (f + 2), o + ((size_t)b * a->Tq + p.i0 + r) * a->D + (size_t)h * f,
                   lse ? lse + (size_t)p.bh * a->Tq + p.i0 + r : NULL, f);
}

/* Many queries: one task per (query tile, batch, head, key range); the
 * tiles are products of OpenBLAS. Key ranges (nsplit > 1) only when there
 * are too few query tiles for the threads; their states merge at the end. */
static int forward_tiles(const fwd_args *a, float *o, float *lse, int nth) {
    const int f = a->f;
    long tiles = (long)a->B * a->H * ((a->Tq + BR - 1) / BR);
    int nsplit = split_count(tiles, a->q_off + a->Tq, nth);
    size_t st_size = (size_t)BR * (f + 2), per_thread = (size_t)BR * BC + (nsplit == 1 ? st_size : 0);
    float *scratch = malloc((size_t)nth * per_thread * sizeof(float));
    float *parts = nsplit > 1 ? malloc((size_t)tiles * nsplit * st_size * sizeof(float)) : NULL;
    if (!scratch || (nsplit > 1 && !parts)) {
        free(scratch);
        free(parts);
        return VTTT_ENOMEM;
    }
    int nb = ttt_blas_serial_begin();
    double work = (double)a->B * a->H * a->Tq * (a->q_off + a->Tq) * f * VTTT_COST_ATTN;
#pragma omp parallel for schedule(dynamic, 1) num_threads(nth) if (VTTT_PAR(work))
    for (long t = 0; t < tiles * nsplit; t++) {
        float *S = scratch + (size_t)omp_get_thread_num() * per_thread;
        tile_pos p = tile_at(a, t / nsplit);
        int s = (int)(t % nsplit);
        int64_t nk = a->q_off + p.i0 + p.nr;
        float *st = nsplit > 1 ? parts + (size_t)t * st_size : S + (size_t)BR * BC;
        rows_reset(st, BR, f);
        fwd_tile(a, p.bh / a->H, p.bh % a->H, p.i0, p.nr, split_at(s, nsplit, nk), split_at(s + 1, nsplit, nk), st,
                 S);
        if (nsplit == 1) finish_tile(a, st, o, lse, p);
    }
    ttt_blas_serial_end(nb);
    if (nsplit > 1) {
#pragma omp parallel for schedule(static) num_threads(nth) if (VTTT_PAR((double)tiles * nsplit * BR * f))
        for (long tile = 0; tile < tiles; tile++) {
            float *st = parts + (size_t)tile * nsplit * st_size;
            merge_rows(st, BR, st_size, nsplit, f);
            finish_tile(a, st, o, lse, tile_at(a, tile));
        }
    }
    free(parts);
    free(scratch);
    return VTTT_OK;
}

/* Folds keys [kbeg, kend) into the row states st (H, Tq, f+2) of all Tq
 * (< SMALL_ROWS) queries of batch b, every head at once, walking key and
 * value rows whole so the KV cache streams from memory in order.
 * S: (H*Tq, BC) scratch. */
static void fwd_few(const fwd_args *a, int b, int64_t kbeg, int64_t kend, float *st, float *S) {
    const int D = a->D, f = a->f, nq = a->Tq, rows = a->H * a->Tq;
    const float *Q = a->q + (size_t)b * nq * D;
    const float *K = a->k + (size_t)b * a->kv_rows * D, *V = a->v + (size_t)b * a->kv_rows * D;
    for (int64_t j0 = kbeg; j0 < kend; j0 += BC) {
        int nc = (int)min64(BC, kend - j0);
        for (int c = 0; c < nc; c++) {
            const float *kr = K + (size_t)(j0 + c) * D;
            for (int x = 0; x < rows; x++) /* x = h*nq + r */
                S[(size_t)x * BC + c] = a->scale * dot8(Q + (size_t)(x % nq) * D + (x / nq) * f, kr + (x / nq) * f, f);
        }
        for (int x = 0; x < rows; x++)
            online_softmax_row(S + (size_t)x * BC, attn_visible(a->q_off + x % nq, j0, nc), nc,
                               st + (size_t)x * (f + 2), f);
        for (int c = 0; c < nc; c++) {
            const float *vr = V + (size_t)(j0 + c) * D;
            for (int x = 0; x < rows; x++) axpy(st + (size_t)x * (f + 2), S[(size_t)x * BC + c], vr + (x / nq) * f, f);
        }
    }
}

/* Few queries (decode): one task per (batch, key range). */
static int forward_few(const fwd_args *a, float *o, float *lse, int nth) {
    const int B = a->B, H = a->H, Tq = a->Tq, f = a->f;
    int64_t nk = a->q_off + Tq;
    int nsplit = split_count(B, nk, nth);
    size_t rows = (size_t)H * Tq, st_size = rows * (f + 2);
    float *parts = malloc((size_t)B * nsplit * st_size * sizeof(float));
    float *scratch = malloc((size_t)nth * rows * BC * sizeof(float));
    if (!parts || !scratch) {
        free(parts);
        free(scratch);
        return VTTT_ENOMEM;
    }
    double work = (double)B * H * Tq * nk * f * VTTT_COST_ATTN;
#pragma omp parallel for schedule(dynamic, 1) num_threads(nth) if (VTTT_PAR(work))
    for (long t = 0; t < (long)B * nsplit; t++) {
        int b = (int)(t / nsplit), s = (int)(t % nsplit);
        float *st = parts + (size_t)t * st_size;
        rows_reset(st, rows, f);
        fwd_few(a, b, split_at(s, nsplit, nk), split_at(s + 1, nsplit, nk), st,
                scratch + (size_t)omp_get_thread_num() * rows * BC);
    }
    for (int b = 0; b < B; b++) {
        float *p = parts + (size_t)b * nsplit * st_size;
        merge_rows(p, rows, st_size, nsplit, f);
        for (size_t x = 0; x < rows; x++) {
            int h = (int)(x / Tq), r = (int)(x % Tq);
            finish_row(p + x * (f + 2), o + ((size_t)b * Tq + r) * a->D + (size_t)h * f,
                       lse ? lse + ((size_t)b * H + h) * Tq + r : NULL, f);
        }
    }
    free(parts);
    free(scratch);
    return VTTT_OK;
}

int ttt_flash_forward(float *o, float *lse, const float *q, const float *k, const float *v, int B, int Tq,
                      int64_t kv_rows, int64_t q_off, int H, int f) {
    fwd_args a = {q, k, v, B, Tq, H, f, H * f, kv_rows, q_off, 1.0f / sqrtf((float)f)};
    int nth = omp_get_max_threads();
    return Tq < SMALL_ROWS ? forward_few(&a, o, lse, nth) : forward_tiles(&a, o, lse, nth);
}
