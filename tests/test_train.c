/*
 * The trainer (train/): schedules and AdamW against hand-computed values,
 * the weight-decay mask, gradient clipping, the sampler and the shard set,
 * settings in JSON; whole runs on a tiny model: determinism, gradient
 * accumulation, windows with a carried state, stopping on SIGTERM and
 * resuming bit for bit, and the rejection of wrong settings, damaged
 * checkpoints and failed saves with clear messages.
 */
#define _XOPEN_SOURCE 700
#include <check.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "ingest.h"
#include "testutil.h"
#include "train_internal.h"

#define VOCAB 16

/* ---- helpers ------------------------------------------------------------ */

/* A shard of n tokens of a learnable stream: each token is the previous
 * one + 1 (mod VOCAB), with a random jump every 32 tokens or so. */
static void write_stream(const char *path, int n, uint64_t seed) {
    tu_rng r;
    tu_seed(&r, seed);
    int32_t *ids = malloc((size_t)n * sizeof *ids);
    int x = 0;
    for (int i = 0; i < n; i++) {
        x = tu_uniform(&r) < 1.0f / 32 ? (int)(tu_uniform(&r) * VOCAB) % VOCAB : (x + 1) % VOCAB;
        ids[i] = x;
    }
    ck_assert_int_eq(vttt_token_shard_write(path, ids, (size_t)n, 2, NULL), VTTT_OK);
    free(ids);
}

/* dir/data/{train,val}_000000.bin */
static void make_data(const char *dir) {
    char p[1024];
    snprintf(p, sizeof p, "%s/data", dir);
    mkdir(p, 0777);
    snprintf(p, sizeof p, "%s/data/train_000000.bin", dir);
    write_stream(p, 20000, 1);
    snprintf(p, sizeof p, "%s/data/val_000000.bin", dir);
    write_stream(p, 2000, 2);
}

/* Settings of a small run in dir/name on dir/data. */
static vttt_train_params small_run(const char *dir, const char *name) {
    vttt_train_params p = vttt_train_default_params();
    snprintf(p.data, sizeof p.data, "%s/data", dir);
    snprintf(p.out, sizeof p.out, "%s/%s", dir, name);
    snprintf(p.model_preset, sizeof p.model_preset, "test");
    p.vocab_size = VOCAB;
    p.steps = 6, p.batch = 4, p.seq = 32, p.warmup = 2, p.lr = 1e-2f;
    p.ckpt_every = 0, p.handle_signals = 0, p.comm = VTTT_COMM_SINGLE;
    return p;
}

/* Whether two files have the same bytes. */
static int same_file(const char *a, const char *b) {
    size_t na, nb;
    char *x = tu_read_file(a, &na), *y = tu_read_file(b, &nb);
    int same = na == nb && !memcmp(x, y, na);
    free(x), free(y);
    return same;
}

/* The training losses of run/metrics.jsonl, by step (1..max); returns
 * the count. */
static int read_losses(const char *run, float *loss, int max) {
    char path[1100], line[1024];
    snprintf(path, sizeof path, "%s/metrics.jsonl", run);
    FILE *f = fopen(path, "r");
    ck_assert_ptr_nonnull(f);
    int n = 0;
    while (fgets(line, sizeof line, f)) {
        cJSON *j = cJSON_Parse(line);
        const cJSON *s = cJSON_GetObjectItem(j, "step"), *l = cJSON_GetObjectItem(j, "loss");
        if (cJSON_IsNumber(s) && cJSON_IsNumber(l) && s->valueint >= 1 && s->valueint <= max) {
            loss[s->valueint - 1] = (float)l->valuedouble;
            if (s->valueint > n) n = s->valueint;
        }
        cJSON_Delete(j);
    }
    fclose(f);
    return n;
}

/* ---- schedules and AdamW -------------------------------------------------- */

START_TEST(test_schedule) {
    train_schedule s = {1e-3f, 1e-4f, 10, 110, 0.1f, 0.01f, 10};
    ck_assert_float_eq_tol(train_schedule_lr(&s, 0), 1e-4f, 1e-9f);    /* (0 + 1) / 10 of the peak */
    ck_assert_float_eq_tol(train_schedule_lr(&s, 4), 5e-4f, 1e-9f);
    ck_assert_float_eq_tol(train_schedule_lr(&s, 9), 1e-3f, 1e-9f);
    ck_assert_float_eq_tol(train_schedule_lr(&s, 10), 1e-3f, 1e-9f);   /* cosine starts at the peak */
    ck_assert_float_eq_tol(train_schedule_lr(&s, 60), 5.5e-4f, 1e-9f); /* half way: the mean of peak and min */
    ck_assert_float_eq_tol(train_schedule_lr(&s, 35), 1e-4f + 9e-4f * 0.5f * (1.0f + cosf(0.25f * 3.14159265f)),
                           1e-8f);
    ck_assert_float_eq_tol(train_schedule_lr(&s, 110), 1e-4f, 1e-9f);
    ck_assert_float_eq_tol(train_schedule_lr(&s, 500), 1e-4f, 1e-9f);
    s.warmup = 0;
    ck_assert_float_eq_tol(train_schedule_lr(&s, 0), 1e-3f, 1e-9f);
    /* the reference's ttt_base_lr_init -> ttt_base_lr warmup */
    ck_assert_float_eq_tol(train_schedule_ttt_lr(&s, 0), 0.01f, 1e-7f);
    ck_assert_float_eq_tol(train_schedule_ttt_lr(&s, 5), 0.055f, 1e-7f);
    ck_assert_float_eq_tol(train_schedule_ttt_lr(&s, 10), 0.1f, 1e-7f);
    ck_assert_float_eq_tol(train_schedule_ttt_lr(&s, 1000), 0.1f, 1e-7f);
    s.ttt_lr_init = -1.0f;
    ck_assert_float_eq_tol(train_schedule_ttt_lr(&s, 0), 0.1f, 1e-7f);
}
END_TEST

