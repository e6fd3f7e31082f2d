/*
 * Causal softmax attention on the CPU, FlashAttention style: queries and
 * keys are cut into tiles, scores of one (query tile, key tile) pair are
 * formed with a small GEMM, and an online softmax folds them into the
 * output, so memory stays O(T) at any sequence length. The backward pass
 * recomputes the tiles from the saved logsumexp (FlashAttention-2).
 *
 * Tile GEMMs go to OpenBLAS from inside OpenMP threads, so OpenBLAS is held
 * at one thread for the duration of each parallel section.
 */
/* The softmax loops below vectorise only when float compares may be
 * if-converted; nothing here relies on floating-point exception flags. */
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC optimize("no-trapping-math")
#endif

#include <cblas.h>
#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>

#include "attention_internal.h"
#include "ops.h"
#include "ttt.h"

enum { BR = 64, BC = 64 }; /* query rows, key columns of a tile */

/* expf for the arguments softmax needs (x <= 0, small x > 0 tolerated):
 * Cephes' range reduction and polynomial, about 1 ulp, with no branches so
 * the loops that call it vectorise. Results below ~1e-38 flush to ~1e-38. */
static inline float attn_exp(float x) {
    x = x < -87.0f ? -87.0f : x;
    x = x > 88.0f ? 88.0f : x;
    float n = (x * 1.44269504088896341f + 12582912.0f) - 12582912.0f; /* round to nearest */
    float r = x - n * 0.693359375f;
    r = r + n * 2.12194440e-4f;
    float p = 1.9875691500e-4f;
    p = p * r + 1.3981999507e-3f;
    p = p * r + 8.3334519073e-3f;
    p = p * r + 4.1665795894e-2f;
    p = p * r + 1.6666665459e-1f;
    p = p * r + 5.0000001201e-1f;
    p = p * r * r + r + 1.0f;
    int32_t e = ((int32_t)n + 127) << 23;
    float sc;
    memcpy(&sc, &e, sizeof sc);
    return p * sc;
}

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

/* Holds OpenBLAS at one thread while OpenMP threads call it; returns the
 * count to restore. */
static int blas_serial_begin(void) {
    int n = openblas_get_num_threads();
    if (n > 1) openblas_set_num_threads(1);
    return n;
}

static void blas_serial_end(int n) {
    if (n > 1) openblas_set_num_threads(n);
}

static int64_t min64(int64_t a, int64_t b) { return a < b ? a : b; }

/* Keys of tile [j0, j0+nc) visible to the query at position p. */
static int visible_cols(int64_t p, int64_t j0, int nc) {
    int64_t nv = p - j0 + 1;
    return nv < 0 ? 0 : nv > nc ? nc : (int)nv;
}

/* ---- forward ------------------------------------------------------------ */

typedef struct {
    const float *q, *k, *v; /* q (B,Tq,D); k, v (B,kv_rows,D) */
    int B, Tq, H, f, D;
    int64_t kv_rows, q_off;
    float scale;
} fwd_args;

/* Online-softmax state of one query tile: acc (BR, f) the unnormalised
 * output, m (BR) the running max, l (BR) the running sum. */
typedef struct {
    float *acc, *m, *l;
} softmax_state;

static softmax_state state_at(float *mem, int f) {
    softmax_state st = {mem, mem + (size_t)BR * f, mem + (size_t)BR * f + BR};
    return st;
}

static void state_reset(softmax_state st, int f) {
    memset(st.acc, 0, (size_t)BR * f * sizeof(float));
    for (int r = 0; r < BR; r++) {
        st.m[r] = -INFINITY;
        st.l[r] = 0.0f;
    }
}

/* Turns the scores s[0..nv) of one row into exp(s - new max), zeroes
 * s[nv..nc) (masked keys), and rescales the row's running sum and
 * accumulator (f) to the new max. */
static void online_softmax_row(float *s, int nv, int nc, float *m, float *l, float *acc, int f) {
    float mx = *m;
    for (int c = 0; c < nv; c++) mx = s[c] > mx ? s[c] : mx;
    for (int c = 0; c < nv; c++) s[c] = attn_exp(s[c] - mx);
    for (int c = nv; c < nc; c++) s[c] = 0.0f;
    if (mx != *m) {
        float alpha = isinf(*m) ? 0.0f : attn_exp(*m - mx);
        *l *= alpha;
        for (int d = 0; d < f; d++) acc[d] *= alpha;
        *m = mx;
    }
    *l += row_sum(s, nv);
}

/* Below this many query rows (decode, short prefill) a tile's products are
 * plain loops: BLAS would spend more time packing the key tile than
 * multiplying, and the work is bound by reading the KV cache anyway. */
enum { SMALL_ROWS = 8 };

