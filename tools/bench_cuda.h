/* tools/bench_cuda.h — internal to `vttt bench cuda`: the parts beyond the
 * fused inner-loop kernels (bench_cuda.c): the whole TTT layer on the GPU
 * and the bf16 projection GEMM (bench_cuda_layer.c). */
#ifndef VTTT_BENCH_CUDA_H
#define VTTT_BENCH_CUDA_H

#include "cuda/ttt_cuda.h"
#include "ttt.h"

#define BENCH_D 768 /* the 125m preset's width */
#define BENCH_H 12

/* The whole layer (vttt_layer_dev: projections, fused inner loop, post-norm,
 * o_proj) at the 125m shape for one kind (mlp 0/1) and context T, B
 * sequences: prefill and training-step tokens/s, TFLOP/s and the fraction
 * of the measured bf16 GEMM rate, with fp32 and bf16 projections; decode
 * tokens/s with and without CUDA graphs. Checks the layer against the CPU
 * first (once per kind: check != 0). Returns 0, or 1 on a failure. */
int bench_cuda_layer_row(const vttt_backend *be, ttt_cuda_timer *tm, int mlp, int B, int T, int reps, int train,
                         double bf16_rate, int check);
void bench_cuda_layer_header(void);

/* The projections' GEMM, out (N, D) = x (N, D) W^T at D = 768: cuBLAS fp32
 * and cuBLASLt bf16 (fp32 accumulation), checked against the CPU on a
 * small N first, then time, TFLOP/s, GB/s and the fraction of the
 * measured bf16 rate for each N. */
int bench_cuda_gemm(const vttt_backend *be, ttt_cuda_timer *tm, const int *Ns, int nN, int reps, double bf16_rate);

/* A whole model's training step at the 125m preset (bench_cuda_model.c)
 * for the wanted kinds (TTT-Linear, TTT-MLP) and contexts: tokens/s and
 * model FLOP utilization against rate[0] (fp32) and rate[1] (bf16), after
 * a check against the CPU model. */
int bench_cuda_model(const vttt_backend *be, ttt_cuda_timer *tm, const int kinds[2], int B, const int *Ts, int nT,
                     int reps, const double rate[2]);

#endif
