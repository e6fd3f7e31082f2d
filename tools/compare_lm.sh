#!/usr/bin/env bash
# TTT-Linear, TTT-MLP and attention language models side by side: the same
# data (the built-in corpus), the same model size (preset tiny), the same
# token budget and schedule; then one PNG of the three loss curves and the
# validation perplexity of each.
#
# Usage: bash tools/compare_lm.sh [OUT_DIR (compare_lm)]
# Environment: VTTT (build/vttt), STEPS (300), SEQ (512), BATCH (8).
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
VTTT=${VTTT:-$HERE/../build/vttt}
OUT=${1:-compare_lm}
STEPS=${STEPS:-300}
SEQ=${SEQ:-512}
BATCH=${BATCH:-8}
mkdir -p "$OUT"
[ -s "$OUT/corpus.txt" ] || "$VTTT" textgen --bytes 3000000 --seed 1 --out "$OUT/corpus.txt"
[ -s "$OUT/tokenizer.bpe" ] || "$VTTT" tokenizer train --vocab-size 1024 --out "$OUT/tokenizer.bpe" "$OUT/corpus.txt"
[ -s "$OUT/data/meta.json" ] || "$VTTT" ingest text --tokenizer "$OUT/tokenizer.bpe" --out "$OUT/data" \
    --val-fraction 0.02 "$OUT/corpus.txt"
for kind in ttt_linear ttt_mlp attention; do
    t=$(date +%s)
    "$VTTT" train --data "$OUT/data" --val "$OUT/data" --out "$OUT/$kind" --preset tiny --layer "$kind" \
        --steps "$STEPS" --batch "$BATCH" --seq "$SEQ" --lr 3e-3 --warmup 30 --eval-every 50 --eval-seqs 32 \
        --ckpt-every "$STEPS" --seed 1 --quiet
    echo "$kind: $(($(date +%s) - t)) s"
done
"$VTTT" plot --out "$OUT/loss_curves.png" "$OUT/ttt_linear" "$OUT/ttt_mlp" "$OUT/attention"
echo "validation (last evaluation of each run):"
for kind in ttt_linear ttt_mlp attention; do
    printf '%-11s ' "$kind"
    grep '"val_loss"' "$OUT/$kind/metrics.jsonl" | tail -1
done
