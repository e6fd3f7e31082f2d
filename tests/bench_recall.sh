#!/usr/bin/env bash
# `vttt bench recall` end to end at a toy size: the grid, the CSV (a row per
# layer x width with an accuracy in [0, 1]) and the PNG; bad options refused.
set -euo pipefail
VTTT=$1
dir=$(mktemp -d /tmp/vttt_recall_XXXXXX)
trap 'rm -rf "$dir"' EXIT
export OMP_NUM_THREADS=1
"$VTTT" bench recall --lens 16,32 --kv 2 --widths 8,16 --steps 3 --batch 2 --vocab 64 --test 4 \
    --out "$dir/out" > "$dir/log"
grep -q "seq 32, 2 kv pairs" "$dir/log"
rows=$(tail -n +2 "$dir/out/mqar.csv" | wc -l)
[ "$rows" -eq 12 ] || { echo "expected 12 CSV rows, got $rows"; exit 1; }
awk -F, 'NR > 1 && ($12 < 0 || $12 > 1 || $17 != "ok") { bad = 1 } END { exit bad }' "$dir/out/mqar.csv"
[ "$(head -c 4 "$dir/out/mqar.png" | tail -c 3)" = "PNG" ]
if "$VTTT" bench recall --lens 16 --kv 5 --out "$dir/bad" 2> "$dir/err"; then echo "4 K > T accepted"; exit 1; fi
grep -q "num_kv_pairs" "$dir/err"
if "$VTTT" bench recall --kv 1,2 --lens 64 2> "$dir/err"; then echo "--kv list mismatch accepted"; exit 1; fi
grep -q -- "--kv" "$dir/err"
echo ok
