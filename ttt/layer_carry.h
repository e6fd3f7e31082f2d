/*
 * ttt/layer_carry.h — internal: training a sequence layer window by window
 * with its state carried from one window to the next (the model's
 * vttt_model_forward_carry). Kept apart from the layer files: it drives the
 * TTT internals (ttt_internal.h) the way ttt_forward does, but starting
 * from a vttt_state instead of the learned initial state.
 */
#ifndef VTTT_LAYER_CARRY_H
#define VTTT_LAYER_CARRY_H

#include "ttt.h"

/* Train forward over x, y (s->B, T, D) that continues the sequences held
 * in s and leaves in s the state after them, as vttt_layer_prefill would.
 * s's position must be at a mini-batch boundary (VTTT_EINVAL otherwise).
 * vttt_layer_backward (or ttt_layer_backward_carry) may follow. Attention
 * layers have no constant-size state: they run a plain train forward and s
 * is left alone (windows are independent). */
int ttt_layer_forward_carry(vttt_layer *l, vttt_state *s, float *y, const float *x, int T);

/* Backward of the last train forward. truncate != 0 (the window started
 * from a carried state, not the learned one): the gradient that reaches the
 * start state is dropped instead of being added to the learned initial
 * state W1, b1 (W2, b2). Known gap: with share_qk the conv_q/conv_k weight
 * gradient lacks the terms of the K-1 carried conv inputs (the layer's
 * backward takes no conv state). */
int ttt_layer_backward_carry(vttt_layer *l, float *dx, const float *dy, int truncate);

/* dst = src for two states of the same layer and batch size (attention:
 * dst's KV cache must hold src's tokens). VTTT_EINVAL otherwise. */
int ttt_layer_state_copy(vttt_state *dst, const vttt_state *src);

#endif
