/*
 * Writes the fuzz targets' seed corpora: a few valid inputs per target,
 * made by vttt's own writers, and near-valid ones (truncated, a field
 * changed). Run from the repository root after a build:
 *   ./build/tests/fuzz/fuzz_make_corpus tests/fuzz/corpus
 * The output is committed; regenerate it when a format changes.
 */
#define _POSIX_C_SOURCE 200809L
#include <errno.h>
#include <png.h>
#include <string.h>
#include <sys/stat.h>

#include "encoder.h"
#include "encoder_internal.h"
#include "fuzz.h"
#include "fuzz_models.h"
#include "ingest.h"
#include "safetensors.h"

static const char *out_root;

static void die(const char *what) {
    fprintf(stderr, "fuzz_make_corpus: %s\n", what);
    exit(1);
}

static void ok(int err, const char *what) {
    if (err) {
        fprintf(stderr, "fuzz_make_corpus: %s: %s\n", what, vttt_strerror(err));
        exit(1);
    }
}

static void path_of(char *p, const char *target, const char *name) {
    snprintf(p, FUZZ_PATH_MAX, "%s/%s", out_root, target);
    if (mkdir(p, 0755) && errno != EEXIST) die("cannot create a corpus directory");
    snprintf(p, FUZZ_PATH_MAX, "%s/%s/%s", out_root, target, name);
}

/* Writes mode byte (when mode >= 0) + n bytes of data as target/name. */
static void put(const char *target, const char *name, int mode, const void *data, size_t n) {
    char p[FUZZ_PATH_MAX];
    path_of(p, target, name);
    FILE *f = fopen(p, "wb");
    if (!f) die("cannot write a seed");
    if (mode >= 0) fputc(mode, f);
    if (n && fwrite(data, 1, n, f) != n) die("cannot write a seed");
    if (fclose(f)) die("cannot write a seed");
}

/* The bytes of a file (malloc'd). */
static uint8_t *slurp(const char *path, size_t *n) {
    FILE *f = fopen(path, "rb");
    if (!f) die("cannot read back a file");
    fseek(f, 0, SEEK_END);
    *n = (size_t)ftell(f);
    fseek(f, 0, SEEK_SET);
    uint8_t *b = malloc(*n + 1);
    if (!b || fread(b, 1, *n, f) != *n) die("cannot read back a file");
    fclose(f);
    return b;
}

/* Puts a file written by a vttt writer at tmp as target/name, plus
 * target/name-cut, truncated to its first `cut` bytes. */
static void put_file(const char *target, const char *name, const char *tmp, size_t cut) {
    size_t n;
    uint8_t *b = slurp(tmp, &n);
    put(target, name, -1, b, n);
    if (cut) {
        char cname[128];
        snprintf(cname, sizeof cname, "%s-cut", name);
        put(target, cname, -1, b, cut < n ? cut : n / 2);
    }
    free(b);
    remove(tmp);
}

static void safetensors_seeds(const char *tmp) {
    float a[6] = {1, -2, 3.5f, 0, 1e-3f, 7};
    uint16_t h[4] = {0x3c00, 0xc000, 0x7bff, 0x0001}, bf[2] = {0x3f80, 0xbf80};
    double d[2] = {0.25, -8};
    int32_t ids[3] = {1, 2, 3};
    vttt_st_tensor t[] = {
        {"model.embed_tokens.weight", VTTT_ST_F32, 2, {2, 3}, a, sizeof a},
        {"model.layers.0.norm.weight", VTTT_ST_F16, 1, {4}, h, sizeof h},
        {"b", VTTT_ST_BF16, 2, {1, 2}, bf, sizeof bf},
        {"d", VTTT_ST_F64, 1, {2}, d, sizeof d},
        {"ids", VTTT_ST_I32, 1, {3}, ids, sizeof ids},
        {"scalar", VTTT_ST_F32, 0, {0}, a, 4},
        {"empty", VTTT_ST_F32, 2, {0, 5}, a, 0},
    };
    const char *meta[] = {"format", "pt", "vttt", "fuzz"};
    vttt_logger lg = FUZZ_QUIET;
    ok(vttt_st_write(tmp, t, 7, meta, 2, &lg), "safetensors");
    put_file("safetensors", "all-dtypes", tmp, 100);
    ok(vttt_st_write(tmp, t, 1, NULL, 0, &lg), "safetensors");
    put_file("safetensors", "one", tmp, 0);
    static const char overlap[] = "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},"
                                  "\"b\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[2,6]}}";
    uint8_t buf[256] = {0};
    uint64_t hl = sizeof overlap - 1;
    memcpy(buf, &hl, 8);
    memcpy(buf + 8, overlap, hl);
    put("safetensors", "overlap", -1, buf, 8 + hl + 6);
}

