/*
 * ttt/cuda/cuda_emu.h — a CPU emulation of the CUDA subset used by the
 * fused TTT kernels and the device layer's CUDA ops, so that their device
 * code can be compiled with g++ and run on a machine without a GPU
 * (tests/test_cuda_emu.cpp; included through cuda_internal.h when
 * TTT_CUDA_EMU is defined, in that one translation unit only).
 *
 * Every CUDA thread of a block is a fiber (ucontext) with its own stack;
 * the blocks of a grid run one after another. __syncthreads() and the
 * warp-level __syncwarp() / __shfl_xor_sync() are barriers over the
 * fibers that take part (all the block's live threads, or the warp's), so
 * the kernels' ordering assumptions are exercised as written: a thread
 * that reads shared data before the barrier that publishes it sees stale
 * values here too (fibers switch only at barriers, which makes such races
 * deterministic rather than invisible). A barrier that can never complete
 * (threads waiting at different barriers) aborts with a message.
 *
 * Dynamic shared memory is a fresh heap block of exactly the launch's size
 * (filled with NaN, so reads before writes show up), and a launch whose
 * block or shared memory exceeds the limits fails as on a GPU
 * (cudaGetLastError). The shared-memory opt-in limit comes from the
 * device ordinal in the context: 0 -> 227 KiB (H100), 1 -> 163 KiB
 * (A100), 2 -> 48 KiB, so every placement path of the kernels can be
 * driven. Streams are synchronous; memory is host memory. Stream capture
 * records the stream's work and a graph launch replays it (so a graph's
 * baked arguments are exercised as on a GPU); cuBLAS's Sgemm is a plain
 * loop; cuDNN and cuBLASLt are not emulated.
 */
#ifndef VTTT_CUDA_EMU_H
#define VTTT_CUDA_EMU_H

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <setjmp.h>
#include <string.h>
#include <ucontext.h>

#include <functional>
#include <vector>

/* ---- types and constants -------------------------------------------------------- */

struct dim3 {
    unsigned x, y, z;
    dim3(unsigned a = 1, unsigned b = 1, unsigned c = 1) : x(a), y(b), z(c) {}
};

typedef enum cudaError {
    cudaSuccess = 0,
    cudaErrorInvalidValue = 1,
    cudaErrorMemoryAllocation = 2,
    cudaErrorInvalidConfiguration = 9,
    cudaErrorNotSupported = 801,
} cudaError_t;

typedef struct ttt_emu_stream *cudaStream_t;
#define cudaStreamPerThread ((cudaStream_t)0x2)
typedef struct ttt_emu_graph *cudaGraph_t;
typedef struct ttt_emu_graph_exec *cudaGraphExec_t;
typedef enum { cudaStreamCaptureModeGlobal, cudaStreamCaptureModeThreadLocal } cudaStreamCaptureMode;
typedef enum { cudaMemcpyHostToDevice = 1, cudaMemcpyDeviceToHost = 2, cudaMemcpyDeviceToDevice = 3 } cudaMemcpyKind;
typedef enum { cudaDevAttrMaxSharedMemoryPerBlockOptin = 97 } cudaDeviceAttr;
typedef enum { cudaFuncAttributeMaxDynamicSharedMemorySize = 8 } cudaFuncAttribute;
typedef void *cublasHandle_t;
typedef void *cublasLtHandle_t;
typedef enum {
    CUBLAS_STATUS_SUCCESS = 0,
    CUBLAS_STATUS_INVALID_VALUE = 7,
    CUBLAS_STATUS_NOT_SUPPORTED = 15
} cublasStatus_t;
typedef enum { CUBLAS_OP_N = 0, CUBLAS_OP_T = 1 } cublasOperation_t;

#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __launch_bounds__(n)
#define __shared__ static
#define __align__(n) alignas(n)

/* ---- the machine ------------------------------------------------------------------ */

