/* BPE training: piece counting, then merges with incremental pair counts.
 *
 * Each distinct piece ("word") is held once with its count. Every pair of
 * adjacent tokens has a count (summed over words, weighted by word count)
 * and a list of the words it occurs in. A merge visits only the words of
 * its pair: it subtracts their pairs, joins the pair in place and adds the
 * new pairs back. The best pair comes from a max-heap with lazy deletion:
 * an entry whose count is out of date is pushed again with the current
 * count when it reaches the top. Pair counts only fall, except for pairs
 * with the token just made, which are pushed after each merge; so the
 * first up-to-date entry popped is the true maximum. */
#include <stdlib.h>
#include <string.h>

#include "bpe_internal.h"

/* ---- piece counting ----------------------------------------------------- */

typedef struct {
    uint64_t off;     /* into arena */
    uint64_t hash;
    int64_t count;
    uint32_t len;
} bt_word;

struct vttt_bpe_trainer {
    vttt_logger lg;
    bpe_cutter cut;
    uint8_t *arena;       /* every distinct piece's bytes */
    size_t arena_len, arena_cap;
    bt_word *words;       /* (n_words) */
    size_t n_words, words_cap;
    uint32_t *slots;      /* (slot_cap) word index + 1, 0 = free */
    size_t slot_cap;
    uint64_t bytes_fed;
};

static int grow_array(void **p, size_t *cap, size_t need, size_t elem) {
    if (need <= *cap) return VTTT_OK;
    size_t c = *cap ? *cap : 64;
    while (c < need) c *= 2;
    void *q = realloc(*p, c * elem);
    if (!q) return VTTT_ENOMEM;
    *p = q;
    *cap = c;
    return VTTT_OK;
}

static int rehash_words(vttt_bpe_trainer *t) {
    size_t cap = t->slot_cap ? 2 * t->slot_cap : 1024;
    uint32_t *s = calloc(cap, sizeof *s);
    if (!s) return VTTT_ENOMEM;
    for (size_t w = 0; w < t->n_words; w++) {
        size_t i = t->words[w].hash & (cap - 1);
        while (s[i]) i = (i + 1) & (cap - 1);
        s[i] = (uint32_t)(w + 1);
    }
    free(t->slots);
    t->slots = s;
    t->slot_cap = cap;
    return VTTT_OK;
}

/* Adds one occurrence of a piece to the table. */
static int add_piece(void *ctx, const uint8_t *p, size_t n) {
    vttt_bpe_trainer *t = ctx;
    uint64_t h = bpe_fnv1a(BPE_FNV_OFFSET, p, n);
    size_t mask = t->slot_cap - 1, i = h & mask;
    for (; t->slots[i]; i = (i + 1) & mask) {
        bt_word *w = &t->words[t->slots[i] - 1];
        if (w->hash == h && w->len == n && !memcmp(t->arena + w->off, p, n)) {
            w->count++;
            return VTTT_OK;
        }
    }
    if (t->n_words >= INT32_MAX - 1) return VTTT_ENOMEM;   /* word ids are int32 */
    int err = grow_array((void **)&t->arena, &t->arena_cap, t->arena_len + n, 1);
    if (!err) err = grow_array((void **)&t->words, &t->words_cap, t->n_words + 1, sizeof *t->words);
    if (err) return err;
    memcpy(t->arena + t->arena_len, p, n);
    t->words[t->n_words] = (bt_word){t->arena_len, h, 1, (uint32_t)n};
    t->arena_len += n;
    t->slots[i] = (uint32_t)++t->n_words;
    return 2 * t->n_words > t->slot_cap ? rehash_words(t) : VTTT_OK;
}

int vttt_bpe_trainer_init(vttt_bpe_trainer **out, const vttt_logger *lg) {
    vttt_bpe_trainer *t = calloc(1, sizeof *t);
    *out = NULL;
    if (!t) return VTTT_ENOMEM;
    if (lg) t->lg = *lg;
    if (rehash_words(t)) {
        free(t);
        return VTTT_ENOMEM;
    }
    *out = t;
    return VTTT_OK;
}

void vttt_bpe_trainer_free(vttt_bpe_trainer **t) {
    if (!t || !*t) return;
    free((*t)->arena);
    free((*t)->words);
    free((*t)->slots);
    free(*t);
    *t = NULL;
}

static int fed(vttt_bpe_trainer *t, int err) {
    if (err) vttt_log(&t->lg, VTTT_LOG_ERROR, "tokenizer training: out of memory after %zu distinct pieces",
                      t->n_words);
    return err;
}

