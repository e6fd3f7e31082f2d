/* Token shards in llm.c's layout: mmap reader with full validation, atomic
 * streaming writer, and the atomic-file helper they share with the
 * tokenizer writer. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "token_shard.h"

static uint32_t rd_u32(const uint8_t *p) {
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}
static void wr_u32(uint8_t *p, uint32_t v) {
    for (int i = 0; i < 4; i++) p[i] = (uint8_t)(v >> (8 * i));
}

int vttt_token_size_for_vocab(int vocab_size) { return vocab_size <= 65536 ? 2 : 4; }

/* ---- atomic files ------------------------------------------------------- */

/* Syncs path's directory so a rename into it survives a crash. File
 * systems that cannot sync a directory (EINVAL) are accepted. */
static int sync_dir_of(const char *path, const vttt_logger *lg) {
    char *dir = strdup(path);
    if (!dir) return VTTT_ENOMEM;
    char *slash = strrchr(dir, '/');
    if (slash) slash[slash == dir] = '\0';
    int fd = open(slash ? dir : ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    int err = VTTT_OK;
    if (fd < 0 || (fsync(fd) != 0 && errno != EINVAL)) {
        vttt_log(lg, VTTT_LOG_ERROR, "%s: written, but syncing its directory failed: %s", path, strerror(errno));
        err = VTTT_EIO;
    }
    if (fd >= 0) close(fd);
    free(dir);
    return err;
}

/* Creates "<path>.tmp.<pid>" for writing; *tmp is its malloc'd name.
 * VTTT_ENOMEM or VTTT_EIO (logged), with nothing left allocated. */
static int create_tmp(const char *path, FILE **f, char **tmp, const vttt_logger *lg) {
    size_t n = strlen(path) + 32;
    *f = NULL;
    if (!(*tmp = malloc(n))) return VTTT_ENOMEM;
    snprintf(*tmp, n, "%s.tmp.%ld", path, (long)getpid());
    if (!(*f = fopen(*tmp, "wb"))) {
        vttt_log(lg, VTTT_LOG_ERROR, "%s: cannot create: %s", *tmp, strerror(errno));
        free(*tmp);
        *tmp = NULL;
        return VTTT_EIO;
    }
    return VTTT_OK;
}

/* Flushes, syncs and closes f (whose writes succeeded iff ok), renames tmp
 * to path and syncs the directory. On failure tmp is removed. Frees tmp. */
static int commit_tmp(FILE *f, char *tmp, const char *path, int ok, const vttt_logger *lg) {
    int saved = ok ? 0 : errno;
    if (ok && (fflush(f) != 0 || fsync(fileno(f)) != 0)) ok = 0, saved = errno;
    if (fclose(f) != 0 && ok) ok = 0, saved = errno;
    int err = VTTT_OK;
    if (!ok) {
        vttt_log(lg, VTTT_LOG_ERROR, "%s: write failed: %s", tmp, strerror(saved));
        err = VTTT_EIO;
    } else if (rename(tmp, path) != 0) {
        vttt_log(lg, VTTT_LOG_ERROR, "%s: cannot rename %s over it: %s", path, tmp, strerror(errno));
        err = VTTT_EIO;
    }
    if (err) unlink(tmp);
    else err = sync_dir_of(path, lg);
    free(tmp);
    return err;
}

int vttt_file_write_atomic(const char *path, const void *data, size_t n, const vttt_logger *lg) {
    char *tmp;
    FILE *f;
    int err = create_tmp(path, &f, &tmp, lg);
    if (err) return err;
    int ok = n == 0 || fwrite(data, 1, n, f) == n;
    return commit_tmp(f, tmp, path, ok, lg);
}

/* ---- reading ------------------------------------------------------------ */

struct vttt_token_shard {
    char *path;
    uint8_t *map;            /* the whole file */
    size_t map_size;
    const uint8_t *tokens;   /* map + 1024 */
    int64_t count;
    int token_size;          /* 2 or 4 */
    vttt_logger lg;
};

static int shard_fail(const vttt_token_shard *s, int err, const char *what) {
    vttt_log(&s->lg, VTTT_LOG_ERROR, "%s: not a valid token shard: %s", s->path, what);
    return err;
}

/* Checks magic, version and count against the file's size. */
static int check_header(vttt_token_shard *s) {
    char msg[256];
    if (s->map_size < VTTT_SHARD_HEADER_BYTES) {
        snprintf(msg, sizeof msg, "the file is %zu bytes, shorter than the %d-byte header (truncated?)", s->map_size,
                 VTTT_SHARD_HEADER_BYTES);
        return shard_fail(s, VTTT_EFORMAT, msg);
    }
    int32_t magic = (int32_t)rd_u32(s->map), version = (int32_t)rd_u32(s->map + 4);
    int32_t count = (int32_t)rd_u32(s->map + 8);
    if (magic == VTTT_SHARD_MAGIC_U16) s->token_size = 2;
    else if (magic == VTTT_SHARD_MAGIC_U32) s->token_size = 4;
    else {
        snprintf(msg, sizeof msg, "magic number %d is neither %d (uint16 tokens) nor %d (uint32 tokens)", (int)magic,
                 VTTT_SHARD_MAGIC_U16, VTTT_SHARD_MAGIC_U32);
        return shard_fail(s, VTTT_EFORMAT, msg);
    }
    if (version != 1 && !(s->token_size == 4 && version == VTTT_SHARD_VERSION_U32)) {
        snprintf(msg, sizeof msg, "version %d is not supported (uint16 shards are version 1, uint32 ones 1 or 7)",
                 (int)version);
        return shard_fail(s, VTTT_EFORMAT, msg);
    }
    if (count < 0) {
        snprintf(msg, sizeof msg, "negative token count %d in the header", (int)count);
        return shard_fail(s, VTTT_EFORMAT, msg);
    }
    uint64_t have = s->map_size - VTTT_SHARD_HEADER_BYTES, want = (uint64_t)count * (uint64_t)s->token_size;
    if (have < want) {
        snprintf(msg, sizeof msg, "the header announces %d tokens (%llu bytes) but only %llu bytes follow it (truncated?)",
                 (int)count, (unsigned long long)want, (unsigned long long)have);
        return shard_fail(s, VTTT_EFORMAT, msg);
    }
    if (have > want) {
        snprintf(msg, sizeof msg, "%llu bytes follow the %d tokens the header announces (wrong count or corrupt file)",
                 (unsigned long long)(have - want), (int)count);
        return shard_fail(s, VTTT_EFORMAT, msg);
    }
    s->count = count;
    s->tokens = s->map + VTTT_SHARD_HEADER_BYTES;
    return VTTT_OK;
}

static int map_shard(vttt_token_shard *s) {
    int fd = open(s->path, O_RDONLY | O_NONBLOCK | O_CLOEXEC); /* a FIFO must not block the open */
    if (fd < 0) {
        vttt_log(&s->lg, VTTT_LOG_ERROR, "%s: cannot open token shard: %s", s->path, strerror(errno));
        return VTTT_EIO;
    }
    struct stat sb;
    int err = VTTT_OK;
    if (fstat(fd, &sb) != 0 || !S_ISREG(sb.st_mode)) {
        vttt_log(&s->lg, VTTT_LOG_ERROR, "%s: not a regular file", s->path);
        err = VTTT_EIO;
    } else if (sb.st_size > 0) {
        void *p = mmap(NULL, (size_t)sb.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
        if (p == MAP_FAILED) {
            vttt_log(&s->lg, VTTT_LOG_ERROR, "%s: cannot map: %s", s->path, strerror(errno));
            err = VTTT_EIO;
        } else {
            s->map = p;
            s->map_size = (size_t)sb.st_size;
        }
    }
    close(fd);
    return err;
}

int vttt_token_shard_open(vttt_token_shard **out, const char *path, const vttt_logger *lg) {
    *out = NULL;
    vttt_token_shard *s = calloc(1, sizeof *s);
    if (!s || !(s->path = strdup(path))) {
        free(s);
        return VTTT_ENOMEM;
    }
    if (lg) s->lg = *lg;
    int err = map_shard(s);
    if (!err) err = check_header(s);
    if (err) vttt_token_shard_close(&s);
    *out = s;
    return err;
}

void vttt_token_shard_close(vttt_token_shard **ps) {
    if (!ps || !*ps) return;
    vttt_token_shard *s = *ps;
    if (s->map) munmap(s->map, s->map_size);
    free(s->path);
    free(s);
    *ps = NULL;
}

int64_t vttt_token_shard_count(const vttt_token_shard *s) { return s->count; }
int vttt_token_shard_token_size(const vttt_token_shard *s) { return s->token_size; }
const char *vttt_token_shard_path(const vttt_token_shard *s) { return s->path; }

int vttt_token_shard_read(const vttt_token_shard *s, int64_t start, int64_t n, int32_t *out) {
    if (start < 0 || n < 0 || start > s->count || n > s->count - start) {
        vttt_log(&s->lg, VTTT_LOG_ERROR, "%s: cannot read tokens [%lld, %lld): the shard holds %lld", s->path,
                 (long long)start, (long long)(start + n), (long long)s->count);
        return VTTT_EINVAL;
    }
    if (s->token_size == 2) {
        const uint8_t *p = s->tokens + 2 * start;
        for (int64_t i = 0; i < n; i++) out[i] = (int32_t)(p[2 * i] | p[2 * i + 1] << 8);
        return VTTT_OK;
    }
    const uint8_t *p = s->tokens + 4 * start;
    for (int64_t i = 0; i < n; i++) {
        uint32_t v = rd_u32(p + 4 * i);
        if (v > INT32_MAX) {
            vttt_log(&s->lg, VTTT_LOG_ERROR, "%s: token %lld is %lu, beyond the int32 ids vttt supports", s->path,
                     (long long)(start + i), (unsigned long)v);
            return VTTT_EFORMAT;
        }
        out[i] = (int32_t)v;
    }
    return VTTT_OK;
}

int64_t vttt_token_shard_max_id(const vttt_token_shard *s) {
    int64_t m = -1;
    for (int64_t i = 0; i < s->count; i++) {
        const uint8_t *p = s->tokens + s->token_size * i;
        int64_t v = s->token_size == 2 ? (int64_t)(p[0] | p[1] << 8) : (int64_t)rd_u32(p);
        if (v > m) m = v;
    }
    return m;
}

/* ---- writing ------------------------------------------------------------ */

#define WRITER_BUF 65536   /* bytes converted per fwrite */

struct vttt_token_shard_writer {
    char *path, *tmp;
    FILE *f;
    int token_size;
    int ok;              /* every write so far succeeded */
    int64_t count;
    vttt_logger lg;
    uint8_t buf[WRITER_BUF];
};

int vttt_token_shard_writer_open(vttt_token_shard_writer **out, const char *path, int token_size,
                                 const vttt_logger *lg) {
    *out = NULL;
    if (token_size != 2 && token_size != 4) {
        vttt_log(lg, VTTT_LOG_ERROR, "%s: token size %d is neither 2 nor 4 bytes", path, token_size);
        return VTTT_EINVAL;
    }
    vttt_token_shard_writer *w = calloc(1, sizeof *w);
    if (!w || !(w->path = strdup(path))) {
        free(w);
        return VTTT_ENOMEM;
    }
    if (lg) w->lg = *lg;
    w->token_size = token_size;
    int err = create_tmp(path, &w->f, &w->tmp, lg);
    if (err) {
        free(w->path);
        free(w);
        return err;
    }
    memset(w->buf, 0, VTTT_SHARD_HEADER_BYTES);   /* the header is filled in at close */
    w->ok = fwrite(w->buf, 1, VTTT_SHARD_HEADER_BYTES, w->f) == VTTT_SHARD_HEADER_BYTES;
    *out = w;
    return VTTT_OK;
}

static int check_ids(vttt_token_shard_writer *w, const int32_t *ids, size_t n) {
    int64_t max = w->token_size == 2 ? 65535 : INT32_MAX;
    if ((uint64_t)w->count + n > VTTT_SHARD_MAX_TOKENS) {
        vttt_log(&w->lg, VTTT_LOG_ERROR, "%s: a shard holds at most %d tokens", w->path, VTTT_SHARD_MAX_TOKENS);
        return VTTT_EINVAL;
    }
    for (size_t i = 0; i < n; i++)
        if (ids[i] < 0 || ids[i] > max) {
            vttt_log(&w->lg, VTTT_LOG_ERROR, "%s: token id %d does not fit a %d-byte shard token", w->path,
                     (int)ids[i], w->token_size);
            return VTTT_EINVAL;
        }
    return VTTT_OK;
}

int vttt_token_shard_writer_append(vttt_token_shard_writer *w, const int32_t *ids, size_t n) {
    int err = check_ids(w, ids, n);
    if (err) return w->ok = 0, err;
    const size_t per = WRITER_BUF / (size_t)w->token_size;
    for (size_t i = 0; i < n && w->ok; i += per) {
        size_t k = n - i < per ? n - i : per;
        for (size_t j = 0; j < k; j++) {
            uint32_t v = (uint32_t)ids[i + j];
            if (w->token_size == 2) w->buf[2 * j] = (uint8_t)v, w->buf[2 * j + 1] = (uint8_t)(v >> 8);
            else wr_u32(w->buf + 4 * j, v);
        }
        w->ok = fwrite(w->buf, (size_t)w->token_size, k, w->f) == k;
    }
    if (!w->ok) {
        vttt_log(&w->lg, VTTT_LOG_ERROR, "%s: write failed: %s", w->tmp, strerror(errno));
        return VTTT_EIO;
    }
    w->count += (int64_t)n;
    return VTTT_OK;
}

int64_t vttt_token_shard_writer_count(const vttt_token_shard_writer *w) { return w->count; }

static void writer_free(vttt_token_shard_writer **pw) {
    free((*pw)->path);
    free(*pw);
    *pw = NULL;
}

int vttt_token_shard_writer_close(vttt_token_shard_writer **pw) {
    if (!pw || !*pw) return VTTT_EINVAL;
    vttt_token_shard_writer *w = *pw;
    uint8_t hdr[12];
    wr_u32(hdr, w->token_size == 2 ? VTTT_SHARD_MAGIC_U16 : VTTT_SHARD_MAGIC_U32);
    wr_u32(hdr + 4, w->token_size == 2 ? VTTT_SHARD_VERSION_U16 : VTTT_SHARD_VERSION_U32);
    wr_u32(hdr + 8, (uint32_t)w->count);
    int ok = w->ok && fseek(w->f, 0, SEEK_SET) == 0 && fwrite(hdr, 1, sizeof hdr, w->f) == sizeof hdr;
    int err = commit_tmp(w->f, w->tmp, w->path, ok, &w->lg);
    writer_free(pw);
    return err;
}

void vttt_token_shard_writer_abort(vttt_token_shard_writer **pw) {
    if (!pw || !*pw) return;
    fclose((*pw)->f);
    unlink((*pw)->tmp);
    free((*pw)->tmp);
    writer_free(pw);
}

int vttt_token_shard_write(const char *path, const int32_t *ids, size_t n, int token_size, const vttt_logger *lg) {
    vttt_token_shard_writer *w;
    int err = vttt_token_shard_writer_open(&w, path, token_size, lg);
    if (err) return err;
    if ((err = vttt_token_shard_writer_append(w, ids, n))) {
        vttt_token_shard_writer_abort(&w);
        return err;
    }
    return vttt_token_shard_writer_close(&w);
}
