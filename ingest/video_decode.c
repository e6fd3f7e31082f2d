/*
 * Demuxing and decoding one video stream with libavformat/libavcodec:
 * frame threading, an optional CUDA hwaccel with software fallback, seeking
 * to the start of a time range, and the checks that turn damaged input into
 * errors instead of silently concealed frames.
 */
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include <libavutil/hwcontext.h>
#include <libavutil/parseutils.h>
#include <libavutil/pixdesc.h>

#include "video_internal.h"

void video_errstr(char *buf, size_t n, const char *what, int averr) {
    char e[AV_ERROR_MAX_STRING_SIZE] = "";
    if (!averr) {
        snprintf(buf, n, "%s", what);
        return;
    }
    av_strerror(averr, e, sizeof e);
    snprintf(buf, n, "%s: %s", what, e);
}

/* FFmpeg error -> vttt error: unreadable input is EIO, anything FFmpeg
 * cannot make sense of is EFORMAT. */
static int map_averr(int averr) {
    if (averr == AVERROR(ENOMEM)) return VTTT_ENOMEM;
    if (averr == AVERROR(EIO) || averr == AVERROR(ENOENT) || averr == AVERROR(EACCES) ||
        averr == AVERROR(EISDIR) || averr == AVERROR(ENOTDIR) || averr == AVERROR_PROTOCOL_NOT_FOUND ||
        averr == AVERROR(ETIMEDOUT) || averr == AVERROR(ECONNREFUSED) || averr == AVERROR_HTTP_NOT_FOUND)
        return VTTT_EIO;
    return VTTT_EFORMAT;
}

static int fail(video_decoder *d, int code, const char *what, int averr) {
    video_errstr(d->err, sizeof d->err, what, averr);
    vttt_log(d->lg, VTTT_LOG_ERROR, "%s: %s", d->url ? d->url : "video", d->err);
    return code;
}

/* Why avformat_open_input failed, in words a user can act on. */
static int open_failed(video_decoder *d, const char *url, int averr, const char *why) {
    struct stat st;
    char w[200];
    if (*why) return fail(d, VTTT_EIO, why, 0);
    if (d->timed_out || averr == AVERROR(ETIMEDOUT)) {
        snprintf(w, sizeof w, "timed out opening: no data within %g s (--open-timeout)", d->limit_s);
        return fail(d, VTTT_EIO, w, 0);
    }
    if (averr == AVERROR_INVALIDDATA && !strstr(url, ":") && stat(url, &st) == 0) {
        if (S_ISREG(st.st_mode) && st.st_size == 0)
            return fail(d, VTTT_EFORMAT, "cannot open: empty file (0 bytes)", 0);
        return fail(d, VTTT_EFORMAT,
                    "cannot open: not a media file FFmpeg recognises, or its header or index is damaged or "
                    "missing (as in an MP4 cut short before its moov atom)",
                    0);
    }
    return fail(d, map_averr(averr), "cannot open", averr);
}

/* get_format callback: CUDA surfaces when offered, else the software format.
 * libavcodec calls it again without CUDA when the hwaccel fails to start,
 * which is the software fallback. */
static enum AVPixelFormat pick_format(AVCodecContext *ctx, const enum AVPixelFormat *fmts) {
    for (const enum AVPixelFormat *p = fmts; *p != AV_PIX_FMT_NONE; p++)
        if (*p == AV_PIX_FMT_CUDA) return *p;
    return avcodec_default_get_format(ctx, fmts);
}

/* Attaches a CUDA device to the decoder when the build and the machine have
 * one and the codec can use it; otherwise logs why and leaves software
 * decoding in place. Never fails the open. */
static void setup_hwaccel(video_decoder *d, const AVCodec *codec) {
    int ret = av_hwdevice_ctx_create(&d->hw_device, AV_HWDEVICE_TYPE_CUDA, NULL, NULL, 0);
    if (ret < 0) {
        char e[AV_ERROR_MAX_STRING_SIZE] = "";
        av_strerror(ret, e, sizeof e);
        vttt_log(d->lg, VTTT_LOG_WARNING, "%s: hwaccel cuda: no CUDA device (%s); decoding in software", d->url, e);
        return;
    }
    for (int i = 0;; i++) {
        const AVCodecHWConfig *cfg = avcodec_get_hw_config(codec, i);
        if (!cfg) break;
        if (cfg->device_type == AV_HWDEVICE_TYPE_CUDA && (cfg->methods & AV_CODEC_HW_CONFIG_METHOD_HW_DEVICE_CTX)) {
            d->dec->hw_device_ctx = av_buffer_ref(d->hw_device);
            d->dec->get_format = pick_format;
            d->dec->thread_count = 1;   /* NVDEC pipelines by itself */
            return;
        }
    }
    vttt_log(d->lg, VTTT_LOG_WARNING, "%s: hwaccel cuda: the %s decoder cannot use CUDA; decoding in software",
             d->url, codec->name);
    av_buffer_unref(&d->hw_device);
}

