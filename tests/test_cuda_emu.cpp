/* The fused TTT kernels (ttt/cuda/ttt_fused_*.cu) and the device layer's
 * CUDA ops (ttt/cuda/layer_cuda.cu), their device code and launchers as
 * written, compiled with g++ against the CPU emulation of CUDA in
 * ttt/cuda/cuda_emu.h (every CUDA thread a fiber; __syncthreads and the
 * warp shuffles real barriers; dynamic shared memory of exactly the
 * launch's size, NaN-filled) and checked against the CPU reference:
 *
 * - through ttt_cuda_check_layer_ops (the harness of test_ttt_cuda): the
 *   training prefill's Z and checkpoints, the final state, decode steps
 *   then a prefill from inside a mini-batch, and the backward (dXQ, dXK,
 *   dXV, dlr, the inner parameters' gradients), for TTT-Linear and
 *   TTT-MLP at head dim 64 (the 125m preset's), with the shared-memory
 *   opt-in limit of an H100 (227 KiB: state and scratch on chip), an A100
 *   (163 KiB: TTT-MLP's state in global memory, and its backward scratch
 *   too) and 48 KiB (everything that does not fit in global memory), so
 *   every placement path of the launchers runs;
 * - through ttt_layer_dev_check_run_ops: the whole device layer with these
 *   ops (outer part on the host backend's table), including the decode
 *   path's fallback when graph capture fails (the emulation has no graphs)
 *   and the bf16 projections' wiring (emulated conversions);
 * - the CUDA backend table's own ops (linear_cuda.cu, norm_cuda.cu,
 *   pointwise_cuda.cu, rotary_cuda.cu, conv1d_cuda.cu, token_cuda.cu; the
 *   same comparisons as test_cuda, cuBLAS's Sgemm a plain loop here), and
 *   the device layer on that table: the GPU path end to end.
 *
 * Tolerances are those of the GPU tests (TTT_CUDA_TOL_* in
 * ttt/cuda/ttt_cuda.h): the emulation computes in fp32 in the kernels'
 * order of operations, which differs from the CPU's as the GPU's would
 * (observed ~1e-6). What the emulation cannot show: timing, real
 * concurrency between fibers of a warp outside the barriers (fibers switch
 * only at barriers), FMA contraction, and the CUDA graph and cuBLAS(Lt)
 * calls, which stay GPU-only. */
#define TTT_CUDA_EMU 1

#include <check.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <vector>

#include "backend.h"
#include "cuda/cuda_emu.h"
#include "cuda/ttt_cuda.h"
#include "layer_dev.h"
#include "layer_dev_elem.h"
#include "ops.h"
#include "ttt.h"
#include "ttt_inner.h"
extern "C" {
#include "testutil.h"
}

/* The included sources' extern "C" entry points, renamed so that they do
 * not collide with the library's (the real CUDA ones or the stubs). */
#define ttt_cuda_state_init emu_ttt_cuda_state_init
#define ttt_cuda_prefill emu_ttt_cuda_prefill
#define ttt_cuda_decode emu_ttt_cuda_decode
#define ttt_cuda_backward emu_ttt_cuda_backward
#define ttt_dev_ops_cuda emu_ttt_dev_ops_cuda
#define ttt_cuda_linear_bf16 emu_ttt_cuda_linear_bf16
#define ttt_cuda_to_bf16 emu_ttt_cuda_to_bf16

