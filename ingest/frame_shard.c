/*
 * Frame shards (.vfr): a 4096-byte header, then raw frames. The layout is
 * documented in ingest.h. The writer never leaves a file under the final
 * name that looks complete but is not: it writes "<path>.tmp", fills in the
 * frame count last, fsyncs, renames and fsyncs the directory. The reader
 * checks the header against the file size, so a truncated or unfinished
 * shard is refused.
 */
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "ingest.h"

#define WRITE_BUF_BYTES (1 << 20)

uint64_t vttt_frame_shard_source_id(const char *source) {
    uint64_t h = 0xcbf29ce484222325ull;
    for (const unsigned char *p = (const unsigned char *)source; p && *p; p++) h = (h ^ *p) * 0x100000001b3ull;
    return h;
}

size_t vttt_frame_shard_frame_bytes(const vttt_frame_shard_info *info) {
    return (size_t)info->width * (size_t)info->height * (size_t)info->channels;
}

static void put32(uint8_t *p, uint32_t v) {
    for (int i = 0; i < 4; i++) p[i] = (uint8_t)(v >> (8 * i));
}
static void put64(uint8_t *p, uint64_t v) {
    for (int i = 0; i < 8; i++) p[i] = (uint8_t)(v >> (8 * i));
}
static uint32_t get32(const uint8_t *p) {
    uint32_t v = 0;
    for (int i = 3; i >= 0; i--) v = (v << 8) | p[i];
    return v;
}
static uint64_t get64(const uint8_t *p) {
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--) v = (v << 8) | p[i];
    return v;
}

static void header_encode(uint8_t h[VTTT_FRAME_SHARD_HEADER_BYTES], const vttt_frame_shard_info *in) {
    size_t len = strnlen(in->source, VTTT_FRAME_SHARD_SOURCE_MAX);
    memset(h, 0, VTTT_FRAME_SHARD_HEADER_BYTES);
    memcpy(h, VTTT_FRAME_SHARD_MAGIC, 8);
    put32(h + 8, VTTT_FRAME_SHARD_VERSION);
    put32(h + 12, VTTT_FRAME_SHARD_HEADER_BYTES);
    put32(h + 16, (uint32_t)in->width);
    put32(h + 20, (uint32_t)in->height);
    put32(h + 24, (uint32_t)in->channels);
    put32(h + 28, (uint32_t)in->fps_num);
    put32(h + 32, (uint32_t)in->fps_den);
    put32(h + 36, in->flags);
    put64(h + 40, (uint64_t)in->frame_count);
    put64(h + 48, in->source_id);
    put32(h + 56, (uint32_t)len);
    memcpy(h + 64, in->source, len);
}

/* A stored rate: num/den frames/s, num 0 when the source's rate is
 * unknown (ingest.h), den >= 1. */
static int fps_valid(int num, int den) { return num >= 0 && den >= 1; }

/* Validates a header read from a file of file_size bytes (-1: unknown). */
static int header_decode(const uint8_t *h, int64_t file_size, vttt_frame_shard_info *out,
                         const char *path, const vttt_logger *lg) {
    memset(out, 0, sizeof *out);
    if (memcmp(h, VTTT_FRAME_SHARD_MAGIC, 8) != 0) {
        vttt_log(lg, VTTT_LOG_ERROR, "%s: not a frame shard (bad magic)", path);
        return VTTT_EFORMAT;
    }
    uint32_t version = get32(h + 8), hdr = get32(h + 12), len = get32(h + 56);
    out->width = (int)get32(h + 16);
    out->height = (int)get32(h + 20);
    out->channels = (int)get32(h + 24);
    out->fps_num = (int)get32(h + 28);
    out->fps_den = (int)get32(h + 32);
    out->flags = get32(h + 36);
    out->frame_count = (int64_t)get64(h + 40);
    out->source_id = get64(h + 48);
    if (version != VTTT_FRAME_SHARD_VERSION || hdr != VTTT_FRAME_SHARD_HEADER_BYTES ||
        len > VTTT_FRAME_SHARD_SOURCE_MAX || out->width <= 0 || out->height <= 0 || out->width > 65536 ||
        out->height > 65536 || out->channels < 1 || out->channels > 4 || out->frame_count < 0) {
        vttt_log(lg, VTTT_LOG_ERROR, "%s: malformed frame shard header (version %u, %dx%dx%d)", path, version,
                 out->width, out->height, out->channels);
        return VTTT_EFORMAT;
    }
    if (!fps_valid(out->fps_num, out->fps_den)) {
        vttt_log(lg, VTTT_LOG_ERROR, "%s: malformed frame shard header (frame rate %u/%u: the numerator must be "
                 "below 2^31, the denominator from 1 to 2^31-1)", path, get32(h + 28), get32(h + 32));
        return VTTT_EFORMAT;
    }
    memcpy(out->source, h + 64, len);
    out->source[len] = 0;
    if (out->frame_count > (INT64_MAX - VTTT_FRAME_SHARD_HEADER_BYTES) / (int64_t)vttt_frame_shard_frame_bytes(out)) {
        vttt_log(lg, VTTT_LOG_ERROR, "%s: malformed frame shard header (frame count %lld)", path,
                 (long long)out->frame_count);
        return VTTT_EFORMAT;
    }
    int64_t expect = VTTT_FRAME_SHARD_HEADER_BYTES + out->frame_count * (int64_t)vttt_frame_shard_frame_bytes(out);
    if (file_size >= 0 && file_size != expect) {
        vttt_log(lg, VTTT_LOG_ERROR,
                 "%s: %lld bytes, but its header says %lld frames (%lld bytes): truncated or unfinished shard",
                 path, (long long)file_size, (long long)out->frame_count, (long long)expect);
        return VTTT_EFORMAT;
    }
    return 0;
}

