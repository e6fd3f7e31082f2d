/*
 * `vttt predict`'s scoring and output files: frames.csv, tokens.txt, the
 * side-by-side video, strip.png, rollout.png and summary.json (see
 * infer.h).
 */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "predict_internal.h"

void predict_blit(uint8_t *img, int cols, int S, int row, int col, const uint8_t *src) {
    size_t W = (size_t)cols * S;
    for (int y = 0; y < S; y++)
        memcpy(img + (((size_t)row * S + y) * W + (size_t)col * S) * 3, src + (size_t)y * S * 3, (size_t)S * 3);
}

static FILE *open_out(predict_run *r, const char *name) {
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", r->pp->out_dir, name);
    FILE *f = fopen(path, "w");
    if (!f) vttt_log(&r->log, VTTT_LOG_ERROR, "predict: cannot write %s: %s", path, strerror(errno));
    return f;
}

int predict_outputs_open(predict_run *r) {
    if (!(r->csv = open_out(r, "frames.csv")) || !(r->tokens = open_out(r, "tokens.txt"))) return VTTT_EIO;
    fprintf(r->csv, "frame,model_psnr,model_ssim,repeat_psnr,repeat_ssim,ceiling_psnr,ceiling_ssim,model_token_acc,"
                    "repeat_token_acc");
    for (int k = 2; k <= r->K; k++) fprintf(r->csv, ",model_psnr_%d,repeat_psnr_%d", k, k);
    fprintf(r->csv, ",copy_psnr,copy_ssim\n");
    if (!r->pp->write_video) return VTTT_OK;
    char stem[4096];
    snprintf(stem, sizeof stem, "%s/predicted", r->pp->out_dir);
    return infer_video_writer_open(&r->video, stem, 2 * r->S, r->S, r->fps_num, r->fps_den, r->sum.video_path,
                                   sizeof r->sum.video_path, &r->log);
}

/* The frame predicted at push t0 for k frames ahead (k >= 1). */
static const uint8_t *predicted(const predict_run *r, int64_t t0, int k) {
    return r->pred + ((size_t)(t0 % r->K) * r->K + (size_t)(k - 1)) * r->fb;
}

/* Copying push t0's tokens k times (k >= 1). */
static const uint8_t *copied(const predict_run *r, int64_t t0, int k) {
    return r->cpred + ((size_t)(t0 % r->K) * r->K + (size_t)(k - 1)) * r->fb;
}

static const uint8_t *truth(const predict_run *r, int64_t t) { return r->hist + (size_t)(t % (r->K + 1)) * r->fb; }

/* Side-by-side frame true | predicted into the video. */
static int write_side(predict_run *r, const uint8_t *a, const uint8_t *b) {
    if (!r->video) return VTTT_OK;
    predict_blit(r->side, 2, r->S, 0, 0, a);
    predict_blit(r->side, 2, r->S, 0, 1, b);
    return infer_video_writer_write(r->video, r->side);
}

/* strip.png columns at frames 1, 1 + every, ...; rollout.png's true row. */
static void add_to_strips(predict_run *r, int64_t t, const uint8_t *now, const uint8_t *p1, const uint8_t *prev) {
    if ((t - 1) % r->pp->strip_every == 0 && r->strip_cols < r->pp->strip_frames) {
        int c = r->strip_cols++, n = r->pp->strip_frames;
        predict_blit(r->strip, n, r->S, 0, c, now);
        predict_blit(r->strip, n, r->S, 1, c, p1);
        predict_blit(r->strip, n, r->S, 2, c, prev);
        predict_blit(r->strip, n, r->S, 3, c, r->recon);
    }
    if (r->roll_t0 >= 0 && t > r->roll_t0 && t <= r->roll_t0 + r->K) {
        predict_blit(r->roll, r->K, r->S, 0, (int)(t - r->roll_t0 - 1), now);
        r->roll_cols = (int)(t - r->roll_t0);
    }
}

