/* par_probe: where a parallel region starts to pay on this machine.
 * Times, on 1 and on all OpenMP threads, (a) an elementwise loop over n
 * floats (SiLU, a few flops and one exp per element), (b) cblas_sgemm of
 * M x N x K and (c) cblas_sgemv of N x K, and prints the median time per
 * call of each and the ratio; the elementwise loop also after serial work
 * before each call, as in a model step. Not part of the build; compile with
 *   gcc -O2 -march=native -fopenmp tools/probe/par_probe.c -o par_probe -lm \
 *       -I/usr/include/x86_64-linux-gnu/openblas-openmp -L$P -Wl,-rpath,$P -lopenblas
 * with P=/usr/lib/x86_64-linux-gnu/openblas-openmp (Debian's OpenMP build, as
 * the library links). The thresholds in ttt/par.h were
 * chosen from its output on the shared 2-core machine. */
#include <cblas.h>
#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static double now(void) { return omp_get_wtime(); }

static int cmp(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static double median(double *t, int n) {
    qsort(t, n, sizeof *t, cmp);
    return t[n / 2];
}

static void silu(float *y, const float *x, long n, int par) {
#pragma omp parallel for if (par)
    for (long i = 0; i < n; i++) y[i] = x[i] / (1.0f + expf(-x[i]));
}

/* About gap seconds of serial work on the calling thread (the other
 * threads' spinning runs out and they sleep, as between the regions of a
 * real model step). */
static float serial_gap(double gap) {
    volatile float x = 0.0f;
    double t0 = now();
    while (now() - t0 < gap)
        for (int i = 0; i < 1000; i++) x += 1e-7f;
    return x;
}

/* Median seconds per call of kind k (0 elementwise, 1 gemm, 2 gemv) on nth
 * threads; gap > 0: that much serial work before each call (not timed). */
static double run(int k, long n, int M, int N, int K, int nth, float *a, float *b, float *c, int reps, double gap) {
    double *t = malloc(reps * sizeof *t);
    omp_set_num_threads(nth);
    openblas_set_num_threads(nth);
    for (int r = 0; r < reps; r++) {
        if (gap > 0) serial_gap(gap);
        double t0 = now();
        if (k == 0) silu(c, a, n, nth > 1);
        else if (k == 1) cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, M, N, K, 1.0f, a, K, b, K, 0.0f, c, N);
        else cblas_sgemv(CblasRowMajor, CblasNoTrans, N, K, 1.0f, b, K, a, 1, 0.0f, c, 1);
        t[r] = now() - t0;
    }
    double m = median(t, reps);
    free(t);
    return m;
}

int main(void) {
    int all = omp_get_max_threads();
    size_t cap = (size_t)4 << 20;
    float *a = malloc(cap * 4), *b = malloc(cap * 4), *c = malloc(cap * 4);
    for (size_t i = 0; i < cap; i++) a[i] = b[i] = (float)(i % 97) * 0.01f - 0.4f;
    printf("threads: 1 vs %d; median us per call (interleaved rounds)\n", all);
    printf("elem: back to back; elem+gap: after 3 ms of serial work each (work: ttt/par.h units, 32 per SiLU)\n");
    printf("%-8s %10s %12s %10s %10s %7s\n", "kind", "size", "work", "t1 us", "tN us", "t1/tN");
    for (long n = 1024; n <= (1L << 21); n *= 4) {
        int reps = (int)(2000000 / n) + 20;
        double t1 = run(0, n, 0, 0, 0, 1, a, b, c, reps, 0), tn = run(0, n, 0, 0, 0, all, a, b, c, reps, 0);
        printf("%-8s %10ld %12ld %10.1f %10.1f %7.2f\n", "elem", n, n * 32, t1 * 1e6, tn * 1e6, t1 / tn);
    }
    for (long n = 1024; n <= (1L << 22); n *= 4) { /* each call after 3 ms of serial work */
        int reps = 40;
        double t1 = run(0, n, 0, 0, 0, 1, a, b, c, reps, 3e-3), tn = run(0, n, 0, 0, 0, all, a, b, c, reps, 3e-3);
        printf("%-8s %10ld %12ld %10.1f %10.1f %7.2f\n", "elem+gap", n, n * 32, t1 * 1e6, tn * 1e6, t1 / tn);
    }
    int gs[][3] = {{1, 768, 768}, {16, 64, 64}, {16, 256, 256}, {64, 256, 256}, {64, 768, 768},
                   {256, 256, 256}, {128, 768, 768}, {256, 768, 768}, {512, 768, 768}, {1024, 768, 768}};
    for (int g = 0; g < (int)(sizeof gs / sizeof gs[0]); g++) {
        int M = gs[g][0], N = gs[g][1], K = gs[g][2];
        double fl = 2.0 * M * N * K;
        int reps = (int)(4e8 / fl) + 10;
        char sz[32];
        snprintf(sz, sizeof sz, "%dx%dx%d", M, N, K);
        double t1 = run(1, 0, M, N, K, 1, a, b, c, reps, 0), tn = run(1, 0, M, N, K, all, a, b, c, reps, 0);
        printf("%-8s %10s %12.0f %10.1f %10.1f %7.2f\n", "sgemm", sz, fl, t1 * 1e6, tn * 1e6, t1 / tn);
    }
    int vs[][2] = {{64, 64}, {256, 256}, {768, 256}, {768, 768}, {3072, 768}, {16384, 768}};
    for (int g = 0; g < (int)(sizeof vs / sizeof vs[0]); g++) {
        int N = vs[g][0], K = vs[g][1];
        double fl = 2.0 * N * K;
        int reps = (int)(4e8 / fl) + 10;
        if (reps > 20000) reps = 20000;
        char sz[32];
        snprintf(sz, sizeof sz, "%dx%d", N, K);
        double t1 = run(2, 0, 0, N, K, 1, a, b, c, reps, 0), tn = run(2, 0, 0, N, K, all, a, b, c, reps, 0);
        printf("%-8s %10s %12.0f %10.1f %10.1f %7.2f\n", "sgemv", sz, fl, t1 * 1e6, tn * 1e6, t1 / tn);
    }
    free(a), free(b), free(c);
    return 0;
}
