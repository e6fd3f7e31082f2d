/* safetensors reader (mmap + full header validation) and atomic writer. */
#define _POSIX_C_SOURCE 200809L

#include "safetensors.h"

#include <cJSON.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "safetensors data are little-endian; this reader assumes a little-endian host"
#endif

#define ST_MAX_HEADER 100000000ull    /* bytes; the reference implementation's limit */
#define ST_MAX_EXACT 9007199254740992.0 /* 2^53: larger JSON numbers are not exact doubles */

static const struct {
    const char *name;
    size_t size;   /* bytes */
} st_dtypes[VTTT_ST_NUM_DTYPES] = {
    [VTTT_ST_F32] = {"F32", 4},         [VTTT_ST_F16] = {"F16", 2},   [VTTT_ST_BF16] = {"BF16", 2},
    [VTTT_ST_F64] = {"F64", 8},         [VTTT_ST_I8] = {"I8", 1},     [VTTT_ST_I16] = {"I16", 2},
    [VTTT_ST_I32] = {"I32", 4},         [VTTT_ST_I64] = {"I64", 8},   [VTTT_ST_U8] = {"U8", 1},
    [VTTT_ST_U16] = {"U16", 2},         [VTTT_ST_U32] = {"U32", 4},   [VTTT_ST_U64] = {"U64", 8},
    [VTTT_ST_BOOL] = {"BOOL", 1},       [VTTT_ST_F8_E4M3] = {"F8_E4M3", 1},
    [VTTT_ST_F8_E5M2] = {"F8_E5M2", 1},
};

size_t vttt_st_dtype_size(vttt_st_dtype dt) {
    return (unsigned)dt < VTTT_ST_NUM_DTYPES ? st_dtypes[dt].size : 0;
}

const char *vttt_st_dtype_name(vttt_st_dtype dt) {
    return (unsigned)dt < VTTT_ST_NUM_DTYPES ? st_dtypes[dt].name : "unknown";
}

static int dtype_from_name(const char *s) {
    for (int i = 0; i < VTTT_ST_NUM_DTYPES; i++)
        if (strcmp(s, st_dtypes[i].name) == 0) return i;
    return -1;
}

typedef struct st_entry {
    const char *name;   /* points into st->root */
    vttt_st_dtype dtype;
    int ndim;
    int64_t shape[VTTT_ST_MAX_DIMS];
    uint64_t begin, end; /* bytes, relative to the data section */
} st_entry;

struct vttt_st {
    char *path;
    vttt_logger lg;
    void *map;                /* the whole file, read-only */
    size_t map_size;          /* bytes */
    const uint8_t *data;      /* the data section, after the header */
    uint64_t data_size;       /* bytes */
    cJSON *root;              /* the parsed header; names and metadata live here */
    st_entry *entries;        /* sorted by data offsets */
    int n;
    const cJSON *meta;        /* "__metadata__" or NULL */
};

/* Logs "safetensors <path>: <message>" as an error and returns err. */
#if defined(__GNUC__)
__attribute__((format(printf, 4, 5)))
#endif
static int st_fail(const vttt_logger *lg, const char *path, int err, const char *fmt, ...) {
    char msg[768];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    vttt_log(lg, VTTT_LOG_ERROR, "safetensors %s: %s", path, msg);
    return err;
}

/* "[2, 3]" into buf (truncated to size). */
static const char *fmt_shape(char *buf, size_t size, int ndim, const int64_t *shape) {
    size_t k = (size_t)snprintf(buf, size, "[");
    for (int i = 0; i < ndim && k < size; i++)
        k += (size_t)snprintf(buf + k, size - k, "%s%lld", i ? ", " : "", (long long)shape[i]);
    if (k < size) snprintf(buf + k, size - k, "]");
    return buf;
}

/* numel * elem_size with overflow checks, dim by dim as the reference does.
 * Returns 0 and the byte count, or -1 on overflow. */
