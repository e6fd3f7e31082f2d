/*
 * A minimal FFmpeg muxer + encoder for RGB frames: RGB24 is converted to
 * YUV 4:2:0 with swscale and encoded with the first encoder this FFmpeg
 * build has among libx264, mpeg4 and ffv1.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <libavcodec/avcodec.h>
#include <libavformat/avformat.h>
#include <libavutil/imgutils.h>
#include <libavutil/opt.h>
#include <libswscale/swscale.h>

#include "video_writer.h"

struct infer_video_writer {
    vttt_logger log;
    AVFormatContext *fmt;
    AVCodecContext *enc;
    AVStream *st;
    AVFrame *frame;
    AVPacket *pkt;
    struct SwsContext *sws;
    int w, h;
    int64_t pts;
    int header_written;
    char codec[16];
};

static int av_fail(const vttt_logger *lg, const char *what, int averr, int err) {
    char buf[AV_ERROR_MAX_STRING_SIZE] = "";
    av_strerror(averr, buf, sizeof buf);
    vttt_log(lg, VTTT_LOG_ERROR, "video writer: %s: %s", what, buf);
    return err;
}

/* The first available encoder of the list, with its container suffix. */
static const AVCodec *pick_encoder(const char **suffix) {
    static const struct { const char *name, *suffix; } list[] = {
        {"libx264", ".mp4"}, {"mpeg4", ".mp4"}, {"ffv1", ".mkv"}};
    for (size_t i = 0; i < sizeof list / sizeof list[0]; i++) {
        const AVCodec *c = avcodec_find_encoder_by_name(list[i].name);
        if (c) {
            *suffix = list[i].suffix;
            return c;
        }
    }
    return NULL;
}

static int setup_encoder(infer_video_writer *v, const AVCodec *codec, int fps_num, int fps_den) {
    AVCodecContext *e = v->enc = avcodec_alloc_context3(codec);
    if (!e) return VTTT_ENOMEM;
    e->width = v->w, e->height = v->h;
    e->pix_fmt = AV_PIX_FMT_YUV420P;
    e->time_base = (AVRational){fps_den, fps_num};
    e->framerate = (AVRational){fps_num, fps_den};
    e->gop_size = 12;
    e->thread_count = 1;
    if (!strcmp(codec->name, "mpeg4")) e->bit_rate = 0, e->global_quality = FF_QP2LAMBDA * 3, e->flags |= AV_CODEC_FLAG_QSCALE;
    if (!strcmp(codec->name, "libx264")) { /* quality over size; x264's own statistics lines off */
        av_opt_set(e->priv_data, "crf", "18", 0);
        av_opt_set(e->priv_data, "preset", "fast", 0);
        av_opt_set(e->priv_data, "x264-params", "log=-1", 0);
    }
    if (v->fmt->oformat->flags & AVFMT_GLOBALHEADER) e->flags |= AV_CODEC_FLAG_GLOBAL_HEADER;
    int r = avcodec_open2(e, codec, NULL);
    if (r < 0) return av_fail(&v->log, "cannot open the encoder", r, VTTT_ENOTSUP);
    if (!(v->st = avformat_new_stream(v->fmt, NULL))) return VTTT_ENOMEM;
    v->st->time_base = e->time_base;
    if ((r = avcodec_parameters_from_context(v->st->codecpar, e)) < 0)
        return av_fail(&v->log, "encoder parameters", r, VTTT_ENOTSUP);
    return VTTT_OK;
}

static int setup_frames(infer_video_writer *v) {
    v->frame = av_frame_alloc();
    v->pkt = av_packet_alloc();
    if (!v->frame || !v->pkt) return VTTT_ENOMEM;
    v->frame->format = AV_PIX_FMT_YUV420P, v->frame->width = v->w, v->frame->height = v->h;
    if (av_frame_get_buffer(v->frame, 0) < 0) return VTTT_ENOMEM;
    v->sws = sws_getContext(v->w, v->h, AV_PIX_FMT_RGB24, v->w, v->h, AV_PIX_FMT_YUV420P, SWS_BICUBIC, NULL, NULL,
                            NULL);
    return v->sws ? VTTT_OK : VTTT_ENOMEM;
}

