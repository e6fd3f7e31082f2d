#!/usr/bin/env bash
# The built-in video example, on real camera footage: the cockatoo clip that
# Debian's python3-imageio ships (1280x720, 20 fps, 14 s; fetched by
# tools/setup.sh with `apt-get download`, no install), which no shipped
# model was trained on (a held-out clip of tools/video_corpus.sh).
#   1. `vttt predict`     the shipped general model (models/video-64: a
#                         DELTA tokenizer and a TTT-MLP video model, no
#                         training here) predicts every next frame and 4
#                         frames ahead; PSNR/SSIM against repeating the last
#                         frame, copying the last frame's tokens and the
#                         tokenizer's ceiling; strip.png (true / predicted /
#                         repeat / tokenizer), rollout.png, a side-by-side video
#   2. `vttt video fit`   fine-tunes the tokenizer and the model on the
#                         clip's first 70% for FIT_MINUTES (2) and keeps the
#                         pair that predicts the last 30% best (ingest,
#                         tokenizer training, encoding, model training,
#                         held-out scoring: the whole pipeline)
#   3. `vttt predict`     the fitted model on the whole clip
# A few minutes on the CPU. Running it again reuses what is there.
#
# Usage: bash tools/example_video.sh [OUT_DIR (example_video)]
# Environment: VTTT (the vttt binary; default build/vttt), FIT_MINUTES (2),
# THREADS (OMP_NUM_THREADS; default all).
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
VTTT=${VTTT:-$HERE/../build/vttt}
OUT=${1:-example_video}
FIT_MINUTES=${FIT_MINUTES:-2}
[ -n "${THREADS:-}" ] && export OMP_NUM_THREADS=$THREADS
# idle OpenMP threads sleep instead of spinning (a shared machine)
export OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-passive}
[ -x "$VTTT" ] || { echo "no $VTTT: build first (bash tools/setup.sh), or set VTTT=path/to/vttt" >&2; exit 1; }
mkdir -p "$OUT"
stage() { printf '\n== %s\n' "$*"; }
took() { echo "($(($(date +%s) - $1)) s)"; }

CLIP=$(bash "$HERE/video_corpus.sh" --clip cockatoo) ||
    { echo "cannot fetch the example clip (python3-imageio's cockatoo.mp4): run tools/setup.sh with network" >&2; exit 1; }

stage "1/3 the shipped model on a real clip it never saw: vttt predict --video $(basename "$CLIP") -> $OUT/pred"
t=$(date +%s)
"$VTTT" predict --video "$CLIP" --out "$OUT/pred" --horizon 4
took "$t"

stage "2/3 fine-tuning on the clip's first 70%: vttt video fit --minutes $FIT_MINUTES -> $OUT/fit"
t=$(date +%s)
[ -f "$OUT/fit/fit.json" ] || "$VTTT" video fit --out "$OUT/fit" --minutes "$FIT_MINUTES" --heldout 0.3 "$CLIP"
took "$t"

stage "3/3 the fitted model on the whole clip (its first 70% was trained on): vttt predict --model $OUT/fit"
t=$(date +%s)
"$VTTT" predict --model "$OUT/fit" --video "$CLIP" --out "$OUT/pred_fit" --horizon 4 --no-video
took "$t"

echo
echo "done: $OUT/pred/strip.png (rows: true, predicted, repeat, tokenizer), $OUT/pred/rollout.png (4 frames ahead),"
echo "      $OUT/pred/predicted.mp4 (true | predicted), $OUT/pred/summary.json, $OUT/fit/fit.json (held-out figures)"
