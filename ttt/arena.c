/* One block of backend memory handed out in aligned slices (arena.h). */
#include <string.h>

#include "arena.h"

int ttt_arena_init(ttt_arena *a, const vttt_backend *be, size_t bytes, const vttt_logger *lg, const char *what) {
    memset(a, 0, sizeof *a);
    void *p = NULL;
    int err = be->alloc(be->ctx, &p, bytes);
    if (err) {
        vttt_log(lg, VTTT_LOG_ERROR, "%s: cannot allocate %.1f MiB on the %s backend (%s)", what,
                 (double)bytes / 1048576.0, be->name, vttt_strerror(err));
        return err;
    }
    a->be = be;
    a->base = p;
    a->cap = bytes;
    return VTTT_OK;
}

void *ttt_arena_take(ttt_arena *a, size_t bytes) {
    size_t off = (a->used + TTT_ARENA_ALIGN - 1) & ~(size_t)(TTT_ARENA_ALIGN - 1);
    size_t end = off + ((bytes + TTT_ARENA_ALIGN - 1) & ~(size_t)(TTT_ARENA_ALIGN - 1));
    if (!a->base) { /* a plan */
        a->used = end;
        return NULL;
    }
    if (end > a->cap) {
        a->overflow = 1;
        return NULL;
    }
    a->used = end;
    return a->base + off;
}

void ttt_arena_free(ttt_arena *a) {
    if (a->base) a->be->free(a->be->ctx, a->base);
    memset(a, 0, sizeof *a);
}
