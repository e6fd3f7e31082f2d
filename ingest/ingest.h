/*
 * ingest/ingest.h — the public interface of vttt's ingestion stage: video
 * files into frame shards, and text into token shards.
 *
 * Conventions as in ttt/ttt.h: functions return 0 (VTTT_OK) or a negative
 * VTTT_E* code and log through the caller's vttt_logger (NULL: stderr);
 * nothing here aborts or exits on bad input. Sections below are owned by
 * different parts of ingest/ and delimited by "==== ... ====" banners.
 */
#ifndef VTTT_INGEST_H
#define VTTT_INGEST_H

#include <stddef.h>
#include <stdint.h>

#include "ttt.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ==== video ingestion: begin (video_*.c, frame_shard.c, ingest_job.c) ==== */

/* ---- decoding a video into S×S RGB frames -------------------------------
 *
 * A vttt_video opens anything FFmpeg's protocols read (a path, "file:...",
 * "pipe:N", a URL), picks the best video stream, decodes it with FFmpeg's
 * frame threading and delivers RGB24 frames of S×S pixels, one at a time
 * (memory does not grow with the video's length). Frames are either every
 * decoded source frame or a constant rate R chosen by presentation
 * timestamp exactly as FFmpeg's fps filter chooses them (frames dropped or
 * repeated; variable frame rate sources included). The geometry matches the
 * ffmpeg command line: center crop as `crop=min(iw,ih):min(iw,ih)`, then
 * `scale=S:S` with the same swscale algorithm and colour matrix.
 *
 * No source blocks forever: opening must end within open_timeout_s and each
 * read within stall_timeout_s (an interrupt callback; rw_timeout for the
 * network protocols), else VTTT_EIO "timed out opening" / "stalled". A
 * FIFO is read without blocking in open(2) (O_NONBLOCK, a poll()ing
 * AVIOContext), so a FIFO nobody writes to times out; character devices
 * and sockets are refused ("not a regular file or stream"). "pipe:N" is
 * read by FFmpeg with blocking reads (no stall limit); DNS lookups cannot
 * be interrupted. */

typedef enum {
    VTTT_VIDEO_FIT_CROP = 0,     /* center crop to a square, then scale (default) */
    VTTT_VIDEO_FIT_PAD = 1,      /* scale to fit inside S×S, pad with black */
    VTTT_VIDEO_FIT_STRETCH = 2,  /* scale to S×S ignoring the aspect ratio */
} vttt_video_fit;

typedef enum {
    VTTT_VIDEO_SCALER_BICUBIC = 0,  /* the ffmpeg command line's default */
    VTTT_VIDEO_SCALER_BILINEAR = 1,
    VTTT_VIDEO_SCALER_FAST_BILINEAR = 2,
    VTTT_VIDEO_SCALER_AREA = 3,
    VTTT_VIDEO_SCALER_LANCZOS = 4,
    VTTT_VIDEO_SCALER_POINT = 5,    /* "neighbor" (or "point") */
} vttt_video_scaler;

typedef enum {
    VTTT_VIDEO_HWACCEL_NONE = 0,  /* software decoding */
    VTTT_VIDEO_HWACCEL_CUDA = 1,  /* NVDEC through FFmpeg's hwaccel; falls back to software with a warning */
} vttt_video_hwaccel;

typedef struct vttt_video_params {
    int size;                   /* S: output frames are (S, S, 3) uint8 RGB; 64 */
    int fps_num, fps_den;       /* output rate R = num/den frames/s; 0/0: every source frame */
    vttt_video_fit fit;         /* aspect handling; crop */
    vttt_video_scaler scaler;   /* swscale algorithm; bicubic */
    double start_s;             /* first instant taken, s from the start of the file; 0 */
    double duration_s;          /* length taken, s; <= 0: to the end */
    int threads;                /* decoder threads; 0: FFmpeg's choice (one per core) */
    vttt_video_hwaccel hwaccel; /* none */
    int lenient;                /* 0: any decode error or concealed damage ends the stream with an
                                 * error; 1: damage the decoder conceals is only logged */
    double open_timeout_s;      /* opening and probing the source must end within this, s; 30; <= 0: no limit */
    double stall_timeout_s;     /* each read must bring data within this, s; 30; <= 0: no limit */
} vttt_video_params;
vttt_video_params vttt_video_default_params(void);

/* What is known about the source; filled by vttt_video_open, counters
 * updated as frames are received. */
typedef struct vttt_video_info {
    char codec[32];             /* decoder name, e.g. "h264" */
    int width, height;          /* source frame size, pixels */
    int fps_num, fps_den;       /* source average rate, frames/s (0/1: unknown) */
    int out_fps_num, out_fps_den; /* rate of the delivered frames: R, or the source rate */
    double duration_s;          /* declared duration of the video stream, s (< 0: unknown) */
    int hw;                     /* 1 once frames are decoded on the GPU */
    int64_t frames_decoded;     /* source frames decoded so far */
    int64_t frames_out;         /* frames delivered so far */
    int64_t bytes_read;         /* input bytes consumed so far (progress) */
    int64_t bytes_total;        /* input size in bytes, -1 unknown */
} vttt_video_info;