static int shape_bytes(int ndim, const int64_t *shape, size_t elem_size, uint64_t *bytes) {
    uint64_t b = elem_size;
    for (int i = 0; i < ndim; i++) {
        uint64_t d = (uint64_t)shape[i];
        if (shape[i] < 0 || (d && b > UINT64_MAX / d)) return -1;
        b *= d;
    }
    *bytes = b;
    return 0;
}

static int cmp_str_ptr(const void *a, const void *b) {
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* Finds a repeated name among names[0..n) (sorting a copy). *dup is the
 * repeated name or NULL. VTTT_ENOMEM if the copy cannot be made. */
static int first_duplicate(const char *const *names, int n, const char **dup) {
    *dup = NULL;
    if (n < 2) return VTTT_OK;
    const char **s = malloc((size_t)n * sizeof *s);
    if (!s) return VTTT_ENOMEM;
    memcpy(s, names, (size_t)n * sizeof *s);
    qsort(s, (size_t)n, sizeof *s, cmp_str_ptr);
    for (int i = 1; i < n && !*dup; i++)
        if (strcmp(s[i - 1], s[i]) == 0) *dup = s[i];
    free(s);
    return VTTT_OK;
}

/* ---- reading ------------------------------------------------------------ */

/* A JSON number that is an exact non-negative integer (at most 2^53). */
static int json_uint(const cJSON *item, uint64_t *out) {
    if (!cJSON_IsNumber(item)) return -1;
    double v = item->valuedouble;
    if (!(v >= 0 && v <= ST_MAX_EXACT && v == floor(v))) return -1;
    *out = (uint64_t)v;
    return 0;
}

static int parse_shape(const vttt_st *st, const char *name, const cJSON *shape, st_entry *e) {
    if (!cJSON_IsArray(shape))
        return st_fail(&st->lg, st->path, VTTT_EFORMAT, "tensor '%s': \"shape\" is not an array", name);
    int nd = cJSON_GetArraySize(shape);
    if (nd > VTTT_ST_MAX_DIMS)
        return st_fail(&st->lg, st->path, VTTT_ENOTSUP, "tensor '%s' has %d dims; at most %d are supported", name,
                       nd, VTTT_ST_MAX_DIMS);
    e->ndim = 0;
    const cJSON *d;
    cJSON_ArrayForEach(d, shape) {
        uint64_t v;
        if (json_uint(d, &v))
            return st_fail(&st->lg, st->path, VTTT_EFORMAT, "tensor '%s': shape[%d] is not a non-negative integer",
                           name, e->ndim);
        e->shape[e->ndim++] = (int64_t)v;
    }
    return VTTT_OK;
}

/* Parses one tensor entry {"dtype", "shape", "data_offsets"} into e and
 * checks it against the data section's size. */
static int parse_entry(const vttt_st *st, const cJSON *item, st_entry *e) {
    const char *name = item->string;
    e->name = name;
    if (!cJSON_IsObject(item))
        return st_fail(&st->lg, st->path, VTTT_EFORMAT, "tensor '%s': entry is not a JSON object", name);
    const cJSON *dt = cJSON_GetObjectItemCaseSensitive(item, "dtype");
    const cJSON *offs = cJSON_GetObjectItemCaseSensitive(item, "data_offsets");
    if (!cJSON_IsString(dt))
        return st_fail(&st->lg, st->path, VTTT_EFORMAT, "tensor '%s': missing string \"dtype\"", name);
    int dtype = dtype_from_name(dt->valuestring);
    if (dtype < 0)
        return st_fail(&st->lg, st->path, VTTT_EFORMAT, "tensor '%s': unknown or unsupported dtype \"%s\"", name,
                       dt->valuestring);
    e->dtype = (vttt_st_dtype)dtype;
    int err = parse_shape(st, name, cJSON_GetObjectItemCaseSensitive(item, "shape"), e);
    if (err) return err;
    if (!cJSON_IsArray(offs) || cJSON_GetArraySize(offs) != 2 || json_uint(offs->child, &e->begin) ||
        json_uint(offs->child->next, &e->end))
        return st_fail(&st->lg, st->path, VTTT_EFORMAT,
                       "tensor '%s': \"data_offsets\" is not an array of two non-negative integers", name);
    if (e->begin > e->end || e->end > st->data_size)
        return st_fail(&st->lg, st->path, VTTT_EFORMAT,
                       "tensor '%s': data_offsets [%llu, %llu] outside the %llu-byte data section", name,
                       (unsigned long long)e->begin, (unsigned long long)e->end,
                       (unsigned long long)st->data_size);
    uint64_t bytes;
    char sh[256];
    if (shape_bytes(e->ndim, e->shape, st_dtypes[dtype].size, &bytes))
        return st_fail(&st->lg, st->path, VTTT_EFORMAT, "tensor '%s': shape %s overflows", name,
                       fmt_shape(sh, sizeof sh, e->ndim, e->shape));
    if (bytes != e->end - e->begin)
        return st_fail(&st->lg, st->path, VTTT_EFORMAT,
                       "tensor '%s': %s %s needs %llu bytes but data_offsets [%llu, %llu] hold %llu", name,
                       st_dtypes[dtype].name, fmt_shape(sh, sizeof sh, e->ndim, e->shape),
                       (unsigned long long)bytes, (unsigned long long)e->begin, (unsigned long long)e->end,
                       (unsigned long long)(e->end - e->begin));
    return VTTT_OK;
}

/* "__metadata__" must be an object of unique string values. */
static int check_metadata(const vttt_st *st, const cJSON *meta) {
    if (!cJSON_IsObject(meta))
        return st_fail(&st->lg, st->path, VTTT_EFORMAT, "\"__metadata__\" is not a JSON object");
    int n = cJSON_GetArraySize(meta), i = 0;
    const char **keys = malloc((size_t)(n ? n : 1) * sizeof *keys);
    if (!keys) return VTTT_ENOMEM;
    const cJSON *kv;
    int err = VTTT_OK;
    cJSON_ArrayForEach(kv, meta) {
        if (!cJSON_IsString(kv)) {
            err = st_fail(&st->lg, st->path, VTTT_EFORMAT, "metadata '%s' is not a string", kv->string);
            break;
        }
        keys[i++] = kv->string;
    }
    const char *dup = NULL;
    if (!err) err = first_duplicate(keys, n, &dup);
    if (!err && dup) err = st_fail(&st->lg, st->path, VTTT_EFORMAT, "metadata key '%s' appears twice", dup);
    free(keys);
    return err;
}

static int cmp_entry_offsets(const void *pa, const void *pb) {
    const st_entry *a = pa, *b = pb;
    if (a->begin != b->begin) return a->begin < b->begin ? -1 : 1;
    return (a->end > b->end) - (a->end < b->end);
}

/* Sorts the entries by offsets and checks that they tile the data section
 * exactly: no overlap, no hole, nothing after the last tensor. */
static int check_layout(vttt_st *st) {
    qsort(st->entries, (size_t)st->n, sizeof *st->entries, cmp_entry_offsets);
    uint64_t pos = 0;
    const char *prev = NULL;
    for (int i = 0; i < st->n; i++) {
        const st_entry *e = &st->entries[i];
        if (e->begin < pos)
            return st_fail(&st->lg, st->path, VTTT_EFORMAT, "tensors '%s' and '%s' overlap (bytes %llu..%llu)",
                           prev, e->name, (unsigned long long)e->begin, (unsigned long long)pos);
        if (e->begin > pos)
            return st_fail(&st->lg, st->path, VTTT_EFORMAT,
                           "bytes %llu..%llu of the data section belong to no tensor (before '%s')",
                           (unsigned long long)pos, (unsigned long long)e->begin, e->name);
        pos = e->end;
        prev = e->name;
    }
    if (pos != st->data_size)
        return st_fail(&st->lg, st->path, VTTT_EFORMAT,
                       "the tensors cover %llu bytes but the data section has %llu (truncated or padded file?)",
                       (unsigned long long)pos, (unsigned long long)st->data_size);
    return VTTT_OK;
}

/* Checks every entry of the parsed header and fills st->entries. */
static int parse_entries(vttt_st *st) {
    int total = cJSON_GetArraySize(st->root);
    st->entries = calloc((size_t)(total ? total : 1), sizeof *st->entries);
    const char **names = malloc((size_t)(total ? total : 1) * sizeof *names);
    int err = st->entries && names ? VTTT_OK : st_fail(&st->lg, st->path, VTTT_ENOMEM, "out of memory");
    const cJSON *item;
    cJSON_ArrayForEach(item, st->root) {
        if (err) break;
        if (strcmp(item->string, "__metadata__") == 0) {
            if (st->meta) err = st_fail(&st->lg, st->path, VTTT_EFORMAT, "\"__metadata__\" appears twice");
            else err = check_metadata(st, item);
            st->meta = item;
            continue;
        }
        err = parse_entry(st, item, &st->entries[st->n]);
        names[st->n++] = item->string;
    }
    const char *dup = NULL;
    if (!err) err = first_duplicate(names, st->n, &dup);
    if (!err && dup) err = st_fail(&st->lg, st->path, VTTT_EFORMAT, "tensor '%s' appears twice", dup);
    free(names);
    return err ? err : check_layout(st);
}

/* Parses the hlen-byte JSON header (copied, so that the parser cannot read
 * past it) into st->root. */
static int parse_header(vttt_st *st, const char *hdr, size_t hlen) {
    if (hdr[0] != '{')
        return st_fail(&st->lg, st->path, VTTT_EFORMAT, "header does not start with '{' (not a safetensors file?)");
    char *copy = malloc(hlen + 1);
    if (!copy) return st_fail(&st->lg, st->path, VTTT_ENOMEM, "no memory for a %zu-byte header", hlen);
    memcpy(copy, hdr, hlen);
    copy[hlen] = '\0';
    const char *end = NULL;
    st->root = cJSON_ParseWithLengthOpts(copy, hlen, &end, 0);
    size_t pos = end ? (size_t)(end - copy) : 0;
    int err = VTTT_OK;
    if (!st->root) {
        err = st_fail(&st->lg, st->path, VTTT_EFORMAT, "header is not valid JSON (error near byte %zu of %zu)",
                      pos, hlen);
    } else if (!cJSON_IsObject(st->root)) {
        err = st_fail(&st->lg, st->path, VTTT_EFORMAT, "header is not a JSON object");
    } else {
        while (pos < hlen && (copy[pos] == ' ' || copy[pos] == '\t' || copy[pos] == '\n' || copy[pos] == '\r'))
            pos++;
        if (pos < hlen)
            err = st_fail(&st->lg, st->path, VTTT_EFORMAT, "unexpected bytes after the header's JSON (byte %zu of %zu)",
                          pos, hlen);
    }
    free(copy);
    return err ? err : parse_entries(st);
}

/* Maps the whole file read-only. */
static int map_file(vttt_st *st) {
    int fd = open(st->path, O_RDONLY | O_NONBLOCK | O_CLOEXEC); /* a FIFO must not block the open */
    if (fd < 0) return st_fail(&st->lg, st->path, VTTT_EIO, "cannot open: %s", strerror(errno));
    struct stat sb;
    int err = VTTT_OK;
    if (fstat(fd, &sb) != 0) err = st_fail(&st->lg, st->path, VTTT_EIO, "cannot stat: %s", strerror(errno));
    else if (!S_ISREG(sb.st_mode)) err = st_fail(&st->lg, st->path, VTTT_EIO, "not a regular file");
    else if (sb.st_size < 8)
        err = st_fail(&st->lg, st->path, VTTT_EFORMAT,
                      "file is %lld bytes, shorter than the 8-byte header length (truncated?)", (long long)sb.st_size);
    if (!err) {
        void *p = mmap(NULL, (size_t)sb.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
        if (p == MAP_FAILED) err = st_fail(&st->lg, st->path, VTTT_EIO, "cannot map: %s", strerror(errno));
        else st->map = p, st->map_size = (size_t)sb.st_size;
    }
    close(fd);
    return err;
}

static int parse_file(vttt_st *st) {
    const uint8_t *p = st->map;
    uint64_t hlen = 0;
    for (int i = 7; i >= 0; i--) hlen = hlen << 8 | p[i];
    uint64_t room = st->map_size - 8;
    if (hlen == 0) return st_fail(&st->lg, st->path, VTTT_EFORMAT, "header length is 0");
    if (hlen > ST_MAX_HEADER)
        return st_fail(&st->lg, st->path, VTTT_EFORMAT, "header length %llu is over the %llu-byte limit",
                       (unsigned long long)hlen, ST_MAX_HEADER);
    if (hlen > room)
        return st_fail(&st->lg, st->path, VTTT_EFORMAT,
                       "header length %llu is more than the %llu bytes after it (truncated?)",
                       (unsigned long long)hlen, (unsigned long long)room);
    st->data = p + 8 + hlen;
    st->data_size = room - hlen;
    return parse_header(st, (const char *)p + 8, (size_t)hlen);
}

int vttt_st_open(vttt_st **out, const char *path, const vttt_logger *lg) {
    if (!out) return VTTT_EINVAL;
    *out = NULL;
    if (!path) return st_fail(lg, "(null)", VTTT_EINVAL, "no path given");
    vttt_st *st = calloc(1, sizeof *st);
    if (!st || !(st->path = strdup(path))) {
        free(st);
        return st_fail(lg, path, VTTT_ENOMEM, "out of memory");
    }
    if (lg) st->lg = *lg;
    int err = map_file(st);
    if (!err) err = parse_file(st);
    if (err) {
        vttt_st_close(&st);
        return err;
    }
    *out = st;
    return VTTT_OK;
}

void vttt_st_close(vttt_st **pst) {
    if (!pst || !*pst) return;
    vttt_st *st = *pst;
    if (st->map) munmap(st->map, st->map_size);
    cJSON_Delete(st->root);
    free(st->entries);
    free(st->path);
    free(st);
    *pst = NULL;
}

int vttt_st_count(const vttt_st *st) { return st ? st->n : 0; }

int vttt_st_get(const vttt_st *st, int i, vttt_st_tensor *t) {
    if (!st || !t || i < 0 || i >= st->n) return VTTT_EINVAL;
    const st_entry *e = &st->entries[i];
    memset(t, 0, sizeof *t);
    t->name = e->name;
    t->dtype = e->dtype;
    t->ndim = e->ndim;
    memcpy(t->shape, e->shape, sizeof e->shape);
    t->data = st->data + e->begin;
    t->nbytes = (size_t)(e->end - e->begin);
    return VTTT_OK;
}

int vttt_st_find(const vttt_st *st, const char *name, vttt_st_tensor *t) {
    if (!st || !name || !t) return VTTT_EINVAL;
    for (int i = 0; i < st->n; i++)
        if (strcmp(st->entries[i].name, name) == 0) return vttt_st_get(st, i, t);
    return st_fail(&st->lg, st->path, VTTT_EINVAL, "no tensor named '%s'", name);
}

const char *vttt_st_meta(const vttt_st *st, const char *key) {
    if (!st || !st->meta || !key) return NULL;
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(st->meta, key);
    return cJSON_IsString(v) ? v->valuestring : NULL;
}

/* IEEE half to float, subnormals, infinities and NaN included. */
static float f16_to_f32(uint16_t h) {
    uint32_t sign = (uint32_t)(h & 0x8000u) << 16, exp = (h >> 10) & 0x1fu, man = h & 0x3ffu, u;
    float f;
    if (exp == 0x1f) {
        u = sign | 0x7f800000u | man << 13;
    } else if (exp) {
        u = sign | (exp + 112) << 23 | man << 13;
    } else {
        f = (float)man * 5.9604644775390625e-8f;   /* man * 2^-24, exact */
        memcpy(&u, &f, 4);
        u |= sign;
    }
    memcpy(&f, &u, 4);
    return f;
}

/* Converts n elements of a floating dtype to fp32; src may be unaligned. */
static void convert_to_f32(float *dst, const uint8_t *src, vttt_st_dtype dt, size_t n) {
    for (size_t i = 0; i < n; i++) {
        uint16_t h;
        double d;
        switch (dt) {
        case VTTT_ST_F32: memcpy(&dst[i], src + 4 * i, 4); break;
        case VTTT_ST_F16: memcpy(&h, src + 2 * i, 2); dst[i] = f16_to_f32(h); break;
        case VTTT_ST_BF16: memcpy(&h, src + 2 * i, 2); dst[i] = vttt_bf16_to_f32(h); break;
        default: memcpy(&d, src + 8 * i, 8); dst[i] = (float)d; break;   /* F64 */
        }
    }
}

int vttt_st_read_f32(const vttt_st *st, const char *name, float *dst, int ndim, const int64_t *shape) {
    vttt_st_tensor t = {0};
    int err = vttt_st_find(st, name, &t);
    if (err) return err;
    int same = ndim == t.ndim && (ndim == 0 || shape);
    for (int i = 0; same && i < ndim; i++) same = shape[i] == t.shape[i];
    char want[256], got[256];
    if (!same)
        return st_fail(&st->lg, st->path, VTTT_EINVAL, "tensor '%s' has shape %s, expected %s", name,
                       fmt_shape(got, sizeof got, t.ndim, t.shape),
                       shape ? fmt_shape(want, sizeof want, ndim, shape) : "(none)");
    if (t.dtype != VTTT_ST_F32 && t.dtype != VTTT_ST_F16 && t.dtype != VTTT_ST_BF16 && t.dtype != VTTT_ST_F64)
        return st_fail(&st->lg, st->path, VTTT_EINVAL, "tensor '%s' is %s, which does not convert to F32", name,
                       st_dtypes[t.dtype].name);
    if (t.nbytes && !dst) return VTTT_EINVAL;
    convert_to_f32(dst, t.data, t.dtype, t.nbytes / st_dtypes[t.dtype].size);
    return VTTT_OK;
}

/* ---- writing ------------------------------------------------------------ */

/* A growing byte buffer; oom sticks once an allocation fails. */
typedef struct st_buf {
    char *p;
    size_t len, cap;
    int oom;
} st_buf;

static void buf_put(st_buf *b, const char *s, size_t n) {
    if (b->oom) return;
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap < b->len + n + 1) cap *= 2;
        char *p = realloc(b->p, cap);
        if (!p) {
            b->oom = 1;
            return;
        }
        b->p = p, b->cap = cap;
    }
    memcpy(b->p + b->len, s, n);
    b->len += n;
    b->p[b->len] = '\0';
}

