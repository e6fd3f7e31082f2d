#!/usr/bin/env bash
# The built-in video example: next-frame prediction learned from scratch on
# the CPU in a few minutes, on video that FFmpeg generates (no download):
#   1. ffmpeg (lavfi)          a scrolling test pattern: testsrc2 moved right
#                              by 1/8 of the frame per frame, 10 fps; 20 s for
#                              training, 5 s from t = 60 s held out
#   2. `vttt ingest video`     64x64 RGB frame shards
#   3. `vttt encoder train`    the frame tokenizer (8x8 grid: 64 tokens per
#                              frame, FSQ levels 8,5,5,5: vocabulary 1000)
#   4. `vttt encoder encode`   video token shards
#   5. `vttt train`            a small TTT-MLP video model (next-frame
#                              objective, 64-frame sequences in 16-frame
#                              windows with the TTT state carried)
#   6. `vttt predict`          the held-out clip through a stream: PSNR/SSIM
#                              of the predicted next frame against repeating
#                              the last frame and the tokenizer's ceiling, a
#                              PNG strip, a side-by-side video
#   7. `vttt plot`             the loss curves as a PNG
# Running it again reuses what is there; give another OUT_DIR to start over.
#
# Usage: bash tools/example_video.sh [OUT_DIR (example_video)]
# Environment: VTTT (the vttt binary; default build/vttt), ENC_STEPS (400),
# STEPS (video model steps, 150), THREADS (OMP_NUM_THREADS; default all).
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
VTTT=${VTTT:-$HERE/../build/vttt}
OUT=${1:-example_video}
ENC_STEPS=${ENC_STEPS:-400}
STEPS=${STEPS:-150}
[ -n "${THREADS:-}" ] && export OMP_NUM_THREADS=$THREADS
# idle OpenMP threads sleep instead of spinning: on a machine shared with
# other busy processes, spinning barriers made training 5-10x slower
export OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-passive}
[ -x "$VTTT" ] || { echo "no $VTTT: build first (bash tools/build.sh), or set VTTT=path/to/vttt" >&2; exit 1; }
command -v ffmpeg >/dev/null || { echo "ffmpeg is needed to generate the example video (apt install ffmpeg)" >&2; exit 1; }
mkdir -p "$OUT"
stage() { printf '\n== %s\n' "$*"; }
took() { echo "($(($(date +%s) - $1)) s)"; }
SRC="testsrc2=size=64x64:rate=10,scroll=horizontal=0.125"

stage "1/7 video: ffmpeg -f lavfi -i \"$SRC\" -> $OUT/train.mp4 (20 s), $OUT/heldout.mp4 (5 s from t=60 s)"
t=$(date +%s)
[ -s "$OUT/train.mp4" ] || ffmpeg -v error -f lavfi -i "$SRC" -t 20 -pix_fmt yuv420p -crf 12 "$OUT/train.mp4"
[ -s "$OUT/heldout.mp4" ] || ffmpeg -v error -f lavfi -i "$SRC" -ss 60 -t 5 -pix_fmt yuv420p -crf 12 "$OUT/heldout.mp4"
took "$t"

stage "2/7 frames: vttt ingest video --size 64 -> $OUT/frames"
t=$(date +%s)
"$VTTT" ingest video --out "$OUT/frames" --size 64 "$OUT/train.mp4"
took "$t"

stage "3/7 tokenizer: vttt encoder train, $ENC_STEPS steps -> $OUT/enc"
t=$(date +%s)
[ -e "$OUT/enc/latest" ] || "$VTTT" encoder train --frames "$OUT/frames" --out "$OUT/enc" --steps "$ENC_STEPS" \
    --batch 16 --channels 16 --groups 4 --lr 3e-3 --warmup 20 --val-frames 20 --ckpt-every 200 --log-every 50
took "$t"

stage "4/7 token shards: vttt encoder encode -> $OUT/tok"
t=$(date +%s)
[ -s "$OUT/tok/meta.json" ] || "$VTTT" encoder encode --encoder "$OUT/enc" --out "$OUT/tok" --val-frames 20 \
    "$OUT/frames"
took "$t"

stage "5/7 video model: vttt train, TTT-MLP, $STEPS steps of one 64-frame sequence -> $OUT/run"
t=$(date +%s)
RESUME=()
[ -e "$OUT/run/latest" ] && RESUME=(--resume)
"$VTTT" train --data "$OUT/tok" --out "$OUT/run" "${RESUME[@]}" \
    --preset test --layer ttt_mlp --steps "$STEPS" --batch 1 --seq 4096 --window 1024 --lr 1e-2 --warmup 10 \
    --ckpt-every 50 --seed 1 --log-every 25
took "$t"

stage "6/7 prediction on the held-out clip: vttt predict -> $OUT/pred"
t=$(date +%s)
"$VTTT" predict --model "$OUT/run" --encoder "$OUT/enc" --video "$OUT/heldout.mp4" --out "$OUT/pred" \
    --horizon 4 --strip-every 6
took "$t"

stage "7/7 loss curves: vttt plot -> $OUT/loss.png"
"$VTTT" plot --out "$OUT/loss.png" "$OUT/run"

echo
echo "done: $OUT/pred/strip.png (rows: true, predicted, tokenizer), $OUT/pred/rollout.png (4 frames ahead),"
echo "      $OUT/pred/predicted.mp4 (true | predicted), $OUT/pred/frames.csv, $OUT/loss.png"