namespace ttt_emu_rt {

/* A fiber starts through makecontext/swapcontext and afterwards switches
 * with _setjmp/_longjmp, which do not save the signal mask (swapcontext's
 * system call per switch would dominate the run time). */
struct fiber {
    ucontext_t ctx;
    jmp_buf jb;
    dim3 tid;
    int linear, done, started;
};

/* One kernel launch in progress. Fibers switch only inside barriers. */
struct machine {
    dim3 grid, block, bid;
    std::vector<fiber> f;
    std::vector<std::vector<char>> stacks;
    ucontext_t sched;
    jmp_buf sched_jb;
    int cur, live;
    unsigned long progress;                 /* barriers completed + fibers finished */
    int arrived;                            /* at the block barrier */
    unsigned gen;                           /* block barrier generation */
    std::vector<int> warp_arrived;          /* per warp */
    std::vector<unsigned> warp_gen;
    std::vector<int> warp_live;
    std::vector<float> shfl;                /* (warps, 32) exchange slots */
    std::function<void()> body;
    char *dyn_smem;
    cudaError_t last_error;
    /* stream capture: while recording, stream work is appended here
     * instead of run (a graph is such a list, replayed in order) */
    std::vector<std::function<void()>> *recording;
};

/* Runs work now, or records it into the graph being captured. */
static inline void stream_do(const std::function<void()> &work);

static machine M;

static inline size_t optin_bytes(int dev) { return dev == 0 ? 232448 : dev == 1 ? 166912 : 49152; }

/* Back to the scheduler until it resumes this fiber. */
static inline void yield() {
    if (!_setjmp(M.f[(size_t)M.cur].jb)) _longjmp(M.sched_jb, 1);
}

static inline void block_barrier() {
    unsigned g = M.gen;
    if (++M.arrived == M.live) {
        M.arrived = 0, M.gen++, M.progress++;
        return;
    }
    while (M.gen == g) yield();
}

static inline void warp_barrier() {
    int w = M.f[M.cur].linear / 32;
    unsigned g = M.warp_gen[w];
    if (++M.warp_arrived[w] == M.warp_live[w]) {
        M.warp_arrived[w] = 0, M.warp_gen[w]++, M.progress++;
        return;
    }
    while (M.warp_gen[w] == g) yield();
}

static void fiber_main() {
    M.body();
    fiber &me = M.f[M.cur];
    me.done = 1, M.live--, M.warp_live[me.linear / 32]--, M.progress++;
    /* a barrier that now has everyone else completes (exited threads do not count) */
    if (M.live > 0 && M.arrived == M.live) M.arrived = 0, M.gen++;
    int w = me.linear / 32;
    if (M.warp_live[w] > 0 && M.warp_arrived[w] == M.warp_live[w]) M.warp_arrived[w] = 0, M.warp_gen[w]++;
    _longjmp(M.sched_jb, 1);
}

/* Runs fiber i until it yields or finishes. Out of line, so that the
 * scheduler's locals are not live across the _setjmp. */
__attribute__((noinline)) static void resume(int i) {
    M.cur = i;
    fiber &fb = M.f[(size_t)i];
    if (_setjmp(M.sched_jb)) return; /* the fiber yielded or finished */
    if (!fb.started) {
        fb.started = 1;
        swapcontext(&M.sched, &fb.ctx);
    } else {
        _longjmp(fb.jb, 1);
    }
}

/* Runs one block: every thread a fiber from the start of body, round
 * robin until all are done. */
static void run_block() {
    int n = (int)(M.block.x * M.block.y * M.block.z), nw = (n + 31) / 32;
    M.f.assign((size_t)n, fiber());
    if (M.stacks.size() < (size_t)n) M.stacks.resize((size_t)n, std::vector<char>(256 * 1024));
    M.live = n, M.arrived = 0, M.gen = 0;
    M.warp_arrived.assign((size_t)nw, 0), M.warp_gen.assign((size_t)nw, 0u), M.warp_live.assign((size_t)nw, 0);
    M.shfl.assign((size_t)nw * 32, 0.0f);
    for (int i = 0; i < n; i++) {
        fiber &fb = M.f[(size_t)i];
        fb.linear = i, fb.done = 0, fb.started = 0;
        fb.tid = dim3((unsigned)i % M.block.x, ((unsigned)i / M.block.x) % M.block.y,
                      (unsigned)i / (M.block.x * M.block.y));
        M.warp_live[(size_t)i / 32]++;
        getcontext(&fb.ctx);
        fb.ctx.uc_stack.ss_sp = M.stacks[(size_t)i].data();
        fb.ctx.uc_stack.ss_size = M.stacks[(size_t)i].size();
        fb.ctx.uc_link = &M.sched;
        makecontext(&fb.ctx, fiber_main, 0);
    }
    int idle_rounds = 0;
    while (M.live > 0) {
        unsigned long before = M.progress;
        for (int i = 0; i < n; i++) {
            if (M.f[(size_t)i].done) continue;
            resume(i);
        }
        idle_rounds = M.progress == before ? idle_rounds + 1 : 0;
        if (idle_rounds > 4) {
            fprintf(stderr, "cuda_emu: deadlock in block (%u,%u,%u): %d threads wait at barriers that cannot "
                            "complete (a __syncthreads or warp operation not reached by all threads)\n",
                    M.bid.x, M.bid.y, M.bid.z, M.live);
            abort();
        }
    }
}

/* Checks the configuration like the driver, then runs every block. */
static void launch(dim3 grid, dim3 block, size_t smem, int dev, const std::function<void()> &body) {
    size_t nthr = (size_t)block.x * block.y * block.z;
    if (nthr == 0 || nthr > 1024 || grid.x == 0 || grid.y == 0 || grid.z == 0 || smem > optin_bytes(dev)) {
        M.last_error = cudaErrorInvalidConfiguration;
        return;
    }
    M.grid = grid, M.block = block, M.body = body;
    for (unsigned z = 0; z < grid.z; z++)
        for (unsigned y = 0; y < grid.y; y++)
            for (unsigned x = 0; x < grid.x; x++) {
                M.bid = dim3(x, y, z);
                size_t nf = (smem + sizeof(float) - 1) / sizeof(float), bytes = (nf * sizeof(float) + 15) & ~(size_t)15;
                float *sm = (float *)aligned_alloc(16, bytes ? bytes : 16);
                if (!sm) abort();
                for (size_t i = 0; i < nf; i++) sm[i] = NAN;
                M.dyn_smem = (char *)sm;
                run_block();
                free(sm);
                M.dyn_smem = NULL;
            }
}

/* The launch syntax TTT_LAUNCH(k, grid, block, smem, stream)(args...). The
 * opt-in limit needs the device, which the launch does not name: the
 * emulation reads it from emu_dev, set by the test. */
static int emu_dev = 0;

template <class K>
struct launcher {
    K k;
    dim3 g, b;
    size_t s;
    template <class... A>
    void operator()(A... args) const {
        K kk = k;
        dim3 gg = g, bb = b;
        size_t ss = s;
        int dev = emu_dev;
        stream_do([=]() { launch(gg, bb, ss, dev, [=]() { kk(args...); }); });
    }
};

static inline void stream_do(const std::function<void()> &work) {
    if (M.recording) M.recording->push_back(work);
    else work();
}

} // namespace ttt_emu_rt

