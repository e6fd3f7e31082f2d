#!/usr/bin/env bash
# `vttt video fit` end to end on the CPU: two FFmpeg test-pattern clips, a
# tiny initial pair made here (a DELTA tokenizer and a video model trained
# for a few steps, put together as a video model directory), fine-tuned
# with --minutes 0.4. Asserts:
#   - the result is a video model directory: `vttt predict --model DIR`
#     runs on it as it is (the tokenizer found in DIR/encoder), no DIR.tmp
#     is left;
#   - fit.json lists the inputs with their held-out tails (the last 20% of
#     each clip), the time per stage, the initial pair and at least one
#     fine-tuned checkpoint as candidates with held-out PSNR and
#     repeat-last-frame PSNR, and keeps the one with the best PSNR; the
#     held-out figures of every candidate are printed;
#   - the budget holds: the whole command ends within its minutes plus the
#     trainers' grace for stopping (10 s) and a margin;
#   - bad inputs fail cleanly, with a message and no DIR: an unreadable
#     --init, a file that is no video, a clip too short to hold out, a
#     --size other than the model's, an existing --out, no files.
# Usage: video_fit.sh path/to/vttt
set -u
VTTT=${1:?usage: video_fit.sh path/to/vttt}
# shellcheck source=tests/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
command -v ffmpeg >/dev/null || { echo "SKIP: ffmpeg not found"; exit 77; }
tl_tmpdir video_fit
export OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-passive} OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
Q=(--threads 1)

for c in "a horizontal=0.1" "b vertical=0.05"; do
    ffmpeg -v error -f lavfi -i "testsrc2=size=64x64:rate=10,scroll=${c#* }" -t 4 -pix_fmt yuv420p \
        "$T/${c%% *}.mp4" || exit 1
done
ffmpeg -v error -f lavfi -i "testsrc2=size=64x64:rate=10" -frames:v 3 -pix_fmt yuv420p "$T/short.mp4" || exit 1
echo "not a video" >"$T/text.mp4"

# the initial pair: a tiny DELTA tokenizer (32x32, 64 tokens per frame) and
# a tiny video model, as one video model directory
"$VTTT" ingest video --out "$T/frames" --size 32 "$T/a.mp4" >/dev/null 2>&1 || { echo "ingest failed"; exit 1; }
"$VTTT" encoder train --kind delta --channels 8 --groups 4 --levels 5,3,3 --steps 20 --frames "$T/frames" \
    --out "$T/enc" --val-frames 4 --quiet "${Q[@]}" >/dev/null 2>&1 || { echo "encoder train failed"; exit 1; }
"$VTTT" encoder encode --encoder "$T/enc" --out "$T/tok" --val-frames 4 "$T/frames" >/dev/null 2>&1 ||
    { echo "encoder encode failed"; exit 1; }
"$VTTT" train --data "$T/tok" --out "$T/run" --model-preset test --seq 512 --batch 2 --steps 10 --ckpt-every 0 \
    --quiet "${Q[@]}" >/dev/null 2>&1 || { echo "video model training failed"; exit 1; }
mkdir -p "$T/init/encoder"
cp "$T"/run/latest/{config.json,model.safetensors} "$T/init/"
cp "$T"/enc/latest/{config.json,model.safetensors} "$T/init/encoder/"

FIT=(video fit --init "$T/init" "${Q[@]}")
expect_status 0 "vttt video fit" -- "$VTTT" "${FIT[@]}" --out "$T/fit" --minutes 0.4 "$T/a.mp4" "$T/b.mp4"
cat "$T/err.txt"
D=$T/fit
for f in config.json model.safetensors encoder/config.json encoder/model.safetensors fit.json; do
    [ -s "$D/$f" ] || fail "no $f in the result"