/* Writes all of buf at the current offset (retrying short writes). */
static int write_all(int fd, const uint8_t *buf, size_t n) {
    while (n) {
        ssize_t k = write(fd, buf, n);
        if (k < 0 && errno == EINTR) continue;
        if (k <= 0) return -1;
        buf += k;
        n -= (size_t)k;
    }
    return 0;
}

/* ---- writer ---------------------------------------------------------------- */

struct vttt_frame_shard_writer {
    int fd;
    char *path, *tmp;
    vttt_frame_shard_info info;
    uint8_t *buf;
    size_t buf_len;
    int broken;            /* a write failed */
    vttt_logger lg;
};

static void writer_free(vttt_frame_shard_writer *w) {
    if (w->fd >= 0) close(w->fd);
    free(w->path);
    free(w->tmp);
    free(w->buf);
    free(w);
}

int vttt_frame_shard_writer_open(vttt_frame_shard_writer **out, const char *path,
                                 const vttt_frame_shard_info *info, const vttt_logger *lg) {
    *out = NULL;
    if (info->width <= 0 || info->height <= 0 || info->width > 65536 || info->height > 65536 ||
        info->channels < 1 || info->channels > 4) {
        vttt_log(lg, VTTT_LOG_ERROR, "%s: bad frame shape %dx%dx%d", path, info->width, info->height, info->channels);
        return VTTT_EINVAL;
    }
    if (!fps_valid(info->fps_num, info->fps_den)) {
        vttt_log(lg, VTTT_LOG_ERROR, "%s: bad frame rate %d/%d (numerator >= 0, denominator >= 1)", path,
                 info->fps_num, info->fps_den);
        return VTTT_EINVAL;
    }
    vttt_frame_shard_writer *w = calloc(1, sizeof *w);
    size_t n = strlen(path);
    if (!w) return VTTT_ENOMEM;
    w->fd = -1;
    w->path = strdup(path);
    w->tmp = malloc(n + 5);
    w->buf = malloc(WRITE_BUF_BYTES);
    if (lg) w->lg = *lg;
    if (!w->path || !w->tmp || !w->buf) {
        writer_free(w);
        return VTTT_ENOMEM;
    }
    snprintf(w->tmp, n + 5, "%s.tmp", path);
    w->info = *info;
    w->info.frame_count = 0;
    w->info.flags = 0;
    if (!w->info.source_id) w->info.source_id = vttt_frame_shard_source_id(info->source);
    uint8_t h[VTTT_FRAME_SHARD_HEADER_BYTES];
    header_encode(h, &w->info);
    w->fd = open(w->tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (w->fd < 0 || write_all(w->fd, h, sizeof h) < 0) {
        vttt_log(lg, VTTT_LOG_ERROR, "%s: cannot write: %s", w->tmp, strerror(errno));
        if (w->fd >= 0) unlink(w->tmp);
        writer_free(w);
        return VTTT_EIO;
    }
    *out = w;
    return 0;
}

static int writer_flush(vttt_frame_shard_writer *w) {
    if (w->broken) return VTTT_EIO;
    if (w->buf_len && write_all(w->fd, w->buf, w->buf_len) < 0) {
        vttt_log(&w->lg, VTTT_LOG_ERROR, "%s: write failed: %s", w->tmp, strerror(errno));
        w->broken = 1;
        return VTTT_EIO;
    }
    w->buf_len = 0;
    return 0;
}

int vttt_frame_shard_writer_write(vttt_frame_shard_writer *w, const uint8_t *frames, int64_t n) {
    size_t fb = vttt_frame_shard_frame_bytes(&w->info);
    if (w->broken) return VTTT_EIO;
    if (n < 0) return VTTT_EINVAL;
    for (int64_t i = 0; i < n; i++) {
        if (w->buf_len + fb > WRITE_BUF_BYTES) {
            int ret = writer_flush(w);
            if (ret < 0) return ret;
        }
        if (fb > WRITE_BUF_BYTES) {  /* huge frames bypass the buffer */
            if (write_all(w->fd, frames + i * fb, fb) < 0) {
                w->broken = 1;
                vttt_log(&w->lg, VTTT_LOG_ERROR, "%s: write failed: %s", w->tmp, strerror(errno));
                return VTTT_EIO;
            }
        } else {
            memcpy(w->buf + w->buf_len, frames + i * fb, fb);
            w->buf_len += fb;
        }
        w->info.frame_count++;
    }
    return 0;
}

int64_t vttt_frame_shard_writer_count(const vttt_frame_shard_writer *w) { return w->info.frame_count; }

/* fsyncs the directory holding path so that a rename in it is durable. */
static void sync_dir(const char *path) {
    char *d = strdup(path);
    if (!d) return;
    int fd = open(dirname(d), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd >= 0) {
        fsync(fd);
        close(fd);
    }
    free(d);
}

int vttt_frame_shard_writer_finish(vttt_frame_shard_writer **pw, uint32_t flags) {
    vttt_frame_shard_writer *w = *pw;
    if (!w) return VTTT_EINVAL;
    *pw = NULL;
    int ret = writer_flush(w);
    uint8_t h[VTTT_FRAME_SHARD_HEADER_BYTES];
    w->info.flags = flags;
    header_encode(h, &w->info);
    if (ret == 0 && (pwrite(w->fd, h, sizeof h, 0) != (ssize_t)sizeof h || fsync(w->fd) != 0)) {
        vttt_log(&w->lg, VTTT_LOG_ERROR, "%s: cannot finish: %s", w->tmp, strerror(errno));
        ret = VTTT_EIO;
    }
    if (close(w->fd) != 0 && ret == 0) ret = VTTT_EIO;
    w->fd = -1;
    if (ret == 0 && rename(w->tmp, w->path) != 0) {
        vttt_log(&w->lg, VTTT_LOG_ERROR, "cannot rename %s to %s: %s", w->tmp, w->path, strerror(errno));
        ret = VTTT_EIO;
    }
    if (ret == 0) sync_dir(w->path);
    else unlink(w->tmp);
    writer_free(w);
    return ret;
}

void vttt_frame_shard_writer_abort(vttt_frame_shard_writer **pw) {
    vttt_frame_shard_writer *w = *pw;
    if (!w) return;
    *pw = NULL;
    close(w->fd);
    w->fd = -1;
    unlink(w->tmp);
    writer_free(w);
}

/* ---- reader ---------------------------------------------------------------- */

struct vttt_frame_shard {
    int fd;
    vttt_frame_shard_info info;
    vttt_logger lg;
};

int vttt_frame_shard_open(vttt_frame_shard **out, const char *path, const vttt_logger *lg) {
    *out = NULL;
    int fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC); /* a FIFO must not block the open */
    struct stat st;
    uint8_t h[VTTT_FRAME_SHARD_HEADER_BYTES];
    if (fd < 0 || fstat(fd, &st) != 0) {
        vttt_log(lg, VTTT_LOG_ERROR, "%s: cannot open: %s", path, strerror(errno));
        if (fd >= 0) close(fd);
        return VTTT_EIO;
    }
    if (!S_ISREG(st.st_mode)) {
        vttt_log(lg, VTTT_LOG_ERROR, "%s: not a regular file, so not a frame shard", path);
        close(fd);
        return VTTT_EIO;
    }
    ssize_t k = pread(fd, h, sizeof h, 0);
    if (k != (ssize_t)sizeof h) {
        vttt_log(lg, VTTT_LOG_ERROR, "%s: too short for a frame shard header (%lld bytes)", path,
                 (long long)st.st_size);
        close(fd);
        return VTTT_EFORMAT;
    }
    vttt_frame_shard *s = calloc(1, sizeof *s);
    if (!s) {
        close(fd);
        return VTTT_ENOMEM;
    }
    int ret = header_decode(h, (int64_t)st.st_size, &s->info, path, lg);
    if (ret < 0) {
        close(fd);
        free(s);
        return ret;
    }
    s->fd = fd;
    if (lg) s->lg = *lg;
    *out = s;
    return 0;
}

