/* Fuzz target: frame shards (ingest/frame_shard.c). An accepted shard's
 * header must describe the file's size, and every frame must read back
 * with windows past the end refused. */
#include <string.h>

#include "fuzz.h"
#include "ingest.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    char path[FUZZ_PATH_MAX];
    fuzz_file(path, "clip.vfr", data, size);
    vttt_logger lg = FUZZ_QUIET;
    vttt_frame_shard *s = NULL;
    int err = vttt_frame_shard_open(&s, path, &lg);
    FUZZ_CHECK(err ? s == NULL : s != NULL);
    if (err) return 0;
    fuzz_accepted();
    const vttt_frame_shard_info *info = vttt_frame_shard_get_info(s);
    size_t fb = vttt_frame_shard_frame_bytes(info);
    FUZZ_CHECK(info->width > 0 && info->height > 0 && info->channels > 0 && info->frame_count >= 0);
    FUZZ_CHECK(fb == (size_t)info->width * info->height * info->channels);
    FUZZ_CHECK(VTTT_FRAME_SHARD_HEADER_BYTES + (uint64_t)info->frame_count * fb == size);
    FUZZ_CHECK(memchr(info->source, 0, sizeof info->source) != NULL);
    /* a frame buffer only when the file holds frames: an empty shard's frame may be 16 GiB */
    uint8_t *frame = malloc(info->frame_count ? fb : 1);
    FUZZ_CHECK(frame);
    for (int64_t i = 0; i < info->frame_count; i++) {
        FUZZ_CHECK(vttt_frame_shard_read(s, i, 1, frame) == VTTT_OK);
        FUZZ_CHECK(memcmp(frame, data + VTTT_FRAME_SHARD_HEADER_BYTES + (size_t)i * fb, fb) == 0);
    }
    FUZZ_CHECK(vttt_frame_shard_read(s, info->frame_count, 1, frame) == VTTT_EINVAL);
    free(frame);
    vttt_frame_shard_close(&s);
    return 0;
}