struct ttt_emu_graph {
    std::vector<std::function<void()>> work;
};
struct ttt_emu_graph_exec {
    std::vector<std::function<void()>> work;
};

#define threadIdx (ttt_emu_rt::M.f[(size_t)ttt_emu_rt::M.cur].tid)
#define blockIdx (ttt_emu_rt::M.bid)
#define blockDim (ttt_emu_rt::M.block)
#define gridDim (ttt_emu_rt::M.grid)

#define TTT_LAUNCH(k, g, b, s, st) (ttt_emu_rt::launcher<decltype(&k)>{&k, dim3(g), dim3(b), (size_t)(s)})
#define TTT_DYN_SMEM(type, name) type *name = (type *)ttt_emu_rt::M.dyn_smem

static inline void __syncthreads() { ttt_emu_rt::block_barrier(); }
static inline void __syncwarp(unsigned mask = 0xffffffffu) {
    (void)mask;
    ttt_emu_rt::warp_barrier();
}
static inline float __shfl_xor_sync(unsigned mask, float v, int lane_mask) {
    (void)mask;
    using namespace ttt_emu_rt;
    int me = M.f[(size_t)M.cur].linear, w = me / 32, lane = me % 32;
    M.shfl[(size_t)w * 32 + lane] = v;
    warp_barrier();
    float r = M.shfl[(size_t)w * 32 + (lane ^ lane_mask)];
    warp_barrier();
    return r;
}

/* ---- the runtime calls ------------------------------------------------------------ */

static inline cudaError_t cudaGetLastError() {
    cudaError_t e = ttt_emu_rt::M.last_error;
    ttt_emu_rt::M.last_error = cudaSuccess;
    return e;
}
static inline cudaError_t cudaPeekAtLastError() { return ttt_emu_rt::M.last_error; }
static inline const char *cudaGetErrorString(cudaError_t e) { return e ? "emulated CUDA error" : "no error"; }
static inline const char *cudaGetErrorName(cudaError_t e) { return e ? "cudaErrorEmulated" : "cudaSuccess"; }
static inline cudaError_t cudaDeviceGetAttribute(int *v, cudaDeviceAttr a, int dev) {
    if (a != cudaDevAttrMaxSharedMemoryPerBlockOptin) return cudaErrorInvalidValue;
    *v = (int)ttt_emu_rt::optin_bytes(dev);
    return cudaSuccess;
}
template <class K>
static inline cudaError_t cudaFuncSetAttribute(K, cudaFuncAttribute, int bytes) {
    return (size_t)bytes <= ttt_emu_rt::optin_bytes(ttt_emu_rt::emu_dev) ? cudaSuccess : cudaErrorInvalidValue;
}
static inline cudaError_t cudaMemsetAsync(void *p, int v, size_t n, cudaStream_t) {
    ttt_emu_rt::stream_do([=]() { memset(p, v, n); });
    return cudaSuccess;
}
static inline cudaError_t cudaMemcpyAsync(void *d, const void *s, size_t n, cudaMemcpyKind kind, cudaStream_t) {
    if (kind != cudaMemcpyDeviceToDevice && ttt_emu_rt::M.recording) return cudaErrorNotSupported; /* host memory */
    ttt_emu_rt::stream_do([=]() { memmove(d, s, n); });
    return cudaSuccess;
}
static inline cudaError_t cudaMallocAsync(void **p, size_t n, cudaStream_t) {
    *p = malloc(n ? n : 1);
    return *p ? cudaSuccess : cudaErrorMemoryAllocation;
}
static inline cudaError_t cudaFreeAsync(void *p, cudaStream_t) {
    free(p);
    return cudaSuccess;
}
/* Synchronizing a stream that is being captured is an error on a GPU. */
static inline cudaError_t cudaStreamSynchronize(cudaStream_t) {
    return ttt_emu_rt::M.recording ? cudaErrorNotSupported : cudaSuccess;
}
/* Fibers switch only at barriers, so a plain add is atomic here. */
static inline float atomicAdd(float *p, float v) {
    float old = *p;
    *p = old + v;
    return old;
}
/* cuBLAS's column-major C (m,n) = alpha op(A) op(B) + beta C, the plain
 * way (double accumulation, so that the emulation's GEMMs are a reference,
 * not a second source of rounding). */
