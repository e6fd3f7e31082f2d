/*
 * `vttt predict`'s engine: a video decoded at the tokenizer's frame size,
 * every frame pushed through one stream, every prediction scored when its
 * true frame arrives (predict_out.c writes the files).
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "ingest.h"
#include "predict_internal.h"

vttt_predict_params vttt_predict_default_params(void) {
    vttt_predict_params p;
    memset(&p, 0, sizeof p);
    p.horizon = 1;
    p.strip_every = 10;
    p.strip_frames = 8;
    p.write_video = 1;
    p.decoding = VTTT_DECODE_AUTO;
    return p;
}

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static int check_params(const vttt_predict_params *pp, const vttt_logger *lg) {
    const char *bad = NULL;
    if (!pp->video || !pp->out_dir) bad = "a video and an output directory are required";
    else if (pp->horizon < 1 || pp->horizon > VTTT_PREDICT_MAX_HORIZON) bad = "the horizon must be in [1, 64]";
    else if (pp->strip_every < 1 || pp->strip_frames < 1 || pp->strip_frames > 256)
        bad = "strip spacing must be >= 1 and strip columns in [1, 256]";
    else if (pp->max_frames < 0 || pp->fps_num < 0 || pp->fps_den < 0 || (pp->fps_num > 0) != (pp->fps_den > 0))
        bad = "frames and rates must not be negative";
    if (!bad) return VTTT_OK;
    vttt_log(lg, VTTT_LOG_ERROR, "predict: %s", bad);
    return VTTT_EINVAL;
}

static int alloc_buffers(predict_run *r) {
    int S = r->S, K = r->K;
    r->fb = (size_t)S * S * 3;
    r->hist = malloc((size_t)(K + 1) * r->fb);
    r->pred = malloc((size_t)K * K * r->fb);
    r->tok = malloc((size_t)r->P * sizeof(int32_t));
    r->ptok = malloc((size_t)K * r->P * sizeof(int32_t));
    r->prev_tok = malloc((size_t)r->P * sizeof(int32_t));
    r->recon = malloc(r->fb);
    r->cpred = malloc((size_t)K * K * r->fb);
    r->ctok = malloc((size_t)K * r->P * sizeof(int32_t));
    r->side = malloc(2 * r->fb);
    r->strip = calloc((size_t)4 * r->pp->strip_frames, r->fb);
    r->roll = calloc((size_t)2 * K, r->fb);
    r->roll_t0 = -1;
    if (!r->hist || !r->pred || !r->tok || !r->ptok || !r->prev_tok || !r->recon || !r->side || !r->strip || !r->roll ||
        !r->cpred || !r->ctok)
        return VTTT_ENOMEM;
    return VTTT_OK;
}

static int alloc_run(predict_run *r) {
    int err = alloc_buffers(r);
    if (err == VTTT_ENOMEM) vttt_log(&r->log, VTTT_LOG_ERROR, "predict: out of memory");
    return err ? err : vttt_stream_open(&r->stream, r->p);
}

static void free_run(predict_run *r) {
    vttt_stream_free(&r->stream);
    free(r->hist), free(r->pred), free(r->tok), free(r->ptok), free(r->prev_tok), free(r->recon), free(r->side);
    free(r->strip), free(r->roll), free(r->cpred), free(r->ctok);
}

/* Frame t is in the history ring: encode it as the stream would (against
 * the true frame before it) and decode it (the ceiling), copy its tokens
 * K frames on, score it, push it (the K predicted frames). */
