#!/usr/bin/env bash
# The held-out figures of a video model: `vttt predict --horizon 4` on every
# held-out clip of the corpus (tools/video_corpus.sh; whole clips no
# training step saw), then per clip and over all their frames: PSNR of the
# model, repeating the last frame, copying the last frame's tokens and the
# tokenizer's ceiling at k = 1..4, SSIM of the model and of repeating.
#
# usage: tools/heldout_eval.sh SIZE CORPUS OUT [MODEL_DIR]
#        (MODEL_DIR: default the shipped model for SIZE, models/video-SIZE)
# env: VTTT (build/vttt), THREADS (2), DECODE (the default: auto)
set -euo pipefail
cd "$(dirname "$0")/.."
SIZE=${1:?usage: tools/heldout_eval.sh SIZE CORPUS OUT [MODEL_DIR]}
CORPUS=${2:?usage: tools/heldout_eval.sh SIZE CORPUS OUT [MODEL_DIR]}
OUT=${3:?usage: tools/heldout_eval.sh SIZE CORPUS OUT [MODEL_DIR]}
VTTT=${VTTT:-build/vttt}
THREADS=${THREADS:-2}
MODEL=()
[ -n "${4:-}" ] && MODEL=(--model "$4")
export OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-passive}
mkdir -p "$OUT"
for clip in "$CORPUS"/heldout/*.mp4; do
    name=$(basename "$clip" .mp4)
    "$VTTT" predict "${MODEL[@]}" --video "$clip" --out "$OUT/$name" --size "$SIZE" --horizon 4 \
        --decode "${DECODE:-auto}" --no-video --threads "$THREADS" --quiet
done
python3 - "$OUT" <<'PY'
import json, os, sys
root = sys.argv[1]
rows = []
for name in sorted(os.listdir(root)):
    with open(os.path.join(root, name, "summary.json")) as f:
        rows.append((name, json.load(f)))
for name, s in rows:
    print(f"{name}: model - repeat at k=1..4: " + " ".join(f"{st['model_psnr'] - st['repeat_psnr']:+.2f}"
          for st in s["steps"]) + f" dB (repeat {s['steps'][0]['repeat_psnr']:.2f}, ceiling "
          f"{s['steps'][0]['ceiling_psnr']:.2f} at k=1)")
for k in range(4):
    n = sum(s["steps"][k]["frames"] for _, s in rows)
    m = {key: sum(s["steps"][k][key] * s["steps"][k]["frames"] for _, s in rows) / n
         for key in ("model_psnr", "repeat_psnr", "copy_tokens_psnr", "ceiling_psnr", "model_ssim", "repeat_ssim")}
    print(f"all held-out clips, k={k + 1} ({n} frames): PSNR model {m['model_psnr']:.2f} dB, repeat "
          f"{m['repeat_psnr']:.2f} ({m['model_psnr'] - m['repeat_psnr']:+.2f}), copy tokens "
          f"{m['copy_tokens_psnr']:.2f}, ceiling {m['ceiling_psnr']:.2f}; SSIM model {m['model_ssim']:.4f}, repeat "
          f"{m['repeat_ssim']:.4f}")
PY
