/*
 * Fused TTT inner loop on the GPU, backward: one thread block per
 * (sequence, head) walks the checkpoint groups in reverse, recomputes the
 * group's states from its checkpoint (keys and commit only: the outputs
 * are not needed again), then differentiates the group's mini-batches in
 * reverse exactly as ttt_dual_backward (ttt/ttt_inner_bwd.c), second-order
 * terms included. A second kernel reduces the per-(sequence, head)
 * gradients of the initial state, the token scales and the inner
 * LayerNorm into the layer's gradients, as ttt_backward.c reduce_heads.
 *
 * Memory: the group's recomputed states, the running gradient of the
 * state and the per-head partials live in the global workspace
 * (ttt_cuda_bwd_workspace); the mini-batch scratch (the forward's buffers
 * kept apart, plus the backward's) in shared memory when it fits
 * (TTT-Linear f=64: 66 KiB; TTT-MLP f=64: 227 KiB, exactly an H100's
 * opt-in limit), else in the workspace too (TTT-MLP on an A100). See
 * ttt_fused_fwd.cu for what comes next.
 */
#include "ttt_fused.cuh"

/* ---- the backward of one mini-batch (ttt_inner_bwd.c) ------------------------- */

/* Backward of warp_lnl2_grad given dG (ttt_lnl2_grad_row_backward):
 * dz += ..., dv += dt, dk -= dt; the LayerNorm parameter gradients of
 * this row go to pw, pb (written, summed over rows by the caller); dxt (f)
 * is scratch. */
static __device__ void warp_lnl2_backward(const float *z, const float *k, const float *v, const float *w,
                                          const float *bb, int f, int lane, const float *dG, float *dz, float *dv,
                                          float *dk, float *pw, float *pb, float *dxt) {
    float mu, r, mg = 0.0f, mgx = 0.0f, mdg = 0.0f, mdgx = 0.0f;
    warp_ln_stats(z, f, lane, &mu, &r);
    for (int c = lane; c < f; c += 32) {
        float xh = (z[c] - mu) * r;
        float gx = w[c] * (w[c] * xh + bb[c] - (v[c] - k[c]));
        mg += gx, mgx += gx * xh, mdg += dG[c], mdgx += dG[c] * xh;
    }
    mg = ttt_warp_sum(mg) / (float)f, mgx = ttt_warp_sum(mgx) / (float)f;
    mdg = ttt_warp_sum(mdg) / (float)f, mdgx = ttt_warp_sum(mdgx) / (float)f;
    float sgd = 0.0f, m1 = 0.0f, m2 = 0.0f;
    for (int c = lane; c < f; c += 32) {
        float xh = (z[c] - mu) * r, t = v[c] - k[c];
        float gx = w[c] * (w[c] * xh + bb[c] - t);
        float G = r * (gx - mg - xh * mgx);
        sgd += G * dG[c];
        float dgx = r * (dG[c] - mdg - xh * mdgx); /* through gx, mean(gx), mean(gx xh) */
        float dxh = -r * mgx * dG[c] - r * gx * mdgx; /* xh's explicit appearances in G */
        float res = w[c] * xh + bb[c] - t, dres = dgx * w[c];
        pw[c] = dgx * res + dres * xh;
        pb[c] = dres;
        dv[c] += -dres; /* dt = -dres */
        dk[c] -= -dres;
        dxt[c] = dxh + dres * w[c];
        m1 += dxt[c], m2 += dxt[c] * xh;
    }
    sgd = ttt_warp_sum(sgd);
    m1 = ttt_warp_sum(m1) / (float)f, m2 = ttt_warp_sum(m2) / (float)f;
    float dsig = -sgd * r; /* d sigma = -sum(G dG) / sigma; d sigma / dz = xh / f */
    for (int c = lane; c < f; c += 32) {
        float xh = (z[c] - mu) * r;
        dz[c] += r * (dxt[c] - m1 - xh * m2) + dsig * xh / (float)f;
    }
}

/* Backward of W' = W - X^T diag(e) G, b' = b - e^T G given dW', db' (read
 * only): dX (n,in), dG (n,out), de (n) accumulate; M (n,out) scratch. */