static void config_seeds(const char *tmp) {
    static const char *const backbones[] = {"transformer", "mamba", "transformer"};
    static const vttt_layer_kind kinds[] = {VTTT_LAYER_TTT_LINEAR, VTTT_LAYER_TTT_MLP, VTTT_LAYER_ATTENTION};
    vttt_logger lg = FUZZ_QUIET;
    for (int i = 0; i < 3; i++) {
        vttt_model_config c = vttt_model_default_config();
        ok(vttt_model_config_preset(&c, "test", &lg), "preset");
        c.seq_kind = kinds[i];
        ok(vttt_model_config_backbone(&c, backbones[i], &lg), "backbone");
        if (i == 2) c.share_qk = c.use_gate = 0;
        if (i == 1) c.tokens_per_frame = 64, c.pad_token_id = 0, c.bos_token_id = -1;
        ok(vttt_model_config_write(&c, tmp, &lg), "model config");
        char name[32];
        snprintf(name, sizeof name, "config-%d", i);
        put_file("model_config", name, tmp, i == 0 ? 40 : 0);
    }
    static const char unknown[] = "{\"vocab_size\": 16, \"hidden_size\": 8, \"colour\": \"red\"}";
    put("model_config", "unknown-key", -1, unknown, sizeof unknown - 1);
    vttt_encoder_config e = vttt_encoder_default_config();
    ok(enc_config_write(&e, tmp, &lg), "encoder config");
    put_file("encoder_config", "default", tmp, 30);
    e.num_levels = 3, e.levels[0] = 7, e.levels[1] = 5, e.levels[2] = 3, e.image_size = 32;
    ok(enc_config_write(&e, tmp, &lg), "encoder config");
    put_file("encoder_config", "small", tmp, 0);
    e.kind = VTTT_ENCODER_DELTA, e.factor = 4, e.levels[0] = 5;
    ok(enc_config_write(&e, tmp, &lg), "encoder config");
    put_file("encoder_config", "delta", tmp, 0);
    static const char wrong[] = "{\"model_type\": \"vttt-fsq\", \"image_size\": 64.5, \"levels\": [8, \"5\"]}";
    put("encoder_config", "wrong-types", -1, wrong, sizeof wrong - 1);
}

static void shard_seeds(const char *tmp) {
    vttt_logger lg = FUZZ_QUIET;
    int32_t ids[12] = {0, 1, 2, 65535, 7, 300, 42, 9, 8, 7, 6, 5};
    ok(vttt_token_shard_write(tmp, ids, 12, 2, &lg), "u16 shard");
    put_file("token_shard", "u16", tmp, 1030);
    ids[3] = 70000;
    ok(vttt_token_shard_write(tmp, ids, 5, 4, &lg), "u32 shard");
    put_file("token_shard", "u32", tmp, 0);
    ok(vttt_token_shard_write(tmp, ids, 0, 2, &lg), "empty shard");
    put_file("token_shard", "empty", tmp, 0);

    vttt_frame_shard_info info = {.width = 3, .height = 2, .channels = 3, .fps_num = 30, .fps_den = 1};
    snprintf(info.source, sizeof info.source, "clips/a.mp4");
    uint8_t frames[2 * 3 * 2 * 3];
    for (size_t i = 0; i < sizeof frames; i++) frames[i] = (uint8_t)(i * 37);
    for (int k = 0; k < 2; k++) {
        vttt_frame_shard_writer *w = NULL;
        ok(vttt_frame_shard_writer_open(&w, tmp, &info, &lg), "frame shard");
        ok(vttt_frame_shard_writer_write(w, frames, 2 - k), "frame shard");
        ok(vttt_frame_shard_writer_finish(&w, k ? VTTT_FRAME_SHARD_PARTIAL : 0), "frame shard");
        put_file("frame_shard", k ? "partial" : "two-frames", tmp, k ? 0 : 4096 + 20);
    }
}