int predict_score(predict_run *r, int64_t t) {
    int S = r->S;
    const uint8_t *now = truth(r, t), *prev = truth(r, t - 1), *p1 = predicted(r, t - 1, 1);
    int hit[2] = {0, 0}; /* tokens of frame t equal to the predicted ones, to the previous frame's */
    for (int i = 0; i < r->P; i++) hit[0] += r->ptok[i] == r->tok[i], hit[1] += r->prev_tok[i] == r->tok[i];
    const uint8_t *c1 = copied(r, t - 1, 1);
    double v[10] = {vttt_image_psnr(p1, now, S, S),   vttt_image_ssim(p1, now, S, S),
                    vttt_image_psnr(prev, now, S, S), vttt_image_ssim(prev, now, S, S),
                    vttt_image_psnr(r->recon, now, S, S), vttt_image_ssim(r->recon, now, S, S),
                    (double)hit[0] / r->P, (double)hit[1] / r->P,
                    vttt_image_psnr(c1, now, S, S), vttt_image_ssim(c1, now, S, S)};
    for (int i = 0; i < 10; i++) {
        if (!isfinite(v[i])) {
            vttt_log(&r->log, VTTT_LOG_ERROR, "predict: frame %lld scores a non-finite value (column %d)",
                     (long long)t, i);
            return VTTT_ENAN;
        }
        r->sums[i] += v[i];
    }
    r->sum.scored++;
    fprintf(r->csv, "%lld,%.4f,%.5f,%.4f,%.5f,%.4f,%.5f,%.5f,%.5f", (long long)t, v[0], v[1], v[2], v[3], v[4], v[5],
            v[6], v[7]);
    vttt_predict_summary *s = &r->sum;
    for (int k = 1; k <= r->K; k++) {
        if (t < k) {
            if (k > 1) fprintf(r->csv, ",,");
            continue;
        }
        const uint8_t *pk = predicted(r, t - k, k), *rk = truth(r, t - k), *ck = copied(r, t - k, k);
        double pm = k == 1 ? v[0] : vttt_image_psnr(pk, now, S, S), pr = k == 1 ? v[2] : vttt_image_psnr(rk, now, S, S);
        if (k > 1) fprintf(r->csv, ",%.4f,%.4f", pm, pr);
        s->step_model_psnr[k - 1] += pm, s->step_repeat_psnr[k - 1] += pr, s->step_count[k - 1]++;
        s->step_model_ssim[k - 1] += k == 1 ? v[1] : vttt_image_ssim(pk, now, S, S);
        s->step_repeat_ssim[k - 1] += k == 1 ? v[3] : vttt_image_ssim(rk, now, S, S);
        s->step_copy_psnr[k - 1] += k == 1 ? v[8] : vttt_image_psnr(ck, now, S, S);
        s->step_copy_ssim[k - 1] += k == 1 ? v[9] : vttt_image_ssim(ck, now, S, S);
        s->step_ceiling_psnr[k - 1] += v[4], s->step_ceiling_ssim[k - 1] += v[5];
    }
    fprintf(r->csv, ",%.4f,%.5f\n", v[8], v[9]);
    add_to_strips(r, t, now, p1, prev);
    return write_side(r, now, p1);
}

static int write_png(predict_run *r, const char *name, const uint8_t *img, int w, int h) {
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", r->pp->out_dir, name);
    return vttt_png_write(path, img, w, h, &r->log);
}

/* strip.png keeps its used columns: rows are cut out of the full-width
 * buffer. */
static int write_strip(predict_run *r, const uint8_t *img, int cols_alloc, int cols, int rows, const char *name) {
    int S = r->S;
    size_t wb = (size_t)cols * S * 3, Wb = (size_t)cols_alloc * S * 3;
    uint8_t *out = malloc((size_t)rows * S * wb);
    if (!out) return VTTT_ENOMEM;
    for (int y = 0; y < rows * S; y++) memcpy(out + y * wb, img + y * Wb, wb);
    int err = write_png(r, name, out, cols * S, rows * S);
    free(out);
    return err;
}

