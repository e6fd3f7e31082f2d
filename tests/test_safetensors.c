/* safetensors I/O: round trips, a hand-made file in the reference layout,
 * every malformed-header case, truncation and corruption robustness, shape
 * checks, fp16/bf16 conversion and the writer's atomicity. */
#define _POSIX_C_SOURCE 200809L

#include <check.h>
#include <fcntl.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include "safetensors.h"
#include "testutil.h"

/* ---- helpers ------------------------------------------------------------ */

/* Writes a safetensors file by hand: the 8-byte length hlen (little-endian),
 * the header text, then dlen data bytes (0x11, 0x22, ...). */
static void write_raw(const char *path, uint64_t hlen, const char *header, size_t dlen) {
    size_t htext = strlen(header);
    unsigned char *buf = malloc(8 + htext + dlen + 1);
    for (int i = 0; i < 8; i++) buf[i] = (unsigned char)(hlen >> (8 * i));
    memcpy(buf + 8, header, htext);
    for (size_t i = 0; i < dlen; i++) buf[8 + htext + i] = (unsigned char)(0x11 * (i + 1));
    tu_write_file(path, buf, 8 + htext + dlen);
    free(buf);
}

/* A header with its true length and dlen data bytes must fail to open with
 * `want`, logging a message that names the file and contains `needle`. */
static void expect_reject(const char *header, size_t dlen, int want, const char *needle) {
    char dir[64], path[128];
    tu_tmpdir(dir, sizeof dir, "st");
    snprintf(path, sizeof path, "%s/bad.safetensors", dir);
    write_raw(path, strlen(header), header, dlen);
    tu_log cap;
    vttt_logger lg = tu_log_capture(&cap, VTTT_LOG_DEBUG, 0);
    vttt_st *st = (vttt_st *)&cap;   /* must be reset to NULL */
    int err = vttt_st_open(&st, path, &lg);
    ck_assert_msg(err == want, "header %s: got %d (%s), want %d; log: %s", header, err, vttt_strerror(err), want,
                  cap.text);
    ck_assert_ptr_null(st);
    ck_assert_msg(strstr(cap.text, path) != NULL, "message does not name the file: %s", cap.text);
    ck_assert_msg(strstr(cap.text, needle) != NULL, "message lacks '%s': %s", needle, cap.text);
    tu_rm_rf(dir);
}

/* The tensors of the round-trip test, every supported kind of shape. */
enum { RT_N = 11 };
static const float rt_f32[6] = {1.5f, -2.25f, 3.0f, 0.0f, 1e-20f, -7e30f};
static const uint16_t rt_f16[4] = {0x3c00, 0xc000, 0x3555, 0x0001};
static const uint16_t rt_bf16[4] = {0x3f80, 0xc040, 0x3e80, 0x4049};
static const double rt_f64[3] = {0.1, -1e300, 12345.678};
static const int32_t rt_i32[2] = {-5, 2147483647};
static const int64_t rt_i64[1] = {-9000000000000000000LL};
static const uint8_t rt_u8[5] = {0, 1, 2, 254, 255};
static const uint16_t rt_u16[3] = {0, 65535, 1234};
static const float rt_scalar[1] = {42.0f};
static const uint8_t rt_bool[3] = {1, 0, 1};

static void rt_tensors(vttt_st_tensor *t) {
    memset(t, 0, RT_N * sizeof *t);
    t[0] = (vttt_st_tensor){"model.w", VTTT_ST_F32, 2, {2, 3}, rt_f32, sizeof rt_f32};
    t[1] = (vttt_st_tensor){"half", VTTT_ST_F16, 1, {4}, rt_f16, sizeof rt_f16};
    t[2] = (vttt_st_tensor){"brain", VTTT_ST_BF16, 2, {2, 2}, rt_bf16, sizeof rt_bf16};
    t[3] = (vttt_st_tensor){"double", VTTT_ST_F64, 1, {3}, rt_f64, sizeof rt_f64};
    t[4] = (vttt_st_tensor){"i32", VTTT_ST_I32, 1, {2}, rt_i32, sizeof rt_i32};
    t[5] = (vttt_st_tensor){"i64", VTTT_ST_I64, 3, {1, 1, 1}, rt_i64, sizeof rt_i64};
    t[6] = (vttt_st_tensor){"u8", VTTT_ST_U8, 1, {5}, rt_u8, sizeof rt_u8};
    t[7] = (vttt_st_tensor){"u16", VTTT_ST_U16, 1, {3}, rt_u16, sizeof rt_u16};
    t[8] = (vttt_st_tensor){"scalar", VTTT_ST_F32, 0, {0}, rt_scalar, sizeof rt_scalar};
    t[9] = (vttt_st_tensor){"empty", VTTT_ST_F32, 2, {0, 4}, NULL, 0};
    t[10] = (vttt_st_tensor){"flags \"quoted\"\n", VTTT_ST_BOOL, 1, {3}, rt_bool, sizeof rt_bool};
}

