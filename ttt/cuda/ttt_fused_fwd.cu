/*
 * Fused TTT inner loop on the GPU, forward: prefill (one thread block per
 * (sequence, head) walking its mini-batches in order, dual form, as
 * ttt_head_run and ttt_dual_forward) and the per-token decode step (as
 * ttt_seq.c token_step). The building blocks are in ttt_fused.cuh.
 *
 * Where the state lives. A block keeps its head's inner state (W1, b1
 * [, W2, b2], fp32) in shared memory when it fits next to the mini-batch
 * scratch (TTT-MLP f=64, h1=256: 129 KiB of state + 68 KiB of scratch,
 * within the 227 KiB an H100 block may opt into; an A100's 163 KiB is not
 * enough; TTT-Linear f=64: 16 + 27 KiB), else in global memory with the
 * scratch in shared memory, else both in global memory (the workspace).
 * The same device code serves all three; only the pointers differ.
 *
 * What would come next, for speed (this version is the obviously-correct
 * one: one thread per output element, dot products out of shared memory):
 * - tensor cores: the products are (2b x f) x (f x h1), (b x h1) x (h1 x f)
 *   and rank-b updates, all multiples of 16: mma.sync / wgmma with bf16
 *   (or tf32) operands and fp32 accumulation, the state kept in fp32 and
 *   rounded per use;
 * - register tiles instead of one output per thread, and fewer
 *   __syncthreads by fusing independent products (the commit with the
 *   query-side products, the two commit updates);
 * - more than B*H blocks: at B=1, H=12 an H100 runs 12 of its 132 SMs.
 *   Split h1 across a thread-block cluster (distributed shared memory on
 *   sm_90) so one head spans several SMs, or run the key-side products of
 *   mini-batch m+1 (which need only W0) as a separate wide kernel;
 * - double-buffered cp.async / TMA loads of the next mini-batch's rows;
 * - for the backward: the state and its gradient in distributed shared
 *   memory instead of global memory, and the recompute fused with the
 *   differentiation of the group's last mini-batch.
 */
#include "ttt_fused.cuh"

/* ---- prefill ------------------------------------------------------------------ */

/* out (f) = q + LN(z). */
static __device__ void warp_ln_out(const float *z, const float *q, const float *w, const float *bb, int f, int lane,
                                   float *out) {
    float mu, r;
    warp_ln_stats(z, f, lane, &mu, &r);
    for (int c = lane; c < f; c += 32) {
        float y = (z[c] - mu) * r * w[c] + bb[c];
        out[c] = y + q[c];
    }
}

/* One mini-batch forward (ttt_dual_forward): outputs q + LN(Zf) into
 * mb.out, then the commit of W, or (no commit) A += sum_j lr_j grad_j if A
 * is given (A.W1 != NULL). */
static __device__ void dual_forward(const kshape &S, const kbufs &B, const kmb &mb, const kstate &W, const kstate &A,
                                    int commit) {
    int n = mb.n, f = S.f;
    mb_load(S, B, mb);
    dual_keys(S, B, mb, W);
    dual_queries(S, B, mb, W);
    blk_rows(n, [&](int i, int lane) {
        warp_ln_out(B.Zf + (size_t)i * f, mb.q + (size_t)i * S.D, B.ln_w, B.ln_b, f, lane, mb.out + (size_t)i * S.D);
    });
    if (commit) {
        last_eta(B, n);
        dual_apply(S, B, n, W, B.e, -1.0f);
    } else if (A.W1) {
        dual_apply(S, B, n, A, B.lr, 1.0f);
    }
}

struct fwd_args {
    kshape S;
    ttt_cuda_layout L;
    const float *XQ, *XK, *XV, *lr; /* (B,T,D), lr (B,T,H) */
    float *Z;                       /* (B,T,D) */
    const float *ln_w, *ln_b, *token_idx;
    float *W, *A;    /* (B*H, numel); A may be NULL */
    float *ckpt;     /* (B*H, n_groups, numel) or NULL */
    int group, n_groups;
    int t0;          /* first token, at a mini-batch boundary */
    float *ws;       /* (B*H, L.total) scratch used when not in shared memory */
    int state_smem, scratch_smem;
};