static int open_decoder(video_decoder *d, const AVCodec *codec, const vttt_video_params *p) {
    AVStream *st = d->fmt->streams[d->stream];
    d->dec = avcodec_alloc_context3(codec);
    if (!d->dec) return fail(d, VTTT_ENOMEM, "cannot allocate a decoder", AVERROR(ENOMEM));
    int ret = avcodec_parameters_to_context(d->dec, st->codecpar);
    if (ret < 0) return fail(d, map_averr(ret), "bad codec parameters", ret);
    d->dec->pkt_timebase = st->time_base;
    d->dec->thread_count = p->threads > 0 ? p->threads : 0;
    d->dec->thread_type = FF_THREAD_FRAME | FF_THREAD_SLICE;
    if (p->hwaccel == VTTT_VIDEO_HWACCEL_CUDA) setup_hwaccel(d, codec);
    ret = avcodec_open2(d->dec, codec, NULL);
    if (ret < 0) return fail(d, map_averr(ret), "cannot open the video decoder", ret);
    return 0;
}

/* Declared duration of the video stream in seconds: the stream's own
 * (precise = 1; Matroska keeps it in a DURATION tag), else the container's
 * (precise = 0); < 0 when unknown or only guessed from the bitrate. */
static double declared_duration(const AVFormatContext *fmt, const AVStream *st, int *precise) {
    *precise = 1;
    if (st->duration != AV_NOPTS_VALUE && st->duration > 0) return st->duration * av_q2d(st->time_base);
    const AVDictionaryEntry *tag = av_dict_get(st->metadata, "DURATION", NULL, 0);
    int64_t us = 0;
    if (tag && av_parse_time(&us, tag->value, 1) == 0 && us > 0) return us / (double)AV_TIME_BASE;
    *precise = 0;
    if (fmt->duration != AV_NOPTS_VALUE && fmt->duration > 0 &&
        fmt->duration_estimation_method != AVFMT_DURATION_FROM_BITRATE)
        return fmt->duration / (double)AV_TIME_BASE;
    return -1;
}

static void fill_info(video_decoder *d, const AVCodec *codec, vttt_video_info *info) {
    AVStream *st = d->fmt->streams[d->stream];
    AVRational r = st->avg_frame_rate.num && st->avg_frame_rate.den ? st->avg_frame_rate : st->r_frame_rate;
    memset(info, 0, sizeof *info);
    snprintf(info->codec, sizeof info->codec, "%s", codec->name);
    info->width = st->codecpar->width;
    info->height = st->codecpar->height;
    info->fps_num = r.den ? r.num : 0;
    info->fps_den = r.den ? r.den : 1;
    info->duration_s = declared_duration(d->fmt, st, &d->duration_precise);
    info->bytes_total = d->fmt->pb ? avio_size(d->fmt->pb) : -1;
    if (info->bytes_total < 0) info->bytes_total = -1;
}

/* Seeks to start_s (backwards to a keyframe, as `ffmpeg -ss` does; frames
 * before the start are decoded and dropped by the caller) and sets the
 * timestamp offset that makes the range start time 0 in the CLI's way. */
static int seek_start(video_decoder *d, double start_s) {
    int64_t file_start = d->fmt->start_time != AV_NOPTS_VALUE ? d->fmt->start_time : 0;
    int64_t ts = file_start + (int64_t)(start_s * AV_TIME_BASE + 0.5);
    if (start_s > 0) {
        int ret = avformat_seek_file(d->fmt, -1, INT64_MIN, ts, ts, 0);
        if (ret < 0) {
            char e[AV_ERROR_MAX_STRING_SIZE] = "";
            av_strerror(ret, e, sizeof e);
            vttt_log(d->lg, VTTT_LOG_WARNING, "%s: cannot seek to %.3f s (%s); decoding from the start", d->url,
                     start_s, e);
        }
        d->after_seek = 1;
    }
    d->ts_offset = av_rescale_q(-ts, AV_TIME_BASE_Q, d->tb);
    d->start_s = start_s > 0 ? start_s : 0;
    return 0;
}