static const char *const rt_meta[] = {"format", "pt", "note", "a \"quote\", a \\ and a\ttab\nnewline", "empty", ""};

/* Writes the round-trip file into dir; returns its path in path. */
static void write_rt_file(const char *dir, char *path, size_t size) {
    vttt_st_tensor t[RT_N];
    rt_tensors(t);
    snprintf(path, size, "%s/model.safetensors", dir);
    ck_assert_int_eq(vttt_st_write(path, t, RT_N, rt_meta, 3, NULL), VTTT_OK);
}

/* ---- round trips --------------------------------------------------------- */

START_TEST(test_round_trip) {
    char dir[64], path[128];
    tu_tmpdir(dir, sizeof dir, "st");
    write_rt_file(dir, path, sizeof path);
    vttt_st_tensor want[RT_N], got;
    rt_tensors(want);
    vttt_st *st = NULL;
    ck_assert_int_eq(vttt_st_open(&st, path, NULL), VTTT_OK);
    ck_assert_int_eq(vttt_st_count(st), RT_N);
    for (int i = 0; i < RT_N; i++) {
        ck_assert_int_eq(vttt_st_get(st, i, &got), VTTT_OK);   /* file order = written order */
        ck_assert_str_eq(got.name, want[i].name);
        ck_assert_int_eq(got.dtype, want[i].dtype);
        ck_assert_int_eq(got.ndim, want[i].ndim);
        for (int d = 0; d < got.ndim; d++) ck_assert_int_eq(got.shape[d], want[i].shape[d]);
        ck_assert_uint_eq(got.nbytes, want[i].nbytes);
        if (got.nbytes) ck_assert_mem_eq(got.data, want[i].data, got.nbytes);
    }
    ck_assert_int_eq(vttt_st_get(st, RT_N, &got), VTTT_EINVAL);
    ck_assert_str_eq(vttt_st_meta(st, "format"), "pt");
    ck_assert_str_eq(vttt_st_meta(st, "note"), rt_meta[3]);
    ck_assert_str_eq(vttt_st_meta(st, "empty"), "");
    ck_assert_ptr_null(vttt_st_meta(st, "absent"));

    float w[6], s, e[1];
    ck_assert_int_eq(vttt_st_read_f32(st, "model.w", w, 2, (const int64_t[]){2, 3}), VTTT_OK);
    ck_assert_mem_eq(w, rt_f32, sizeof w);
    ck_assert_int_eq(vttt_st_read_f32(st, "scalar", &s, 0, NULL), VTTT_OK);
    ck_assert_float_eq(s, 42.0f);
    ck_assert_int_eq(vttt_st_read_f32(st, "empty", e, 2, (const int64_t[]){0, 4}), VTTT_OK);
    ck_assert_int_eq(vttt_st_find(st, "flags \"quoted\"\n", &got), VTTT_OK);
    vttt_st_close(&st);
    ck_assert_ptr_null(st);
    vttt_st_close(&st);   /* closing NULL is fine */
    tu_rm_rf(dir);
}
END_TEST