static int step(predict_run *r, int64_t t) {
    vttt_encoder *e = vttt_predictor_encoder(r->p);
    const uint8_t *rgb = r->hist + (size_t)(t % (r->K + 1)) * r->fb, *last = vttt_stream_last_frame(r->stream);
    size_t slot = (size_t)(t % r->K) * r->K * r->fb;
    double t0 = now_s();
    int err = vttt_encoder_encode(e, last, rgb, 1, r->tok);
    if (!err) err = vttt_encoder_decode(e, last, r->tok, 1, r->recon);
    double t1 = now_s();
    if (!err && t >= 1) err = predict_score(r, t);
    /* after scoring: the slot of push t is the one push t-K used */
    for (int k = 0; k < r->K; k++) memcpy(r->ctok + (size_t)k * r->P, r->tok, (size_t)r->P * sizeof(int32_t));
    if (!err) err = vttt_encoder_decode(e, rgb, r->ctok, r->K, r->cpred + slot);
    double t2 = now_s();
    uint8_t *out = r->pred + slot;
    if (!err) err = vttt_stream_push_encoded(r->stream, rgb, r->tok, r->K, out, r->ptok);
    double t3 = now_s();
    memcpy(r->prev_tok, r->tok, (size_t)r->P * sizeof(int32_t));
    r->t_codec += t1 - t0; /* the copy baseline's decodes (t1..t2) are scoring, not the codec */
    r->t_model += t3 - t2;
    if (err) return err;
    if (r->tokens) {
        fprintf(r->tokens, "%lld", (long long)t);
        for (int i = 0; i < r->P; i++) fprintf(r->tokens, " %d", r->ptok[i]);
        fputc('\n', r->tokens);
    }
    if (r->K > 1 && r->roll_t0 < 0 && t == r->pp->strip_every) { /* the roll-out shown in rollout.png */
        r->roll_t0 = t;
        for (int k = 0; k < r->K; k++) predict_blit(r->roll, r->K, r->S, 1, k, out + (size_t)k * r->fb);
    }
    return VTTT_OK;
}

static int open_video(predict_run *r, vttt_video **v) {
    vttt_video_params vp = vttt_video_default_params();
    vp.size = r->S;
    vp.fps_num = r->pp->fps_num, vp.fps_den = r->pp->fps_den;
    int err = vttt_video_open(v, r->pp->video, &vp, &r->log, NULL, 0);
    if (err) return err;
    const vttt_video_info *in = vttt_video_get_info(*v);
    r->fps_num = in->out_fps_num > 0 && in->out_fps_den > 0 ? in->out_fps_num : 25;
    r->fps_den = in->out_fps_num > 0 && in->out_fps_den > 0 ? in->out_fps_den : 1;
    return VTTT_OK;
}

static int make_dir(const char *dir, const vttt_logger *lg) {
    if (mkdir(dir, 0777) == 0 || errno == EEXIST) return VTTT_OK;
    vttt_log(lg, VTTT_LOG_ERROR, "predict: cannot create %s: %s", dir, strerror(errno));
    return VTTT_EIO;
}

/* Reads and steps through every frame. */
static int run_frames(predict_run *r, vttt_video *v) {
    int64_t t = 0;
    int err = VTTT_OK;
    for (; !r->pp->max_frames || t < r->pp->max_frames; t++) {
        err = vttt_video_receive_frame(v, r->hist + (size_t)(t % (r->K + 1)) * r->fb, NULL);
        if (err == VTTT_EOF) {
            err = VTTT_OK;
            break;
        }
        if (err || (err = step(r, t))) break;
    }
    if (err && vttt_video_error(v)[0]) vttt_log(&r->log, VTTT_LOG_ERROR, "predict: %s: %s", r->pp->video, vttt_video_error(v));
    r->sum.frames = t;
    return err;
}

int vttt_predict_run(vttt_predictor *p, const vttt_predict_params *pp, vttt_predict_summary *out,
                     const vttt_logger *lg) {
    if (!p || !pp || !out) return VTTT_EINVAL;
    int err = check_params(pp, lg);
    if (err) return err;
    predict_run r;
    memset(&r, 0, sizeof r);
    r.p = p, r.pp = pp;
    if (lg) r.log = *lg;
    r.S = vttt_predictor_frame_size(p), r.P = vttt_predictor_tokens_per_frame(p), r.K = pp->horizon;
    r.sum.horizon = r.K;
    if ((err = vttt_predictor_set_decoding(p, pp->decoding))) return err;
    vttt_video *v = NULL;
    if (!(err = make_dir(pp->out_dir, lg)) && !(err = alloc_run(&r)) && !(err = open_video(&r, &v)) &&
        !(err = predict_outputs_open(&r)))
        err = run_frames(&r, v);
    vttt_video_free(&v);
    if (r.stream) r.sum.state_bytes = vttt_stream_state_bytes(r.stream);
    int cerr = predict_outputs_close(&r, !err);
    if (!err) err = cerr;
    *out = r.sum;
    free_run(&r);
    return err;
}
