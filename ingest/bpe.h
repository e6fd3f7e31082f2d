/*
 * ingest/bpe.h — a byte-level BPE tokenizer: trainer, encoder, decoder and
 * its file format. Public through ingest/ingest.h.
 *
 * Vocabulary: ids 0..255 are the 256 single bytes; ids 256..256+M-1 are the
 * M merges in the order they were learnt (merge i joins two earlier tokens
 * (a, b) into id 256+i, so a token's rank is its id minus 256); the last id,
 * vocab_size-1 = 256+M, is the special token <|endoftext|>. This is GPT-2's
 * layout (50257 = 256 + 50000 merges + 1). The special token separates
 * documents; the encoder never produces it from text (the literal string
 * "<|endoftext|>" in text is encoded as ordinary bytes), and the decoder
 * turns it into that literal string.
 *
 * Pre-tokenization: before BPE, text is cut into pieces and merges never
 * cross a piece boundary. Bytes are classed as whitespace (space, \t, \n,
 * \r, \v, \f), digit (0-9), letter (A-Z, a-z and every byte >= 0x80, so UTF-8
 * words stay whole) and other (punctuation, control bytes, NUL). A piece is
 *   - one space followed by a run of letters, digits or others (" the"),
 *   - a run of letters, digits or others of one class ("the", "2024", "."),
 *   - a run of whitespace; when it is followed by a non-space and ends with
 *     a space, that last space is left to start the next piece ("\n\n",
 *     "   " + " x" rather than "    " + "x"), as GPT-2's "\s+(?!\S)".
 * No piece is longer than VTTT_BPE_MAX_PIECE bytes: a longer run is cut
 * every VTTT_BPE_MAX_PIECE bytes. Contractions get no special case ("don't"
 * is "don", "'", "t"). Every byte string, invalid UTF-8 and NUL included,
 * encodes and decodes back to itself exactly.
 *
 * Training counts the pieces of the corpus, then repeatedly merges the most
 * frequent adjacent pair of tokens over all pieces (weighted by piece count),
 * updating pair counts incrementally. Ties go to the pair with the smaller
 * first id, then the smaller second id, so training is deterministic. It
 * stops at the requested vocabulary size or when no pair occurs min_count
 * times. Encoding applies merges by rank, lowest first, which reproduces the
 * training segmentation.
 */
#ifndef VTTT_BPE_H
#define VTTT_BPE_H

#include <stddef.h>
#include <stdint.h>

#include "ttt.h"