START_TEST(test_adamw_hand) {
    /* p = 1, gradients 0.5 then -0.25, lr 0.1, betas 0.9/0.95, eps 1e-8:
     * step 1: m = 0.05, v = 0.0125, m_hat = 0.5, v_hat = 0.25, update 1
     * (+ wd p = 0.1) -> p = 0.89; step 2: m = 0.02, v = 0.015, m_hat =
     * 0.02 / 0.19, v_hat = 0.015 / 0.0975 -> p = 0.854263058 (wd 0.1). */
    float p[2] = {1.0f, 1.0f}, m[2] = {0}, v[2] = {0}, g[2] = {0.5f, 0.5f};
    train_adamw_update_flat(p, g, m, v, 1, 0.1f, 0.9f, 0.95f, 1e-8f, 0.1f, 1);
    train_adamw_update_flat(p + 1, g + 1, m + 1, v + 1, 1, 0.1f, 0.9f, 0.95f, 1e-8f, 0.0f, 1);
    ck_assert_float_eq_tol(p[0], 0.89f, 1e-6f);
    ck_assert_float_eq_tol(p[1], 0.9f, 1e-6f); /* no decay */
    ck_assert_float_eq_tol(m[0], 0.05f, 1e-7f);
    ck_assert_float_eq_tol(v[0], 0.0125f, 1e-8f);
    g[0] = -0.25f;
    train_adamw_update_flat(p, g, m, v, 1, 0.1f, 0.9f, 0.95f, 1e-8f, 0.1f, 2);
    ck_assert_float_eq_tol(m[0], 0.02f, 1e-7f);
    ck_assert_float_eq_tol(v[0], 0.015f, 1e-7f);
    ck_assert_float_eq_tol(p[0], 0.854263058f, 2e-6f);
}
END_TEST

START_TEST(test_decay_mask) {
    int64_t mat[2] = {8, 4}, vec[1] = {8}, b1[3] = {4, 1, 16}, w1[3] = {4, 8, 16}, lrw[3] = {4, 1, 32};
    int64_t conv[3] = {32, 1, 4}, tok[1] = {16}, embed[2] = {16, 32};
    ck_assert(train_decays("model.layers.0.mlp.up_proj.weight", 2, mat));
    ck_assert(train_decays("model.embed_tokens.weight", 2, embed));
    ck_assert(train_decays("model.layers.0.seq_modeling_block.W1", 3, w1));
    ck_assert(train_decays("model.layers.0.seq_modeling_block.learnable_ttt_lr_weight", 3, lrw));
    ck_assert(train_decays("model.layers.0.conv.conv.weight", 3, conv));
    ck_assert(!train_decays("model.layers.0.seq_modeling_block.b1", 3, b1));
    ck_assert(!train_decays("model.layers.0.seq_norm.weight", 1, vec));
    ck_assert(!train_decays("model.layers.0.seq_modeling_block.learnable_token_idx", 1, tok));
    ck_assert(!train_decays("model.layers.0.seq_modeling_block.conv_q.bias", 1, vec));
}
END_TEST

static vttt_model *tiny_model(void) {
    vttt_model_config cfg = vttt_model_default_config();
    ck_assert_int_eq(vttt_model_config_preset(&cfg, "test", NULL), VTTT_OK);
    cfg.vocab_size = VOCAB, cfg.seq_kind = VTTT_LAYER_TTT_MLP;
    vttt_model *m = NULL;
    ck_assert_int_eq(vttt_model_init(&m, &cfg, NULL), VTTT_OK);
    vttt_model_init_weights(m, 1);
    return m;
}

START_TEST(test_clip) {
    vttt_model *m = tiny_model();
    int n;
    const vttt_model_tensor *ts = vttt_model_tensors(m, &n);
    double ss = 0.0;
    tu_rng r;
    tu_seed(&r, 3);
    for (int i = 0; i < n; i++)
        for (int64_t j = 0; j < ts[i].numel; j++) {
            ts[i].grad[j] = tu_normal(&r);
            ss += (double)ts[i].grad[j] * ts[i].grad[j];
        }
    double norm = train_grad_norm(m);
    ck_assert_double_eq_tol(norm, sqrt(ss), 1e-9 * sqrt(ss));
    ck_assert_float_eq(train_clip_grads(m, norm, (float)(2.0 * norm)), 1.0f); /* below the limit: untouched */
    float s = train_clip_grads(m, norm, 1.0f);
    ck_assert_float_eq_tol(s, (float)(1.0 / norm), 1e-6f);
    ck_assert_double_eq_tol(train_grad_norm(m), 1.0, 1e-5);
    ck_assert_float_eq(train_clip_grads(m, 1.0, 0.0f), 1.0f); /* 0: off */
    vttt_model_free(&m);
}
END_TEST

/* ---- sampler, shards, communicator, settings ------------------------------ */

START_TEST(test_sampler) {
    train_sampler a, b;
    ck_assert_int_eq(train_sampler_init(&a, 50, 7, 1, 0, 0), VTTT_OK);
    int seen[50] = {0}, first[120];
    for (int i = 0; i < 120; i++) {
        first[i] = (int)train_sampler_next(&a);
        ck_assert(first[i] >= 0 && first[i] < 50);
        if (i < 50) seen[first[i]]++;
    }
    for (int i = 0; i < 50; i++) ck_assert_int_eq(seen[i], 1); /* an epoch is a permutation */
    ck_assert_int_eq(a.epoch, 2);
    ck_assert_int_eq(a.cursor, 20);
    int differs = 0;
    for (int i = 0; i < 50; i++) differs += first[i] != first[50 + i];
    ck_assert(differs > 0); /* each epoch its own order */
    /* a sampler placed at (epoch 1, cursor 13) continues the same sequence */
    ck_assert_int_eq(train_sampler_init(&b, 50, 7, 1, 1, 13), VTTT_OK);
    for (int i = 63; i < 120; i++) ck_assert_int_eq(train_sampler_next(&b), first[i]);
    train_sampler_free(&a), train_sampler_free(&b);
    ck_assert_int_eq(train_sampler_init(&a, 5, 7, 0, 0, 0), VTTT_OK);
    for (int i = 0; i < 7; i++) ck_assert_int_eq(train_sampler_next(&a), i % 5);
    train_sampler_free(&a);
    ck_assert_int_eq(train_sampler_init(&a, 5, 7, 0, 0, 6), VTTT_EINVAL);
}
END_TEST