typedef struct vttt_video vttt_video;

/* Opens `url` and prepares the decoder. VTTT_EIO when it cannot be opened or
 * read, VTTT_EFORMAT when it is not a media file or has no decodable video
 * stream, VTTT_EINVAL for bad params. On failure *out is NULL, the reason
 * is logged and also written to err (err_size bytes; may be NULL). */
int vttt_video_open(vttt_video **out, const char *url, const vttt_video_params *p,
                    const vttt_logger *lg, char *err, size_t err_size);

/* Receive side of the stream: writes the next frame to rgb (S, S, 3) and its
 * time in seconds since the start of the file to *t_s (may be NULL).
 * Returns 0 for a frame, VTTT_EOF at the end of the stream (or of the time
 * range), or a negative error: VTTT_EFORMAT for damaged data (corrupt or
 * truncated input), VTTT_EIO for a read error, VTTT_ENOMEM. After an error
 * the stream is over; frames delivered before it stay valid and
 * vttt_video_error() says what happened. */
int vttt_video_receive_frame(vttt_video *v, uint8_t *rgb, double *t_s);

const vttt_video_info *vttt_video_get_info(const vttt_video *v);
/* The last error in words ("" when none), naming the time of the damage. */
const char *vttt_video_error(const vttt_video *v);
void vttt_video_free(vttt_video **v);

/* Parses a scaler or fit name: swscale's names as the ffmpeg command line
 * spells them ("bicubic", "bilinear", "fast_bilinear", "area", "lanczos",
 * "neighbor"); "crop", "pad", "stretch". VTTT_EINVAL for an unknown name. */
int vttt_video_scaler_parse(const char *name, vttt_video_scaler *out);
int vttt_video_fit_parse(const char *name, vttt_video_fit *out);
/* Parses a rate: "30", "29.97", "30000/1001", "ntsc", "pal", "film". */
int vttt_video_rate_parse(const char *s, int *num, int *den);
/* Parses a time: seconds ("12.5") or "[HH:]MM:SS[.frac]"; not negative. */
int vttt_video_time_parse(const char *s, double *seconds);

/* ---- frame shards (.vfr) --------------------------------------------------
 *
 * Layout, all integers little-endian:
 *   bytes 0..7    magic "VTTTVFR\0"
 *   u32 @8        version (1)
 *   u32 @12       header bytes (4096): offset of frame 0
 *   u32 @16,20,24 width, height, channels (3: RGB)
 *   u32 @28,32    fps numerator, denominator (frames/s of the frames stored)
 *   u32 @36       flags (VTTT_FRAME_SHARD_PARTIAL)
 *   u64 @40       frame count
 *   u64 @48       source id (FNV-1a 64 of the source string)
 *   u32 @56       source string length in bytes (< 4096 - 64)
 *   u32 @60       reserved (0)
 *   @64           source string (the path or URL as given), NUL-terminated
 *   @4096         frame_count frames of (height, width, channels) uint8,
 *                 row-major
 * The writer writes to "<path>.tmp", puts the frame count in the header
 * last, fsyncs and renames: a shard under its final name is complete, and a
 * reader rejects a file whose size disagrees with its header. */

#define VTTT_FRAME_SHARD_MAGIC "VTTTVFR"
#define VTTT_FRAME_SHARD_VERSION 1
#define VTTT_FRAME_SHARD_HEADER_BYTES 4096
#define VTTT_FRAME_SHARD_SOURCE_MAX (VTTT_FRAME_SHARD_HEADER_BYTES - 64 - 1)
enum { VTTT_FRAME_SHARD_PARTIAL = 1 };   /* frames stop where the source was damaged */

typedef struct vttt_frame_shard_info {
    int width, height, channels;  /* pixels, pixels, bytes per pixel */
    int fps_num, fps_den;         /* frames/s */
    uint32_t flags;               /* VTTT_FRAME_SHARD_* */
    int64_t frame_count;
    uint64_t source_id;           /* vttt_frame_shard_source_id(source) */
    char source[VTTT_FRAME_SHARD_SOURCE_MAX + 1];
} vttt_frame_shard_info;

/* FNV-1a 64 of a source string: the id stored in shards and used in names. */
uint64_t vttt_frame_shard_source_id(const char *source);
size_t vttt_frame_shard_frame_bytes(const vttt_frame_shard_info *info);

typedef struct vttt_frame_shard_writer vttt_frame_shard_writer;
/* Creates "<path>.tmp" and writes a header with no frames. info->frame_count
 * is ignored; source_id is computed from source when it is 0. */
int vttt_frame_shard_writer_open(vttt_frame_shard_writer **out, const char *path,
                                 const vttt_frame_shard_info *info, const vttt_logger *lg);
/* Appends n frames (n, height, width, channels). VTTT_EIO on a failed write
 * (the writer is then only good for _abort). */
