#!/usr/bin/env bash
# `vttt train` and `vttt plot` end to end: usage errors; a run killed with
# SIGKILL part way and resumed ends with the same weights, optimizer state
# and loss lines as an uninterrupted run (bit for bit); SIGTERM saves a
# checkpoint and exits 0; a resume with other settings is refused; the
# loss curves of two runs as a PNG. Usage: train_cli.sh path/to/vttt
set -u
VTTT=${1:?usage: train_cli.sh path/to/vttt}
# shellcheck source=tests/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
tl_tmpdir train_cli
# the loss lines of a run, without the timing
losses() { sed 's/,"tokens_per_s":[^}]*//' "$1/metrics.jsonl"; }

"$VTTT" textgen --bytes 300000 --seed 3 --out "$T/corpus.txt" || exit 1
"$VTTT" tokenizer train --vocab-size 300 --out "$T/tok.bpe" "$T/corpus.txt" >/dev/null 2>&1 || exit 1
"$VTTT" ingest text --tokenizer "$T/tok.bpe" --out "$T/data" --val-fraction 0.05 "$T/corpus.txt" >/dev/null 2>&1 ||
    exit 1
RUN=(--data "$T/data" --val "$T/data" --model-preset test --batch 4 --seq 64 --warmup 5 --lr 3e-3 --seed 5
    --eval-every 20 --eval-seqs 4 --threads 1 --quiet)

# usage errors: 2
expect_status 2 "no options" -- "$VTTT" train
expect_status 2 "no --data" -- "$VTTT" train --out "$T/x"
expect_status 2 "unknown option" -- "$VTTT" train --data "$T/data" --out "$T/x" --frobnicate
expect_status 2 "bad number" -- "$VTTT" train --data "$T/data" --out "$T/x" --batch abc
expect_status 2 "bad --comm" -- "$VTTT" train --data "$T/data" --out "$T/x" --comm nccl
expect_status 0 "--help" -- "$VTTT" train --help
expect_status 2 "plot without runs" -- "$VTTT" plot --out "$T/x.png"
# errors in the settings or the data: 1, with a message
expect_status 1 "window not a multiple of 16" -- "$VTTT" train "${RUN[@]}" --out "$T/x" --steps 2 --window 24
grep -q "multiple of the TTT mini-batch size" "$T/err.txt" || fail "no message for --window 24: $(cat "$T/err.txt")"
echo '{"hidden_size": "wide"}' >"$T/bad_config.json"
expect_status 1 "malformed --config" -- "$VTTT" train "${RUN[@]}" --out "$T/x" --steps 2 --config "$T/bad_config.json"
grep -q "hidden_size" "$T/err.txt" || fail "no message naming the bad config key: $(cat "$T/err.txt")"
expect_status 1 "missing data" -- "$VTTT" train --data "$T/nowhere" --out "$T/x" --steps 2
grep -q "no token shards found" "$T/err.txt" || fail "no message for missing data: $(cat "$T/err.txt")"