namespace ttt_emu {
#include "cuda/cuda_internal.h"

int ttt_cuda_err(const vttt_logger *lg, cudaError_t e, const char *what) {
    if (e == cudaSuccess) return VTTT_OK;
    vttt_log(lg, VTTT_LOG_ERROR, "CUDA (emulated): %s failed (%d)", what, (int)e);
    return e == cudaErrorNotSupported ? VTTT_ENOTSUP : e == cudaErrorMemoryAllocation ? VTTT_ENOMEM : VTTT_EINVAL;
}

/* bf16 of the device layer, emulated on the host with the library's own
 * rounding: what is checked is the layer's use of them. */
extern "C" int ttt_cuda_to_bf16(const vttt_backend *be, uint16_t *dst, const float *src, size_t n) {
    for (size_t i = 0; i < n; i++) dst[i] = vttt_f32_to_bf16(src[i]);
    return VTTT_OK;
}

extern "C" int ttt_cuda_linear_bf16(const vttt_backend *be, float *out, const float *inp, const uint16_t *wb,
                                    uint16_t *xb, int N, int C, int OC) {
    size_t nx = (size_t)N * C, nw = (size_t)OC * C;
    float *x = (float *)malloc(nx * sizeof(float)), *w = (float *)malloc(nw * sizeof(float));
    if (!x || !w) {
        free(x), free(w);
        return VTTT_ENOMEM;
    }
    ttt_cuda_to_bf16(be, xb, inp, nx);
    for (size_t i = 0; i < nx; i++) x[i] = vttt_bf16_to_f32(xb[i]);
    for (size_t i = 0; i < nw; i++) w[i] = vttt_bf16_to_f32(wb[i]);
    int err = vttt_backend_cpu()->linear_forward(NULL, out, x, w, NULL, N, C, OC);
    free(x), free(w);
    return err;
}

int ttt_cublas_err(const vttt_logger *lg, cublasStatus_t st, const char *what) {
    if (st == CUBLAS_STATUS_SUCCESS) return VTTT_OK;
    vttt_log(lg, VTTT_LOG_ERROR, "cuBLAS (emulated): %s failed (%d)", what, (int)st);
    return VTTT_EINVAL;
}

void ttt_cuda_check_launch(const char *what) {
    if (cudaPeekAtLastError() != cudaSuccess)
        vttt_log(NULL, VTTT_LOG_ERROR, "CUDA (emulated): %s: launch failed", what);
}

#include "cuda/ttt_fused_fwd.cu" /* before layer_cuda.cu, whose table names its launchers */
#include "cuda/ttt_fused_bwd.cu"
#include "cuda/layer_cuda.cu"
#include "cuda/conv1d_cuda.cu"
#include "cuda/linear_cuda.cu"
#include "cuda/norm_cuda.cu"
#include "cuda/pointwise_cuda.cu"
#include "cuda/rotary_cuda.cu"
#include "cuda/token_cuda.cu"
} // namespace ttt_emu

/* A backend whose table is the CPU's (host memory, the outer part's ops)
 * but which calls itself CUDA, with an emulated device context: dev picks
 * the shared-memory limit (cuda_emu.h). */
typedef struct {
    vttt_backend be;
    ttt_emu::ttt_cuda_ctx ctx;
} emu_backend;

static void emu_open(emu_backend *e, int dev) {
    memset(&e->ctx, 0, sizeof e->ctx);
    e->be = *vttt_backend_cpu();
    e->be.name = "cuda-emulated";
    e->be.device = VTTT_DEVICE_CUDA;
    e->be.ctx = &e->ctx;
    e->ctx.dev = dev;
    e->ctx.stream = cudaStreamPerThread;
    ttt_emu_rt::emu_dev = dev;
    /* The CPU table's ops run at once, outside any capture: graphs off
     * (a failed capture, as on a driver without graphs). */
    ttt_emu_rt::no_graphs = 1;
}

/* The same, with the CUDA backend's own ops (ttt_cuda_fill_ops, the list
 * that backend_cuda.cu's fill_table puts in, emulated) instead of the
 * CPU's; memory is still the host's. The image ops (cuDNN) stay NULL. */
static void emu_open_cuda_table(emu_backend *e) {
    emu_open(e, 0);
    ttt_emu_rt::no_graphs = 0; /* every op is a stream op: decode steps are captured and replayed */
    vttt_backend *be = &e->be;
    ttt_emu::ttt_cuda_fill_ops(be); /* the real table's list (cuda_internal.h) */
    be->conv2d_forward = NULL;
    be->conv2d_backward = NULL;
    be->groupnorm_forward = NULL;
    be->groupnorm_backward = NULL;
    be->upsample2x_forward = NULL;
    be->upsample2x_backward = NULL;
}

typedef struct {
    vttt_layer_kind kind;
    int D, H, b, B, T, group, n_decode;
} emu_case;

/* Head dim 64 as in the 125m preset; short sequences (the emulation runs
 * every CUDA thread). */
static const emu_case cases[] = {
    {VTTT_LAYER_TTT_LINEAR, 128, 2, 16, 2, 40, 1, 21}, /* 3 mini-batches (the last partial), group 1 */
    {VTTT_LAYER_TTT_MLP, 128, 2, 16, 1, 37, 2, 18},    /* h1 = 256 */
    {VTTT_LAYER_TTT_MLP, 32, 4, 8, 2, 21, 0, 5},       /* f = 8, b = 8 */
};
static const char *dev_names[3] = {"H100 (227 KiB)", "A100 (163 KiB)", "48 KiB"};
/* (case, device) pairs: TTT-MLP at f = 64 on all three limits (its state
 * and scratch move off chip one after the other), the others on two. */