static inline cublasStatus_t cublasSgemm(cublasHandle_t, cublasOperation_t ta, cublasOperation_t tb, int m, int n,
                                         int k, const float *alpha, const float *A, int lda, const float *B, int ldb,
                                         const float *beta, float *C, int ldc) {
    if (m < 0 || n < 0 || k < 0) return CUBLAS_STATUS_INVALID_VALUE;
    if (ttt_emu_rt::M.recording) { /* the scalars are read now, as cuBLAS does in host pointer mode */
        float al = *alpha, be = *beta;
        ttt_emu_rt::stream_do([=]() { cublasSgemm(NULL, ta, tb, m, n, k, &al, A, lda, B, ldb, &be, C, ldc); });
        return CUBLAS_STATUS_SUCCESS;
    }
    for (int j = 0; j < n; j++)
        for (int i = 0; i < m; i++) {
            double acc = 0.0;
            for (int l = 0; l < k; l++) {
                float a = ta == CUBLAS_OP_N ? A[(size_t)l * lda + i] : A[(size_t)i * lda + l];
                float b = tb == CUBLAS_OP_N ? B[(size_t)j * ldb + l] : B[(size_t)l * ldb + j];
                acc += (double)a * b;
            }
            float *c = &C[(size_t)j * ldc + i];
            *c = (float)(*alpha * acc + (*beta == 0.0f ? 0.0 : (double)*beta * *c));
        }
    return CUBLAS_STATUS_SUCCESS;
}
/* Stream capture records the stream's work (kernel launches with their
 * arguments as passed, memsets, device copies, Sgemm calls) instead of
 * running it; a launched graph runs the record in order. Capturing while
 * capturing fails, as does work that cannot be captured (a host copy, a
 * synchronization). ttt_emu_rt::no_graphs = 1 makes capture fail, like a
 * driver without graphs. */
namespace ttt_emu_rt {
static int no_graphs = 0;
}
static inline cudaError_t cudaStreamBeginCapture(cudaStream_t, cudaStreamCaptureMode) {
    if (ttt_emu_rt::no_graphs || ttt_emu_rt::M.recording) return cudaErrorNotSupported;
    ttt_emu_rt::M.recording = new std::vector<std::function<void()>>();
    return cudaSuccess;
}
static inline cudaError_t cudaStreamEndCapture(cudaStream_t, cudaGraph_t *g) {
    *g = NULL;
    if (!ttt_emu_rt::M.recording) return cudaErrorInvalidValue;
    ttt_emu_graph *graph = new ttt_emu_graph;
    graph->work.swap(*ttt_emu_rt::M.recording);
    delete ttt_emu_rt::M.recording;
    ttt_emu_rt::M.recording = NULL;
    *g = graph;
    return cudaSuccess;
}
static inline cudaError_t cudaGraphInstantiate(cudaGraphExec_t *x, cudaGraph_t g, unsigned long long) {
    *x = new ttt_emu_graph_exec{g->work};
    return cudaSuccess;
}
static inline cudaError_t cudaGraphDestroy(cudaGraph_t g) {
    delete g;
    return cudaSuccess;
}
static inline cudaError_t cudaGraphLaunch(cudaGraphExec_t x, cudaStream_t) {
    for (auto &w : x->work) w();
    return cudaSuccess;
}
static inline cudaError_t cudaGraphExecDestroy(cudaGraphExec_t x) {
    delete x;
    return cudaSuccess;
}

#endif
