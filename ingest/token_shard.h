/*
 * ingest/token_shard.h — token shards in llm.c's layout. Public through
 * ingest/ingest.h.
 *
 * A shard is a header of 256 little-endian int32 — [0] magic, [1] version,
 * [2] token count, the rest 0 — then the tokens, little-endian:
 *   - magic 20240520, version 1: uint16 tokens (llm.c's GPT-2 shards);
 *   - magic 20240801: uint32 tokens. llm.c writes these (its Llama-3 shards)
 *     with version 7, so vttt writes 7 too and reads 1 or 7.
 * The file holds exactly 1024 + count * token size bytes; anything else is
 * rejected (a shorter file is reported as truncated). Counts are below 2^31
 * as in llm.c, and ids are read as int32 (a uint32 id >= 2^31 is an error).
 *
 * Writers are atomic: the shard is written to a temporary file beside it,
 * synced and renamed into place, so a reader never sees half a shard.
 */
#ifndef VTTT_TOKEN_SHARD_H
#define VTTT_TOKEN_SHARD_H

#include <stddef.h>
#include <stdint.h>

#include "ttt.h"

#ifdef __cplusplus
extern "C" {
#endif

#define VTTT_SHARD_MAGIC_U16 20240520
#define VTTT_SHARD_MAGIC_U32 20240801
#define VTTT_SHARD_VERSION_U16 1
#define VTTT_SHARD_VERSION_U32 7
#define VTTT_SHARD_HEADER_INTS 256
#define VTTT_SHARD_HEADER_BYTES (4 * VTTT_SHARD_HEADER_INTS)
#define VTTT_SHARD_MAX_TOKENS INT32_MAX

/* Bytes per token for a vocabulary: 2 when every id fits in uint16
 * (vocab_size <= 65536), else 4. */
int vttt_token_size_for_vocab(int vocab_size);

/* ---- reading ----------------------------------------------------------- */
typedef struct vttt_token_shard vttt_token_shard;
/* Maps a shard read-only and validates its header against the file size.
 * VTTT_EIO if it cannot be opened, VTTT_EFORMAT (logged with the path and
 * the problem) if it is not a valid shard. */
int vttt_token_shard_open(vttt_token_shard **out, const char *path, const vttt_logger *lg);
void vttt_token_shard_close(vttt_token_shard **s);
int64_t vttt_token_shard_count(const vttt_token_shard *s);      /* tokens */
int vttt_token_shard_token_size(const vttt_token_shard *s);     /* 2 or 4 bytes */
const char *vttt_token_shard_path(const vttt_token_shard *s);
/* Copies tokens [start, start + n) into out (n) as int32; safe to call
 * from several threads on one open shard. VTTT_EINVAL
 * (logged) for a range outside the shard, VTTT_EFORMAT for a uint32 id
 * that does not fit int32. */
int vttt_token_shard_read(const vttt_token_shard *s, int64_t start, int64_t n, int32_t *out);
/* Largest id in the shard (-1 when empty): a whole scan, for checking a
 * shard against a vocabulary. */
int64_t vttt_token_shard_max_id(const vttt_token_shard *s);

/* ---- writing ----------------------------------------------------------- */
typedef struct vttt_token_shard_writer vttt_token_shard_writer;
/* Starts a shard with token_size 2 (uint16) or 4 (uint32) bytes; the file
 * appears at path only when the writer is closed successfully. */
int vttt_token_shard_writer_open(vttt_token_shard_writer **out, const char *path, int token_size,
                                 const vttt_logger *lg);
/* Appends ids. VTTT_EINVAL (logged) for an id that does not fit the token
 * size or when the shard would pass VTTT_SHARD_MAX_TOKENS; VTTT_EIO for a
 * failed write. After an error the writer can only be aborted. */
int vttt_token_shard_writer_append(vttt_token_shard_writer *w, const int32_t *ids, size_t n);
int64_t vttt_token_shard_writer_count(const vttt_token_shard_writer *w);
/* Writes the header, syncs and renames the shard into place, and frees the
 * writer (*w = NULL) whatever happens; on failure the temporary file is
 * removed and nothing appears at path. */
int vttt_token_shard_writer_close(vttt_token_shard_writer **w);
/* Drops the shard: removes the temporary file and frees the writer. */
void vttt_token_shard_writer_abort(vttt_token_shard_writer **w);
/* One call: a shard holding ids (n). */
int vttt_token_shard_write(const char *path, const int32_t *ids, size_t n, int token_size, const vttt_logger *lg);

/* ---- atomic files ------------------------------------------------------ */
/* Writes data (n bytes) to path atomically: temporary file, fsync, rename,
 * then the directory is synced. VTTT_EIO (logged) on failure, with no
 * temporary file left behind. Used by the shard and tokenizer writers. */
int vttt_file_write_atomic(const char *path, const void *data, size_t n, const vttt_logger *lg);

#ifdef __cplusplus
}
#endif
#endif