static const int runs[][2] = {{0, 0}, {0, 2}, {1, 0}, {1, 1}, {1, 2}, {2, 0}};
#define NRUNS ((int)(sizeof runs / sizeof runs[0]))

/* The layer test_ttt_cuda checks on a GPU (tu_layer_clamped). */
static vttt_layer *make_layer(const emu_case *c, uint64_t seed) {
    return tu_layer_clamped(c->kind, c->D, c->H, c->b, c->group, seed);
}

START_TEST(test_fused_kernels) {
    int ci = runs[_i][0], dev = runs[_i][1];
    const emu_case *c = &cases[ci];
    emu_backend e;
    emu_open(&e, dev);
    ttt_dev_ops ops;
    memset(&ops, 0, sizeof ops);
    ops.state_init = ttt_emu::ttt_cuda_state_init;
    ops.prefill = ttt_emu::ttt_cuda_prefill;
    ops.decode = ttt_emu::ttt_cuda_decode;
    ops.backward = ttt_emu::ttt_cuda_backward;
    vttt_layer *l = make_layer(c, 70 + (uint64_t)ci);
    size_t n = (size_t)c->B * c->T * c->D;
    tu_rng r;
    tu_seed(&r, 5 + (uint64_t)ci);
    float *x = tu_alloc_normal(&r, n, 1.0f), *dy = tu_alloc_normal(&r, n, 1.0f);
    ttt_cuda_check res;
    int err = ttt_cuda_check_layer_ops(l, &e.be, &ops, x, dy, c->B, c->T, c->n_decode, &res);
    ck_assert_msg(err == VTTT_OK, "case %d on %s: %s", ci, dev_names[dev], vttt_strerror(err));
    printf("case %d, %s: Z %.2g ckpt %.2g state %.2g decode %.2g/%.2g | dXQ %.2g dXK %.2g dXV %.2g dlr %.2g "
           "params %.2g\n",
           ci, dev_names[dev], res.z, res.ckpt, res.state, res.decode, res.decode_state, res.dxq, res.dxk,
           res.dxv, res.dlr, res.dparams);
    ck_assert_msg(ttt_cuda_check_passed(&res), "case %d on %s: outside the tolerances (see the line above)", ci,
                  dev_names[dev]);
    free(x), free(dy);
    vttt_layer_free(&l);
}
END_TEST

/* A device layer run on e with the emulated CUDA layer ops: a layer of
 * kind (D 64, 2 heads, mini-batch 8; gate and shared QK as asked,
 * parameters from seed), B = 2 sequences of T tokens from data_seed,
 * generation as n_prefill tokens then n_decode steps
 * (ttt_layer_dev_check_run_ops), within the GPU tests' tolerances; the
 * graphs captured and replayed into *captured, *replays. */
static void check_device_layer(emu_backend *e, const char *what, vttt_layer_kind kind, int use_gate, int share_qk,
                               uint64_t seed, int T, uint64_t data_seed, int n_prefill, int n_decode, int *captured,
                               long *replays) {
    vttt_layer_config cfg = vttt_layer_default_config(kind, 64, 2);
    cfg.mini_batch = 8;
    cfg.use_gate = use_gate;
    cfg.share_qk = share_qk;
    vttt_layer *l = NULL;
    ck_assert_int_eq(vttt_layer_init(&l, &cfg, NULL), VTTT_OK);
    tu_layer_randomize(l, seed, 1.0f);
    int B = 2;
    size_t n = (size_t)B * T * 64;
    tu_rng r;
    tu_seed(&r, data_seed);
    float *x = tu_alloc_normal(&r, n, 1.0f), *dy = tu_alloc_normal(&r, n, 1.0f);
    ttt_layer_dev_check res;
    int err = ttt_layer_dev_check_run_ops(l, &e->be, ttt_emu::ttt_dev_ops_cuda(), x, dy, B, T, n_prefill, n_decode,
                                          &res);
    ck_assert_msg(err == VTTT_OK, "%s: %s", what, vttt_strerror(err));
    printf("%s: y %.2g dx %.2g params %.2g (%s) gen y %.2g state %.2g bf16 y %.2g graphs %d/%ld\n", what, res.y,
           res.dx, res.dparams, res.worst, res.gen_y, res.gen_state, res.bf16_y, res.captured, res.replays);
    ck_assert_msg(res.y <= TTT_CUDA_TOL_FWD, "y %g", res.y);
    ck_assert_msg(res.dx <= TTT_CUDA_TOL_BWD, "dx %g", res.dx);
    ck_assert_msg(res.dparams <= TTT_CUDA_TOL_PARAM, "gradient of %s %g", res.worst, res.dparams);
    ck_assert_msg(res.gen_y <= TTT_CUDA_TOL_FWD, "prefill/decode %g", res.gen_y);
    ck_assert_msg(res.gen_state <= TTT_CUDA_TOL_FWD, "W0/A %g", res.gen_state);
    ck_assert_msg(res.bf16_y <= 2e-2, "bf16 forward %g", res.bf16_y);
    *captured = res.captured;
    *replays = res.replays;
    free(x), free(dy);
    vttt_layer_free(&l);
}

