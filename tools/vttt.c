/* The vttt command line: one subcommand per job. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cli.h"

/* `vttt bench cuda ...` is tools/bench_cuda.c, `vttt bench conv` tools/bench_conv.c; the other benches bench.c. */
static int bench_dispatch(int argc, char **argv) {
    if (argc >= 2 && !strcmp(argv[1], "cuda")) return cli_bench_cuda(argc - 1, argv + 1);
    if (argc >= 2 && !strcmp(argv[1], "serve")) return cli_bench_serve(argc - 1, argv + 1);
    if (argc >= 2 && !strcmp(argv[1], "conv")) return cli_bench_conv(argc - 1, argv + 1);
    if (argc >= 2 && !strcmp(argv[1], "stream")) return cli_bench_stream(argc - 1, argv + 1);
    if (argc >= 2 && !strcmp(argv[1], "recall")) return cli_bench_recall(argc - 1, argv + 1);
    return cli_bench(argc, argv);
}

static const cli_command commands[] = {
    {"help", "list the subcommands", cli_help},
    {"example", "run the built-in example: a TTT-MLP layer over a synthetic sequence, three ways", cli_example},
    {"bench", "benchmarks: `vttt bench ttt [--contexts LIST] [--kinds LIST] [--no-train] [--quick]`; "
              "`vttt bench cuda [--contexts LIST] [--kinds LIST] [--batch B] [--quick] "
              "[--parts kernels,layer,gemm,model]` (fused GPU kernels, the layer and a 125m model on the GPU); "
              "`vttt bench conv [--batch N] [--channels C] [--size S]` (the frame tokenizer's image ops, CPU); "
              "`vttt bench recall [--quick] [--layers L] [--widths W] [--lens T] [--kv K] [--steps N] [--out DIR]` "
              "(multi-query associative recall accuracy grid, docs/mqar.md)",
     bench_dispatch},
    {"tokenizer", "byte-level BPE: `vttt tokenizer train|encode|decode|info ...`", cli_tokenizer},
    {"textgen", "generate English-like example text: `vttt textgen [--bytes N] [--seed S] [--out FILE]`", cli_textgen},
    {"ingest", "ingestion jobs: `vttt ingest video --out DIR [--fps R] [--size S] [--jobs N] [--open-timeout S] [--stall-timeout S] FILES...` (a source that does not open or stalls for S s, 30 by default, fails; the job goes on), `vttt ingest text ...`", cli_ingest},
    {"frames", "inspect frame shards: `vttt frames dump --shard F [--png DIR | --raw] [--start N --count M]`", cli_frames},
    {"train", "train a language model on token shards: `vttt train --data DIR --out DIR [--layer ttt_mlp|ttt_linear|attention] ...`", cli_train},
    {"encoder", "the frame tokenizer: `vttt encoder train|eval|encode|decode|bench ...` (conv encoder, FSQ tokens, "
                "decoder)", cli_encoder},
    {"plot", "loss curves of training runs as a PNG: `vttt plot --out PNG RUN_DIR...`", cli_plot},
    {"serve", "next-frame prediction over HTTP: `vttt serve --model DIR --encoder DIR [--listen 127.0.0.1:PORT] "
              "[--token T] [--max-connections 1024] [--max-connections-per-ip 256] [--request-deadline 30] ...` (limits: "
              "`vttt serve --help`); `vttt bench serve [--streams 1,8,64]` measures it", cli_serve},
    {"predict", "next-frame prediction over a video file, scored against baselines: `vttt predict --model DIR "
                "--encoder DIR --video FILE --out OUT [--horizon K]`; `vttt bench stream` times a stream", cli_predict},
    {"video", "fine-tune a video model and its tokenizer on your clips within a time budget, keeping the best "
              "on held-out frames: `vttt video fit --out DIR [--minutes 10] [--size S] [--init MODELDIR] "
              "[--heldout 0.2] [--threads N] FILES...` (DIR works with `vttt predict/serve --model DIR`)", cli_video},
    {"lm", "use a language model: `vttt lm score|loss-by-position|sample --model DIR ...`", cli_lm},
    {"version", "print the version", cli_version},
};

int cli_help(int argc, char **argv) {
    (void)argc;
    (void)argv;
    printf("usage: vttt <command> [options]\n\ncommands:\n");
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
        printf("  %-10s %s\n", commands[i].name, commands[i].help);
    return 0;
}

double cli_now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

int cli_num(const char *cmd, const char *opt, const char *v, double lo, double hi, double *out) {
    char *end = NULL;
    errno = 0;
    double d = v ? strtod(v, &end) : 0.0;
    if (!v || end == v || *end || errno || !(d >= lo && d <= hi)) {
        fprintf(stderr, "%s: %s needs a number in [%g, %g], got '%s'\n", cmd, opt, lo, hi, v ? v : "(nothing)");
        return -1;
    }
    *out = d;
    return 0;
}

int cli_version(int argc, char **argv) {
    (void)argc;
    (void)argv;
    printf("vttt 0.1.0\n");
    return 0;
}

int main(int argc, char **argv) {
    if (argc < 2) {
        cli_help(0, NULL);
        return 2;
    }
    if (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h")) return cli_help(0, NULL);
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
        if (!strcmp(argv[1], commands[i].name)) return commands[i].run(argc - 1, argv + 1);
    fprintf(stderr, "vttt: unknown command '%s'; `vttt --help` lists the commands\n", argv[1]);
    return 2;
}