START_TEST(test_data) {
    char dir[64], p[256];
    tu_log cap;
    vttt_logger lg = tu_log_capture(&cap, VTTT_LOG_WARNING, 1);
    tu_tmpdir(dir, sizeof dir, "train");
    int32_t a[100], b[50];
    for (int i = 0; i < 100; i++) a[i] = i;
    for (int i = 0; i < 50; i++) b[i] = 100 + i;
    snprintf(p, sizeof p, "%s/train_000000.bin", dir);
    ck_assert_int_eq(vttt_token_shard_write(p, a, 100, 2, NULL), VTTT_OK);
    snprintf(p, sizeof p, "%s/train_000001.bin", dir);
    ck_assert_int_eq(vttt_token_shard_write(p, b, 50, 4, NULL), VTTT_OK);
    snprintf(p, sizeof p, "%s/other.bin", dir); /* ignored: there are train_ shards */
    ck_assert_int_eq(vttt_token_shard_write(p, a, 10, 2, NULL), VTTT_OK);
    train_data *d = NULL;
    ck_assert_int_eq(train_data_open(&d, dir, "train", 11, 10, &lg), VTTT_OK);
    ck_assert_int_eq(train_data_files(d), 2);
    ck_assert_int_eq(train_data_tokens(d), 150);
    ck_assert_int_eq(train_data_samples(d), 14);
    ck_assert_int_eq(train_data_max_id(d), 149);
    int32_t s[11];
    ck_assert_int_eq(train_data_read(d, 9, s), VTTT_OK); /* across the shard boundary */
    for (int i = 0; i < 11; i++) ck_assert_int_eq(s[i], 90 + i);
    ck_assert_int_eq(train_data_read(d, 13, s), VTTT_OK);
    ck_assert_int_eq(s[10], 140);
    ck_assert_int_eq(train_data_read(d, 14, s), VTTT_EINVAL);
    train_data_close(&d);
    /* a glob, and the "val" split of a directory without val_ shards: every *.bin */
    snprintf(p, sizeof p, "%s/train_*.bin", dir);
    ck_assert_int_eq(train_data_open(&d, p, "train", 11, 10, &lg), VTTT_OK);
    ck_assert_int_eq(train_data_files(d), 2);
    train_data_close(&d);
    ck_assert_int_eq(train_data_open(&d, dir, "val", 11, 10, &lg), VTTT_OK);
    ck_assert_int_eq(train_data_files(d), 3);
    train_data_close(&d);
    /* too little data, no shards, a truncated shard */
    ck_assert_int_eq(train_data_open(&d, dir, "train", 200, 10, &lg), VTTT_EINVAL);
    ck_assert_ptr_nonnull(strstr(cap.text, "fewer than one sample"));
    snprintf(p, sizeof p, "%s/nothing_here_*.bin", dir);
    ck_assert_int_lt(train_data_open(&d, p, "train", 11, 10, &lg), 0);
    ck_assert_ptr_nonnull(strstr(cap.text, "no token shards found"));
    snprintf(p, sizeof p, "%s/train_000001.bin", dir);
    ck_assert_int_eq(truncate(p, 1024 + 4 * 49), 0);
    ck_assert_int_eq(train_data_open(&d, dir, "train", 11, 10, &lg), VTTT_EFORMAT);
    ck_assert_ptr_nonnull(strstr(cap.text, "train_000001.bin"));
    ck_assert_ptr_null(d);
    tu_rm_rf(dir);
}
END_TEST

START_TEST(test_comm_single) {
    vttt_comm *c = NULL;
    ck_assert_int_eq(vttt_comm_open(&c, VTTT_COMM_SINGLE, NULL), VTTT_OK);
    ck_assert_int_eq(vttt_comm_rank(c), 0);
    ck_assert_int_eq(vttt_comm_size(c), 1);
    ck_assert_str_eq(vttt_comm_name(c), "single");
    float x[3] = {1, 2, 3};
    double y = 4;
    ck_assert_int_eq(vttt_comm_allreduce_sum(c, x, 3), VTTT_OK);
    ck_assert_int_eq(vttt_comm_allreduce_sum_f64(c, &y, 1), VTTT_OK);
    ck_assert_int_eq(vttt_comm_broadcast(c, x, sizeof x, 0), VTTT_OK);
    ck_assert(x[0] == 1 && x[2] == 3 && y == 4);
    vttt_comm_close(&c);
    ck_assert_ptr_null(c);
    vttt_comm_kind k;
    ck_assert_int_eq(vttt_comm_kind_parse("mpi", &k), VTTT_OK);
    ck_assert_int_eq(k, VTTT_COMM_MPI);
    ck_assert_int_eq(vttt_comm_kind_parse("nccl", &k), VTTT_EINVAL);
}
END_TEST

START_TEST(test_params_json) {
    vttt_train_params p = vttt_train_default_params(), q = vttt_train_default_params();
    snprintf(p.data, sizeof p.data, "some/dir");
    p.lr = 1.2345678e-3f, p.seed = 18446744073709551557ull, p.window = 64, p.ttt_base_lr_init = -1.0f;
    p.docs = 1;
    cJSON *j = train_params_to_json(&p);
    char *text = cJSON_PrintUnformatted(j);
    cJSON *back = cJSON_Parse(text);
    ck_assert_int_eq(train_params_from_json(&q, back, "x.json", NULL), VTTT_OK);
    ck_assert_int_eq(train_params_match(&p, &q, "run", NULL), VTTT_OK);
    ck_assert(q.lr == p.lr && q.seed == p.seed && !strcmp(q.data, "some/dir") && q.docs == 1);
    cJSON *old = cJSON_Duplicate(back, 1);   /* written before --docs existed: no documents */
    cJSON_DeleteItemFromObject(old, "docs");
    vttt_train_params r = vttt_train_default_params();
    ck_assert_int_eq(train_params_from_json(&r, old, "x.json", NULL), VTTT_OK);
    ck_assert_int_eq(r.docs, 0);
    cJSON_Delete(old);
    tu_log cap;
    vttt_logger lg = tu_log_capture(&cap, VTTT_LOG_WARNING, 1);
    q.lr = 2e-3f;
    ck_assert_int_eq(train_params_match(&p, &q, "run", &lg), VTTT_EINVAL);
    ck_assert_ptr_nonnull(strstr(cap.text, "--lr"));
    q = p, q.eval_every = 7; /* not part of the trajectory */
    ck_assert_int_eq(train_params_match(&p, &q, "run", NULL), VTTT_OK);
    cJSON_AddNumberToObject(back, "frobnicate", 1);
    ck_assert_int_eq(train_params_from_json(&q, back, "x.json", &lg), VTTT_EFORMAT);
    ck_assert_ptr_nonnull(strstr(cap.text, "frobnicate"));
    cJSON_Delete(j), cJSON_Delete(back), free(text);
    snprintf(p.out, sizeof p.out, "run");
    p.window = 100, p.seq = 50;
    ck_assert_int_eq(vttt_train_params_check(&p, &lg), VTTT_EINVAL);
    ck_assert_ptr_nonnull(strstr(cap.text, "--window"));
}
END_TEST

