#!/usr/bin/env bash
# Do the layers read their context? The measurements of docs/lm_context.md
# on real text nobody tuned for: the King James Bible from Debian's
# bible-kjv package, three whole books held out (Ruth, Jonah, Mark).
#   1. the text: `apt-get download bible-kjv bible-kjv-text`, its `bible`
#      program prints every verse; one document per book
#   2. a BPE tokenizer (4096) and token shards of the training books
#   3. three tiny models (attention, TTT-Linear, TTT-MLP), the same recipe
#   4. on the held-out books: `vttt lm loss-by-position --repeat` (the loss
#      on a piece of a book read a second time), `vttt lm score` in windows
#      of the trained context and over the whole stream, and the loss by
#      position of the three models on one plot (PNG + CSV)
# Running it again reuses what is there.
# Usage: bash tools/lm_context.sh [OUT_DIR (lm_context)]
# Environment: VTTT (build/vttt), STEPS (280), SEQ (512), THREADS (1).
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
VTTT=${VTTT:-$HERE/../build/vttt}
OUT=${1:-lm_context}
STEPS=${STEPS:-280}
SEQ=${SEQ:-512}
export OMP_NUM_THREADS=${THREADS:-1} OMP_WAIT_POLICY=passive
[ -x "$VTTT" ] || { echo "no $VTTT: build first (bash tools/build.sh), or set VTTT=path/to/vttt" >&2; exit 1; }
mkdir -p "$OUT"
cd "$OUT"
stage() { printf '\n== %s\n' "$*"; }

stage "1/4 the text: bible-kjv, one document per book; Ruth, Jonah and Mark held out"
if [ ! -s heldout.txt ]; then
    mkdir -p deb
    (cd deb && apt-get download bible-kjv bible-kjv-text && for d in *.deb; do dpkg-deb -x "$d" x; done)
    deb/x/usr/bin/bible -d deb/x/usr/lib/bible.data -f "Gen1:1-Rev22:21" >verses.txt   # `Ge1:1 In the beginning ...`
    awk -v held=" Ruth Jonah Mark " '
        { match($0, /^[0-9]?[A-Za-z]+/); b = substr($0, 1, RLENGTH); sub(/^[^ ]+ /, "")
          if (b != cur) { if (cur != "") printf "\n<|endoftext|>\n" > out
                          cur = b; out = index(held, " " b " ") ? "heldout.txt" : "train.txt"; sep = "" }
          printf "%s%s", sep, $0 > out; sep = " " }
        END { printf "\n<|endoftext|>\n" > out }' verses.txt
fi
wc -c train.txt heldout.txt

stage "2/4 tokenizer (BPE 4096) and token shards"
[ -s tok.bpe ] || "$VTTT" tokenizer train --vocab-size 4096 --quiet --out tok.bpe train.txt
[ -s data/meta.json ] || "$VTTT" ingest text --tokenizer tok.bpe --out data --val-file heldout.txt --quiet train.txt

stage "3/4 three tiny models, $STEPS steps of 8 x $SEQ tokens"
for L in attention ttt_linear ttt_mlp; do
    [ -e "run_$L/step-$(printf %08d "$STEPS")" ] && continue
    nice -n 5 "$VTTT" train --data data --out "run_$L" --preset tiny --layer "$L" --steps "$STEPS" --batch 8 \
        --seq "$SEQ" --lr 3e-3 --warmup $((STEPS / 10)) --eval-every 0 --ckpt-every $((STEPS / 2)) --seed 1 \
        >"train_$L.log" 2>&1
    tail -n 2 "train_$L.log"
done

stage "4/4 the held-out books"
M=(--model run_attention --label attention --model run_ttt_linear --label ttt_linear --model run_ttt_mlp --label ttt_mlp)
IN=(--text heldout.txt --tokenizer tok.bpe)
"$VTTT" lm loss-by-position --repeat "${M[@]}" "${IN[@]}" --csv repeat.csv
for L in attention ttt_linear ttt_mlp; do
    printf '%-10s trained context: ' "$L"; "$VTTT" lm score --model "run_$L" "${IN[@]}" --summary | head -1
    printf '%-10s whole stream:    ' "$L"; "$VTTT" lm score --model "run_$L" "${IN[@]}" --summary --whole 2>/dev/null | head -1
done
"$VTTT" lm loss-by-position "${M[@]}" "${IN[@]}" --buckets 10 --log-x --png loss_by_position.png >loss_by_position.txt
echo "done: $OUT/repeat.csv, $OUT/loss_by_position.png (.csv, .txt)"
