/* `vttt video fit`'s yardstick: next-frame PSNR on the held-out tails of
 * the clips, through the same streams as `vttt predict` and `vttt serve`
 * (vttt_stream_push, EXPECT decoding), beside repeating the last frame. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "infer.h"
#include "ingest.h"
#include "video_fit.h"

/* Pushes frames [first, end) of the clip, first the warm-up ones before
 * the tail, and scores each prediction of a tail frame. */
static int eval_clip(vttt_predictor *p, const fit_clip *c, fit_score *acc) {
    int S = vttt_predictor_frame_size(p);
    size_t fb = (size_t)S * S * 3;
    int64_t tail = c->train_frames, first = tail > FIT_EVAL_WARM ? tail - FIT_EVAL_WARM : 0;
    int64_t end = c->frames < tail + FIT_EVAL_FRAMES ? c->frames : tail + FIT_EVAL_FRAMES;
    vttt_frame_shard *sh = NULL;
    vttt_stream *s = NULL;
    uint8_t *frames = malloc((size_t)(end - first) * fb), *pred = malloc(fb);
    int err = frames && pred ? vttt_frame_shard_open(&sh, c->shard, NULL) : VTTT_ENOMEM;
    if (!err) err = vttt_frame_shard_read(sh, first, end - first, frames);
    if (!err) err = vttt_stream_open(&s, p);
    for (int64_t t = first; !err && t + 1 < end; t++) {
        const uint8_t *now = frames + (size_t)(t - first) * fb, *next = now + fb;
        err = vttt_stream_push(s, now, 1, pred, NULL);
        if (err || t + 1 < tail) continue;
        acc->psnr += vttt_image_psnr(pred, next, S, S);
        acc->repeat_psnr += vttt_image_psnr(now, next, S, S);
        acc->scored++;
    }
    if (err) fprintf(stderr, "vttt video fit: evaluating on %s (%s) failed: %s\n", c->file, c->shard, vttt_strerror(err));
    vttt_stream_free(&s);
    vttt_frame_shard_close(&sh);
    free(frames), free(pred);
    return err;
}

int fit_eval(const char *model_dir, const char *encoder_dir, const fit_clip *clips, int n, fit_score *out) {
    double t0 = cli_now_s();
    memset(out, 0, sizeof *out);
    vttt_predictor *p = NULL;
    int err = vttt_predictor_open(&p, model_dir, encoder_dir, NULL);
    if (err) fprintf(stderr, "vttt video fit: cannot load the model %s with the tokenizer %s (%s)\n", model_dir,
                     encoder_dir, vttt_strerror(err));
    if (!err) err = vttt_predictor_set_decoding(p, VTTT_DECODE_EXPECT);
    for (int i = 0; i < n && !err; i++) err = eval_clip(p, &clips[i], out);
    vttt_predictor_close(&p);
    if (!err && out->scored == 0) err = VTTT_EINVAL; /* the caller makes sure every clip has a tail */
    if (!err) out->psnr /= (double)out->scored, out->repeat_psnr /= (double)out->scored;
    out->seconds = cli_now_s() - t0;
    return err;
}
