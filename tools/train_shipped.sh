#!/usr/bin/env bash
# Trains the shipped general video models (models/video-S: a DELTA frame
# tokenizer in models/video-S/encoder and a TTT-MLP video model) from the
# real-video corpus of tools/video_corpus.sh, training clips only (the
# held-out clips are never seen), and writes their held-out figures.
# See models/README.md for the recipe's reasons and the figures.
#
# usage: tools/train_shipped.sh SIZE [WORK_DIR]     (SIZE 64 or 128)
# env: VTTT (binary, build/vttt), CORPUS (corpus dir; built if missing),
#      THREADS (2), ENC_STEPS, ENC_RATE_STEPS, MODEL_STEPS (defaults below)
# The models land in WORK_DIR/video-SIZE; copy them to models/ to ship.
# Deterministic for a given machine and thread count (seeded weights and
# data order); float summation order may differ across machines.
set -euo pipefail
cd "$(dirname "$0")/.."
SIZE=${1:?usage: tools/train_shipped.sh SIZE [WORK_DIR]}
WORK=${2:-shipped_work}
VTTT=${VTTT:-build/vttt}
CORPUS=${CORPUS:-$WORK/corpus}
THREADS=${THREADS:-2}
export OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-passive}
# the settings of the committed models (models/README.md)
case "$SIZE" in
64) FACTOR=4 MOTION=4 D_ENC=4000 D_RATE=1500 D_MODEL=600 ;;  # 16x16 cells of 4x4 pixels, motion up to 4 pixels
128) FACTOR=8 MOTION=8 D_ENC=2500 D_RATE=800 D_MODEL=500 ;;  # 16x16 cells of 8x8 pixels, motion up to 8 pixels
*) echo "SIZE must be 64 or 128" >&2; exit 2 ;;
esac
ENC_STEPS=${ENC_STEPS:-$D_ENC}
ENC_RATE_STEPS=${ENC_RATE_STEPS:-$D_RATE}
MODEL_STEPS=${MODEL_STEPS:-$D_MODEL}
mkdir -p "$WORK"
[ -f "$CORPUS/split.txt" ] || bash tools/video_corpus.sh "$CORPUS"
F="$WORK/frames$SIZE"
for split in train heldout; do
    [ -f "$F/$split/manifest.jsonl" ] ||
        "$VTTT" ingest video --out "$F/$split" --size "$SIZE" --scaler area --jobs 2 --quiet "$CORPUS/$split"/*.mp4
done
# 1. the tokenizer: DELTA, levels 7,5,5,5 (875 codes), then a shorter
#    fine-tune with the rate term so that small changes become "no change"
E="$WORK/enc$SIZE"
[ -d "$E/a/latest" ] || "$VTTT" encoder train --kind delta --factor "$FACTOR" --levels 7,5,5,5 --frames "$F/train" \
    --out "$E/a" --val-frames 4 --steps "$ENC_STEPS" --batch 16 --lr 2e-3 --warmup 100 --eval-every 1000 \
    --ckpt-every 500 --log-every 100 --threads "$THREADS"
[ -d "$E/b/latest" ] || "$VTTT" encoder train --init "$E/a" --rate 0.002 --frames "$F/train" --out "$E/b" \
    --val-frames 4 --steps "$ENC_RATE_STEPS" --batch 16 --lr 1e-3 --warmup 50 --eval-every 500 --ckpt-every 500 \
    --log-every 100 --threads "$THREADS"
# 1c. motion on (encoder/README.md): the same weights; each frame gets a
#     motion field of 16 regions (32 tokens: 288 tokens per frame) and its
#     cells are coded against the previous frame moved by it
C="$WORK/enc$SIZE/c"
if [ ! -f "$C/config.json" ]; then
    mkdir -p "$C"
    cp "$E/b/latest/model.safetensors" "$C/"
    python3 - "$E/b/latest/config.json" "$C/config.json" "$MOTION" <<'PY'
import json, sys
c = json.load(open(sys.argv[1]))
c["motion"] = int(sys.argv[3])
json.dump(c, open(sys.argv[2], "w"), indent=1)
PY
fi
# 2. token shards of the training clips (the last 8 frames of each clip for validation)
T="$WORK/tok$SIZE"
[ -f "$T/meta.json" ] || "$VTTT" encoder encode --encoder "$C" --out "$T" --val-frames 8 --threads "$THREADS" "$F/train"
# 3. the video model: TTT-MLP, width 64, 2 layers; 32-frame sequences in
#    4-frame windows with the TTT state carried (P = 288 tokens per frame)
V=$(python3 -c "import json; print(json.load(open('$T/meta.json'))['vocab_size'])")
P=$(python3 -c "import json; print(json.load(open('$T/meta.json'))['tokens_per_frame'])")
cat >"$WORK/model$SIZE.json" <<EOF
{"vocab_size": $V, "hidden_size": 64, "intermediate_size": 172, "num_hidden_layers": 2,
 "num_attention_heads": 4, "seq_modeling_block": "ttt", "ttt_layer_type": "mlp", "mini_batch_size": 16,
 "max_position_embeddings": 16384, "tokens_per_frame": $P}
EOF
M="$WORK/model$SIZE"
[ -d "$M/latest" ] || "$VTTT" train --data "$T" --val "$T" --out "$M" --config "$WORK/model$SIZE.json" \
    --seq $((32 * P)) --window $((4 * P)) --batch 1 --steps "$MODEL_STEPS" --lr 3e-3 --warmup 30 --eval-every 100 \
    --ckpt-every 100 --keep 10 --threads "$THREADS" --log-every 20
# 4. the shipped directory: the model (the last checkpoint: the best on the
#    validation tails of the training clips for both sizes), its tokenizer in encoder/
OUT="$WORK/video-$SIZE"
rm -rf "$OUT.tmp"
mkdir -p "$OUT.tmp/encoder"
cp "$M/latest/config.json" "$M/latest/model.safetensors" "$OUT.tmp/"
cp "$C/config.json" "$C/model.safetensors" "$OUT.tmp/encoder/"
rm -rf "$OUT"
mv "$OUT.tmp" "$OUT"
# 5. held-out figures: every held-out clip, horizon 4
bash tools/heldout_eval.sh "$SIZE" "$CORPUS" "$WORK/heldout$SIZE" "$OUT"
