/* Shared test helpers: deterministic random data and error measures. */
#ifndef VTTT_TESTUTIL_H
#define VTTT_TESTUTIL_H
#include <stddef.h>
#include <stdint.h>

typedef struct { uint64_t s; } tu_rng;
void tu_seed(tu_rng *r, uint64_t seed);
float tu_uniform(tu_rng *r);                 /* [0, 1) */
float tu_normal(tu_rng *r);                  /* N(0, 1) */
void tu_fill_normal(tu_rng *r, float *x, size_t n, float scale);
/* max |a-b| / max(max|b|, tiny): relative error on the scale of b. */
double tu_rel_err(const float *a, const float *b, size_t n);
double tu_max_abs(const float *a, size_t n);
#endif
