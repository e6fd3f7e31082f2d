/*
 * infer/video_writer.h — internal: writing RGB frames to a video file with
 * FFmpeg's encoders (libx264 where Debian's FFmpeg has it, else MPEG-4
 * part 2, else FFV1 in Matroska), for `vttt predict`'s side-by-side video.
 */
#ifndef VTTT_VIDEO_WRITER_H
#define VTTT_VIDEO_WRITER_H

#include <stddef.h>
#include <stdint.h>

#include "ttt.h"

typedef struct infer_video_writer infer_video_writer;

/* Opens stem + ".mp4" (libx264 or mpeg4) or stem + ".mkv" (ffv1) for
 * frames of w x h pixels (even) at fps_num/fps_den; the chosen path goes
 * to path (path_size bytes). VTTT_ENOTSUP when no encoder is available,
 * VTTT_EIO when the file cannot be written. */
int infer_video_writer_open(infer_video_writer **out, const char *stem, int w, int h, int fps_num, int fps_den,
                            char *path, size_t path_size, const vttt_logger *lg);
/* Encodes rgb (h, w, 3). */
int infer_video_writer_write(infer_video_writer *v, const uint8_t *rgb);
/* Flushes the encoder, writes the trailer and frees; returns the first
 * error of the flush (0 when v is NULL). */
int infer_video_writer_close(infer_video_writer **v);
/* Name of the encoder in use ("libx264", "mpeg4", "ffv1"). */
const char *infer_video_writer_codec(const infer_video_writer *v);

#endif
