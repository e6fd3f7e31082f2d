/* For tests/video_train.sh: runs a video through one stream with
 * vttt_stream_push (the RGB path: the stream encodes, predicts and
 * decodes), independently of `vttt predict`'s loop, and prints what
 * predict writes to tokens.txt (one line per frame: t and the tokens
 * predicted for frame t+1), then "model_psnr <mean>" over frames 1.. of
 * the predicted frame against the true one.
 * Usage: video_stream_helper MODEL ENCODER VIDEO MAX_FRAMES */
#include <stdio.h>
#include <stdlib.h>

#include "infer.h"
#include "ingest.h"

int main(int argc, char **argv) {
    if (argc != 5) {
        fprintf(stderr, "usage: video_stream_helper MODEL ENCODER VIDEO MAX_FRAMES\n");
        return 2;
    }
    vttt_predictor *p = NULL;
    vttt_stream *s = NULL;
    vttt_video *v = NULL;
    if (vttt_predictor_open(&p, argv[1], argv[2], NULL) || vttt_stream_open(&s, p)) return 1;
    int S = vttt_predictor_frame_size(p), P = vttt_predictor_tokens_per_frame(p);
    long max = atol(argv[4]);
    vttt_video_params vp = vttt_video_default_params();
    vp.size = S;
    if (vttt_video_open(&v, argv[3], &vp, NULL, NULL, 0)) return 1;
    size_t fb = (size_t)S * S * 3;
    uint8_t *rgb = malloc(fb), *pred = malloc(fb);
    int32_t *tok = malloc((size_t)P * sizeof *tok);
    double sum = 0.0;
    long t = 0;
    int err = 0;
    for (; t < max && !(err = vttt_video_receive_frame(v, rgb, NULL)); t++) {
        if (t > 0) sum += vttt_image_psnr(pred, rgb, S, S); /* pred: frame t as predicted at t-1 */
        if ((err = vttt_stream_push(s, rgb, 1, pred, tok))) break;
        printf("%ld", t);
        for (int i = 0; i < P; i++) printf(" %d", tok[i]);
        printf("\n");
    }
    printf("model_psnr %.4f\n", t > 1 ? sum / (double)(t - 1) : 0.0);
    free(rgb), free(pred), free(tok);
    vttt_video_free(&v);
    vttt_stream_free(&s);
    vttt_predictor_close(&p);
    return err && err != VTTT_EOF ? 1 : 0;
}
