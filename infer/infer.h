/*
 * infer/infer.h — next-frame prediction: a predictor (a video model and its
 * frame tokenizer, loaded once) and streams (one video each, with its own
 * constant-size model state). The offline `vttt predict`, the HTTP daemon
 * `vttt serve` and the tests all go through these calls, so the same frames
 * give the same predictions everywhere.
 *
 * Pushing frame t of a stream encodes it into tokens, continues the
 * stream's state by those tokens (one prefill over the frame) and reads the
 * model's output at every token of the frame, which predicts the token at
 * the same place in frame t+1 (DESIGN.md "Video as tokens"). Greedy
 * tokens are decoded into the predicted frame (see VTTT_DECODE_*). A
 * horizon K > 1 rolls forward on a copy of the state, feeding each
 * predicted frame's tokens back; the stream's own state only ever sees the
 * true frames. With a DELTA tokenizer the stream keeps its last true
 * frame: the next frame is coded against it, and the prediction is
 * decoded on it.
 *
 * Conventions as in ttt/ttt.h. A predictor's model and tokenizer are used
 * by one thread at a time: callers serialize vttt_stream_push* on one
 * predictor (the daemon runs them on its model thread).
 */
#ifndef VTTT_INFER_H
#define VTTT_INFER_H

#include <stddef.h>
#include <stdint.h>

#include "encoder.h"
#include "model.h"
#include "ttt.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct vttt_predictor vttt_predictor;

/* How a predicted frame's pixels are made from the model's distribution
 * over each cell's token: EXPECT (default) decodes the expectation of the
 * latent (the prediction that minimizes the expected squared error when
 * the decoder is near-linear in the latent); with a DELTA tokenizer each
 * cell is the last frame with the probability of its "no change" token
 * and the decoding of the expected latent of the other tokens otherwise
 * (vttt_encoder_blend_unchanged), so an unsure model predicts close to
 * repeating the last frame and a sure "no change" repeats it exactly;
 * ARGMAX decodes the most likely
 * tokens; SAMPLE draws tokens (deterministic per stream and frame). The
 * tokens handed back and fed to roll-outs are the argmax (SAMPLE: the
 * drawn) tokens in every mode. */
enum { VTTT_DECODE_AUTO = -1, VTTT_DECODE_EXPECT = 0, VTTT_DECODE_ARGMAX = 1, VTTT_DECODE_SAMPLE = 2,
       VTTT_DECODE_MIXTURE = 3 };
/* AUTO (a predictor's default): MIXTURE with a DELTA tokenizer (measured
 * better than EXPECT on held-out real clips, models/README.md), EXPECT
 * with a FRAME one. */
/* MIXTURE (DELTA only): the expected frame over "no change" and each
 * cell's VTTT_DECODE_TOP most likely other tokens, decoded one rank at a
 * time (VTTT_DECODE_TOP decodes) and averaged pixel by pixel with their
 * renormalized probabilities. */
#define VTTT_DECODE_TOP 3
/* With a tokenizer with motion (encoder.h), the cells are decoded on the
 * last frame moved by the predicted motion field: by the motion tokens
 * chosen in ARGMAX and SAMPLE; in MIXTURE and EXPECT by the expected
 * reference, each region moved by the 4 combinations of the two likeliest
 * displacements of each axis and averaged with the products of their
 * probabilities, renormalized (an unsure model blends the candidate
 * motions instead of betting on one). */
/* Parses "auto", "expect", "argmax", "sample", "mixture"; -2 otherwise. */
int vttt_decoding_parse(const char *s);

/* Loads a video model directory (tokens_per_frame > 0; a training run
 * directory stands for its newest checkpoint, RUN/latest) and a tokenizer
 * directory (or its training run) and checks that they agree (vocabulary,
 * tokens per frame).
 * VTTT_EFORMAT with a message naming both directories otherwise. */
int vttt_predictor_open(vttt_predictor **out, const char *model_dir, const char *encoder_dir,
                        const vttt_logger *lg);
