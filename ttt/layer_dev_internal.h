/*
 * ttt/layer_dev_internal.h — internal to layer_dev.c and layer_dev_state.c:
 * the device layer's object and the steps both files use.
 */
#ifndef VTTT_LAYER_DEV_INTERNAL_H
#define VTTT_LAYER_DEV_INTERNAL_H

#include "layer_dev.h"

struct vttt_layer_dev {
    vttt_layer *l;            /* the host layer: config, fp32 master parameters, gradients */
    const vttt_backend *be;
    const ttt_dev_ops *ops;
    int max_B, max_T;         /* the arena's sizes */
    ttt_arena arena;          /* everything below that is device memory */
    float *pmem, *gmem;       /* (n_params) parameters and gradients, the host block's layout */
    vttt_layer_params p, g;   /* pointers into pmem, gmem */
    int bf16;                 /* projections in bf16 (ttt_layer_dev_set_bf16) */
    uint16_t *wq_b, *wk_b, *wv_b, *wo_b, *wg_b; /* (D, D) bf16 copies, where the ops have bf16 */
    uint16_t *xb;             /* (max_B*max_T, D) bf16 input of a projection */
    /* activations, (max_B*max_T, D) unless noted */
    float *x, *XQ, *XK, *XV, *xqk, *Z, *normed, *gpre;
    float *tmp;               /* (2, max_B*max_T, D) */
    float *lr, *dlr;          /* (max_B*max_T, H) */
    float *mean, *rstd;       /* (max_B*max_T) post-norm statistics */
    float *dZ, *dXQ, *dXK, *dXV;
    float *W;                 /* (max_B*H, numel) the training forward's inner state */
    float *ckpt;              /* (max_B*H, n_groups, numel) its checkpoints */
    float *conv0;             /* (max_B, K-1, D) zeros: the training window's conv state */
    void *wsf, *wsb;          /* the fused kernels' workspaces */
    size_t wsf_bytes, wsb_bytes;
    float *host;              /* (n_params) host staging for the gradients */
    int B, T, group, train;   /* the last training forward (train: its activations are intact) */
    unsigned graph_epoch;     /* bumped when the op sequence changes (bf16 on/off): states recapture */
};

struct vttt_state_dev {
    vttt_layer_dev *d;
    int B;
    int64_t pos;
    ttt_arena arena;
    float *W0, *A;            /* (B*H, numel) */
    float *conv_state;        /* (B, K-1, D) share_qk */
    float *xin, *yout;        /* (B, D) the decode graphs' input and output */
    void **graph;             /* (b) one instantiated graph per position in the mini-batch, or NULL */
    int use_graphs, captured;
    long replays;
    unsigned graph_epoch;     /* the layer's epoch the graphs were captured in */
};

ttt_cuda_params ttt_dev_inner_params(const vttt_layer_dev *d);
ttt_cuda_shape ttt_dev_shape(const vttt_layer_dev *d, int B, int T);
int ttt_dev_check_bt(const vttt_layer_dev *d, int B, int T, const char *what);
int ttt_dev_outer_in(vttt_layer_dev *d, const float *x, int B, int T, int64_t pos0, const float *cs);
int ttt_dev_outer_out(vttt_layer_dev *d, float *y, const float *x, int B, int T);

#endif
