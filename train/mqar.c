/*
 * The MQAR example generator (train/mqar.h): key-value pairs, then each
 * key again as a query at a power-law gap, filler everywhere else.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "mqar.h"
#include "train_internal.h"

struct vttt_mqar_gen {
    vttt_mqar_config c;
    uint64_t rng;
    double *weight;   /* (space) power-law weight of gap g */
    char *taken;      /* (space) gap drawn already in this example */
    int32_t *keys, *values; /* (K) */
};

vttt_mqar_config vttt_mqar_default_config(void) {
    return (vttt_mqar_config){.vocab_size = 8192, .seq_len = 64, .num_kv_pairs = 4, .power_a = 0.01,
                              .random_filler = 0};
}

static int bad(const vttt_logger *lg, const char *what, int v) {
    vttt_log(lg, VTTT_LOG_ERROR, "mqar: %s (got %d)", what, v);
    return VTTT_EINVAL;
}

int vttt_mqar_config_check(const vttt_mqar_config *c, const vttt_logger *lg) {
    if (c->seq_len < 4 || c->seq_len % 2) return bad(lg, "seq_len must be even and >= 4", c->seq_len);
    if (c->num_kv_pairs < 1 || 4 * c->num_kv_pairs > c->seq_len)
        return bad(lg, "num_kv_pairs must be >= 1 with 4 * num_kv_pairs <= seq_len", c->num_kv_pairs);
    if (c->vocab_size <= c->seq_len) return bad(lg, "vocab_size must exceed seq_len", c->vocab_size);
    if (c->vocab_size / 2 - 1 < c->num_kv_pairs)
        return bad(lg, "vocab_size / 2 - 1 keys must cover num_kv_pairs", c->vocab_size);
    if (!(c->power_a > 0.0 && c->power_a <= 1.0)) {
        vttt_log(lg, VTTT_LOG_ERROR, "mqar: power_a must be in (0, 1] (got %g)", c->power_a);
        return VTTT_EINVAL;
    }
    return VTTT_OK;
}

static int space_of(const vttt_mqar_config *c) { return (c->seq_len - 2 * c->num_kv_pairs) / 2; }

int vttt_mqar_gen_init(vttt_mqar_gen **out, const vttt_mqar_config *c, uint64_t seed, const vttt_logger *lg) {
    *out = NULL;
    int err = vttt_mqar_config_check(c, lg);
    if (err) return err;
    vttt_mqar_gen *g = calloc(1, sizeof *g);
    int S = space_of(c), K = c->num_kv_pairs;
    if (g) {
        g->c = *c, g->rng = seed * 0xD1B54A32D192ED03ull + 0x632BE59BD9B4E019ull;
        g->weight = malloc((size_t)S * sizeof(double)), g->taken = malloc((size_t)S);
        g->keys = malloc((size_t)K * sizeof(int32_t)), g->values = malloc((size_t)K * sizeof(int32_t));
    }
    if (!g || !g->weight || !g->taken || !g->keys || !g->values) {
        vttt_mqar_gen_free(&g);
        vttt_log(lg, VTTT_LOG_ERROR, "mqar: out of memory for the generator");
        return VTTT_ENOMEM;
    }
    for (int i = 0; i < S; i++) g->weight[i] = c->power_a * pow((double)(i + 1), c->power_a - 1.0);
    *out = g;
    return VTTT_OK;
}

void vttt_mqar_gen_free(vttt_mqar_gen **gp) {
    if (!gp || !*gp) return;
    vttt_mqar_gen *g = *gp;
    free(g->weight), free(g->taken), free(g->keys), free(g->values);
    free(g);
    *gp = NULL;
}

/* n distinct integers of [lo, hi) into out (n much smaller than the range:
 * draw again on a repeat). */
static void draw_distinct(uint64_t *rng, int32_t *out, int n, int lo, int hi) {
    for (int i = 0; i < n; i++) {
        int again;
        do {
            out[i] = lo + (int32_t)train_rng_below(rng, hi - lo);
            again = 0;
            for (int j = 0; j < i; j++) again |= out[j] == out[i];
        } while (again);
    }
}

/* One gap of those not taken, with probability proportional to its weight
 * among them (numpy's choice without replacement draws the same way). */
static int draw_gap(vttt_mqar_gen *g, int S) {
    double total = 0.0;
    for (int i = 0; i < S; i++) total += g->taken[i] ? 0.0 : g->weight[i];
    double u = (double)(train_rng_next(&g->rng) >> 11) * (1.0 / 9007199254740992.0) * total;
    int last = -1;
    for (int i = 0; i < S; i++) {
        if (g->taken[i]) continue;
        last = i;
        if (u < g->weight[i]) break;
        u -= g->weight[i];
    }
    g->taken[last] = 1;
    return last;
}

void vttt_mqar_gen_next(vttt_mqar_gen *g, int32_t *tokens, int32_t *targets) {
    const vttt_mqar_config *c = &g->c;
    int T = c->seq_len, K = c->num_kv_pairs, S = space_of(c), V = c->vocab_size;
    draw_distinct(&g->rng, g->keys, K, 1, V / 2);
    draw_distinct(&g->rng, g->values, K, V / 2, V);
    for (int t = 0; t < T; t++) {
        tokens[t] = c->random_filler ? (int32_t)train_rng_below(&g->rng, V) : 0;
        targets[t] = -1;
    }
    for (int i = 0; i < K; i++) tokens[2 * i] = g->keys[i], tokens[2 * i + 1] = g->values[i];
    memset(g->taken, 0, (size_t)S);
    for (int i = 0; i < K; i++) {
        int pos = 2 * K + 2 * draw_gap(g, S);
        tokens[pos] = g->keys[i];
        targets[pos] = g->values[i];
    }
}