void vttt_predictor_close(vttt_predictor **p);
int vttt_predictor_frame_size(const vttt_predictor *p);       /* S: frames are (S, S, 3) */
int vttt_predictor_tokens_per_frame(const vttt_predictor *p);
vttt_model *vttt_predictor_model(vttt_predictor *p);
int vttt_predictor_set_decoding(vttt_predictor *p, int mode); /* VTTT_DECODE_*; VTTT_EINVAL otherwise */
int vttt_predictor_decoding(const vttt_predictor *p);         /* the mode in use (never AUTO) */
vttt_encoder *vttt_predictor_encoder(vttt_predictor *p);

typedef struct vttt_stream vttt_stream;

int vttt_stream_open(vttt_stream **out, vttt_predictor *p);
void vttt_stream_free(vttt_stream **s);
int64_t vttt_stream_frames(const vttt_stream *s);   /* frames pushed so far */
size_t vttt_stream_state_bytes(const vttt_stream *s); /* constant for TTT models */

/* Pushes one true frame rgb (S, S, 3). pred (horizon, S, S, 3) and
 * pred_tokens (horizon, tokens_per_frame) receive the predicted next
 * `horizon` frames; either may be NULL. horizon >= 1. */
int vttt_stream_push(vttt_stream *s, const uint8_t *rgb, int horizon, uint8_t *pred, int32_t *pred_tokens);
/* vttt_stream_push with the frame's tokens already made (by
 * vttt_encoder_encode against the stream's last frame, or intra for the
 * first): what `vttt predict` runs, so that it can score the tokens. */
int vttt_stream_push_encoded(vttt_stream *s, const uint8_t *rgb, const int32_t *tokens, int horizon, uint8_t *pred,
                             int32_t *pred_tokens);
/* The stream's last frame (S, S, 3), or NULL before the first push of
 * pixels: the reference a DELTA tokenizer codes the next frame against. */
const uint8_t *vttt_stream_last_frame(const vttt_stream *s);
/* The model step of vttt_stream_push on an encoded frame: tokens
 * (tokens_per_frame) in, pred_tokens (horizon, tokens_per_frame) out (may
 * be NULL). vttt_stream_push is vttt_encoder_encode + this +
 * vttt_encoder_decode. */
int vttt_stream_push_tokens(vttt_stream *s, const int32_t *tokens, int horizon, int32_t *pred_tokens);
/* The same for n streams at once (distinct streams of one predictor, one
 * frame each, horizon 1), batched into one model step: rgb (n, S, S, 3),
 * pred (n, S, S, 3), pred_tokens (n, tokens_per_frame), either may be NULL.
 * Results equal n separate vttt_stream_push calls. */
int vttt_stream_push_batch(vttt_stream **s, int n, const uint8_t *rgb, uint8_t *pred, int32_t *pred_tokens);
/* push_batch's model step on encoded frames: tokens (n, tokens_per_frame)
 * in, pred_tokens (n, tokens_per_frame) out. */
int vttt_stream_push_batch_tokens(vttt_stream **s, int n, const int32_t *tokens, int32_t *pred_tokens);

/* Snapshots: the stream's whole state as bytes (a malloc'd buffer the
 * caller frees), and a new stream from such bytes. Restoring checks that
 * the snapshot belongs to this predictor's model (VTTT_EFORMAT otherwise,
 * or for damaged, forged or out-of-range bytes; infer/README.md
 * "Snapshots"). Restore only reads data: safe on untrusted bytes. */
int vttt_stream_snapshot(const vttt_stream *s, uint8_t **out, size_t *n);
int vttt_stream_restore(vttt_stream **out, vttt_predictor *p, const uint8_t *data, size_t n);
/* Snapshot signing (infer/snapshot_key.c). With a key (a copy is kept,
 * wiped when replaced or closed) the predictor's snapshots carry an
 * HMAC-SHA256 of all their bytes and vttt_stream_restore accepts only
 * snapshots signed with the same key (unsigned, altered or differently
 * signed ones: VTTT_EFORMAT with a message); without one (key NULL, n 0,
 * the default) snapshots carry a SHA-256 and signed ones are refused.
 * Keys hold VTTT_SNAPSHOT_KEY_MIN..MAX bytes (VTTT_EINVAL otherwise). */