/* ---- whole runs ----------------------------------------------------------- */

START_TEST(test_determinism) {
    char dir[64], a[1200], b[1200];
    tu_tmpdir(dir, sizeof dir, "train");
    make_data(dir);
    vttt_train_params p = small_run(dir, "a");
    ck_assert_int_eq(vttt_train_run(&p, NULL), VTTT_OK);
    p = small_run(dir, "b");
    ck_assert_int_eq(vttt_train_run(&p, NULL), VTTT_OK);
    snprintf(a, sizeof a, "%s/a/latest/model.safetensors", dir);
    snprintf(b, sizeof b, "%s/b/latest/model.safetensors", dir);
    ck_assert_msg(same_file(a, b), "two runs with the same seed differ");
    snprintf(a, sizeof a, "%s/a/step-00000006/optimizer.safetensors", dir);
    snprintf(b, sizeof b, "%s/b/step-00000006/optimizer.safetensors", dir);
    ck_assert(same_file(a, b));
    p = small_run(dir, "c");
    p.seed = 1;
    ck_assert_int_eq(vttt_train_run(&p, NULL), VTTT_OK);
    snprintf(a, sizeof a, "%s/a/latest/model.safetensors", dir);
    snprintf(b, sizeof b, "%s/c/latest/model.safetensors", dir);
    ck_assert(!same_file(a, b));
    tu_rm_rf(dir);
}
END_TEST

/* Four micro-batches of one sequence give the gradient of one batch of
 * four: the same losses up to float rounding. */
START_TEST(test_accumulation) {
    char dir[64], run[1100];
    tu_tmpdir(dir, sizeof dir, "train");
    make_data(dir);
    float la[6], lb[6];
    vttt_train_params p = small_run(dir, "one");
    ck_assert_int_eq(vttt_train_run(&p, NULL), VTTT_OK);
    p = small_run(dir, "four");
    p.accum = 4;
    ck_assert_int_eq(vttt_train_run(&p, NULL), VTTT_OK);
    snprintf(run, sizeof run, "%s/one", dir);
    ck_assert_int_eq(read_losses(run, la, 6), 6);
    snprintf(run, sizeof run, "%s/four", dir);
    ck_assert_int_eq(read_losses(run, lb, 6), 6);
    for (int i = 0; i < 6; i++) ck_assert_float_eq_tol(la[i], lb[i], 1e-4f * la[i]);
    tu_rm_rf(dir);
}
END_TEST

/* Sequences of 128 tokens in windows of 16 with the TTT state carried:
 * runs, evaluates, and learns the stream. */
START_TEST(test_windows) {
    char dir[64], run[1100];
    tu_tmpdir(dir, sizeof dir, "train");
    make_data(dir);
    vttt_train_params p = small_run(dir, "win");
    p.seq = 128, p.window = 16, p.steps = 40, p.warmup = 4, p.batch = 2;
    snprintf(p.val, sizeof p.val, "%s/data", dir);
    p.eval_every = 20, p.eval_seqs = 4;
    ck_assert_int_eq(vttt_train_run(&p, NULL), VTTT_OK);
    float l[40];
    snprintf(run, sizeof run, "%s/win", dir);
    ck_assert_int_eq(read_losses(run, l, 40), 40);
    float first = (l[0] + l[1] + l[2]) / 3, last = (l[37] + l[38] + l[39]) / 3;
    ck_assert_msg(last < first - 0.5f, "loss did not go down: %g -> %g", (double)first, (double)last);
    size_t n;
    snprintf(run, sizeof run, "%s/win/metrics.jsonl", dir);
    char *m = tu_read_file(run, &n);
    ck_assert_ptr_nonnull(strstr(m, "{\"step\":20,\"val_loss\":"));
    ck_assert_ptr_nonnull(strstr(m, "{\"step\":40,\"val_loss\":"));
    ck_assert_ptr_nonnull(strstr(m, "\"val_ppl\":"));
    free(m);
    tu_rm_rf(dir);
}
END_TEST

/* ---- documents (--docs) ------------------------------------------------- */

#define EOT (VOCAB - 1)

/* dir/docs/train_000000.bin: n documents of lens[i] tokens, each its eot
 * then a learnable stream below the eot, and a meta.json naming the eot. */
static void make_docs(const char *dir, const int *lens, int n) {
    char p[1024];
    snprintf(p, sizeof p, "%s/docs", dir);
    mkdir(p, 0777);
    int total = 0;
    for (int i = 0; i < n; i++) total += lens[i];
    int32_t *ids = malloc((size_t)total * sizeof *ids);
    tu_rng r;
    tu_seed(&r, 7);
    for (int i = 0, k = 0; i < n; i++) {
        int x = (int)(tu_uniform(&r) * (VOCAB - 1)) % (VOCAB - 1);
        ids[k++] = EOT;
        for (int t = 1; t < lens[i]; t++) ids[k++] = x = (x + 1 + (tu_uniform(&r) < 0.2f)) % (VOCAB - 1);
    }
    snprintf(p, sizeof p, "%s/docs/train_000000.bin", dir);
    ck_assert_int_eq(vttt_token_shard_write(p, ids, (size_t)total, 2, NULL), VTTT_OK);
    free(ids);
    const char *meta = "{\"vocab_size\": 16, \"eot\": 15, \"token_bytes\": 2}\n";
    snprintf(p, sizeof p, "%s/docs/meta.json", dir);
    tu_write_file(p, meta, strlen(meta));
}

