/*
 * encoder/encoder.h — the frame tokenizer: a convolutional encoder that
 * downsamples an S×S RGB frame 8× to a G×G grid (G = S/8), finite scalar
 * quantization (FSQ) that turns each grid cell into one token, and a
 * convolutional decoder mirroring the encoder that turns tokens back into
 * pixels. Also the image utilities the video stages share: PSNR, SSIM,
 * PNG reading and writing.
 *
 * Conventions as in ttt/ttt.h: 0 or a negative VTTT_E* code with a message
 * through the logger; nothing aborts on bad input. Frames are (N, S, S, 3)
 * uint8 RGB, row-major (the frame shard layout of ingest/ingest.h); tokens
 * are int32 (N, G*G) in raster order. A tokenizer is used by one thread at
 * a time.
 *
 * A tokenizer directory holds config.json (the keys of vttt_encoder_config
 * below, "model_type": "vttt_fsq_tokenizer") and model.safetensors.
 */
#ifndef VTTT_ENCODER_H
#define VTTT_ENCODER_H

#include <stddef.h>
#include <stdint.h>

#include "model.h"
#include "ttt.h"

#ifdef __cplusplus
extern "C" {
#endif

#define VTTT_FSQ_MAX_LEVELS 8

/* Kinds of tokenizer. FRAME codes each frame alone (8x down, the first
 * design). DELTA codes each frame relative to the previous one: its encoder
 * sees both frames, its decoder is given the previous frame and adds what
 * the tokens say changed; the all-"no change" token grid (every cell the
 * zero code, vttt_encoder_zero_token) decodes to the previous frame
 * exactly. With no previous frame (the first frame of a video, a scene
 * cut) a DELTA tokenizer codes against mid-grey: its intra mode. Its
 * layers run on a grid G = S / factor of cells, each cell holding its
 * factor×factor pixels as channels (space-to-depth; encoder/README.md). */
enum { VTTT_ENCODER_FRAME = 0, VTTT_ENCODER_DELTA = 1 };

typedef struct vttt_encoder_config {
    int kind;                            /* VTTT_ENCODER_FRAME (0, default) or VTTT_ENCODER_DELTA */
    int factor;                          /* S / G: 8 for FRAME; 4 or 8 for DELTA */
    int image_size;                      /* S: frames are S×S (64); a multiple of 8 */
    int channels;                        /* width of the first conv stage; later stages widen (see docs) */
    int num_groups;                      /* GroupNorm groups */
    int num_levels;                      /* FSQ channels d */
    int levels[VTTT_FSQ_MAX_LEVELS];     /* FSQ levels per channel (8,5,5,5: 1000 codes) */
    int motion;                          /* DELTA: largest motion in pixels (0: none); see below */
} vttt_encoder_config;

/* S 64, levels 8,5,5,5 and the default widths (FRAME). */
vttt_encoder_config vttt_encoder_default_config(void);
/* The DELTA default: S 64, factor 4, channels 64, levels 7,5,5,5 (875
 * codes; odd levels so that every channel has an exact zero). */
vttt_encoder_config vttt_encoder_delta_default_config(void);
/* VTTT_EINVAL with a message naming the field. */
int vttt_encoder_config_check(const vttt_encoder_config *cfg, const vttt_logger *lg);
/* Parses "8,5,5,5" into cfg->levels / num_levels. */
int vttt_encoder_levels_parse(vttt_encoder_config *cfg, const char *s, const vttt_logger *lg);

typedef struct vttt_encoder vttt_encoder;

/* Allocates a tokenizer for cfg with weights from seed (deterministic). */
int vttt_encoder_init(vttt_encoder **out, const vttt_encoder_config *cfg, uint64_t seed, const vttt_logger *lg);
void vttt_encoder_free(vttt_encoder **e);
const vttt_encoder_config *vttt_encoder_get_config(const vttt_encoder *e);
int vttt_encoder_tokens_per_frame(const vttt_encoder *e);   /* motion tokens + G*G */
int vttt_encoder_vocab_size(const vttt_encoder *e);         /* cell vocabulary + motion tokens */
/* Motion (DELTA with motion R > 0, encoder/motion.c): a frame's tokens
 * start with 32 motion tokens, the displacement x then y of each region of
 * a 4x4 grid over the frame (raster order), each in half pixels in [-R, R]
 * (4R + 1 tokens per axis), followed by its G*G cell tokens; the cells are
 * coded against the reference moved by that motion field (bilinear, edges
 * clamped; vttt_encoder_motion_ref), and motion 0 leaves a region as it
 * is. Encoding chooses each region's motion by a search against the frame
 * (encoder/README.md). The number of motion tokens at the start of a
 * frame: 32, or 0 without motion. */
#define VTTT_ENCODER_MOTION_GRID 4 /* regions per side of the motion field */
int vttt_encoder_motion_tokens(const vttt_encoder *e);
/* The cell tokens' vocabulary [0, product of the levels); the motion
 * tokens of axis 0 (x) and 1 (y) are [*lo, *lo + *n) above it (*n 0
 * without motion); token lo + h + 2R is the displacement h half pixels. */
int vttt_encoder_cell_vocab(const vttt_encoder *e);
void vttt_encoder_motion_token_range(const vttt_encoder *e, int axis, int *lo, int *n);
/* out (S, S, 3) = prev (NULL: mid-grey) moved by the motion field of the
 * tokens motion[0..31] (ignored without motion): the reference the frame's
 * cells are coded against. VTTT_EINVAL for a token outside its range. */
int vttt_encoder_motion_ref(const vttt_encoder *e, const uint8_t *prev, const int32_t *motion, uint8_t *out);
int vttt_encoder_latent_dim(const vttt_encoder *e);         /* d, the FSQ channels */
/* DELTA: the "no change" token (every FSQ channel at 0); -1 for FRAME. */
int vttt_encoder_zero_token(const vttt_encoder *e);

/* Tokenizer directory: DIR/config.json + DIR/model.safetensors. Loading
 * validates everything (shapes, finiteness, unknown keys): VTTT_EFORMAT /
 * VTTT_EIO with a message naming the file. Saving replaces each file
 * atomically and creates DIR. */
int vttt_encoder_load(vttt_encoder **out, const char *dir, const vttt_logger *lg);
int vttt_encoder_save(const vttt_encoder *e, const char *dir);

/* frames (N, S, S, 3) -> tokens (N, tokens per frame). DELTA: frame n is
 * coded against its reference ref[n] (ref (N, S, S, 3); for a video, the
 * true frame before it; with motion, shifted by the motion chosen for the
 * frame), every frame against mid-grey (intra, pixel 128, motion 0) when
 * ref is NULL; a cell whose decoding is no closer to the frame than the
 * reference's pixels is coded "no change" (a codec's mode decision).
 * FRAME ignores ref. */
int vttt_encoder_encode(vttt_encoder *e, const uint8_t *ref, const uint8_t *frames, int N, int32_t *tokens);
/* Consecutive frames of one video: frame n is coded against frame n-1 and
 * frame 0 against before (S, S, 3; NULL: intra). FRAME ignores before. */
int vttt_encoder_encode_video(vttt_encoder *e, const uint8_t *before, const uint8_t *frames, int N,
                              int32_t *tokens);
/* tokens (N, G*G) -> frames (N, S, S, 3). DELTA: frame n is decoded on
 * the decoded frame n-1, frame 0 on prev (NULL: mid-grey). VTTT_EINVAL
 * for a token outside [0, vocab). */
int vttt_encoder_decode(vttt_encoder *e, const uint8_t *prev, const int32_t *tokens, int N, uint8_t *frames);
/* Decodes latents instead of tokens: q (N, d, G*G), any real values (a
 * token's latent has each channel on its FSQ level grid; an expectation
 * over tokens lies between). DELTA: frame n on its own reference ref[n]
 * (N, S, S, 3; NULL: mid-grey; with motion, the shifted reference of
 * vttt_encoder_motion_ref), a cell whose latent is all zero keeps the
 * reference's pixels. The functions below work on cells (G*G per frame,
 * cell tokens only). */
int vttt_encoder_decode_latent(vttt_encoder *e, const uint8_t *ref, const float *q, int N, uint8_t *frames);
/* The expectation of the latent under the softmax of logits (P rows, ld
 * floats apart, of which the first cell vocabulary are the cell tokens')
 * with temperature 1: q (d, P). With p_zero (P) (DELTA only): p_zero[p]
 * is the probability of cell p's "no change" token and q the expectation
 * over the other tokens (0 where p_zero is 1). */
void vttt_encoder_expected_latent(const vttt_encoder *e, const float *logits, int P, int ld, float *q,
                                  float *p_zero);
/* DELTA: frames (N, S, S, 3) = p_zero * ref + (1 - p_zero) * frames, cell
 * by cell (p_zero (N, G*G), ref (N, S, S, 3), NULL: mid-grey), rounded:
 * the expected frame when a cell keeps the reference with probability
 * p_zero and becomes the decoded frame otherwise. */
void vttt_encoder_blend_unchanged(const vttt_encoder *e, const uint8_t *ref, const float *p_zero, int N,
                                  uint8_t *frames);
/* The latents q (N, d, G*G) of tokens (N, G*G); VTTT_EINVAL for a token
 * outside [0, vocab). */
int vttt_encoder_token_latent(const vttt_encoder *e, const int32_t *tokens, int N, float *q);

/* Training: encoder -> FSQ (straight-through) -> decoder over N frames.
 * *loss (may be NULL) is the mean squared error of the reconstruction in
 * [0,1] pixel units; recon (N, S, S, 3) may be NULL. train != 0 keeps the
 * activations for vttt_encoder_backward. DELTA: frame n is coded against
 * prev[n] (N, S, S, 3), or mid-grey when prev is NULL; FRAME ignores prev. */
int vttt_encoder_forward(vttt_encoder *e, const uint8_t *prev, const uint8_t *frames, int N, int train, float *loss,
                         uint8_t *recon);
/* Training: the loss also gets weight * the mean over latents of their
 * distance from the zero level (in level steps, before rounding), which
 * pulls small changes to the "no change" code (a sparse, predictable
 * token grid). *loss of vttt_encoder_forward stays the squared error;
 * vttt_encoder_rate gives the term of the last forward. 0 (default): off. */
void vttt_encoder_set_rate_weight(vttt_encoder *e, float weight);
double vttt_encoder_rate(const vttt_encoder *e);
/* Accumulates (+=) dloss * d(loss)/d(params) into the gradients. */
int vttt_encoder_backward(vttt_encoder *e, float dloss);
/* Every parameter tensor with its gradient (names as in model.safetensors).
 * Valid until vttt_encoder_free. */
const vttt_model_tensor *vttt_encoder_tensors(const vttt_encoder *e, int *n);
size_t vttt_encoder_num_params(const vttt_encoder *e);
void vttt_encoder_zero_grads(vttt_encoder *e);
/* FLOPs of one forward (encoder + decoder) over one frame. */
double vttt_encoder_forward_flops(const vttt_encoder_config *cfg);
/* FLOPs of the encoder half alone (vttt_encoder_encode) over one frame. */
double vttt_encoder_encode_flops(const vttt_encoder_config *cfg);

/* Runs the tokenizer's ops on a backend (the CPU's by default). For a
 * CUDA backend the weights are copied to the device and the convolutions
 * run through cuDNN; VTTT_ENODEV/VTTT_ENOTSUP when unavailable. */
int vttt_encoder_set_backend(vttt_encoder *e, const vttt_backend *be);

/* ---- image utilities ------------------------------------------------------
 * Images are (H, W, 3) uint8 RGB, row-major. */

/* PSNR in dB over all pixels and channels (peak 255); +inf-free: identical
 * images give 100 dB, and no score exceeds it. Both measures return NaN
 * for bad arguments (NULL, w or h <= 0). */
double vttt_image_psnr(const uint8_t *a, const uint8_t *b, int w, int h);
/* SSIM (Wang et al. 2004: 11×11 Gaussian window, sigma 1.5, K1 0.01,
 * K2 0.03) on the luma (BT.601), mean over the valid windows. Images
 * smaller than 11 use a min(w, h)-tap window (same Gaussian, renormalised). */
double vttt_image_ssim(const uint8_t *a, const uint8_t *b, int w, int h);

/* PNG in memory: encodes rgb (h, w, 3) into a malloc'd buffer (*out, *n;
 * the caller frees). */
int vttt_png_encode(const uint8_t *rgb, int w, int h, uint8_t **out, size_t *n, const vttt_logger *lg);
/* Decodes a PNG (any colour type and bit depth, converted to RGB 8-bit;
 * alpha dropped) into a malloc'd (h, w, 3) buffer. VTTT_EFORMAT with a
 * message for anything that is not a valid PNG, VTTT_EINVAL when larger
 * than max_pixels (w*h). Never aborts on bad data. */
int vttt_png_decode(const uint8_t *data, size_t n, uint8_t **rgb, int *w, int *h, int64_t max_pixels,
                    const vttt_logger *lg);
/* Writes rgb (h, w, 3) to path atomically (temporary file + rename). */
int vttt_png_write(const char *path, const uint8_t *rgb, int w, int h, const vttt_logger *lg);

#ifdef __cplusplus
}
#endif
#endif