const vttt_frame_shard_info *vttt_frame_shard_get_info(const vttt_frame_shard *s) { return &s->info; }

int vttt_frame_shard_read(vttt_frame_shard *s, int64_t first, int64_t count, uint8_t *out) {
    if (first < 0 || count < 0 || first > s->info.frame_count || count > s->info.frame_count - first) {
        vttt_log(&s->lg, VTTT_LOG_ERROR, "frames [%lld, %lld) are outside the shard's %lld frames",
                 (long long)first, (long long)(first + count), (long long)s->info.frame_count);
        return VTTT_EINVAL;
    }
    size_t fb = vttt_frame_shard_frame_bytes(&s->info), n = (size_t)count * fb;
    off_t off = VTTT_FRAME_SHARD_HEADER_BYTES + (off_t)first * (off_t)fb;
    while (n) {
        ssize_t k = pread(s->fd, out, n, off);
        if (k < 0 && errno == EINTR) continue;
        if (k <= 0) {
            vttt_log(&s->lg, VTTT_LOG_ERROR, "frame shard read failed: %s", k < 0 ? strerror(errno) : "short file");
            return VTTT_EIO;
        }
        out += k;
        n -= (size_t)k;
        off += k;
    }
    return 0;
}

void vttt_frame_shard_close(vttt_frame_shard **ps) {
    if (!*ps) return;
    close((*ps)->fd);
    free(*ps);
    *ps = NULL;
}