/* The writer's bytes: padded header, contiguous offsets, data in order. */
START_TEST(test_writer_layout) {
    char dir[64], path[128];
    tu_tmpdir(dir, sizeof dir, "st");
    const float a[2] = {1, 2};
    const uint16_t b[1] = {0x3f80};
    vttt_st_tensor t[2] = {{"b", VTTT_ST_F32, 1, {2}, a, 8}, {"a", VTTT_ST_BF16, 1, {1}, b, 2}};
    snprintf(path, sizeof path, "%s/x.safetensors", dir);
    ck_assert_int_eq(vttt_st_write(path, t, 2, NULL, 0, NULL), VTTT_OK);
    size_t n;
    unsigned char *p = tu_read_file(path, &n);
    const char *hdr = "{\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
                      "\"a\":{\"dtype\":\"BF16\",\"shape\":[1],\"data_offsets\":[8,10]}}";
    size_t hlen = (strlen(hdr) + 7) / 8 * 8;
    ck_assert_uint_eq(n, 8 + hlen + 10);
    ck_assert_uint_eq(p[0] | p[1] << 8, hlen);
    for (int i = 2; i < 8; i++) ck_assert_uint_eq(p[i], 0);
    ck_assert_mem_eq(p + 8, hdr, strlen(hdr));
    for (size_t i = 8 + strlen(hdr); i < 8 + hlen; i++) ck_assert_uint_eq(p[i], ' ');
    ck_assert_mem_eq(p + 8 + hlen, a, 8);
    ck_assert_mem_eq(p + 8 + hlen + 8, b, 2);
    free(p);

    /* No tensors at all is a valid (8-byte "{}" padded) file. */
    ck_assert_int_eq(vttt_st_write(path, NULL, 0, NULL, 0, NULL), VTTT_OK);
    vttt_st *st = NULL;
    ck_assert_int_eq(vttt_st_open(&st, path, NULL), VTTT_OK);
    ck_assert_int_eq(vttt_st_count(st), 0);
    vttt_st_close(&st);
    ck_assert_int_eq(tu_count_entries(dir), 1);   /* no temporary file left */
    tu_rm_rf(dir);
}
END_TEST

/* A file laid out as Python's safetensors writes it: metadata first, the
 * tensor with the larger alignment first, header padded with spaces; the
 * JSON lists the tensors out of offset order. */
START_TEST(test_python_layout) {
    const char *hdr = "{\"__metadata__\":{\"format\":\"pt\"},"
                      "\"layer.bias\":{\"dtype\":\"BF16\",\"shape\":[3],\"data_offsets\":[16,22]},"
                      "\"layer.weight\":{\"dtype\":\"F32\",\"shape\":[2,2],\"data_offsets\":[0,16]}}"
                      "    ";
    ck_assert_uint_eq(strlen(hdr) % 8, 0);
    unsigned char buf[512];
    size_t hl = strlen(hdr), k = 0;
    for (int i = 0; i < 8; i++) buf[k++] = (unsigned char)(hl >> (8 * i));
    memcpy(buf + k, hdr, hl);
    k += hl;
    const float w[4] = {0.5f, -1.0f, 2.0f, 1e-3f};
    memcpy(buf + k, w, 16);
    k += 16;
    const unsigned char bias[6] = {0x80, 0x3f, 0x00, 0xc0, 0x49, 0x40};   /* bf16 1, -2, 3.140625 */
    memcpy(buf + k, bias, 6);
    k += 6;

    char dir[64], path[128];
    tu_tmpdir(dir, sizeof dir, "st");
    snprintf(path, sizeof path, "%s/py.safetensors", dir);
    tu_write_file(path, buf, k);
    vttt_st *st = NULL;
    ck_assert_int_eq(vttt_st_open(&st, path, NULL), VTTT_OK);
    ck_assert_int_eq(vttt_st_count(st), 2);
    vttt_st_tensor t;
    ck_assert_int_eq(vttt_st_get(st, 0, &t), VTTT_OK);
    ck_assert_str_eq(t.name, "layer.weight");   /* ordered by data offsets */
    ck_assert_str_eq(vttt_st_meta(st, "format"), "pt");
    float got_w[4], got_b[3];
    ck_assert_int_eq(vttt_st_read_f32(st, "layer.weight", got_w, 2, (const int64_t[]){2, 2}), VTTT_OK);
    ck_assert_mem_eq(got_w, w, sizeof w);
    ck_assert_int_eq(vttt_st_read_f32(st, "layer.bias", got_b, 1, (const int64_t[]){3}), VTTT_OK);
    ck_assert_float_eq(got_b[0], 1.0f);
    ck_assert_float_eq(got_b[1], -2.0f);
    ck_assert_float_eq(got_b[2], 3.140625f);
    vttt_st_close(&st);
    tu_rm_rf(dir);
}
END_TEST

/* ---- malformed files ------------------------------------------------------ */

