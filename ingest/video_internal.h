/*
 * ingest/video_internal.h — the pieces behind vttt_video (internal to
 * ingest/): the demuxer+decoder, the fps resampler and the scaler. Each is a
 * plain struct owned by vttt_video; FFmpeg types appear only here.
 */
#ifndef VTTT_VIDEO_INTERNAL_H
#define VTTT_VIDEO_INTERNAL_H

#include <libavcodec/avcodec.h>
#include <libavformat/avformat.h>
#include <libavutil/frame.h>

#include "ingest.h"

/* ---- demux + decode (video_decode.c) ------------------------------------ */

typedef struct video_decoder {
    AVFormatContext *fmt;
    AVCodecContext *dec;
    AVPacket *pkt;
    AVFrame *frame;         /* last decoded frame (software or hw) */
    AVFrame *sw_frame;      /* hw frames are downloaded here */
    AVBufferRef *hw_device; /* CUDA device when hwaccel was asked for and is present */
    int stream;             /* index of the video stream */
    AVRational tb;          /* the stream's time base */
    int64_t ts_offset;      /* added to every pts (stream tb): -(file start + start_s), as the CLI */
    int demux_eof;          /* no more packets: the decoder is being drained */
    int dec_eof;            /* the decoder returned AVERROR_EOF */
    int after_seek;         /* frames before the range start after a seek: damage there is tolerated */
    int lenient;
    int duration_precise;   /* info->duration_s is the stream's own, not the container's */
    double start_s;         /* the range start: pts 0 is this many seconds into the file */
    int64_t last_pts;       /* pts (offset) of the last frame returned, AV_NOPTS_VALUE before */
    const vttt_logger *lg;
    const char *url;        /* for messages; owned by vttt_video */
    char err[512];          /* the reason of the last error */
    /* deadlines (video_source.c) */
    int64_t deadline_us;    /* av_gettime_relative() past which waiting for the source ends; INT64_MAX: none */
    double limit_s;         /* the limit that deadline enforces, s, for messages */
    double stall_s;         /* each read of the demuxer must end within this, s (<= 0: no limit) */
    int timed_out;          /* a wait ended at the deadline */
    int fd;                 /* a FIFO opened here (-1: none) */
    AVIOContext *custom_pb; /* its AVIOContext (owned) */
} video_decoder;

/* Allocates d->fmt with the deadline's interrupt callback, arms the open
 * deadline (p->open_timeout_s) and opens url: a FIFO through a
 * non-blocking AVIOContext, a character device or socket refused (why
 * says so; AVERROR(EINVAL)), anything else by FFmpeg (rw_timeout set from
 * p->stall_timeout_s). Returns avformat_open_input's code; d->timed_out
 * when the deadline ended a wait. video_source_close frees in every case. */
int video_source_open(video_decoder *d, const char *url, const vttt_video_params *p, char *why, size_t why_n);
/* Waits for the source end seconds from now (<= 0: no deadline). */
void video_source_arm(video_decoder *d, double seconds);
void video_source_close(video_decoder *d);

/* Opens url, finds the best video stream, opens its decoder (frame threads,
 * optional CUDA hwaccel), seeks to p->start_s and fills info. Returns 0 or a
 * negative code with the reason in d->err. On failure d is closed. */
int video_decoder_open(video_decoder *d, const char *url, const vttt_video_params *p,
                       vttt_video_info *info, const vttt_logger *lg);

/* Receive side of demux+decode: *out is the next frame in a software pixel
 * format with pts = best-effort timestamp + ts_offset (stream tb), valid
 * until the next call. Returns 0, VTTT_EOF, or a negative error (reason in
 * d->err): damaged input is VTTT_EFORMAT, a failed read VTTT_EIO. */
int video_decoder_receive(video_decoder *d, AVFrame **out, vttt_video_info *info);

/* Duration of frame f in stream tb as the ffmpeg CLI estimates it (packet
 * duration, else the codec frame rate), 0 if unknown. */
int64_t video_decoder_frame_duration(const video_decoder *d, const AVFrame *f);

void video_decoder_close(video_decoder *d);

/* ---- fps resampling (video_fps.c) ----------------------------------------
 * FFmpeg's fps filter as a send/receive pair: input pts are rounded to the
 * output time base 1/R (nearest), the first frame fixes the start, and each
 * output tick takes the newest frame at or before it; frames are dropped or
 * repeated. The resampler holds at most two frames (references). */