/* meta.json as `vttt ingest text` and `vttt encoder encode` write it
 * (tools/cli_ingest_text.c, cli_encoder_tokens.c), and wrong ones. */
static void meta_seeds(void) {
    static const char *const seeds[][2] = {
        {"text", "{\n\t\"format\":\t\"llm.c token shards\",\n\t\"tokenizer\":\t\"tok.bpe\",\n\t\"vocab_size\":\t1024,"
                 "\n\t\"eot\":\t1023,\n\t\"token_bytes\":\t2,\n\t\"train\":\t{\"documents\": 10, \"tokens\": 5000, "
                 "\"shards\": [\"train_000000.bin\"]},\n\t\"val\":\t{\"documents\": 1, \"tokens\": 500, \"shards\": "
                 "[\"val_000000.bin\"]}\n}\n"},
        {"video", "{\"kind\": \"video\", \"vocab_size\": 1000, \"tokens_per_frame\": 64, \"image_size\": 64, "
                  "\"grid\": 8, \"fps\": \"30000/1001\", \"encoder\": \"/runs/enc\", \"sources\": [{\"shard\": "
                  "\"a.vfr\", \"frames\": 10}]}"},
        {"unknown-rate", "{\"kind\": \"video\", \"vocab_size\": 125, \"tokens_per_frame\": 4, \"fps\": \"0/1\"}"},
        {"eot-out-of-range", "{\"vocab_size\": 16, \"eot\": 16}"},
        {"video-no-tpf", "{\"kind\": \"video\", \"vocab_size\": 16, \"fps\": \"30/0\"}"},
        {"not-json", "{\"vocab_size\": 16,"},
    };
    for (size_t i = 0; i < sizeof seeds / sizeof seeds[0]; i++)
        put("meta_json", seeds[i][0], -1, seeds[i][1], strlen(seeds[i][1]));
}

static void bpe_seeds(const char *tmp) {
    int32_t merges[] = {'t', 'h', 256, 'e', ' ', 't', 'a', 'n', 259, 'd', 257, 257};
    vttt_logger lg = FUZZ_QUIET;
    for (int m = 0; m <= 6; m += 6) {
        vttt_bpe *bpe = NULL;
        ok(vttt_bpe_from_merges(&bpe, merges, m, &lg), "bpe");
        ok(vttt_bpe_save(bpe, tmp, &lg), "bpe");
        vttt_bpe_free(&bpe);
        size_t n;
        uint8_t *b = slurp(tmp, &n);
        remove(tmp);
        const size_t checksum_line = 26;
        put("bpe_file", m ? "merges-fixup" : "bytes-fixup", 0, b, n - checksum_line);
        put("bpe_file", m ? "merges-raw" : "bytes-raw", 1, b, n);
        if (m) put("bpe_file", "merges-cut", 0, b, n / 2);
        free(b);
    }
}

/* A PNG of a small image in the given libpng format (simplified API). */
static void png_seed(const char *name, uint32_t format, int w, int h) {
    png_image img;
    memset(&img, 0, sizeof img);
    img.version = PNG_IMAGE_VERSION, img.width = (png_uint_32)w, img.height = (png_uint_32)h, img.format = format;
    size_t px = PNG_IMAGE_SIZE(img);
    uint8_t *pix = malloc(px), *png = NULL;
    png_alloc_size_t n = 0;
    for (size_t i = 0; i < px; i++) pix[i] = (uint8_t)(i * 29 + 3);
    if (!png_image_write_get_memory_size(img, n, 0, pix, 0, NULL)) die("png size");
    png = malloc(n);
    if (!png_image_write_to_memory(&img, png, &n, 0, pix, 0, NULL)) die("png");
    put("png", name, 0, png, n);
    free(pix);
    free(png);
}