/* The whole device layer with the emulated CUDA ops. */
START_TEST(test_device_layer) {
    emu_backend e;
    emu_open(&e, 0);
    e.ctx.log = tu_log_quiet(); /* the failed graph capture is expected */
    char what[64];
    snprintf(what, sizeof what, "device layer %d", _i);
    int captured;
    long replays;
    check_device_layer(&e, what, _i == 0 ? VTTT_LAYER_TTT_LINEAR : VTTT_LAYER_TTT_MLP, _i == 1, _i == 1,
                       90 + (uint64_t)_i, 22, 9, 5, 9, &captured, &replays);
    ck_assert_int_eq(captured, 0); /* graphs off with the CPU table: every step launched op by op */
    ck_assert_int_eq(replays, 0);
}
END_TEST

/* ---- the backend table's ops ---------------------------------------------------------
 * Each op of the emulated CUDA table against the CPU table on the same
 * data, with test_cuda's tolerances (1e-5 elementwise, 1e-4 for sums);
 * gradients are pre-filled with the same values on both sides, so an op
 * that overwrote instead of accumulating would differ. */
#define TOL_POINTWISE 1e-5
#define TOL_REDUCE 1e-4

typedef struct {
    std::vector<float> c, g; /* CPU side, emulated side */
} both;

static both rnd(tu_rng *r, size_t n, float scale) {
    both b;
    b.c.resize(n);
    tu_fill_normal(r, b.c.data(), n, scale);
    b.g = b.c;
    return b;
}

static void expect(const char *what, both &b, double tol) {
    double e = tu_rel_err(b.g.data(), b.c.data(), b.c.size());
    ck_assert_msg(e <= tol, "%s: emulated CUDA vs CPU relative error %.3g > %.3g", what, e, tol);
}

