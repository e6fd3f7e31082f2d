#!/usr/bin/env bash
# The next-frame measurement of the video issue, on the CPU: a small
# TTT-MLP video model trained for at most MINUTES (default 30) of wall
# time on FFmpeg-generated training clips, then `vttt predict` on held-out
# clips (the same generators at a later time, never seen in training),
# next-frame PSNR/SSIM against repeating the last frame and the
# tokenizer's reconstruction (the ceiling).
#
# Clips (64x64, 10 fps, lavfi): testsrc2 scrolled right by 1/8 and by 1/4
# of the frame per frame, scrolled down by 1/8, and a mandelbrot zoom;
# training: 30 s of each from t = 0; held-out: 15 s of each from t = 120 s.
# Usage: tools/measure_video.sh [OUT_DIR] (env: VTTT (binary), MINUTES,
# THREADS, STEPS).
set -eu
VTTT=${VTTT:-build/vttt}
OUT=${1:-measure_video_out}
MINUTES=${MINUTES:-30}
THREADS=${THREADS:-2}
STEPS=${STEPS:-1500}
export OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-passive} # spinning OpenMP barriers cost 5-10x on a shared machine
mkdir -p "$OUT/train_clips" "$OUT/heldout_clips"
gen() { # gen NAME FILTER START DURATION DIR
    [ -s "$5/$1.mp4" ] || ffmpeg -v error -f lavfi -i "$2" -ss "$3" -t "$4" -pix_fmt yuv420p -c:v libx264 -crf 12 \
        "$5/$1.mp4"
}
SRC=(
    "scroll8 testsrc2=size=64x64:rate=10,scroll=horizontal=0.125"
    "scroll4 testsrc2=size=64x64:rate=10,scroll=horizontal=0.25"
    "down8 testsrc2=size=64x64:rate=10,scroll=vertical=0.125"
    "mandel mandelbrot=size=64x64:rate=10"
)
for s in "${SRC[@]}"; do
    read -r name filt <<<"$s"
    gen "$name" "$filt" 0 30 "$OUT/train_clips"
    gen "$name" "$filt" 120 15 "$OUT/heldout_clips"
done
T0=$(date +%s)
"$VTTT" ingest video --out "$OUT/frames" --size 64 "$OUT"/train_clips/*.mp4 >/dev/null
[ -d "$OUT/enc/latest" ] || "$VTTT" encoder train --frames "$OUT/frames" --out "$OUT/enc" --steps 800 --batch 16 \
    --channels 16 --groups 4 --lr 3e-3 --warmup 40 --val-frames 20 --threads "$THREADS" --quiet
"$VTTT" encoder eval --encoder "$OUT/enc" --frames "$OUT/frames" --val-frames 20 | tee "$OUT/encoder_eval.txt"
"$VTTT" encoder encode --encoder "$OUT/enc" --out "$OUT/tok" --val-frames 20 "$OUT/frames"
T1=$(date +%s)
echo "tokenizer: $((T1 - T0)) s"
cat >"$OUT/model_config.json" <<'EOF'
{"vocab_size": 1000, "hidden_size": 64, "intermediate_size": 172, "num_hidden_layers": 2,
 "num_attention_heads": 4, "seq_modeling_block": "ttt", "ttt_layer_type": "mlp", "mini_batch_size": 16,
 "max_position_embeddings": 16384, "tokens_per_frame": 64}
EOF
# one sequence of 256 frames (16384 tokens) per step, trained in windows of
# 16 frames with the TTT state carried; stopped with a checkpoint after
# MINUTES at the latest (no --val: the held-out clips are scored below)
RESUME=()
[ -e "$OUT/run/latest" ] && RESUME=(--resume)
timeout -s TERM "${MINUTES}m" "$VTTT" train --data "$OUT/tok" --out "$OUT/run" "${RESUME[@]}" \
    --config "$OUT/model_config.json" --seq 16384 --window 1024 --batch 1 --steps "$STEPS" --lr 3e-3 \
    --warmup 20 --ckpt-every 25 --threads "$THREADS" --log-every 10 || true
T2=$(date +%s)
echo "video model: $((T2 - T1)) s of training"
"$VTTT" plot --out "$OUT/loss.png" "$OUT/run" || true
for s in "${SRC[@]}"; do
    read -r name _ <<<"$s"
    "$VTTT" predict --model "$OUT/run" --encoder "$OUT/enc" --video "$OUT/heldout_clips/$name.mp4" \
        --out "$OUT/pred_$name" --horizon 4 --threads "$THREADS" | tee "$OUT/pred_$name.txt"
done
# means over the four held-out clips (frames weighted equally)
awk -F, 'FNR > 1 { m += $2; r += $4; c += $6; ms += $3; rs += $5; cs += $7; ma += $8; ra += $9; n++ }
    END { printf "held-out, %d frames: next-frame PSNR model %.2f dB, repeat-last %.2f dB, tokenizer ceiling %.2f dB; " \
          "SSIM %.3f / %.3f / %.3f; token accuracy model %.3f, repeat %.3f\n",
          n, m / n, r / n, c / n, ms / n, rs / n, cs / n, ma / n, ra / n }' "$OUT"/pred_*/frames.csv |
    tee "$OUT/summary.txt"
