/*
 * Crop/pad/stretch and swscale to S×S RGB24, set up the way the ffmpeg
 * command line's crop and scale filters set up the same work, so that the
 * pixels agree with `ffmpeg -vf crop=...,scale=S:S -pix_fmt rgb24`:
 *  - crop: a centered min(w,h) square, its size and offsets rounded down to
 *    the chroma subsampling as vf_crop does (offset (w - cw) / 2, truncated);
 *  - the swscale context made as vf_scale makes it (MPEG-2 vertical chroma
 *    position for yuv420p input) with the colour matrix and range of each
 *    frame applied as vf_scale's default in_color_matrix=auto does;
 *  - pad: scaled to fit as scale's force_original_aspect_ratio=decrease,
 *    centered on black as pad=S:S:(ow-iw)/2:(oh-ih)/2 in RGB.
 */
#include <stdlib.h>
#include <string.h>

#include <libavutil/imgutils.h>
#include <libavutil/opt.h>
#include <libavutil/pixdesc.h>
#include <libswscale/swscale.h>

#include "video_internal.h"

static int sws_flags_of(vttt_video_scaler s) {
    switch (s) {
    case VTTT_VIDEO_SCALER_BILINEAR: return SWS_BILINEAR;
    case VTTT_VIDEO_SCALER_FAST_BILINEAR: return SWS_FAST_BILINEAR;
    case VTTT_VIDEO_SCALER_AREA: return SWS_AREA;
    case VTTT_VIDEO_SCALER_LANCZOS: return SWS_LANCZOS;
    case VTTT_VIDEO_SCALER_POINT: return SWS_POINT;
    default: return SWS_BICUBIC;
    }
}

void video_scaler_init(video_scaler *s, int size, vttt_video_fit fit, vttt_video_scaler scaler,
                       const vttt_logger *lg) {
    memset(s, 0, sizeof *s);
    s->size = size;
    s->fit = fit;
    s->sws_flags = sws_flags_of(scaler);
    s->in_fmt = AV_PIX_FMT_NONE;
    s->lg = lg;
}

/* Source and destination rectangles for a w×h frame of format fmt. */
static void geometry(video_scaler *s, int w, int h, const AVPixFmtDescriptor *d) {
    int S = s->size, hs = (1 << d->log2_chroma_w) - 1, vs = (1 << d->log2_chroma_h) - 1;
    s->crop_x = s->crop_y = 0;
    s->crop_w = w;
    s->crop_h = h;
    s->dst_x = s->dst_y = 0;
    s->dst_w = s->dst_h = S;
    if (s->fit == VTTT_VIDEO_FIT_CROP) {
        int c = w < h ? w : h;
        s->crop_w = c & ~hs;
        s->crop_h = c & ~vs;
        s->crop_x = ((w - s->crop_w) / 2) & ~hs;
        s->crop_y = ((h - s->crop_h) / 2) & ~vs;
    } else if (s->fit == VTTT_VIDEO_FIT_PAD) {
        int64_t tw = av_rescale(S, w, h), th = av_rescale(S, h, w);
        s->dst_w = (int)(tw < S ? tw : S);
        s->dst_h = (int)(th < S ? th : S);
        if (s->dst_w < 1) s->dst_w = 1;
        if (s->dst_h < 1) s->dst_h = 1;
        s->dst_x = (S - s->dst_w) / 2;
        s->dst_y = (S - s->dst_h) / 2;
    }
}

/* Makes the swscale context for the current geometry, as vf_scale does. */
static int make_context(video_scaler *s, int fmt) {
    sws_freeContext(s->sws);
    s->sws = sws_alloc_context();
    if (!s->sws) return VTTT_ENOMEM;
    av_opt_set_int(s->sws, "srcw", s->crop_w, 0);
    av_opt_set_int(s->sws, "srch", s->crop_h, 0);
    av_opt_set_int(s->sws, "src_format", fmt, 0);
    av_opt_set_int(s->sws, "dstw", s->dst_w, 0);
    av_opt_set_int(s->sws, "dsth", s->dst_h, 0);
    av_opt_set_int(s->sws, "dst_format", AV_PIX_FMT_RGB24, 0);
    av_opt_set_int(s->sws, "sws_flags", s->sws_flags, 0);
    av_opt_set_int(s->sws, "src_h_chr_pos", -513, 0);
    av_opt_set_int(s->sws, "src_v_chr_pos", fmt == AV_PIX_FMT_YUV420P ? 128 : -513, 0);
    av_opt_set_int(s->sws, "dst_h_chr_pos", -513, 0);
    av_opt_set_int(s->sws, "dst_v_chr_pos", -513, 0);
    if (sws_init_context(s->sws, NULL, NULL) < 0) {
        sws_freeContext(s->sws);
        s->sws = NULL;
        vttt_log(s->lg, VTTT_LOG_ERROR, "swscale cannot convert %s %dx%d to rgb24 %dx%d",
                 av_get_pix_fmt_name(fmt), s->crop_w, s->crop_h, s->dst_w, s->dst_h);
        return VTTT_EFORMAT;
    }
    return 0;
}

