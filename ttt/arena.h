/*
 * ttt/arena.h — internal: one block of backend memory carved into buffers.
 *
 * A model or a run sizes everything it will need once, takes it from the
 * backend in one allocation, and hands out aligned slices; nothing is
 * allocated inside a step loop. Works on any backend (host memory for the
 * CPU table, device memory for CUDA), since it only calls be->alloc once
 * and be->free once.
 *
 * Two passes with the same code: lay the buffers out on a plan (an arena
 * without memory, which only counts), then ttt_arena_init with the plan's
 * size and lay them out again for real.
 */
#ifndef VTTT_ARENA_H
#define VTTT_ARENA_H

#include <stddef.h>

#include "backend.h"

#ifdef __cplusplus
extern "C" {
#endif

#define TTT_ARENA_ALIGN 256 /* bytes: cuBLAS, vector loads and TMA are happy with this */

typedef struct ttt_arena {
    const vttt_backend *be; /* NULL for a plan */
    char *base;             /* NULL for a plan */
    size_t cap, used;       /* bytes */
    int overflow;           /* a take did not fit (a layout bug: the plan and the real pass differ) */
} ttt_arena;

/* A plan: counts the bytes of the takes that follow. */
static inline ttt_arena ttt_arena_plan(void) {
    ttt_arena a = {NULL, NULL, 0, 0, 0};
    return a;
}

/* Allocates `bytes` on be (one be->alloc). On failure logs what was
 * asked for and returns the backend's code; a is then empty. */
int ttt_arena_init(ttt_arena *a, const vttt_backend *be, size_t bytes, const vttt_logger *lg, const char *what);
/* The next `bytes`, aligned to TTT_ARENA_ALIGN; on a plan NULL (and
 * counted), on a full arena NULL with a->overflow set. */
void *ttt_arena_take(ttt_arena *a, size_t bytes);
/* n floats. */
static inline float *ttt_arena_floats(ttt_arena *a, size_t n) { return (float *)ttt_arena_take(a, n * sizeof(float)); }
/* Returns the memory to the backend; a is then empty. */
void ttt_arena_free(ttt_arena *a);

#ifdef __cplusplus
}
#endif
#endif