START_TEST(test_reject_short_and_bad_lengths) {
    char dir[64], path[128];
    tu_tmpdir(dir, sizeof dir, "st");
    snprintf(path, sizeof path, "%s/f.safetensors", dir);
    tu_log cap;
    vttt_logger lg = tu_log_capture(&cap, VTTT_LOG_DEBUG, 0);
    vttt_st *st = NULL;

    tu_write_file(path, "\x02\0\0\0\0", 5);
    ck_assert_int_eq(vttt_st_open(&st, path, &lg), VTTT_EFORMAT);
    ck_assert_ptr_nonnull(strstr(cap.text, "shorter than"));

    write_raw(path, 0, "{}      ", 0);
    ck_assert_int_eq(vttt_st_open(&st, path, &lg), VTTT_EFORMAT);
    ck_assert_ptr_nonnull(strstr(cap.text, "header length is 0"));

    write_raw(path, 200000000ull, "{}      ", 0);
    ck_assert_int_eq(vttt_st_open(&st, path, &lg), VTTT_EFORMAT);
    ck_assert_ptr_nonnull(strstr(cap.text, "limit"));

    write_raw(path, UINT64_MAX, "{}      ", 0);
    ck_assert_int_eq(vttt_st_open(&st, path, &lg), VTTT_EFORMAT);

    char nul_hdr[8] = {'{', '}', '\0', ' ', ' ', ' ', ' ', ' '};   /* a NUL in the padding */
    unsigned char raw[16] = {8};
    memcpy(raw + 8, nul_hdr, 8);
    tu_write_file(path, raw, 16);
    ck_assert_int_eq(vttt_st_open(&st, path, &lg), VTTT_EFORMAT);
    ck_assert_ptr_nonnull(strstr(cap.text, "after the header"));

    write_raw(path, 9, "{}      ", 0);   /* one byte more than there is */
    ck_assert_int_eq(vttt_st_open(&st, path, &lg), VTTT_EFORMAT);
    ck_assert_ptr_nonnull(strstr(cap.text, "truncated"));
    ck_assert_ptr_null(st);

    snprintf(path, sizeof path, "%s/missing.safetensors", dir);
    ck_assert_int_eq(vttt_st_open(&st, path, &lg), VTTT_EIO);
    ck_assert_ptr_nonnull(strstr(cap.text, "No such file"));
    ck_assert_int_eq(vttt_st_open(&st, dir, &lg), VTTT_EIO);   /* a directory */
    tu_rm_rf(dir);
}
END_TEST

#define T_(name, body) "\"" name "\":{" body "}"
#define F32_4(off) "\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":" off

START_TEST(test_reject_bad_json) {
    expect_reject("{\"a\":", 0, VTTT_EFORMAT, "not valid JSON");
    expect_reject("[1, 2]  ", 0, VTTT_EFORMAT, "start with");
    expect_reject(" {}     ", 0, VTTT_EFORMAT, "start with");
    expect_reject("{} xx   ", 0, VTTT_EFORMAT, "after the header");
    expect_reject("{\"a\":1}", 0, VTTT_EFORMAT, "not a JSON object");
    expect_reject("{\"a\":[]}", 0, VTTT_EFORMAT, "not a JSON object");
    expect_reject("{\"__metadata__\":[]}", 0, VTTT_EFORMAT, "__metadata__");
    expect_reject("{\"__metadata__\":{\"k\":1}}", 0, VTTT_EFORMAT, "'k' is not a string");
    expect_reject("{\"__metadata__\":{\"k\":\"v\",\"k\":\"w\"}}", 0, VTTT_EFORMAT, "'k' appears twice");
    expect_reject("{\"__metadata__\":{},\"__metadata__\":{}}", 0, VTTT_EFORMAT, "appears twice");
}
END_TEST