static __device__ void commit_backward(const float *X, const float *G, const float *e, const float *dWn,
                                       const float *dbn, int n, int in, int out, float *dX, float *dG, float *de,
                                       float *M) {
    blk_gemm(0, 0, n, out, in, X, in, dWn, out, M, out, epi_set{1.0f}); /* M = X dW' */
    blk_rows(n, [&](int j, int lane) {
        float acc = 0.0f;
        for (int o = lane; o < out; o += 32) {
            size_t jo = (size_t)j * out + o;
            float m = M[jo] + dbn[o];
            acc += m * G[jo];
            dG[jo] -= e[j] * m;
        }
        acc = ttt_warp_sum(acc);
        if (lane == 0) de[j] -= acc;
    });
    blk_for((size_t)n * out, [&](size_t jo) { M[jo] = e[jo / out] * G[jo]; });
    blk_gemm(0, 1, n, in, out, M, out, dWn, out, dX, in, epi_add{-1.0f}); /* dX -= diag(e) G dW'^T */
}

/* Backward of Zb = Xb W + bias - P G, P = E * (Xb X^T + 1), given dZb:
 * accumulates dXb, dX, dW, dbias, dG, dE; S, dP (n,n) scratch. */
static __device__ void query_layer_backward(const float *Xb, const float *X, const float *W, const float *P,
                                            const float *E, const float *G, const float *dZb, int n, int in, int out,
                                            float *dXb, float *dX, float *dW, float *dbias, float *dG, float *dE,
                                            float *S, float *dP) {
    blk_gemm(0, 1, n, in, out, dZb, out, W, out, dXb, in, epi_add{1.0f});
    blk_gemm(1, 0, in, out, n, Xb, in, dZb, out, dW, out, epi_add{1.0f});
    blk_for((size_t)out, [&](size_t o) {
        for (int i = 0; i < n; i++) dbias[o] += dZb[(size_t)i * out + o];
    });
    blk_gemm(0, 1, n, n, out, dZb, out, G, out, dP, n, epi_set{-1.0f}); /* dP = -dZb G^T */
    blk_gemm(1, 0, n, out, n, P, n, dZb, out, dG, out, epi_add{-1.0f}); /* dG -= P^T dZb */
    blk_gemm(0, 1, n, n, in, Xb, in, X, in, S, n, epi_set{1.0f});       /* S = Xb X^T */
    blk_for((size_t)n * n, [&](size_t ij) {
        int i = (int)(ij / n), j = (int)(ij % n);
        float dp = j <= i ? dP[ij] : 0.0f;
        dE[ij] += dp * (S[ij] + 1.0f);
        dP[ij] = dp * E[ij]; /* dS */
    });
    blk_gemm(0, 0, n, in, n, dP, n, X, in, dXb, in, epi_add{1.0f});
    blk_gemm(1, 0, n, in, n, dP, n, Xb, in, dX, in, epi_add{1.0f});
}

/* Backward of Z = X W + bias given dZ: accumulates dX, dW, dbias. */
static __device__ void key_layer_backward(const float *X, const float *W, const float *dZ, int n, int in, int out,
                                          float *dX, float *dW, float *dbias) {
    blk_gemm(0, 1, n, in, out, dZ, out, W, out, dX, in, epi_add{1.0f});
    blk_gemm(1, 0, in, out, n, X, in, dZ, out, dW, out, epi_add{1.0f});
    blk_for((size_t)out, [&](size_t o) {
        for (int i = 0; i < n; i++) dbias[o] += dZ[(size_t)i * out + o];
    });
}

/* Row-wise backward of out = q + LN(Zf): dZf, and the LayerNorm's
 * parameter gradients summed over the rows in order (xh kept in B.rows). */
static __device__ void out_ln_backward(const kshape &S, const kbufs &B, int n, const float *dout, float *dln_w,
                                       float *dln_b) {
    int f = S.f;
    blk_rows(n, [&](int i, int lane) {
        const float *z = B.Zf + (size_t)i * f, *go = dout + (size_t)i * S.D;
        float mu, r, m1 = 0.0f, m2 = 0.0f;
        warp_ln_stats(z, f, lane, &mu, &r);
        for (int c = lane; c < f; c += 32) {
            float xh = (z[c] - mu) * r, gy = go[c] * B.ln_w[c];
            m1 += gy, m2 += gy * xh;
        }
        m1 = ttt_warp_sum(m1) / (float)f, m2 = ttt_warp_sum(m2) / (float)f;
        for (int c = lane; c < f; c += 32) {
            float xh = (z[c] - mu) * r;
            B.rows[(size_t)i * f + c] = xh;
            B.dZf[(size_t)i * f + c] = r * (go[c] * B.ln_w[c] - m1 - xh * m2);
        }
    });
    blk_for((size_t)f, [&](size_t c) {
        for (int i = 0; i < n; i++) {
            float go = dout[(size_t)i * S.D + c];
            dln_w[c] += go * B.rows[(size_t)i * f + c];
            dln_b[c] += go;
        }
    });
}