int infer_video_writer_open(infer_video_writer **out, const char *stem, int w, int h, int fps_num, int fps_den,
                            char *path, size_t path_size, const vttt_logger *lg) {
    *out = NULL;
    if (w <= 0 || h <= 0 || w % 2 || h % 2 || fps_num <= 0 || fps_den <= 0) return VTTT_EINVAL;
    const char *suffix = NULL;
    const AVCodec *codec = pick_encoder(&suffix);
    if (!codec) {
        vttt_log(lg, VTTT_LOG_ERROR, "video writer: this FFmpeg has none of the encoders libx264, mpeg4, ffv1");
        return VTTT_ENOTSUP;
    }
    if ((size_t)snprintf(path, path_size, "%s%s", stem, suffix) >= path_size) return VTTT_EINVAL;
    infer_video_writer *v = calloc(1, sizeof *v);
    if (!v) return VTTT_ENOMEM;
    if (lg) v->log = *lg;
    v->w = w, v->h = h;
    snprintf(v->codec, sizeof v->codec, "%s", codec->name);
    int r = avformat_alloc_output_context2(&v->fmt, NULL, NULL, path), err = VTTT_OK;
    if (r < 0 || !v->fmt) err = av_fail(lg, path, r, VTTT_EIO);
    if (!err) err = setup_encoder(v, codec, fps_num, fps_den);
    if (!err) err = setup_frames(v);
    if (!err && (r = avio_open(&v->fmt->pb, path, AVIO_FLAG_WRITE)) < 0) err = av_fail(lg, path, r, VTTT_EIO);
    if (!err && (r = avformat_write_header(v->fmt, NULL)) < 0) err = av_fail(lg, path, r, VTTT_EIO);
    if (err) {
        infer_video_writer_close(&v);
        return err;
    }
    v->header_written = 1;
    *out = v;
    return VTTT_OK;
}

/* Sends frame f (NULL: flush) and writes the packets that come out. */
static int encode(infer_video_writer *v, AVFrame *f) {
    int r = avcodec_send_frame(v->enc, f);
    if (r < 0) return av_fail(&v->log, "encoding", r, VTTT_EIO);
    while ((r = avcodec_receive_packet(v->enc, v->pkt)) >= 0) {
        av_packet_rescale_ts(v->pkt, v->enc->time_base, v->st->time_base);
        v->pkt->stream_index = v->st->index;
        r = av_interleaved_write_frame(v->fmt, v->pkt);
        if (r < 0) return av_fail(&v->log, "writing", r, VTTT_EIO);
    }
    return r == AVERROR(EAGAIN) || r == AVERROR_EOF ? VTTT_OK : av_fail(&v->log, "encoding", r, VTTT_EIO);
}

int infer_video_writer_write(infer_video_writer *v, const uint8_t *rgb) {
    if (av_frame_make_writable(v->frame) < 0) return VTTT_ENOMEM;
    const uint8_t *src[1] = {rgb};
    int stride[1] = {3 * v->w};
    sws_scale(v->sws, src, stride, 0, v->h, v->frame->data, v->frame->linesize);
    v->frame->pts = v->pts++;
    return encode(v, v->frame);
}

int infer_video_writer_close(infer_video_writer **vp) {
    if (!vp || !*vp) return VTTT_OK;
    infer_video_writer *v = *vp;
    int err = VTTT_OK;
    if (v->header_written) {
        err = encode(v, NULL);
        int r = av_write_trailer(v->fmt);
        if (!err && r < 0) err = av_fail(&v->log, "writing the trailer", r, VTTT_EIO);
    }
    if (v->fmt && v->fmt->pb) avio_closep(&v->fmt->pb);
    avformat_free_context(v->fmt);
    avcodec_free_context(&v->enc);
    av_frame_free(&v->frame);
    av_packet_free(&v->pkt);
    sws_freeContext(v->sws);
    free(v);
    *vp = NULL;
    return err;
}

const char *infer_video_writer_codec(const infer_video_writer *v) { return v->codec; }
