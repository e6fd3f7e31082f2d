/*
 * `vttt encoder encode`: frame shards to token shards, and `vttt encoder
 * decode`: a token shard back to frames.
 *
 * encode writes, for each frame shard in the order given (a directory: its
 * *.vfr by name), TOKDIR/train_<stem>.bin (uint16 tokens, frames in order,
 * each frame's G*G tokens in raster order) and, with --val-frames N > 0,
 * the last N frames of each shard to TOKDIR/val_<stem>.bin instead; then
 * TOKDIR/meta.json: {"kind": "video", "vocab_size", "tokens_per_frame",
 * "image_size", "grid", "fps": "num/den", "encoder": the tokenizer
 * directory's absolute path, "sources": [{"source", "shard",
 * "train_frames", "val_frames"}]}.
 */
#define _XOPEN_SOURCE 700 /* realpath */
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <cjson/cJSON.h>

#include "cli.h"
#include "cli_encoder.h"
#include "data_meta.h"
#include "ingest.h"
#include "json_file.h"
#include "lm.h"

#define ENCODE_CMD ENC_CMD " encode"
#define DECODE_CMD ENC_CMD " decode"
#define CHUNK 256 /* frames per read */

/* Frames [first, first + count) of s as tokens into a new shard at path. */
static int encode_range(vttt_encoder *e, vttt_frame_shard *s, int64_t first, int64_t count, const char *path) {
    int S = vttt_encoder_get_config(e)->image_size, P = vttt_encoder_tokens_per_frame(e);
    size_t fb = (size_t)S * S * 3;
    uint8_t *fr = malloc(CHUNK * fb), *before = malloc(fb);
    int32_t *tok = malloc((size_t)CHUNK * P * sizeof *tok);
    vttt_token_shard_writer *w = NULL;
    int err = fr && tok && before ? vttt_token_shard_writer_open(&w, path, 2, NULL) : VTTT_ENOMEM;
    /* a DELTA tokenizer codes each frame against the one before it (the
     * shard's first frame: intra) */
    int have = first > 0;
    if (!err && have) err = vttt_frame_shard_read(s, first - 1, 1, before);
    for (int64_t i = 0; i < count && !err; i += CHUNK) {
        int k = (int)(count - i < CHUNK ? count - i : CHUNK);
        if (!(err = vttt_frame_shard_read(s, first + i, k, fr)) &&
            !(err = vttt_encoder_encode_video(e, have ? before : NULL, fr, k, tok)))
            err = vttt_token_shard_writer_append(w, tok, (size_t)k * P);
        if (!err) memcpy(before, fr + (size_t)(k - 1) * fb, fb), have = 1;
    }
    if (w) err ? vttt_token_shard_writer_abort(&w) : (void)(err = vttt_token_shard_writer_close(&w));
    free(fr), free(tok), free(before);
    return err;
}

/* The file name without directory and ".vfr". */
static void stem_of(const char *path, char *out, size_t n) {
    const char *b = strrchr(path, '/');
    snprintf(out, n, "%s", b ? b + 1 : path);
    size_t k = strlen(out);
    if (k > 4 && !strcmp(out + k - 4, ".vfr")) out[k - 4] = '\0';
}

/* Encodes one frame shard into its train_/val_ token shards and adds its
 * entry to sources; *fps gets its rate. */
static int encode_shard(vttt_encoder *e, const char *path, const char *out, int val, cJSON *sources, int fps[2],
                        int64_t *frames) {
    vttt_frame_shard *s = NULL;
    int err = vttt_frame_shard_open(&s, path, NULL);
    if (err) return err;
    const vttt_frame_shard_info *in = vttt_frame_shard_get_info(s);
    int64_t nv = val, nt = in->frame_count - val;
    char stem[1024], dst[4096];
    stem_of(path, stem, sizeof stem);
    if (nt < 1) {
        fprintf(stderr, ENCODE_CMD ": %s: %lld frames, not more than --val-frames %d\n", path,
                (long long)in->frame_count, val);
        err = VTTT_EINVAL;
    }
    snprintf(dst, sizeof dst, "%s/train_%s.bin", out, stem);
    if (!err) err = encode_range(e, s, 0, nt, dst);
    snprintf(dst, sizeof dst, "%s/val_%s.bin", out, stem);
    if (!err && nv > 0) err = encode_range(e, s, nt, nv, dst);
    if (!err) {
        cJSON *j = cJSON_CreateObject();
        cJSON_AddStringToObject(j, "source", in->source);
        cJSON_AddStringToObject(j, "shard", path);
        cJSON_AddNumberToObject(j, "train_frames", (double)nt);
        cJSON_AddNumberToObject(j, "val_frames", (double)nv);
        cJSON_AddItemToArray(sources, j);
        if (fps[0] && (fps[0] != in->fps_num || fps[1] != in->fps_den))
            fprintf(stderr, ENCODE_CMD ": warning: %s is %d/%d fps, the first shard %d/%d (meta.json keeps the first)\n",
                    path, in->fps_num, in->fps_den, fps[0], fps[1]);
        if (!fps[0]) fps[0] = in->fps_num, fps[1] = in->fps_den;
        *frames += in->frame_count;
    }
    vttt_frame_shard_close(&s);
    return err;
}