int vttt_bpe_trainer_feed(vttt_bpe_trainer *t, const void *text, size_t n) {
    t->bytes_fed += n;
    return fed(t, bpe_cutter_feed(&t->cut, text, n, add_piece, t));
}

int vttt_bpe_trainer_end_document(vttt_bpe_trainer *t) { return fed(t, bpe_cutter_finish(&t->cut, add_piece, t)); }

void vttt_bpe_trainer_stats(const vttt_bpe_trainer *t, uint64_t *bytes, size_t *pieces) {
    *bytes = t->bytes_fed;
    *pieces = t->n_words;
}

vttt_bpe_train_params vttt_bpe_train_default_params(int vocab_size) {
    return (vttt_bpe_train_params){.vocab_size = vocab_size, .min_count = 2, .log_every = 0};
}

/* ---- merge state -------------------------------------------------------- */

typedef struct {
    int64_t count;
    uint64_t key;
} bt_entry;

typedef struct {
    int32_t *sym;         /* every word's tokens; word w at sym + woff[w] */
    uint64_t *woff;       /* (n_words) */
    uint32_t *wlen;       /* (n_words) current token count */
    uint32_t *seen;       /* (n_words) last merge stamp that visited the word */
    const bt_word *words;
    size_t n_words;
    bpe_pair_map index;   /* pair key -> pair index */
    uint64_t *pkey;       /* (n_pairs) */
    int64_t *pcount;      /* (n_pairs) */
    int32_t **plist;      /* (n_pairs) words holding the pair (may be stale) */
    uint32_t *plen, *pcap;
    size_t n_pairs, pairs_cap;
    bt_entry *heap;
    size_t heap_n, heap_cap;
    int32_t *touched;     /* pairs with the newest token, to push */
    size_t n_touched, touched_cap;
    int32_t new_id;       /* token being made by the current merge */
} bt_state;

static int entry_before(bt_entry x, bt_entry y) {
    return x.count > y.count || (x.count == y.count && x.key < y.key);
}

static int heap_push(bt_state *s, int64_t count, uint64_t key) {
    if (grow_array((void **)&s->heap, &s->heap_cap, s->heap_n + 1, sizeof *s->heap)) return VTTT_ENOMEM;
    size_t i = s->heap_n++;
    bt_entry e = {count, key};
    while (i > 0 && entry_before(e, s->heap[(i - 1) / 2])) {
        s->heap[i] = s->heap[(i - 1) / 2];
        i = (i - 1) / 2;
    }
    s->heap[i] = e;
    return VTTT_OK;
}

static bt_entry heap_pop(bt_state *s) {
    bt_entry top = s->heap[0], last = s->heap[--s->heap_n];
    size_t i = 0, n = s->heap_n;
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= n) break;
        if (c + 1 < n && entry_before(s->heap[c + 1], s->heap[c])) c++;
        if (!entry_before(s->heap[c], last)) break;
        s->heap[i] = s->heap[c];
        i = c;
    }
    if (n) s->heap[i] = last;
    return top;
}

/* Makes room for pair number s->n_pairs in the per-pair arrays. */
static int grow_pairs(bt_state *s) {
    size_t need = s->n_pairs + 1, c;
    if (need <= s->pairs_cap) return VTTT_OK;
#define GROW(arr) (c = s->pairs_cap, grow_array((void **)&s->arr, &c, need, sizeof *s->arr))
    if (GROW(pkey) || GROW(pcount) || GROW(plist) || GROW(plen) || GROW(pcap)) return VTTT_ENOMEM;
#undef GROW
    s->pairs_cap = c;   /* every array grew the same way to the same size */
    return VTTT_OK;
}

/* Appends v to a growable int32 array. */
static int push_i32(int32_t **a, uint32_t *len, uint32_t *cap, int32_t v) {
    size_t c = *cap;
    if (grow_array((void **)a, &c, (size_t)*len + 1, sizeof **a)) return VTTT_ENOMEM;
    *cap = (uint32_t)c;
    (*a)[(*len)++] = v;
    return VTTT_OK;
}

/* Adds delta to the count of pair (x, y), creating it if needed. While
 * counting (new_id < 0) every pair records word w; during a merge only
 * pairs with the new token do (the others already list w), and those are
 * noted as touched, to be pushed on the heap once the merge is done. */