START_TEST(test_table_ops) {
    emu_backend e;
    emu_open_cuda_table(&e);
    const vttt_backend *cpu = vttt_backend_cpu(), *gpu = &e.be;
    void *gc = gpu->ctx;
    tu_rng r;
    tu_seed(&r, 77);
    int N = 37, C = 96, OC = 40, H = 3, f = 32, T = 37, B = 1, K = 4;
    both x = rnd(&r, (size_t)N * C, 1.0f), y = rnd(&r, (size_t)N * C, 1.0f), dy = rnd(&r, (size_t)N * C, 1.0f);
    both dx = rnd(&r, (size_t)N * C, 0.1f), w = rnd(&r, (size_t)C, 0.5f), bb = rnd(&r, (size_t)C, 0.5f);
    both dw = rnd(&r, (size_t)C, 0.1f), db = rnd(&r, (size_t)C, 0.1f), st = rnd(&r, (size_t)N, 1.0f);
    both mu = rnd(&r, (size_t)N, 1.0f);
    /* matmul, all four transposes, beta 0.5 */
    for (int t = 0; t < 4; t++) {
        int ta = t & 1, tb = t >> 1;
        both A = rnd(&r, (size_t)N * C, 1.0f), Bm = rnd(&r, (size_t)C * OC, 1.0f), Cm = rnd(&r, (size_t)N * OC, 1.0f);
        int lda = ta ? N : C, ldb = tb ? C : OC;
        cpu->matmul(NULL, ta, tb, N, OC, C, 0.7f, A.c.data(), lda, Bm.c.data(), ldb, 0.5f, Cm.c.data(), OC);
        ck_assert_int_eq(gpu->matmul(gc, ta, tb, N, OC, C, 0.7f, A.g.data(), lda, Bm.g.data(), ldb, 0.5f, Cm.g.data(),
                                     OC), VTTT_OK);
        expect(ta ? (tb ? "matmul TT" : "matmul TN") : (tb ? "matmul NT" : "matmul NN"), Cm, TOL_REDUCE);
    }
    /* linear with bias, forward and backward */
    both lw = rnd(&r, (size_t)OC * C, 0.2f), lb = rnd(&r, (size_t)OC, 1.0f), ly = rnd(&r, (size_t)N * OC, 1.0f);
    both ldy = rnd(&r, (size_t)N * OC, 1.0f), ldw = rnd(&r, (size_t)OC * C, 0.1f), ldb = rnd(&r, (size_t)OC, 0.1f);
    cpu->linear_forward(NULL, ly.c.data(), x.c.data(), lw.c.data(), lb.c.data(), N, C, OC);
    gpu->linear_forward(gc, ly.g.data(), x.g.data(), lw.g.data(), lb.g.data(), N, C, OC);
    expect("linear_forward", ly, TOL_REDUCE);
    cpu->linear_backward(NULL, dx.c.data(), ldw.c.data(), ldb.c.data(), ldy.c.data(), x.c.data(), lw.c.data(), N, C,
                         OC);
    gpu->linear_backward(gc, dx.g.data(), ldw.g.data(), ldb.g.data(), ldy.g.data(), x.g.data(), lw.g.data(), N, C, OC);
    expect("linear_backward dinp", dx, TOL_REDUCE);
    expect("linear_backward dw", ldw, TOL_REDUCE);
    expect("linear_backward dbias", ldb, TOL_REDUCE);
    /* RMSNorm and LayerNorm */
    cpu->rmsnorm_forward(y.c.data(), st.c.data(), x.c.data(), w.c.data(), N, C, 1e-6f);
    gpu->rmsnorm_forward(y.g.data(), st.g.data(), x.g.data(), w.g.data(), N, C, 1e-6f);
    expect("rmsnorm_forward", y, TOL_REDUCE);
    expect("rmsnorm_forward rstd", st, TOL_REDUCE);
    cpu->rmsnorm_backward(dx.c.data(), dw.c.data(), dy.c.data(), x.c.data(), w.c.data(), st.c.data(), N, C);
    gpu->rmsnorm_backward(dx.g.data(), dw.g.data(), dy.g.data(), x.g.data(), w.g.data(), st.g.data(), N, C);
    expect("rmsnorm_backward dinp", dx, TOL_REDUCE);
    expect("rmsnorm_backward dw", dw, TOL_REDUCE);
    cpu->layernorm_forward(y.c.data(), mu.c.data(), st.c.data(), x.c.data(), w.c.data(), bb.c.data(), N, C, 1e-6f);
    gpu->layernorm_forward(y.g.data(), mu.g.data(), st.g.data(), x.g.data(), w.g.data(), bb.g.data(), N, C, 1e-6f);
    expect("layernorm_forward", y, TOL_REDUCE);
    cpu->layernorm_backward(dx.c.data(), dw.c.data(), db.c.data(), dy.c.data(), x.c.data(), w.c.data(), mu.c.data(),
                            st.c.data(), N, C);
    gpu->layernorm_backward(dx.g.data(), dw.g.data(), db.g.data(), dy.g.data(), x.g.data(), w.g.data(), mu.g.data(),
                            st.g.data(), N, C);
    expect("layernorm_backward dinp", dx, TOL_REDUCE);
    expect("layernorm_backward dw", dw, TOL_REDUCE);
    expect("layernorm_backward db", db, TOL_REDUCE);
    /* elementwise maps */
    size_t n = x.c.size();
    typedef void (*fwd_t)(float *, const float *, size_t);
    typedef void (*bwd_t)(float *, const float *, const float *, size_t);
    fwd_t cf[3] = {cpu->gelu_forward, cpu->silu_forward, cpu->sigmoid_forward};
    fwd_t gf[3] = {gpu->gelu_forward, gpu->silu_forward, gpu->sigmoid_forward};
    bwd_t cb[3] = {cpu->gelu_backward, cpu->silu_backward, cpu->sigmoid_backward};
    bwd_t gb[3] = {gpu->gelu_backward, gpu->silu_backward, gpu->sigmoid_backward};
    for (int m = 0; m < 3; m++) {
        cf[m](y.c.data(), x.c.data(), n);
        gf[m](y.g.data(), x.g.data(), n);
        expect("gelu/silu/sigmoid forward", y, TOL_POINTWISE);
        const both &in = m == 2 ? y : x; /* sigmoid's backward takes the output */
        cb[m](dx.c.data(), dy.c.data(), in.c.data(), n);
        gb[m](dx.g.data(), dy.g.data(), in.g.data(), n);
        expect("gelu/silu/sigmoid backward", dx, TOL_POINTWISE);
    }
    cpu->swiglu_forward(y.c.data(), x.c.data(), dy.c.data(), n);
    gpu->swiglu_forward(y.g.data(), x.g.data(), dy.g.data(), n);
    expect("swiglu_forward", y, TOL_POINTWISE);
    both du = rnd(&r, n, 0.1f);
    cpu->swiglu_backward(dx.c.data(), du.c.data(), y.c.data(), x.c.data(), dy.c.data(), n);
    gpu->swiglu_backward(dx.g.data(), du.g.data(), y.g.data(), x.g.data(), dy.g.data(), n);
    expect("swiglu_backward dgate", dx, TOL_POINTWISE);
    expect("swiglu_backward dup", du, TOL_POINTWISE);
    /* rotary on (B,T,H,f), positions 5.. mod 16, and its backward */
    both rx = rnd(&r, (size_t)B * T * H * f, 1.0f), ry = rnd(&r, rx.c.size(), 1.0f), rd = rnd(&r, rx.c.size(), 0.1f);
    cpu->rotary_forward(ry.c.data(), rx.c.data(), B, T, H, f, 5, 16, 10000.0f);
    gpu->rotary_forward(ry.g.data(), rx.g.data(), B, T, H, f, 5, 16, 10000.0f);
    expect("rotary_forward", ry, TOL_POINTWISE);
    cpu->rotary_backward(rd.c.data(), ry.c.data(), B, T, H, f, 5, 16, 10000.0f);
    gpu->rotary_backward(rd.g.data(), ry.g.data(), B, T, H, f, 5, 16, 10000.0f);
    expect("rotary_backward", rd, TOL_POINTWISE);
    /* causal conv1d with a carried state */
    both cw = rnd(&r, (size_t)C * K, 0.5f), cb2 = rnd(&r, (size_t)C, 0.5f), cs = rnd(&r, (size_t)(K - 1) * C, 1.0f);
    both cdw = rnd(&r, cw.c.size(), 0.1f), cdb = rnd(&r, (size_t)C, 0.1f);
    cpu->conv1d_forward(y.c.data(), x.c.data(), cw.c.data(), cb2.c.data(), cs.c.data(), 1, N, C, K);
    gpu->conv1d_forward(y.g.data(), x.g.data(), cw.g.data(), cb2.g.data(), cs.g.data(), 1, N, C, K);
    expect("conv1d_forward", y, TOL_REDUCE);
    cpu->conv1d_backward(dx.c.data(), cdw.c.data(), cdb.c.data(), dy.c.data(), x.c.data(), cw.c.data(), cs.c.data(), 1,
                         N, C, K);
    gpu->conv1d_backward(dx.g.data(), cdw.g.data(), cdb.g.data(), dy.g.data(), x.g.data(), cw.g.data(), cs.g.data(), 1,
                         N, C, K);
    expect("conv1d_backward dinp", dx, TOL_REDUCE);
    expect("conv1d_backward dw", cdw, TOL_REDUCE);
    expect("conv1d_backward dbias", cdb, TOL_REDUCE);
    /* embedding and cross-entropy (one ignored target) */
    int V = 50;
    std::vector<int32_t> ids((size_t)N);
    for (int i = 0; i < N; i++) ids[(size_t)i] = (i * 7) % V;
    both tab = rnd(&r, (size_t)V * C, 1.0f), dtab = rnd(&r, tab.c.size(), 0.1f);
    ck_assert_int_eq(cpu->embedding_forward(y.c.data(), ids.data(), tab.c.data(), N, V, C), VTTT_OK);
    ck_assert_int_eq(gpu->embedding_forward(y.g.data(), ids.data(), tab.g.data(), N, V, C), VTTT_OK);
    expect("embedding_forward", y, 0.0);
    cpu->embedding_backward(dtab.c.data(), dy.c.data(), ids.data(), N, C);
    gpu->embedding_backward(dtab.g.data(), dy.g.data(), ids.data(), N, C);
    expect("embedding_backward", dtab, TOL_POINTWISE);
    ids[3] = V; /* out of range: EINVAL, as on the CPU */
    ck_assert_int_eq(gpu->embedding_forward(y.g.data(), ids.data(), tab.g.data(), N, V, C), VTTT_EINVAL);
    ids[3] = -1;
    both z = rnd(&r, (size_t)N * V, 3.0f), loss = rnd(&r, (size_t)N, 1.0f), dl = rnd(&r, (size_t)N, 1.0f);
    both dz = rnd(&r, z.c.size(), 0.1f);
    ck_assert_int_eq(cpu->xent_forward(loss.c.data(), z.c.data(), ids.data(), N, V), VTTT_OK);
    ck_assert_int_eq(gpu->xent_forward(loss.g.data(), z.g.data(), ids.data(), N, V), VTTT_OK);
    expect("xent_forward", loss, TOL_REDUCE);
    cpu->xent_backward(dz.c.data(), dl.c.data(), z.c.data(), ids.data(), N, V);
    gpu->xent_backward(dz.g.data(), dl.g.data(), z.g.data(), ids.data(), N, V);
    expect("xent_backward", dz, TOL_REDUCE);
}
END_TEST

