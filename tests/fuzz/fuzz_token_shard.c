/* Fuzz target: token shards (ingest/token_shard.c). An accepted shard's
 * size must match its header, every token must read back, in one piece
 * and in pieces alike, and reads past the end must be refused. */
#include <string.h>

#include "fuzz.h"
#include "ingest.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    char path[FUZZ_PATH_MAX];
    fuzz_file(path, "train_000000.bin", data, size);
    vttt_logger lg = FUZZ_QUIET;
    vttt_token_shard *s = NULL;
    int err = vttt_token_shard_open(&s, path, &lg);
    FUZZ_CHECK(err ? s == NULL : s != NULL);
    if (err) return 0;
    fuzz_accepted();
    int64_t n = vttt_token_shard_count(s);
    int ts = vttt_token_shard_token_size(s);
    FUZZ_CHECK((ts == 2 || ts == 4) && n >= 0 && (uint64_t)n * (uint64_t)ts + VTTT_SHARD_HEADER_BYTES == size);
    int32_t *all = malloc((size_t)(n ? n : 1) * sizeof *all), piece[7];
    FUZZ_CHECK(all);
    int whole = vttt_token_shard_read(s, 0, n, all);
    FUZZ_CHECK(whole == VTTT_OK || whole == VTTT_EFORMAT);   /* EFORMAT: a uint32 id over INT32_MAX */
    int64_t max = -1;
    for (int64_t i = 0; whole == VTTT_OK && i < n; i += 7) {
        int64_t k = n - i < 7 ? n - i : 7;
        FUZZ_CHECK(vttt_token_shard_read(s, i, k, piece) == VTTT_OK);
        FUZZ_CHECK(memcmp(piece, all + i, (size_t)k * sizeof *piece) == 0);
        for (int64_t j = 0; j < k; j++) max = piece[j] > max ? piece[j] : max;
    }
    if (whole == VTTT_OK) FUZZ_CHECK(vttt_token_shard_max_id(s) == max);
    FUZZ_CHECK(vttt_token_shard_read(s, n, 1, piece) == VTTT_EINVAL);
    FUZZ_CHECK(vttt_token_shard_read(s, -1, 1, piece) == VTTT_EINVAL);
    free(all);
    vttt_token_shard_close(&s);
    return 0;
}