static int pair_add(bt_state *s, int32_t x, int32_t y, int64_t delta, int32_t w) {
    uint64_t key = bpe_pair_key(x, y);
    int32_t p;
    int with_new = s->new_id < 0 || x == s->new_id || y == s->new_id;
    if (bpe_pair_map_put(&s->index, key, (int32_t)s->n_pairs, &p)) return VTTT_ENOMEM;
    if ((size_t)p == s->n_pairs) {
        if (grow_pairs(s)) return VTTT_ENOMEM;
        s->pkey[p] = key;
        s->pcount[p] = 0;
        s->plist[p] = NULL;
        s->plen[p] = s->pcap[p] = 0;
        s->n_pairs++;
        if (s->new_id >= 0 && with_new) {
            uint32_t n = (uint32_t)s->n_touched, c = (uint32_t)s->touched_cap;
            if (push_i32(&s->touched, &n, &c, p)) return VTTT_ENOMEM;
            s->n_touched = n, s->touched_cap = c;
        }
    }
    s->pcount[p] += delta;
    if (delta > 0 && with_new && (s->plen[p] == 0 || s->plist[p][s->plen[p] - 1] != w))
        return push_i32(&s->plist[p], &s->plen[p], &s->pcap[p], w);
    return VTTT_OK;
}

/* Adds (sign +1) or removes (-1) the pairs of word w. */
static int word_pairs(bt_state *s, int32_t w, int sign) {
    const int32_t *t = s->sym + s->woff[w];
    int64_t c = sign * s->words[w].count;
    for (uint32_t i = 0; i + 1 < s->wlen[w]; i++)
        if (pair_add(s, t[i], t[i + 1], c, w)) return VTTT_ENOMEM;
    return VTTT_OK;
}

static void bt_state_free(bt_state *s) {
    for (size_t p = 0; p < s->n_pairs; p++) free(s->plist[p]);
    free(s->sym), free(s->woff), free(s->wlen), free(s->seen);
    free(s->pkey), free(s->pcount), free(s->plist), free(s->plen), free(s->pcap);
    free(s->heap), free(s->touched);
    bpe_pair_map_free(&s->index);
}

/* Words as byte tokens, every pair counted, the heap filled. */
static int bt_state_init(bt_state *s, const vttt_bpe_trainer *t, int min_count) {
    memset(s, 0, sizeof *s);
    s->words = t->words;
    s->n_words = t->n_words;
    s->new_id = -1;
    size_t nw = t->n_words ? t->n_words : 1;
    s->sym = malloc((t->arena_len ? t->arena_len : 1) * sizeof *s->sym);
    s->woff = malloc(nw * sizeof *s->woff);
    s->wlen = malloc(nw * sizeof *s->wlen);
    s->seen = calloc(nw, sizeof *s->seen);
    if (!s->sym || !s->woff || !s->wlen || !s->seen || bpe_pair_map_init(&s->index, 1024)) return VTTT_ENOMEM;
    for (size_t i = 0; i < t->arena_len; i++) s->sym[i] = t->arena[i];
    for (size_t w = 0; w < t->n_words; w++) {
        s->woff[w] = t->words[w].off;
        s->wlen[w] = t->words[w].len;
        if (word_pairs(s, (int32_t)w, +1)) return VTTT_ENOMEM;
    }
    for (size_t p = 0; p < s->n_pairs; p++)
        if (s->pcount[p] >= min_count && heap_push(s, s->pcount[p], s->pkey[p])) return VTTT_ENOMEM;
    return VTTT_OK;
}

/* The index of the most frequent pair, or -1 when none occurs min_count
 * times. */
static int best_pair(bt_state *s, int min_count, int32_t *out) {
    *out = -1;
    while (s->heap_n > 0) {
        bt_entry e = heap_pop(s);
        if (e.count < min_count) return VTTT_OK;
        int32_t p = bpe_pair_map_get(&s->index, e.key);
        if (s->pcount[p] == e.count) {
            *out = p;
            return VTTT_OK;
        }
        if (s->pcount[p] >= min_count && heap_push(s, s->pcount[p], e.key)) return VTTT_ENOMEM;
    }
    return VTTT_OK;
}

/* Joins every (a, b) of word w into new_id. 0 if w has no (a, b). */
static int join_in_word(bt_state *s, int32_t w, int32_t a, int32_t b) {
    int32_t *t = s->sym + s->woff[w];
    uint32_t n = s->wlen[w], j = 0;
    for (uint32_t i = 0; i < n; j++) {
        if (i + 1 < n && t[i] == a && t[i + 1] == b) {
            t[j] = s->new_id;
            i += 2;
        } else {
            t[j] = t[i++];
        }
    }
    s->wlen[w] = j;
    return j != n;
}