/* Documents cut into samples: each starts at its eot (or the first token),
 * pieces of at most seq tokens, the rest of a sample padding (-1); the
 * last document ends one token before the data (its last target). */
START_TEST(test_data_docs) {
    char dir[64], p[1100];
    tu_tmpdir(dir, sizeof dir, "train");
    const int lens[] = {40, 70, 10};
    make_docs(dir, lens, 3);
    snprintf(p, sizeof p, "%s/docs", dir);
    train_data *d = NULL;
    int32_t all[120], s[33];
    ck_assert_int_eq(train_data_open(&d, p, "train", 120, 120, NULL), VTTT_OK);
    ck_assert_int_eq(train_data_read(d, 0, all), VTTT_OK);
    train_data_close(&d);
    ck_assert_int_eq(train_data_open(&d, p, "train", 33, 32, NULL), VTTT_OK);
    ck_assert_int_eq(train_data_samples(d), 3); /* (120 - 33) / 32 + 1 across documents */
    ck_assert_int_eq(train_data_meta_eot(d), EOT);
    ck_assert_int_eq(train_data_use_docs(d, 32, 1, EOT), VTTT_OK);
    const int start[] = {0, 32, 40, 72, 104, 110}, targets[] = {32, 8, 32, 32, 6, 9};
    ck_assert_int_eq(train_data_samples(d), 6);
    ck_assert(all[0] == EOT && all[40] == EOT && all[110] == EOT);
    for (int i = 0; i < 6; i++) {
        ck_assert_int_eq(train_data_sample_targets(d, i), targets[i]);
        ck_assert_int_eq(train_data_read(d, i, s), VTTT_OK);
        for (int t = 0; t < 33; t++) ck_assert_int_eq(s[t], t <= targets[i] ? all[start[i] + t] : -1);
    }
    ck_assert_int_eq(train_data_read(d, 6, s), VTTT_EINVAL);
    train_data_close(&d);
    tu_rm_rf(dir);
}
END_TEST

/* The summed token loss of the pieces [start[i], start[i] + len[i]) of
 * ids, each from the initial state, window by window with the state
 * carried (carry = 1) or every window fresh (0). */
static double manual_loss(vttt_model *m, const int32_t *ids, const int *start, const int *len, int n, int W,
                          int carry) {
    vttt_model_state *st = NULL;
    ck_assert_int_eq(vttt_model_state_init(&st, m, 1, W), VTTT_OK);
    double sum = 0.0;
    for (int i = 0; i < n; i++) {
        vttt_model_state_reset(st);
        for (int w0 = 0; w0 < len[i]; w0 += W) {
            int k = len[i] - w0 < W ? len[i] - w0 : W;
            const int32_t *x = ids + start[i] + w0;
            int32_t tgt[64];
            float loss = 0.0f;
            int64_t count = 0;
            memcpy(tgt, x + 1, (size_t)k * sizeof *tgt);   /* the next tokens, across the window's end */
            if (!carry) vttt_model_state_reset(st);
            ck_assert_int_eq(vttt_model_forward_carry(m, st, x, tgt, k, &loss, NULL), VTTT_OK);
            vttt_model_losses(m, &count);
            ck_assert_int_eq(count, k);
            sum += (double)loss * (double)count;
        }
    }
    vttt_model_state_free(&st);
    return sum;
}

/* One training step with --docs (lr 0, so that the checkpoint holds the
 * weights it ran with) over two documents, one shorter than the sequence
 * (a padded row): its loss equals the two documents run alone window by
 * window, the state carried within each and fresh at each one's start;
 * the same step with fresh windows or the state carried from the first
 * document into the second gives another loss. */
START_TEST(test_docs_step) {
    char dir[64], path[1200];
    tu_tmpdir(dir, sizeof dir, "train");
    const int lens[] = {40, 70};
    make_docs(dir, lens, 2);
    const char *layers[] = {"ttt_linear", "ttt_mlp"};
    for (int li = 0; li < 2; li++) {
        vttt_train_params p = small_run(dir, layers[li]);
        snprintf(p.data, sizeof p.data, "%s/docs", dir);
        snprintf(p.layer, sizeof p.layer, "%s", layers[li]);
        p.docs = 1, p.seq = 64, p.window = 16, p.batch = 2, p.steps = 1, p.shuffle = 0;
        p.lr = p.min_lr = 0.0f, p.warmup = 0, p.ttt_base_lr = p.ttt_base_lr_init = 0.5f;
        ck_assert_int_eq(vttt_train_run(&p, NULL), VTTT_OK);
        float l[1];
        ck_assert_int_eq(read_losses(p.out, l, 1), 1);
        vttt_model *m = NULL;
        snprintf(path, sizeof path, "%s/latest", p.out);
        ck_assert_int_eq(vttt_model_load(&m, path, NULL), VTTT_OK);
        train_data *d = NULL;
        int32_t ids[110];
        snprintf(path, sizeof path, "%s/docs", dir);
        ck_assert_int_eq(train_data_open(&d, path, "train", 110, 110, NULL), VTTT_OK);
        ck_assert_int_eq(train_data_read(d, 0, ids), VTTT_OK);
        train_data_close(&d);
        /* the batch: the first document (40 targets, padded to 64) and the
         * first piece of the second (64 of its 69 targets) */
        const int start[] = {0, 40}, len[] = {40, 64}, one[] = {0}, both[] = {104};
        double total = 40 + 64;
        double docs = manual_loss(m, ids, start, len, 2, 16, 1) / total;
        double fresh = manual_loss(m, ids, start, len, 2, 16, 0) / total;
        double chain = manual_loss(m, ids, one, both, 1, 16, 1) / total;   /* carried across the boundary */
        ck_assert_msg(fabs(l[0] - docs) < 1e-5 * docs, "%s: step loss %.7f, documents run alone %.7f", layers[li],
                      (double)l[0], docs);
        ck_assert_msg(fabs(fresh - docs) > 1e-4 && fabs(chain - docs) > 1e-4,
                      "%s: the check cannot tell: carried %.7f, fresh windows %.7f, across documents %.7f",
                      layers[li], docs, fresh, chain);
        vttt_model_free(&m);
    }
    tu_rm_rf(dir);
}
END_TEST

