/*
 * Opening a video source so that it can never block forever: a deadline
 * for opening (probing included) and one for each read of the demuxer.
 *
 * - Every source gets an AVIOInterruptCB on its AVFormatContext (set before
 *   avformat_open_input) that ends a wait once the deadline passes; the
 *   network protocols poll it while they connect and read, and rw_timeout
 *   is set to the stall limit as well.
 * - A local path is stat()ed first. Regular files and block devices are
 *   opened by FFmpeg's file protocol (their reads never wait). A FIFO is
 *   opened here with O_NONBLOCK (the file protocol's open(2) would wait
 *   for a writer with no way to interrupt it) and read through a custom
 *   AVIOContext that poll()s with the deadline: a FIFO nobody writes to
 *   ends "timed out opening", one whose writer stops ends "stalled".
 *   Character devices and sockets are refused ("not a regular file or
 *   stream"): the file protocol reads them as an endless or blocking file.
 * - "pipe:N" is FFmpeg's own (blocking) descriptor reader: it has no stall
 *   limit.
 * DNS lookups (getaddrinfo) cannot be interrupted.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <libavutil/time.h>

#include "video_internal.h"

#define FIFO_BUF_BYTES 65536

void video_source_arm(video_decoder *d, double seconds) {
    d->deadline_us = seconds > 0 ? av_gettime_relative() + (int64_t)(seconds * 1e6) : INT64_MAX;
    d->limit_s = seconds;
}

/* Has the deadline passed? Remembers that it did, for the message. */
static int expired(video_decoder *d) {
    if (d->deadline_us == INT64_MAX || av_gettime_relative() < d->deadline_us) return 0;
    d->timed_out = 1;
    return 1;
}

static int interrupt_cb(void *opaque) { return expired(opaque); }

/* The custom AVIOContext's read: waits for data with poll() until the
 * deadline (a writer that has not connected yet counts as no data). */
static int fifo_read(void *opaque, uint8_t *buf, int n) {
    video_decoder *d = opaque;
    for (;;) {
        struct pollfd pfd = {d->fd, POLLIN, 0};
        int64_t left_ms = d->deadline_us == INT64_MAX ? 1000 : (d->deadline_us - av_gettime_relative()) / 1000 + 1;
        int r = poll(&pfd, 1, (int)(left_ms < 1000 ? (left_ms > 0 ? left_ms : 0) : 1000));
        if (r < 0 && errno != EINTR) return AVERROR(errno);
        if (r > 0) {
            ssize_t k = read(d->fd, buf, (size_t)n);
            if (k > 0) return (int)k;
            if (k == 0) return AVERROR_EOF;
            if (errno != EAGAIN && errno != EINTR) return AVERROR(errno);
        }
        if (expired(d)) return AVERROR_EXIT;
    }
}

/* Opens the FIFO at path without waiting and makes fmt read it through
 * fifo_read. */
static int open_fifo(video_decoder *d, const char *path) {
    d->fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
    if (d->fd < 0) return AVERROR(errno);
    uint8_t *buf = av_malloc(FIFO_BUF_BYTES);
    AVIOContext *pb = buf ? avio_alloc_context(buf, FIFO_BUF_BYTES, 0, d, fifo_read, NULL, NULL) : NULL;
    if (!pb) {
        av_free(buf);
        return AVERROR(ENOMEM);
    }
    d->fmt->pb = d->custom_pb = pb;
    d->fmt->flags |= AVFMT_FLAG_CUSTOM_IO;
    return 0;
}

/* The local path url names: "file:" stripped (a URL or "pipe:N" will not
 * stat()). */
static const char *local_path(const char *url) { return strncmp(url, "file:", 5) ? url : url + 5; }

static const char *special_kind(mode_t m) {
    if (S_ISCHR(m)) return "a character device";
    if (S_ISSOCK(m)) return "a socket";
    return NULL;
}

int video_source_open(video_decoder *d, const char *url, const vttt_video_params *p, char *why, size_t why_n) {
    d->fd = -1;
    why[0] = '\0';
    if (!(d->fmt = avformat_alloc_context())) return AVERROR(ENOMEM);
    d->fmt->interrupt_callback = (AVIOInterruptCB){interrupt_cb, d};
    video_source_arm(d, p->open_timeout_s);
    const char *path = local_path(url);
    struct stat st;
    int ret = 0;
    if (stat(path, &st) == 0) {
        const char *kind = special_kind(st.st_mode);
        if (kind) {
            snprintf(why, why_n, "not a regular file or stream (%s)", kind);
            return AVERROR(EINVAL);
        }
        if (S_ISFIFO(st.st_mode) && (ret = open_fifo(d, path)) < 0) return ret;
    }
    AVDictionary *opts = NULL;
    /* the protocols' own limit, a second after ours so that ours (with its
     * clearer message) normally ends the wait */
    if (p->stall_timeout_s > 0) av_dict_set_int(&opts, "rw_timeout", (int64_t)((p->stall_timeout_s + 1) * 1e6), 0);
    ret = avformat_open_input(&d->fmt, url, NULL, &opts); /* frees fmt on failure */
    av_dict_free(&opts);
    return ret;
}

void video_source_close(video_decoder *d) {
    avformat_close_input(&d->fmt); /* leaves a custom AVIOContext to its owner */
    if (d->custom_pb) {
        av_freep(&d->custom_pb->buffer);
        avio_context_free(&d->custom_pb);
    }
    if (d->fd >= 0) close(d->fd);
    d->fd = -1;
}