#ifdef __cplusplus
extern "C" {
#endif

#define VTTT_BPE_MAX_PIECE 128          /* bytes per pre-tokenized piece */
#define VTTT_BPE_MAX_VOCAB (1 << 22)    /* largest supported vocabulary */
#define VTTT_BPE_EOT_TEXT "<|endoftext|>"

/* A growable array of token ids; {0} is empty. Owned by the caller. */
typedef struct vttt_token_buf {
    int32_t *ids;   /* (n) */
    size_t n, cap;
} vttt_token_buf;
/* Appends n ids; VTTT_ENOMEM on allocation failure (buf unchanged). */
int vttt_token_buf_append(vttt_token_buf *buf, const int32_t *ids, size_t n);
void vttt_token_buf_free(vttt_token_buf *buf);

/* ---- the tokenizer ----------------------------------------------------- */
typedef struct vttt_bpe vttt_bpe;   /* immutable once built; shareable by threads */

/* Builds a tokenizer from M merges: merges[2i], merges[2i+1] are the ids
 * joined into 256+i. VTTT_EFORMAT (logged) if a merge refers to an id not yet
 * defined or repeats an earlier pair, VTTT_EINVAL for a bad count. */
int vttt_bpe_from_merges(vttt_bpe **out, const int32_t *merges, int n_merges, const vttt_logger *lg);
void vttt_bpe_free(vttt_bpe **bpe);
int vttt_bpe_vocab_size(const vttt_bpe *bpe);   /* 256 + merges + 1 */
int vttt_bpe_num_merges(const vttt_bpe *bpe);
int vttt_bpe_eot(const vttt_bpe *bpe);          /* id of <|endoftext|> = vocab_size - 1 */
/* The pair merged into id 256+i (0 <= i < num_merges). */
void vttt_bpe_merge(const vttt_bpe *bpe, int i, int32_t *a, int32_t *b);
/* The bytes of one token (not NUL-terminated; the special token gives
 * "<|endoftext|>"). VTTT_EINVAL for an id outside the vocabulary. */
int vttt_bpe_token_bytes(const vttt_bpe *bpe, int32_t id, const uint8_t **bytes, size_t *len);

/* Encodes a whole buffer, appending the ids to out. */
int vttt_bpe_encode(const vttt_bpe *bpe, const void *text, size_t n, vttt_token_buf *out);
/* Decodes ids into a malloc'd byte buffer (*out, *len; NUL-terminated one
 * past the end for convenience). VTTT_EINVAL for an id outside the
 * vocabulary, VTTT_ENOMEM. */
int vttt_bpe_decode(const vttt_bpe *bpe, const int32_t *ids, size_t n, uint8_t **out, size_t *len);

/* ---- streaming encoder ------------------------------------------------- */
/* Encodes a byte stream fed in pieces of any size; the ids are the same as
 * vttt_bpe_encode of the concatenation. Holds at most one unfinished piece
 * (under 2*VTTT_BPE_MAX_PIECE bytes) between calls. */
typedef struct vttt_bpe_encoder vttt_bpe_encoder;
int vttt_bpe_encoder_init(vttt_bpe_encoder **out, const vttt_bpe *bpe);
void vttt_bpe_encoder_free(vttt_bpe_encoder **enc);
/* Appends the ids of every piece completed by these bytes to out. */
int vttt_bpe_encoder_feed(vttt_bpe_encoder *enc, const void *data, size_t n, vttt_token_buf *out);
/* Ends the stream: encodes what is held back. The encoder can then start a
 * new stream. */
int vttt_bpe_encoder_finish(vttt_bpe_encoder *enc, vttt_token_buf *out);

/* ---- training ---------------------------------------------------------- */
typedef struct vttt_bpe_train_params {
    int vocab_size;   /* total, with the 256 bytes and <|endoftext|>; >= 257 */
    int min_count;    /* stop when the best pair occurs fewer times (2) */
    int log_every;    /* log progress at INFO every this many merges (0: never) */
} vttt_bpe_train_params;
vttt_bpe_train_params vttt_bpe_train_default_params(int vocab_size);

/* The trainer collects piece counts from text fed in any pieces, then
 * learns the merges. Documents (or files) should be ended with
 * vttt_bpe_trainer_end_document so that no piece spans two of them. */
typedef struct vttt_bpe_trainer vttt_bpe_trainer;
int vttt_bpe_trainer_init(vttt_bpe_trainer **out, const vttt_logger *lg);
void vttt_bpe_trainer_free(vttt_bpe_trainer **t);
int vttt_bpe_trainer_feed(vttt_bpe_trainer *t, const void *text, size_t n);
int vttt_bpe_trainer_end_document(vttt_bpe_trainer *t);
/* Learns up to vocab_size - 257 merges. The result may be smaller than
 * asked (logged at INFO) when the corpus runs out of pairs occurring
 * min_count times. The trainer can be trained again with other params. */
int vttt_bpe_trainer_train(vttt_bpe_trainer *t, const vttt_bpe_train_params *p, vttt_bpe **out);
/* Bytes fed and distinct pieces seen so far. */
void vttt_bpe_trainer_stats(const vttt_bpe_trainer *t, uint64_t *bytes, size_t *pieces);

/* ---- files ------------------------------------------------------------- */
/* Text format, version 1 (one item per line, "\n" line ends):
 *     vttt-bpe 1
 *     pretokenizer vttt-bytes-v1 <VTTT_BPE_MAX_PIECE>
 *     vocab_size <V>
 *     merges <M>                   (V = 256 + M + 1)
 *     endoftext <V-1>
 *     <a> <b>                      (M lines: merge i joins a and b, both < 256+i)
 *     checksum <16 hex digits>     (FNV-1a 64 of every byte before this line)
 * Saving is atomic (temporary file, fsync, rename). Loading validates
 * everything and rejects truncated, edited or corrupt files with
 * VTTT_EFORMAT and a message naming the file, line and problem; VTTT_EIO
 * when the file cannot be read. */
int vttt_bpe_save(const vttt_bpe *bpe, const char *path, const vttt_logger *lg);
int vttt_bpe_load(vttt_bpe **out, const char *path, const vttt_logger *lg);
/* What vttt_bpe_load does after reading the file: validates and builds the
 * tokenizer from the file's bytes (data, n; no NUL needed), name standing
 * for the file in messages. No side effects besides the log: the entry
 * point for fuzzing. */
int vttt_bpe_parse(vttt_bpe **out, const char *data, size_t n, const char *name, const vttt_logger *lg);

/* ---- text input -------------------------------------------------------- */
/* A whole file mapped read-only; "-" reads standard input into memory. An
 * empty file gives n = 0. VTTT_EIO (logged) when it cannot be read. */
typedef struct vttt_text_file {
    const uint8_t *data;   /* (n) bytes */
    size_t n;
    void *base;            /* what to unmap or free */
    size_t base_n;         /* mapped bytes; 0 when base is malloc'd */
} vttt_text_file;
int vttt_text_file_open(vttt_text_file *f, const char *path, const vttt_logger *lg);
void vttt_text_file_close(vttt_text_file *f);

/* ---- documents --------------------------------------------------------- */
/* Iterates over the documents of a text buffer: they are separated by the
 * literal "<|endoftext|>", trimmed of ASCII whitespace at both ends, and
 * empty ones are skipped. Start with *pos = 0; returns 1 with *doc, *len
 * set while there is a document, 0 at the end. */
int vttt_text_next_document(const uint8_t *s, size_t n, size_t *pos, const uint8_t **doc, size_t *len);

/* Text as token ids, the one convention of `vttt ingest text`, `vttt
 * tokenizer encode` and `vttt lm --text`: each document of s (above) as
 * the <|endoftext|> token followed by the document's tokens, so a literal
 * "<|endoftext|>" separates documents and white space around it is
 * dropped. fn gets the ids in pieces (the token, then the tokens of at
 * most 1 MiB of the document at a time, so a huge document needs little
 * memory): doc counts the documents of s from 0, done is how many bytes
 * of s are behind once this document is over. Returns 0, fn's first
 * nonzero return, or the encoder's error. */
typedef int (*vttt_text_ids_fn)(void *user, int64_t doc, size_t done, const int32_t *ids, size_t n);
int vttt_text_encode_documents(const vttt_bpe *bpe, const uint8_t *s, size_t n, vttt_text_ids_fn fn, void *user);
/* The same with every id appended to out. */
int vttt_text_encode(const vttt_bpe *bpe, const uint8_t *s, size_t n, vttt_token_buf *out);

#ifdef __cplusplus
}
#endif
#endif
