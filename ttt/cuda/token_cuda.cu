/* The ops indexed by token ids, as in ttt/embedding.c and ttt/xent.c:
 * embedding lookup and softmax cross-entropy. Ids live on the device, so
 * the forwards validate them there first (one small kernel and a sync,
 * needed anyway for the int they return) and touch nothing when one is out
 * of range. */
#include <math.h>

#include "cuda_internal.h"

/* Sets *bad when an id is >= V, or < 0 unless neg_ok. */
__global__ void check_ids_kernel(int *bad, const int32_t *ids, int N, int V, int neg_ok) {
    for (int n = blockIdx.x * blockDim.x + threadIdx.x; n < N; n += gridDim.x * blockDim.x)
        if (ids[n] >= V || (!neg_ok && ids[n] < 0)) *bad = 1;
}

/* VTTT_EINVAL (not logged, as on the CPU: the caller knows where the ids
 * came from) when an id is out of range; a CUDA failure is logged and
 * returned. The flag lives in stream-ordered scratch since the table's ops
 * have no context to hold it. Waits for the stream. */
static int check_ids(const int32_t *ids, int N, int V, int neg_ok, const char *what) {
    int *flag = NULL, bad = 0;
    int err = ttt_cuda_err(NULL, cudaMallocAsync((void **)&flag, sizeof(int), TTT_CUDA_STREAM), what);
    if (err) return err;
    err = ttt_cuda_err(NULL, cudaMemsetAsync(flag, 0, sizeof(int), TTT_CUDA_STREAM), what);
    if (!err) {
        TTT_LAUNCH(check_ids_kernel, ttt_cuda_grid((size_t)N, TTT_CUDA_BLOCK), TTT_CUDA_BLOCK, 0, TTT_CUDA_STREAM)
            (flag, ids, N, V, neg_ok);
        err = ttt_cuda_err(NULL, cudaGetLastError(), what);
    }
    if (!err) err = ttt_cuda_err(NULL, cudaMemcpyAsync(&bad, flag, sizeof(int), cudaMemcpyDeviceToHost,
                                                       TTT_CUDA_STREAM), what);
    int ferr = ttt_cuda_err(NULL, cudaFreeAsync(flag, TTT_CUDA_STREAM), what);
    if (!err) err = ferr;
    if (!err) err = ttt_cuda_err(NULL, cudaStreamSynchronize(TTT_CUDA_STREAM), what);
    if (err) return err;
    return bad ? VTTT_EINVAL : VTTT_OK;
}

/* ---- embedding --------------------------------------------------------- */
/* out (N,C) = table (V,C)[ids (N)]; the ids are already checked. */
__global__ void embedding_forward_kernel(float *out, const int32_t *ids, const float *table, int N, int C) {
    size_t total = (size_t)N * C;
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < total; i += (size_t)gridDim.x * blockDim.x)
        out[i] = table[(size_t)ids[i / C] * C + i % C];
}

/* dtable[ids[n]] += dout[n]; ids repeat, hence atomics (the order of the
 * additions, and so the last bits, vary between runs). Negative ids are skipped. */
__global__ void embedding_backward_kernel(float *dtable, const float *dout, const int32_t *ids, int N, int C) {
    size_t total = (size_t)N * C;
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < total; i += (size_t)gridDim.x * blockDim.x) {
        int id = ids[i / C];
        if (id >= 0) atomicAdd(&dtable[(size_t)id * C + i % C], dout[i]);
    }
}

int ttt_cuda_embedding_forward(float *out, const int32_t *ids, const float *table, int N, int V, int C) {
    if (N <= 0 || C <= 0) return VTTT_OK;
    int err = check_ids(ids, N, V, 0, "embedding_forward id check");
    if (err) return err;
    size_t total = (size_t)N * C;
    TTT_LAUNCH(embedding_forward_kernel, ttt_cuda_grid(total, TTT_CUDA_BLOCK), TTT_CUDA_BLOCK, 0, TTT_CUDA_STREAM)
        ( out, ids, table, N, C);
    return ttt_cuda_err(NULL, cudaGetLastError(), "embedding_forward launch");
}

void ttt_cuda_embedding_backward(float *dtable, const float *dout, const int32_t *ids, int N, int C) {
    if (!dtable || N <= 0 || C <= 0) return;
    size_t total = (size_t)N * C;
    TTT_LAUNCH(embedding_backward_kernel, ttt_cuda_grid(total, TTT_CUDA_BLOCK), TTT_CUDA_BLOCK, 0, TTT_CUDA_STREAM)
        ( dtable, dout, ids, N, C);
    ttt_cuda_check_launch("embedding_backward");
}

