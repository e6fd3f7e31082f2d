/* JSON files for the later stages' small documents (a tokenizer's
 * config.json, a run's trainer_state.json): read whole with a size cap and
 * parsed with cJSON (whole document, nothing after it), written atomically through vttt_file_write_atomic.
 * Internal to the build (encoder/ and train/ include it); not part of the
 * public ingest.h. */
#ifndef VTTT_INGEST_JSON_FILE_H
#define VTTT_INGEST_JSON_FILE_H

#include <stddef.h>
#include <stdint.h>

#include <cjson/cJSON.h>

#include "json_doc.h"
#include "ttt.h"

/* Reads the regular file at path whole (vttt_file_read_all: a FIFO or a
 * device is refused, never waited on) and parses it as vttt_json_parse does.
 * Failures are logged naming path: "<path>: <cannot_open> (<why>)" with
 * VTTT_EIO when it cannot be opened or read; "<path>: larger than <max>
 * <hint>" or "<path>: not valid JSON ... <hint>" with VTTT_EFORMAT;
 * VTTT_ENOMEM. hint says what the file should have been, e.g. "(a damaged
 * checkpoint?)". */
int vttt_json_file_read(cJSON **out, const char *path, size_t max_bytes, const char *cannot_open, const char *hint,
                        const vttt_logger *lg);
/* Prints j (consumed: deleted here in every case) to path with a final
 * newline, atomically. VTTT_ENOMEM or vttt_file_write_atomic's error. */
int vttt_json_file_write(cJSON *j, const char *path, const vttt_logger *lg);
/* The member key of j as a non-negative whole number below 2^53 (the
 * doubles' exact range: 2^53 + 1 reads as 2^53, so 2^53 is refused too);
 * -1 when missing, negative, fractional or too large. (A fractional
 * literal within rounding of a whole number, 5.0000000000000001, reads
 * as that number: cJSON keeps no literal text.) */
int64_t vttt_json_count(const cJSON *j, const char *key);

#endif
