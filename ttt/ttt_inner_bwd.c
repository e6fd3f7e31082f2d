/*
 * The TTT inner loop, backward: the gradient of one dual-form mini-batch
 * (ttt_dual_forward with commit) with respect to its start state W0, its
 * queries, keys, values, learning rates, token scales and the inner
 * LayerNorm, through the inner gradient steps (second-order terms
 * included). It recomputes the forward intermediates from W0 first.
 * The derivation follows the forward in ttt_inner.c line by line.
 */
#include <string.h>

#include "ops.h"
#include "ttt_inner.h"

void ttt_lnl2_grad_row_backward(const float *z, const float *t, const float *w, const float *b, int f,
                                const float *dG, float *dz, float *dt, float *dw, float *db) {
    /* G = r (gx - mean(gx) - xh mean(gx xh)), gx = w (w xh + b - t),
     * xh = (z - mu) r, r = 1/sigma. */
    float xh[1024], r;
    ttt_ln_row(z, w, b, f, NULL, xh, &r);
    float mg = 0, mgx = 0, mdg = 0, mdgx = 0, sgd = 0;
    for (int i = 0; i < f; i++) {
        float gx = w[i] * (w[i] * xh[i] + b[i] - t[i]);
        mg += gx;
        mgx += gx * xh[i];
        mdg += dG[i];
        mdgx += dG[i] * xh[i];
    }
    mg /= (float)f, mgx /= (float)f, mdg /= (float)f, mdgx /= (float)f;
    float dxh_tot[1024];
    for (int i = 0; i < f; i++) {
        float gx = w[i] * (w[i] * xh[i] + b[i] - t[i]);
        float G = r * (gx - mg - xh[i] * mgx);
        sgd += G * dG[i];
        float dgx = r * (dG[i] - mdg - xh[i] * mdgx);   /* through gx, mean(gx), mean(gx xh) */
        float dxh = -r * mgx * dG[i] - r * gx * mdgx;   /* xh's explicit appearances in G */
        float res = w[i] * xh[i] + b[i] - t[i];
        float dres = dgx * w[i];
        if (dw) dw[i] += dgx * res + dres * xh[i];
        if (db) db[i] += dres;
        if (dt) dt[i] -= dres;
        dxh_tot[i] = dxh + dres * w[i];
    }
    /* back through xh = (z - mu) r */
    float m1 = 0, m2 = 0;
    for (int i = 0; i < f; i++) {
        m1 += dxh_tot[i];
        m2 += dxh_tot[i] * xh[i];
    }
    m1 /= (float)f, m2 /= (float)f;
    /* d sigma = -sum(G dG) / sigma  (G = r * (...)); d sigma / dz = xh / f */
    float dsig = -sgd * r;
    for (int i = 0; i < f; i++) dz[i] += r * (dxh_tot[i] - m1 - xh[i] * m2) + dsig * xh[i] / (float)f;
}

/* Row-wise backward of out = q + LN(Zf): dZf = LN'(dout); accumulates the
 * LayerNorm's parameter gradients. */
static void out_ln_backward(const ttt_dims *d, const ttt_mb *mb, const float *Zf, const float *dout, float *dZf,
                            float *dln_w, float *dln_b, float *xh) {
    int f = d->f;
    for (int i = 0; i < mb->n; i++) {
        const float *go = dout + (size_t)i * mb->ld;
        float r;
        ttt_ln_row(Zf + (size_t)i * f, mb->ln_w, mb->ln_b, f, NULL, xh, &r);
        float m1 = 0, m2 = 0;
        for (int c = 0; c < f; c++) {
            float gy = go[c] * mb->ln_w[c];
            m1 += gy;
            m2 += gy * xh[c];
            dln_w[c] += go[c] * xh[c];
            dln_b[c] += go[c];
        }
        m1 /= (float)f, m2 /= (float)f;
        for (int c = 0; c < f; c++) dZf[(size_t)i * f + c] = r * (go[c] * mb->ln_w[c] - m1 - xh[c] * m2);
    }
}

/* Backward of W' = W - X^T diag(e) G, b' = b - e^T G (the commit): given
 * dW', db' (read only), accumulates dX (n,in), dG (n,out), de (n). M (n,out)
 * is scratch. */
static void commit_backward(const float *X, const float *G, const float *e, const float *dWn, const float *dbn, int n,
                            int in, int out, float *dX, float *dG, float *de, float *M) {
    ttt_sgemm(0, 0, n, out, in, 1.0f, X, in, dWn, out, 0.0f, M, out); /* M = X dW' */
    for (int j = 0; j < n; j++) {
        float acc = 0;
        for (int o = 0; o < out; o++) {
            float m = M[(size_t)j * out + o] + dbn[o];
            acc += m * G[(size_t)j * out + o];
            dG[(size_t)j * out + o] -= e[j] * m;
        }
        de[j] -= acc;
    }
    /* dX -= diag(e) G dW'^T */
    for (int j = 0; j < n; j++)
        for (int o = 0; o < out; o++) M[(size_t)j * out + o] = e[j] * G[(size_t)j * out + o];
    ttt_sgemm(0, 1, n, in, out, -1.0f, M, out, dWn, out, 1.0f, dX, in);
}

