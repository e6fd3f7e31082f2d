/* Fuzz target: stream snapshots (infer/snapshot.c, vttt_stream_restore:
 * what POST /v1/streams with a snapshot body runs on the daemon's bytes).
 *
 * Input: one mode byte, then the snapshot. Bit 0 picks the predictor
 * (fuzz_models.h): clear, one without a key (SHA-256 tags); set, one with
 * the key FUZZ_SNAPSHOT_KEY (HMAC-SHA256). Bit 1 clear: the harness writes
 * the true state length and the right tag into the snapshot, so that
 * mutations reach the checks behind the tag; set: the bytes as given. A
 * restored stream must snapshot back to the same bytes and take one more
 * frame. */
#include <string.h>

#include <openssl/hmac.h>
#include <openssl/sha.h>

#include "fuzz.h"
#include "fuzz_models.h"

#define STREAM_HEADER 40 /* magic 8, version 4, flags 4, fingerprint 8, frames 8, state bytes 8 */
#define STREAM_TAG 32

/* Made once per process: libFuzzer gives the target nowhere else to keep them. */
static vttt_predictor *predictors[2];

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerInitialize(int *argc, char ***argv) {
    (void)argc, (void)argv;
    vttt_logger lg = FUZZ_QUIET;
    for (int i = 0; i < 2; i++) {
        char dir[FUZZ_PATH_MAX];
        snprintf(dir, sizeof dir, "%s/predictor%d", fuzz_dir(), i);
        FUZZ_CHECK(mkdir(dir, 0700) == 0);
        FUZZ_CHECK(fuzz_predictor_open(&predictors[i], dir, i, &lg) == VTTT_OK);
    }
    return 0;
}

static void fix_up(uint8_t *p, size_t n, int signed_) {
    if (n < STREAM_HEADER + STREAM_TAG) return;
    uint64_t state = n - STREAM_HEADER - STREAM_TAG;
    memcpy(p + 32, &state, 8);
    unsigned len = 0;
    if (signed_)
        HMAC(EVP_sha256(), FUZZ_SNAPSHOT_KEY, (int)strlen(FUZZ_SNAPSHOT_KEY), p, n - STREAM_TAG, p + n - STREAM_TAG,
             &len);
    else
        SHA256(p, n - STREAM_TAG, p + n - STREAM_TAG);
}

static void check_restored(vttt_stream *s, const uint8_t *snap, size_t n) {
    fuzz_accepted();
    uint8_t *again = NULL;
    size_t n2 = 0;
    FUZZ_CHECK(vttt_stream_snapshot(s, &again, &n2) == VTTT_OK);
    FUZZ_CHECK(n2 == n && memcmp(again, snap, n) == 0);
    free(again);
    int64_t frames;
    memcpy(&frames, snap + 24, 8);
    FUZZ_CHECK(vttt_stream_frames(s) == frames);
    int32_t tokens[4] = {1, 2, 3, 124}, pred[4];
    int err = vttt_stream_push_tokens(s, tokens, 1, pred);
    FUZZ_CHECK(err == VTTT_OK || err == VTTT_EINVAL || err == VTTT_ENAN);
    for (int i = 0; !err && i < 4; i++) FUZZ_CHECK(pred[i] >= 0 && pred[i] < 125);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 1) return 0;
    if (!predictors[0]) LLVMFuzzerInitialize(NULL, NULL);
    int signed_ = data[0] & 1;
    size_t n = size - 1;
    uint8_t *snap = malloc(n ? n : 1);
    FUZZ_CHECK(snap);
    memcpy(snap, data + 1, n);
    if (!(data[0] & 2)) fix_up(snap, n, signed_);
    vttt_stream *s = NULL;
    int err = vttt_stream_restore(&s, predictors[signed_], snap, n);
    FUZZ_CHECK(err ? s == NULL : s != NULL);
    if (!err) check_restored(s, snap, n);
    vttt_stream_free(&s);
    free(snap);
    return 0;
}