/* Floats of the state's slot in shared memory (keeps the scratch after it
 * 128-byte aligned). */
static __host__ __device__ size_t state_slot(size_t numel) { return (numel + 31) & ~(size_t)31; }

/* Grid: B*H blocks, block bh = bi*H + h. Dynamic shared memory: the state
 * slot (state_smem) then the scratch (scratch_smem). */
__global__ void __launch_bounds__(TTT_FUSED_THREADS) ttt_prefill_kernel(fwd_args a) {
    TTT_DYN_SMEM(float, smem);
    const kshape &S = a.S;
    int bh = blockIdx.x, bi = bh / S.H, h = bh % S.H;
    float *Wg = a.W + (size_t)bh * S.numel;
    float *W = a.state_smem ? smem : Wg;
    float *scr = a.scratch_smem ? smem + (a.state_smem ? state_slot(S.numel) : 0) : a.ws + (size_t)bh * a.L.total;
    kbufs B = kbufs_at(a.L, scr, S.f);
    if (a.state_smem) blk_for(S.numel, [&](size_t i) { W[i] = Wg[i]; });
    load_head_consts(S, B, a.token_idx, a.ln_w, a.ln_b, h);
    kstate st = kstate_at(S, W), acc = {NULL, NULL, NULL, NULL};
    if (a.A) acc = kstate_at(S, a.A + (size_t)bh * S.numel);
    int m = 0;
    for (int t = a.t0; t < S.T; t += S.b, m++) {
        if (a.ckpt && m % a.group == 0) { /* W is next written by the commit, several barriers later */
            float *dst = a.ckpt + ((size_t)bh * a.n_groups + m / a.group) * S.numel;
            for (size_t i = threadIdx.x; i < S.numel; i += blockDim.x) dst[i] = W[i];
        }
        kmb mb = kmb_at(S, a.XQ, a.XK, a.XV, a.lr, a.Z, bi, h, t);
        dual_forward(S, B, mb, st, acc, mb.n == S.b);
    }
    if (a.state_smem) blk_for(S.numel, [&](size_t i) { Wg[i] = W[i]; });
}

/* ---- decode step --------------------------------------------------------------- */

struct tok_args {
    kshape S;                       /* S.T: tokens per sequence of the buffers */
    const float *XQ, *XK, *XV, *lr; /* (B,T,D), lr (B,T,H) */
    float *Z;
    int t;                          /* the token's index in the buffers */
    int i;                          /* its index in the running mini-batch, (pos + t) mod b */
    const float *ln_w, *ln_b, *token_idx;
    float *W, *A;                   /* (B*H, numel) */
};

/* Element e of one token's loss gradient: [k g1^T | g1 | x2 g2^T | g2]. */
static __device__ __forceinline__ float token_grad_at(const kshape &S, size_t e, const float *k, const float *g1,
                                                      const float *x2, const float *g2) {
    size_t n1 = (size_t)S.f * S.h1;
    if (e < n1) return k[e / S.h1] * g1[e % S.h1];
    e -= n1;
    if (e < (size_t)S.h1) return g1[e];
    e -= S.h1;
    if (e < n1) return x2[e / S.f] * g2[e % S.f];
    return g2[e - n1];
}

/* z (out) = x (in) . (W - s A) + (bias - s Ab), the inner layer at
 * W_i = W - s A, formed on the fly (token_step materialises W_i). */
static __device__ void layer_at(float *z, const float *x, const float *W, const float *bias, const float *A,
                                const float *Ab, float s, int in, int out) {
    blk_for((size_t)out, [&](size_t c) {
        float acc = 0.0f;
        for (int a = 0; a < in; a++) acc += x[a] * (W[(size_t)a * out + c] - s * A[(size_t)a * out + c]);
        z[c] = acc + (bias[c] - s * Ab[c]);
    });
}

