/* The random video model and tokenizer directories of video_fixture.h. */
#include "video_fixture.h"

#include "encoder.h"
#include "model.h"

#include <string.h>

int vf_save_tokenizer(const char *enc_dir, int S, int *P, int *V) {
    vttt_encoder_config ec = vttt_encoder_default_config();
    ec.image_size = S, ec.channels = 8, ec.num_groups = 4;
    vttt_encoder *e = NULL;
    int err = vttt_encoder_levels_parse(&ec, "5,5,5", NULL);
    if (!err) err = vttt_encoder_init(&e, &ec, 7, NULL);
    if (!err) err = vttt_encoder_save(e, enc_dir);
    if (!err && P) *P = vttt_encoder_tokens_per_frame(e);
    if (!err && V) *V = vttt_encoder_vocab_size(e);
    vttt_encoder_free(&e);
    return err;
}

int vf_save_delta_tokenizer(const char *enc_dir, int S, int motion, int *P, int *V) {
    vttt_encoder_config ec = vttt_encoder_delta_default_config();
    ec.image_size = S, ec.channels = 8, ec.num_groups = 4, ec.motion = motion;
    vttt_encoder *e = NULL;
    int err = vttt_encoder_levels_parse(&ec, "5,3,3", NULL), n = 0;
    if (!err) err = vttt_encoder_init(&e, &ec, 7, NULL);
    const vttt_model_tensor *t = err ? NULL : vttt_encoder_tensors(e, &n);
    for (int i = 0; i < n; i++)
        if (!strcmp(t[i].name, "decoder.conv_out.conv.weight"))
            for (int64_t k = 0; k < t[i].numel; k++) t[i].data[k] *= 20.0f;
    if (!err) err = vttt_encoder_save(e, enc_dir);
    if (!err && P) *P = vttt_encoder_tokens_per_frame(e);
    if (!err && V) *V = vttt_encoder_vocab_size(e);
    vttt_encoder_free(&e);
    return err;
}

int vf_save_model(const char *model_dir, int P, int V, vttt_layer_kind kind, float init, uint64_t seed) {
    vttt_model_config c = vttt_model_default_config();
    int err = vttt_model_config_preset(&c, "test", NULL);
    if (err) return err;
    c.vocab_size = V, c.tokens_per_frame = P, c.mini_batch_size = 8, c.seq_kind = kind;
    if (init > 0) c.initializer_range = init;
    c.max_position_embeddings = 4096;
    vttt_model *m = NULL;
    err = vttt_model_init(&m, &c, NULL);
    if (!err) {
        vttt_model_init_weights(m, seed);
        err = vttt_model_save(m, model_dir);
    }
    vttt_model_free(&m);
    return err;
}