/* The whole device layer with the CUDA backend's own table and the CUDA
 * layer ops, all emulated: the GPU path end to end, decode steps captured
 * into graphs once per mini-batch index and replayed (cuBLAS a plain
 * loop). */
START_TEST(test_device_layer_cuda_table) {
    emu_backend e;
    emu_open_cuda_table(&e);
    char what[64];
    snprintf(what, sizeof what, "device layer (CUDA table) %d", _i);
    int captured;
    long replays;
    check_device_layer(&e, what, _i == 0 ? VTTT_LAYER_TTT_MLP : VTTT_LAYER_TTT_LINEAR, 1, _i == 1, 95 + (uint64_t)_i,
                       19, 19, 3, 7, &captured, &replays);
    ck_assert_int_eq(captured, 7); /* one graph per mini-batch index reached (7 decode steps, b = 8) */
    ck_assert_int_eq(replays, 7);  /* every decode step replayed from a graph */
}
END_TEST

/* A model's training step (vttt_model_dev) on the emulated CUDA table and
 * ops against the CPU model: the loss and every parameter gradient. */
START_TEST(test_model_step) {
    emu_backend e;
    emu_open_cuda_table(&e);
    vttt_model_config cfg = vttt_model_default_config();
    ck_assert_int_eq(vttt_model_config_preset(&cfg, "test", NULL), VTTT_OK);
    ck_assert_int_eq(vttt_model_config_backbone(&cfg, _i ? "mamba" : "transformer", NULL), VTTT_OK);
    cfg.vocab_size = 61;
    cfg.seq_kind = _i ? VTTT_LAYER_TTT_LINEAR : VTTT_LAYER_TTT_MLP;
    cfg.mini_batch_size = 8;
    cfg.tie_word_embeddings = !_i;
    vttt_model *m = NULL;
    ck_assert_int_eq(vttt_model_init(&m, &cfg, NULL), VTTT_OK);
    vttt_model_init_weights(m, 11);
    float l_cpu, l_dev;
    const char *worst_name;
    int n;
    double worst = tu_model_dev_step_check(m, &e.be, ttt_emu::ttt_dev_ops_cuda(), 2, 19, 61, NULL, &l_cpu, &l_dev,
                                           &worst_name, &n);
    printf("model step %d: loss %.6f (cpu %.6f), worst gradient %s %.2g over %d tensors\n", _i, l_dev, l_cpu,
           worst_name, worst, n);
    ck_assert_msg(fabs(l_dev - l_cpu) <= TTT_CUDA_TOL_FWD * fabs(l_cpu), "loss %g vs %g", l_dev, l_cpu);
    ck_assert_msg(worst <= TTT_CUDA_TOL_PARAM, "gradient of %s: %g", worst_name, worst);
    vttt_model_free(&m);
}
END_TEST

