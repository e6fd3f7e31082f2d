/* A small random video model and frame tokenizer saved to directories, for
 * the tests of infer/ (test_infer, test_serve) and the daemon's command-line
 * test (serve_cli_helper). No Check dependency: usable from main(). */
#ifndef VTTT_VIDEO_FIXTURE_H
#define VTTT_VIDEO_FIXTURE_H

#include <stdint.h>

#include "ttt.h"

/* Saves to enc_dir a tokenizer for S×S frames (8 channels, 4 groups, FSQ
 * levels 5,5,5: vocabulary 125; weights from seed 7). *P (tokens per frame)
 * and *V (vocabulary) may be NULL. 0 or a VTTT_E* code. */
int vf_save_tokenizer(const char *enc_dir, int S, int *P, int *V);
/* The same for a DELTA tokenizer (factor 4, 8 channels, levels 5,3,3:
 * vocabulary 45, (S/4)^2 tokens per frame; weights from seed 7, the last
 * conv scaled up so that decoded changes are not tiny). */
int vf_save_delta_tokenizer(const char *enc_dir, int S, int motion, int *P, int *V);
/* Saves to model_dir a video model of the "test" preset for that tokenizer:
 * vocabulary V, P tokens per frame, TTT mini-batch 8, sequence layer kind,
 * attention KV caches of 4096 tokens, initializer_range init (<= 0: the
 * default; a larger one gives clear argmax margins), weights from seed.
 * 0 or a VTTT_E* code. */
int vf_save_model(const char *model_dir, int P, int V, vttt_layer_kind kind, float init, uint64_t seed);

#endif