/* Step 5 of ttt_dual_backward: Gf = d/dz 0.5 |LN(z) - (v - k)|^2 at the
 * keys' inner output, differentiated row by row into dZout, dv, dK and
 * the LayerNorm's gradients (summed over rows in order). */
static __device__ void key_loss_backward(const kshape &S, const kbufs &B, const kmb &mb, const float *Zout,
                                         float *dZout, float *dv, float *dln_w, float *dln_b) {
    int f = S.f, n = mb.n;
    blk_rows(n, [&](int i, int lane) {
        size_t r = (size_t)i * f;
        warp_lnl2_backward(Zout + r, B.KQ + r, mb.v + (size_t)i * S.D, B.ln_w, B.ln_b, f, lane, B.dGf + r,
                           dZout + r, dv + (size_t)i * S.D, B.dK + r, B.tmpA + r, B.tmpB + r, B.rows + r);
    });
    blk_for((size_t)f, [&](size_t c) {
        for (int i = 0; i < n; i++) {
            dln_w[c] += B.tmpA[(size_t)i * f + c];
            dln_b[c] += B.tmpB[(size_t)i * f + c];
        }
    });
}

/* Gradients of one mini-batch that started from state W (ttt_dual_backward
 * with commit). dout, dq, dk, dv: rows of this head (stride D); dlr: this
 * head's first lr (stride H). dW: on entry the gradient of the committed
 * state, on exit that of W. ds (b), dln_w, dln_b (f) accumulate. */
