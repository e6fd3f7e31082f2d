#!/usr/bin/env bash
# `vttt encoder` end to end on an FFmpeg-generated clip (16x16 frames, a
# tiny tokenizer): training lowers the reconstruction loss; a run killed
# with SIGKILL and resumed ends bit for bit as an uninterrupted one; eval
# prints PSNR/SSIM and writes the PNG grid; encode writes the token shards
# and meta.json of the contract; decode gives frames back (a shard, PNGs);
# bad inputs (wrong frame size, truncated shard, not a tokenizer, foreign
# token shard, bad options) fail with clear messages.
#   tests/encoder_cli.sh VTTT
VTTT=${1:?usage: encoder_cli.sh VTTT}
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
command -v ffmpeg >/dev/null || { echo "SKIP: no ffmpeg"; exit 77; }
tl_tmpdir enccli
export OMP_NUM_THREADS=1

# u32 LE at byte offset $2 of file $1
u32() { od -An -t u4 -j "$2" -N 4 "$1" | tr -d ' '; }
losses() { sed -n 's/.*"step":\([0-9]*\),"loss":\([^,]*\),.*/\1 \2/p' "$1/metrics.jsonl"; }

ffmpeg -loglevel error -y -f lavfi -i "testsrc2=size=64x64:rate=25" -t 2.4 -pix_fmt yuv420p "$T/a.mp4" || exit 1
ffmpeg -loglevel error -y -f lavfi -i "mandelbrot=size=64x64:rate=25" -t 1.6 -pix_fmt yuv420p "$T/b.mp4" || exit 1
"$VTTT" ingest video --size 16 --out "$T/frames" "$T/a.mp4" "$T/b.mp4" >/dev/null 2>&1 || { echo "ingest failed"; exit 1; }
"$VTTT" ingest video --size 24 --out "$T/frames24" "$T/b.mp4" >/dev/null 2>&1 || { echo "ingest failed"; exit 1; }
A=$(ls "$T"/frames/a-*.vfr) B=$(ls "$T"/frames/b-*.vfr)
RUN=(--frames "$T/frames" --channels 4 --groups 2 --levels 4,3 --batch 4 --val-frames 8 --lr 1e-2 --warmup 5
     --threads 1 --quiet)

# usage errors
expect_status 2 "no arguments" -- "$VTTT" encoder
expect_status 2 "unknown subcommand" "unknown command" -- "$VTTT" encoder frobnicate
expect_status 2 "train without --out" "required" -- "$VTTT" encoder train --frames "$T/frames"
expect_status 2 "bad --levels" "levels" -- "$VTTT" encoder train "${RUN[@]}" --out "$T/x" --levels 8,1
expect_status 2 "bad --steps" "--steps" -- "$VTTT" encoder train "${RUN[@]}" --out "$T/x" --steps 0
expect_status 1 "groups not dividing channels" "num_groups" -- "$VTTT" encoder train "${RUN[@]}" --out "$T/x" --groups 3
expect_status 1 "too many held-out frames" "val-frames" -- "$VTTT" encoder train "${RUN[@]}" --out "$T/x" --val-frames 500
expect_status 1 "frames of two sizes" "size" -- "$VTTT" encoder train "${RUN[@]}" --frames "$T/frames24" --out "$T/x"

# an uninterrupted run; the loss goes down
expect_status 0 "uninterrupted run" -- "$VTTT" encoder train "${RUN[@]}" --out "$T/full" --steps 60 --ckpt-every 10
[ "$(readlink "$T/full/latest")" = step-00000060 ] || fail "latest -> $(readlink "$T/full/latest")"
FIRST=$(losses "$T/full" | head -5 | awk '{s += $2} END {print s / NR}')
LAST=$(losses "$T/full" | tail -5 | awk '{s += $2} END {print s / NR}')
awk -v f="$FIRST" -v l="$LAST" 'BEGIN {exit !(l < 0.7 * f)}' || fail "training did not lower the loss: $FIRST -> $LAST"
echo "reconstruction loss: first 5 steps $FIRST, last 5 $LAST"
grep -q '"val_psnr"' "$T/full/metrics.jsonl" || fail "no validation line in metrics.jsonl"