#define VTTT_SNAPSHOT_KEY_MIN 16
#define VTTT_SNAPSHOT_KEY_MAX 4096
int vttt_predictor_set_snapshot_key(vttt_predictor *p, const uint8_t *key, size_t n);
/* Reads a key file whole: its bytes, as they are (a trailing newline is
 * part of the key), into *key (malloc'd, n bytes; wipe and free it), by
 * vttt_file_read_all. Unreadable or not a regular file: VTTT_EIO; larger
 * than VTTT_SNAPSHOT_KEY_MAX: VTTT_EFORMAT; shorter than
 * VTTT_SNAPSHOT_KEY_MIN (empty included): VTTT_EINVAL; each with a message
 * naming the file; the key itself is never logged. */
int vttt_snapshot_key_read(const char *path, uint8_t **key, size_t *n, const vttt_logger *lg);

/* ---- offline prediction (`vttt predict`; infer/predict*.c) ---------------
 * Decodes a video at the tokenizer's frame size, pushes every frame
 * through one stream (encode, vttt_stream_push_tokens, decode) and scores
 * each prediction against the true frame when it arrives, beside two
 * baselines: repeating the last frame, and the tokenizer's reconstruction
 * of the true frame (the ceiling). Writes into out_dir:
 *   frames.csv     one line per scored frame j >= 1: frame, model_psnr,
 *                  model_ssim, repeat_psnr, repeat_ssim, ceiling_psnr,
 *                  ceiling_ssim, model_token_acc, repeat_token_acc (the share of
 *                  frame j's tokens equal to the predicted ones / to frame
 *                  j-1's), then for k = 2..K model_psnr_k, repeat_psnr_k
 *                  (frame j as predicted from frame j-k; empty when j < k),
 *                  then copy_psnr, copy_ssim (copying frame j-1's tokens)
 *   summary.json   the means, per step k too (model, repeating the last
 *                  frame, copying the last frame's tokens k times, the
 *                  tokenizer's ceiling: PSNR and SSIM), and timings
 *   strip.png      columns every strip_every frames; rows: true, predicted,
 *                  repeat (the frame before), tokenizer reconstruction
 * The ceiling is the tokenizer's reconstruction of the true frame (DELTA:
 * coded against the true frame before it).
 *   rollout.png    K > 1: the K frames after frame strip_every, true over
 *                  predicted
 *   predicted.mp4  (or .mkv) side by side true | predicted, frames 1..
 *   tokens.txt     per pushed frame t: t and the greedy tokens predicted
 *                  for frame t+1 (space separated) */
#define VTTT_PREDICT_MAX_HORIZON 64
typedef struct vttt_predict_params {
    const char *video;        /* a path or URL FFmpeg reads */
    const char *out_dir;      /* created if needed */
    int horizon;              /* K in [1, VTTT_PREDICT_MAX_HORIZON] (1) */
    int fps_num, fps_den;     /* decoding rate; 0/0: the source's frames (default) */
    int strip_every;          /* strip.png column spacing in frames (10) */
    int strip_frames;         /* strip.png columns at most (8) */
    int64_t max_frames;       /* frames read at most; 0: all */
    int write_video;          /* predicted.mp4 (1) */
    int decoding;             /* VTTT_DECODE_* (AUTO) */
} vttt_predict_params;
vttt_predict_params vttt_predict_default_params(void);