/* --docs needs text with an end-of-text id (meta.json); the setting is
 * saved and a resume must keep it. */
START_TEST(test_docs_refused) {
    char dir[64];
    tu_log cap;
    vttt_logger lg = tu_log_capture(&cap, VTTT_LOG_WARNING, 1);
    tu_tmpdir(dir, sizeof dir, "train");
    make_data(dir);
    vttt_train_params p = small_run(dir, "nodocs");
    p.docs = 1;
    ck_assert_int_eq(vttt_train_run(&p, &lg), VTTT_EINVAL);
    ck_assert_ptr_nonnull(strstr(cap.text, "--docs"));
    ck_assert_ptr_nonnull(strstr(cap.text, "eot"));
    const int lens[] = {40, 70, 50};
    make_docs(dir, lens, 3);
    p = small_run(dir, "docs");
    snprintf(p.data, sizeof p.data, "%s/docs", dir);
    p.docs = 1, p.steps = 2, p.ckpt_every = 1;
    ck_assert_int_eq(vttt_train_run(&p, &lg), VTTT_OK);
    p.resume = 1, p.docs = 0;
    ck_assert_int_eq(vttt_train_run(&p, &lg), VTTT_EINVAL);
    ck_assert_ptr_nonnull(strstr(cap.text, "--docs: given"));
    p.docs = 1;
    ck_assert_int_eq(vttt_train_run(&p, &lg), VTTT_OK);
    tu_rm_rf(dir);
}
END_TEST

static void raise_at_3(void *user, const vttt_train_report *r) {
    (void)user;
    if (r->event == VTTT_TRAIN_EVENT_STEP && r->step == 3) raise(SIGTERM);
}

/* SIGTERM stops after the step with a checkpoint (return 0); resuming
 * from it ends where an uninterrupted run does, bit for bit. */
START_TEST(test_sigterm_resume) {
    char dir[64], a[1200], b[1200];
    tu_tmpdir(dir, sizeof dir, "train");
    make_data(dir);
    vttt_train_params p = small_run(dir, "full");
    p.ckpt_every = 2;
    ck_assert_int_eq(vttt_train_run(&p, NULL), VTTT_OK);
    p = small_run(dir, "cut");
    p.ckpt_every = 2, p.handle_signals = 1, p.on_report = raise_at_3;
    ck_assert_int_eq(vttt_train_run(&p, NULL), VTTT_OK);
    snprintf(a, sizeof a, "%s/cut", dir);
    ck_assert_int_eq(train_ckpt_latest(a, NULL, 0), 3);
    p.on_report = NULL, p.resume = 1;
    ck_assert_int_eq(vttt_train_run(&p, NULL), VTTT_OK);
    snprintf(a, sizeof a, "%s/full/latest/model.safetensors", dir);
    snprintf(b, sizeof b, "%s/cut/latest/model.safetensors", dir);
    ck_assert_msg(same_file(a, b), "a stopped and resumed run differs from an uninterrupted one");
    float la[6], lb[6];
    snprintf(a, sizeof a, "%s/full", dir);
    snprintf(b, sizeof b, "%s/cut", dir);
    ck_assert_int_eq(read_losses(a, la, 6), 6);
    ck_assert_int_eq(read_losses(b, lb, 6), 6);
    for (int i = 0; i < 6; i++) ck_assert(la[i] == lb[i]);
    tu_rm_rf(dir);
}
END_TEST

/* Runs p expecting err and a message containing want. */
static void expect_fail(const vttt_train_params *p, int err, const char *want) {
    tu_log cap;
    vttt_logger lg = tu_log_capture(&cap, VTTT_LOG_WARNING, 1);
    ck_assert_int_eq(vttt_train_run(p, &lg), err);
    ck_assert_msg(strstr(cap.text, want) != NULL, "expected \"%s\" in: %s", want, cap.text);
}

START_TEST(test_wrong_settings) {
    char dir[64];
    tu_tmpdir(dir, sizeof dir, "train");
    make_data(dir);
    vttt_train_params p = small_run(dir, "w");
    p.seq = 64, p.window = 24;
    expect_fail(&p, VTTT_EINVAL, "multiple of the TTT mini-batch size 16");
    p = small_run(dir, "w");
    p.batch = 6, p.accum = 4;
    expect_fail(&p, VTTT_EINVAL, "--accum");
    p.batch = 6, p.accum = 2, p.comm = VTTT_COMM_SINGLE;
    snprintf(p.layer, sizeof p.layer, "lstm");
    expect_fail(&p, VTTT_EINVAL, "--layer 'lstm'");
    p = small_run(dir, "w");
    snprintf(p.layer, sizeof p.layer, "attention");
    snprintf(p.backbone, sizeof p.backbone, "mamba");
    expect_fail(&p, VTTT_EINVAL, "share_qk and use_gate apply to TTT layers only");
    p = small_run(dir, "w");
    snprintf(p.model_preset, sizeof p.model_preset, "huge");
    expect_fail(&p, VTTT_EINVAL, "unknown model preset 'huge'");
    p = small_run(dir, "w");
    snprintf(p.data, sizeof p.data, "%s/missing", dir);
    expect_fail(&p, VTTT_EIO, "no token shards found");
    p = small_run(dir, "w");
    p.vocab_size = 8; /* the stream has ids up to 15 */
    expect_fail(&p, VTTT_EINVAL, "outside the vocabulary");
    /* a run exists: a new one there needs --resume; a resume must keep the settings */
    p = small_run(dir, "w");
    p.steps = 2;
    ck_assert_int_eq(vttt_train_run(&p, NULL), VTTT_OK);
    expect_fail(&p, VTTT_EINVAL, "pass --resume");
    p.resume = 1, p.lr = 0.5f;
    expect_fail(&p, VTTT_EINVAL, "--lr: given 0.5");
    p.lr = 1e-2f, p.batch = 8;
    expect_fail(&p, VTTT_EINVAL, "--batch: given 8");
    tu_rm_rf(dir);
}
END_TEST

/* Copies file a to b. */
static void copy_file(const char *a, const char *b) {
    size_t n;
    char *x = tu_read_file(a, &n);
    FILE *f = fopen(b, "wb");
    ck_assert_int_eq(fwrite(x, 1, n, f), n);
    fclose(f);
    free(x);
}

