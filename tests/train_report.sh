#!/usr/bin/env bash
# What `vttt train` reports about a run, end to end: the final val_loss
# equals `vttt lm score --context SEQ` on the same validation shard (one
# definition of the windows; ttt_mlp and attention); the end-of-run summary
# (printed, and RUN/summary.json) against metrics.jsonl; metrics.jsonl's
# time_s and `vttt plot --x step|tokens|time`.
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

# time_s: every step line has the run's wall time so far, never going
# back, also across a stop (SIGTERM) and a resume
R2="$T/run_time"
tl_bg "$T/time.err" "$VTTT" train --data "$T/data" --model-preset test --batch 4 --seq 64 --warmup 5 --lr 3e-3 \
    --seed 5 --steps 120 --ckpt-every 1000 --threads 1 --quiet --out "$R2"
tl_sigterm_after "$R2/metrics.jsonl" 5 "$T/time.err"
"$VTTT" train --resume --out "$R2" --threads 1 --quiet || fail "resume after SIGTERM"
python3 - "$R2/metrics.jsonl" <<'PY' || fail "time_s in metrics.jsonl"
import json, sys
t = [json.loads(l).get("time_s") for l in open(sys.argv[1]) if '"loss"' in l]
ok = len(t) == 120 and all(x is not None and x > 0 for x in t) and all(b >= a for a, b in zip(t, t[1:]))
if not ok:
    print("time_s:", t)
sys.exit(0 if ok else 1)
PY

# vttt plot --x step|tokens|time
for x in step tokens time; do
    expect_status 0 "plot --x $x" -- "$VTTT" plot --x $x --out "$T/plot_$x.png" "$R" "$R2"
    [ "$(head -c 8 "$T/plot_$x.png" | od -An -tx1 | tr -d ' \n')" = 89504e470d0a1a0a ] || fail "plot --x $x wrote no PNG"
done
cmp -s "$T/plot_step.png" "$T/plot_tokens.png" && fail "--x tokens drew the same picture as --x step"
cmp -s "$T/plot_step.png" "$T/plot_time.png" && fail "--x time drew the same picture as --x step"
expect_status 2 "plot --x bogus" "step, tokens or time" -- "$VTTT" plot --x bogus --out "$T/x.png" "$R"
# a log from before time_s: by step and tokens as before; by time, an error that says so
mkdir -p "$T/old" && sed 's/,"time_s":[0-9.e+-]*//' "$R/metrics.jsonl" >"$T/old/metrics.jsonl"
grep -q time_s "$T/old/metrics.jsonl" && fail "the old-style log still has time_s"
expect_status 0 "plot --x tokens, old log" -- "$VTTT" plot --x tokens --out "$T/old_tokens.png" "$T/old"
expect_status 1 "plot --x time, old log" 'no "time_s"' -- "$VTTT" plot --x time --out "$T/old_time.png" "$T/old"

tl_finish "all vttt train report checks passed"
