/* The readers of small input files, read whole and strictly: JSON files
 * (any size up to the caller's cap, one document, nothing after it),
 * meta.json beside token shards (every field checked, a broken one an
 * error), and FIFOs given for any input file (JSON, meta.json, tokenizer,
 * shards, model config, safetensors) refused at once instead of blocking in
 * open(). */
#define _POSIX_C_SOURCE 200809L

#include <check.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "data_meta.h"
#include "ingest.h"
#include "json_file.h"
#include "model.h"
#include "safetensors.h"
#include "testutil.h"

/* A JSON object of about n bytes: {"pad": ["xxxx...", ...], "last": 1}. */
static char *big_json(size_t n) {
    char *s = malloc(n + 64);
    size_t k = (size_t)sprintf(s, "{\"pad\": [");
    while (k < n) k += (size_t)sprintf(s + k, "\"%s\",", "0123456789abcdef0123456789abcdef");
    sprintf(s + k, "\"end\"], \"last\": 1}\n");
    return s;
}

START_TEST(test_json_any_size_one_document) {
    char dir[64], path[128];
    tu_tmpdir(dir, sizeof dir, "files");
    snprintf(path, sizeof path, "%s/a.json", dir);
    char *big = big_json(300000);
    tu_write_file(path, big, strlen(big));
    cJSON *j = NULL;
    tu_log c;
    vttt_logger lg = tu_log_capture(&c, VTTT_LOG_WARNING, 1);
    ck_assert_int_eq(vttt_json_file_read(&j, path, 1 << 20, "cannot open", "(hint)", &lg), VTTT_OK);
    ck_assert_int_eq(vttt_json_count(j, "last"), 1);
    cJSON_Delete(j);
    ck_assert_int_eq(vttt_json_file_read(&j, path, 1 << 16, "cannot open", "(hint)", &lg), VTTT_EFORMAT);
    ck_assert_msg(strstr(c.text, path) && strstr(c.text, "larger than 64 KiB (hint)"), "%s", c.text);
    ck_assert_ptr_null(j);
    /* one document: trailing data or a second document is malformed */
    const char *bad[] = {"{} x", "{}{}", "{\"a\": 1", "", "{}\0{}"};
    const size_t bad_n[] = {4, 4, 7, 0, 5};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        tu_write_file(path, bad[i], bad_n[i]);
        ck_assert_msg(vttt_json_file_read(&j, path, 1 << 20, "cannot open", "(hint)", &lg) == VTTT_EFORMAT,
                      "case %zu accepted", i);
        ck_assert_ptr_null(j);
        ck_assert_msg(vttt_json_parse(&j, bad[i], bad_n[i], "buf", "", &lg) == VTTT_EFORMAT, "case %zu", i);
    }
    ck_assert_ptr_nonnull(strstr(c.text, "not valid JSON"));
    tu_write_file(path, " {\"a\": [1, 2]}\n\n", 16);
    ck_assert_int_eq(vttt_json_file_read(&j, path, 1 << 20, "cannot open", "(hint)", &lg), VTTT_OK);
    cJSON_Delete(j);
    free(big);
    tu_rm_rf(dir);
}
END_TEST

/* Parsing must give want; a failure must log a message naming the file
 * and containing needle. */
static void expect_meta(const char *text, int want, const char *needle, vttt_data_meta *m) {
    tu_log c;
    vttt_logger lg = tu_log_capture(&c, VTTT_LOG_WARNING, 1);
    int err = vttt_data_meta_parse(m, text, strlen(text), "d/meta.json", &lg);
    ck_assert_msg(err == want, "%s: got %d, want %d (%s)", text, err, want, c.text);
    if (want)
        ck_assert_msg(strstr(c.text, "d/meta.json: ") && strstr(c.text, needle), "%s: message '%s' lacks '%s'",
                      text, c.text, needle);
}

