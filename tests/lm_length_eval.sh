#!/usr/bin/env bash
# tools/lm_length_eval.sh on a small random TTT-Linear model (lm_cli_helper)
# and two documents: the first window of a segment is the same computation
# carried and fresh (difference 0), the per-document token counts are the
# tokens `vttt lm score --context W` predicts, and the per-document means
# are those of `vttt lm score` with windows of W, K*W and the whole
# document over those tokens. Usage: lm_length_eval.sh path/to/vttt
# path/to/lm_cli_helper path/to/tools/lm_length_eval.sh
set -u
VTTT=${1:?usage: lm_length_eval.sh vttt lm_cli_helper lm_length_eval.sh}
HELP=${2:?usage: lm_length_eval.sh vttt lm_cli_helper lm_length_eval.sh}
EVAL=${3:?usage: lm_length_eval.sh vttt lm_cli_helper lm_length_eval.sh}
# shellcheck source=tests/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
tl_tmpdir lm_length

"$VTTT" textgen --bytes 8000 --seed 4 --out "$T/corpus.txt" || { echo "textgen failed"; exit 1; }
sed 's/<|endoftext|>//g' "$T/corpus.txt" >"$T/plain.txt"
head -c 2500 "$T/plain.txt" >"$T/a.txt"
tail -c 4000 "$T/plain.txt" >"$T/b.txt"
"$VTTT" tokenizer train --vocab-size 300 --quiet --out "$T/tok.bpe" "$T/corpus.txt" || { echo "tokenizer failed"; exit 1; }
"$HELP" init "$T/lin" linear 300 8 || { echo "lm_cli_helper init failed"; exit 1; }
VTTT=$VTTT THREADS=1 bash "$EVAL" "$T/lin" "$T/tok.bpe" 16 4 "$T/a.txt" "$T/b.txt" >"$T/table.txt" 2>"$T/err.txt" ||
    { fail "lm_length_eval.sh failed: $(cat "$T/err.txt")"; exit 1; }
cat "$T/table.txt"

awk '/^## 1/ { t = 1 } t == 1 && /^\[   0,   1\)/ { print $(NF - 1); exit }' "$T/table.txt" | grep -qx '+0.0000' ||
    fail "the first window differs carried and fresh"
grep -q '^\[   4,   8)' <(sed -n '/^## 2/,/^## 3/p' "$T/table.txt") || fail "no whole-document rows past K*W"
# the direct scores, each mode's mean over the tokens that fresh windows predict
score() {   # score FILE CONTEXT: "<position> <nll>"
    "$VTTT" lm score --model "$T/lin" --text "$1" --tokenizer "$T/tok.bpe" --context "$2" --threads 1 |
        awk 'NF == 3 && $1 ~ /^[0-9]+$/ { print $1, $3 }' | sort -k1,1
}
for d in a b; do
    score "$T/$d.txt" 16 >"$T/f" && score "$T/$d.txt" 64 >"$T/c" && score "$T/$d.txt" 100000000 >"$T/w" || exit 1
    want=$(join "$T/f" "$T/c" | join - "$T/w" |
        awk '{ f += $2; c += $3; w += $4; n++ } END { printf "%d %.4f %.4f %.4f\n", n, f / n, c / n, w / n }')
    got=$(awk -v d="$d" '/^## 3/ { t = 1 } t && $1 == d { print $2, $3, $4, $5 }' "$T/table.txt")
    [ "$got" = "$want" ] || fail "document $d: tokens, fresh, carried, whole are '$got', lm score gives '$want'"
done
[ "$FAILS" = 0 ] && echo "lm_length_eval: all checks passed"
exit $((FAILS > 0))
