/* The GroupNorm and upsample2x CUDA kernels (ttt/cuda/image_cuda.cu), as
 * written, compiled with g++ against the CPU emulation of CUDA
 * (ttt/cuda/cuda_emu.h: every CUDA thread a fiber, __syncthreads and the
 * warp shuffles real barriers, __shared__ arrays shared by the block) and
 * compared with the CPU ops (ttt/groupnorm.c, ttt/upsample.c): outputs,
 * saved statistics and every gradient, accumulated onto pre-filled
 * buffers, with NULL gradients and without affine parameters.
 *
 * Tolerances as in test_cuda.c: TOL_REDUCE 1e-4 for what sums (the kernels
 * reduce in fp32 in a tree order, the CPU per channel in fp32 then in
 * double), exact for the upsampling copy, TOL_POINTWISE 1e-5 for its
 * backward (four values added in another order). The cuDNN convolutions
 * (conv2d_cudnn.cu) cannot be emulated and run only on a GPU (test_cuda). */
#define TTT_CUDA_EMU 1

#include <check.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend.h"
#include "cuda/cuda_emu.h"
#include "ttt.h"
extern "C" {
#include "ops.h"   /* the CPU ops, C linkage */
#include "testutil.h"
}

#define TOL_POINTWISE 1e-5
#define TOL_REDUCE 1e-4
#define GRAD_FILL 0.1f

namespace ttt_emu {
#include "cuda/cuda_internal.h"

void ttt_cuda_check_launch(const char *what) {
    if (cudaPeekAtLastError() != cudaSuccess) vttt_log(NULL, VTTT_LOG_ERROR, "CUDA (emulated): %s: launch failed", what);
}

#include "cuda/image_cuda.cu"
} // namespace ttt_emu

/* n values N(0, scale^2) twice: the CPU's copy and the emulated device's. */
typedef struct {
    float *h, *d;
    size_t n;
} buf2;

static tu_rng g_rng;

static buf2 rand2(size_t n, float scale) {
    buf2 b = {(float *)malloc(n * sizeof(float)), (float *)malloc(n * sizeof(float)), n};
    ck_assert(b.h && b.d);
    tu_fill_normal(&g_rng, b.h, n, scale);
    memcpy(b.d, b.h, n * sizeof(float));
    return b;
}

static void free2(buf2 *b) {
    free(b->h), free(b->d);
    b->h = b->d = NULL;
}

static void expect_close(const char *what, const char *part, const buf2 &b, double tol) {
    ck_assert_int_eq(cudaGetLastError(), cudaSuccess);
    double err = tu_rel_err(b.d, b.h, b.n);
    ck_assert_msg(err <= tol, "%s %s: emulated CUDA vs CPU relative error %.3g > %.3g", what, part, err, tol);
}

#define PH(b, on) ((on) ? (b).h : NULL)
#define PD(b, on) ((on) ? (b).d : NULL)

/* want bits: 1 dinp, 2 dw, 4 db. */
static void check_groupnorm(int N, int C, int HW, int G, int affine, int want) {
    size_t n = (size_t)N * C * HW;
    buf2 x = rand2(n, 2.0f), w = rand2(C, 1.0f), b = rand2(C, 1.0f), y = rand2(n, 1.0f), dy = rand2(n, 1.0f);
    buf2 mean = rand2((size_t)N * G, 1.0f), rstd = rand2((size_t)N * G, 1.0f);
    buf2 dx = rand2(n, GRAD_FILL), dw = rand2(C, GRAD_FILL), db = rand2(C, GRAD_FILL);
    for (size_t i = 0; i < x.n; i++) x.h[i] += 0.5f * (float)(i % 7), x.d[i] = x.h[i];   /* group means differ */
    char what[96];
    snprintf(what, sizeof what, "groupnorm N%d C%d HW%d G%d affine%d want%d", N, C, HW, G, affine, want);
    ttt_groupnorm_forward(y.h, mean.h, rstd.h, x.h, PH(w, affine), PH(b, affine), N, C, HW, G, 1e-5f);
    ttt_emu::ttt_cuda_groupnorm_forward(y.d, mean.d, rstd.d, x.d, PD(w, affine), PD(b, affine), N, C, HW, G, 1e-5f);
    expect_close(what, "out", y, TOL_REDUCE);
    expect_close(what, "mean", mean, TOL_REDUCE);
    expect_close(what, "rstd", rstd, TOL_REDUCE);
    ttt_groupnorm_backward(PH(dx, want & 1), PH(dw, want & 2), PH(db, want & 4), dy.h, x.h, PH(w, affine), mean.h,
                           rstd.h, N, C, HW, G);
    ttt_emu::ttt_cuda_groupnorm_backward(PD(dx, want & 1), PD(dw, want & 2), PD(db, want & 4), dy.d, x.d,
                                         PD(w, affine), mean.d, rstd.d, N, C, HW, G);
    expect_close(what, "dinp", dx, TOL_REDUCE);
    expect_close(what, "dw", dw, TOL_REDUCE);
    expect_close(what, "db", db, TOL_REDUCE);
    buf2 *all[] = {&x, &w, &b, &y, &dy, &mean, &rstd, &dx, &dw, &db};
    for (buf2 *p : all) free2(p);
}

START_TEST(test_groupnorm_emu) {
    check_groupnorm(2, 32, 32 * 32, 8, 1, 7);   /* groups of 4 channels x 1024 pixels: 16 values per thread */
    check_groupnorm(3, 6, 35, 3, 1, 7);         /* fewer values than threads in a block */
    check_groupnorm(2, 4, 9, 1, 1, 7);
    check_groupnorm(2, 4, 9, 4, 0, 7);
    check_groupnorm(2, 64, 8 * 8, 8, 1, 1);
    check_groupnorm(2, 64, 8 * 8, 8, 1, 6);
    check_groupnorm(1, 3, 300, 1, 1, 7);        /* more values than threads, not a multiple */
}
END_TEST

START_TEST(test_upsample2x_emu) {
    const int shapes[][4] = {{2, 3, 7, 5}, {1, 4, 16, 16}, {1, 1, 1, 1}};
    for (int s = 0; s < 3; s++) {
        int N = shapes[s][0], C = shapes[s][1], H = shapes[s][2], W = shapes[s][3];
        size_t n = (size_t)N * C * H * W;
        buf2 x = rand2(n, 1.0f), y = rand2(4 * n, 1.0f), dy = rand2(4 * n, 1.0f), dx = rand2(n, GRAD_FILL);
        ttt_upsample2x_forward(y.h, x.h, N, C, H, W);
        ttt_emu::ttt_cuda_upsample2x_forward(y.d, x.d, N, C, H, W);
        expect_close("upsample2x", "out", y, 0.0);
        ttt_upsample2x_backward(dx.h, dy.h, N, C, H, W);
        ttt_emu::ttt_cuda_upsample2x_backward(dx.d, dy.d, N, C, H, W);
        expect_close("upsample2x", "dinp", dx, TOL_POINTWISE);
        free2(&x), free2(&y), free2(&dy), free2(&dx);
    }
}
END_TEST

static void setup(void) { tu_seed(&g_rng, 4321); }

int main(void) {
    TCase *tc = tcase_create("image_cuda_emu");
    tcase_add_checked_fixture(tc, setup, NULL);
    tcase_set_timeout(tc, 600);
    tcase_add_test(tc, test_groupnorm_emu);
    tcase_add_test(tc, test_upsample2x_emu);
    return tu_run("image_cuda_emu", tc, CK_NOFORK);
}
