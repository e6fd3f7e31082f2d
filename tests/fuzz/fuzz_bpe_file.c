/* Fuzz target: the BPE tokenizer file (ingest/bpe_file.c, vttt_bpe_parse:
 * what vttt_bpe_load does after reading the file).
 *
 * Input: one mode byte, then the file. Mode even: the harness appends the
 * file's correct checksum line, so that the fuzzer reaches the header and
 * merge parsing behind the checksum; odd: the file as given. An accepted
 * tokenizer must decode what it encodes back to the same bytes. */
#include <string.h>

#include "bpe_internal.h"
#include "fuzz.h"
#include "ingest.h"

static const char sample[] = "Once upon a time, 42 tokens\n\tand <|endoftext|> \xc3\xa9t\xc3\xa9 \xff\xfe";

static void check_roundtrip(const vttt_bpe *bpe) {
    fuzz_accepted();
    vttt_token_buf ids = {0};
    FUZZ_CHECK(vttt_bpe_encode(bpe, sample, sizeof sample - 1, &ids) == VTTT_OK);
    uint8_t *text = NULL;
    size_t len = 0;
    FUZZ_CHECK(vttt_bpe_decode(bpe, ids.ids, ids.n, &text, &len) == VTTT_OK);
    FUZZ_CHECK(len == sizeof sample - 1 && memcmp(text, sample, len) == 0);
    free(text);
    vttt_token_buf_free(&ids);
    int v = vttt_bpe_vocab_size(bpe);
    FUZZ_CHECK(v == 256 + vttt_bpe_num_merges(bpe) + 1 && vttt_bpe_eot(bpe) == v - 1);
    const uint8_t *bytes;
    for (int32_t id = 0; id < v; id++) FUZZ_CHECK(vttt_bpe_token_bytes(bpe, id, &bytes, &len) == VTTT_OK && len > 0);
    FUZZ_CHECK(vttt_bpe_token_bytes(bpe, v, &bytes, &len) == VTTT_EINVAL);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 1) return 0;
    size_t n = size - 1;
    char *file = malloc(n + 32);
    FUZZ_CHECK(file);
    memcpy(file, data + 1, n);
    if (!(data[0] & 1)) {
        char line[32];
        int k = snprintf(line, sizeof line, "checksum %016llx\n",
                         (unsigned long long)bpe_fnv1a(BPE_FNV_OFFSET, file, n));
        memcpy(file + n, line, (size_t)k);
        n += (size_t)k;
    }
    vttt_logger lg = FUZZ_QUIET;
    vttt_bpe *bpe = NULL;
    int err = vttt_bpe_parse(&bpe, file, n, "tok.bpe", &lg);
    FUZZ_CHECK(err ? bpe == NULL : bpe != NULL);
    if (!err) check_roundtrip(bpe);
    vttt_bpe_free(&bpe);
    free(file);
    return 0;
}
