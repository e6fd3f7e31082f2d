/* Token shards in llm.c's layout: uint16/uint32 round trips, a hand-built
 * llm.c file, range reads, and every way a shard can be malformed. */
#define _POSIX_C_SOURCE 200809L

#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "ingest.h"
#include "testutil.h"

/* An llm.c-style file made by hand: header ints h0, h1, h2, then nbytes of
 * token data taken from data. */
static void write_llmc(const char *path, int32_t h0, int32_t h1, int32_t h2, const void *data, size_t nbytes) {
    uint8_t *buf = calloc(1, 1024 + nbytes);
    int32_t h[3] = {h0, h1, h2};
    for (int i = 0; i < 3; i++)
        for (int b = 0; b < 4; b++) buf[4 * i + b] = (uint8_t)((uint32_t)h[i] >> (8 * b));
    if (nbytes) memcpy(buf + 1024, data, nbytes);
    tu_write_file(path, buf, 1024 + nbytes);
    free(buf);
}

/* Opening must give want; a failure must log a message naming the file
 * and containing needle. */
static void expect_reject(const char *path, int want, const char *needle) {
    tu_log cap;
    vttt_logger lg = tu_log_capture(&cap, VTTT_LOG_DEBUG, 1);
    vttt_token_shard *s = (vttt_token_shard *)&cap;
    int err = vttt_token_shard_open(&s, path, &lg);
    ck_assert_msg(err == want, "got %d, want %d; log: %s", err, want, cap.text);
    if (want == VTTT_OK) {
        vttt_token_shard_close(&s);
        return;
    }
    ck_assert_ptr_null(s);
    ck_assert_msg(strstr(cap.text, path) != NULL, "message does not name the file: %s", cap.text);
    ck_assert_msg(strstr(cap.text, needle) != NULL, "message lacks '%s': %s", needle, cap.text);
}

/* ---- round trips -------------------------------------------------------- */

static void round_trip(int token_size, int32_t max_id) {
    char dir[64], path[128];
    tu_tmpdir(dir, sizeof dir, "shard");
    snprintf(path, sizeof path, "%s/train_000000.bin", dir);
    enum { N = 100003 };
    int32_t *ids = malloc(N * sizeof *ids), *back = malloc(N * sizeof *back);
    tu_rng r;
    tu_seed(&r, (uint64_t)token_size);
    for (int i = 0; i < N; i++) ids[i] = (int32_t)(tu_uniform(&r) * (float)max_id);
    ids[0] = 0;
    ids[1] = max_id;
    /* streamed in uneven pieces */
    vttt_token_shard_writer *w;
    ck_assert_int_eq(vttt_token_shard_writer_open(&w, path, token_size, NULL), 0);
    for (int i = 0; i < N;) {
        int k = 1 + (int)(tu_uniform(&r) * 40000);
        if (k > N - i) k = N - i;
        ck_assert_int_eq(vttt_token_shard_writer_append(w, ids + i, (size_t)k), 0);
        i += k;
        ck_assert(access(path, F_OK) != 0);   /* nothing at the final name yet */
    }
    ck_assert_int_eq(vttt_token_shard_writer_count(w), N);
    ck_assert_int_eq(vttt_token_shard_writer_close(&w), 0);
    ck_assert_ptr_null(w);
    ck_assert_int_eq(tu_count_entries(dir), 1);   /* no temporary file left */

    vttt_token_shard *s;
    ck_assert_int_eq(vttt_token_shard_open(&s, path, NULL), 0);
    ck_assert_int_eq(vttt_token_shard_count(s), N);
    ck_assert_int_eq(vttt_token_shard_token_size(s), token_size);
    ck_assert_int_eq(vttt_token_shard_max_id(s), max_id);
    ck_assert_int_eq(vttt_token_shard_read(s, 0, N, back), 0);
    ck_assert(!memcmp(ids, back, N * sizeof *ids));
    ck_assert_int_eq(vttt_token_shard_read(s, 777, 5, back), 0);
    ck_assert(!memcmp(ids + 777, back, 5 * sizeof *ids));
    ck_assert_int_eq(vttt_token_shard_read(s, N, 0, back), 0);
    tu_log cap;
    vttt_logger lg = tu_log_capture(&cap, VTTT_LOG_DEBUG, 1);
    vttt_token_shard_close(&s);
    ck_assert_int_eq(vttt_token_shard_open(&s, path, &lg), 0);
    ck_assert_int_eq(vttt_token_shard_read(s, N - 2, 3, back), VTTT_EINVAL);
    ck_assert_int_eq(vttt_token_shard_read(s, -1, 1, back), VTTT_EINVAL);
    ck_assert_int_eq(vttt_token_shard_read(s, 0, -1, back), VTTT_EINVAL);
    ck_assert_ptr_nonnull(strstr(cap.text, "holds 100003"));
    vttt_token_shard_close(&s);

    /* the header is llm.c's */
    FILE *f = fopen(path, "rb");
    int32_t hdr[256];
    ck_assert_uint_eq(fread(hdr, 4, 256, f), 256);
    fclose(f);
    ck_assert_int_eq(hdr[0], token_size == 2 ? 20240520 : 20240801);
    ck_assert_int_eq(hdr[1], token_size == 2 ? 1 : 7);
    ck_assert_int_eq(hdr[2], N);
    for (int i = 3; i < 256; i++) ck_assert_int_eq(hdr[i], 0);
    free(ids);
    free(back);
    tu_rm_rf(dir);
}