static void buf_puts(st_buf *b, const char *s) { buf_put(b, s, strlen(s)); }

static void buf_put_u64(st_buf *b, uint64_t v) {
    char tmp[32];
    buf_put(b, tmp, (size_t)snprintf(tmp, sizeof tmp, "%llu", (unsigned long long)v));
}

/* A JSON string literal: quotes, backslashes and control bytes escaped;
 * other bytes (UTF-8) pass through. */
static void buf_put_json_string(st_buf *b, const char *s) {
    buf_puts(b, "\"");
    for (const unsigned char *c = (const unsigned char *)s; *c; c++) {
        char esc[8];
        if (*c == '"' || *c == '\\') {
            esc[0] = '\\', esc[1] = (char)*c;
            buf_put(b, esc, 2);
        } else if (*c < 0x20) {
            buf_put(b, esc, (size_t)snprintf(esc, sizeof esc, "\\u%04x", *c));
        } else {
            buf_put(b, (const char *)c, 1);
        }
    }
    buf_puts(b, "\"");
}

/* Checks the caller's tensors and metadata (VTTT_EINVAL with a message). */
static int check_write_args(const char *path, const vttt_st_tensor *ts, int n, const char *const *kv, int n_meta,
                            const vttt_logger *lg) {
    if (n < 0 || n_meta < 0 || (n && !ts) || (n_meta && !kv))
        return st_fail(lg, path, VTTT_EINVAL, "bad tensor or metadata list");
    for (int i = 0; i < 2 * n_meta; i++)
        if (!kv[i]) return st_fail(lg, path, VTTT_EINVAL, "metadata entry %d is NULL", i / 2);
    char sh[256];
    for (int i = 0; i < n; i++) {
        const vttt_st_tensor *t = &ts[i];
        uint64_t bytes;
        if (!t->name || strcmp(t->name, "__metadata__") == 0)
            return st_fail(lg, path, VTTT_EINVAL, "tensor %d has no name or a reserved one", i);
        if ((unsigned)t->dtype >= VTTT_ST_NUM_DTYPES || t->ndim < 0 || t->ndim > VTTT_ST_MAX_DIMS)
            return st_fail(lg, path, VTTT_EINVAL, "tensor '%s': bad dtype %d or ndim %d", t->name, (int)t->dtype,
                           t->ndim);
        if (shape_bytes(t->ndim, t->shape, st_dtypes[t->dtype].size, &bytes) || bytes != t->nbytes ||
            (bytes && !t->data))
            return st_fail(lg, path, VTTT_EINVAL, "tensor '%s': %s %s does not match its %zu bytes of data", t->name,
                           st_dtypes[t->dtype].name, fmt_shape(sh, sizeof sh, t->ndim, t->shape), t->nbytes);
    }
    const char **names = malloc((size_t)(n + n_meta + 1) * sizeof *names);
    if (!names) return st_fail(lg, path, VTTT_ENOMEM, "out of memory");
    for (int i = 0; i < n; i++) names[i] = ts[i].name;
    const char *dup = NULL, *dup_meta = NULL;
    int err = first_duplicate(names, n, &dup);
    for (int i = 0; i < n_meta; i++) names[i] = kv[2 * i];
    if (!err) err = first_duplicate(names, n_meta, &dup_meta);
    free(names);
    if (err) return st_fail(lg, path, err, "out of memory");
    if (dup || dup_meta)
        return st_fail(lg, path, VTTT_EINVAL, "%s '%s' appears twice", dup ? "tensor" : "metadata key",
                       dup ? dup : dup_meta);
    return VTTT_OK;
}