/* Generation with a model on the emulated CUDA path (a prefill with all
 * logits, then 14 decode steps through every layer's graphs, so graphs
 * are replayed at positions other than their capture's: a step must
 * depend on its position only through pos mod b) against the CPU model. */
START_TEST(test_model_generation) {
    emu_backend e;
    emu_open_cuda_table(&e);
    vttt_model_config cfg = vttt_model_default_config();
    ck_assert_int_eq(vttt_model_config_preset(&cfg, "test", NULL), VTTT_OK);
    ck_assert_int_eq(vttt_model_config_backbone(&cfg, "mamba", NULL), VTTT_OK);
    cfg.vocab_size = 61;
    cfg.seq_kind = VTTT_LAYER_TTT_MLP;
    cfg.mini_batch_size = 8;
    vttt_model *m = NULL;
    ck_assert_int_eq(vttt_model_init(&m, &cfg, NULL), VTTT_OK);
    vttt_model_init_weights(m, 12);
    int B = 2, V = 61, t1 = 5, nd = 14;
    std::vector<int32_t> first((size_t)B * t1), col((size_t)B);
    std::vector<float> lc((size_t)B * t1 * V), ld(lc.size());
    for (size_t i = 0; i < first.size(); i++) first[i] = (int32_t)((i * 29 + 3) % V);
    vttt_model_state *cs = NULL;
    vttt_model_dev *d = NULL;
    vttt_model_dev_state *ds = NULL;
    ck_assert_int_eq(vttt_model_state_init(&cs, m, B, 0), VTTT_OK);
    ck_assert_int_eq(ttt_model_dev_init_ops(&d, m, &e.be, ttt_emu::ttt_dev_ops_cuda(), B, 8), VTTT_OK);
    ck_assert_int_eq(vttt_model_dev_state_init(&ds, d, B), VTTT_OK);
    ck_assert_int_eq(vttt_model_prefill(m, cs, first.data(), t1, lc.data(), 1), VTTT_OK);
    ck_assert_int_eq(vttt_model_dev_prefill(d, ds, first.data(), t1, ld.data(), 1), VTTT_OK);
    double worst = tu_rel_err(ld.data(), lc.data(), lc.size());
    for (int k = 0; k < nd; k++) {
        for (int b = 0; b < B; b++) col[(size_t)b] = (int32_t)((k * 7 + b * 3 + 1) % V);
        ck_assert_int_eq(vttt_model_decode(m, cs, col.data(), lc.data()), VTTT_OK);
        ck_assert_int_eq(vttt_model_dev_decode(d, ds, col.data(), ld.data()), VTTT_OK);
        worst = fmax(worst, tu_rel_err(ld.data(), lc.data(), (size_t)B * V));
    }
    printf("model generation: worst logits rel err %.2g\n", worst);
    ck_assert_msg(worst <= TTT_CUDA_TOL_FWD, "logits rel err %g", worst);
    vttt_model_dev_state_free(&ds);
    vttt_model_dev_free(&d);
    vttt_model_state_free(&cs);
    vttt_model_free(&m);
}
END_TEST