START_TEST(test_round_trip_u16) { round_trip(2, 65535); }
END_TEST

START_TEST(test_round_trip_u32) { round_trip(4, INT32_MAX); }
END_TEST

START_TEST(test_empty_shard_and_one_call_writer) {
    char dir[64], path[128];
    tu_tmpdir(dir, sizeof dir, "shard");
    snprintf(path, sizeof path, "%s/val_000000.bin", dir);
    ck_assert_int_eq(vttt_token_shard_write(path, NULL, 0, 2, NULL), 0);
    vttt_token_shard *s;
    ck_assert_int_eq(vttt_token_shard_open(&s, path, NULL), 0);
    ck_assert_int_eq(vttt_token_shard_count(s), 0);
    ck_assert_int_eq(vttt_token_shard_max_id(s), -1);
    vttt_token_shard_close(&s);
    const int32_t ids[] = {5, 50256, 7};
    ck_assert_int_eq(vttt_token_shard_write(path, ids, 3, 2, NULL), 0);   /* replaces it */
    ck_assert_int_eq(vttt_token_shard_open(&s, path, NULL), 0);
    ck_assert_int_eq(vttt_token_shard_count(s), 3);
    vttt_token_shard_close(&s);
    ck_assert_int_eq(vttt_token_size_for_vocab(50257), 2);
    ck_assert_int_eq(vttt_token_size_for_vocab(65536), 2);
    ck_assert_int_eq(vttt_token_size_for_vocab(65537), 4);
    tu_rm_rf(dir);
}
END_TEST

/* Ids that do not fit are refused; an aborted writer leaves nothing. */
START_TEST(test_writer_rejects) {
    char dir[64], path[128];
    tu_tmpdir(dir, sizeof dir, "shard");
    snprintf(path, sizeof path, "%s/x.bin", dir);
    tu_log cap;
    vttt_logger lg = tu_log_capture(&cap, VTTT_LOG_DEBUG, 1);
    vttt_token_shard_writer *w;
    const int32_t big[] = {1, 65536}, neg[] = {-1};
    ck_assert_int_eq(vttt_token_shard_writer_open(&w, path, 3, &lg), VTTT_EINVAL);
    ck_assert_ptr_null(w);
    ck_assert_int_eq(vttt_token_shard_writer_open(&w, path, 2, &lg), 0);
    ck_assert_int_eq(vttt_token_shard_writer_append(w, big, 2), VTTT_EINVAL);
    ck_assert_ptr_nonnull(strstr(cap.text, "65536"));
    vttt_token_shard_writer_abort(&w);
    ck_assert_ptr_null(w);
    ck_assert_int_eq(tu_count_entries(dir), 0);
    ck_assert_int_eq(vttt_token_shard_write(path, neg, 1, 4, &lg), VTTT_EINVAL);
    ck_assert_int_eq(tu_count_entries(dir), 0);
    ck_assert_int_eq(vttt_token_shard_write("/nonexistent/dir/x.bin", big, 1, 2, &lg), VTTT_EIO);
    tu_rm_rf(dir);
}
END_TEST

/* ---- llm.c files -------------------------------------------------------- */

/* A GPT-2 shard as llm.c's write_datafile makes it: ints 20240520, 1, n,
 * zeros, then uint16 little-endian tokens (50256 = <|endoftext|>). */
START_TEST(test_reads_llmc_gpt2_shard) {
    char dir[64], path[128];
    tu_tmpdir(dir, sizeof dir, "shard");
    snprintf(path, sizeof path, "%s/fineweb_val_000000.bin", dir);
    const uint8_t toks[] = {0x50, 0xc4, 0x64, 0x00, 0xff, 0xff, 0x00, 0x00, 0x34, 0x12};   /* 50256 100 65535 0 0x1234 */
    write_llmc(path, 20240520, 1, 5, toks, sizeof toks);
    vttt_token_shard *s;
    ck_assert_int_eq(vttt_token_shard_open(&s, path, NULL), 0);
    ck_assert_int_eq(vttt_token_shard_count(s), 5);
    ck_assert_int_eq(vttt_token_shard_token_size(s), 2);
    int32_t out[5];
    ck_assert_int_eq(vttt_token_shard_read(s, 0, 5, out), 0);
    const int32_t want[] = {50256, 100, 65535, 0, 0x1234};
    ck_assert(!memcmp(out, want, sizeof want));
    vttt_token_shard_close(&s);

    /* llm.c's uint32 (Llama-3) shard, version 7, and version 1 */
    const uint8_t t32[] = {0x01, 0x00, 0x02, 0x00, 0xff, 0xff, 0xff, 0x7f};   /* 131073, INT32_MAX */
    for (int version = 1; version <= 7; version += 6) {
        write_llmc(path, 20240801, version, 2, t32, sizeof t32);
        ck_assert_int_eq(vttt_token_shard_open(&s, path, NULL), 0);
        ck_assert_int_eq(vttt_token_shard_read(s, 0, 2, out), 0);
        ck_assert(out[0] == 131073 && out[1] == INT32_MAX);
        vttt_token_shard_close(&s);
    }
    /* an id past int32 is refused when read */
    const uint8_t t_big[] = {0x00, 0x00, 0x00, 0x80};
    write_llmc(path, 20240801, 7, 1, t_big, sizeof t_big);
    tu_log cap;
    vttt_logger lg = tu_log_capture(&cap, VTTT_LOG_DEBUG, 1);
    ck_assert_int_eq(vttt_token_shard_open(&s, path, &lg), 0);
    ck_assert_int_eq(vttt_token_shard_read(s, 0, 1, out), VTTT_EFORMAT);
    ck_assert_ptr_nonnull(strstr(cap.text, "2147483648"));
    vttt_token_shard_close(&s);
    tu_rm_rf(dir);
}
END_TEST