static int write_meta(vttt_encoder *e, const char *out, const char *encdir, cJSON *sources, const int fps[2]) {
    const vttt_encoder_config *c = vttt_encoder_get_config(e);
    char abs[PATH_MAX], path[4096], rate[64];
    if (!realpath(encdir, abs)) snprintf(abs, sizeof abs, "%s", encdir);
    snprintf(rate, sizeof rate, "%d/%d", fps[0], fps[1]);
    cJSON *j = cJSON_CreateObject();
    cJSON_AddStringToObject(j, "kind", "video");
    cJSON_AddNumberToObject(j, "vocab_size", vttt_encoder_vocab_size(e));
    cJSON_AddNumberToObject(j, "tokens_per_frame", vttt_encoder_tokens_per_frame(e));
    cJSON_AddNumberToObject(j, "image_size", c->image_size);
    cJSON_AddNumberToObject(j, "grid", c->image_size / c->factor);
    cJSON_AddStringToObject(j, "fps", rate);
    cJSON_AddStringToObject(j, "encoder", abs);
    cJSON_AddItemToObject(j, "sources", sources);
    snprintf(path, sizeof path, "%s/meta.json", out);
    return vttt_json_file_write(j, path, NULL);
}

int cli_encoder_encode(int argc, char **argv) {
    const char *encdir = NULL, *out = NULL, *shards[VTTT_ENCODER_TRAIN_MAX_SHARDS];
    int n_shards = 0, val = 0, threads = 0;
    double d;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            printf("usage: vttt encoder encode --encoder DIR --out TOKDIR [--val-frames N] [--threads N] SHARD|DIR...\n"
                   "  frame shards to token shards: TOKDIR/train_<stem>.bin (and val_<stem>.bin: the last N frames\n"
                   "  of each shard) with uint16 tokens, frames in order, G*G tokens per frame in raster order;\n"
                   "  TOKDIR/meta.json describes them (vocab_size, tokens_per_frame, fps, encoder, sources).\n");
            return 0;
        }
        if (!strcmp(a, "--encoder") && v) encdir = v, i++;
        else if (!strcmp(a, "--out") && v) out = v, i++;
        else if (!strcmp(a, "--val-frames") && !cli_num(ENCODE_CMD, a, v, 0, 1e9, &d)) val = (int)d, i++;
        else if (!strcmp(a, "--threads") && !cli_num(ENCODE_CMD, a, v, 1, 1024, &d)) threads = (int)d, i++;
        else if (strncmp(a, "--", 2) && n_shards < VTTT_ENCODER_TRAIN_MAX_SHARDS) shards[n_shards++] = a;
        else return fprintf(stderr, ENCODE_CMD ": bad option '%s'; see --help\n", a), 2;
    }
    if (!encdir || !out || !n_shards)
        return fprintf(stderr, ENCODE_CMD ": --encoder DIR, --out TOKDIR and frame shards are required\n"), 2;
    lm_set_threads(threads);
    vttt_encoder *e = NULL;
    char used[VTTT_TRAIN_PATH_MAX + 64], **paths = NULL;
    int n = 0, fps[2] = {0, 1};
    if (vttt_encoder_load_any(&e, encdir, used, sizeof used, NULL)) return 1;
    int err = cli_enc_shards(ENCODE_CMD, e, shards, n_shards, &paths, &n);
    if (!err && mkdir(out, 0777) != 0 && errno != EEXIST) {
        fprintf(stderr, ENCODE_CMD ": %s: cannot create the directory: %s\n", out, strerror(errno));
        err = VTTT_EIO;
    }
    cJSON *sources = cJSON_CreateArray();
    double t0 = cli_now_s();
    int64_t frames = 0;
    for (int i = 0; i < n && !err; i++) err = encode_shard(e, paths[i], out, val, sources, fps, &frames);
    double dt = cli_now_s() - t0;
    if (!err) err = write_meta(e, out, used, sources, fps), sources = NULL;
    if (!err)
        fprintf(stderr, ENCODE_CMD ": %lld frames of %d shard(s) -> %s (%d tokens per frame, vocab %d) in %.2f s, "
                "%.1f frames/s\n", (long long)frames, n, out, vttt_encoder_tokens_per_frame(e),
                vttt_encoder_vocab_size(e), dt, frames / (dt > 1e-9 ? dt : 1e-9));
    else fprintf(stderr, ENCODE_CMD ": failed (%s)\n", vttt_strerror(err));
    cJSON_Delete(sources);
    vttt_encoder_frames_free(&paths, n);
    vttt_encoder_free(&e);
    return err ? 1 : 0;
}

/* The frame rate in a meta.json beside the token shard, else (no
 * meta.json, or a rate it does not know) 30/1. A meta.json that cannot be
 * read or parsed is an error (logged naming it). */