START_TEST(test_reject_bad_entries) {
    /* missing or mistyped fields */
    expect_reject("{" T_("a", "\"shape\":[1],\"data_offsets\":[0,4]") "}", 4, VTTT_EFORMAT, "dtype");
    expect_reject("{" T_("a", "\"dtype\":\"F32\",\"data_offsets\":[0,4]") "}", 4, VTTT_EFORMAT, "shape");
    expect_reject("{" T_("a", "\"dtype\":\"F32\",\"shape\":[1]") "}", 4, VTTT_EFORMAT, "data_offsets");
    expect_reject("{" T_("a", "\"dtype\":4,\"shape\":[1],\"data_offsets\":[0,4]") "}", 4, VTTT_EFORMAT, "dtype");
    expect_reject("{" T_("a", "\"dtype\":\"F32\",\"shape\":\"1\",\"data_offsets\":[0,4]") "}", 4, VTTT_EFORMAT,
                  "shape");
    expect_reject("{" T_("a", F32_4("\"0,4\"")) "}", 4, VTTT_EFORMAT, "data_offsets");
    expect_reject("{" T_("a", F32_4("[0,4,8]")) "}", 4, VTTT_EFORMAT, "data_offsets");
    expect_reject("{" T_("a", F32_4("[0]")) "}", 4, VTTT_EFORMAT, "data_offsets");
    expect_reject("{" T_("a", F32_4("[\"0\",4]")) "}", 4, VTTT_EFORMAT, "data_offsets");
    expect_reject("{" T_("a", F32_4("[0,4.5]")) "}", 4, VTTT_EFORMAT, "data_offsets");
    /* dtypes */
    expect_reject("{" T_("a", "\"dtype\":\"F17\",\"shape\":[1],\"data_offsets\":[0,4]") "}", 4, VTTT_EFORMAT,
                  "unknown");
    expect_reject("{" T_("a", "\"dtype\":\"f32\",\"shape\":[1],\"data_offsets\":[0,4]") "}", 4, VTTT_EFORMAT,
                  "unknown");
    /* shapes */
    expect_reject("{" T_("a", "\"dtype\":\"F32\",\"shape\":[-1],\"data_offsets\":[0,4]") "}", 4, VTTT_EFORMAT,
                  "shape[0]");
    expect_reject("{" T_("a", "\"dtype\":\"F32\",\"shape\":[1,2.5],\"data_offsets\":[0,4]") "}", 4, VTTT_EFORMAT,
                  "shape[1]");
    expect_reject("{" T_("a", "\"dtype\":\"F32\",\"shape\":[\"1\"],\"data_offsets\":[0,4]") "}", 4, VTTT_EFORMAT,
                  "shape[0]");
    expect_reject("{" T_("a", "\"dtype\":\"F32\",\"shape\":[1e300],\"data_offsets\":[0,4]") "}", 4, VTTT_EFORMAT,
                  "shape[0]");
    expect_reject("{" T_("a", "\"dtype\":\"F32\",\"shape\":[4294967296,4294967296,4294967296],"
                              "\"data_offsets\":[0,4]") "}",
                  4, VTTT_EFORMAT, "overflows");
    expect_reject("{" T_("a", "\"dtype\":\"F32\",\"shape\":[1,1,1,1,1,1,1,1,1],\"data_offsets\":[0,4]") "}", 4,
                  VTTT_ENOTSUP, "9 dims");
}
END_TEST

START_TEST(test_reject_bad_offsets) {
    expect_reject("{" T_("a", F32_4("[4,0]")) "}", 4, VTTT_EFORMAT, "outside");
    expect_reject("{" T_("a", F32_4("[4,8]")) "}", 4, VTTT_EFORMAT, "outside");
    expect_reject("{" T_("a", F32_4("[0,-4]")) "}", 4, VTTT_EFORMAT, "data_offsets");
    expect_reject("{" T_("a", F32_4("[0,8]")) "}", 8, VTTT_EFORMAT, "needs 4 bytes");
    expect_reject("{" T_("a", F32_4("[0,4]")) "," T_("b", F32_4("[0,4]")) "}", 4, VTTT_EFORMAT, "overlap");
    expect_reject("{" T_("a", "\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]") "," T_("b", F32_4("[4,8]"))
                      "}",
                  8, VTTT_EFORMAT, "overlap");
    expect_reject("{" T_("a", F32_4("[0,4]")) "," T_("b", F32_4("[8,12]")) "}", 12, VTTT_EFORMAT, "belong to no");
    expect_reject("{" T_("a", F32_4("[4,8]")) "}", 8, VTTT_EFORMAT, "belong to no");
    expect_reject("{" T_("a", F32_4("[0,4]")) "}", 8, VTTT_EFORMAT, "cover 4 bytes");
    expect_reject("{}", 3, VTTT_EFORMAT, "cover 0 bytes");
    expect_reject("{" T_("a", F32_4("[0,4]")) "," T_("a", F32_4("[4,8]")) "}", 8, VTTT_EFORMAT,
                  "'a' appears twice");
}
END_TEST

/* Every proper prefix of a valid file is rejected, cleanly (the copy is cut
 * down one byte at a time, longest first). */
START_TEST(test_truncated_files) {
    char dir[64], path[128], cut[160];
    tu_tmpdir(dir, sizeof dir, "st");
    write_rt_file(dir, path, sizeof path);
    size_t n;
    unsigned char *p = tu_read_file(path, &n);
    snprintf(cut, sizeof cut, "%s/cut.safetensors", dir);
    tu_write_file(cut, p, n);
    tu_log cap;
    vttt_logger lg = tu_log_capture(&cap, VTTT_LOG_DEBUG, 0);
    for (size_t len = n; len-- > 0;) {
        ck_assert_int_eq(truncate(cut, (off_t)len), 0);
        vttt_st *st = NULL;
        int err = vttt_st_open(&st, cut, &lg);
        ck_assert_msg(err == VTTT_EFORMAT, "length %zu of %zu: %d", len, n, err);
        ck_assert_ptr_null(st);
    }
    free(p);
    tu_rm_rf(dir);
}
END_TEST

