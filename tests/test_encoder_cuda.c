/* The frame tokenizer on the CUDA backend against the CPU: a small random
 * tokenizer (S 16, channels 8, levels 8,5,5) over 3 frames; the training
 * forward's loss and reconstruction, the parameter gradients after a
 * backward, and the tokens of encode and the frames of decode.
 *
 * Tolerances, max |GPU - CPU| / max |CPU|: TOL_LOSS 1e-4 and TOL_GRAD 1e-3
 * (cuDNN picks other summation orders); reconstructed bytes may differ by
 * one where a value sits at a rounding edge, tokens where z sits at a FSQ
 * level boundary (at most 2% of them).
 *
 * Without a GPU the program prints one SKIP line and exits 77 (ctest:
 * skipped); a CUDA backend without the 2D image ops also skips, saying so.
 * Check runs without fork (a CUDA context does not survive fork). */
#include <check.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "encoder.h"
#include "testutil.h"
#include "ttt.h"

#define TOL_LOSS 1e-4
#define TOL_GRAD 1e-3

static vttt_backend *g_gpu;
static char g_last_msg[512];

static void test_log(void *user, int level, const char *msg) {
    (void)user;
    snprintf(g_last_msg, sizeof g_last_msg, "%s", msg);
    if (level <= VTTT_LOG_WARNING) fprintf(stderr, "vttt log: %s\n", msg);
}

static vttt_encoder_config small_cfg(void) {
    vttt_encoder_config c = vttt_encoder_default_config();
    c.image_size = 16, c.channels = 8, c.num_groups = 4;
    c.num_levels = 3, c.levels[0] = 8, c.levels[1] = 5, c.levels[2] = 5, c.levels[3] = 0;
    return c;
}

START_TEST(cuda_matches_cpu) {
    vttt_encoder_config cfg = small_cfg();
    vttt_encoder *cpu = NULL, *gpu = NULL;
    ck_assert_int_eq(vttt_encoder_init(&cpu, &cfg, 9, NULL), 0);
    ck_assert_int_eq(vttt_encoder_init(&gpu, &cfg, 9, NULL), 0);
    ck_assert_int_eq(vttt_encoder_set_backend(gpu, g_gpu), 0);
    enum { N = 3, S = 16, P = 4 };
    uint8_t fr[N * S * S * 3], rc[N * S * S * 3], rg[N * S * S * 3];
    for (size_t i = 0; i < sizeof fr; i++) fr[i] = (uint8_t)(127 + 100 * sin(0.05 * (double)i));
    float lc, lg;
    vttt_encoder_zero_grads(cpu), vttt_encoder_zero_grads(gpu);
    ck_assert_int_eq(vttt_encoder_forward(cpu, NULL, fr, N, 1, &lc, rc), 0);
    ck_assert_int_eq(vttt_encoder_forward(gpu, NULL, fr, N, 1, &lg, rg), 0);
    ck_assert_msg(fabs(lc - lg) <= TOL_LOSS * lc, "loss: CPU %.8g, GPU %.8g", lc, lg);
    for (size_t i = 0; i < sizeof fr; i++) ck_assert_int_le(abs((int)rc[i] - (int)rg[i]), 1);
    ck_assert_int_eq(vttt_encoder_backward(cpu, 1.0f), 0);
    ck_assert_int_eq(vttt_encoder_backward(gpu, 1.0f), 0);
    int n;
    const vttt_model_tensor *tc = vttt_encoder_tensors(cpu, &n), *tg = vttt_encoder_tensors(gpu, &n);
    for (int i = 0; i < n; i++) {
        double err = tu_rel_err(tg[i].grad, tc[i].grad, (size_t)tc[i].numel);
        ck_assert_msg(err < TOL_GRAD, "%s: gradient relative error %.3g", tc[i].name, err);
    }
    int32_t kc[N * P], kg[N * P], diff = 0;
    ck_assert_int_eq(vttt_encoder_encode(cpu, NULL, fr, N, kc), 0);
    ck_assert_int_eq(vttt_encoder_encode(gpu, NULL, fr, N, kg), 0);
    for (int i = 0; i < N * P; i++) diff += kc[i] != kg[i];
    ck_assert_int_le(diff, (N * P) / 50);
    ck_assert_int_eq(vttt_encoder_decode(cpu, NULL, kc, N, rc), 0);
    ck_assert_int_eq(vttt_encoder_decode(gpu, NULL, kc, N, rg), 0);
    for (size_t i = 0; i < sizeof fr; i++) ck_assert_int_le(abs((int)rc[i] - (int)rg[i]), 1);
    vttt_encoder_free(&cpu), vttt_encoder_free(&gpu);
}
END_TEST

int main(void) {
    vttt_logger lg = {test_log, NULL, VTTT_LOG_INFO};
    int status = tu_cuda_open(&g_gpu, &lg, g_last_msg, "tokenizer CUDA-vs-CPU tests");
    if (status) return status;
    vttt_encoder_config cfg = small_cfg();
    vttt_encoder *probe = NULL;
    if (vttt_encoder_init(&probe, &cfg, 0, NULL) == 0 && vttt_encoder_set_backend(probe, g_gpu) == VTTT_ENOTSUP) {
        printf("SKIP: the CUDA backend lacks the 2D image ops; tokenizer CUDA-vs-CPU tests not run\n");
        vttt_encoder_free(&probe);
        vttt_backend_cuda_close(&g_gpu);
        return 77;
    }
    vttt_encoder_free(&probe);
    TCase *tc = tcase_create("encoder_cuda");
    tcase_set_timeout(tc, 300);
    tcase_add_test(tc, cuda_matches_cpu);
    status = tu_run("encoder_cuda", tc, CK_NOFORK);
    vttt_backend_cuda_close(&g_gpu);
    return status;
}