static void png_seeds(void) {
    uint8_t rgb[4 * 3 * 3], *png = NULL;
    size_t n = 0;
    for (size_t i = 0; i < sizeof rgb; i++) rgb[i] = (uint8_t)(i * 11);
    vttt_logger lg = FUZZ_QUIET;
    ok(vttt_png_encode(rgb, 4, 3, &png, &n, &lg), "png");
    put("png", "rgb-fixup", 0, png, n);
    put("png", "rgb-raw", 1, png, n);
    put("png", "rgb-cut", 1, png, n - 20);
    free(png);
    png_seed("gray", PNG_FORMAT_GRAY, 5, 2);
    png_seed("gray-alpha", PNG_FORMAT_GA, 3, 3);
    png_seed("rgba", PNG_FORMAT_RGBA, 2, 4);
    png_seed("rgba16", PNG_FORMAT_LINEAR_RGB_ALPHA, 2, 2);
}

static void snapshot_seeds(void) {
    vttt_logger lg = FUZZ_QUIET;
    int32_t tokens[9] = {1, 2, 3, 4, 5, 6, 7, 0, 1};
    for (int k = 0; k < FUZZ_MODEL_KINDS; k++) {
        vttt_model *m = NULL;
        vttt_model_state *s = NULL;
        ok(fuzz_model_open(k, &m, &s, &lg), "snapshot model");
        for (int t = 0; t <= 9; t += 3 + 3 * (k == 0)) {
            vttt_model_state_reset(s);
            if (t) ok(vttt_model_prefill(m, s, tokens, t, NULL, 0), "prefill");
            uint8_t *b = NULL;
            size_t n = 0;
            ok(vttt_model_state_save(s, &b, &n), "snapshot");
            char name[32];
            snprintf(name, sizeof name, "kind%d-pos%d", k, t);
            put("snapshot", name, k, b, n);
            if (t == 3) {
                snprintf(name, sizeof name, "kind%d-pos%d-raw", k, t);
                put("snapshot", name, k | 4, b, n);
            }
            free(b);
        }
        vttt_model_state_free(&s);
        vttt_model_free(&m);
    }
}

/* Stream snapshots of both predictors (unsigned, signed) after 0 and 2
 * frames: mode byte = predictor (tag fixed up), and one as given. */
static void stream_snapshot_seeds(void) {
    vttt_logger lg = FUZZ_QUIET;
    int32_t tokens[4] = {3, 1, 4, 1};
    for (int k = 0; k < 2; k++) {
        char dir[FUZZ_PATH_MAX];
        snprintf(dir, sizeof dir, "%s/predictor.tmp", out_root);
        if (mkdir(dir, 0755) && errno != EEXIST) die("cannot create a scratch directory");
        vttt_predictor *p = NULL;
        ok(fuzz_predictor_open(&p, dir, k, &lg), "predictor");
        vttt_stream *s = NULL;
        ok(vttt_stream_open(&s, p), "stream");
        for (int f = 0; f <= 2; f++) {
            if (f) ok(vttt_stream_push_tokens(s, tokens, 1, NULL), "push");
            if (f == 1) continue;
            uint8_t *b = NULL;
            size_t n = 0;
            ok(vttt_stream_snapshot(s, &b, &n), "stream snapshot");
            char name[32];
            snprintf(name, sizeof name, "%s-frames%d", k ? "signed" : "unsigned", f);
            put("stream_snapshot", name, k, b, n);
            if (f == 2) {
                snprintf(name, sizeof name, "%s-frames%d-raw", k ? "signed" : "unsigned", f);
                put("stream_snapshot", name, k | 2, b, n);
            }
            free(b);
        }
        vttt_stream_free(&s);
        vttt_predictor_close(&p);
        char cmd[2 * FUZZ_PATH_MAX];
        snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
        if (system(cmd)) die("cannot remove the scratch directory");
    }
}

