/* One JSON document parsed from a buffer, for every reader of JSON files
 * (model and encoder configs, meta.json, trainer_state.json): the whole
 * buffer must be one document with nothing but white space after it.
 * Internal to the build; not part of the public ttt.h. */
#ifndef VTTT_JSON_DOC_H
#define VTTT_JSON_DOC_H

#include <stddef.h>

#include <cjson/cJSON.h>

#include "ttt.h"

/* Parses buf (n bytes, no NUL needed) into *out (the caller frees it with
 * cJSON_Delete). No side effects besides the log: the entry point for
 * fuzzing. VTTT_EFORMAT logged as "<name>: not valid JSON (error near byte
 * K of N) <hint>". */
int vttt_json_parse(cJSON **out, const char *buf, size_t n, const char *name, const char *hint,
                    const vttt_logger *lg);

#endif