/* A launch beyond the device's limits is an error from the launcher, not
 * a crash: the decode step's shared memory (5 f + 5 h1 floats) at f = 1024,
 * h1 = 4096 needs 100 KiB, over the 48 KiB device's limit. */
START_TEST(test_launch_limits) {
    emu_backend e;
    emu_open(&e, 2);
    ttt_cuda_shape s = {1, 1, 1, 1024, 4096, 16, 1};
    static float dummy[16];
    ttt_cuda_params p = {dummy, dummy, dummy, dummy, dummy, dummy, dummy};
    ttt_cuda_io io = {dummy, dummy, dummy, dummy, dummy};
    vttt_logger quiet = tu_log_quiet();
    e.ctx.log = quiet;
    ck_assert_int_eq(ttt_emu::ttt_cuda_decode(&e.be, &s, &p, &io, 0, dummy, dummy), VTTT_ENOTSUP);
}
END_TEST

int main(void) {
    TCase *tc = tcase_create("emulated");
    tcase_set_timeout(tc, 600);
    tcase_add_loop_test(tc, test_fused_kernels, 0, NRUNS);
    tcase_add_loop_test(tc, test_device_layer, 0, 2);
    tcase_add_test(tc, test_launch_limits);
    tcase_add_test(tc, test_table_ops);
    tcase_add_loop_test(tc, test_device_layer_cuda_table, 0, 2);
    tcase_add_loop_test(tc, test_model_step, 0, 2);
    tcase_add_test(tc, test_model_generation);
    return tu_run("cuda_emu", tc, CK_NOFORK);
}