/* One token of one (sequence, head): its loss gradient at W (the state
 * committed at the last boundary), A += lr grad, the output at
 * W_i = W - s_i A, and at the mini-batch's last token W = W_i, A = 0.
 * Grid B*H; shared memory: q, k (f), z1, x2, g1, zq, xq (h1), z2, g2, zq2 (f). */
__global__ void __launch_bounds__(TTT_FUSED_THREADS) ttt_token_kernel(tok_args a) {
    TTT_DYN_SMEM(float, sm);
    const kshape &S = a.S;
    int f = S.f, h1 = S.h1, bh = blockIdx.x, bi = bh / S.H, h = bh % S.H;
    float *q = sm, *k = q + f, *z1 = k + f, *x2 = z1 + h1, *g1 = x2 + h1, *zq = g1 + h1, *xq = zq + h1;
    float *z2 = xq + h1, *g2 = z2 + f, *zq2 = g2 + f;
    size_t row = ((size_t)bi * S.T + a.t) * S.D + (size_t)h * f;
    const float *v = a.XV + row, *ln_w = a.ln_w + (size_t)h * f, *ln_b = a.ln_b + (size_t)h * f;
    float lr = a.lr[((size_t)bi * S.T + a.t) * S.H + h];
    float sv = 1.0f / (float)(a.i + 1) + a.token_idx[a.i], s = sv > 0.0f ? sv : 0.0f;
    kstate W = kstate_at(S, a.W + (size_t)bh * S.numel), A = kstate_at(S, a.A + (size_t)bh * S.numel);
    blk_for((size_t)2 * f, [&](size_t c) { sm[c] = c < (size_t)f ? a.XQ[row + c] : a.XK[row + c - f]; });
    /* the loss gradient at W (ttt_token_grad) */
    blk_for((size_t)h1, [&](size_t c) {
        float acc = 0.0f;
        for (int r = 0; r < f; r++) acc += k[r] * W.W1[(size_t)r * h1 + c];
        z1[c] = acc + W.b1[c];
    });
    if (S.mlp) {
        blk_for((size_t)h1, [&](size_t c) { x2[c] = ttt_gelu(z1[c]); });
        blk_for((size_t)f, [&](size_t o) {
            float acc = 0.0f;
            for (int c = 0; c < h1; c++) acc += x2[c] * W.W2[(size_t)c * f + o];
            z2[o] = acc + W.b2[o];
        });
        blk_rows(1, [&](int, int lane) { warp_lnl2_grad(z2, k, v, ln_w, ln_b, f, lane, g2); });
        blk_for((size_t)h1, [&](size_t c) {
            float acc = 0.0f;
            for (int o = 0; o < f; o++) acc += g2[o] * W.W2[(size_t)c * f + o];
            g1[c] = acc * ttt_gelu_d1(z1[c]);
        });
    } else {
        blk_rows(1, [&](int, int lane) { warp_lnl2_grad(z1, k, v, ln_w, ln_b, f, lane, g1); });
    }
    float *Ap = a.A + (size_t)bh * S.numel, *Wp = a.W + (size_t)bh * S.numel;
    blk_for(S.numel, [&](size_t e) { Ap[e] += lr * token_grad_at(S, e, k, g1, x2, g2); });
    /* the output at W_i (ttt_token_apply) */
    layer_at(zq, q, W.W1, W.b1, A.W1, A.b1, s, f, h1);
    const float *zo = zq;
    if (S.mlp) {
        blk_for((size_t)h1, [&](size_t c) { xq[c] = ttt_gelu(zq[c]); });
        layer_at(zq2, xq, W.W2, W.b2, A.W2, A.b2, s, h1, f);
        zo = zq2;
    }
    blk_rows(1, [&](int, int lane) { warp_ln_out(zo, q, ln_w, ln_b, f, lane, a.Z + row); });
    if (a.i == S.b - 1) /* commit */
        blk_for(S.numel, [&](size_t e) {
            Wp[e] = Wp[e] - s * Ap[e];
            Ap[e] = 0.0f;
        });
}