static int has_pair(const bt_state *s, int32_t w, int32_t a, int32_t b) {
    const int32_t *t = s->sym + s->woff[w];
    for (uint32_t i = 0; i + 1 < s->wlen[w]; i++)
        if (t[i] == a && t[i + 1] == b) return 1;
    return 0;
}

/* Merge number m: pair p becomes token 256 + m in every word holding it. */
static int apply_merge(bt_state *s, int32_t p, int m) {
    int32_t a = (int32_t)(s->pkey[p] >> 32), b = (int32_t)(uint32_t)s->pkey[p];
    s->new_id = 256 + m;
    s->n_touched = 0;
    for (uint32_t k = 0; k < s->plen[p]; k++) {
        int32_t w = s->plist[p][k];
        if (s->seen[w] == (uint32_t)m + 1 || !has_pair(s, w, a, b)) continue;
        s->seen[w] = (uint32_t)m + 1;
        if (word_pairs(s, w, -1)) return VTTT_ENOMEM;
        join_in_word(s, w, a, b);
        if (word_pairs(s, w, +1)) return VTTT_ENOMEM;
    }
    free(s->plist[p]);
    s->plist[p] = NULL;
    s->plen[p] = s->pcap[p] = 0;
    for (size_t i = 0; i < s->n_touched; i++) {
        int32_t q = s->touched[i];
        if (s->pcount[q] > 0 && heap_push(s, s->pcount[q], s->pkey[q])) return VTTT_ENOMEM;
    }
    return VTTT_OK;
}

/* Runs up to n_max merges; *n_done of them are written to merges (n_max, 2). */
static int run_merges(bt_state *s, const vttt_bpe_train_params *p, const vttt_logger *lg, int32_t *merges, int n_max,
                      int *n_done) {
    int m = 0, err = VTTT_OK;
    for (; m < n_max; m++) {
        int32_t best;
        if ((err = best_pair(s, p->min_count, &best)) || best < 0) break;
        merges[2 * m] = (int32_t)(s->pkey[best] >> 32);
        merges[2 * m + 1] = (int32_t)(uint32_t)s->pkey[best];
        if (p->log_every > 0 && (m + 1) % p->log_every == 0)
            vttt_log(lg, VTTT_LOG_INFO, "tokenizer training: merge %d/%d, pair (%d, %d) seen %lld times", m + 1,
                     n_max, (int)merges[2 * m], (int)merges[2 * m + 1], (long long)s->pcount[best]);
        if ((err = apply_merge(s, best, m))) break;
    }
    *n_done = m;
    return err;
}

int vttt_bpe_trainer_train(vttt_bpe_trainer *t, const vttt_bpe_train_params *p, vttt_bpe **out) {
    *out = NULL;
    if (p->vocab_size < 257 || p->vocab_size > VTTT_BPE_MAX_VOCAB) {
        vttt_log(&t->lg, VTTT_LOG_ERROR,
                 "tokenizer training: vocab size %d is outside 257..%d (256 bytes + merges + <|endoftext|>)",
                 p->vocab_size, VTTT_BPE_MAX_VOCAB);
        return VTTT_EINVAL;
    }
    if (p->min_count < 1) {
        vttt_log(&t->lg, VTTT_LOG_ERROR, "tokenizer training: min count %d is below 1", p->min_count);
        return VTTT_EINVAL;
    }
    int err = vttt_bpe_trainer_end_document(t);
    if (err) return err;
    int n_max = p->vocab_size - 257, n_done = 0;
    int32_t *merges = malloc((size_t)(n_max ? n_max : 1) * 2 * sizeof *merges);
    bt_state s;
    err = merges ? bt_state_init(&s, t, p->min_count) : VTTT_ENOMEM;
    if (!err) err = run_merges(&s, p, &t->lg, merges, n_max, &n_done);
    if (merges) bt_state_free(&s);
    if (err == VTTT_ENOMEM) vttt_log(&t->lg, VTTT_LOG_ERROR, "tokenizer training: out of memory");
    if (!err && n_done < n_max)
        vttt_log(&t->lg, VTTT_LOG_INFO,
                 "tokenizer training: stopped after %d merges (vocab %d, not %d): no pair is left that occurs %d "
                 "times or more", n_done, 257 + n_done, p->vocab_size, p->min_count);
    if (!err) err = vttt_bpe_from_merges(out, merges, n_done, &t->lg);
    free(merges);
    return err;
}
