/* Row-major sgemm over OpenBLAS's cblas, and OpenBLAS's thread count. */
#include <cblas.h>
#include <omp.h>

#include "ops.h"
#include "par.h"

/* The number of threads OpenBLAS would use for a call from this thread.
 * The OpenMP build (openblas_get_parallel() == 2) follows the calling
 * thread's OpenMP setting (omp_get_max_threads(): it resets its global
 * count to it on every call, and openblas_set_num_threads also calls
 * omp_set_num_threads); the pthreads build has one global count. */
static int blas_threads_here(void) {
    return openblas_get_parallel() == 2 ? omp_get_max_threads() : openblas_get_num_threads();
}

/* Saves the count of the calling thread (not OpenBLAS's global one, which
 * another thread may have set: restoring that one leaked it into this
 * thread's OpenMP setting through the OpenMP build's
 * openblas_set_num_threads). */
int ttt_blas_serial_begin(void) {
    int n = blas_threads_here();
    if (n > 1) openblas_set_num_threads(1);
    return n;
}

void ttt_blas_serial_end(int n) {
    if (n > 1) openblas_set_num_threads(n);
}

static void sgemm_call(int ta, int tb, int M, int N, int K, float alpha, const float *A, int lda, const float *B,
                       int ldb, float beta, float *C, int ldc) {
    if (M == 1) { /* a single row (decode): sgemv, which does not pack B */
        int incx = ta ? lda : 1;
        if (tb) /* B is (N,K): c = B a */
            cblas_sgemv(CblasRowMajor, CblasNoTrans, N, K, alpha, B, ldb, A, incx, beta, C, 1);
        else /* B is (K,N): c = B^T a */
            cblas_sgemv(CblasRowMajor, CblasTrans, K, N, alpha, B, ldb, A, incx, beta, C, 1);
        return;
    }
    cblas_sgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans, M, N, K, alpha, A,
                lda, B, ldb, beta, C, ldc);
}

/* Products under VTTT_BLAS_PAR_MIN_FLOPS run with OpenBLAS on the calling
 * thread (ttt/par.h: its threads cost more than they save there); inside
 * one of our parallel regions OpenBLAS is serial already. */
void ttt_sgemm(int ta, int tb, int M, int N, int K, float alpha, const float *A, int lda, const float *B, int ldb,
               float beta, float *C, int ldc) {
    if (M <= 0 || N <= 0) return;
    int n = 0;
    if (2.0 * M * N * K < VTTT_BLAS_PAR_MIN_FLOPS && !omp_in_parallel()) n = ttt_blas_serial_begin();
    sgemm_call(ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
    ttt_blas_serial_end(n);
}