START_TEST(test_damaged_checkpoints) {
    char dir[64], ck[1200], p2[1200], bak[1200];
    tu_tmpdir(dir, sizeof dir, "train");
    make_data(dir);
    vttt_train_params p = small_run(dir, "d");
    p.steps = 4, p.ckpt_every = 2;
    ck_assert_int_eq(vttt_train_run(&p, NULL), VTTT_OK);
    p.resume = 1, p.steps = 4;
    /* the optimizer state of another step */
    snprintf(ck, sizeof ck, "%s/d/step-00000004/optimizer.safetensors", dir);
    snprintf(p2, sizeof p2, "%s/d/step-00000002/optimizer.safetensors", dir);
    snprintf(bak, sizeof bak, "%s/opt.bak", dir);
    copy_file(ck, bak);
    copy_file(p2, ck);
    expect_fail(&p, VTTT_EFORMAT, "holds the state of step 2");
    copy_file(bak, ck);
    /* a truncated model */
    snprintf(ck, sizeof ck, "%s/d/step-00000004/model.safetensors", dir);
    copy_file(ck, bak);
    ck_assert_int_eq(truncate(ck, 1000), 0);
    expect_fail(&p, VTTT_EFORMAT, "model.safetensors");
    copy_file(bak, ck);
    /* trainer_state.json: not JSON, then a different data set */
    snprintf(ck, sizeof ck, "%s/d/step-00000004/trainer_state.json", dir);
    copy_file(ck, bak);
    FILE *f = fopen(ck, "w");
    fputs("{\"format\": \"vttt trainer state\", \"step\": ", f);
    fclose(f);
    expect_fail(&p, VTTT_EFORMAT, "not valid JSON");
    copy_file(bak, ck);
    snprintf(p2, sizeof p2, "%s/data/train_000000.bin", dir);
    write_stream(p2, 20016, 1);
    expect_fail(&p, VTTT_EINVAL, "resuming needs the same data");
    write_stream(p2, 20000, 1);
    /* intact again: it resumes (nothing left to do but the checkpoint exists) */
    ck_assert_int_eq(vttt_train_run(&p, NULL), VTTT_OK);
    tu_rm_rf(dir);
}
END_TEST

/* A checkpoint that cannot be written fails the run with a message and
 * leaves the previous checkpoint as it was. */
START_TEST(test_save_failure) {
    char dir[64], p2[1200];
    tu_tmpdir(dir, sizeof dir, "train");
    make_data(dir);
    vttt_train_params p = small_run(dir, "f");
    p.steps = 4, p.ckpt_every = 2;
    snprintf(p2, sizeof p2, "%s/f", dir);
    mkdir(p2, 0777);
    snprintf(p2, sizeof p2, "%s/f/.step-00000004.tmp", dir); /* a file where the save wants a directory */
    FILE *f = fopen(p2, "w");
    fclose(f);
    expect_fail(&p, VTTT_EIO, "checkpoint of step 4 not written");
    snprintf(p2, sizeof p2, "%s/f", dir);
    ck_assert_int_eq(train_ckpt_latest(p2, NULL, 0), 2);
    p.resume = 1; /* the intact step 2 resumes */
    snprintf(p2, sizeof p2, "%s/f/.step-00000004.tmp", dir);
    ck_assert_int_eq(remove(p2), 0);
    ck_assert_int_eq(vttt_train_run(&p, NULL), VTTT_OK);
    snprintf(p2, sizeof p2, "%s/f", dir);
    ck_assert_int_eq(train_ckpt_latest(p2, NULL, 0), 4);
    tu_rm_rf(dir);
}
END_TEST

/* A failed save with no checkpoint before it says there is none (it used
 * to say "the previous one is intact"). */
START_TEST(test_save_failure_first) {
    char dir[64], p2[1200];
    tu_tmpdir(dir, sizeof dir, "train");
    make_data(dir);
    vttt_train_params p = small_run(dir, "f");
    p.steps = 4, p.ckpt_every = 2;
    snprintf(p2, sizeof p2, "%s/f", dir);
    mkdir(p2, 0777);
    snprintf(p2, sizeof p2, "%s/f/.step-00000002.tmp", dir);
    FILE *f = fopen(p2, "w");
    fclose(f);
    tu_log cap;
    vttt_logger lg = tu_log_capture(&cap, VTTT_LOG_WARNING, 1);
    ck_assert_int_eq(vttt_train_run(&p, &lg), VTTT_EIO);
    ck_assert_msg(strstr(cap.text, "checkpoint of step 2 not written") && strstr(cap.text, "no checkpoint"),
                  "message: %s", cap.text);
    ck_assert_msg(!strstr(cap.text, "intact"), "claims an intact checkpoint that does not exist: %s", cap.text);
    snprintf(p2, sizeof p2, "%s/f", dir);
    ck_assert_int_eq(train_ckpt_latest(p2, NULL, 0), -1);
    tu_rm_rf(dir);
}
END_TEST

/* Writes src's trainer_state.json to dst with key (in obj: "" the top
 * level, else that member object) set to the raw JSON literal lit. */
static void state_with(const char *src, const char *dst, const char *obj, const char *key, const char *lit) {
    char *text = tu_read_file(src, NULL);
    cJSON *j = cJSON_Parse(text), *o = *obj ? cJSON_GetObjectItem(j, obj) : j;
    ck_assert_ptr_nonnull(o);
    ck_assert(cJSON_ReplaceItemInObject(o, key, cJSON_CreateRaw(lit)));
    char *out = cJSON_Print(j);
    FILE *f = fopen(dst, "w");
    fputs(out, f);
    fclose(f);
    free(out), free(text);
    cJSON_Delete(j);
}

/* trainer_state.json's whole numbers must be exact, in range and agree
 * with the run: 2^53 + 1 (which a double reads as 2^53) is refused, as are
 * fractions, negatives, a step past the run's --steps and a token count
 * that is not step x batch x seq. */