/* Overwriting any header byte with JSON-significant characters never
 * crashes; whatever opens must have self-consistent tensors. */
START_TEST(test_corrupted_headers) {
    char dir[64], path[128];
    tu_tmpdir(dir, sizeof dir, "st");
    write_rt_file(dir, path, sizeof path);
    size_t n;
    unsigned char *p = tu_read_file(path, &n);
    size_t hlen = p[0] | (size_t)p[1] << 8;
    int fd = open(path, O_WRONLY);
    ck_assert_int_ge(fd, 0);
    tu_log cap;
    vttt_logger lg = tu_log_capture(&cap, VTTT_LOG_DEBUG, 0);
    const char subst[] = {'"', '{', '}', ']', ',', '9', '-', '\0', '\\'};
    for (size_t i = 0; i < 8 + hlen; i++) {
        for (size_t s = 0; s < sizeof subst; s++) {
            ck_assert_int_eq(pwrite(fd, &subst[s], 1, (off_t)i), 1);
            vttt_st *st = NULL;
            if (vttt_st_open(&st, path, &lg) != VTTT_OK) continue;
            size_t total = 0;
            for (int k = 0; k < vttt_st_count(st); k++) {
                vttt_st_tensor t;
                ck_assert_int_eq(vttt_st_get(st, k, &t), VTTT_OK);
                total += t.nbytes;
            }
            ck_assert_uint_eq(8 + hlen + total, n);
            vttt_st_close(&st);
        }
        ck_assert_int_eq(pwrite(fd, &p[i], 1, (off_t)i), 1);
    }
    close(fd);
    free(p);
    tu_rm_rf(dir);
}
END_TEST

/* ---- reading ---------------------------------------------------------------- */

START_TEST(test_read_shape_checks) {
    char dir[64], path[128];
    tu_tmpdir(dir, sizeof dir, "st");
    write_rt_file(dir, path, sizeof path);
    tu_log cap;
    vttt_logger lg = tu_log_capture(&cap, VTTT_LOG_DEBUG, 0);
    vttt_st *st = NULL;
    ck_assert_int_eq(vttt_st_open(&st, path, &lg), VTTT_OK);
    float buf[16];
    ck_assert_int_eq(vttt_st_read_f32(st, "model.w", buf, 2, (const int64_t[]){3, 2}), VTTT_EINVAL);
    ck_assert_ptr_nonnull(strstr(cap.text, "'model.w'"));
    ck_assert_ptr_nonnull(strstr(cap.text, "[2, 3]"));
    ck_assert_ptr_nonnull(strstr(cap.text, "[3, 2]"));
    ck_assert_ptr_nonnull(strstr(cap.text, path));
    ck_assert_int_eq(vttt_st_read_f32(st, "model.w", buf, 1, (const int64_t[]){6}), VTTT_EINVAL);
    ck_assert_int_eq(vttt_st_read_f32(st, "model.w", buf, 3, (const int64_t[]){2, 3, 1}), VTTT_EINVAL);
    ck_assert_int_eq(vttt_st_read_f32(st, "scalar", buf, 1, (const int64_t[]){1}), VTTT_EINVAL);
    ck_assert_int_eq(vttt_st_read_f32(st, "i32", buf, 1, (const int64_t[]){2}), VTTT_EINVAL);
    ck_assert_ptr_nonnull(strstr(cap.text, "I32"));
    ck_assert_int_eq(vttt_st_read_f32(st, "nope", buf, 1, (const int64_t[]){2}), VTTT_EINVAL);
    ck_assert_ptr_nonnull(strstr(cap.text, "'nope'"));
    vttt_st_tensor t;
    ck_assert_int_eq(vttt_st_find(st, "nope", &t), VTTT_EINVAL);
    vttt_st_close(&st);
    tu_rm_rf(dir);
}
END_TEST