# meta.json is read whole and strictly: one that cannot be parsed is an
# error naming it (never a silent text run); one over 64 KiB (a video
# dataset lists every source) is read whole, so its tokens_per_frame holds.
# ("${RUN[@]/#$T\/data/$T/D}": RUN on the data dir D instead.)
mkdir -p "$T/badmeta" "$T/bigmeta"
cp "$T"/data/*.bin "$T/badmeta/"
head -c 40 "$T/data/meta.json" >"$T/badmeta/meta.json"
expect_status 1 "truncated meta.json" "badmeta/meta.json: not valid JSON" -- \
    "$VTTT" train "${RUN[@]/#$T\/data/$T/badmeta}" --out "$T/badmeta_run" --steps 2
[ ! -e "$T/badmeta_run/latest" ] || fail "a run was trained from a data dir with a broken meta.json"
printf '{"kind": "video", "vocab_size": 300, "tokens_per_frame": 0}' >"$T/badmeta/meta.json"
expect_status 1 "tokens_per_frame 0 in a video meta.json" "tokens_per_frame" -- \
    "$VTTT" train "${RUN[@]/#$T\/data/$T/badmeta}" --out "$T/badmeta_run" --steps 2
# video token shards of 200 frames of 16 tokens (uint16 ids below 256)
for split in train val; do
    perl -e 'srand(7); print pack("l<256", 20240520, 1, 3200), pack("S<*", map { int(rand(256)) } 1 .. 3200)' \
        >"$T/bigmeta/${split}_000000.bin"
done
{
    printf '{"kind": "video", "vocab_size": 300, "tokens_per_frame": 16, "fps": "30/1", "sources": ['
    for i in $(seq 1 1500); do printf '{"source": "videos/clip_%05d.mp4", "train_frames": 1000},' "$i"; done
    printf '{"source": "last.mp4", "train_frames": 1}]}\n'
} >"$T/bigmeta/meta.json"
[ "$(stat -c %s "$T/bigmeta/meta.json")" -gt 65536 ] || fail "the large meta.json is not over 64 KiB"
expect_status 0 "meta.json over 64 KiB" -- "$VTTT" train "${RUN[@]/#$T\/data/$T/bigmeta}" --out "$T/big" --steps 2
grep -q '"tokens_per_frame":[[:space:]]*16' "$T/big/latest/config.json" ||
    fail "a meta.json over 64 KiB was not read: the run is not a video run"
# --docs: every sequence is a document from its start (split at meta.json's
# eot), a setting saved with the run; video shards have no documents
expect_status 0 "--docs run" -- "$VTTT" train "${RUN[@]}" --out "$T/docs" --steps 3 --docs --window 16
grep -q '"docs":[[:space:]]*1' "$T/docs/latest/trainer_state.json" || fail "--docs is not saved with the run's settings"
expect_status 1 "--docs on video shards" "holds video tokens" -- \
    "$VTTT" train "${RUN[@]/#$T\/data/$T/bigmeta}" --out "$T/docs_video" --steps 2 --docs

# an uninterrupted run
expect_status 0 "uninterrupted run" -- "$VTTT" train "${RUN[@]}" --out "$T/full" --steps 120 --ckpt-every 10
[ "$(readlink "$T/full/latest")" = step-00000120 ] || fail "latest -> $(readlink "$T/full/latest")"
[ "$(ls -d "$T"/full/step-* | wc -l)" = 2 ] || fail "not 2 checkpoints kept: $(ls "$T/full")"

# --init: a new run fine-tuned from a model (a run stands for its newest
# checkpoint) starts from its weights: its first loss is near the model's
# last, far below a fresh model's first; it resumes with its settings; the
# options of a new model, an unreadable model and data of another
# vocabulary or tokens per frame are refused.
first_loss() { sed -n 's/.*"step":1,"loss":\([0-9.]*\).*/\1/p' "$1/metrics.jsonl"; }
last_loss() { sed -n 's/.*"step":[0-9]*,"loss":\([0-9.]*\).*/\1/p' "$1/metrics.jsonl" | tail -1; }
expect_status 0 "--init from a run" -- "$VTTT" train "${RUN[@]}" --out "$T/ft" --steps 4 --init "$T/full"
F0=$(first_loss "$T/full") F1=$(last_loss "$T/full") I0=$(first_loss "$T/ft")
echo "--init: fresh first loss $F0, source last loss $F1, fine-tuned first loss $I0"
awk -v f0="$F0" -v f1="$F1" -v i0="$I0" 'BEGIN { exit !(i0 != "" && i0 < f1 + 0.3 * (f0 - f1)) }' ||
    fail "--init: the first loss $I0 is not near the source model's last $F1 (fresh: $F0)"
expect_status 0 "resume a finished --init run" -- "$VTTT" train --out "$T/ft" --resume --quiet
grep -q "\"init\":.*full" "$T/ft/latest/trainer_state.json" || fail "--init is not saved in trainer_state.json"
expect_status 1 "--init with --config" "cannot go with --init" -- \
    "$VTTT" train "${RUN[@]}" --out "$T/ft2" --steps 2 --init "$T/full" --config "$T/bad_config.json"