static __device__ void dual_backward(const kshape &S, const kbufs &B, const kmb &mb, const kstate &W,
                                     const float *dout, const kstate &dW, float *dq, float *dk, float *dv, float *ds,
                                     float *dlr, float *dln_w, float *dln_b) {
    int n = mb.n, f = S.f, h1 = S.h1, mlp = S.mlp, D = S.D;
    mb_load(S, B, mb);
    dual_keys(S, B, mb, W);
    dual_queries(S, B, mb, W);
    const float *K = B.KQ, *Q = B.KQ + (size_t)S.b * f, *Z1 = B.Zall, *Zb1 = B.Zall + (size_t)S.b * h1;
    float *Gl = mlp ? B.G1 : B.Gf, *dGl = mlp ? B.dG1 : B.dGf;
    size_t nf = (size_t)n * f, nh = (size_t)n * h1, nn = (size_t)n * n;
    blk_for(nh > nn ? nh : nn, [&](size_t i) { /* h1 >= f */
        if (i < nf) B.dK[i] = 0.0f, B.dQ[i] = 0.0f, B.dGf[i] = 0.0f, B.tmpC[i] = 0.0f;
        if (i < nn) B.dE[i] = 0.0f;
        if (i < nh) {
            B.dZ1[i] = 0.0f;
            if (mlp) B.dG1[i] = 0.0f, B.dX2[i] = 0.0f, B.dX2b[i] = 0.0f;
        }
    });
    /* 1. the committed state (reads the incoming dW before anything adds to it) */
    last_eta(B, n);
    blk_for((size_t)n, [&](size_t j) { B.de[j] = 0.0f; });
    commit_backward(K, Gl, B.e, dW.W1, dW.b1, n, f, h1, B.dK, dGl, B.de, B.tmpA);
    if (mlp) commit_backward(B.X2, B.Gf, B.e, dW.W2, dW.b2, n, h1, f, B.dX2, B.dGf, B.de, B.tmpA);
    blk_for((size_t)n, [&](size_t j) { B.dE[(size_t)(n - 1) * n + j] += B.de[j]; });
    /* 2. out = q + LN(Zf) */
    out_ln_backward(S, B, n, dout, dln_w, dln_b);
    /* 3. query side, layer 2 then layer 1 */
    const float *dZb1 = B.dZf;
    if (mlp) {
        query_layer_backward(B.X2b, B.X2, W.W2, B.P2, B.E, B.Gf, B.dZf, n, h1, f, B.dX2b, B.dX2, dW.W2, dW.b2, B.dGf,
                             B.dE, B.S, B.dP);
        blk_for(nh, [&](size_t i) { B.dX2b[i] *= ttt_gelu_d1(Zb1[i]); });
        dZb1 = B.dX2b;
    }
    query_layer_backward(Q, K, W.W1, B.P1, B.E, Gl, dZb1, n, f, h1, B.dQ, B.dK, dW.W1, dW.b1, dGl, B.dE, B.S, B.dP);
    /* 4. TTT-MLP: G1 = (Gf W2^T) * gelu'(Z1) */
    if (mlp) {
        float *Hm = B.tmpA, *dHm = B.tmpB;
        blk_gemm(0, 1, n, h1, f, B.Gf, f, W.W2, f, Hm, h1, epi_set{1.0f});
        blk_for(nh, [&](size_t i) {
            dHm[i] = B.dG1[i] * ttt_gelu_d1(Z1[i]);
            B.dZ1[i] += B.dG1[i] * Hm[i] * ttt_gelu_d2(Z1[i]);
        });
        blk_gemm(0, 0, n, f, h1, dHm, h1, W.W2, f, B.dGf, f, epi_add{1.0f});
        blk_gemm(1, 0, h1, f, n, dHm, h1, B.Gf, f, dW.W2, f, epi_add{1.0f});
    }
    /* 5. the loss gradient at the keys' inner output */
    float *dZout = mlp ? B.tmpC : B.dZ1;
    key_loss_backward(S, B, mb, mlp ? B.Z2 : B.Zall, dZout, dv, dln_w, dln_b);
    /* 6. TTT-MLP: Z2 = X2 W2 + b2, X2 = gelu(Z1) */
    if (mlp) {
        key_layer_backward(B.X2, W.W2, dZout, n, h1, f, B.dX2, dW.W2, dW.b2);
        blk_for(nh, [&](size_t i) { B.dZ1[i] += B.dX2[i] * ttt_gelu_d1(Z1[i]); });
    }
    /* 7. Z1 = K W1 + b1 */
    key_layer_backward(K, W.W1, B.dZ1, n, f, h1, B.dK, dW.W1, dW.b1);
    /* 8. eta_ij = s_i lr_j (j <= i), and the rows' own gradients */
    blk_for((size_t)2 * n, [&](size_t idx) {
        if (idx < (size_t)n) {
            int i = (int)idx;
            for (int j = 0; j <= i; j++) ds[i] += B.dE[(size_t)i * n + j] * B.lr[j];
        } else {
            int j = (int)idx - n;
            float acc = 0.0f;
            for (int i = j; i < n; i++) acc += B.dE[(size_t)i * n + j] * B.s[i];
            dlr[(size_t)j * S.H] += acc;
        }
    });
    blk_for(nf, [&](size_t idx) {
        size_t i = idx / f, c = idx % f;
        dq[i * D + c] += B.dQ[idx] + dout[i * D + c];
        dk[i * D + c] += B.dK[idx];
    });
}

/* ---- the kernels ----------------------------------------------------------------- */

struct bwd_args {
    kshape S;
    ttt_cuda_layout L;
    const float *XQ, *XK, *XV, *lr, *dZ;
    float *dXQ, *dXK, *dXV, *dlr;
    const float *ln_w, *ln_b, *token_idx;
    const float *ckpt; /* (B*H, n_groups, numel) */
    int group, n_groups;
    float *ws;         /* per (sequence, head): [scratch (L.total) | states (group, numel) | partials] */
    size_t per_bh;     /* floats of the above */
    int scratch_smem;
};

/* Where block bh's gradient partials dW (numel), ds (b), dln (2f) lie. */
static __host__ __device__ size_t head_grads_offset(const kshape &S, const ttt_cuda_layout &L, int group) {
    return L.total + (size_t)group * S.numel;
}

