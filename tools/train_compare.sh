#!/usr/bin/env bash
# The three sequence layers trained side by side on the CPU: the same data
# (the built-in story corpus, BPE vocabulary 1024), the same token budget,
# the same recipe and seed; one PNG with their training and validation
# loss curves, and a table of the final validation loss and perplexity.
#
# Usage: bash tools/train_compare.sh [OUT_DIR (train_compare)] [PNG (OUT_DIR/loss_curves.png)]
# Environment: VTTT (default build/vttt), PRESET (tiny), STEPS (500), BATCH
# (8), SEQ (256), KINDS ("ttt_mlp ttt_linear attention"), THREADS, YMAX (top
# of the loss axis: 2, so that the curves after the first drop stay apart).
# Runs that exist are resumed (so an interrupted comparison continues).
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
VTTT=${VTTT:-$HERE/../build/vttt}
OUT=${1:-train_compare}
PNG=${2:-$OUT/loss_curves.png}
PRESET=${PRESET:-tiny}
STEPS=${STEPS:-500}
BATCH=${BATCH:-8}
SEQ=${SEQ:-256}
KINDS=${KINDS:-ttt_mlp ttt_linear attention}
[ -n "${THREADS:-}" ] && export OMP_NUM_THREADS=$THREADS
[ -x "$VTTT" ] || { echo "no $VTTT: build first (bash tools/build.sh), or set VTTT=path/to/vttt" >&2; exit 1; }
mkdir -p "$OUT"

[ -s "$OUT/corpus.txt" ] || "$VTTT" textgen --bytes 3000000 --seed 1 --out "$OUT/corpus.txt"
[ -s "$OUT/tokenizer.bpe" ] || "$VTTT" tokenizer train --vocab-size 1024 --out "$OUT/tokenizer.bpe" "$OUT/corpus.txt"
[ -s "$OUT/data/meta.json" ] || "$VTTT" ingest text --tokenizer "$OUT/tokenizer.bpe" --out "$OUT/data" \
    --val-fraction 0.02 "$OUT/corpus.txt"

RUNS=()
for kind in $KINDS; do
    echo "== $kind: $STEPS steps of $BATCH x $SEQ tokens ($PRESET)"
    RESUME=()
    [ -e "$OUT/$kind/latest" ] && RESUME=(--resume)
    start=$(date +%s)
    "$VTTT" train --data "$OUT/data" --val "$OUT/data" --out "$OUT/$kind" "${RESUME[@]}" \
        --model-preset "$PRESET" --layer "$kind" --steps "$STEPS" --batch "$BATCH" --seq "$SEQ" \
        --lr 3e-3 --warmup $((STEPS / 10)) --eval-every $((STEPS / 10)) --eval-seqs 32 --ckpt-every 100 --seed 1
    echo "($(($(date +%s) - start)) s)"
    RUNS+=("$kind=$OUT/$kind")
done

"$VTTT" plot --out "$PNG" --title "$PRESET models, $BATCH x $SEQ tokens per step, same data and seed" \
    --smooth 10 --ymax "${YMAX:-2}" "${RUNS[@]}"
printf '\n%-11s %10s %10s %14s\n' layer val_loss val_ppl "train tokens"
for kind in $KINDS; do
    m="$OUT/$kind/metrics.jsonl"
    v=$(grep '"val_loss"' "$m" | tail -1)
    printf '%-11s %10s %10s %14s\n' "$kind" "$(echo "$v" | sed 's/.*"val_loss":\([^,]*\),.*/\1/' | cut -c1-6)" \
        "$(echo "$v" | sed 's/.*"val_ppl":\([^}]*\)}.*/\1/' | cut -c1-7)" \
        "$(grep '"loss"' "$m" | tail -1 | sed 's/.*"tokens":\([0-9]*\),.*/\1/')"
done
