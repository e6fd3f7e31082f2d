/* Per-sequence generation state: allocation, reset, size. */
#include <stdlib.h>
#include <string.h>

#include "ttt_internal.h"

static int is_attention(const vttt_layer *l) { return l->cfg.kind == VTTT_LAYER_ATTENTION; }

int vttt_state_init(vttt_state **out, const vttt_layer *l, int B, int max_T) {
    if (!out || !l) return VTTT_EINVAL;
    *out = NULL;
    if (B <= 0 || (is_attention(l) && max_T <= 0)) {
        vttt_log(&l->log, VTTT_LOG_ERROR, "state: need B >= 1%s (got B=%d, max_T=%d)",
                 is_attention(l) ? " and max_T >= 1 for attention's KV cache" : "", B, max_T);
        return VTTT_EINVAL;
    }
    vttt_state *s = calloc(1, sizeof *s);
    if (!s) return VTTT_ENOMEM;
    s->l = l;
    s->B = B;
    int ok = 1;
    if (is_attention(l)) {
        s->max_T = max_T;
        size_t n = (size_t)B * max_T * l->D;
        ok = (s->k_cache = malloc(n * sizeof(float))) && (s->v_cache = malloc(n * sizeof(float)));
    } else {
        ttt_dims d = ttt_dims_of(l);
        s->inner_numel = d.numel;
        size_t n = (size_t)B * l->H * d.numel;
        ok = (s->W0 = malloc(n * sizeof(float))) && (s->A = malloc(n * sizeof(float)));
        if (ok && l->cfg.share_qk)
            ok = (s->conv_state = malloc((size_t)B * (l->cfg.conv_kernel - 1) * l->D * sizeof(float))) != NULL;
    }
    if (!ok) {
        vttt_state_free(&s);
        vttt_log(&l->log, VTTT_LOG_ERROR, "state: out of memory (B=%d, max_T=%d)", B, max_T);
        return VTTT_ENOMEM;
    }
    vttt_state_reset(s);
    *out = s;
    return VTTT_OK;
}

void vttt_state_reset(vttt_state *s) {
    const vttt_layer *l = s->l;
    s->pos = 0;
    if (is_attention(l)) return;
    for (int bh = 0; bh < s->B * l->H; bh++) ttt_state_from_params(l, bh % l->H, s->W0 + bh * s->inner_numel);
    memset(s->A, 0, (size_t)s->B * l->H * s->inner_numel * sizeof(float));
    if (s->conv_state) memset(s->conv_state, 0, (size_t)s->B * (l->cfg.conv_kernel - 1) * l->D * sizeof(float));
}

void vttt_state_free(vttt_state **sp) {
    if (!sp || !*sp) return;
    vttt_state *s = *sp;
    free(s->W0);
    free(s->A);
    free(s->conv_state);
    free(s->k_cache);
    free(s->v_cache);
    free(s);
    *sp = NULL;
}

size_t vttt_state_bytes(const vttt_state *s) {
    const vttt_layer *l = s->l;
    if (is_attention(l)) return 2 * (size_t)s->B * s->pos * l->D * sizeof(float);
    size_t n = 2 * (size_t)s->B * l->H * s->inner_numel;
    if (s->conv_state) n += (size_t)s->B * (l->cfg.conv_kernel - 1) * l->D;
    return n * sizeof(float);
}

int64_t vttt_state_position(const vttt_state *s) { return s->pos; }
