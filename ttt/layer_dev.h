/*
 * ttt/layer_dev.h — internal: the TTT layer on a backend's device
 * (layer_dev.c, public entry points in ttt.h under "a layer on a device").
 *
 * layer_dev.c is written once against two tables: the backend table
 * (backend.h: projections, norms, rotary, conv, sigmoid) and ttt_dev_ops
 * below (the fused inner loop with the semantics of ttt/cuda/ttt_cuda.h,
 * a few elementwise steps the backend table lacks, and CUDA graphs). The
 * CUDA instance (ttt/cuda/layer_cuda.cu) launches the fused kernels; the
 * CPU instance (layer_dev_cpu.c, ttt_flat.c) runs the CPU inner loop on
 * the same flat buffers, so the sequence of steps of the device path is
 * exercised and checked on a machine without a GPU too.
 */
#ifndef VTTT_LAYER_DEV_H
#define VTTT_LAYER_DEV_H

#include "arena.h"
#include "cuda/ttt_cuda.h"
#include "layer.h"
#include "model.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct ttt_dev_ops {
    /* The inner loop, as ttt_cuda_state_init / _prefill / _decode /
     * _backward (ttt_cuda.h), on the backend's memory. */
    int (*state_init)(const vttt_backend *be, const ttt_cuda_shape *s, const ttt_cuda_params *p, float *W, float *A);
    int (*prefill)(const vttt_backend *be, const ttt_cuda_shape *s, const ttt_cuda_params *p, const ttt_cuda_io *io,
                   int64_t pos, float *W, float *A, float *ckpt, int group, void *ws, size_t ws_bytes);
    int (*decode)(const vttt_backend *be, const ttt_cuda_shape *s, const ttt_cuda_params *p, const ttt_cuda_io *io,
                  int64_t pos, float *W, float *A);
    int (*backward)(const vttt_backend *be, const ttt_cuda_shape *s, const ttt_cuda_params *p, const ttt_cuda_io *io,
                    const float *ckpt, int group, const float *dZ, float *dXQ, float *dXK, float *dXV, float *dlr,
                    const ttt_cuda_grads *g, void *ws, size_t ws_bytes);
    /* Elementwise steps, queued on the backend's stream. */
    int (*zero)(const vttt_backend *be, float *x, size_t n);
    int (*copy)(const vttt_backend *be, float *dst, const float *src, size_t n); /* same device */
    /* lr (n) = sigmoid(lr) * scale, in place */
    int (*lr_forward)(const vttt_backend *be, float *lr, size_t n, float scale);
    /* da (n) = dlr lr (1 - lr / scale) (0 where scale <= 0); the gradient
     * of the sigmoid's input given lr = sigmoid(a) scale */
    int (*lr_backward)(const vttt_backend *be, float *da, const float *dlr, const float *lr, size_t n, float scale);
    /* o (n) = gelu(gpre) nrm; o may be nrm */
    int (*gate_forward)(const vttt_backend *be, float *o, const float *gpre, const float *nrm, size_t n);
    /* dg (n) = d_o nrm gelu'(gpre), then d_o *= gelu(gpre) */
    int (*gate_backward)(const vttt_backend *be, float *dg, float *d_o, const float *gpre, const float *nrm, size_t n);
    /* out (n) = a + b (the residual stream); out may be a */
    int (*add)(const vttt_backend *be, float *out, const float *a, const float *b, size_t n);
    /* ttt_conv1d_state_update: the last K-1 rows of inp (B,T,C) into state (B,K-1,C) */
    int (*conv_state_update)(const vttt_backend *be, float *state, const float *inp, int B, int T, int C, int K);
    /* CUDA graphs of the backend's stream; NULL where there are none.
     * graph_begin starts capturing; graph_end stops and instantiates into
     * *exec (on failure *exec is NULL and the capture is over); launch
     * queues a replay. */
    int (*graph_begin)(const vttt_backend *be);
    int (*graph_end)(const vttt_backend *be, void **exec);
    int (*graph_launch)(const vttt_backend *be, void *exec);
    void (*graph_free)(void *exec);
    /* Projections in bf16 with fp32 accumulation and output (cuBLASLt):
     * out (N,OC) = bf16(inp) (N,C) . wb (OC,C)^T, wb already bf16; xb: N*C
     * bf16 scratch. NULL where there is none. */
    int (*linear_bf16)(const vttt_backend *be, float *out, const float *inp, const uint16_t *wb, uint16_t *xb, int N,
                       int C, int OC);
    /* dst (n) = bf16(src), round to nearest even */
    int (*to_bf16)(const vttt_backend *be, uint16_t *dst, const float *src, size_t n);
} ttt_dev_ops;

/* The CPU instance (layer_dev_cpu.c) and the CUDA one (NULL in a build
 * without CUDA). */
const ttt_dev_ops *ttt_dev_ops_cpu(void);
const ttt_dev_ops *ttt_dev_ops_cuda(void);