int video_decoder_open(video_decoder *d, const char *url, const vttt_video_params *p,
                       vttt_video_info *info, const vttt_logger *lg) {
    memset(d, 0, sizeof *d);
    d->fd = -1;
    d->lg = lg;
    d->lenient = p->lenient;
    d->last_pts = AV_NOPTS_VALUE;
    d->stream = -1;
    d->url = url;
    char why[160];
    int ret = video_source_open(d, url, p, why, sizeof why);
    if (ret < 0) {
        ret = open_failed(d, url, ret, why);
        video_decoder_close(d);
        return ret;
    }
    if ((ret = avformat_find_stream_info(d->fmt, NULL)) < 0) {
        ret = d->timed_out || ret == AVERROR(ETIMEDOUT) ? open_failed(d, url, ret, "")
                                                        : fail(d, map_averr(ret), "cannot read stream information", ret);
        video_decoder_close(d);
        return ret;
    }
    video_source_arm(d, 0);
    const AVCodec *codec = NULL;
    ret = av_find_best_stream(d->fmt, AVMEDIA_TYPE_VIDEO, -1, -1, &codec, 0);
    if (ret < 0 || (d->fmt->streams[ret]->disposition & AV_DISPOSITION_ATTACHED_PIC)) {
        ret = fail(d, VTTT_EFORMAT, ret == AVERROR_DECODER_NOT_FOUND ? "no decoder for the video stream"
                                                                     : "no video stream",
                   ret < 0 ? ret : AVERROR_STREAM_NOT_FOUND);
        video_decoder_close(d);
        return ret;
    }
    d->stream = ret;
    d->tb = d->fmt->streams[ret]->time_base;
    for (unsigned i = 0; i < d->fmt->nb_streams; i++)
        if ((int)i != d->stream) d->fmt->streams[i]->discard = AVDISCARD_ALL;
    d->pkt = av_packet_alloc();
    d->frame = av_frame_alloc();
    d->sw_frame = av_frame_alloc();
    if (!d->pkt || !d->frame || !d->sw_frame) ret = fail(d, VTTT_ENOMEM, "out of memory", AVERROR(ENOMEM));
    else ret = open_decoder(d, codec, p);
    if (ret == 0) {
        fill_info(d, codec, info);
        d->stall_s = p->stall_timeout_s;
        video_source_arm(d, d->stall_s);
        ret = seek_start(d, p->start_s);
        video_source_arm(d, 0);
    }
    if (ret < 0) video_decoder_close(d);
    return ret;
}

int64_t video_decoder_frame_duration(const video_decoder *d, const AVFrame *f) {
    if (f->pkt_duration > 0) return f->pkt_duration;
    AVRational fr = d->dec->framerate;
    if (fr.num > 0 && fr.den > 0) return av_rescale_q(1, av_inv_q(fr), d->tb);
    return 0;
}

/* Is this freshly decoded frame damaged in a way strict mode refuses? */
static int frame_damaged(const AVFrame *f) {
    return (f->flags & AV_FRAME_FLAG_CORRUPT) || f->decode_error_flags;
}

/* Describes damage at the current position: "<what> after <t> s: <reason>",
 * t in seconds from the start of the file. */
static int damage_at(video_decoder *d, int code, const char *what, int averr) {
    char w[200];
    if (d->last_pts != AV_NOPTS_VALUE)
        snprintf(w, sizeof w, "%s after %.3f s of video", what, d->last_pts * av_q2d(d->tb) + d->start_s);
    else
        snprintf(w, sizeof w, "%s before the first frame", what);
    return fail(d, code, w, averr);
}

static int damage(video_decoder *d, const char *what, int averr) {
    return damage_at(d, averr == AVERROR(EIO) ? VTTT_EIO : VTTT_EFORMAT, what, averr);
}

/* Downloads a hw frame into sw_frame; returns the frame to use. */
static int to_software(video_decoder *d, AVFrame **out, vttt_video_info *info) {
    if (d->frame->format != AV_PIX_FMT_CUDA) {
        *out = d->frame;
        return 0;
    }
    av_frame_unref(d->sw_frame);
    int ret = av_hwframe_transfer_data(d->sw_frame, d->frame, 0);
    if (ret < 0) return fail(d, VTTT_EIO, "cannot download a decoded frame from the GPU", ret);
    av_frame_copy_props(d->sw_frame, d->frame);
    info->hw = 1;
    *out = d->sw_frame;
    return 0;
}

