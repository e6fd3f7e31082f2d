/* `vttt encoder ...`: the subcommands' shared pieces (tools/cli_encoder*.c). */
#ifndef VTTT_CLI_ENCODER_H
#define VTTT_CLI_ENCODER_H

#include <stdint.h>

#include "encoder_train.h"

#define ENC_CMD "vttt encoder"

int cli_encoder_eval(int argc, char **argv);   /* cli_encoder_eval.c */
int cli_encoder_bench(int argc, char **argv);  /* cli_encoder_eval.c */
int cli_encoder_encode(int argc, char **argv); /* cli_encoder_tokens.c */
int cli_encoder_decode(int argc, char **argv); /* cli_encoder_tokens.c */

/* Opens shard args[0..n) (files or directories) checked against the
 * tokenizer's frame size: *paths (free with vttt_encoder_frames_free). */
int cli_enc_shards(const char *cmd, const vttt_encoder *e, const char *const *args, int n, char ***paths, int *np);

#endif
