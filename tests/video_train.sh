#!/usr/bin/env bash
# Video end to end on the CPU: an FFmpeg-generated scrolling test pattern
# (testsrc2 scrolled a quarter of the frame per frame, so repeating the
# last frame is a poor guess), ingested at 32x32, a small tokenizer trained
# briefly (16 tokens per frame), encoded, and a small TTT-MLP video model
# trained on it with carried windows. Asserts:
#   - bad --seq/--window (not whole frames) are refused with a clear error;
#   - the next-frame training loss falls (mean of the last 10 steps below
#     half of the first step's);
#   - on the training clip, the model's greedy next frame beats repeating
#     the last frame: next-frame token accuracy (share of the true next
#     frame's tokens the model predicts, vs the share equal to the last
#     frame's) by 0.2 or more, and PSNR against the true next frame by
#     1 dB or more (both from `vttt predict`'s frames over the first 32
#     frames, the length trained on);
#   - `vttt predict` refuses a --size other than the tokenizer's, a missing
#     video and missing options; it writes its files, its summary means equal the means of
#     its frames.csv, and its predicted tokens and model PSNR equal those
#     of an independent stream fed one RGB frame at a time
#     (video_stream_helper); --horizon 3 leaves the first-step tokens
#     unchanged.
# Usage: video_train.sh path/to/vttt path/to/video_stream_helper
set -u
VTTT=${1:?usage: video_train.sh path/to/vttt path/to/video_stream_helper}
HELPER=${2:?usage: video_train.sh path/to/vttt path/to/video_stream_helper}
# shellcheck source=tests/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
command -v ffmpeg >/dev/null || { echo "SKIP: ffmpeg not found"; exit 77; }
tl_tmpdir video_train
Q=(--threads 2)
export OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-passive} # no spinning barriers on a shared machine

ffmpeg -v error -f lavfi -i "testsrc2=size=64x64:rate=10,scroll=horizontal=0.25" -t 6 -pix_fmt yuv420p \
    "$T/clip.mp4" || exit 1
"$VTTT" ingest video --out "$T/frames" --size 32 "$T/clip.mp4" >/dev/null 2>&1 || { echo "ingest failed"; exit 1; }
"$VTTT" encoder train --frames "$T/frames" --out "$T/enc" --steps 100 --batch 16 --channels 8 --groups 4 \
    --levels 5,5,5 --val-frames 8 --lr 5e-3 --warmup 10 --quiet "${Q[@]}" >/dev/null 2>&1 ||
    { echo "encoder train failed"; exit 1; }
"$VTTT" encoder encode --encoder "$T/enc" --out "$T/tok" --val-frames 8 "$T/frames" >/dev/null 2>&1 ||
    { echo "encoder encode failed"; exit 1; }
grep -q '"tokens_per_frame":[[:space:]]*16' "$T/tok/meta.json" || fail "meta.json: tokens_per_frame is not 16"

TRAIN=(train --data "$T/tok" --model-preset test --batch 2 --warmup 5 --lr 1e-2 --ckpt-every 0 --quiet "${Q[@]}")
expect_status 1 "--seq not whole frames" "multiple of the 16 tokens per frame" -- \
    "$VTTT" "${TRAIN[@]}" --out "$T/bad1" --seq 500 --steps 1
expect_status 1 "--window not whole frames" "multiple of the 16 tokens per frame" -- \
    "$VTTT" "${TRAIN[@]}" --out "$T/bad2" --seq 512 --window 120 --steps 1
expect_status 0 "video training" -- "$VTTT" "${TRAIN[@]}" --out "$T/run" --seq 512 --window 128 --steps 60
grep -q '"tokens_per_frame":[[:space:]]*16' "$T/run/latest/config.json" || fail "the model is not a video model"
awk -F'"loss":' 'NF > 1 { split($2, a, ","); l[n++] = a[1] }
    END { s = 0; for (i = n - 10; i < n; i++) s += l[i]; s /= 10;
          printf "loss: first step %.3f, mean of the last 10 %.3f\n", l[0], s; exit !(n >= 60 && s < 0.5 * l[0]) }' \
    "$T/run/metrics.jsonl" || fail "the next-frame loss did not fall to half"