/* The JSON header, padded with spaces to a multiple of 8 bytes, in b. */
static void build_header(st_buf *b, const vttt_st_tensor *ts, int n, const char *const *kv, int n_meta) {
    buf_puts(b, "{");
    if (n_meta) {
        buf_puts(b, "\"__metadata__\":{");
        for (int i = 0; i < n_meta; i++) {
            if (i) buf_puts(b, ",");
            buf_put_json_string(b, kv[2 * i]);
            buf_puts(b, ":");
            buf_put_json_string(b, kv[2 * i + 1]);
        }
        buf_puts(b, "}");
    }
    uint64_t off = 0;
    for (int i = 0; i < n; i++) {
        if (i || n_meta) buf_puts(b, ",");
        buf_put_json_string(b, ts[i].name);
        buf_puts(b, ":{\"dtype\":\"");
        buf_puts(b, st_dtypes[ts[i].dtype].name);
        buf_puts(b, "\",\"shape\":[");
        for (int d = 0; d < ts[i].ndim; d++) {
            if (d) buf_puts(b, ",");
            buf_put_u64(b, (uint64_t)ts[i].shape[d]);
        }
        buf_puts(b, "],\"data_offsets\":[");
        buf_put_u64(b, off);
        buf_puts(b, ",");
        off += ts[i].nbytes;
        buf_put_u64(b, off);
        buf_puts(b, "]}");
    }
    buf_puts(b, "}");
    while (!b->oom && b->len % 8) buf_puts(b, " ");
}

