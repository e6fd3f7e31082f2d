/*
 * vttt_video: decoded frames -> time range -> fps resampling -> S×S RGB.
 *
 * The time range follows `ffmpeg -ss A -t D -i X`: frames before A are
 * dropped after a backward seek, and frames from the first kept one on are
 * taken while (pts - first) < D. The input ends, for the resampler, at the
 * last kept frame's pts plus its duration, which is where the ffmpeg command
 * line ends it too. At the natural end of the input, a video that stops well
 * short of the duration its container declares is reported as truncated.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <libavutil/parseutils.h>

#include "video_internal.h"

struct vttt_video {
    vttt_video_params p;
    vttt_logger lg;
    vttt_video_info info;
    video_decoder dec;
    video_fps fps;
    video_scaler sc;
    char *url;
    int use_fps;
    uint8_t *last_rgb;        /* (S, S, 3) the last frame delivered, for repeats */
    int64_t last_serial;      /* its input frame number, -1 none */
    int64_t range_first;      /* pts of the first frame taken, AV_NOPTS_VALUE before */
    int64_t range_len;        /* duration in stream tb, 0: to the end */
    int64_t last_fed_pts, last_fed_dur;
    int input_done;           /* no more frames from the decoder */
    int pending;              /* error to report once buffered frames are out (truncation) */
    int failed;               /* error already reported: the stream is over */
    char err[512];
};

vttt_video_params vttt_video_default_params(void) {
    vttt_video_params p;
    memset(&p, 0, sizeof p);
    p.size = 64;
    p.fit = VTTT_VIDEO_FIT_CROP;
    p.scaler = VTTT_VIDEO_SCALER_BICUBIC;
    p.hwaccel = VTTT_VIDEO_HWACCEL_NONE;
    p.open_timeout_s = 30;
    p.stall_timeout_s = 30;
    return p;
}

static int check_params(const vttt_video_params *p, const vttt_logger *lg) {
    if (p->size < 1 || p->size > 8192) {
        vttt_log(lg, VTTT_LOG_ERROR, "frame size %d is out of range (1..8192)", p->size);
        return VTTT_EINVAL;
    }
    if ((p->fps_num != 0 || p->fps_den != 0) && (p->fps_num <= 0 || p->fps_den <= 0)) {
        vttt_log(lg, VTTT_LOG_ERROR, "frame rate %d/%d is not positive", p->fps_num, p->fps_den);
        return VTTT_EINVAL;
    }
    if (p->start_s < 0 || p->start_s != p->start_s || p->duration_s != p->duration_s) {
        vttt_log(lg, VTTT_LOG_ERROR, "bad time range: start %g s, duration %g s", p->start_s, p->duration_s);
        return VTTT_EINVAL;
    }
    if (!(p->open_timeout_s <= 1e9) || !(p->stall_timeout_s <= 1e9)) { /* NaN too */
        vttt_log(lg, VTTT_LOG_ERROR, "bad timeouts: open %g s, stall %g s", p->open_timeout_s, p->stall_timeout_s);
        return VTTT_EINVAL;
    }
    if ((unsigned)p->fit > VTTT_VIDEO_FIT_STRETCH || (unsigned)p->scaler > VTTT_VIDEO_SCALER_POINT ||
        (unsigned)p->hwaccel > VTTT_VIDEO_HWACCEL_CUDA) {
        vttt_log(lg, VTTT_LOG_ERROR, "bad fit, scaler or hwaccel value");
        return VTTT_EINVAL;
    }
    return 0;
}

static void set_out_rate(vttt_video *v) {
    if (v->use_fps) {
        v->info.out_fps_num = v->p.fps_num;
        v->info.out_fps_den = v->p.fps_den;
    } else {
        v->info.out_fps_num = v->info.fps_num;
        v->info.out_fps_den = v->info.fps_den;
    }
}

