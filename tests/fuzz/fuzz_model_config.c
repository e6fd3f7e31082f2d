/* Fuzz target: a model directory's config.json (ttt/model_config_json.c,
 * vttt_model_config_parse: what vttt_model_config_read does after reading
 * the file). An accepted config must pass vttt_model_config_check, and
 * writing it and reading it back must give the same model (the same
 * fingerprint). */
#include "fuzz.h"
#include "model.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    vttt_logger lg = FUZZ_QUIET;
    vttt_model_config cfg;
    if (vttt_model_config_parse(&cfg, (const char *)data, size, "config.json", &lg)) return 0;
    fuzz_accepted();
    FUZZ_CHECK(vttt_model_config_check(&cfg, &lg) == VTTT_OK);
    char path[FUZZ_PATH_MAX];
    fuzz_file(path, "config.json", NULL, 0);
    FUZZ_CHECK(vttt_model_config_write(&cfg, path, &lg) == VTTT_OK);
    vttt_model_config again;
    FUZZ_CHECK(vttt_model_config_read(&again, path, &lg) == VTTT_OK);
    FUZZ_CHECK(vttt_model_config_fingerprint(&again) == vttt_model_config_fingerprint(&cfg));
    return 0;
}