# the same run killed with SIGKILL after its second checkpoint, then resumed
tl_bg "$T/cut.err" "$VTTT" encoder train "${RUN[@]}" --out "$T/cut" --steps 60 --ckpt-every 10
tl_sigkill_at "$T/cut/step-00000020"
echo "killed after step $(losses "$T/cut" | tail -1 | cut -d' ' -f1) (newest checkpoint $(readlink "$T/cut/latest"))"
expect_status 0 "resume after SIGKILL" -- "$VTTT" encoder train --out "$T/cut" --resume --threads 1 --quiet
for f in model.safetensors optimizer.safetensors config.json; do
    cmp -s "$T/full/latest/$f" "$T/cut/latest/$f" || fail "$f differs between the uninterrupted and the resumed run"
done
diff <(losses "$T/full") <(losses "$T/cut") >"$T/diff.txt" || { fail "loss lines differ"; head "$T/diff.txt"; }
expect_status 1 "new run over a run" "--resume" -- "$VTTT" encoder train "${RUN[@]}" --out "$T/cut" --steps 60
expect_status 1 "resume with other shards" "same data" -- "$VTTT" encoder train --out "$T/cut" --resume --frames "$A"

# SIGTERM: a checkpoint and exit 0
tl_bg "$T/term.err" "$VTTT" encoder train "${RUN[@]}" --out "$T/term" --steps 100000 --ckpt-every 0
tl_sigterm_after "$T/term/metrics.jsonl" 3 "$T/term.err"
[ -e "$T/term/latest/model.safetensors" ] || fail "SIGTERM: no checkpoint"

# eval: PSNR/SSIM and the grid
expect_status 0 "eval" -- "$VTTT" encoder eval --encoder "$T/full" --frames "$T/frames" --val-frames 8 --png "$T/grid.png"
grep -Eq "16 held-out frames of 2 shard\(s\): PSNR [0-9.]+ dB, SSIM [0-9.-]+" "$T/out.txt" || fail "eval output: $(cat "$T/out.txt")"
grep -Eq "token round trip: [0-9.]+% " "$T/out.txt" || fail "eval: no token round trip line: $(cat "$T/out.txt")"
[ "$(head -c 8 "$T/grid.png" | od -An -c | tr -d ' ')" = "211PNG\r\n032\n" ] || fail "grid.png is not a PNG"
[ "$(od -An -t u1 -j 16 -N 8 "$T/grid.png" | tr -d ' \n')" = "00012800032" ] || fail "grid is not 128x32 (8 frames of 16)"