/* Grid B*H; dynamic shared memory: the scratch (scratch_smem) or none. */
__global__ void __launch_bounds__(TTT_FUSED_THREADS) ttt_backward_kernel(bwd_args a) {
    TTT_DYN_SMEM(float, smem);
    const kshape &S = a.S;
    int bh = blockIdx.x, bi = bh / S.H, h = bh % S.H, G = a.group;
    float *base = a.ws + (size_t)bh * a.per_bh;
    float *states = base + a.L.total, *hg = base + head_grads_offset(S, a.L, G);
    float *ds = hg + S.numel, *dln = ds + S.b;
    kbufs B = kbufs_at(a.L, a.scratch_smem ? smem : base, S.f);
    kstate dW = kstate_at(S, hg);
    blk_for(S.numel + S.b + 2 * (size_t)S.f, [&](size_t i) { hg[i] = 0.0f; });
    load_head_consts(S, B, a.token_idx, a.ln_w, a.ln_b, h);
    int nmb = (S.T + S.b - 1) / S.b;
    for (int g = a.n_groups - 1; g >= 0; g--) {
        int m0 = g * G, m1 = m0 + G < nmb ? m0 + G : nmb;
        const float *ck = a.ckpt + ((size_t)bh * a.n_groups + g) * S.numel;
        blk_for(S.numel, [&](size_t i) { states[i] = ck[i]; });
        for (int m = m0; m + 1 < m1; m++) { /* recompute the next state: keys and commit */
            float *cur = states + (size_t)(m - m0) * S.numel, *next = cur + S.numel;
            blk_for(S.numel, [&](size_t i) { next[i] = cur[i]; });
            kmb mb = kmb_at(S, a.XQ, a.XK, a.XV, a.lr, NULL, bi, h, m * S.b);
            mb_load(S, B, mb);
            dual_keys(S, B, mb, kstate_at(S, cur));
            blk_for((size_t)mb.n, [&](size_t j) { B.e[j] = B.s[mb.n - 1] * B.lr[j]; }); /* E[n-1][j] */
            dual_apply(S, B, mb.n, kstate_at(S, next), B.e, -1.0f);
        }
        for (int m = m1 - 1; m >= m0; m--) {
            int t = m * S.b;
            kmb mb = kmb_at(S, a.XQ, a.XK, a.XV, a.lr, NULL, bi, h, t);
            size_t r = ((size_t)bi * S.T + t) * S.D + (size_t)h * S.f;
            float *dlr = a.dlr + ((size_t)bi * S.T + t) * S.H + h;
            dual_backward(S, B, mb, kstate_at(S, states + (size_t)(m - m0) * S.numel), a.dZ + r, dW, a.dXQ + r,
                          a.dXK + r, a.dXV + r, ds, dlr, dln, dln + S.f);
        }
    }
}

struct reduce_args {
    kshape S;
    const float *ws;
    size_t per_bh, hg_off;
    const float *token_idx;
    ttt_cuda_grads g;
};

/* Adds the per-(sequence, head) partials into the layer's gradients:
 * items [0, H*numel) the state, then b token scales (where
 * 1/i + delta_i > 0, the max(0, .) passes the gradient), then H*2f
 * LayerNorm entries. Each output is summed over the sequences by one
 * thread, in order. */
__global__ void ttt_grad_reduce_kernel(reduce_args a) {
    const kshape &S = a.S;
    size_t nst = (size_t)S.H * S.numel, nln = (size_t)S.H * 2 * S.f, n1 = (size_t)S.f * S.h1;
    size_t total = nst + S.b + nln;
    for (size_t idx = blockIdx.x * (size_t)blockDim.x + threadIdx.x; idx < total;
         idx += (size_t)gridDim.x * blockDim.x) {
        if (idx < nst) {
            size_t h = idx / S.numel, e = idx % S.numel;
            float sum = 0.0f;
            for (int bi = 0; bi < S.B; bi++) sum += a.ws[(size_t)(bi * S.H + h) * a.per_bh + a.hg_off + e];
            float *dst;
            if (e < n1) dst = a.g.W1 ? a.g.W1 + h * n1 + e : NULL;
            else if ((e -= n1) < (size_t)S.h1) dst = a.g.b1 ? a.g.b1 + h * S.h1 + e : NULL;
            else if ((e -= S.h1) < n1) dst = a.g.W2 ? a.g.W2 + h * n1 + e : NULL;
            else dst = a.g.b2 ? a.g.b2 + h * S.f + e - n1 : NULL;
            if (dst) *dst += sum;
        } else if (idx < nst + S.b) {
            int i = (int)(idx - nst);
            float sum = 0.0f;
            for (int bh = 0; bh < S.B * S.H; bh++) sum += a.ws[(size_t)bh * a.per_bh + a.hg_off + S.numel + i];
            if (a.g.token_idx && 1.0f / (float)(i + 1) + a.token_idx[i] > 0.0f) a.g.token_idx[i] += sum;
        } else {
            size_t j = idx - nst - S.b, h = j / (2 * S.f), c = j % (2 * S.f);
            float sum = 0.0f;
            for (int bi = 0; bi < S.B; bi++)
                sum += a.ws[(size_t)(bi * S.H + h) * a.per_bh + a.hg_off + S.numel + S.b + c];
            float *dst = c < (size_t)S.f ? a.g.ln_w : a.g.ln_b;
            if (dst) dst[h * S.f + c % S.f] += sum;
        }
    }
}