static int meta_fps(const char *tokens, int fps[2]) {
    char path[4096];
    vttt_data_meta m;
    fps[0] = 30, fps[1] = 1;
    if (vttt_data_meta_path(path, sizeof path, tokens)) return VTTT_EINVAL;
    int err = vttt_data_meta_read(&m, path, NULL);
    if (err == VTTT_EOF) return VTTT_OK;
    if (!err && m.fps_num > 0) fps[0] = m.fps_num, fps[1] = m.fps_den;
    return err;
}

/* Writes frames (n) either to the open shard writer or as PNGs in dir. */
static int emit(vttt_frame_shard_writer *w, const char *dir, int64_t first, const uint8_t *fr, int n, int S) {
    if (w) return vttt_frame_shard_writer_write(w, fr, n);
    int err = VTTT_OK;
    char path[4096];
    for (int i = 0; i < n && !err; i++) {
        snprintf(path, sizeof path, "%s/frame_%06lld.png", dir, (long long)(first + i));
        err = vttt_png_write(path, fr + (size_t)i * S * S * 3, S, S, NULL);
    }
    return err;
}

static int decode_all(vttt_encoder *e, vttt_token_shard *ts, const char *out, int png) {
    int S = vttt_encoder_get_config(e)->image_size, P = vttt_encoder_tokens_per_frame(e);
    int64_t count = vttt_token_shard_count(ts), frames = count / P;
    if (count % P) {
        fprintf(stderr, DECODE_CMD ": %s holds %lld tokens, not a whole number of %d-token frames (another "
                "tokenizer's shard?)\n", vttt_token_shard_path(ts), (long long)count, P);
        return VTTT_EINVAL;
    }
    vttt_frame_shard_writer *w = NULL;
    vttt_frame_shard_info info = {.width = S, .height = S, .channels = 3};
    int fps[2];
    int err = meta_fps(vttt_token_shard_path(ts), fps);
    if (err) return err;
    info.fps_num = fps[0], info.fps_den = fps[1];
    snprintf(info.source, sizeof info.source, "%s", vttt_token_shard_path(ts));
    err = png ? (mkdir(out, 0777) != 0 && errno != EEXIST ? VTTT_EIO : VTTT_OK)
                  : vttt_frame_shard_writer_open(&w, out, &info, NULL);
    if (err == VTTT_EIO && png) fprintf(stderr, DECODE_CMD ": %s: cannot create the directory\n", out);
    int32_t *tok = malloc((size_t)CHUNK * P * sizeof *tok);
    uint8_t *fr = malloc((size_t)CHUNK * S * S * 3);
    if (!err && (!tok || !fr)) err = VTTT_ENOMEM;
    uint8_t *last = malloc((size_t)S * S * 3); /* a DELTA chain goes on from the chunk before */
    if (!err && !last) err = VTTT_ENOMEM;
    for (int64_t i = 0; i < frames && !err; i += CHUNK) {
        int k = (int)(frames - i < CHUNK ? frames - i : CHUNK);
        if (!(err = vttt_token_shard_read(ts, i * P, (int64_t)k * P, tok)) &&
            !(err = vttt_encoder_decode(e, i ? last : NULL, tok, k, fr)))
            err = emit(w, out, i, fr, k, S);
        if (!err) memcpy(last, fr + (size_t)(k - 1) * S * S * 3, (size_t)S * S * 3);
    }
    free(last);
    if (w) err ? vttt_frame_shard_writer_abort(&w) : (void)(err = vttt_frame_shard_writer_finish(&w, 0));
    free(tok), free(fr);
    if (!err) fprintf(stderr, DECODE_CMD ": %lld frames -> %s\n", (long long)frames, out);
    return err;
}

int cli_encoder_decode(int argc, char **argv) {
    const char *encdir = NULL, *tokens = NULL, *out = NULL;
    int png = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            printf("usage: vttt encoder decode --encoder DIR --tokens FILE.bin --out OUT [--png]\n"
                   "  a token shard back to frames: OUT is a frame shard (.vfr; fps from a meta.json beside the\n"
                   "  tokens, else 30), or with --png a directory of frame_NNNNNN.png.\n");
            return 0;
        }
        if (!strcmp(a, "--encoder") && v) encdir = v, i++;
        else if (!strcmp(a, "--tokens") && v) tokens = v, i++;
        else if (!strcmp(a, "--out") && v) out = v, i++;
        else if (!strcmp(a, "--png")) png = 1;
        else return fprintf(stderr, DECODE_CMD ": bad option '%s'; see --help\n", a), 2;
    }
    if (!encdir || !tokens || !out)
        return fprintf(stderr, DECODE_CMD ": --encoder DIR, --tokens FILE.bin and --out are required\n"), 2;
    vttt_encoder *e = NULL;
    vttt_token_shard *ts = NULL;
    if (vttt_encoder_load_any(&e, encdir, NULL, 0, NULL)) return 1;
    int err = vttt_token_shard_open(&ts, tokens, NULL);
    if (!err) err = decode_all(e, ts, out, png);
    if (err) fprintf(stderr, DECODE_CMD ": failed (%s)\n", vttt_strerror(err));
    vttt_token_shard_close(&ts);
    vttt_encoder_free(&e);
    return err ? 1 : 0;
}