/* ---- cross-entropy ----------------------------------------------------- */
#define XENT_BLOCK 512

/* A running softmax denominator: s = sum exp(x - m) over the values seen. */
struct lse_acc {
    float m, s;
};

static __device__ __forceinline__ lse_acc lse_merge(lse_acc a, lse_acc b) {
    if (b.m == -INFINITY) return a;
    if (a.m == -INFINITY) return b;
    float m = fmaxf(a.m, b.m);
    return {m, a.s * expf(a.m - m) + b.s * expf(b.m - m)};
}

/* Row maximum m and log-sum ls = log(sum exp(z - m)) of z (V), for all the
 * block's threads: one online pass per thread, then a warp and a block merge. */
static __device__ void block_lse(const float *z, int V, float *m_out, float *ls_out) {
    __shared__ lse_acc warp_acc[XENT_BLOCK / 32];
    lse_acc a = {-INFINITY, 0.0f};
    for (int v = threadIdx.x; v < V; v += blockDim.x) {
        float x = z[v];
        if (x > a.m) {
            a.s = a.s * expf(a.m - x) + 1.0f;
            a.m = x;
        } else if (a.m > -INFINITY) {
            a.s += expf(x - a.m);
        }
    }
    for (int o = 16; o > 0; o >>= 1) {
        lse_acc b = {__shfl_xor_sync(0xffffffffu, a.m, o), __shfl_xor_sync(0xffffffffu, a.s, o)};
        a = lse_merge(a, b);
    }
    int warp = threadIdx.x / 32, nwarps = blockDim.x / 32;
    if (threadIdx.x % 32 == 0) warp_acc[warp] = a;
    __syncthreads();
    a = warp_acc[0];
    for (int w = 1; w < nwarps; w++) a = lse_merge(a, warp_acc[w]);
    *m_out = a.m;
    *ls_out = logf(a.s);
}

/* One block per row: losses[n] = (m - z[target]) + ls (max first: keeps
 * precision at large logits), 0 for target < 0. */
__global__ void xent_forward_kernel(float *losses, const float *logits, const int32_t *targets, int V) {
    int n = blockIdx.x, y = targets[n];
    if (y < 0) {
        if (threadIdx.x == 0) losses[n] = 0.0f;
        return;
    }
    const float *z = logits + (size_t)n * V;
    float m, ls;
    block_lse(z, V, &m, &ls);
    if (threadIdx.x == 0) losses[n] = (m - z[y]) + ls;
}

/* One block per row: dz += g * (softmax(z) - onehot(y)), g = dloss[n] or 1;
 * rows with y < 0 or y >= V contribute nothing. */
__global__ void xent_backward_kernel(float *dlogits, const float *dloss, const float *logits,
                                     const int32_t *targets, int V) {
    int n = blockIdx.x, y = targets[n];
    if (y < 0 || y >= V) return;
    const float *z = logits + (size_t)n * V;
    float *dz = dlogits + (size_t)n * V;
    float g = dloss ? dloss[n] : 1.0f, m, ls;
    block_lse(z, V, &m, &ls);
    for (int v = threadIdx.x; v < V; v += blockDim.x) {
        float d = dz[v] + g * expf((z[v] - m) - ls);
        dz[v] = v == y ? d - g : d;
    }
}

int ttt_cuda_xent_forward(float *losses, const float *logits, const int32_t *targets, int N, int V) {
    if (N <= 0) return VTTT_OK;
    int err = check_ids(targets, N, V, 1, "xent_forward target check");
    if (err) return err;
    TTT_LAUNCH(xent_forward_kernel, (unsigned)N, XENT_BLOCK, 0, TTT_CUDA_STREAM)(losses, logits, targets, V);
    return ttt_cuda_err(NULL, cudaGetLastError(), "xent_forward launch");
}

void ttt_cuda_xent_backward(float *dlogits, const float *dloss, const float *logits, const int32_t *targets,
                            int N, int V) {
    if (!dlogits || N <= 0 || V <= 0) return;
    TTT_LAUNCH(xent_backward_kernel, (unsigned)N, XENT_BLOCK, 0, TTT_CUDA_STREAM)(dlogits, dloss, logits, targets, V);
    ttt_cuda_check_launch("xent_backward");
}