/* Backward of Zb = Xb W + bias - P G with P = E * (Xb X^T + 1), given dZb:
 * accumulates dXb, dX, dW, dbias, dG, dE. S, dP (n,n) are scratch. */
static void query_layer_backward(const float *Xb, const float *X, const float *W, const float *P, const float *E,
                                 const float *G, const float *dZb, int n, int in, int out, float *dXb, float *dX,
                                 float *dW, float *dbias, float *dG, float *dE, float *S, float *dP) {
    ttt_sgemm(0, 1, n, in, out, 1.0f, dZb, out, W, out, 1.0f, dXb, in);
    ttt_sgemm(1, 0, in, out, n, 1.0f, Xb, in, dZb, out, 1.0f, dW, out);
    for (int i = 0; i < n; i++)
        for (int o = 0; o < out; o++) dbias[o] += dZb[(size_t)i * out + o];
    ttt_sgemm(0, 1, n, n, out, -1.0f, dZb, out, G, out, 0.0f, dP, n);   /* dP = -dZb G^T */
    ttt_sgemm(1, 0, n, out, n, -1.0f, P, n, dZb, out, 1.0f, dG, out);   /* dG -= P^T dZb */
    ttt_sgemm(0, 1, n, n, in, 1.0f, Xb, in, X, in, 0.0f, S, n);         /* S = Xb X^T */
    for (int i = 0; i < n; i++)
        for (int j = 0; j < n; j++) {
            size_t ij = (size_t)i * n + j;
            float dp = j <= i ? dP[ij] : 0.0f;
            dE[ij] += dp * (S[ij] + 1.0f);
            dP[ij] = dp * E[ij]; /* dS */
        }
    ttt_sgemm(0, 0, n, in, n, 1.0f, dP, n, X, in, 1.0f, dXb, in);
    ttt_sgemm(1, 0, n, in, n, 1.0f, dP, n, Xb, in, 1.0f, dX, in);
}

/* Backward of Z = X W + bias given dZ: accumulates dX, dW, dbias. */
static void key_layer_backward(const float *X, const float *W, const float *dZ, int n, int in, int out, float *dX,
                               float *dW, float *dbias) {
    ttt_sgemm(0, 1, n, in, out, 1.0f, dZ, out, W, out, 1.0f, dX, in);
    ttt_sgemm(1, 0, in, out, n, 1.0f, X, in, dZ, out, 1.0f, dW, out);
    for (int i = 0; i < n; i++)
        for (int o = 0; o < out; o++) dbias[o] += dZ[(size_t)i * out + o];
}

