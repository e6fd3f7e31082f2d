#!/usr/bin/env bash
# The built-in text example: a small TTT-MLP language model trained from
# scratch on the CPU in a few minutes, on a corpus the project generates
# itself (no download):
#   1. `vttt textgen`          simple stories whose cast is set at the start
#   2. `vttt tokenizer train`  a byte-level BPE tokenizer, vocabulary 1024
#   3. `vttt ingest text`      token shards (train and validation)
#   4. `vttt train`            the TTT-MLP model (preset "tiny": width 128, 4 layers)
#   5. `vttt plot`             the loss curves as a PNG
#   6. `vttt lm sample`        a story from the trained model, and
#      `vttt lm loss-by-position`  its loss against the position in the context
# Running it again reuses what is there (the run resumes if it was stopped);
# to train with other settings, give another OUT_DIR.
#
# Usage: bash tools/example_lm.sh [OUT_DIR (example_lm)]
# Environment: VTTT (the vttt binary; default build/vttt), STEPS (training
# steps, 300), CORPUS_BYTES (3000000), THREADS (OMP_NUM_THREADS; default all).
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
VTTT=${VTTT:-$HERE/../build/vttt}
OUT=${1:-example_lm}
STEPS=${STEPS:-300}
CORPUS_BYTES=${CORPUS_BYTES:-3000000}
[ -n "${THREADS:-}" ] && export OMP_NUM_THREADS=$THREADS
[ -x "$VTTT" ] || { echo "no $VTTT: build first (bash tools/build.sh), or set VTTT=path/to/vttt" >&2; exit 1; }
mkdir -p "$OUT"
stage() { printf '\n== %s\n' "$*"; }
took() { echo "($(($(date +%s) - $1)) s)"; }

stage "1/6 corpus: vttt textgen --bytes $CORPUS_BYTES -> $OUT/corpus.txt"
t=$(date +%s)
[ -s "$OUT/corpus.txt" ] || "$VTTT" textgen --bytes "$CORPUS_BYTES" --seed 1 --out "$OUT/corpus.txt"
head -c 400 "$OUT/corpus.txt"
printf '...\n'
took "$t"

stage "2/6 tokenizer: vttt tokenizer train --vocab-size 1024 -> $OUT/tokenizer.bpe"
t=$(date +%s)
[ -s "$OUT/tokenizer.bpe" ] || "$VTTT" tokenizer train --vocab-size 1024 --out "$OUT/tokenizer.bpe" "$OUT/corpus.txt"
took "$t"

stage "3/6 token shards: vttt ingest text -> $OUT/data"
t=$(date +%s)
[ -s "$OUT/data/meta.json" ] || "$VTTT" ingest text --tokenizer "$OUT/tokenizer.bpe" --out "$OUT/data" \
    --val-fraction 0.02 "$OUT/corpus.txt"
took "$t"

stage "4/6 training: vttt train, TTT-MLP, $STEPS steps of 8 x 256 tokens -> $OUT/run"
t=$(date +%s)
RESUME=()
[ -e "$OUT/run/latest" ] && RESUME=(--resume)
"$VTTT" train --data "$OUT/data" --val "$OUT/data" --out "$OUT/run" "${RESUME[@]}" \
    --preset tiny --layer ttt_mlp --steps "$STEPS" --batch 8 --seq 256 --lr 3e-3 --warmup 40 \
    --eval-every 50 --eval-seqs 16 --ckpt-every 100 --seed 1
took "$t"

stage "5/6 loss curves: vttt plot -> $OUT/loss.png"
"$VTTT" plot --out "$OUT/loss.png" "$OUT/run"

stage "6/6 the trained model: a sample (prompt \"Once upon a time\") and the loss by position"
"$VTTT" lm sample --model "$OUT/run" --tokenizer "$OUT/tokenizer.bpe" --prompt "Once upon a time" \
    --max-tokens 160 --temperature 0.8 --top-k 40 --seed 1 --verbose
echo
"$VTTT" lm loss-by-position --model "$OUT/run" --tokens "$OUT/data/val_000000.bin" --context 256 --buckets 8 \
    --png "$OUT/loss_by_position.png"

echo
echo "done: $OUT/loss.png (loss curves), $OUT/loss_by_position.png, model $OUT/run/latest"
echo "more: $VTTT lm sample --model $OUT/run --tokenizer $OUT/tokenizer.bpe --prompt \"...\""
