/* Token ids as `vttt tokenizer decode` and `vttt lm` read them. Internal to
 * tools/. */
#ifndef VTTT_TOOLS_TOKEN_IDS_H
#define VTTT_TOOLS_TOKEN_IDS_H

#include "ingest.h"

/* Appends to out the ids of a token shard (recognised by its magic number)
 * or of text holding whitespace-separated decimal ids; "-" reads stdin.
 * 0 or a negative VTTT_E* code; text that is not ids gets a message on
 * stderr naming the file and the byte offset of the first bad id. */
int token_ids_read(const char *path, vttt_token_buf *out);

#endif
