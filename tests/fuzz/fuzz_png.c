/* Fuzz target: PNG decoding (encoder/png.c, libpng in memory; the daemon
 * decodes every posted frame with it).
 *
 * Input: one mode byte, then the PNG. Mode even: the harness rewrites each
 * chunk's CRC to the right value, so that mutations reach libpng's parsing
 * instead of its CRC check; odd: the bytes as given. A decoded image must
 * respect the pixel limit and survive an encode/decode round trip. */
#include <string.h>
#include <zlib.h>

#include "encoder.h"
#include "fuzz.h"

#define MAX_PIXELS (1 << 20)

static uint32_t get_be32(const uint8_t *p) {
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

/* Rewrites the CRC of every whole chunk after the 8-byte signature. */
static void fix_crcs(uint8_t *p, size_t n) {
    for (size_t off = 8; off + 12 <= n;) {
        size_t len = get_be32(p + off);
        if (len > n - off - 12) break;
        uint32_t crc = (uint32_t)crc32(0L, p + off + 4, (uInt)(len + 4));
        uint8_t *c = p + off + 8 + len;
        c[0] = (uint8_t)(crc >> 24), c[1] = (uint8_t)(crc >> 16), c[2] = (uint8_t)(crc >> 8), c[3] = (uint8_t)crc;
        off += 12 + len;
    }
}

static void check_image(const uint8_t *rgb, int w, int h) {
    fuzz_accepted();
    FUZZ_CHECK(rgb && w > 0 && h > 0 && (int64_t)w * h <= MAX_PIXELS);
    vttt_logger lg = FUZZ_QUIET;
    uint8_t *png = NULL, *again = NULL;
    size_t n = 0;
    int w2 = 0, h2 = 0;
    FUZZ_CHECK(vttt_png_encode(rgb, w, h, &png, &n, &lg) == VTTT_OK);
    FUZZ_CHECK(vttt_png_decode(png, n, &again, &w2, &h2, MAX_PIXELS, &lg) == VTTT_OK);
    FUZZ_CHECK(w2 == w && h2 == h && memcmp(again, rgb, (size_t)w * h * 3) == 0);
    free(png);
    free(again);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 1) return 0;
    size_t n = size - 1;
    uint8_t *bytes = malloc(n ? n : 1);
    FUZZ_CHECK(bytes);
    memcpy(bytes, data + 1, n);
    if (!(data[0] & 1) && n >= 8) fix_crcs(bytes, n);
    vttt_logger lg = FUZZ_QUIET;
    uint8_t *rgb = NULL;
    int w = -1, h = -1;
    int err = vttt_png_decode(bytes, n, &rgb, &w, &h, MAX_PIXELS, &lg);
    FUZZ_CHECK(err == VTTT_OK || err == VTTT_EFORMAT || err == VTTT_EINVAL);
    if (!err) check_image(rgb, w, h);
    else FUZZ_CHECK(rgb == NULL);
    free(rgb);
    free(bytes);
    return 0;
}
