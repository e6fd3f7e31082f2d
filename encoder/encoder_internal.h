/*
 * encoder/encoder_internal.h — internal to encoder/ (and its tests): the
 * layer table of the tokenizer, its buffers, and the FSQ pieces.
 *
 * The tokenizer is a list of conv layers (encoder_model.c builds it).
 * Layer l maps x (N, cin, h, w) to y (N, cout, oh, ow):
 *     a = norm ? silu(groupnorm(x)) : x
 *     u = up ? upsample2x(a) : a
 *     y = conv_k×k,stride(u) + bias
 * Layers [0, n_enc) are the encoder (its last output is z, (N, d, G, G));
 * FSQ maps z to q; layers [n_enc, n_layers) are the decoder, from q to the
 * image y (N, 3, S, S) whose pixels are y + 0.5 in [0,1] units.
 *
 * DELTA (encoder_delta.c): every layer runs on the G×G grid of cells; with
 * C = 3·factor² (a cell's pixels as channels, "space-to-depth"), the
 * encoder's input x is (N, 2C, G, G) = [cells of (cur - prev), cells of
 * prev] (pixels - 0.5), the decoder's input q is (N, d + C, G, G) = [FSQ
 * output, cells of prev], and its output r (N, C, G, G) is the change:
 * y = prev + mask · depth-to-space(r), mask 0 on cells whose latent is all
 * zero (forward only: the backward takes the mask as 1, straight-through).
 */
#ifndef VTTT_ENCODER_INTERNAL_H
#define VTTT_ENCODER_INTERNAL_H

#include "backend.h"
#include "encoder.h"

#define ENC_MAX_LAYERS 16
#define ENC_GN_EPS 1e-5f
#define ENC_FSQ_EPS 1e-3f /* FSQ's bound keeps tanh's range just beyond the outer levels */

/* Parameter slots of a layer (each may be absent: numel 0). */
enum { ENC_P_GN_W = 0, ENC_P_GN_B = 1, ENC_P_CONV_W = 2, ENC_P_CONV_B = 3, ENC_P_COUNT = 4 };

typedef struct enc_layer {
    int cin, cout, k, stride, pad;
    int norm, up;          /* GroupNorm + SiLU before; nearest 2x upsample before the conv */
    int h, w;              /* input size; the conv sees (h, w) << up */
    int oh, ow;            /* output size */
    int64_t numel[ENC_P_COUNT];
    float *p[ENC_P_COUNT];  /* host parameters (into the model's one allocation) */
    float *g[ENC_P_COUNT];  /* host gradients */
    float *dp[ENC_P_COUNT]; /* on the backend (== p on the CPU) */
    float *dg[ENC_P_COUNT]; /* on the backend (== g on the CPU) */
    /* activations on the backend, for cap frames */
    float *gn;              /* (N, cin, h, w) groupnorm output (norm) */
    float *mean, *rstd;     /* (N, groups) (norm) */
    float *act;             /* (N, cin, h, w) silu output (norm) */
    float *upb;             /* (N, cin, 2h, 2w) (up) */
    float *y;               /* (N, cout, oh, ow) */
    float *dy;              /* (N, cout, oh, ow) gradient of the loss wrt y */
} enc_layer;