/* Handles a frame the decoder just returned: 1 to deliver it, 0 to skip it
 * (tolerated damage), < 0 for an error. */
static int accept_frame(video_decoder *d, vttt_video_info *info) {
    AVFrame *f = d->frame;
    if (frame_damaged(f) && !d->lenient) {
        /* Damage before the first good frame (a stream starting mid-GOP, or
         * leading frames after a seek) is dropped rather than fatal. */
        if (info->frames_decoded == 0 || d->after_seek) return 0;
        return damage(d, "damaged frame", AVERROR_INVALIDDATA);
    }
    int64_t pts = f->best_effort_timestamp;
    if (pts == AV_NOPTS_VALUE && d->last_pts != AV_NOPTS_VALUE)
        pts = d->last_pts + video_decoder_frame_duration(d, f) - d->ts_offset;
    f->pts = pts == AV_NOPTS_VALUE ? AV_NOPTS_VALUE : pts + d->ts_offset;
    if (f->pts != AV_NOPTS_VALUE && f->pts >= 0) d->after_seek = 0;
    d->last_pts = f->pts;
    info->frames_decoded++;
    return 1;
}

/* Reads the next packet of our stream into the decoder, or starts draining
 * at the end of the input. */
static int feed(video_decoder *d, vttt_video_info *info) {
    video_source_arm(d, d->stall_s);
    int ret = av_read_frame(d->fmt, d->pkt);
    video_source_arm(d, 0);
    if (ret < 0 && ret != AVERROR_EOF && (d->timed_out || ret == AVERROR(ETIMEDOUT))) {
        char w[160];
        snprintf(w, sizeof w, "stalled: no data from the source for %g s (--stall-timeout)", d->stall_s);
        return damage_at(d, VTTT_EIO, w, 0);
    }
    if (ret == AVERROR_EOF) {
        d->demux_eof = 1;
        avcodec_send_packet(d->dec, NULL);
        return 0;
    }
    if (ret < 0) return damage(d, "cannot read the input", ret);
    if (d->fmt->pb) info->bytes_read = avio_tell(d->fmt->pb);
    if (d->pkt->stream_index != d->stream) {
        av_packet_unref(d->pkt);
        return 0;
    }
    if ((d->pkt->flags & AV_PKT_FLAG_CORRUPT) && !d->lenient) {
        av_packet_unref(d->pkt);
        return damage(d, "corrupt or truncated packet", AVERROR_INVALIDDATA);
    }
    ret = avcodec_send_packet(d->dec, d->pkt);
    av_packet_unref(d->pkt);
    if (ret < 0 && ret != AVERROR(EAGAIN)) {
        if (d->lenient || info->frames_decoded == 0 || d->after_seek) {
            char e[AV_ERROR_MAX_STRING_SIZE] = "";
            av_strerror(ret, e, sizeof e);
            vttt_log(d->lg, VTTT_LOG_WARNING, "%s: decoding error ignored (%s)", d->url, e);
            return 0;
        }
        return damage(d, "decoding failed", ret);
    }
    return 0;
}

int video_decoder_receive(video_decoder *d, AVFrame **out, vttt_video_info *info) {
    for (;;) {
        av_frame_unref(d->frame);
        int ret = avcodec_receive_frame(d->dec, d->frame);
        if (ret == 0) {
            int ok = accept_frame(d, info);
            if (ok < 0) return ok;
            if (ok) return to_software(d, out, info);
            continue;
        }
        if (ret == AVERROR_EOF) return VTTT_EOF;
        if (ret != AVERROR(EAGAIN)) {
            if (d->lenient) continue;
            return damage(d, "decoding failed", ret);
        }
        if (d->demux_eof) return VTTT_EOF;  /* cannot happen: draining ends in AVERROR_EOF */
        if ((ret = feed(d, info)) < 0) return ret;
    }
}

void video_decoder_close(video_decoder *d) {
    avcodec_free_context(&d->dec);
    video_source_close(d);
    av_packet_free(&d->pkt);
    av_frame_free(&d->frame);
    av_frame_free(&d->sw_frame);
    av_buffer_unref(&d->hw_device);
}