/* ---- state init ------------------------------------------------------------------ */

/* W (B*H, numel): head h's learned initial state for every sequence. */
__global__ void state_init_kernel(float *W, kshape S, const float *W1, const float *b1, const float *W2,
                                  const float *b2) {
    size_t total = (size_t)S.B * S.H * S.numel, n1 = (size_t)S.f * S.h1;
    for (size_t idx = blockIdx.x * (size_t)blockDim.x + threadIdx.x; idx < total;
         idx += (size_t)gridDim.x * blockDim.x) {
        size_t h = (idx / S.numel) % S.H, e = idx % S.numel;
        float v;
        if (e < n1) v = W1[h * n1 + e];
        else if ((e -= n1) < (size_t)S.h1) v = b1[h * S.h1 + e];
        else if ((e -= S.h1) < n1) v = W2[h * n1 + e];
        else v = b2[h * S.f + e - n1];
        W[idx] = v;
    }
}

/* ---- launchers -------------------------------------------------------------------- */

extern "C" int ttt_cuda_state_init(const vttt_backend *be, const ttt_cuda_shape *s, const ttt_cuda_params *p,
                                   float *W, float *A) {
    ttt_cuda_ctx *ctx = ctx_of(be, "ttt_cuda_state_init");
    if (!ctx) return VTTT_EINVAL;
    int err = check_shape(ctx, s, p, "ttt_cuda_state_init");
    if (err) return err;
    kshape S = kshape_of(s);
    size_t total = (size_t)S.B * S.H * S.numel;
    TTT_LAUNCH(state_init_kernel, ttt_cuda_grid(total, TTT_CUDA_BLOCK), TTT_CUDA_BLOCK, 0, ctx->stream)
        (W, S, p->W1, p->b1, p->W2, p->b2);
    err = ttt_cuda_err(&ctx->log, cudaGetLastError(), "state init launch");
    if (!err && A)
        err = ttt_cuda_err(&ctx->log, cudaMemsetAsync(A, 0, total * sizeof(float), ctx->stream), "zeroing A");
    return err;
}

/* Launches the token kernel for token t of io's (B,T,D) buffers at
 * mini-batch index i. */
static int launch_token(ttt_cuda_ctx *ctx, const kshape &S, const ttt_cuda_params *p, const ttt_cuda_io *io, int t,
                        int i, float *W, float *A) {
    tok_args a;
    a.S = S, a.XQ = io->XQ, a.XK = io->XK, a.XV = io->XV, a.lr = io->lr, a.Z = io->Z, a.t = t, a.i = i;
    a.ln_w = p->ln_w, a.ln_b = p->ln_b, a.token_idx = p->token_idx, a.W = W, a.A = A;
    size_t smem = ((size_t)5 * S.f + (size_t)5 * S.h1) * sizeof(float), optin;
    int err = smem_optin(ctx, &optin);
    if (err) return err;
    if (smem > optin) {
        vttt_log(&ctx->log, VTTT_LOG_ERROR, "decode step: %zu bytes of shared memory needed, the device allows %zu",
                 smem, optin);
        return VTTT_ENOTSUP;
    }
    if ((err = smem_allow(ctx, ttt_token_kernel, smem))) return err;
    TTT_LAUNCH(ttt_token_kernel, S.B * S.H, TTT_FUSED_THREADS, smem, ctx->stream)(a);
    return ttt_cuda_err(&ctx->log, cudaGetLastError(), "decode step launch");
}