done
[ ! -e "$D.tmp" ] || fail "$D.tmp was left behind"
[ ! -e "$D/work" ] || fail "the work files were left in the result"
N=$(grep -c "held-out next-frame PSNR [0-9.]* dB (repeat last frame [0-9.]* dB)" "$T/err.txt")
python3 - "$D/fit.json" "$N" <<'EOF' || fail "fit.json"
import json, sys
j = json.load(open(sys.argv[1]))
printed = int(sys.argv[2])
ok = True
def check(cond, what):
    global ok
    if not cond:
        print("FAIL: fit.json: " + what)
        ok = False
check([i["frames"] for i in j["inputs"]] == [40, 40], "inputs: want two clips of 40 frames")
check(all(i["heldout_frames"] == 8 and i["train_frames"] == 32 for i in j["inputs"]),
      "each clip's last 20% (8 frames) held out")
check(j["frames"] == {"train": 64, "heldout": 16}, "frames: train 64, held out 16")
for k in ("ingest", "tokenizer", "encode", "model", "evaluation", "total"):
    check(j["seconds"].get(k, -1) >= 0, "seconds." + k)
check(j["seconds"]["total"] <= 0.4 * 60 + 10 + 5, "the fit took %.1f s, over its budget of 24 s and the grace"
      % j["seconds"]["total"])
check(j["tokenizer"]["steps"] > 0 and j["model"]["steps"] > 0, "no training steps recorded")
c = j["candidates"]
names = [x["name"] for x in c]
check(names[0] == "init" and any(n.startswith("step-") for n in names[1:]),
      "candidates: want init and fine-tuned checkpoints, got %s" % names)
check(all(x["scored_frames"] == 16 and x["psnr"] > 0 and x["repeat_psnr"] > 0 for x in c),
      "every candidate scored on the 16 held-out frames")
best = max(c, key=lambda x: x["psnr"])
check(j["kept"] == best["name"], "kept %s, but the best PSNR is %s's" % (j["kept"], best["name"]))
check(printed == len(c), "%d candidates, %d held-out lines printed" % (len(c), printed))
print("candidates: " + ", ".join("%s %.2f dB" % (x["name"], x["psnr"]) for x in c) + "; repeat %.2f dB; kept %s"
      % (c[0]["repeat_psnr"], j["kept"]))
sys.exit(0 if ok else 1)
EOF
KEPT=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["kept"])' "$D/fit.json")
if [ "$KEPT" != init ]; then
    cmp -s "$D/model.safetensors" "$T/init/model.safetensors" && fail "kept $KEPT, but the model is the initial one"
fi
expect_status 0 "vttt predict --model DIR" -- "$VTTT" predict --model "$D" --video "$T/a.mp4" --out "$T/pred" \
    --no-video "${Q[@]}"
grep -q '"model": {"psnr"' "$T/pred/summary.json" || fail "predict on the result wrote no summary"

# bad inputs: a message, non-zero, no result
expect_status 1 "--init that cannot be read" "cannot load the video model" -- \
    "$VTTT" "${FIT[@]/#$T\/init/$T/enc}" --out "$T/bad1" "$T/a.mp4"
expect_status 1 "a file that is no video" "text.mp4: no frames" -- "$VTTT" "${FIT[@]}" --out "$T/bad2" \
    --minutes 0.2 "$T/a.mp4" "$T/text.mp4"
expect_status 1 "a clip too short to hold out" "short.mp4: 3 frames at 32x32, too short" -- \
    "$VTTT" "${FIT[@]}" --out "$T/bad3" --minutes 0.2 "$T/short.mp4"
expect_status 2 "--size other than the model's" "differs from the frame size 32" -- \
    "$VTTT" "${FIT[@]}" --out "$T/bad4" --size 64 "$T/a.mp4"
expect_status 2 "an existing --out" "exists" -- "$VTTT" "${FIT[@]}" --out "$D" "$T/a.mp4"
expect_status 2 "no files" "required" -- "$VTTT" "${FIT[@]}" --out "$T/bad5"
for b in bad1 bad2 bad3 bad4 bad5; do [ ! -e "$T/$b" ] || fail "a failed fit left $T/$b"; done
tl_finish "video_fit: all checks passed"
