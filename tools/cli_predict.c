/* `vttt predict`: next-frame prediction over a video file with a video
 * model and its frame tokenizer (infer/infer.h, vttt_predict_run): scores
 * against the true frames beside the repeat-last-frame baseline and the
 * tokenizer's ceiling, a side-by-side video and PNG strips. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <libavutil/log.h>

#include "cli.h"
#include "infer.h"
#include "ingest.h"
#include "lm.h"

#define CMD "vttt predict"

static void usage(FILE *f) {
    fprintf(f,
            "usage: vttt predict [--model DIR] [--encoder DIR] --video FILE --out OUT [options]\n"
            "  --model DIR: a video model (default: the shipped general model for --size, 64 or 128);\n"
            "  --encoder DIR: its tokenizer (default: DIR/encoder, as `vttt video fit` writes it)\n"
            "  runs the video through the tokenizer and the video model one frame at a time (a stream with a\n"
            "  constant-size state) and scores every predicted next frame against the true one, beside\n"
            "  two baselines: repeating the last frame, and the tokenizer's own reconstruction of the\n"
            "  true frame (the ceiling). DIR may be a training run (its newest checkpoint).\n"
            "  OUT gets frames.csv (PSNR/SSIM per frame), summary.json (means), strip.png (true /\n"
            "  predicted / tokenizer rows), rollout.png (--horizon > 1), predicted.mp4 (true | predicted)\n"
            "  and tokens.txt (the predicted tokens of every frame).\n"
            "options:\n"
            "  --horizon K       roll the prediction forward K frames, each predicted frame fed back (1);\n"
            "                    PSNR is reported at every step k\n"
            "  --size S          decoding size; must be the tokenizer's image size (default: that)\n"
            "  --fps R           decoding rate, e.g. 10 or 30000/1001 (default: every source frame)\n"
            "  --max-frames N    read at most N frames\n"
            "  --strip-every N   strip.png columns every N frames (10)  --strip-frames N columns (8)\n"
            "  --decode M        auto (default: mixture for a DELTA tokenizer, else expect), mixture (the\n"
            "                    expected frame over \"no change\" and each cell's 3 likeliest other tokens),\n"
            "                    expect (decode the expected latent), argmax (the most likely tokens), sample\n"
            "  --no-video        no predicted.mp4\n"
            "  --threads N       OpenMP/OpenBLAS threads  --quiet: no summary on stdout\n");
}

typedef struct {
    const char *model, *encoder;
    vttt_predict_params pp;
    long long size, threads;
    int quiet;
} opts;

static int parse_value(opts *o, const char *a, const char *v) {
    long long x;
    if (!strcmp(a, "--model")) o->model = v;
    else if (!strcmp(a, "--encoder")) o->encoder = v;
    else if (!strcmp(a, "--video")) o->pp.video = v;
    else if (!strcmp(a, "--decode")) {
        if ((o->pp.decoding = vttt_decoding_parse(v)) < -1) {
            fprintf(stderr, CMD ": --decode '%s': auto, mixture, expect, argmax or sample\n", v);
            return 2;
        }
    }
    else if (!strcmp(a, "--out")) o->pp.out_dir = v;
    else if (!strcmp(a, "--fps")) {
        if (vttt_video_rate_parse(v, &o->pp.fps_num, &o->pp.fps_den)) {
            fprintf(stderr, CMD ": --fps '%s' is not a rate (e.g. 10, 29.97, 30000/1001)\n", v);
            return 2;
        }
    } else if (!strcmp(a, "--horizon")) {
        if (lm_parse_int(CMD, a, v, 1, VTTT_PREDICT_MAX_HORIZON, &x)) return 2;
        o->pp.horizon = (int)x;
    } else if (!strcmp(a, "--size")) return lm_parse_int(CMD, a, v, 8, 1024, &o->size) ? 2 : 0;
    else if (!strcmp(a, "--threads")) return lm_parse_int(CMD, a, v, 1, 4096, &o->threads) ? 2 : 0;
    else if (!strcmp(a, "--max-frames")) {
        if (lm_parse_int(CMD, a, v, 1, INT64_MAX, &x)) return 2;
        o->pp.max_frames = x;
    } else if (!strcmp(a, "--strip-every") || !strcmp(a, "--strip-frames")) {
        if (lm_parse_int(CMD, a, v, 1, 256, &x)) return 2;
        *(a[8] == 'e' ? &o->pp.strip_every : &o->pp.strip_frames) = (int)x;
    } else return -1;
    return 0;
}

/* 0 ok, 1 --help, 2 usage error. */
static int parse(opts *o, int argc, char **argv) {
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) return 1;
        if (!strcmp(a, "--no-video")) o->pp.write_video = 0;
        else if (!strcmp(a, "--quiet")) o->quiet = 1;
        else if (i + 1 < argc) {
            int r = parse_value(o, a, argv[i + 1]);
            if (r > 0) return 2;
            if (r < 0) {
                fprintf(stderr, CMD ": unknown option '%s' (see --help)\n", a);
                return 2;
            }
            i++;
        } else {
            fprintf(stderr, CMD ": unknown option or missing value '%s' (see --help)\n", a);
            return 2;
        }
    }
    if (!o->pp.video || !o->pp.out_dir) {
        fprintf(stderr, CMD ": --video and --out are required (see --help)\n");
        return 2;
    }
    return 0;
}