START_TEST(test_state_integers_strict) {
    char dir[64], src[1200], dst[1200];
    tu_tmpdir(dir, sizeof dir, "train");
    make_data(dir);
    vttt_train_params p = small_run(dir, "s");
    p.steps = 2;
    ck_assert_int_eq(vttt_train_run(&p, NULL), VTTT_OK);
    snprintf(src, sizeof src, "%s/s/step-00000002/trainer_state.json", dir);
    snprintf(dst, sizeof dst, "%s/state.json", dir);
    tu_log cap;
    vttt_logger lg = tu_log_capture(&cap, VTTT_LOG_ERROR, 0);
    train_state s;
    ck_assert_int_eq(train_state_read(&s, NULL, src, &lg), VTTT_OK);
    const int64_t tokens = (int64_t)p.batch * p.seq * 2;
    ck_assert_int_eq(s.tokens, tokens);
    const struct { const char *obj, *key, *lit, *why; } bad[] = {
        {"", "step", "9007199254740993", "out of range"},   /* 2^53 + 1 */
        {"", "step", "9007199254740992", "out of range"},   /* 2^53: indistinguishable from 2^53 + 1 */
        {"", "step", "2.5", "out of range"},
        {"", "step", "-2", "out of range"},
        {"", "step", "1e300", "out of range"},
        {"", "step", "3", "past the run's 2 steps"},
        {"", "tokens", "257", "is not 2 steps of"},
        {"", "tokens", "9007199254740993", "out of range"},
        {"data", "cursor", "1.5", "out of range"},
        {"data", "epoch", "-1", "out of range"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        state_with(src, dst, bad[i].obj, bad[i].key, bad[i].lit);
        ck_assert_msg(train_state_read(&s, NULL, dst, &lg) == VTTT_EFORMAT, "%s %s accepted", bad[i].key, bad[i].lit);
        ck_assert_msg(strstr(cap.text, bad[i].why), "%s %s: message %s", bad[i].key, bad[i].lit, cap.text);
    }
    tu_rm_rf(dir);
}
END_TEST

static void raise_at_2(void *user, const vttt_train_report *r) {
    (void)user;
    if (r->event == VTTT_TRAIN_EVENT_STEP && r->step == 2) raise(SIGTERM);
}

/* Sets one weight of the model in checkpoint dir to 3e38: finite (it
 * loads), but the tied logits overflow and every loss becomes NaN. */
static void poison_checkpoint(const char *dir) {
    vttt_model *m = NULL;
    ck_assert_int_eq(vttt_model_load(&m, dir, NULL), VTTT_OK);
    int n = 0;
    const vttt_model_tensor *t = vttt_model_tensors(m, &n);
    ck_assert_str_eq(t[0].name, "model.embed_tokens.weight");
    t[0].data[0] = 3e38f;
    ck_assert_int_eq(vttt_model_save(m, dir), VTTT_OK);
    vttt_model_free(&m);
}

/* Non-finite losses stop the run with an error and no new checkpoint:
 * a training step (the weights from a resumed checkpoint overflow), and
 * the final validation of a finished run (it used to log val_loss nan and
 * succeed). */
START_TEST(test_nonfinite_loss_stops) {
    char dir[64], run[1200], ck[1300], p2[1300];
    tu_tmpdir(dir, sizeof dir, "train");
    make_data(dir);
    snprintf(run, sizeof run, "%s/n", dir);
    vttt_train_params p = small_run(dir, "n");
    snprintf(p.val, sizeof p.val, "%s/data", dir);
    p.steps = 4, p.ckpt_every = 0, p.handle_signals = 1, p.on_report = raise_at_2;
    ck_assert_int_eq(vttt_train_run(&p, NULL), VTTT_OK);
    ck_assert_int_eq(train_ckpt_latest(run, ck, sizeof ck), 2);
    poison_checkpoint(ck);
    p.on_report = NULL, p.resume = 1;
    tu_log cap;
    vttt_logger lg = tu_log_capture(&cap, VTTT_LOG_WARNING, 1);
    ck_assert_int_eq(vttt_train_run(&p, &lg), VTTT_ENAN);
    ck_assert_msg(strstr(cap.text, "non-finite loss") && strstr(cap.text, "step-00000002, is intact"), "message: %s",
                  cap.text);
    ck_assert_int_eq(train_ckpt_latest(run, NULL, 0), 2);
    /* a finished run whose final validation overflows */
    p = small_run(dir, "v");
    snprintf(p.val, sizeof p.val, "%s/data", dir);
    p.steps = 2;
    ck_assert_int_eq(vttt_train_run(&p, NULL), VTTT_OK);
    snprintf(p2, sizeof p2, "%s/v/step-00000002", dir);
    poison_checkpoint(p2);
    p.resume = 1;
    cap.text[0] = 0;
    ck_assert_int_eq(vttt_train_run(&p, &lg), VTTT_ENAN);
    ck_assert_msg(strstr(cap.text, "validation loss is not finite"), "message: %s", cap.text);
    snprintf(p2, sizeof p2, "%s/v", dir);
    ck_assert_int_eq(train_ckpt_latest(p2, NULL, 0), 2);
    tu_rm_rf(dir);
}
END_TEST

int main(void) {
    TCase *tc = tcase_create("train");
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, test_schedule);
    tcase_add_test(tc, test_adamw_hand);
    tcase_add_test(tc, test_decay_mask);
    tcase_add_test(tc, test_clip);
    tcase_add_test(tc, test_sampler);
    tcase_add_test(tc, test_data);
    tcase_add_test(tc, test_comm_single);
    tcase_add_test(tc, test_params_json);
    tcase_add_test(tc, test_determinism);
    tcase_add_test(tc, test_accumulation);
    tcase_add_test(tc, test_windows);
    tcase_add_test(tc, test_data_docs);
    tcase_add_test(tc, test_docs_step);
    tcase_add_test(tc, test_docs_refused);
    tcase_add_test(tc, test_sigterm_resume);
    tcase_add_test(tc, test_wrong_settings);
    tcase_add_test(tc, test_damaged_checkpoints);
    tcase_add_test(tc, test_save_failure);
    tcase_add_test(tc, test_save_failure_first);
    tcase_add_test(tc, test_state_integers_strict);
    tcase_add_test(tc, test_nonfinite_loss_stops);
    return tu_run("train", tc, CK_FORK_GETENV);
}