/* dot of a and b (n) in eight lanes, so it vectorises. */
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

/* S (nr, BC) = scale * Q (nr, f; row stride D) . K (nc, f; row stride D)^T. */
static void tile_scores(float *S, const float *Q, const float *K, int nr, int nc, int f, int D, float scale) {
    if (nr >= SMALL_ROWS) {
        ttt_sgemm(0, 1, nr, nc, f, scale, Q, D, K, D, 0.0f, S, BC);
        return;
    }
    for (int r = 0; r < nr; r++)
        for (int c = 0; c < nc; c++) S[(size_t)r * BC + c] = scale * dot8(Q + (size_t)r * D, K + (size_t)c * D, f);
}

/* acc (nr, f) += P (nr, BC) . V (nc, f; row stride D). */
static void tile_pv(float *acc, const float *P, const float *V, int nr, int nc, int f, int D) {
    if (nr >= SMALL_ROWS) {
        ttt_sgemm(0, 0, nr, f, nc, 1.0f, P, BC, V, D, 1.0f, acc, f);
        return;
    }
    for (int r = 0; r < nr; r++) {
        float *o = acc + (size_t)r * f;
        for (int c = 0; c < nc; c++) {
            float p = P[(size_t)r * BC + c];
            const float *v = V + (size_t)c * D;
            for (int d = 0; d < f; d++) o[d] += p * v[d];
        }
    }
}

/* Folds keys [kbeg, kend) into the state of query rows i0 .. i0+nr of head
 * h of batch b. S: (BR, BC) scratch. */
static void fwd_tile(const fwd_args *a, int b, int h, int i0, int nr, int64_t kbeg, int64_t kend,
                     softmax_state st, float *S) {
    const int D = a->D, f = a->f;
    const float *Q = a->q + ((size_t)b * a->Tq + i0) * D + (size_t)h * f;
    const float *K = a->k + (size_t)b * a->kv_rows * D + (size_t)h * f;
    const float *V = a->v + (size_t)b * a->kv_rows * D + (size_t)h * f;
    int64_t p0 = a->q_off + i0;
    for (int64_t j0 = kbeg; j0 < kend; j0 += BC) {
        int nc = (int)min64(BC, kend - j0);
        tile_scores(S, Q, K + (size_t)j0 * D, nr, nc, f, D, a->scale);
        for (int r = 0; r < nr; r++)
            online_softmax_row(S + (size_t)r * BC, visible_cols(p0 + r, j0, nc), nc, &st.m[r], &st.l[r],
                               st.acc + (size_t)r * f, f);
        tile_pv(st.acc, S, V + (size_t)j0 * D, nr, nc, f, D);
    }
}

/* Writes the normalised output rows (and their logsumexp) of a finished
 * query tile. */
static void fwd_finish(const fwd_args *a, softmax_state st, float *o, float *lse, int b, int h, int i0, int nr) {
    const int D = a->D, f = a->f;
    for (int r = 0; r < nr; r++) {
        float inv = 1.0f / st.l[r];
        float *orow = o + ((size_t)b * a->Tq + i0 + r) * D + (size_t)h * f;
        for (int d = 0; d < f; d++) orow[d] = st.acc[(size_t)r * f + d] * inv;
        if (lse) lse[((size_t)b * a->H + h) * a->Tq + i0 + r] = st.m[r] + logf(st.l[r]);
    }
}

/* Merges the nsplit partial states of one query tile (split-K over keys)
 * into the first of them. */
static void merge_splits(float *parts, int nsplit, int f) {
    softmax_state dst = state_at(parts, f);
    size_t stride = (size_t)BR * (f + 2);
    for (int s = 1; s < nsplit; s++) {
        softmax_state src = state_at(parts + s * stride, f);
        for (int r = 0; r < BR; r++) {
            if (isinf(src.m[r])) continue;
            float mx = src.m[r] > dst.m[r] ? src.m[r] : dst.m[r];
            float wd = isinf(dst.m[r]) ? 0.0f : attn_exp(dst.m[r] - mx), ws = attn_exp(src.m[r] - mx);
            for (int d = 0; d < f; d++)
                dst.acc[(size_t)r * f + d] = dst.acc[(size_t)r * f + d] * wd + src.acc[(size_t)r * f + d] * ws;
            dst.l[r] = dst.l[r] * wd + src.l[r] * ws;
            dst.m[r] = mx;
        }
    }
}

/* How many key ranges each query tile is split into: 1 when there are
 * enough (batch, head, query tile) tasks for the threads, more for short
 * query blocks over a long cache (decode), each range >= 4 key tiles. */