struct vttt_encoder {
    vttt_encoder_config cfg;
    vttt_logger log;
    const vttt_backend *be;
    int n_layers, n_enc, groups;
    int G, P, C;                 /* grid side, cells (G*G), channels of a cell's pixels (3*factor^2) */
    int dec_cin;                 /* channels of the decoder's input q: d (FRAME) or d + C (DELTA) */
    enc_layer L[ENC_MAX_LAYERS];
    const char *const *names;    /* (n_layers) layer names */
    int n_tensors;
    vttt_model_tensor tensors[ENC_MAX_LAYERS * ENC_P_COUNT];
    size_t n_params;
    float *params, *grads;       /* (n_params) host, one allocation each */
    float *dparams, *dgrads;     /* (n_params) on a non-CPU backend, else NULL */
    /* buffers for up to cap frames */
    int cap;
    float *x;                    /* (cap, 3, S, S) network input, pixels - 0.5 (backend) */
    float *q;                    /* (cap, d, G, G) FSQ output (backend) */
    float *dq;                   /* (cap, d, G, G) (backend) */
    float *dx;                   /* (cap, 3, S, S) input gradient (backend), tests only */
    float *scr[3];               /* (cap * max layer size) gradient scratch (backend) */
    float *zeros;                /* (cap * max layer size) host zeros, for clearing device buffers */
    float *h_img;                /* (cap, 3, S, S) host: the target image in [0,1] */
    float *h_y;                  /* (cap, 3, S, S) host: the reconstruction's y */
    float *h_z;                  /* (cap, d, G, G) host staging of z / dz */
    float *h_q;                  /* (cap, dec_cin, G, G) host staging of q / dq */
    float *h_x;                  /* (cap, 6, S, S) host staging of a DELTA input (and of r) */
    float *h_prev;               /* (cap, 3, S, S) host: DELTA's reference frames, pixels - 0.5 */
    uint8_t *h_mask;             /* (cap, G*G) host: DELTA's changed cells */
    uint8_t *h_mref;             /* (cap, S, S, 3) host: DELTA's references shifted by their motion */
    int32_t *h_cells;            /* (cap, G*G) host: cell tokens before they join the motion tokens */
    int N;                       /* frames of the last forward */
    int has_fwd;                 /* a training forward is ready for backward */
    /* test hooks */
    float rate_weight;           /* training: weight of the rate term (vttt_encoder_set_rate_weight) */
    double rate;                 /* the rate term's mean of the last forward */
    float dloss;                 /* the backward's loss scale */
    int fsq_bypass;              /* 1: q = bound(z) / half_width, no rounding (a smooth path for FD) */
    int want_dx;                 /* 1: backward also fills dx (d loss / d image in [0,1], both paths) */
};

/* ---- encoder_config.c: config.json ---- */
int enc_config_read(vttt_encoder_config *c, const char *path, const vttt_logger *lg);
/* What enc_config_read does after reading the file: parses and checks buf
 * (n bytes, one JSON document), name standing for the file in messages. No
 * side effects besides the log: the entry point for fuzzing. */
int enc_config_parse(vttt_encoder_config *c, const char *buf, size_t n, const char *name, const vttt_logger *lg);
int enc_config_write(const vttt_encoder_config *c, const char *path, const vttt_logger *lg);

/* ---- encoder_model.c ---- */
/* The name of layer l ("encoder.down.0", ...). */
const char *enc_layer_name(const vttt_encoder *e, int l);
/* Largest activation (floats per frame) over the layers. */
size_t enc_max_layer_floats(const vttt_encoder *e);
/* Weights from seed: convs uniform(+-1/sqrt(fan_in)) (PyTorch's default;
 * a tenth of that for the decoder's last conv), GroupNorm weight 1, bias 0. */
void enc_init_weights(vttt_encoder *e, uint64_t seed);

/* ---- encoder_buffers.c ---- */
/* Makes the buffers hold N frames (grows, never shrinks). */
int enc_buffers_reserve(vttt_encoder *e, int N);
void enc_buffers_free(vttt_encoder *e);
/* Sets n floats of backend memory p to zero. */
int enc_buf_zero(vttt_encoder *e, float *p, size_t n);
/* Uploads the host parameters (non-CPU backends; a no-op on the CPU). */
int enc_params_sync(vttt_encoder *e);

/* ---- fsq.c: finite scalar quantization (Mentzer et al. 2023) ----
 * Channel i with L levels: b = tanh(z + shift) * hl - off with
 * hl = (L - 1)(1 + eps) / 2, off = 0.5 for even L (else 0),
 * shift = atanh(off / hl); q = round(b) / hw with hw = floor(L / 2).
 * The digit round(b) + hw is in [0, L); the code is sum digit_i * base_i,
 * base_0 = 1, base_{i+1} = base_i * L_i (the first level varies fastest). */
/* z, q (N, d, P) with P = G*G cells; codes (N, P) may be NULL. bypass: q = b / hw. */
void enc_fsq_forward(const vttt_encoder_config *cfg, float *q, int32_t *codes, const float *z, int N, int P,
                     int bypass);
/* dz (N, d, P) = dq * d q / d z with the straight-through rule (rounding's
 * gradient taken as 1): dq / hw * hl * (1 - tanh^2(z + shift)). Assigns. */
void enc_fsq_backward(const vttt_encoder_config *cfg, float *dz, const float *dq, const float *z, int N, int P);
/* q (N, d, P) of codes (N, P); VTTT_EINVAL for a code outside [0, vocab). */
int enc_fsq_codes_to_q(const vttt_encoder_config *cfg, float *q, const int32_t *codes, int N, int P);
int enc_fsq_vocab(const vttt_encoder_config *cfg);
/* The rate term: the sum over z (N, d, P) of |b| / hw (each latent's
 * distance from the zero level, in level steps before rounding); with dz,
 * also dz += scale * its gradient. */