expect_status 1 "--init from nothing" "cannot load the model" -- \
    "$VTTT" train "${RUN[@]}" --out "$T/ft3" --steps 2 --init "$T/nowhere"
expect_status 1 "--init text model on video shards" "tokens_per_frame" -- \
    "$VTTT" train "${RUN[@]/#$T\/data/$T/bigmeta}" --out "$T/ft4" --steps 2 --init "$T/full"
mkdir -p "$T/vocab400" && cp "$T"/data/*.bin "$T/vocab400/"
sed 's/"vocab_size":[[:space:]]*[0-9]*/"vocab_size": 400/' "$T/data/meta.json" >"$T/vocab400/meta.json"
expect_status 1 "--init on another vocabulary" "vocabulary has 300 tokens" -- \
    "$VTTT" train "${RUN[@]/#$T\/data/$T/vocab400}" --out "$T/ft5" --steps 2 --init "$T/full"

# the same run killed with SIGKILL after its second checkpoint, then resumed
tl_bg "$T/cut.err" "$VTTT" train "${RUN[@]}" --out "$T/cut" --steps 120 --ckpt-every 10
tl_sigkill_at "$T/cut/step-00000020" 0.05
STEP=$(sed -n 's/.*"step":\([0-9]*\),"loss".*/\1/p' "$T/cut/metrics.jsonl" | tail -1)
echo "killed after step $STEP (newest checkpoint: $(readlink "$T/cut/latest"))"
expect_status 0 "resume after SIGKILL" -- "$VTTT" train --out "$T/cut" --resume --threads 1 --quiet
for f in model.safetensors optimizer.safetensors config.json; do
    cmp -s "$T/full/latest/$f" "$T/cut/latest/$f" || fail "$f differs between the uninterrupted and the resumed run"
done
diff <(losses "$T/full") <(losses "$T/cut") >"$T/diff.txt" || { fail "loss lines differ"; head "$T/diff.txt"; }
[ "$(grep -c '"loss"' "$T/cut/metrics.jsonl")" = 120 ] || fail "not one loss line per step after the resume"
# resuming a finished run: nothing to do
expect_status 0 "resume a finished run" -- "$VTTT" train --out "$T/cut" --resume --quiet
# a resume with other settings is refused
expect_status 1 "resume with another --lr" -- "$VTTT" train --out "$T/cut" --resume --lr 0.1
grep -q -- "--lr: given 0.1" "$T/err.txt" || fail "no message for the changed --lr: $(cat "$T/err.txt")"
# a new run over an existing one is refused
expect_status 1 "new run over a run" -- "$VTTT" train "${RUN[@]}" --out "$T/cut" --steps 120
grep -q -- "--resume" "$T/err.txt" || fail "no hint to --resume: $(cat "$T/err.txt")"

# SIGTERM: a checkpoint of the last finished step, exit 0
tl_bg "$T/term.err" "$VTTT" train "${RUN[@]}" --out "$T/term" --steps 100000 --ckpt-every 0
tl_sigterm_after "$T/term/metrics.jsonl" 3 "$T/term.err"
LAST=$(sed -n 's/.*"step":\([0-9]*\),"loss".*/\1/p' "$T/term/metrics.jsonl" | tail -1)
SAVED=$(sed -n 's/^\t"step":\t\([0-9]*\),$/\1/p' "$T/term/latest/trainer_state.json")
[ -n "$LAST" ] && [ "$LAST" = "$SAVED" ] || fail "SIGTERM: checkpoint of step '$SAVED', last step '$LAST'"

# loss curves of two runs
expect_status 0 "plot" -- "$VTTT" plot --out "$T/loss.png" --title "test runs" "$T/full" "killed=$T/cut"
[ "$(head -c 8 "$T/loss.png" | od -An -tx1 | tr -d ' \n')" = 89504e470d0a1a0a ] || fail "plot: not a PNG"
expect_status 1 "plot of a missing run" -- "$VTTT" plot --out "$T/x.png" "$T/nowhere"

tl_finish "train_cli: all passed"