START_TEST(test_half_conversions) {
    char dir[64], path[128];
    tu_tmpdir(dir, sizeof dir, "st");
    const uint16_t h[] = {0x3c00, 0xc000, 0x7bff, 0x0001, 0x03ff, 0x0400, 0x7c00, 0xfc00, 0x8000, 0x3555, 0x7e00};
    const float hf[] = {1.0f, -2.0f, 65504.0f, 5.9604644775390625e-8f, 6.0975551605224609375e-5f,
                        6.103515625e-5f, INFINITY, -INFINITY, -0.0f, 0.333251953125f, NAN};
    const uint16_t b[] = {0x3f80, 0xc040, 0x3e80, 0x4049, 0x7f80, 0x0001, 0x8000};
    const float bf[] = {1.0f, -3.0f, 0.25f, 3.140625f, INFINITY, 9.18354961579912115600575419705e-41f, -0.0f};
    const double d[] = {0.1, -2.5, 1e-50};
    enum { NH = sizeof h / 2, NB = sizeof b / 2, ND = sizeof d / 8 };
    vttt_st_tensor t[3] = {{"h", VTTT_ST_F16, 1, {NH}, h, sizeof h},
                           {"b", VTTT_ST_BF16, 1, {NB}, b, sizeof b},
                           {"d", VTTT_ST_F64, 1, {ND}, d, sizeof d}};
    snprintf(path, sizeof path, "%s/half.safetensors", dir);
    ck_assert_int_eq(vttt_st_write(path, t, 3, NULL, 0, NULL), VTTT_OK);
    vttt_st *st = NULL;
    ck_assert_int_eq(vttt_st_open(&st, path, NULL), VTTT_OK);
    float out[16];
    ck_assert_int_eq(vttt_st_read_f32(st, "h", out, 1, (const int64_t[]){NH}), VTTT_OK);
    for (int i = 0; i < NH; i++) {
        if (isnan(hf[i])) ck_assert(isnan(out[i]));
        else ck_assert_msg(out[i] == hf[i] && signbit(out[i]) == signbit(hf[i]), "f16 %04x: %g != %g", h[i],
                           (double)out[i], (double)hf[i]);
    }
    ck_assert_int_eq(vttt_st_read_f32(st, "b", out, 1, (const int64_t[]){NB}), VTTT_OK);
    for (int i = 0; i < NB; i++)
        ck_assert_msg(out[i] == bf[i] && signbit(out[i]) == signbit(bf[i]), "bf16 %04x: %g != %g", b[i],
                      (double)out[i], (double)bf[i]);
    ck_assert_int_eq(vttt_st_read_f32(st, "d", out, 1, (const int64_t[]){ND}), VTTT_OK);
    for (int i = 0; i < ND; i++) ck_assert_float_eq(out[i], (float)d[i]);
    vttt_st_close(&st);
    tu_rm_rf(dir);
}
END_TEST

/* ---- atomic writes ---------------------------------------------------------- */

static const float aw_old[2] = {1, 2};
static const float aw_new[64] = {3};

/* Writes the "old" file at dir/m.safetensors and returns its bytes. */
static unsigned char *write_old(const char *dir, char *path, size_t size, size_t *n) {
    vttt_st_tensor t = {"w", VTTT_ST_F32, 1, {2}, aw_old, sizeof aw_old};
    snprintf(path, size, "%s/m.safetensors", dir);
    ck_assert_int_eq(vttt_st_write(path, &t, 1, NULL, 0, NULL), VTTT_OK);
    return tu_read_file(path, n);
}

static void assert_unchanged(const char *path, const unsigned char *old, size_t n_old) {
    size_t n;
    unsigned char *now = tu_read_file(path, &n);
    ck_assert_uint_eq(n, n_old);
    ck_assert_mem_eq(now, old, n);
    free(now);
}

START_TEST(test_write_bad_targets) {
    char dir[64], path[160];
    tu_tmpdir(dir, sizeof dir, "st");
    tu_log cap;
    vttt_logger lg = tu_log_capture(&cap, VTTT_LOG_DEBUG, 0);
    vttt_st_tensor t = {"w", VTTT_ST_F32, 1, {64}, aw_new, sizeof aw_new};

    snprintf(path, sizeof path, "%s/no/such/dir/m.safetensors", dir);
    ck_assert_int_eq(vttt_st_write(path, &t, 1, NULL, 0, &lg), VTTT_EIO);
    ck_assert_ptr_nonnull(strstr(cap.text, "No such file"));
    ck_assert_int_eq(tu_count_entries(dir), 0);

    /* The target is a directory: the rename fails, the directory stays, no
     * temporary file is left beside it. */
    snprintf(path, sizeof path, "%s/sub", dir);
    ck_assert_int_eq(mkdir(path, 0755), 0);
    char inner[200];
    snprintf(inner, sizeof inner, "%s/keep", path);
    tu_write_file(inner, "x", 1);
    ck_assert_int_eq(vttt_st_write(path, &t, 1, NULL, 0, &lg), VTTT_EIO);
    ck_assert_ptr_nonnull(strstr(cap.text, "rename"));
    struct stat sb;
    ck_assert_int_eq(stat(inner, &sb), 0);
    ck_assert_int_eq(tu_count_entries(dir), 1);
    tu_rm_rf(dir);
}
END_TEST

