/* Fuzz target: a tokenizer directory's config.json (encoder/encoder_config.c,
 * enc_config_parse: what enc_config_read does after reading the file). An
 * accepted config must pass vttt_encoder_config_check, and writing it and
 * reading it back must give the same settings. */
#include <string.h>

#include "encoder_internal.h"
#include "fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    vttt_logger lg = FUZZ_QUIET;
    vttt_encoder_config cfg;
    if (enc_config_parse(&cfg, (const char *)data, size, "config.json", &lg)) return 0;
    fuzz_accepted();
    FUZZ_CHECK(vttt_encoder_config_check(&cfg, &lg) == VTTT_OK);
    char path[FUZZ_PATH_MAX];
    fuzz_file(path, "config.json", NULL, 0);
    FUZZ_CHECK(enc_config_write(&cfg, path, &lg) == VTTT_OK);
    vttt_encoder_config again;
    FUZZ_CHECK(enc_config_read(&again, path, &lg) == VTTT_OK);
    FUZZ_CHECK(memcmp(&again, &cfg, sizeof cfg) == 0);
    return 0;
}