START_TEST(test_meta_fields_checked) {
    vttt_data_meta m;
    expect_meta("{\"format\": \"llm.c token shards\", \"vocab_size\": 1024, \"eot\": 1023}", VTTT_OK, "", &m);
    ck_assert(m.vocab_size == 1024 && m.eot == 1023 && m.tokens_per_frame == 0 && m.fps_den == 0);
    expect_meta("{\"kind\": \"video\", \"vocab_size\": 1000, \"tokens_per_frame\": 64, \"fps\": \"30000/1001\"}",
                VTTT_OK, "", &m);
    ck_assert(m.vocab_size == 1000 && m.eot == -1 && m.tokens_per_frame == 64);
    ck_assert(m.fps_num == 30000 && m.fps_den == 1001);
    expect_meta("{\"kind\": \"video\", \"vocab_size\": 1000, \"tokens_per_frame\": 4, \"fps\": \"0/1\"}", VTTT_OK, "",
                &m);
    expect_meta("{\"kind\": \"video\", \"vocab_size\": 1000, \"tok", VTTT_EFORMAT, "not valid JSON", &m);
    expect_meta("[1000]", VTTT_EFORMAT, "not a JSON object", &m);
    expect_meta("{\"eot\": 3}", VTTT_EFORMAT, "vocab_size", &m);
    expect_meta("{\"vocab_size\": 0}", VTTT_EFORMAT, "vocab_size", &m);
    expect_meta("{\"vocab_size\": 2.5}", VTTT_EFORMAT, "vocab_size", &m);
    expect_meta("{\"vocab_size\": \"300\"}", VTTT_EFORMAT, "vocab_size", &m);
    expect_meta("{\"vocab_size\": 3e12}", VTTT_EFORMAT, "vocab_size", &m);
    expect_meta("{\"vocab_size\": 300, \"eot\": 300}", VTTT_EFORMAT, "eot", &m);
    expect_meta("{\"vocab_size\": 300, \"eot\": -1}", VTTT_EFORMAT, "eot", &m);
    expect_meta("{\"vocab_size\": 300, \"kind\": \"audio\"}", VTTT_EFORMAT, "kind", &m);
    expect_meta("{\"vocab_size\": 300, \"kind\": \"video\"}", VTTT_EFORMAT, "tokens_per_frame", &m);
    expect_meta("{\"vocab_size\": 300, \"kind\": \"video\", \"tokens_per_frame\": 0}", VTTT_EFORMAT,
                "tokens_per_frame", &m);
    expect_meta("{\"vocab_size\": 300, \"kind\": \"text\", \"tokens_per_frame\": 16}", VTTT_EFORMAT,
                "tokens_per_frame", &m);
    expect_meta("{\"vocab_size\": 300, \"tokens_per_frame\": 1e9}", VTTT_EFORMAT, "tokens_per_frame", &m);
    const char *fps[] = {"\"-1/0\"", "\"30/0\"", "\"30\"", "\"30/1x\"", "\" 30/1\"", "30", "\"-30/1\""};
    for (size_t i = 0; i < sizeof fps / sizeof *fps; i++) {
        char text[128];
        snprintf(text, sizeof text, "{\"kind\": \"video\", \"vocab_size\": 9, \"tokens_per_frame\": 4, \"fps\": %s}",
                 fps[i]);
        expect_meta(text, VTTT_EFORMAT, "fps", &m);
    }
}
END_TEST

START_TEST(test_meta_read_whole_or_refuse) {
    char dir[64], path[128];
    tu_tmpdir(dir, sizeof dir, "files");
    snprintf(path, sizeof path, "%s/meta.json", dir);
    vttt_data_meta m;
    ck_assert_int_eq(vttt_data_meta_read(&m, path, NULL), VTTT_EOF); /* none: text, nothing known */
    ck_assert(m.vocab_size == 0 && m.eot == -1 && m.tokens_per_frame == 0);
    /* a video dataset's meta.json listing two thousand sources: over 64 KiB */
    size_t cap = 1 << 20, k = 0;
    char *s = malloc(cap);
    k += (size_t)sprintf(s, "{\"kind\": \"video\", \"vocab_size\": 1000, \"sources\": [");
    for (int i = 0; i < 2000; i++) k += (size_t)sprintf(s + k, "{\"source\": \"videos/clip_%05d.mp4\"},", i);
    k += (size_t)sprintf(s + k, "{}], \"tokens_per_frame\": 64}");
    ck_assert_uint_gt(k, 65536);
    tu_write_file(path, s, k);
    ck_assert_int_eq(vttt_data_meta_read(&m, path, NULL), VTTT_OK);
    ck_assert_int_eq(m.tokens_per_frame, 64);
    /* cut anywhere: an error naming the file, never "text" */
    tu_log c;
    vttt_logger lg = tu_log_capture(&c, VTTT_LOG_WARNING, 0);
    for (size_t cut = 0; cut < k; cut += 7919) {
        tu_write_file(path, s, cut);
        ck_assert_msg(vttt_data_meta_read(&m, path, &lg) == VTTT_EFORMAT, "cut at %zu accepted", cut);
        ck_assert_msg(strstr(c.text, path) != NULL, "message does not name the file: %s", c.text);
    }
    /* unreadable: a directory in its place */
    unlink(path);
    ck_assert_int_eq(mkdir(path, 0755), 0);
    ck_assert_int_eq(vttt_data_meta_read(&m, path, &lg), VTTT_EIO);
    ck_assert_msg(strstr(c.text, path) && strstr(c.text, "directory"), "%s", c.text);
    free(s);
    tu_rm_rf(dir);
}
END_TEST