/* ---- launcher ----------------------------------------------------------------------- */

extern "C" int ttt_cuda_backward(const vttt_backend *be, const ttt_cuda_shape *s, const ttt_cuda_params *p,
                                 const ttt_cuda_io *io, const float *ckpt, int group, const float *dZ, float *dXQ,
                                 float *dXK, float *dXV, float *dlr, const ttt_cuda_grads *g, void *ws,
                                 size_t ws_bytes) {
    ttt_cuda_ctx *ctx = ctx_of(be, "ttt_cuda_backward");
    if (!ctx) return VTTT_EINVAL;
    int err = check_shape(ctx, s, p, "ttt_cuda_backward");
    if (err) return err;
    if (group <= 0 || !io || !io->XQ || !io->XK || !io->XV || !io->lr || !ckpt || !dZ || !dXQ || !dXK || !dXV ||
        !dlr || !g || !ws || ws_bytes < ttt_cuda_bwd_workspace(s, group)) {
        vttt_log(&ctx->log, VTTT_LOG_ERROR,
                 "ttt_cuda_backward: bad arguments (group %d, all activations, checkpoints and gradients needed, "
                 "workspace %zu bytes of %zu)",
                 group, ws_bytes, group > 0 ? ttt_cuda_bwd_workspace(s, group) : 0);
        return VTTT_EINVAL;
    }
    if (s->T == 0) return VTTT_OK;
    bwd_args a;
    a.S = kshape_of(s), a.L = ttt_cuda_layout_of(s, 1);
    a.XQ = io->XQ, a.XK = io->XK, a.XV = io->XV, a.lr = io->lr, a.dZ = dZ;
    a.dXQ = dXQ, a.dXK = dXK, a.dXV = dXV, a.dlr = dlr;
    a.ln_w = p->ln_w, a.ln_b = p->ln_b, a.token_idx = p->token_idx;
    a.ckpt = ckpt, a.group = group, a.n_groups = ttt_cuda_num_groups(s->T, s->b, group);
    a.ws = (float *)ws;
    a.per_bh = ttt_cuda_bwd_workspace(s, group) / ((size_t)s->B * s->H * sizeof(float));
    size_t optin, smem = a.L.total * sizeof(float);
    if ((err = smem_optin(ctx, &optin))) return err;
    a.scratch_smem = smem <= optin;
    if (!a.scratch_smem) smem = 0;
    if ((err = smem_allow(ctx, ttt_backward_kernel, smem))) return err;
    TTT_LAUNCH(ttt_backward_kernel, s->B * s->H, TTT_FUSED_THREADS, smem, ctx->stream)(a);
    if ((err = ttt_cuda_err(&ctx->log, cudaGetLastError(), "backward launch"))) return err;
    reduce_args r;
    r.S = a.S, r.ws = a.ws, r.per_bh = a.per_bh, r.hg_off = head_grads_offset(a.S, a.L, group);
    r.token_idx = p->token_idx, r.g = *g;
    size_t items = (size_t)s->H * a.S.numel + s->b + (size_t)s->H * 2 * s->f;
    TTT_LAUNCH(ttt_grad_reduce_kernel, ttt_cuda_grid(items, TTT_CUDA_BLOCK), TTT_CUDA_BLOCK, 0, ctx->stream)(r);
    return ttt_cuda_err(&ctx->log, cudaGetLastError(), "backward reduce launch");
}