static int choose_split(long tasks, int64_t keys, int nth) {
    if (nth <= 1 || tasks >= 2L * nth) return 1;
    long want = (2L * nth + tasks - 1) / tasks;
    int64_t most = keys / (4 * BC);
    return (int)(want < most ? want : most > 1 ? most : 1);
}

int ttt_flash_forward(float *o, float *lse, const float *q, const float *k, const float *v, int B, int Tq,
                      int64_t kv_rows, int64_t q_off, int H, int f) {
    fwd_args a = {q, k, v, B, Tq, H, f, H * f, kv_rows, q_off, 1.0f / sqrtf((float)f)};
    int nqt = (Tq + BR - 1) / BR, nth = omp_get_max_threads();
    long tiles = (long)B * H * nqt;
    int nsplit = choose_split(tiles, q_off + Tq, nth);
    size_t st_size = (size_t)BR * (f + 2), per_thread = (size_t)BR * BC + st_size;
    float *scratch = malloc((size_t)nth * per_thread * sizeof(float));
    float *parts = nsplit > 1 ? malloc((size_t)tiles * nsplit * st_size * sizeof(float)) : NULL;
    if (!scratch || (nsplit > 1 && !parts)) {
        free(scratch);
        free(parts);
        return VTTT_ENOMEM;
    }
    int nb = blas_serial_begin();
    /* Longest tasks (last query tiles) first. */
#pragma omp parallel for schedule(dynamic, 1) num_threads(nth)
    for (long t = 0; t < tiles * nsplit; t++) {
        float *S = scratch + (size_t)omp_get_thread_num() * per_thread;
        long tile = t / nsplit;
        int s = (int)(t % nsplit), qt = nqt - 1 - (int)(tile / ((long)B * H));
        int bh = (int)(tile % ((long)B * H)), b = bh / H, h = bh % H;
        int i0 = qt * BR, nr = Tq - i0 < BR ? Tq - i0 : BR;
        int64_t nk = q_off + i0 + nr, chunk = ((nk + BC - 1) / BC + nsplit - 1) / nsplit * BC;
        softmax_state st = state_at(nsplit > 1 ? parts + (size_t)t * st_size : S + (size_t)BR * BC, f);
        state_reset(st, f);
        fwd_tile(&a, b, h, i0, nr, min64(s * chunk, nk), min64((s + 1) * chunk, nk), st, S);
        if (nsplit == 1) fwd_finish(&a, st, o, lse, b, h, i0, nr);
    }
    blas_serial_end(nb);
    if (nsplit > 1) {
#pragma omp parallel for schedule(static)
        for (long tile = 0; tile < tiles; tile++) {
            float *p = parts + (size_t)tile * nsplit * st_size;
            int qt = nqt - 1 - (int)(tile / ((long)B * H)), bh = (int)(tile % ((long)B * H));
            int i0 = qt * BR, nr = Tq - i0 < BR ? Tq - i0 : BR;
            merge_splits(p, nsplit, f);
            fwd_finish(&a, state_at(p, f), o, lse, bh / H, bh % H, i0, nr);
        }
    }
    free(parts);
    free(scratch);
    return VTTT_OK;
}

/* ---- backward ----------------------------------------------------------- */

typedef struct {
    const float *q, *k, *v, *dout; /* (B,T,D) */
    const float *lse, *delta;      /* (B,H,T) */
    int T, H, f, D;
    float scale;
} bwd_args;

/* Recomputes one (query tile, key tile) pair of head h of batch b:
 * P (nr, BC) the attention probabilities, zero where key > query, and
 * dS (nr, BC) = P * (dO V^T - delta), the gradient of the scaled scores. */
static void bwd_tile(const bwd_args *a, int b, int h, int i0, int nr, int j0, int nc, float *P, float *dS) {
    const int D = a->D, f = a->f;
    size_t base = (size_t)b * a->T * D + (size_t)h * f;
    const float *lse = a->lse + ((size_t)b * a->H + h) * a->T + i0;
    const float *delta = a->delta + ((size_t)b * a->H + h) * a->T + i0;
    ttt_sgemm(0, 1, nr, nc, f, a->scale, a->q + base + (size_t)i0 * D, D, a->k + base + (size_t)j0 * D, D, 0.0f, P,
              BC);
    ttt_sgemm(0, 1, nr, nc, f, 1.0f, a->dout + base + (size_t)i0 * D, D, a->v + base + (size_t)j0 * D, D, 0.0f,
              dS, BC);
    for (int r = 0; r < nr; r++) {
        float *p = P + (size_t)r * BC, *ds = dS + (size_t)r * BC;
        int nv = visible_cols(i0 + r, j0, nc);
        for (int c = 0; c < nv; c++) {
            p[c] = attn_exp(p[c] - lse[r]);
            ds[c] = p[c] * (ds[c] - delta[r]);
        }
        for (int c = nv; c < nc; c++) p[c] = ds[c] = 0.0f;
    }
}

