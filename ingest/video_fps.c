/*
 * Constant-rate resampling by presentation timestamp, the algorithm of
 * FFmpeg's fps filter (libavfilter/vf_fps.c, default options: round=near,
 * eof_action=round, no start_time), written as a send/receive pair so that
 * the reader can skip scaling frames that are dropped and reuse the scaled
 * image of a repeated one.
 *
 * Input pts are rounded to the output time base 1/R. The first frame's
 * rounded pts is the first output tick. For each tick the newest buffered
 * frame whose pts is at or before the tick is output; a frame is dropped when
 * the next one is already due, and repeated while the next one is not. At
 * the end the last frame is repeated up to (not including) the rounded end
 * time of the input.
 */
#include <string.h>

#include "video_internal.h"

int video_fps_init(video_fps *f, AVRational in_tb, int fps_num, int fps_den) {
    memset(f, 0, sizeof *f);
    if (fps_num <= 0 || fps_den <= 0 || in_tb.num <= 0 || in_tb.den <= 0) return VTTT_EINVAL;
    f->in_tb = in_tb;
    f->out_tb = (AVRational){fps_den, fps_num};
    f->next_pts = AV_NOPTS_VALUE;
    f->eof_pts = AV_NOPTS_VALUE;
    return 0;
}

static int64_t to_out(const video_fps *f, int64_t pts) {
    return av_rescale_q_rnd(pts, f->in_tb, f->out_tb, AV_ROUND_NEAR_INF | AV_ROUND_PASS_MINMAX);
}

int video_fps_send_frame(video_fps *f, const AVFrame *frame) {
    if (f->eof) return VTTT_EOF;
    if (f->count == 2) return VTTT_EAGAIN;
    AVFrame *c = av_frame_clone(frame);
    if (!c) return VTTT_ENOMEM;
    c->pts = to_out(f, frame->pts);
    f->frames[f->count] = c;
    f->serial[f->count] = f->frames_in++;
    f->count++;
    return 0;
}

void video_fps_send_eof(video_fps *f, int64_t eof_pts) {
    f->eof = 1;
    f->eof_pts = to_out(f, eof_pts);
}

static void shift(video_fps *f) {
    av_frame_free(&f->frames[0]);
    f->frames[0] = f->frames[1];
    f->serial[0] = f->serial[1];
    f->frames[1] = NULL;
    f->count--;
}

int video_fps_receive_frame(video_fps *f, const AVFrame **out, int64_t *serial, int64_t *out_pts) {
    for (;;) {
        if (f->count == 0) return f->eof ? VTTT_EOF : VTTT_EAGAIN;
        if (f->count < 2 && !f->eof) return VTTT_EAGAIN;
        if (f->next_pts == AV_NOPTS_VALUE) {
            if (f->frames[0]->pts == AV_NOPTS_VALUE) {  /* the filter discards these too */
                shift(f);
                continue;
            }
            f->next_pts = f->frames[0]->pts;
        }
        if ((f->count == 2 && f->frames[1]->pts <= f->next_pts) || (f->eof && f->eof_pts <= f->next_pts)) {
            shift(f);
            continue;
        }
        *out = f->frames[0];
        *serial = f->serial[0];
        *out_pts = f->next_pts++;
        return 0;
    }
}

void video_fps_free(video_fps *f) {
    while (f->count) shift(f);
}
