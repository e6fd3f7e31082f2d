/*
 * The order in which training visits samples: epoch by epoch, each epoch a
 * permutation drawn from (seed, epoch) alone, so that a position (epoch,
 * cursor) is all a checkpoint needs to continue the same sequence.
 */
#include <stdlib.h>

#include "train_internal.h"

uint64_t train_rng_next(uint64_t *s) {
    uint64_t z = (*s += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

int64_t train_rng_below(uint64_t *s, int64_t n) {
    return (int64_t)(((unsigned __int128)train_rng_next(s) * (uint64_t)n) >> 64);
}

/* Fisher-Yates over 0..n-1 with the stream of (seed, epoch). */
static void shuffle_epoch(train_sampler *s) {
    uint64_t st = s->seed * 0xD1B54A32D192ED03ull ^ ((uint64_t)s->epoch + 1) * 0x9E3779B97F4A7C15ull;
    for (int64_t i = 0; i < s->n; i++) s->perm[i] = i;
    for (int64_t i = s->n - 1; i > 0; i--) {
        int64_t j = train_rng_below(&st, i + 1), t = s->perm[i];
        s->perm[i] = s->perm[j], s->perm[j] = t;
    }
}

int train_sampler_init(train_sampler *s, int64_t n, uint64_t seed, int shuffle, int64_t epoch, int64_t cursor) {
    s->n = n, s->seed = seed, s->shuffle = shuffle, s->epoch = epoch, s->cursor = cursor;
    s->perm = NULL;
    if (n <= 0 || cursor < 0 || cursor > n || epoch < 0) return VTTT_EINVAL;
    if (!shuffle) return VTTT_OK;
    if (!(s->perm = malloc((size_t)n * sizeof *s->perm))) return VTTT_ENOMEM;
    shuffle_epoch(s);
    return VTTT_OK;
}

void train_sampler_free(train_sampler *s) {
    free(s->perm);
    s->perm = NULL;
}

int64_t train_sampler_next(train_sampler *s) {
    if (s->cursor == s->n) {
        s->epoch++, s->cursor = 0;
        if (s->shuffle) shuffle_epoch(s);
    }
    int64_t i = s->cursor++;
    return s->shuffle ? s->perm[i] : i;
}