/* A write that fails halfway (file-size limit) leaves the old file as it
 * was and removes its temporary file. */
START_TEST(test_write_failure_keeps_old_file) {
    char dir[64], path[128];
    tu_tmpdir(dir, sizeof dir, "st");
    size_t n_old;
    unsigned char *old = write_old(dir, path, sizeof path, &n_old);

    struct rlimit saved, lim;
    ck_assert_int_eq(getrlimit(RLIMIT_FSIZE, &saved), 0);
    lim = saved;
    lim.rlim_cur = 100;   /* bytes; the new file is ~330 */
    signal(SIGXFSZ, SIG_IGN);
    tu_log cap;
    vttt_logger lg = tu_log_capture(&cap, VTTT_LOG_DEBUG, 0);
    vttt_st_tensor t = {"w", VTTT_ST_F32, 1, {64}, aw_new, sizeof aw_new};
    /* No ck_assert while the limit holds: Check writes its own files. */
    int rc = setrlimit(RLIMIT_FSIZE, &lim);
    int err = vttt_st_write(path, &t, 1, NULL, 0, &lg);
    ck_assert_int_eq(setrlimit(RLIMIT_FSIZE, &saved), 0);
    ck_assert_int_eq(rc, 0);
    ck_assert_int_eq(err, VTTT_EIO);
    ck_assert_ptr_nonnull(strstr(cap.text, "write failed"));
    assert_unchanged(path, old, n_old);
    ck_assert_int_eq(tu_count_entries(dir), 1);

    /* Invalid requests touch nothing either. */
    vttt_st_tensor dup[2] = {t, t};
    ck_assert_int_eq(vttt_st_write(path, dup, 2, NULL, 0, &lg), VTTT_EINVAL);
    ck_assert_ptr_nonnull(strstr(cap.text, "appears twice"));
    t.nbytes -= 4;
    ck_assert_int_eq(vttt_st_write(path, &t, 1, NULL, 0, &lg), VTTT_EINVAL);
    t.nbytes += 4;
    t.dtype = VTTT_ST_NUM_DTYPES;
    ck_assert_int_eq(vttt_st_write(path, &t, 1, NULL, 0, &lg), VTTT_EINVAL);
    const char *meta[] = {"k", "a", "k", "b"};
    t.dtype = VTTT_ST_F32;
    ck_assert_int_eq(vttt_st_write(path, &t, 1, meta, 2, &lg), VTTT_EINVAL);
    assert_unchanged(path, old, n_old);
    ck_assert_int_eq(tu_count_entries(dir), 1);

    /* A good write replaces it. */
    ck_assert_int_eq(vttt_st_write(path, &t, 1, meta, 1, &lg), VTTT_OK);
    vttt_st *st = NULL;
    ck_assert_int_eq(vttt_st_open(&st, path, &lg), VTTT_OK);
    ck_assert_int_eq(vttt_st_read_f32(st, "w", (float[64]){0}, 1, (const int64_t[]){64}), VTTT_OK);
    vttt_st_close(&st);
    free(old);
    tu_rm_rf(dir);
}
END_TEST

int main(void) {
    TCase *tc = tcase_create("core");
    tcase_add_test(tc, test_round_trip);
    tcase_add_test(tc, test_writer_layout);
    tcase_add_test(tc, test_python_layout);
    tcase_add_test(tc, test_reject_short_and_bad_lengths);
    tcase_add_test(tc, test_reject_bad_json);
    tcase_add_test(tc, test_reject_bad_entries);
    tcase_add_test(tc, test_reject_bad_offsets);
    tcase_add_test(tc, test_truncated_files);
    tcase_add_test(tc, test_corrupted_headers);
    tcase_add_test(tc, test_read_shape_checks);
    tcase_add_test(tc, test_half_conversions);
    tcase_add_test(tc, test_write_bad_targets);
    tcase_add_test(tc, test_write_failure_keeps_old_file);
    return tu_run("safetensors", tc, CK_FORK_GETENV);
}