/* ttt_flat.c: the ttt_cuda.h inner loop on host memory, from the CPU
 * kernels (ttt_inner.c, ttt_inner_bwd.c). Same arguments, same results up
 * to rounding; ws is not used (the CPU scratch is allocated per call). */
int ttt_flat_state_init(const vttt_backend *be, const ttt_cuda_shape *s, const ttt_cuda_params *p, float *W, float *A);
int ttt_flat_prefill(const vttt_backend *be, const ttt_cuda_shape *s, const ttt_cuda_params *p, const ttt_cuda_io *io,
                     int64_t pos, float *W, float *A, float *ckpt, int group, void *ws, size_t ws_bytes);
int ttt_flat_decode(const vttt_backend *be, const ttt_cuda_shape *s, const ttt_cuda_params *p, const ttt_cuda_io *io,
                    int64_t pos, float *W, float *A);
int ttt_flat_backward(const vttt_backend *be, const ttt_cuda_shape *s, const ttt_cuda_params *p,
                      const ttt_cuda_io *io, const float *ckpt, int group, const float *dZ, float *dXQ, float *dXK,
                      float *dXV, float *dlr, const ttt_cuda_grads *g, void *ws, size_t ws_bytes);

/* ---- for tests and benches ------------------------------------------------ */

/* Decode through CUDA graphs (on by default where the ops have them);
 * off: every step is launched op by op. */
void ttt_state_dev_set_graphs(vttt_state_dev *s, int on);
/* Decode steps replayed from a graph so far, and graphs captured. */
void ttt_state_dev_graph_counts(const vttt_state_dev *s, long *replays, int *captured);
/* The state W0, A (B*H, numel each) copied to the host. */
int ttt_state_dev_download(const vttt_state_dev *s, float *W0, float *A);
/* Projections (q, k, v, o, gate) in bf16 with fp32 accumulation where the
 * ops have linear_bf16 (fp32 master weights stay; their bf16 copies are
 * refreshed by vttt_layer_dev_upload). VTTT_ENOTSUP where there is none. */
int ttt_layer_dev_set_bf16(vttt_layer_dev *d, int on);
/* Bytes of the layer's arena. */
size_t ttt_layer_dev_bytes(const vttt_layer_dev *d);

/* vttt_layer_dev_init with the given ops instead of the backend's own
 * (tests/test_cuda_emu.cpp: the CUDA ops compiled against the emulation). */
int ttt_layer_dev_init_ops(vttt_layer_dev **out, vttt_layer *l, const vttt_backend *be, const ttt_dev_ops *ops,
                           int max_B, int max_T);

/* vttt_model_dev_init (model.h) with the given ops for its layers and its
 * own steps. */
int ttt_model_dev_init_ops(vttt_model_dev **out, vttt_model *m, const vttt_backend *be, const ttt_dev_ops *ops,
                           int max_B, int max_T);

/* ttt_cuda_check_layer (ttt/cuda/ttt_cuda.h) with the inner-loop kernels
 * of ops (state_init, prefill, decode, backward). */
int ttt_cuda_check_layer_ops(vttt_layer *l, const vttt_backend *be, const ttt_dev_ops *ops, const float *x,
                             const float *dy, int B, int T, int n_decode, ttt_cuda_check *res);

/* ---- checking harness (layer_dev_check.c) ------------------------------------ */

/* Relative errors (max |dev - CPU| / max |CPU|, per tensor) of the device
 * layer against the CPU layer on the same parameters and inputs. */
typedef struct ttt_layer_dev_check {
    double y;          /* training forward output */
    double dx;         /* backward: input gradient */
    double dparams;    /* backward: the worst parameter gradient */
    const char *worst; /* its reference name */
    double gen_y;      /* prefill, decode steps, prefill: every output */
    double gen_state;  /* the final W0 and A */
    double bf16_y;     /* forward with bf16 projections (NaN where the backend has none) */
    long replays;      /* decode steps replayed from CUDA graphs */
    int captured;      /* graphs captured */
} ttt_layer_dev_check;

/* Runs layer l (CPU parameters) through vttt_layer_forward/backward with
 * x, dy (host, (B,T,D)) and through a device layer on be with the same
 * data, then generation on both: a prefill of n_prefill tokens, n_decode
 * decode steps, a prefill of the rest. Overwrites l's gradients and
 * training cache. res is filled; returns a VTTT code. */
int ttt_layer_dev_check_run(vttt_layer *l, const vttt_backend *be, const float *x, const float *dy, int B, int T,
                            int n_prefill, int n_decode, ttt_layer_dev_check *res);
/* The same with the given ops (NULL: the backend's own). */
int ttt_layer_dev_check_run_ops(vttt_layer *l, const vttt_backend *be, const ttt_dev_ops *ops, const float *x,
                                const float *dy, int B, int T, int n_prefill, int n_decode, ttt_layer_dev_check *res);

#ifdef __cplusplus
}
#endif
#endif