typedef struct vttt_predict_summary {
    int64_t frames;           /* frames read */
    int64_t scored;           /* frames scored (frames - 1) */
    double model_psnr, model_ssim, repeat_psnr, repeat_ssim, ceiling_psnr, ceiling_ssim; /* means: dB, [0, 1] */
    double model_token_acc, repeat_token_acc; /* means: share of the true frame's tokens predicted / repeated */
    int horizon;
    double copy_psnr, copy_ssim;  /* means: copying the last frame's tokens (DELTA: its change again) */
    double step_model_psnr[VTTT_PREDICT_MAX_HORIZON];  /* [k-1]: mean over frames predicted k ahead */
    double step_repeat_psnr[VTTT_PREDICT_MAX_HORIZON];
    double step_model_ssim[VTTT_PREDICT_MAX_HORIZON], step_repeat_ssim[VTTT_PREDICT_MAX_HORIZON];
    double step_copy_psnr[VTTT_PREDICT_MAX_HORIZON], step_copy_ssim[VTTT_PREDICT_MAX_HORIZON];
    double step_ceiling_psnr[VTTT_PREDICT_MAX_HORIZON], step_ceiling_ssim[VTTT_PREDICT_MAX_HORIZON];
    int64_t step_count[VTTT_PREDICT_MAX_HORIZON];
    double model_ms_per_frame;   /* stream push (model step, horizon included) */
    double encode_ms_per_frame;  /* tokenizer encode + decodes */
    size_t state_bytes;          /* the stream's state */
    char video_path[1024];       /* predicted.mp4/.mkv, "" when not written */
} vttt_predict_summary;
/* VTTT_EINVAL for bad params; errors of the video, the model or the
 * files with a message. A video of fewer than 2 frames scores nothing. */
int vttt_predict_run(vttt_predictor *p, const vttt_predict_params *pp, vttt_predict_summary *out,
                     const vttt_logger *lg);

/* ---- the HTTP daemon (`vttt serve`; docs in infer/README.md) ------------
 * libmicrohttpd's thread pool parses requests; one model thread owns the
 * predictor (loaded in the background: /health answers 503 until then)
 * and runs every stream operation, batching frames of distinct streams. */
typedef struct vttt_server_params {
    const char *model_dir, *encoder_dir;
    const char *listen;        /* "HOST:PORT" ("127.0.0.1:8080"; "[::1]:8080"); port 0 picks a free one */
    const char *token;         /* bearer token or NULL; required for a non-loopback address */
    int max_streams;           /* open streams (64); more -> 429 */
    size_t max_body;           /* request body bytes (16 MiB); more -> 413 */
    int max_horizon;           /* frames predicted per request (16) */
    double idle_timeout_s;     /* streams unused this long are closed (600) */
    double request_timeout_s;  /* a request queued this long -> 503 (30); also the socket timeout */
    int queue_size;            /* model jobs waiting (256); more -> 503 with Retry-After */
    int max_batch;             /* frames of distinct streams per model step; 1 (default): no batching */
    int http_threads;          /* libmicrohttpd threads (4) */
    int model_threads;         /* OpenMP and OpenBLAS threads of the model thread (0: their defaults) */
    double drain_s;            /* on stop, how long in-flight requests get to finish (30) */
    const uint8_t *snapshot_key; /* (snapshot_key_n) signs and checks snapshots (vttt_predictor_set_snapshot_key),
                                  * or NULL; must stay valid until vttt_server_stop */
    size_t snapshot_key_n;
    int decoding;              /* VTTT_DECODE_* of the predicted frames (AUTO) */
    int max_connections;       /* open client connections (1024, fewer if the descriptor limit is lower);
                                  more are answered 503 and closed */
    int max_connections_per_ip;/* per client address (256); more are closed at once; 0: no limit */
    double request_deadline_s; /* a connection must deliver a whole request (head and body) within this
                                  many seconds of opening or of its last answer, or it is closed (30) */
    vttt_logger log;
} vttt_server_params;
vttt_server_params vttt_server_default_params(void);

typedef struct vttt_server vttt_server;
/* Listens at once and starts loading the model on the model thread.
 * VTTT_EINVAL (bad params, a non-loopback address without a token),
 * VTTT_EIO (cannot listen) with a message. */
int vttt_server_start(vttt_server **out, const vttt_server_params *p);
int vttt_server_port(const vttt_server *s);   /* the bound port */
/* Blocks until the model is loaded: 0, or the loading error. */
int vttt_server_wait_ready(vttt_server *s);
/* Stops accepting connections, lets in-flight requests finish (drain_s),
 * answers what is still queued with 503, and frees everything. */
void vttt_server_stop(vttt_server **s);

#ifdef __cplusplus
}
#endif
#endif
