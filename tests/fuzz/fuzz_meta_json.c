/* Fuzz target: the meta.json beside token shards (ingest/data_meta.c,
 * vttt_data_meta_parse: what vttt_data_meta_read does after reading the
 * file). An accepted document's fields must be in their documented
 * ranges. */
#include "data_meta.h"
#include "fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    vttt_logger lg = FUZZ_QUIET;
    vttt_data_meta m;
    if (vttt_data_meta_parse(&m, (const char *)data, size, "meta.json", &lg)) return 0;
    fuzz_accepted();
    FUZZ_CHECK(m.vocab_size >= 1);
    FUZZ_CHECK(m.eot == -1 || (m.eot >= 0 && m.eot < m.vocab_size));
    FUZZ_CHECK(m.tokens_per_frame >= 0 && m.tokens_per_frame <= VTTT_DATA_META_MAX_TPF);
    FUZZ_CHECK((m.fps_num == 0 && m.fps_den == 0) || (m.fps_num >= 0 && m.fps_den >= 1));
    return 0;
}