/* ---- malformed shards --------------------------------------------------- */

START_TEST(test_rejects_malformed) {
    char dir[64], path[128];
    tu_tmpdir(dir, sizeof dir, "shard");
    snprintf(path, sizeof path, "%s/bad.bin", dir);
    uint8_t data[64] = {0};
    write_llmc(path, 20240520, 1, 10, data, 20);
    expect_reject(path, VTTT_OK, "");   /* the good one, for reference */
    write_llmc(path, 20240520, 1, 10, data, 19);
    expect_reject(path, VTTT_EFORMAT, "truncated");
    write_llmc(path, 20240520, 1, 10, data, 0);
    expect_reject(path, VTTT_EFORMAT, "truncated");
    write_llmc(path, 20240520, 1, 9, data, 20);
    expect_reject(path, VTTT_EFORMAT, "2 bytes follow");
    write_llmc(path, 20240801, 7, 10, data, 20);
    expect_reject(path, VTTT_EFORMAT, "truncated");
    write_llmc(path, 12345, 1, 10, data, 20);
    expect_reject(path, VTTT_EFORMAT, "magic number 12345");
    write_llmc(path, 20240520, 7, 10, data, 20);
    expect_reject(path, VTTT_EFORMAT, "version 7");
    write_llmc(path, 20240520, 2, 10, data, 20);
    expect_reject(path, VTTT_EFORMAT, "version 2");
    write_llmc(path, 20240520, 1, -4, data, 20);
    expect_reject(path, VTTT_EFORMAT, "negative");
    tu_write_file(path, data, 0);
    expect_reject(path, VTTT_EFORMAT, "shorter than the 1024-byte header");
    tu_write_file(path, data, 12);
    expect_reject(path, VTTT_EFORMAT, "shorter than the 1024-byte header");
    snprintf(path, sizeof path, "%s/missing.bin", dir);
    expect_reject(path, VTTT_EIO, "cannot open");
    expect_reject(dir, VTTT_EIO, "not a regular file");
    tu_rm_rf(dir);
}
END_TEST

/* A real shard cut at every length is rejected, never read short. */
START_TEST(test_rejects_every_truncation) {
    char dir[64], path[128], cut[128];
    tu_tmpdir(dir, sizeof dir, "shard");
    snprintf(path, sizeof path, "%s/full.bin", dir);
    snprintf(cut, sizeof cut, "%s/cut.bin", dir);
    int32_t ids[300];
    for (int i = 0; i < 300; i++) ids[i] = i * 7;
    ck_assert_int_eq(vttt_token_shard_write(path, ids, 300, 4, NULL), 0);
    FILE *f = fopen(path, "rb");
    uint8_t buf[1024 + 1200];
    ck_assert_uint_eq(fread(buf, 1, sizeof buf, f), sizeof buf);
    fclose(f);
    tu_log cap;
    vttt_logger lg = tu_log_capture(&cap, VTTT_LOG_DEBUG, 1);
    for (size_t n = 0; n < sizeof buf; n += (n > 1000 ? 1 : 37)) {
        tu_write_file(cut, buf, n);
        vttt_token_shard *s;
        ck_assert_msg(vttt_token_shard_open(&s, cut, &lg) == VTTT_EFORMAT, "cut at %zu accepted", n);
        ck_assert_ptr_null(s);
    }
    tu_rm_rf(dir);
}
END_TEST

int main(void) {
    TCase *tc = tcase_create("core");
    tcase_add_test(tc, test_round_trip_u16);
    tcase_add_test(tc, test_round_trip_u32);
    tcase_add_test(tc, test_empty_shard_and_one_call_writer);
    tcase_add_test(tc, test_writer_rejects);
    tcase_add_test(tc, test_reads_llmc_gpt2_shard);
    tcase_add_test(tc, test_rejects_malformed);
    tcase_add_test(tc, test_rejects_every_truncation);
    return tu_run("token_shard", tc, CK_FORK_GETENV);
}
