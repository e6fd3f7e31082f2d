/* state_drift: how far a TTT model's inner state moves from its learned
 * initial state as it reads a document (docs/lm_length.md). Feeds the ids
 * of FILE (whitespace separated, e.g. `vttt tokenizer encode`) window by
 * window (W tokens) through one carried state and prints, after each of
 * the first N windows, per layer, the relative distance of each head's
 * inner weights (W1, and W2 for TTT-MLP; biases left out) from the learned
 * initial ones, ||W - W_init|| / ||W_init||, averaged over heads. Not part
 * of the build; it reads the state's internals. From the repository root:
 *   gcc -O2 -fopenmp -Ittt tools/probe/state_drift.c build/ttt/libvttt_core.a \
 *       -o state_drift $(pkg-config --libs openblas) -lcjson -lm
 *   ./state_drift MODEL_DIR FILE W N */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include "model.h"
#include "model_internal.h"
#include "ttt_internal.h"

/* Mean over heads of ||W - W_init|| / ||W_init|| of layer state s. */
static double drift(const vttt_layer *l, const vttt_state *s, float *init) {
    ttt_dims d = ttt_dims_of(l);
    size_t n1 = (size_t)d.f * d.h1;
    double sum = 0.0;
    for (int h = 0; h < l->H; h++) {
        ttt_state_from_params(l, h, init);
        const float *w = s->W0 + (size_t)h * s->inner_numel;
        double dd = 0.0, nn = 0.0;
        for (int part = 0; part < (d.mlp ? 2 : 1); part++) {
            size_t off = part ? n1 + d.h1 : 0;
            for (size_t i = 0; i < n1; i++) {
                double x = (double)w[off + i] - init[off + i];
                dd += x * x, nn += (double)init[off + i] * init[off + i];
            }
        }
        sum += sqrt(dd / (nn > 0 ? nn : 1.0));
    }
    return sum / l->H;
}

int main(int argc, char **argv) {
    if (argc != 5) return fprintf(stderr, "usage: state_drift MODEL_DIR FILE W N\n"), 2;
    int W = atoi(argv[3]), N = atoi(argv[4]), cap = 1 << 20, n = 0;
    int32_t *ids = malloc((size_t)cap * sizeof *ids);
    FILE *f = fopen(argv[2], "r");
    if (!f || !ids || W <= 0 || N <= 0) return fprintf(stderr, "state_drift: bad arguments\n"), 2;
    while (n < cap && fscanf(f, "%d", &ids[n]) == 1) n++;
    fclose(f);
    vttt_model *m = NULL;
    vttt_model_state *st = NULL;
    if (vttt_model_load(&m, argv[1], NULL) || vttt_model_state_init(&st, m, 1, W)) return 1;
    float *init = malloc(st->ls[0]->inner_numel * sizeof(float));
    printf("# window layer drift  (||W - W_init|| / ||W_init||, mean over heads)\n");
    for (int k = 0; k < N && (k + 1) * W <= n; k++) {
        if (vttt_model_prefill(m, st, ids + (size_t)k * W, W, NULL, 0)) return 1;
        for (int i = 0; i < m->L; i++) printf("%d %d %.6g\n", k + 1, i, drift(m->layers[i], st->ls[i], init));
    }
    free(init), free(ids);
    vttt_model_state_free(&st);
    vttt_model_free(&m);
    return 0;
}
