#!/usr/bin/env bash
# What `vttt train` reports about a run, end to end: the final val_loss
# equals `vttt lm score --context SEQ` on the same validation shard (one
# definition of the windows; ttt_mlp and attention); the end-of-run summary
# (printed, and RUN/summary.json) against metrics.jsonl.
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

# the end-of-run summary: printed, and RUN/summary.json with the figures of
# metrics.jsonl (tokens, the smoothed loss as the bias-corrected moving
# average with beta 0.95, the best val_loss and its step)
R="$T/run_sum"
"$VTTT" train --data "$T/data" --val "$T/data" --model-preset test --batch 4 --seq 64 --warmup 5 --lr 3e-3 --seed 5 \
    --steps 24 --eval-every 8 --eval-seqs 8 --threads 1 --out "$R" >"$T/sum_out.txt" 2>&1 || fail "train for the summary"
grep -qE '^summary: 24 steps, 6144 tokens \| wall [0-9.]+ s, [0-9]+ tok/s .* \| smoothed loss [0-9.]+ \| best val_loss [0-9.]+ at step (8|16|24)$' \
    "$T/sum_out.txt" || fail "no summary line: $(tail -2 "$T/sum_out.txt")"
check_summary() {   # RUN EXPECT_STEPS_OF_THIS_PROCESS_FROM
    python3 - "$1" "$2" <<'PY'
import json, math, sys
run, first = sys.argv[1], int(sys.argv[2])
s = json.load(open(run + "/summary.json"))
lines = [json.loads(l) for l in open(run + "/metrics.jsonl")]
steps = [l for l in lines if "loss" in l and l["step"] > first]
vals = [l for l in lines if "val_loss" in l]
ema = 0.0
for l in steps:
    ema = 0.95 * ema + 0.05 * l["loss"]
want = ema / (1 - 0.95 ** len(steps)) if steps else None
best = min(vals, key=lambda l: l["val_loss"])
ok = (s["step"] == 24 and s["tokens"] == 24 * 4 * 64 and s["wall_s"] > 0 and s["tokens_per_s"] >= 0
      and (s["loss_smoothed"] is None if want is None else abs(s["loss_smoothed"] - want) < 1e-5)
      and abs(s["best_val_loss"] - best["val_loss"]) < 1e-6 and s["best_val_step"] == best["step"])
if not ok:
    print("summary.json", s, "want smoothed", want, "best", best)
sys.exit(0 if ok else 1)
PY
}
check_summary "$R" 0 || fail "summary.json differs from metrics.jsonl"
# on resume the best validation loss covers the earlier processes' (from
# metrics.jsonl): a line of step 3 added by hand is the best; a finished run
# resumed takes no step, so it has no smoothed loss
echo '{"step":3,"val_loss":1.25,"val_ppl":3.49}' >>"$R/metrics.jsonl"
"$VTTT" train --resume --out "$R" --threads 1 --quiet || fail "resume a finished run"
check_summary "$R" 24 || fail "summary.json after a resume"
python3 -c 'import json, sys; s = json.load(open(sys.argv[1])); sys.exit(not (s["best_val_step"] == 3 and s["best_val_loss"] == 1.25))' \
    "$R/summary.json" || fail "the resumed summary's best is not the earlier process's: $(tr -d '\n\t' <"$R/summary.json")"

tl_finish "all vttt train report checks passed"
