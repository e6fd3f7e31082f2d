/* The vttt subcommands; each takes argv from its own name on and returns
 * the process exit status. */
#ifndef VTTT_CLI_H
#define VTTT_CLI_H
typedef struct {
    const char *name;
    const char *help;
    int (*run)(int argc, char **argv);
} cli_command;

/* Monotonic clock in seconds, for progress lines and benchmarks. */
double cli_now_s(void);
/* *out = v as a number in [lo, hi]; -1 with "CMD: OPT needs a number in
 * [lo, hi], got 'v'" on stderr otherwise (v may be NULL: a missing value). */
int cli_num(const char *cmd, const char *opt, const char *v, double lo, double hi, double *out);
/* Best-of-3 rate of an n^3 cblas_sgemm on all threads, GFLOP/s (after one
 * warm-up call); 0 when the buffers cannot be allocated. tools/bench.c. */
double cli_sgemm_rate(int n);

int cli_help(int argc, char **argv);
int cli_version(int argc, char **argv);
int cli_example(int argc, char **argv);
int cli_bench(int argc, char **argv);
int cli_bench_cuda(int argc, char **argv); /* `vttt bench cuda`, tools/bench_cuda.c */
int cli_bench_conv(int argc, char **argv); /* `vttt bench conv`, tools/bench_conv.c */
int cli_tokenizer(int argc, char **argv);   /* cli_tokenizer.c */
int cli_textgen(int argc, char **argv);     /* cli_textgen.c */
int cli_ingest_text(int argc, char **argv); /* cli_ingest_text.c: `vttt ingest text` */
int cli_ingest(int argc, char **argv);       /* cli_ingest.c: `vttt ingest video|text` */
int cli_ingest_video(int argc, char **argv); /* cli_ingest_video.c: `vttt ingest video` */
int cli_frames(int argc, char **argv);       /* cli_frames.c: `vttt frames dump|info` */
int cli_lm(int argc, char **argv);           /* cli_lm.c: `vttt lm score|loss-by-position|sample` */
int cli_train(int argc, char **argv);        /* cli_train.c: `vttt train` */
int cli_plot(int argc, char **argv);         /* cli_plot.c: `vttt plot` (loss curves) */
int cli_encoder(int argc, char **argv);      /* cli_encoder*.c: `vttt encoder train|eval|encode|decode|bench` */
int cli_predict(int argc, char **argv);      /* cli_predict.c: `vttt predict` */
int cli_bench_stream(int argc, char **argv); /* bench_stream.c: `vttt bench stream` (cost per frame, batching) */
int cli_bench_recall(int argc, char **argv); /* bench_recall.c: `vttt bench recall` (MQAR accuracy grid) */
int cli_serve(int argc, char **argv);        /* cli_serve.c: `vttt serve` (HTTP daemon) */
int cli_bench_serve(int argc, char **argv);  /* bench_serve.c: `vttt bench serve` (daemon load generator) */
int cli_video(int argc, char **argv);        /* cli_video.c: `vttt video fit` (fine-tuning on one's own clips) */
/* The video model and tokenizer directories a command uses (cli_video_dirs.c):
 * *model NULL -> the shipped general model for frame size `size` (0: 64)
 * under VTTT_MODELS (default: the source tree's models/); *encoder NULL ->
 * MODEL/encoder. The buffers (n bytes each) hold the paths made. Prints
 * the error and returns 2 when no such model exists. */
int cli_video_dirs(const char *cmd, const char **model, const char **encoder, int size, char *mbuf, char *ebuf,
                   size_t n);
#endif
