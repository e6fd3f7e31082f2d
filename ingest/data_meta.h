/* The meta.json beside token shards: `vttt ingest text` writes the text
 * one ("vocab_size", "eot", ...), `vttt encoder encode` the video one
 * ("kind": "video", "vocab_size", "tokens_per_frame", "fps", ...). Read
 * strictly: a meta.json that exists but cannot be read, is not valid JSON
 * or holds a field out of range is an error naming the file, never a
 * silent "no meta.json". Internal to the build (train/ and tools/ include
 * it); not part of the public ingest.h. */
#ifndef VTTT_INGEST_DATA_META_H
#define VTTT_INGEST_DATA_META_H

#include <stddef.h>

#include "ttt.h"

#define VTTT_DATA_META_MAX_BYTES ((size_t)64 << 20) /* a meta.json lists every source: up to 64 MiB */
#define VTTT_DATA_META_MAX_TPF 10000000              /* tokens per frame */

typedef struct vttt_data_meta {
    int vocab_size;       /* ids are 0..vocab_size-1 (>= 1, required) */
    int eot;              /* the end-of-text id, in 0..vocab_size-1; -1 when not given */
    int tokens_per_frame; /* video token shards: tokens per frame (>= 1); 0: text */
    int fps_num, fps_den; /* video: frames/s as "fps": "N/D" (N >= 0: 0 is an unknown rate, D >= 1); 0/0 when not given */
} vttt_data_meta;

/* Parses a meta.json document (buf, n bytes) named name in messages into
 * *m. The fields above are checked: "vocab_size" a whole number in
 * 1..2^31-1; "eot" (optional) one of the ids; "kind" (optional) "text" or
 * "video", and "video" needs "tokens_per_frame" (1..VTTT_DATA_META_MAX_TPF,
 * also read without "kind"); "fps" (optional) "N/D". Other fields are
 * ignored. VTTT_EFORMAT logged as "<name>: ..." naming the field. No side
 * effects besides the log: the entry point for fuzzing. */
int vttt_data_meta_parse(vttt_data_meta *m, const char *buf, size_t n, const char *name, const vttt_logger *lg);

/* Reads and parses the meta.json at path (of any size up to
 * VTTT_DATA_META_MAX_BYTES). Returns 0, VTTT_EOF when there is no file at
 * path (*m then says: text, nothing known), or an error logged naming path:
 * VTTT_EIO (unreadable, not a regular file), VTTT_EFORMAT (too large, not
 * valid JSON, a bad field), VTTT_ENOMEM. */
int vttt_data_meta_read(vttt_data_meta *m, const char *path, const vttt_logger *lg);

/* The path of the meta.json in the directory of file (a shard): written to
 * out (n bytes). VTTT_EINVAL when it does not fit. */
int vttt_data_meta_path(char *out, size_t n, const char *file);

#endif