int vttt_video_open(vttt_video **out, const char *url, const vttt_video_params *p,
                    const vttt_logger *lg, char *err, size_t err_size) {
    *out = NULL;
    if (err && err_size) err[0] = 0;
    int ret = check_params(p, lg);
    if (ret < 0) {
        if (err && err_size) snprintf(err, err_size, "bad parameters");
        return ret;
    }
    vttt_video *v = calloc(1, sizeof *v);
    if (!v) return VTTT_ENOMEM;
    v->p = *p;
    if (lg) v->lg = *lg;
    v->last_serial = -1;
    v->range_first = AV_NOPTS_VALUE;
    v->last_fed_pts = AV_NOPTS_VALUE;
    if (!(v->url = strdup(url))) {
        free(v);
        return VTTT_ENOMEM;
    }
    ret = video_decoder_open(&v->dec, v->url, p, &v->info, &v->lg);
    if (ret < 0) {
        if (err && err_size) snprintf(err, err_size, "%s", v->dec.err);
        free(v->url);
        free(v);
        return ret;
    }
    v->use_fps = p->fps_num > 0;
    if (v->use_fps && video_fps_init(&v->fps, v->dec.tb, p->fps_num, p->fps_den) < 0) {
        if (err && err_size) snprintf(err, err_size, "the video stream has no usable time base");
        v->use_fps = 0;
        vttt_video_free(&v);
        return VTTT_EFORMAT;
    }
    if (p->duration_s > 0) {
        v->range_len = av_rescale_q((int64_t)(p->duration_s * AV_TIME_BASE + 0.5), AV_TIME_BASE_Q, v->dec.tb);
        if (v->range_len < 1) v->range_len = 1;
    }
    set_out_rate(v);
    video_scaler_init(&v->sc, p->size, p->fit, p->scaler, &v->lg);
    v->last_rgb = malloc((size_t)p->size * p->size * 3);
    if (!v->last_rgb) {
        vttt_video_free(&v);
        return VTTT_ENOMEM;
    }
    *out = v;
    return 0;
}

/* At the natural end of the input: does the video stop well before the
 * duration its container declares? Sets v->pending and v->err if so. */
static void check_truncation(vttt_video *v) {
    double declared = v->info.duration_s;
    if (declared <= 0 || v->last_fed_pts == AV_NOPTS_VALUE) return;
    double end = (v->last_fed_pts + v->last_fed_dur) * av_q2d(v->dec.tb) + v->p.start_s;
    /* A container's duration may be another stream's (longer audio). */
    double slack = v->dec.duration_precise ? 0.5 : 1.0, rel = v->dec.duration_precise ? 0.02 : 0.05;
    if (slack < declared * rel) slack = declared * rel;
    if (end < declared - slack && !v->p.lenient) {
        snprintf(v->err, sizeof v->err, "truncated: the video ends after %.3f s of the %.3f s its container declares",
                 end, declared);
        vttt_log(&v->lg, VTTT_LOG_ERROR, "%s: %s", v->url, v->err);
        v->pending = VTTT_EFORMAT;
    }
}

/* Next frame of the time range from the decoder: 0, VTTT_EOF or an error. */
static int next_input(vttt_video *v, AVFrame **out) {
    for (;;) {
        AVFrame *f = NULL;
        int ret = video_decoder_receive(&v->dec, &f, &v->info);
        if (ret == VTTT_EOF) check_truncation(v);
        if (ret < 0) {
            if (ret != VTTT_EOF) snprintf(v->err, sizeof v->err, "%s", v->dec.err);
            return ret;
        }
        if (v->p.start_s > 0 && (f->pts == AV_NOPTS_VALUE || f->pts < 0)) continue;
        if (v->range_first == AV_NOPTS_VALUE) v->range_first = f->pts;
        if (v->range_len && f->pts != AV_NOPTS_VALUE && f->pts - v->range_first >= v->range_len) return VTTT_EOF;
        v->last_fed_pts = f->pts;
        v->last_fed_dur = video_decoder_frame_duration(&v->dec, f);
        *out = f;
        return 0;
    }
}

static int deliver(vttt_video *v, const AVFrame *f, int64_t serial, uint8_t *rgb) {
    size_t n = (size_t)v->p.size * v->p.size * 3;
    if (serial >= 0 && serial == v->last_serial) {
        memcpy(rgb, v->last_rgb, n);
    } else {
        int ret = video_scaler_convert(&v->sc, f, rgb);
        if (ret < 0) {
            snprintf(v->err, sizeof v->err, "cannot convert a %dx%d frame to RGB", f->width, f->height);
            return ret;
        }
        memcpy(v->last_rgb, rgb, n);
        v->last_serial = serial;
    }
    v->info.frames_out++;
    return 0;
}

