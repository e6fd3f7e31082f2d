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
 *   and the bf16 projections' wiring (emulated conversions).
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

#include "cuda/ttt_fused_fwd.cu"
#include "cuda/ttt_fused_bwd.cu"
#include "cuda/layer_cuda.cu"
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

static vttt_layer *make_layer(const emu_case *c, uint64_t seed) {
    vttt_layer_config cfg = vttt_layer_default_config(c->kind, c->D, c->H);
    cfg.mini_batch = c->b;
    cfg.ckpt_group = c->group;
    vttt_layer *l = NULL;
    ck_assert_int_eq(vttt_layer_init(&l, &cfg, NULL), VTTT_OK);
    tu_layer_randomize(l, seed, 1.0f);
    tu_layer_param(l, "learnable_token_idx").data[c->b / 2] = -1.0f; /* s_i clamped to 0 */
    return l;
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

/* The whole device layer with the emulated CUDA ops. */
START_TEST(test_device_layer) {
    emu_backend e;
    emu_open(&e, 0);
    vttt_layer_config cfg = vttt_layer_default_config(_i == 0 ? VTTT_LAYER_TTT_LINEAR : VTTT_LAYER_TTT_MLP, 64, 2);
    cfg.mini_batch = 8;
    cfg.use_gate = _i == 1;
    cfg.share_qk = _i == 1;
    vttt_layer *l = NULL;
    ck_assert_int_eq(vttt_layer_init(&l, &cfg, NULL), VTTT_OK);
    tu_layer_randomize(l, 90 + (uint64_t)_i, 1.0f);
    int B = 2, T = 22;
    size_t n = (size_t)B * T * 64;
    tu_rng r;
    tu_seed(&r, 9);
    float *x = tu_alloc_normal(&r, n, 1.0f), *dy = tu_alloc_normal(&r, n, 1.0f);
    ttt_layer_dev_check res;
    e.ctx.log = tu_log_quiet(); /* the failed graph capture is expected */
    int err = ttt_layer_dev_check_run_ops(l, &e.be, ttt_emu::ttt_dev_ops_cuda(), x, dy, B, T, 5, 9, &res);
    ck_assert_msg(err == VTTT_OK, "device layer %d: %s", _i, vttt_strerror(err));
    printf("device layer %d: y %.2g dx %.2g params %.2g (%s) gen y %.2g state %.2g bf16 y %.2g graphs %d/%ld\n", _i,
           res.y, res.dx, res.dparams, res.worst, res.gen_y, res.gen_state, res.bf16_y, res.captured, res.replays);
    ck_assert_msg(res.y <= TTT_CUDA_TOL_FWD, "y %g", res.y);
    ck_assert_msg(res.dx <= TTT_CUDA_TOL_BWD, "dx %g", res.dx);
    ck_assert_msg(res.dparams <= TTT_CUDA_TOL_PARAM, "gradient of %s %g", res.worst, res.dparams);
    ck_assert_msg(res.gen_y <= TTT_CUDA_TOL_FWD, "prefill/decode %g", res.gen_y);
    ck_assert_msg(res.gen_state <= TTT_CUDA_TOL_FWD, "W0/A %g", res.gen_state);
    ck_assert_msg(res.bf16_y <= 2e-2, "bf16 forward %g", res.bf16_y);
    ck_assert_int_eq(res.captured, 0); /* no graphs in the emulation: every step launched op by op */
    ck_assert_int_eq(res.replays, 0);
    free(x), free(dy);
    vttt_layer_free(&l);
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
    return tu_run("cuda_emu", tc, CK_NOFORK);
}
