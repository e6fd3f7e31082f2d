/* Helper of tests/test_lm_cli.sh: makes small random model directories
 * and computes, by paths independent of `vttt lm`, what it must print.
 *   lm_cli_helper init DIR KIND VOCAB SEED [mamba]   KIND: mlp | linear | attention
 *   lm_cli_helper nll DIR IDS_FILE      `<position> <id> <nll>` per predicted
 *                                       token, from decode-path logits
 *   lm_cli_helper greedy DIR N IDS...   N greedy tokens after IDS, each from
 *                                       a full forward over all tokens so far
 *   lm_cli_helper poison SRC DST VALUE  SRC with embed_tokens.weight[0] = VALUE, saved as DST */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "model.h"

static int init(char **a, int n) {
    vttt_model_config cfg = vttt_model_default_config();
    int err = vttt_model_config_preset(&cfg, "test", NULL);
    if (!err && n > 5 && !strcmp(a[5], "mamba")) err = vttt_model_config_backbone(&cfg, "mamba", NULL);
    cfg.seq_kind = !strcmp(a[2], "mlp") ? VTTT_LAYER_TTT_MLP
                   : !strcmp(a[2], "linear") ? VTTT_LAYER_TTT_LINEAR
                                              : VTTT_LAYER_ATTENTION;
    cfg.vocab_size = atoi(a[3]);
    cfg.initializer_range = 0.3f;   /* logits far from uniform: a sharper test */
    cfg.max_position_embeddings = 512;
    vttt_model *m = NULL;
    if (!err) err = vttt_model_init(&m, &cfg, NULL);
    if (!err) vttt_model_init_weights(m, strtoull(a[4], NULL, 10));
    if (!err) err = vttt_model_save(m, a[1]);
    vttt_model_free(&m);
    return err;
}

static int read_ids(const char *path, int32_t **ids, int *n) {
    FILE *f = fopen(path, "r");
    if (!f) return -1;
    int cap = 0, v;
    *n = 0;
    *ids = NULL;
    while (fscanf(f, "%d", &v) == 1) {
        if (*n == cap) *ids = realloc(*ids, (size_t)(cap = cap ? 2 * cap : 256) * sizeof **ids);
        (*ids)[(*n)++] = v;
    }
    fclose(f);
    return 0;
}

static double nll_of(const float *logits, int V, int target) {
    double mx = logits[0], s = 0;
    for (int i = 1; i < V; i++) mx = fmax(mx, logits[i]);
    for (int i = 0; i < V; i++) s += exp(logits[i] - mx);
    return log(s) + mx - logits[target];
}

static int nll(char **a) {
    vttt_model *m = NULL;
    vttt_model_state *s = NULL;
    int32_t *ids;
    int n, err = read_ids(a[2], &ids, &n) ? -1 : vttt_model_load(&m, a[1], NULL);
    if (err) return err;
    int V = vttt_model_get_config(m)->vocab_size;
    float *logits = malloc((size_t)V * sizeof *logits);
    err = vttt_model_state_init(&s, m, 1, n);
    for (int t = 0; !err && t + 1 < n; t++) {
        err = vttt_model_decode(m, s, &ids[t], logits);
        if (!err) printf("%d %d %.6f\n", t + 1, ids[t + 1], nll_of(logits, V, ids[t + 1]));
    }
    vttt_model_state_free(&s);
    vttt_model_free(&m);
    free(logits);
    free(ids);
    return err;
}

static int greedy(char **a, int argc) {
    vttt_model *m = NULL;
    int err = vttt_model_load(&m, a[1], NULL);
    if (err) return err;
    int N = atoi(a[2]), n = argc - 3, V = vttt_model_get_config(m)->vocab_size;
    int32_t *ids = malloc((size_t)(n + N) * sizeof *ids);
    float *logits = malloc((size_t)(n + N) * V * sizeof *logits);
    for (int i = 0; i < n; i++) ids[i] = atoi(a[3 + i]);
    for (int k = 0; !err && k < N; k++, n++) {
        err = vttt_model_forward(m, ids, NULL, 1, n, 0, NULL, logits);
        const float *last = logits + (size_t)(n - 1) * V;
        int best = 0;
        for (int i = 1; i < V; i++)
            if (last[i] > last[best]) best = i;
        ids[n] = best;
        printf(k ? " %d" : "%d", best);
    }
    printf("\n");
    free(ids);
    free(logits);
    vttt_model_free(&m);
    return err;
}

static int poison(char **a) {
    vttt_model *m = NULL;
    int err = vttt_model_load(&m, a[1], NULL), n = 0;
    const vttt_model_tensor *t = err ? NULL : vttt_model_tensors(m, &n);
    for (int i = 0; i < n; i++)
        if (!strcmp(t[i].name, "model.embed_tokens.weight")) t[i].data[0] = strtof(a[3], NULL);
    if (!err) err = vttt_model_save(m, a[2]);
    vttt_model_free(&m);
    return err;
}

int main(int argc, char **argv) {
    int err = 1;
    if (argc >= 5 && !strcmp(argv[1], "init")) err = init(argv + 1, argc - 1);
    else if (argc == 4 && !strcmp(argv[1], "nll")) err = nll(argv + 1);
    else if (argc >= 4 && !strcmp(argv[1], "greedy")) err = greedy(argv + 1, argc - 1);
    else if (argc == 5 && !strcmp(argv[1], "poison")) err = poison(argv + 1);
    else fprintf(stderr, "usage: see the comment at the top of tests/lm_cli_helper.c\n");
    if (err) fprintf(stderr, "lm_cli_helper %s: failed (%d)\n", argc > 1 ? argv[1] : "", err);
    return err ? 1 : 0;
}