P=(predict --model "$T/run" --encoder "$T/enc" --video "$T/clip.mp4" --max-frames 32 "${Q[@]}")
expect_status 0 "vttt predict" -- "$VTTT" "${P[@]}" --out "$T/pred"
cat "$T/out.txt"
for f in frames.csv summary.json strip.png tokens.txt; do [ -s "$T/pred/$f" ] || fail "predict wrote no $f"; done
[ -s "$T/pred/predicted.mp4" ] || [ -s "$T/pred/predicted.mkv" ] || fail "predict wrote no predicted video"
[ "$(wc -l <"$T/pred/frames.csv")" = 32 ] || fail "frames.csv: want a header and 31 frames"
# means of frames.csv: model psnr, repeat psnr, model token acc, repeat token acc
read -r MP RP MA RA < <(awk -F, 'NR > 1 { a += $2; b += $4; c += $8; d += $9; n++ }
    END { printf "%.4f %.4f %.4f %.4f\n", a / n, b / n, c / n, d / n }' "$T/pred/frames.csv")
echo "model psnr $MP, repeat psnr $RP, model token acc $MA, repeat token acc $RA"
SP=$(sed -n 's/.*"model": {"psnr": \([0-9.]*\).*/\1/p' "$T/pred/summary.json")
awk -v a="$MP" -v b="$SP" 'BEGIN { d = a - b; exit !(d < 0.001 && d > -0.001) }' ||
    fail "summary.json model psnr $SP differs from the mean of frames.csv $MP"
awk -v m="$MA" -v r="$RA" 'BEGIN { exit !(m >= r + 0.2) }' ||
    fail "next-frame token accuracy: the model ($MA) does not beat repeating the last frame ($RA) by 0.2"
awk -v m="$MP" -v r="$RP" 'BEGIN { exit !(m >= r + 1.0) }' ||
    fail "next-frame PSNR: the model ($MP dB) does not beat repeating the last frame ($RP dB) by 1 dB"

expect_status 2 "predict --size other than the tokenizer's" "differs from the tokenizer's image size 32" -- \
    "$VTTT" "${P[@]}" --out "$T/bad_pred" --size 64
expect_status 1 "predict on a missing video" "predict" -- "$VTTT" predict --model "$T/run" --encoder "$T/enc" \
    --video "$T/missing.mp4" --out "$T/bad_pred"
expect_status 2 "predict without --video" "required" -- "$VTTT" predict --model "$T/run" --encoder "$T/enc" \
    --out "$T/bad_pred"

# an independent stream fed RGB frames predicts the same tokens and PSNR
"$HELPER" "$T/run" "$T/enc" "$T/clip.mp4" 32 >"$T/stream.txt" || fail "video_stream_helper failed"
grep -v '^model_psnr' "$T/stream.txt" | cmp -s - "$T/pred/tokens.txt" ||
    fail "vttt predict's tokens differ from a stream's fed one frame at a time"
HP=$(sed -n 's/^model_psnr //p' "$T/stream.txt")
awk -v a="$MP" -v b="$HP" 'BEGIN { d = a - b; exit !(d < 0.001 && d > -0.001) }' ||
    fail "the stream's model PSNR $HP differs from vttt predict's $MP"
expect_status 0 "vttt predict --horizon 3" -- "$VTTT" "${P[@]}" --out "$T/pred3" --horizon 3 --no-video
cmp -s "$T/pred/tokens.txt" "$T/pred3/tokens.txt" || fail "--horizon 3 changed the first-step predictions"
[ -s "$T/pred3/rollout.png" ] || fail "--horizon 3 wrote no rollout.png"
grep -q '"k": 3' "$T/pred3/summary.json" || fail "--horizon 3: no step k=3 in summary.json"
tl_finish "video_train: all checks passed"