static void print_summary(const vttt_predict_summary *s) {
    printf("frames %lld, scored %lld (next-frame PSNR in dB / SSIM, means)\n", (long long)s->frames,
           (long long)s->scored);
    printf("  model              %8.3f dB  %.4f\n", s->model_psnr, s->model_ssim);
    printf("  repeat last frame  %8.3f dB  %.4f\n", s->repeat_psnr, s->repeat_ssim);
    printf("  copy last tokens   %8.3f dB  %.4f\n", s->copy_psnr, s->copy_ssim);
    printf("  tokenizer ceiling  %8.3f dB  %.4f\n", s->ceiling_psnr, s->ceiling_ssim);
    printf("next-frame token accuracy: model %.4f, repeat last frame %.4f\n", s->model_token_acc, s->repeat_token_acc);
    for (int k = 1; s->horizon > 1 && k <= s->horizon; k++)
        printf("  step k=%-2d  model %7.3f dB %.4f  repeat %7.3f dB %.4f  copy tokens %7.3f dB  ceiling %7.3f dB  "
               "(%lld frames)\n", k, s->step_model_psnr[k - 1], s->step_model_ssim[k - 1], s->step_repeat_psnr[k - 1],
               s->step_repeat_ssim[k - 1], s->step_copy_psnr[k - 1], s->step_ceiling_psnr[k - 1],
               (long long)s->step_count[k - 1]);
    printf("model %.3f ms/frame, tokenizer %.3f ms/frame, stream state %zu bytes\n", s->model_ms_per_frame,
           s->encode_ms_per_frame, s->state_bytes);
    if (s->video_path[0]) printf("video %s\n", s->video_path);
}

int cli_predict(int argc, char **argv) {
    opts o = {.pp = vttt_predict_default_params()};
    int r = parse(&o, argc, argv);
    if (r) {
        usage(r == 1 ? stdout : stderr);
        return r == 1 ? 0 : 2;
    }
    lm_set_threads((int)o.threads);
    av_log_set_level(AV_LOG_ERROR); /* FFmpeg's banners and statistics off; errors come back as codes */
    char mbuf[4096], ebuf[4096];
    if (cli_video_dirs(CMD, &o.model, &o.encoder, (int)o.size, mbuf, ebuf, sizeof mbuf)) return 2;
    vttt_predictor *p = NULL;
    int err = vttt_predictor_open(&p, o.model, o.encoder, NULL);
    if (err) {
        fprintf(stderr, CMD ": cannot load the model %s with the tokenizer %s (%s)\n", o.model, o.encoder,
                vttt_strerror(err));
        return 1;
    }
    if (o.size && o.size != vttt_predictor_frame_size(p)) {
        fprintf(stderr, CMD ": --size %lld differs from the tokenizer's image size %d; frames must be decoded at "
                "the size the tokenizer was trained on\n", o.size, vttt_predictor_frame_size(p));
        vttt_predictor_close(&p);
        return 2;
    }
    vttt_predict_summary s;
    err = vttt_predict_run(p, &o.pp, &s, NULL);
    vttt_predictor_close(&p);
    if (err) {
        fprintf(stderr, CMD ": failed (%s)\n", vttt_strerror(err));
        return 1;
    }
    if (!o.quiet) print_summary(&s);
    return fflush(stdout) ? 1 : 0;
}
