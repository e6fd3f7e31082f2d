/* Fuzz target: model-state snapshots (vttt_model_state_load,
 * ttt/model_state_io.c; stream snapshots wrap them, infer/snapshot.c).
 *
 * Input: one mode byte, then the snapshot. Bits 0-1 pick the model
 * (fuzz_models.h, kind modulo 3); bit 2 clear: the harness writes the
 * snapshot's true length and checksum into it, so that mutations reach the
 * field checks behind them; set: the bytes as given. A loaded snapshot
 * must save back to the same bytes, and the state must take one more
 * token. */
#include <string.h>

#include "bpe_internal.h" /* bpe_fnv1a: the FNV-1a 64 the snapshot's trailer uses */
#include "fuzz.h"
#include "fuzz_models.h"

#define SNAP_HEADER 40 /* bytes: magic 8, version 4, B 4, fingerprint 8, position 8, total 8 */

/* The models, made once per process: the harness has no other place to
 * keep them (libFuzzer calls LLVMFuzzerTestOneInput with the input only). */
static vttt_model *models[FUZZ_MODEL_KINDS];
static vttt_model_state *states[FUZZ_MODEL_KINDS];

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerInitialize(int *argc, char ***argv) {
    (void)argc, (void)argv;
    vttt_logger lg = FUZZ_QUIET;
    for (int k = 0; k < FUZZ_MODEL_KINDS; k++) FUZZ_CHECK(fuzz_model_open(k, &models[k], &states[k], &lg) == VTTT_OK);
    return 0;
}

static void fix_up(uint8_t *p, size_t n) {
    if (n < SNAP_HEADER + 8) return;
    uint64_t total = n, sum;
    memcpy(p + 32, &total, 8);
    sum = bpe_fnv1a(BPE_FNV_OFFSET, p, n - 8);
    memcpy(p + n - 8, &sum, 8);
}

static void check_loaded(vttt_model *m, vttt_model_state *s, const uint8_t *snap, size_t n) {
    fuzz_accepted();
    uint8_t *again = NULL;
    size_t n2 = 0;
    FUZZ_CHECK(vttt_model_state_save(s, &again, &n2) == VTTT_OK);
    FUZZ_CHECK(n2 == n && memcmp(again, snap, n) == 0);
    free(again);
    int64_t pos;
    memcpy(&pos, snap + 24, 8);
    FUZZ_CHECK(vttt_model_state_position(s) == pos);
    int32_t tok = 1;
    float logits[8];
    int err = vttt_model_decode(m, s, &tok, logits);
    /* EINVAL: an attention cache already full; ENAN: finite but huge
     * weights that overflow (the library notices and refuses the step) */
    FUZZ_CHECK(err == VTTT_OK || err == VTTT_EINVAL || err == VTTT_ENAN);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 1) return 0;
    if (!models[0]) LLVMFuzzerInitialize(NULL, NULL);
    int kind = (data[0] & 3) % FUZZ_MODEL_KINDS;
    size_t n = size - 1;
    uint8_t *snap = malloc(n ? n : 1);
    FUZZ_CHECK(snap);
    memcpy(snap, data + 1, n);
    if (!(data[0] & 4)) fix_up(snap, n);
    vttt_model_state *s = states[kind];
    vttt_model_state_reset(s);
    if (vttt_model_state_load(s, snap, n) == VTTT_OK) check_loaded(models[kind], s, snap, n);
    free(snap);
    return 0;
}
