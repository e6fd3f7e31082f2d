/* For serve_cli.sh: `serve_cli_helper DIR` writes a small random video
 * model (DIR/model) and frame tokenizer (DIR/enc) for 32x32 frames, and
 * DIR/frame.png, DIR/frame.rgb (the same 32x32 frame as PNG and raw
 * rgb24) and DIR/small.png (16x16, the wrong size). */
#include <stdio.h>
#include <stdlib.h>

#include "encoder.h"
#include "video_fixture.h"

#define S 32

static int write_file(const char *path, const void *p, size_t n) {
    FILE *f = fopen(path, "wb");
    if (!f) return -1;
    int ok = fwrite(p, 1, n, f) == n;
    return fclose(f) == 0 && ok ? 0 : -1;
}

int main(int argc, char **argv) {
    if (argc != 2) {
        fprintf(stderr, "usage: serve_cli_helper DIR\n");
        return 2;
    }
    char path[4096];
    int P = 0, V = 0;
    snprintf(path, sizeof path, "%s/enc", argv[1]);
    int err = vf_save_tokenizer(path, S, &P, &V);
    snprintf(path, sizeof path, "%s/model", argv[1]);
    if (!err) err = vf_save_model(path, P, V, VTTT_LAYER_TTT_MLP, 0.0f, 3);
    uint8_t rgb[S * S * 3];
    for (int i = 0; i < S * S * 3; i++) rgb[i] = (uint8_t)(i * 7 + i / 96);
    snprintf(path, sizeof path, "%s/frame.png", argv[1]);
    if (!err) err = vttt_png_write(path, rgb, S, S, NULL);
    snprintf(path, sizeof path, "%s/small.png", argv[1]);
    if (!err) err = vttt_png_write(path, rgb, S / 2, S / 2, NULL);
    snprintf(path, sizeof path, "%s/frame.rgb", argv[1]);
    if (!err && write_file(path, rgb, sizeof rgb)) err = VTTT_EIO;
    if (err) fprintf(stderr, "serve_cli_helper: %s\n", vttt_strerror(err));
    return err ? 1 : 0;
}
