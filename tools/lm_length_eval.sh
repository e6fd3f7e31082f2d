#!/usr/bin/env bash
# Length generalization of a language model on held-out documents: the
# loss of every token with the state carried against fresh windows of the
# training window W, on the same tokens, by position bucket.
#
# Each held-out text file is one document (as `vttt ingest text` writes it:
# <|endoftext|> then its tokens), scored three ways with `vttt lm score`:
#   fresh    windows of W tokens, each from the initial state;
#   carried  windows of K*W tokens, each from the initial state, the state
#            carried through the window (positions up to K times W);
#   whole    the whole document as one sequence (the state carried over
#            all of it).
# Tables (nats per token, on the tokens every mode predicts; a token at
# position p (its index in the document) is read after the tokens of its
# window before it: window (p-1) div W of the fresh ones):
#   1. by the position q in the K*W segment, buckets of windows [0,1), [1,2),
#      [2,4), [4,8), ... [K/2,K) of W: carried, fresh, carried - fresh and
#      its standard error over the segments (the bucket's mean difference of
#      each segment; a segment shorter than a bucket's start is left out);
#   2. by the position in the whole document, the same buckets continued
#      past K*W ([K,2K), [2K,4K), ...): whole, fresh, whole - fresh, SE;
#   3. per document: tokens, fresh, carried, whole.
# Bucket 0 is the same computation both ways (a check: its difference is 0).
#
# Usage: lm_length_eval.sh MODEL TOKENIZER W K FILE...
# Environment: VTTT (default build/vttt), THREADS (--threads, default 1),
# KEEP (a directory to keep the per-token scores in).
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
VTTT=${VTTT:-$HERE/../build/vttt}
[ $# -ge 5 ] || { sed -n '2,26p' "$0" >&2; exit 2; }
MODEL=$1 TOK=$2 W=$3 K=$4
shift 4
THREADS=${THREADS:-1}
TMP=${KEEP:-$(mktemp -d)}
mkdir -p "$TMP"
[ -n "${KEEP:-}" ] || trap 'rm -rf "$TMP"' EXIT

score() {   # score FILE CONTEXT OUT: "<position> <nll>" of every predicted token
    "$VTTT" lm score --model "$MODEL" --text "$1" --tokenizer "$TOK" --context "$2" --threads "$THREADS" |
        awk 'NF == 3 && $1 ~ /^[0-9]+$/ { print $1, $3 }' >"$3"
}

i=0
for f in "$@"; do
    i=$((i + 1))
    score "$f" "$W" "$TMP/fresh.$i"
    score "$f" $((K * W)) "$TMP/carried.$i"
    score "$f" 100000000 "$TMP/whole.$i"
    [ -s "$TMP/fresh.$i" ] || { echo "lm_length_eval: no scores for $f" >&2; exit 1; }
done

for i in $(seq 1 $#); do
    name=$(basename "${!i}" .txt)
    join <(sort -k1,1 "$TMP/fresh.$i") <(sort -k1,1 "$TMP/carried.$i") |
        join - <(sort -k1,1 "$TMP/whole.$i") | sed "s/^/$i $name /"
done | awk -v W="$W" -v K="$K" '
# fields: doc name position fresh carried whole
function bucket(j,   b) { if (j < 1) return 0; b = 1; while (2 ^ b <= j) b++; return b }   # windows [2^(b-1), 2^b)
function lo(b) { return b == 0 ? 0 : 2 ^ (b - 1) }
function hi(b) { return 2 ^ b }
function se(sum, sum2, n,   m, v) {
    if (n < 2) return "-"
    m = sum / n; v = (sum2 - n * m * m) / (n - 1)
    return sprintf("%.4f", sqrt(v > 0 ? v : 0) / sqrt(n))
}
{
    d = $1; p = $3; fr = $4; ca = $5; wh = $6
    name[d] = $2; nd[d]++; sf[d] += fr; sc[d] += ca; sw[d] += wh
    seg = int((p - 1) / (K * W)); q = p - 1 - seg * K * W
    b = bucket(int(q / W)); key = d SUBSEP seg SUBSEP b
    n1[b]++; f1[b] += fr; c1[b] += ca
    if (!(key in sn)) segs1[b] = segs1[b] " " key
    sn[key]++; sdiff[key] += ca - fr
    b2 = bucket(int((p - 1) / W)); key2 = d SUBSEP b2
    n2[b2]++; f2[b2] += fr; w2[b2] += wh
    if (!(key2 in tn)) segs2[b2] = segs2[b2] " " key2
    tn[key2]++; tdiff[key2] += wh - fr
    if (b2 > maxb) maxb = b2
}
function table(title, n, a, f, segs, cnt, dif, last, what,   b, m, s, s2, k, x, list) {
    printf "%s\n%-14s %9s %6s %9s %9s %9s %8s\n", title, "windows of W", "tokens", "groups", what, "fresh", "diff", "SE"
    for (b = 0; b <= last; b++) {
        if (!(b in n)) continue
        m = split(segs[b], list, " "); s = s2 = 0
        for (k = 1; k <= m; k++) { x = dif[list[k]] / cnt[list[k]]; s += x; s2 += x * x }
        printf "[%4d,%4d)   %9d %6d %9.4f %9.4f %+9.4f %8s\n", lo(b), hi(b), n[b], m, a[b] / n[b], f[b] / n[b],
               (a[b] - f[b]) / n[b], se(s, s2, m)
    }
}
END {
    printf "# W = %d tokens, K = %d: carried up to %d tokens; nats per token\n", W, K, K * W
    table("## 1. position in the K*W segment: carried (state carried over the segment) vs fresh W-windows",
          n1, c1, f1, segs1, sn, sdiff, bucket(K - 1), "carried")
    table("## 2. position in the whole document: whole (state carried over the document) vs fresh W-windows",
          n2, w2, f2, segs2, tn, tdiff, maxb, "whole")
    printf "## 3. per document\n%-22s %8s %9s %9s %9s\n", "document", "tokens", "fresh", "carried", "whole"
    for (d = 1; d in nd; d++) printf "%-22s %8d %9.4f %9.4f %9.4f\n", name[d], nd[d], sf[d] / nd[d], sc[d] / nd[d], sw[d] / nd[d]
}'