/* Every input file reader refuses a FIFO nobody writes to at once (it used
 * to block in open() forever); the alarm fails the test if one blocks. */
START_TEST(test_fifo_inputs_refused) {
    char dir[64], path[128];
    tu_tmpdir(dir, sizeof dir, "files");
    snprintf(path, sizeof path, "%s/meta.json", dir);
    ck_assert_int_eq(mkfifo(path, 0644), 0);
    alarm(20);
    tu_log c;
    vttt_logger lg = tu_log_capture(&c, VTTT_LOG_WARNING, 1);
    cJSON *j = NULL;
    vttt_data_meta m;
    vttt_bpe *bpe = NULL;
    vttt_frame_shard *fs = NULL;
    vttt_token_shard *ts = NULL;
    ck_assert_int_eq(vttt_json_file_read(&j, path, 1 << 20, "cannot open", "", &lg), VTTT_EIO);
    ck_assert_int_eq(vttt_data_meta_read(&m, path, &lg), VTTT_EIO);
    ck_assert_int_eq(vttt_bpe_load(&bpe, path, &lg), VTTT_EIO);
    ck_assert_int_eq(vttt_frame_shard_open(&fs, path, &lg), VTTT_EIO);
    ck_assert_int_eq(vttt_token_shard_open(&ts, path, &lg), VTTT_EIO);
    vttt_model_config cfg;
    ck_assert_int_eq(vttt_model_config_read(&cfg, path, &lg), VTTT_EIO);
    vttt_st *st = NULL;
    ck_assert_int_eq(vttt_st_open(&st, path, &lg), VTTT_EIO);
    alarm(0);
    ck_assert_msg(strstr(c.text, "a FIFO, not a regular file") != NULL, "%s", c.text);
    tu_rm_rf(dir);
}
END_TEST

/* The tokenizer file from memory: a header announcing more merges than the
 * bytes can hold is refused before anything is allocated for them. */
START_TEST(test_bpe_parse_buffer) {
    vttt_bpe *b = NULL;
    char dir[64], path[128];
    tu_tmpdir(dir, sizeof dir, "files");
    snprintf(path, sizeof path, "%s/tok.bpe", dir);
    const int32_t merges[] = {'a', 'b', 'c', 'd', 256, 256}; /* ab, cd, abab */
    ck_assert_int_eq(vttt_bpe_from_merges(&b, merges, 3, NULL), 0);
    ck_assert_int_eq(vttt_bpe_save(b, path, NULL), 0);
    vttt_bpe_free(&b);
    size_t n;
    char *data = tu_read_file(path, &n);
    ck_assert_int_eq(vttt_bpe_parse(&b, data, n, "mem", NULL), VTTT_OK);
    ck_assert_int_eq(vttt_bpe_vocab_size(b), 260);
    vttt_bpe_free(&b);
    tu_log c;
    vttt_logger lg = tu_log_capture(&c, VTTT_LOG_WARNING, 1);
    ck_assert_int_eq(vttt_bpe_parse(&b, data, n - 1, "mem", &lg), VTTT_EFORMAT);
    ck_assert_ptr_null(b);
    ck_assert_msg(strstr(c.text, "mem: ") != NULL, "%s", c.text);
    free(data);
    tu_rm_rf(dir);
}
END_TEST

int main(void) {
    TCase *tc = tcase_create("core");
    tcase_add_test(tc, test_json_any_size_one_document);
    tcase_add_test(tc, test_meta_fields_checked);
    tcase_add_test(tc, test_meta_read_whole_or_refuse);
    tcase_add_test(tc, test_fifo_inputs_refused);
    tcase_add_test(tc, test_bpe_parse_buffer);
    return tu_run("ingest_files", tc, CK_FORK_GETENV);
}