extern "C" int ttt_cuda_decode(const vttt_backend *be, const ttt_cuda_shape *s, const ttt_cuda_params *p,
                               const ttt_cuda_io *io, int64_t pos, float *W, float *A) {
    ttt_cuda_ctx *ctx = ctx_of(be, "ttt_cuda_decode");
    if (!ctx) return VTTT_EINVAL;
    int err = check_shape(ctx, s, p, "ttt_cuda_decode");
    if (err) return err;
    if (s->T != 1 || pos < 0 || !io || !io->XQ || !io->XK || !io->XV || !io->lr || !io->Z || !W || !A) {
        vttt_log(&ctx->log, VTTT_LOG_ERROR, "ttt_cuda_decode: needs T == 1 (got %d), pos >= 0, all of q, k, v, "
                                            "lr, Z and the state W, A", s->T);
        return VTTT_EINVAL;
    }
    return launch_token(ctx, kshape_of(s), p, io, 0, (int)(pos % s->b), W, A);
}

/* Picks where the prefill kernel keeps state and scratch, and its shared
 * memory in bytes. */
static int prefill_placement(ttt_cuda_ctx *ctx, const kshape &S, const ttt_cuda_layout &L, fwd_args *a,
                             size_t *smem) {
    size_t optin;
    int err = smem_optin(ctx, &optin);
    if (err) return err;
    size_t st = state_slot(S.numel) * sizeof(float), scr = L.total * sizeof(float);
    a->state_smem = st + scr <= optin;
    a->scratch_smem = scr <= optin;
    *smem = (a->state_smem ? st : 0) + (a->scratch_smem ? scr : 0);
    return VTTT_OK;
}

extern "C" int ttt_cuda_prefill(const vttt_backend *be, const ttt_cuda_shape *s, const ttt_cuda_params *p,
                                const ttt_cuda_io *io, int64_t pos, float *W, float *A, float *ckpt, int group,
                                void *ws, size_t ws_bytes) {
    ttt_cuda_ctx *ctx = ctx_of(be, "ttt_cuda_prefill");
    if (!ctx) return VTTT_EINVAL;
    int err = check_shape(ctx, s, p, "ttt_cuda_prefill");
    if (err) return err;
    int lead = (int)((s->b - pos % s->b) % s->b); /* tokens before the next boundary */
    if (lead > s->T) lead = s->T;
    if (pos < 0 || !io || !io->XQ || !io->XK || !io->XV || !io->lr || !io->Z || !W || (lead > 0 && !A) ||
        (ckpt && group <= 0) || ws_bytes < ttt_cuda_fwd_workspace(s) || (!ws && ws_bytes)) {
        vttt_log(&ctx->log, VTTT_LOG_ERROR,
                 "ttt_cuda_prefill: bad arguments (pos=%lld, A %s with pos %% b = %d, ckpt group %d, workspace "
                 "%zu bytes of %zu needed)",
                 (long long)pos, A ? "given" : "NULL", (int)(pos % s->b), group, ws_bytes, ttt_cuda_fwd_workspace(s));
        return VTTT_EINVAL;
    }
    kshape S = kshape_of(s);
    for (int t = 0; t < lead; t++)
        if ((err = launch_token(ctx, S, p, io, t, (int)((pos + t) % s->b), W, A))) return err;
    if (lead == S.T) return VTTT_OK;
    fwd_args a;
    a.S = S, a.L = ttt_cuda_layout_of(s, 0);
    a.XQ = io->XQ, a.XK = io->XK, a.XV = io->XV, a.lr = io->lr, a.Z = io->Z;
    a.ln_w = p->ln_w, a.ln_b = p->ln_b, a.token_idx = p->token_idx;
    a.W = W, a.A = A, a.ckpt = ckpt, a.group = ckpt ? group : 1;
    a.n_groups = ttt_cuda_num_groups(S.T - lead, S.b, a.group);
    a.t0 = lead, a.ws = (float *)ws;
    size_t smem;
    if ((err = prefill_placement(ctx, S, a.L, &a, &smem))) return err;
    if ((err = smem_allow(ctx, ttt_prefill_kernel, smem))) return err;
    TTT_LAUNCH(ttt_prefill_kernel, S.B * S.H, TTT_FUSED_THREADS, smem, ctx->stream)(a);
    return ttt_cuda_err(&ctx->log, cudaGetLastError(), "prefill launch");
}