double enc_fsq_rate(const vttt_encoder_config *cfg, const float *z, int N, int P, float scale, float *dz);

/* ---- motion.c: the motion field ---- */
#define ENC_MOTION_GRID VTTT_ENCODER_MOTION_GRID           /* regions per side */
#define ENC_MOTION_REGIONS (ENC_MOTION_GRID * ENC_MOTION_GRID) /* regions of the field */
/* Motion tokens per frame of c: 32 (x, y of each region; DELTA with
 * motion > 0) or 0. */
int enc_motion_count(const vttt_encoder_config *c);
/* dst (S, S, 3) = src moved by the field mv (16 (x, y) pairs in half
 * pixels, the regions in raster order): bilinear, edges clamped, rounded
 * half up; a region of motion 0 is copied. src NULL: mid-grey. */
void enc_motion_warp(const uint8_t *src, int S, const int *mv, uint8_t *dst);
/* mv (16 pairs): each region's half-pixel motion in [-2R, 2R] that maps
 * ref onto cur: 0; or the frame's best motion where it lowers the region's
 * squared error by 10%; or the region's own best where it lowers it by 10%
 * more (whole pixels on every other row and column of squares of 8 pixels
 * and more, then the half pixels around the best). ref NULL: all 0. */
void enc_motion_estimate(const uint8_t *ref, const uint8_t *cur, int S, int R, int *mv);
/* h_prev of N frames like enc_delta_set_prev, each reference moved by its
 * motion: from tokens (N, motion + cells; decoding) when given, else
 * estimated against frames (N, S, S, 3); motion (N, 32) gets the motion
 * tokens (may be NULL). Without motion: enc_delta_set_prev. */
int enc_motion_refs(vttt_encoder *e, const uint8_t *ref0, const uint8_t *refs, const uint8_t *frames,
                    const int32_t *tokens, int N, int32_t *motion);

/* ---- encoder_forward.c / encoder_backward.c ---- */
/* img (N, 3, S, S) host, pixels in [0,1]. Runs the whole tokenizer; *loss
 * = mean (y + 0.5 - img)^2. Keeps the activations for enc_backward. */
int enc_forward_f(vttt_encoder *e, const float *img, int N, float *loss);
/* Runs layers [l0, l1) on the backend for N frames (inputs in place). */
int enc_layers_forward(vttt_encoder *e, int l0, int l1, int N);
/* The input of layer l on the backend: x, q, or the previous y. */
float *enc_layer_input(vttt_encoder *e, int l);
/* Host copy of dx (N, 3, S, S) after a backward with want_dx. */
int enc_get_dx(vttt_encoder *e, float *dx, int N);
/* uint8 frames (N, S, S, 3) -> img (N, 3, S, S) in [0,1]; and back from
 * y (pixels y + 0.5), rounded and clamped. */
void enc_frames_to_img(float *img, const uint8_t *frames, int N, int S);
void enc_y_to_frames(uint8_t *frames, const float *y, int N, int S);

/* ---- encoder_delta.c: the host side of a DELTA tokenizer ---- */
/* h_prev of N reference frames (S, S, 3): frame 0's is ref0, frame n's
 * (n >= 1) refs + (n-1)*S*S*3; NULL = mid-grey (the intra mode). */
void enc_delta_set_prev(vttt_encoder *e, const uint8_t *ref0, const uint8_t *refs, int N);
/* x (on the backend) from h_img (targets in [0,1]) and h_prev. */
int enc_delta_upload_input(vttt_encoder *e, int N);
/* The decoder's input from h_q's first d channels (already in place at
 * the start of each frame's block, see enc_delta_pack_q) and h_prev; the
 * mask; uploads to q. */
int enc_delta_upload_q(vttt_encoder *e, const float *q, int N);
/* h_y (pixels - 0.5) = prev + mask · depth-to-space(r), r from the last layer. */
int enc_delta_output(vttt_encoder *e, int N);
/* Encoding's mode decision (as a video codec's): with h_y the decoding of
 * tokens (N, P) on h_prev, a cell whose decoded pixels are no closer to
 * the target (h_img) than the reference's own becomes "no change". The
 * number of cells changed, or VTTT_ENOMEM. */
int enc_delta_keep_better(vttt_encoder *e, int N, int32_t *tokens);
/* The last layer's dy from the loss gradient at the image (h_y). */
int enc_delta_loss_grad(vttt_encoder *e, int N);
/* dz (h_z-shaped, host) = the first d channels of dq per frame. */
int enc_delta_dq_to_host(vttt_encoder *e, float *dq, int N);

#endif
