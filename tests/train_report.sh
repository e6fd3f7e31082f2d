#!/usr/bin/env bash
# What `vttt train` reports about a run, end to end: the final val_loss
# equals `vttt lm score --context SEQ` on the same validation shard (one
# definition of the windows; ttt_mlp and attention).
# Usage: train_report.sh path/to/vttt
set -u
VTTT=${1:?usage: train_report.sh path/to/vttt}
# shellcheck source=tests/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
tl_tmpdir train_report
export OMP_NUM_THREADS=1

"$VTTT" textgen --bytes 200000 --seed 4 --out "$T/corpus.txt" || exit 1
"$VTTT" tokenizer train --vocab-size 300 --quiet --out "$T/tok.bpe" "$T/corpus.txt" || exit 1
"$VTTT" ingest text --tokenizer "$T/tok.bpe" --out "$T/data" --val-fraction 0.05 --quiet "$T/corpus.txt" || exit 1
VAL="$T/data/val_000000.bin"
NVAL=$(python3 -c 'import json, sys; print(json.load(open(sys.argv[1]))["val"]["tokens"])' "$T/data/meta.json")
# the validation tokens end in a shorter window, and windows have boundary tokens
[ $(((NVAL - 1) % 64)) -gt 0 ] && [ "$NVAL" -gt 1000 ] || fail "the validation split ($NVAL tokens) has no shorter last window"

# val_loss at the end == lm score --context SEQ on the val shard
for layer in ttt_mlp attention; do
    "$VTTT" train --data "$T/data" --val "$T/data" --model-preset test --layer $layer --batch 4 --seq 64 --warmup 5 \
        --lr 3e-3 --seed 5 --steps 30 --eval-every 30 --threads 1 --quiet --out "$T/run_$layer" \
        >"$T/train_$layer.txt" 2>&1 || { fail "$layer: train"; cat "$T/train_$layer.txt"; continue; }
    V=$(grep '"val_loss"' "$T/run_$layer/metrics.jsonl" | tail -1 | python3 -c 'import json, sys; print(json.load(sys.stdin)["val_loss"])')
    "$VTTT" lm score --model "$T/run_$layer" --tokens "$VAL" --context 64 --summary >"$T/score_$layer.txt" \
        || fail "$layer: lm score"
    S=$(awk '/^mean_nll/ { print $2 }' "$T/score_$layer.txt")
    N=$(awk '/^mean_nll/ { print substr($3, 2) }' "$T/score_$layer.txt")
    [ "$N" = $((NVAL - 1)) ] || fail "$layer: lm score predicted $N tokens, want every one but the first ($((NVAL - 1)))"
    awk -v a="$V" -v b="$S" 'BEGIN { d = a - b; exit !(a > 0 && d * d < 4e-10) }' \
        || fail "$layer: the trainer's val_loss $V and lm score's mean_nll $S differ by more than 2e-5"
done

tl_finish "all vttt train report checks passed"