/* Every source frame, in decoding order. */
static int receive_all(vttt_video *v, uint8_t *rgb, double *t_s) {
    AVFrame *f = NULL;
    int ret = next_input(v, &f);
    if (ret < 0) return ret;
    if (t_s) *t_s = f->pts == AV_NOPTS_VALUE ? -1 : f->pts * av_q2d(v->dec.tb) + v->p.start_s;
    return deliver(v, f, -1, rgb);
}

static int receive_fps(vttt_video *v, uint8_t *rgb, double *t_s) {
    for (;;) {
        const AVFrame *f = NULL;
        int64_t serial = 0, tick = 0;
        int ret = video_fps_receive_frame(&v->fps, &f, &serial, &tick);
        if (ret == 0) {
            if (t_s) *t_s = tick * av_q2d(v->fps.out_tb) + v->p.start_s;
            return deliver(v, f, serial, rgb);
        }
        if (ret != VTTT_EAGAIN) return ret;
        AVFrame *in = NULL;
        ret = next_input(v, &in);
        if (ret == VTTT_EOF) {
            int64_t end = v->last_fed_pts == AV_NOPTS_VALUE ? AV_NOPTS_VALUE : v->last_fed_pts + v->last_fed_dur;
            video_fps_send_eof(&v->fps, end);
            continue;
        }
        if (ret < 0) return ret;
        if ((ret = video_fps_send_frame(&v->fps, in)) < 0) return ret;
    }
}

int vttt_video_receive_frame(vttt_video *v, uint8_t *rgb, double *t_s) {
    if (v->failed) return v->failed;
    int ret = v->use_fps ? receive_fps(v, rgb, t_s) : receive_all(v, rgb, t_s);
    if (ret == VTTT_EOF && v->pending) ret = v->pending;
    if (ret < 0) v->failed = ret;
    return ret;
}

const vttt_video_info *vttt_video_get_info(const vttt_video *v) { return &v->info; }

const char *vttt_video_error(const vttt_video *v) { return v->err; }

void vttt_video_free(vttt_video **pv) {
    vttt_video *v = *pv;
    if (!v) return;
    video_decoder_close(&v->dec);
    if (v->use_fps) video_fps_free(&v->fps);
    video_scaler_free(&v->sc);
    free(v->last_rgb);
    free(v->url);
    free(v);
    *pv = NULL;
}

int vttt_video_scaler_parse(const char *name, vttt_video_scaler *out) {
    static const char *names[] = {"bicubic", "bilinear", "fast_bilinear", "area", "lanczos", "neighbor"};
    for (int i = 0; i < (int)(sizeof names / sizeof names[0]); i++)
        if (name && !strcmp(name, names[i])) {
            *out = (vttt_video_scaler)i;
            return 0;
        }
    if (name && !strcmp(name, "point")) {
        *out = VTTT_VIDEO_SCALER_POINT;
        return 0;
    }
    return VTTT_EINVAL;
}

int vttt_video_fit_parse(const char *name, vttt_video_fit *out) {
    static const char *names[] = {"crop", "pad", "stretch"};
    for (int i = 0; i < 3; i++)
        if (name && !strcmp(name, names[i])) {
            *out = (vttt_video_fit)i;
            return 0;
        }
    return VTTT_EINVAL;
}

int vttt_video_rate_parse(const char *s, int *num, int *den) {
    AVRational r;
    if (!s || av_parse_video_rate(&r, s) < 0 || r.num <= 0 || r.den <= 0) return VTTT_EINVAL;
    *num = r.num;
    *den = r.den;
    return 0;
}

int vttt_video_time_parse(const char *s, double *seconds) {
    int64_t us = 0;
    if (!s || av_parse_time(&us, s, 1) < 0 || us < 0) return VTTT_EINVAL;
    *seconds = us / (double)AV_TIME_BASE;
    return 0;
}