/* dq rows of one query tile += sum over visible key tiles of dS K scale. */
static void bwd_dq_tile(const bwd_args *a, float *dq, int b, int h, int i0, int nr, float *P, float *dS) {
    size_t base = (size_t)b * a->T * a->D + (size_t)h * a->f;
    for (int j0 = 0; j0 < i0 + nr; j0 += BC) {
        int nc = i0 + nr - j0 < BC ? i0 + nr - j0 : BC;
        bwd_tile(a, b, h, i0, nr, j0, nc, P, dS);
        ttt_sgemm(0, 0, nr, a->f, nc, a->scale, dS, BC, a->k + base + (size_t)j0 * a->D, a->D, 1.0f,
                  dq + base + (size_t)i0 * a->D, a->D);
    }
}

/* dk, dv rows of one key tile += sums over the query tiles that see it:
 * dV += P^T dO, dK += dS^T Q scale. */
static void bwd_dkv_tile(const bwd_args *a, float *dk, float *dv, int b, int h, int j0, int nc, float *P,
                         float *dS) {
    const int D = a->D, f = a->f;
    size_t base = (size_t)b * a->T * D + (size_t)h * f;
    for (int i0 = j0 / BR * BR; i0 < a->T; i0 += BR) {
        int nr = a->T - i0 < BR ? a->T - i0 : BR;
        bwd_tile(a, b, h, i0, nr, j0, nc, P, dS);
        ttt_sgemm(1, 0, nc, f, nr, 1.0f, P, BC, a->dout + base + (size_t)i0 * D, D, 1.0f, dv + base + (size_t)j0 * D,
                  D);
        ttt_sgemm(1, 0, nc, f, nr, a->scale, dS, BC, a->q + base + (size_t)i0 * D, D, 1.0f,
                  dk + base + (size_t)j0 * D, D);
    }
}

/* delta (B,H,T) = rowsum(dO * O) per head. */
static void bwd_delta(float *delta, const float *dout, const float *o, int B, int T, int H, int f) {
    long rows = (long)B * T;
#pragma omp parallel for schedule(static)
    for (long n = 0; n < rows; n++) {
        int b = (int)(n / T), t = (int)(n % T);
        for (int h = 0; h < H; h++) {
            const float *x = dout + (size_t)n * H * f + (size_t)h * f, *y = o + (size_t)n * H * f + (size_t)h * f;
            double s = 0.0;
            for (int d = 0; d < f; d++) s += (double)x[d] * y[d];
            delta[((size_t)b * H + h) * T + t] = (float)s;
        }
    }
}

/* Two passes so that every task owns the rows it writes: one over query
 * tiles for dq, one over key tiles for dk and dv (each recomputes P). */
int ttt_flash_backward(float *dq, float *dk, float *dv, const float *dout, const float *q, const float *k,
                       const float *v, const float *o, const float *lse, int B, int T, int H, int f) {
    int nth = omp_get_max_threads(), nt = (T + BR - 1) / BR, nkt = (T + BC - 1) / BC;
    size_t per_thread = 2 * (size_t)BR * BC;
    float *scratch = malloc((size_t)nth * per_thread * sizeof(float));
    float *delta = malloc((size_t)B * H * T * sizeof(float));
    if (!scratch || !delta) {
        free(scratch);
        free(delta);
        return VTTT_ENOMEM;
    }
    bwd_delta(delta, dout, o, B, T, H, f);
    bwd_args a = {q, k, v, dout, lse, delta, T, H, f, H * f, 1.0f / sqrtf((float)f)};
    long bh = (long)B * H;
    int nb = blas_serial_begin();
#pragma omp parallel num_threads(nth)
    {
        float *P = scratch + (size_t)omp_get_thread_num() * per_thread, *dS = P + (size_t)BR * BC;
        /* Longest tasks first: late query tiles, early key tiles. */
#pragma omp for schedule(dynamic, 1)
        for (long t = 0; t < bh * nt; t++) {
            int qt = nt - 1 - (int)(t / bh), i0 = qt * BR;
            bwd_dq_tile(&a, dq, (int)(t % bh) / H, (int)(t % bh) % H, i0, T - i0 < BR ? T - i0 : BR, P, dS);
        }
#pragma omp for schedule(dynamic, 1)
        for (long t = 0; t < bh * nkt; t++) {
            int j0 = (int)(t / bh) * BC;
            bwd_dkv_tile(&a, dk, dv, (int)(t % bh) / H, (int)(t % bh) % H, j0, T - j0 < BC ? T - j0 : BC, P, dS);
        }
    }
    blas_serial_end(nb);
    free(delta);
    free(scratch);
    return VTTT_OK;
}