/* The frame's colour matrix and range, as vf_scale applies them per frame:
 * the matrix named by the frame (BT.601 when unknown) both ways, the input
 * range from the frame when it says. */
static void apply_colorspace(video_scaler *s, const AVFrame *f) {
    int *inv, *tab, in_full, out_full, bri, con, sat;
    if (sws_getColorspaceDetails(s->sws, &inv, &in_full, &tab, &out_full, &bri, &con, &sat) < 0) return;
    int cs = f->colorspace;
    if (cs < 1 || cs > 10 || cs == 8) cs = AVCOL_SPC_BT470BG;
    const int *coef = sws_getCoefficients(cs);
    if (f->color_range != AVCOL_RANGE_UNSPECIFIED) in_full = f->color_range == AVCOL_RANGE_JPEG;
    sws_setColorspaceDetails(s->sws, coef, in_full, coef, out_full, bri, con, sat);
}

static int prepare(video_scaler *s, const AVFrame *f) {
    if (s->sws && f->width == s->in_w && f->height == s->in_h && f->format == s->in_fmt &&
        (int)f->colorspace == s->colorspace && (int)f->color_range == s->color_range)
        return 0;
    const AVPixFmtDescriptor *d = av_pix_fmt_desc_get(f->format);
    if (!d || (d->flags & AV_PIX_FMT_FLAG_HWACCEL) || f->width <= 0 || f->height <= 0) {
        vttt_log(s->lg, VTTT_LOG_ERROR, "cannot scale a %dx%d frame of format %s", f->width, f->height,
                 d ? d->name : "?");
        return VTTT_EFORMAT;
    }
    int geometry_changed = f->width != s->in_w || f->height != s->in_h || f->format != s->in_fmt || !s->sws;
    if (geometry_changed) {
        geometry(s, f->width, f->height, d);
        int ret = make_context(s, f->format);
        if (ret < 0) return ret;
        free(s->tmp);
        s->tmp = NULL;
        if (s->fit == VTTT_VIDEO_FIT_PAD && !(s->tmp = malloc((size_t)s->dst_w * s->dst_h * 3)))
            return VTTT_ENOMEM;
        s->in_w = f->width;
        s->in_h = f->height;
        s->in_fmt = f->format;
    }
    apply_colorspace(s, f);
    s->colorspace = f->colorspace;
    s->color_range = f->color_range;
    return 0;
}

/* Source plane pointers of the crop rectangle, as vf_crop offsets them. */
static void crop_planes(const video_scaler *s, const AVFrame *f, const uint8_t *src[4]) {
    const AVPixFmtDescriptor *d = av_pix_fmt_desc_get(f->format);
    int step[4];
    av_image_fill_max_pixsteps(step, NULL, d);
    int bitstream = d->flags & AV_PIX_FMT_FLAG_BITSTREAM, pal = d->flags & AV_PIX_FMT_FLAG_PAL;
    for (int i = 0; i < 4; i++) {
        src[i] = f->data[i];
        if (!f->data[i] || (pal && i == 1)) continue;
        int chroma = (i == 1 || i == 2) && !pal;
        int y = chroma ? s->crop_y >> d->log2_chroma_h : s->crop_y;
        int x = chroma ? (s->crop_x * step[i]) >> d->log2_chroma_w : s->crop_x * step[i];
        if (bitstream) x = s->crop_x >> 3;
        src[i] += (ptrdiff_t)y * f->linesize[i] + x;
    }
}

int video_scaler_convert(video_scaler *s, const AVFrame *f, uint8_t *rgb) {
    int ret = prepare(s, f);
    if (ret < 0) return ret;
    const uint8_t *src[4];
    crop_planes(s, f, src);
    int S = s->size;
    if (s->fit != VTTT_VIDEO_FIT_PAD) {
        uint8_t *dst[4] = {rgb, NULL, NULL, NULL};
        int dst_stride[4] = {3 * S, 0, 0, 0};
        sws_scale(s->sws, src, f->linesize, 0, s->crop_h, dst, dst_stride);
        return 0;
    }
    uint8_t *dst[4] = {s->tmp, NULL, NULL, NULL};
    int dst_stride[4] = {3 * s->dst_w, 0, 0, 0};
    sws_scale(s->sws, src, f->linesize, 0, s->crop_h, dst, dst_stride);
    memset(rgb, 0, (size_t)S * S * 3);
    for (int y = 0; y < s->dst_h; y++)
        memcpy(rgb + ((size_t)(s->dst_y + y) * S + s->dst_x) * 3, s->tmp + (size_t)y * s->dst_w * 3,
               (size_t)s->dst_w * 3);
    return 0;
}

void video_scaler_free(video_scaler *s) {
    sws_freeContext(s->sws);
    s->sws = NULL;
    free(s->tmp);
    s->tmp = NULL;
}