typedef struct video_fps {
    AVRational in_tb, out_tb;
    AVFrame *frames[2];
    int64_t serial[2];      /* input frame numbers of frames[] */
    int count;
    int64_t next_pts;       /* output tick to fill next, AV_NOPTS_VALUE before the first frame */
    int64_t frames_in;
    int eof;
    int64_t eof_pts;        /* out tb */
} video_fps;

int video_fps_init(video_fps *f, AVRational in_tb, int fps_num, int fps_den);
/* Send side: takes a new reference to frame (its pts in in_tb). VTTT_EAGAIN
 * when two frames are buffered and output must be received first; VTTT_EOF
 * after send_eof. */
int video_fps_send_frame(video_fps *f, const AVFrame *frame);
/* Marks the end of input at eof_pts (in_tb): the time the last frame ends. */
void video_fps_send_eof(video_fps *f, int64_t eof_pts);
/* Receive side: *out is the frame for the next output tick (valid until the
 * next call, not owned), *serial its input number (equal serials: a repeated
 * frame), *out_pts the tick. VTTT_EAGAIN: send more input; VTTT_EOF: done. */
int video_fps_receive_frame(video_fps *f, const AVFrame **out, int64_t *serial, int64_t *out_pts);
void video_fps_free(video_fps *f);

/* ---- crop/pad/stretch + swscale (video_scale.c) ------------------------- */

typedef struct video_scaler {
    struct SwsContext *sws;
    int size;                   /* S */
    vttt_video_fit fit;
    int sws_flags;
    /* the geometry the context was made for */
    int in_w, in_h, in_fmt, colorspace, color_range;
    int crop_x, crop_y, crop_w, crop_h;   /* source rectangle */
    int dst_x, dst_y, dst_w, dst_h;       /* destination rectangle in S×S */
    uint8_t *tmp;               /* (dst_h, dst_w, 3) for pad mode */
    const vttt_logger *lg;
} video_scaler;

void video_scaler_init(video_scaler *s, int size, vttt_video_fit fit, vttt_video_scaler scaler,
                       const vttt_logger *lg);
/* Converts frame to rgb (S, S, 3), (re)making the swscale context when the
 * frame's size, format or colour description changes. VTTT_ENOMEM or
 * VTTT_EFORMAT (a frame swscale cannot convert). */
int video_scaler_convert(video_scaler *s, const AVFrame *frame, uint8_t *rgb);
void video_scaler_free(video_scaler *s);

/* ---- the manifest (video_manifest.c) -------------------------------------- */

/* What happened to one source in a job. */
typedef struct ingest_result {
    const char *source;
    char shard[256];        /* file name in the out dir, "" when no shard was kept */
    int ok, partial;
    char error[600];
    int64_t frames;
    double duration_s;      /* seconds of output */
    int fps_num, fps_den;   /* rate of the stored frames */
    vttt_video_info info;   /* the source, when it could be opened */
    int have_info;
    double seconds;         /* wall time spent */
} ingest_result;

/* One line of an earlier run's manifest. */
typedef struct manifest_record {
    char *source, *shard, *params;
    int ok;
    int64_t frames;
    size_t seq;             /* order of reading */
} manifest_record;

typedef struct manifest_index {
    manifest_record *r;     /* sorted by (source, seq) */
    size_t n, cap;
} manifest_index;

/* "size=64 fps=30/1 fit=crop ...": the parameters a record must match for
 * its source to count as done. */
void manifest_params_key(const vttt_video_params *p, char *out, size_t n);
/* The manifest line (no newline) for a result; malloc'd, NULL on ENOMEM. */
char *manifest_line(const ingest_result *r, const vttt_video_params *p);
/* Reads every manifest*.jsonl in dir (a missing dir is an empty index). */
int manifest_index_load(manifest_index *ix, const char *dir, const vttt_logger *lg);
const manifest_record *manifest_index_find(const manifest_index *ix, const char *source, const char *params);
void manifest_index_free(manifest_index *ix);

/* Sets buf to "<what>: <FFmpeg's words for averr>" (just what if averr is 0). */
void video_errstr(char *buf, size_t n, const char *what, int averr);

#endif
