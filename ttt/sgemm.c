/* Row-major sgemm over OpenBLAS's cblas. */
#include <cblas.h>

#include "ops.h"

int ttt_blas_serial_begin(void) {
    int n = openblas_get_num_threads();
    if (n > 1) openblas_set_num_threads(1);
    return n;
}

void ttt_blas_serial_end(int n) {
    if (n > 1) openblas_set_num_threads(n);
}

void ttt_sgemm(int ta, int tb, int M, int N, int K, float alpha, const float *A, int lda, const float *B, int ldb,
               float beta, float *C, int ldc) {
    if (M <= 0 || N <= 0) return;
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