void ttt_dual_backward(const ttt_dims *d, ttt_scratch *ws, const ttt_mb *mb, const float *W, const float *dout,
                       float *dW, float *dq, float *dk, float *dv, float *ds, float *dlr, float *dln_w, float *dln_b) {
    int n = mb->n, f = d->f, h1 = d->h1, mlp = d->mlp;
    ttt_dual_keys(d, ws, mb, W);
    ttt_dual_queries(d, ws, mb, W);
    const float *K = ws->KQ, *Q = ws->KQ + (size_t)n * f, *Zb1 = ws->Zall + (size_t)n * h1;
    float *Gl = mlp ? ws->G1 : ws->Gf, *dGl = mlp ? ws->dG1 : ws->dGf;
    float *W1 = ttt_W1(d, (float *)W), *W2 = ttt_W2(d, (float *)W);
    float *dW1 = ttt_W1(d, dW), *db1 = ttt_b1(d, dW), *dW2 = ttt_W2(d, dW), *db2 = ttt_b2(d, dW);
    memset(ws->dK, 0, (size_t)n * f * sizeof(float));
    memset(ws->dQ, 0, (size_t)n * f * sizeof(float));
    memset(ws->dGf, 0, (size_t)n * f * sizeof(float));
    memset(ws->dG1, 0, (size_t)n * h1 * sizeof(float));
    memset(ws->dX2, 0, (size_t)n * h1 * sizeof(float));
    memset(ws->dX2b, 0, (size_t)n * h1 * sizeof(float));
    memset(ws->dZ1, 0, (size_t)n * h1 * sizeof(float));
    memset(ws->dE, 0, (size_t)n * n * sizeof(float));
    float *e = ws->vec, *de = e + n, *xh = de + n;

    /* 1. the committed state (reads the incoming dW before anything adds to it) */
    for (int j = 0; j < n; j++) e[j] = ws->E[(size_t)(n - 1) * n + j], de[j] = 0.0f;
    commit_backward(K, Gl, e, dW1, db1, n, f, h1, ws->dK, dGl, de, ws->tmpA);
    if (mlp) commit_backward(ws->X2, ws->Gf, e, dW2, db2, n, h1, f, ws->dX2, ws->dGf, de, ws->tmpA);
    for (int j = 0; j < n; j++) ws->dE[(size_t)(n - 1) * n + j] += de[j];

    /* 2. out = q + LN(Zf) */
    out_ln_backward(d, mb, ws->Zf, dout, ws->dZf, dln_w, dln_b, xh);
    /* 3. query side, layer 2 then layer 1 */
    const float *dZb1 = ws->dZf;
    if (mlp) {
        query_layer_backward(ws->X2b, ws->X2, W2, ws->P2, ws->E, ws->Gf, ws->dZf, n, h1, f, ws->dX2b, ws->dX2,
                             dW2, db2, ws->dGf, ws->dE, ws->S, ws->dP);
        for (size_t i = 0; i < (size_t)n * h1; i++) ws->dX2b[i] *= ttt_gelu_d1(Zb1[i]);
        dZb1 = ws->dX2b;
    }
    query_layer_backward(Q, K, W1, ws->P1, ws->E, Gl, dZb1, n, f, h1, ws->dQ, ws->dK, dW1, db1, dGl, ws->dE,
                         ws->S, ws->dP);
    /* 4. TTT-MLP: G1 = (Gf W2^T) * gelu'(Z1) */
    const float *Z1 = ws->Zall;
    if (mlp) {
        float *Hm = ws->tmpA, *dHm = ws->tmpB;
        ttt_sgemm(0, 1, n, h1, f, 1.0f, ws->Gf, f, W2, f, 0.0f, Hm, h1);
        for (size_t i = 0; i < (size_t)n * h1; i++) {
            dHm[i] = ws->dG1[i] * ttt_gelu_d1(Z1[i]);
            ws->dZ1[i] += ws->dG1[i] * Hm[i] * ttt_gelu_d2(Z1[i]);
        }
        ttt_sgemm(0, 0, n, f, h1, 1.0f, dHm, h1, W2, f, 1.0f, ws->dGf, f);
        ttt_sgemm(1, 0, h1, f, n, 1.0f, dHm, h1, ws->Gf, f, 1.0f, dW2, f);
    }
    /* 5. Gf = d/dz 0.5 |LN(z) - (v - k)|^2 at the keys' inner output */
    float *dZout = mlp ? ws->tmpC : ws->dZ1, *tgt = xh;
    if (mlp) memset(dZout, 0, (size_t)n * f * sizeof(float));
    const float *Zout = mlp ? ws->Z2 : ws->Zall;
    for (int i = 0; i < n; i++) {
        const float *k = mb->k + (size_t)i * mb->ld, *v = mb->v + (size_t)i * mb->ld;
        float *dvi = dv + (size_t)i * mb->ld, *dki = ws->dK + (size_t)i * f;
        for (int c = 0; c < f; c++) tgt[c] = v[c] - k[c];
        float dt[1024];
        memset(dt, 0, f * sizeof(float));
        ttt_lnl2_grad_row_backward(Zout + (size_t)i * f, tgt, mb->ln_w, mb->ln_b, f, ws->dGf + (size_t)i * f,
                                   dZout + (size_t)i * f, dt, dln_w, dln_b);
        for (int c = 0; c < f; c++) dvi[c] += dt[c], dki[c] -= dt[c];
    }
    /* 6. TTT-MLP: Z2 = X2 W2 + b2, X2 = gelu(Z1) */
    if (mlp) {
        key_layer_backward(ws->X2, W2, dZout, n, h1, f, ws->dX2, dW2, db2);
        for (size_t i = 0; i < (size_t)n * h1; i++) ws->dZ1[i] += ws->dX2[i] * ttt_gelu_d1(Z1[i]);
    }
    /* 7. Z1 = K W1 + b1 */
    key_layer_backward(K, W1, ws->dZ1, n, f, h1, ws->dK, dW1, db1);
    /* 8. eta_ij = s_i lr_j (j <= i) */
    for (int i = 0; i < n; i++)
        for (int j = 0; j <= i; j++) {
            float g = ws->dE[(size_t)i * n + j];
            ds[i] += g * mb->lr[j];
            dlr[j] += g * mb->s[i];
        }
    for (int i = 0; i < n; i++)
        for (int c = 0; c < f; c++) {
            dq[(size_t)i * mb->ld + c] += ws->dQ[(size_t)i * f + c] + dout[(size_t)i * mb->ld + c];
            dk[(size_t)i * mb->ld + c] += ws->dK[(size_t)i * f + c];
        }
}
