/* For serve_cli.sh: `serve_cli_helper DIR` writes a small random video
 * model (DIR/model) and frame tokenizer (DIR/enc) for 32x32 frames, and
 * DIR/frame.png, DIR/frame.rgb (the same 32x32 frame as PNG and raw
 * rgb24) and DIR/small.png (16x16, the wrong size). */
#include <stdio.h>
#include <stdlib.h>

#include "encoder.h"
#include "model.h"

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
    vttt_encoder_config ec = vttt_encoder_default_config();
    ec.image_size = S, ec.channels = 8, ec.num_groups = 4;
    vttt_encoder *e = NULL;
    vttt_model *m = NULL;
    int err = vttt_encoder_levels_parse(&ec, "5,5,5", NULL);
    if (!err) err = vttt_encoder_init(&e, &ec, 7, NULL);
    snprintf(path, sizeof path, "%s/enc", argv[1]);
    if (!err) err = vttt_encoder_save(e, path);
    vttt_model_config c = vttt_model_default_config();
    if (!err) err = vttt_model_config_preset(&c, "test", NULL);
    if (!err) {
        c.vocab_size = vttt_encoder_vocab_size(e), c.tokens_per_frame = vttt_encoder_tokens_per_frame(e);
        c.mini_batch_size = 8, c.seq_kind = VTTT_LAYER_TTT_MLP;
        err = vttt_model_init(&m, &c, NULL);
    }
    snprintf(path, sizeof path, "%s/model", argv[1]);
    if (!err) {
        vttt_model_init_weights(m, 3);
        err = vttt_model_save(m, path);
    }
    uint8_t rgb[S * S * 3];
    for (int i = 0; i < S * S * 3; i++) rgb[i] = (uint8_t)(i * 7 + i / 96);
    snprintf(path, sizeof path, "%s/frame.png", argv[1]);
    if (!err) err = vttt_png_write(path, rgb, S, S, NULL);
    snprintf(path, sizeof path, "%s/small.png", argv[1]);
    if (!err) err = vttt_png_write(path, rgb, S / 2, S / 2, NULL);
    snprintf(path, sizeof path, "%s/frame.rgb", argv[1]);
    if (!err && write_file(path, rgb, sizeof rgb)) err = VTTT_EIO;
    vttt_model_free(&m);
    vttt_encoder_free(&e);
    if (err) fprintf(stderr, "serve_cli_helper: %s\n", vttt_strerror(err));
    return err ? 1 : 0;
}