/* Writes the whole file to tmp and syncs it to disk. VTTT_EIO (logged
 * against tmp) on failure; the caller removes tmp. */
static int write_tmp(const char *tmp, const st_buf *hdr, const vttt_st_tensor *ts, int n, const vttt_logger *lg) {
    FILE *f = fopen(tmp, "wb");
    if (!f) return st_fail(lg, tmp, VTTT_EIO, "cannot create: %s", strerror(errno));
    uint8_t len8[8];
    for (int i = 0; i < 8; i++) len8[i] = (uint8_t)((uint64_t)hdr->len >> (8 * i));
    int ok = fwrite(len8, 1, 8, f) == 8 && fwrite(hdr->p, 1, hdr->len, f) == hdr->len;
    for (int i = 0; ok && i < n; i++)
        ok = ts[i].nbytes == 0 || fwrite(ts[i].data, 1, ts[i].nbytes, f) == ts[i].nbytes;
    ok = ok && fflush(f) == 0 && fsync(fileno(f)) == 0;
    int saved = errno;
    if (fclose(f) != 0 && ok) ok = 0, saved = errno;
    if (!ok) return st_fail(lg, tmp, VTTT_EIO, "write failed: %s", strerror(saved));
    return VTTT_OK;
}

/* Makes a rename in path's directory durable. File systems that cannot
 * sync a directory (EINVAL) are accepted. */