# encode: the token shard contract
expect_status 0 "encode" -- "$VTTT" encoder encode --encoder "$T/full" --out "$T/tok" --val-frames 8 "$B" "$A"
SA=$(basename "$A" .vfr) SB=$(basename "$B" .vfr)
for f in "train_$SA" "val_$SA" "train_$SB" "val_$SB"; do [ -e "$T/tok/$f.bin" ] || fail "no $f.bin"; done
[ "$(u32 "$T/tok/train_$SA.bin" 0)" = 20240520 ] || fail "not a uint16 token shard"
[ "$(u32 "$T/tok/train_$SA.bin" 8)" = $(((60 - 8) * 4)) ] || fail "train_$SA holds $(u32 "$T/tok/train_$SA.bin" 8) tokens, want 52 frames x 4"
[ "$(u32 "$T/tok/val_$SB.bin" 8)" = $((8 * 4)) ] || fail "val_$SB holds $(u32 "$T/tok/val_$SB.bin" 8) tokens"
python3 - "$T/tok/meta.json" "$T/full" "$B" <<'EOF' || fail "meta.json"
import json, os, sys
m = json.load(open(sys.argv[1]))
assert m["kind"] == "video" and m["vocab_size"] == 12 and m["tokens_per_frame"] == 4, m
assert m["image_size"] == 16 and m["grid"] == 2 and m["fps"] == "25/1", m
assert os.path.isabs(m["encoder"]) and m["encoder"].startswith(os.path.realpath(sys.argv[2])), m["encoder"]
assert [s["shard"] for s in m["sources"]][0] == sys.argv[3], m["sources"]
assert [(s["train_frames"], s["val_frames"]) for s in m["sources"]] == [(32, 8), (52, 8)], m["sources"]
EOF
# decode: a frame shard and PNGs
expect_status 0 "decode to a shard" -- "$VTTT" encoder decode --encoder "$T/full" --tokens "$T/tok/val_$SA.bin" --out "$T/dec.vfr"
"$VTTT" frames info --shard "$T/dec.vfr" >"$T/info.txt" || fail "frames info on the decoded shard"
grep -q '"width": 16, "height": 16, "channels": 3, "fps_num": 25, "fps_den": 1, "frames": 8' "$T/info.txt" || fail "decoded shard: $(cat "$T/info.txt")"
expect_status 0 "decode to PNGs" -- "$VTTT" encoder decode --encoder "$T/full" --tokens "$T/tok/val_$SA.bin" --out "$T/decpng" --png
[ "$(ls "$T/decpng" | wc -l)" = 8 ] || fail "not 8 PNGs: $(ls "$T/decpng")"

# bad inputs
expect_status 1 "encode frames of another size" "24x24x3" -- "$VTTT" encoder encode --encoder "$T/full" --out "$T/t2" "$T/frames24"
cp "$A" "$T/trunc.vfr" && truncate -s -100 "$T/trunc.vfr"
expect_status 1 "encode a truncated shard" "trunc.vfr" -- "$VTTT" encoder encode --encoder "$T/full" --out "$T/t3" "$T/trunc.vfr"
cp "$A" "$T/badmagic.vfr" && printf 'XXXXXXX' | dd of="$T/badmagic.vfr" conv=notrunc status=none
expect_status 1 "encode a shard with a damaged header" "badmagic.vfr" -- "$VTTT" encoder encode --encoder "$T/full" --out "$T/t4" "$T/badmagic.vfr"
expect_status 1 "eval with a directory that is no tokenizer" "config.json" -- "$VTTT" encoder eval --encoder "$T/frames" --frames "$A"
printf '{"model_type": "vttt_fsq_tokenizer", "image_size": 16}' >"$T/badtok.json"
mkdir -p "$T/badtok" && cp "$T/badtok.json" "$T/badtok/config.json"
expect_status 1 "a config.json without keys" "missing" -- "$VTTT" encoder eval --encoder "$T/badtok" --frames "$A"
python3 -c "
import struct; open('$T/odd.bin','wb').write(struct.pack('<256i', 20240520, 1, 6, *[0]*253) + struct.pack('<6H', 1, 2, 3, 4, 5, 6))"
expect_status 1 "decode a shard of 6 tokens (not whole frames)" "whole number" -- "$VTTT" encoder decode --encoder "$T/full" --tokens "$T/odd.bin" --out "$T/odd.vfr"
python3 -c "
import struct; open('$T/big.bin','wb').write(struct.pack('<256i', 20240520, 1, 4, *[0]*253) + struct.pack('<4H', 1, 2, 300, 4))"
expect_status 1 "decode tokens outside the vocabulary" "outside" -- "$VTTT" encoder decode --encoder "$T/full" --tokens "$T/big.bin" --out "$T/big.vfr"
[ ! -e "$T/big.vfr" ] || fail "a failed decode left its output"

tl_finish "encoder_cli: all checks passed"