/* Requests to the daemon as fuzz_serve_request.c reads them: "METHOD
 * TARGET", header lines, a blank line, the body. */
static void put_request(const char *name, const char *head, const void *body, size_t n) {
    size_t hn = strlen(head);
    uint8_t *b = malloc(hn + n + 1);
    if (!b) die("out of memory");
    memcpy(b, head, hn);
    if (n) memcpy(b + hn, body, n);
    put("serve_request", name, -1, b, hn + n);
    free(b);
}

static void serve_request_seeds(void) {
    static const char id[] = "/v1/streams/0123456789abcdef";
    static const char *const plain[][2] = {
        {"health", "GET /health\n\n"},
        {"metrics", "GET /metrics\nAuthorization: Bearer fuzz-token\n\n"},
        {"open", "POST /v1/streams\r\nAuthorization: Bearer fuzz-token\r\nContent-Type: application/json\r\n"
                 "Content-Length: 2\r\n\r\n{}"},
        {"info", "GET /v1/streams/0123456789abcdef\n\n"},
        {"delete", "DELETE /v1/streams/0123456789abcdef/\nAuthorization: bearer  fuzz-token\n\n"},
        {"snapshot", "POST /v1/streams/0123456789abcdef/snapshot\nContent-Length: 0\n\n"},
        {"bad-framing", "GET /v1/str%65ams/%zz?x=%41&&y\nTransfer-Encoding: chunked\nContent-Length: 5\n\nabcde"},
        {"not-allowed", "PUT /health\n\n"},
    };
    for (size_t i = 0; i < sizeof plain / sizeof plain[0]; i++) put_request(plain[i][0], plain[i][1], NULL, 0);
    uint8_t rgb[16 * 16 * 3], *png = NULL;
    size_t n = 0;
    for (size_t i = 0; i < sizeof rgb; i++) rgb[i] = (uint8_t)(i * 7);
    vttt_logger lg = FUZZ_QUIET;
    ok(vttt_png_encode(rgb, 16, 16, &png, &n, &lg), "png");
    char head[512];
    snprintf(head, sizeof head, "POST %s/frames?horizon=2&format=json\nContent-Type: image/png\n"
             "Authorization: Bearer fuzz-token\n\n", id);
    put_request("frames-png", head, png, n);
    free(png);
    snprintf(head, sizeof head, "POST %s/frames?width=16&height=16&format=rgb24\n"
             "Content-Type: application/octet-stream\n\n", id);
    put_request("frames-raw", head, rgb, sizeof rgb);
    snprintf(head, sizeof head, "POST %s/frames?horizon=8\nX-Frame-Width: 16\nX-Frame-Height: 16\n"
             "Accept: application/json\n\n", id);
    put_request("frames-raw-headers", head, rgb, sizeof rgb);
    static const uint8_t snap[] = "VTTTSTRM\2\0\0\0\0\0\0\0 not a real snapshot";
    put_request("open-snapshot", "POST /v1/streams/\nContent-Type: application/octet-stream\n\n", snap, sizeof snap);
}

int main(int argc, char **argv) {
    if (argc != 2) die("usage: fuzz_make_corpus OUT_DIR (tests/fuzz/corpus)");
    out_root = argv[1];
    if (mkdir(out_root, 0755) && errno != EEXIST) die("cannot create OUT_DIR");
    char tmp[FUZZ_PATH_MAX];
    snprintf(tmp, sizeof tmp, "%s/seed.tmp", out_root);
    safetensors_seeds(tmp);
    config_seeds(tmp);
    shard_seeds(tmp);
    meta_seeds();
    bpe_seeds(tmp);
    png_seeds();
    snapshot_seeds();
    stream_snapshot_seeds();
    serve_request_seeds();
    printf("fuzz_make_corpus: seeds written under %s\n", out_root);
    return 0;
}