int vttt_frame_shard_writer_write(vttt_frame_shard_writer *w, const uint8_t *frames, int64_t n);
int64_t vttt_frame_shard_writer_count(const vttt_frame_shard_writer *w);
/* Flushes, writes the frame count and flags into the header, fsyncs, renames
 * to the final path and frees the writer (also on failure, when the
 * temporary file is removed). */
int vttt_frame_shard_writer_finish(vttt_frame_shard_writer **w, uint32_t flags);
/* Removes the temporary file and frees the writer. */
void vttt_frame_shard_writer_abort(vttt_frame_shard_writer **w);

typedef struct vttt_frame_shard vttt_frame_shard;
/* Opens and validates a shard: VTTT_EIO if unreadable, VTTT_EFORMAT if the
 * header is malformed or the size disagrees with it (a truncated or
 * unfinished shard). */
int vttt_frame_shard_open(vttt_frame_shard **out, const char *path, const vttt_logger *lg);
const vttt_frame_shard_info *vttt_frame_shard_get_info(const vttt_frame_shard *s);
/* Random access: copies frames [first, first+count) to out (count, H, W, C).
 * VTTT_EINVAL for a window outside the shard. Thread-safe (pread). */
int vttt_frame_shard_read(vttt_frame_shard *s, int64_t first, int64_t count, uint8_t *out);
void vttt_frame_shard_close(vttt_frame_shard **s);

/* ---- the batch job ------------------------------------------------------- */

/* Progress, passed to the job's callback about once per progress_s and once
 * at the end (final = 1). */
typedef struct vttt_ingest_progress {
    int64_t files_total;     /* sources in this shard of the list */
    int64_t files_done;      /* finished in this run, ok or failed */
    int64_t files_skipped;   /* found done by an earlier run */
    int64_t files_failed;    /* failed in this run or recorded as failed earlier */
    int64_t frames;          /* frames converted in this run (those of sources that then failed too) */
    double elapsed_s;
    double frames_per_s;     /* frames written per second of this run */
    double eta_s;            /* estimated seconds left, < 0 unknown */
    int final;
} vttt_ingest_progress;
typedef void (*vttt_ingest_progress_fn)(void *user, const vttt_ingest_progress *p);

typedef struct vttt_ingest_job_params {
    vttt_video_params video;
    const char *out_dir;     /* shards and the manifest go here (created if missing) */
    int jobs;                /* sources decoded at once; 1 */
    int shard_index;         /* this run takes list entries i with i % shard_count == shard_index */
    int shard_count;         /* 1 */
    int keep_partial;        /* keep the frames decoded before damage (shard flagged partial) */
    int retry_failed;        /* redo sources an earlier run recorded as failed */
    double progress_s;       /* seconds between progress callbacks; 1 */
    vttt_ingest_progress_fn progress;  /* NULL: none */
    void *progress_user;
} vttt_ingest_job_params;
vttt_ingest_job_params vttt_ingest_job_default_params(void);

/* The manifest is "<out>/manifest.jsonl", or "<out>/manifest-<i>-of-<N>.jsonl"
 * for a shard of the list; one JSON object per line and per processed
 * source, appended and fsynced as each source finishes:
 *   {"source", "shard" (file name in out, null if none), "status" ("ok" or
 *    "error"), "error" (text, null when ok), "partial", "frames",
 *    "duration" (s of output), "fps", "fps_rational", "size", "fit",
 *    "src_codec", "src_width", "src_height", "src_fps", "src_fps_rational",
 *    "src_duration", "hwaccel", "seconds"}
 * On start every manifest*.jsonl in out is read: a source whose last line
 * says "ok" and whose shard opens with that many frames is skipped; one
 * recorded as "error" is skipped (and counted failed) unless retry_failed.
 * Shards are named "<stem>-<16 hex digits of the source id>.vfr". */
#define VTTT_INGEST_MANIFEST "manifest.jsonl"

/* Runs the job over sources[0..n). Returns 0 when the job ran (failed
 * sources are counted in *out, which may be NULL), or a negative code when
 * it could not run at all (bad params, out dir or manifest not writable). */
int vttt_ingest_job_run(const char *const *sources, int64_t n, const vttt_ingest_job_params *p,
                        vttt_ingest_progress *out, const vttt_logger *lg);

/* Shard file name (no directory) for a source: "<stem>-<id>.vfr". */
void vttt_ingest_shard_name(const char *source, char *out, size_t out_size);

/* ==== video ingestion: end ==== */

/* ==== text ingestion: begin (bpe*.c, token_shard.c) ==== */

/* The byte-level BPE tokenizer (training, encoding, decoding, its file
 * format, <|endoftext|> between documents) is documented in ingest/bpe.h;
 * token shards in llm.c's layout (uint16/uint32, reader for data loaders,
 * atomic writer) in ingest/token_shard.h. Both are part of this interface. */
#include "bpe.h"
#include "token_shard.h"

/* ==== text ingestion: end ==== */

#ifdef __cplusplus
}
#endif
#endif