static void finish_means(predict_run *r) {
    vttt_predict_summary *s = &r->sum;
    double n = s->scored > 0 ? (double)s->scored : 1.0;
    s->model_psnr = r->sums[0] / n, s->model_ssim = r->sums[1] / n;
    s->repeat_psnr = r->sums[2] / n, s->repeat_ssim = r->sums[3] / n;
    s->ceiling_psnr = r->sums[4] / n, s->ceiling_ssim = r->sums[5] / n;
    s->model_token_acc = r->sums[6] / n, s->repeat_token_acc = r->sums[7] / n;
    s->copy_psnr = r->sums[8] / n, s->copy_ssim = r->sums[9] / n;
    for (int k = 0; k < r->K; k++) {
        double c = s->step_count[k] > 0 ? (double)s->step_count[k] : 1.0;
        s->step_model_psnr[k] /= c, s->step_repeat_psnr[k] /= c, s->step_model_ssim[k] /= c;
        s->step_repeat_ssim[k] /= c, s->step_copy_psnr[k] /= c, s->step_copy_ssim[k] /= c;
        s->step_ceiling_psnr[k] /= c, s->step_ceiling_ssim[k] /= c;
    }
    s->model_ms_per_frame = s->frames ? 1e3 * r->t_model / (double)s->frames : 0.0;
    s->encode_ms_per_frame = s->frames ? 1e3 * r->t_codec / (double)s->frames : 0.0;
}

static int write_summary(predict_run *r) {
    const vttt_predict_summary *s = &r->sum;
    FILE *f = open_out(r, "summary.json");
    if (!f) return VTTT_EIO;
    fprintf(f, "{\"frames\": %lld, \"scored\": %lld, \"horizon\": %d,\n", (long long)s->frames, (long long)s->scored,
            s->horizon);
    fprintf(f, " \"model\": {\"psnr\": %.4f, \"ssim\": %.5f, \"token_acc\": %.5f},\n", s->model_psnr, s->model_ssim,
            s->model_token_acc);
    fprintf(f, " \"repeat_last\": {\"psnr\": %.4f, \"ssim\": %.5f, \"token_acc\": %.5f},\n", s->repeat_psnr,
            s->repeat_ssim, s->repeat_token_acc);
    fprintf(f, " \"tokenizer_ceiling\": {\"psnr\": %.4f, \"ssim\": %.5f},\n", s->ceiling_psnr, s->ceiling_ssim);
    fprintf(f, " \"copy_tokens\": {\"psnr\": %.4f, \"ssim\": %.5f},\n", s->copy_psnr, s->copy_ssim);
    static const char *const modes[] = {"expect", "argmax", "sample", "mixture"};
    fprintf(f, " \"decoding\": \"%s\",\n", modes[vttt_predictor_decoding(r->p)]);
    fprintf(f, " \"steps\": [");
    for (int k = 0; k < s->horizon; k++)
        fprintf(f, "%s\n  {\"k\": %d, \"model_psnr\": %.4f, \"repeat_psnr\": %.4f, \"frames\": %lld, "
                "\"model_ssim\": %.5f, \"repeat_ssim\": %.5f, \"copy_tokens_psnr\": %.4f, \"copy_tokens_ssim\": %.5f, "
                "\"ceiling_psnr\": %.4f, \"ceiling_ssim\": %.5f}", k ? "," : "",
                k + 1, s->step_model_psnr[k], s->step_repeat_psnr[k], (long long)s->step_count[k], s->step_model_ssim[k],
                s->step_repeat_ssim[k], s->step_copy_psnr[k], s->step_copy_ssim[k], s->step_ceiling_psnr[k],
                s->step_ceiling_ssim[k]);
    fprintf(f, "],\n \"model_ms_per_frame\": %.4f, \"codec_ms_per_frame\": %.4f, \"state_bytes\": %zu,\n",
            s->model_ms_per_frame, s->encode_ms_per_frame, s->state_bytes);
    fprintf(f, " \"video\": \"%s\"}\n", s->video_path);
    return fclose(f) ? VTTT_EIO : VTTT_OK;
}

static int close_file(FILE **f) {
    int err = *f && fclose(*f) ? VTTT_EIO : VTTT_OK;
    *f = NULL;
    return err;
}

int predict_outputs_close(predict_run *r, int ok) {
    int err = close_file(&r->csv), e2 = close_file(&r->tokens), e3 = infer_video_writer_close(&r->video);
    if (!err) err = e2 ? e2 : e3;
    if (!ok) return err;
    finish_means(r);
    if (!err && r->strip_cols) err = write_strip(r, r->strip, r->pp->strip_frames, r->strip_cols, 4, "strip.png");
    if (!err && r->roll_cols) err = write_strip(r, r->roll, r->K, r->roll_cols, 2, "rollout.png");
    if (!err) err = write_summary(r);
    return err;
}
