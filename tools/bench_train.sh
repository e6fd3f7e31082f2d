#!/usr/bin/env bash
# Training throughput of `vttt train` on the CPU, side by side for the
# sequence layers: a model preset (default 125m, vocabulary 32000 as the
# reference's Llama tokenizer) at one context length (default 2048), a few
# optimizer steps each (forward, backward, AdamW), no checkpoints. Prints
# tokens/s (mean over the steps after the first, which pays for first-touch
# allocations), seconds per step, and the peak memory.
#
# Usage: bash tools/bench_train.sh
# Environment: VTTT (default build/vttt), PRESET (125m), SEQ (2048), BATCH
# (1), STEPS (3), KINDS ("ttt_linear ttt_mlp attention"), BACKBONE
# (transformer), THREADS (OpenMP threads; default all cores), OUT (a
# scratch directory; default a temporary one).
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
VTTT=${VTTT:-$HERE/../build/vttt}
PRESET=${PRESET:-125m}
SEQ=${SEQ:-2048}
BATCH=${BATCH:-1}
STEPS=${STEPS:-3}
KINDS=${KINDS:-ttt_linear ttt_mlp attention}
BACKBONE=${BACKBONE:-transformer}
THREADS=${THREADS:-$(nproc)}
[ -x "$VTTT" ] || { echo "no $VTTT: build first (bash tools/build.sh), or set VTTT=path/to/vttt" >&2; exit 1; }
OUT=${OUT:-$(mktemp -d "${TMPDIR:-/tmp}/vttt_bench_train_XXXXXX")}
mkdir -p "$OUT"
[ -n "${KEEP:-}" ] || trap 'rm -rf "$OUT"' EXIT

# data: the built-in corpus through a small BPE; the model's vocabulary is
# 32000 all the same (ids beyond the tokenizer's are simply never seen)
if [ ! -s "$OUT/data/meta.json" ]; then
    "$VTTT" textgen --bytes 2000000 --seed 1 --out "$OUT/corpus.txt"
    "$VTTT" tokenizer train --vocab-size 1024 --out "$OUT/tok.bpe" "$OUT/corpus.txt" >/dev/null 2>&1
    "$VTTT" ingest text --tokenizer "$OUT/tok.bpe" --out "$OUT/data" "$OUT/corpus.txt" >/dev/null 2>&1
fi

echo "vttt train throughput: preset $PRESET ($BACKBONE), context $SEQ, batch $BATCH, $STEPS steps, $THREADS threads"
echo "CPU: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//') ($(nproc) cores)"
printf '%-11s %12s %12s %10s %12s\n' layer params tokens/s s/step "peak RSS"
for kind in $KINDS; do
    run="$OUT/run_$kind"
    rm -rf "$run"
    TIMEFMT=()
    [ -x /usr/bin/time ] && TIMEFMT=(/usr/bin/time -f '%M' -o "$OUT/rss_$kind")
    if ! OMP_NUM_THREADS=$THREADS "${TIMEFMT[@]}" "$VTTT" train --data "$OUT/data" --out "$run" \
        --model-preset "$PRESET" --layer "$kind" --backbone "$BACKBONE" --vocab-size 32000 \
        --seq "$SEQ" --batch "$BATCH" --steps "$STEPS" --warmup 1 --no-save --threads "$THREADS" \
        2>"$OUT/log_$kind"; then
        echo "$kind: failed:"; tail -5 "$OUT/log_$kind"; continue
    fi
    params=$(sed -n 's/.*: \([0-9]*\) parameters.*/\1/p' "$OUT/log_$kind" | head -1)
    # mean tokens/s of steps 2.. (all steps when there is one)
    tps=$(grep -o '"tokens_per_s":[0-9.]*' "$run/metrics.jsonl" | cut -d: -f2 |
        awk -v n="$STEPS" 'NR > 1 || n == 1 { s += $1; k++ } END { if (k) printf "%.0f", s / k }')
    sps=$(awk -v t="$tps" -v n=$((SEQ * BATCH)) 'BEGIN { if (t > 0) printf "%.2f", n / t }')
    rss="?"
    [ -s "$OUT/rss_$kind" ] && rss="$(awk '{ printf "%.1f GiB", $1 / 1048576 }' "$OUT/rss_$kind")"
    printf '%-11s %12s %12s %10s %12s\n' "$kind" "$params" "$tps" "$sps" "$rss"
done