static int sync_parent_dir(const char *path, const vttt_logger *lg) {
    char *dir = strdup(path);
    if (!dir) return st_fail(lg, path, VTTT_ENOMEM, "out of memory");
    char *slash = strrchr(dir, '/');
    if (slash) slash[slash == dir] = '\0';   /* "/x" keeps "/", "a/b/x" becomes "a/b" */
    int fd = open(slash ? dir : ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    int err = VTTT_OK;
    if (fd < 0 || (fsync(fd) != 0 && errno != EINVAL))
        err = st_fail(lg, path, VTTT_EIO, "written, but syncing its directory failed: %s", strerror(errno));
    if (fd >= 0) close(fd);
    free(dir);
    return err;
}

int vttt_st_write(const char *path, const vttt_st_tensor *tensors, int n, const char *const *meta_kv, int n_meta,
                  const vttt_logger *lg) {
    if (!path) return st_fail(lg, "(null)", VTTT_EINVAL, "no path given");
    int err = check_write_args(path, tensors, n, meta_kv, n_meta, lg);
    if (err) return err;
    st_buf hdr = {0};
    build_header(&hdr, tensors, n, meta_kv, n_meta);
    size_t tlen = strlen(path) + 32;
    char *tmp = malloc(tlen);
    if (hdr.oom || !tmp) err = st_fail(lg, path, VTTT_ENOMEM, "out of memory");
    else if (hdr.len > ST_MAX_HEADER)
        err = st_fail(lg, path, VTTT_EINVAL, "header would be %zu bytes, over the %llu-byte limit", hdr.len,
                      ST_MAX_HEADER);
    if (!err) {
        snprintf(tmp, tlen, "%s.tmp.%ld", path, (long)getpid());
        err = write_tmp(tmp, &hdr, tensors, n, lg);
        if (!err && rename(tmp, path) != 0)
            err = st_fail(lg, path, VTTT_EIO, "cannot rename %s over it: %s", tmp, strerror(errno));
        if (err) unlink(tmp);
        else err = sync_parent_dir(path, lg);
    }
    free(tmp);
    free(hdr.p);
    return err;
}
