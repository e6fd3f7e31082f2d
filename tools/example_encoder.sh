#!/usr/bin/env bash
# The frame tokenizer end to end: FFmpeg-generated natural-looking sources
# (a Mandelbrot zoom, Conway's life, testsrc2, a cellular automaton, moving
# gradients, a Sierpinski pan, and mixes of them) ingested at 64x64, a
# tokenizer trained on them with the last frames of each clip held out,
# evaluated on those frames and on two clips it never saw, and the frames
# encoded to token shards.
#
#   tools/example_encoder.sh [VTTT] [OUT] [extra `vttt encoder train` options]
#
# VTTT: the vttt binary (build/vttt); OUT: the working directory
# (example_encoder_out). ENC_SECONDS (default 20) sets each clip's length;
# ENC_STEPS, ENC_BATCH, ENC_CHANNELS, ENC_VAL the training run.
# Other scripts may source this file and call enc_make_sources OUT/src
# VTTT and enc_train ... themselves (see the functions below).
set -euo pipefail

# enc_make_sources DIR VTTT: the clips as DIR/videos/*.mp4 and their 64x64
# frame shards in DIR/frames (training) and DIR/unseen (never trained on).
enc_make_sources() {
    local dir=$1 vttt=$2 t=${ENC_SECONDS:-20}
    mkdir -p "$dir/videos" "$dir/videos_unseen"
    local ff=(ffmpeg -loglevel error -y)
    local v=$dir/videos
    "${ff[@]}" -f lavfi -i "mandelbrot=size=192x192:rate=25" -t "$t" -pix_fmt yuv420p "$v/mandelbrot.mp4"
    "${ff[@]}" -f lavfi -i "life=size=96x96:rate=25:mold=10:ratio=0.3:seed=7:life_color=#ffcc33:death_color=#3355aa:mold_color=#203040" \
        -t "$t" -vf "scale=192:192:flags=bicubic" -pix_fmt yuv420p "$v/life.mp4"
    "${ff[@]}" -f lavfi -i "testsrc2=size=192x192:rate=25" -t "$t" -pix_fmt yuv420p "$v/testsrc2.mp4"
    "${ff[@]}" -f lavfi -i "cellauto=rule=110:size=192x192:rate=25:scroll=1" -t "$t" \
        -vf "format=rgb24,colorchannelmixer=rr=0.9:gg=0.6:bb=0.3,gblur=sigma=0.7" -pix_fmt yuv420p "$v/cellauto.mp4"
    "${ff[@]}" -f lavfi -i "gradients=size=192x192:rate=25:speed=0.03:seed=3:n=5" -t "$t" -pix_fmt yuv420p "$v/gradients.mp4"
    "${ff[@]}" -f lavfi -i "mandelbrot=size=192x192:rate=25:start_x=-0.743643887:start_y=0.131825904:start_scale=2" \
        -f lavfi -i "testsrc2=size=192x192:rate=25" -t "$t" \
        -filter_complex "[0][1]blend=all_mode=softlight,hue=h=t*20" -pix_fmt yuv420p "$v/mix_mandel_testsrc.mp4"
    "${ff[@]}" -f lavfi -i "sierpinski=size=192x192:rate=25:type=carpet" -f lavfi -i "gradients=size=192x192:rate=25:seed=9:speed=0.05" \
        -t "$t" -filter_complex "[0][1]blend=all_mode=multiply" -pix_fmt yuv420p "$v/mix_sierpinski_gradients.mp4"
    # never trained on: other seeds, rules and regions
    local u=$dir/videos_unseen
    "${ff[@]}" -f lavfi -i "gradients=size=192x192:rate=25:speed=0.04:seed=42:n=3" -f lavfi \
        -i "life=size=96x96:rate=25:seed=99:ratio=0.2:life_color=#aaffaa" -t 8 \
        -filter_complex "[1]scale=192:192[l];[0][l]blend=all_mode=screen" -pix_fmt yuv420p "$u/unseen_gradients_life.mp4"
    "${ff[@]}" -f lavfi -i "mandelbrot=size=192x192:rate=25:start_x=-1.25066:start_y=0.02012:start_scale=1" -t 8 \
        -vf "hue=h=120" -pix_fmt yuv420p "$u/unseen_mandelbrot.mp4"
    "$vttt" ingest video --size 64 --out "$dir/frames" "$v"/*.mp4 >/dev/null
    "$vttt" ingest video --size 64 --out "$dir/unseen" "$u"/*.mp4 >/dev/null
}

# enc_train FRAMES RUN VTTT [options]: trains a tokenizer (nice'd) on the
# shards in FRAMES into RUN.
enc_train() {
    local frames=$1 run=$2 vttt=$3
    shift 3
    nice -n 10 "$vttt" encoder train --frames "$frames" --out "$run" --steps "${ENC_STEPS:-800}" \
        --batch "${ENC_BATCH:-16}" --channels "${ENC_CHANNELS:-32}" --val-frames "${ENC_VAL:-50}" \
        --lr 2e-3 --min-lr 1e-4 --warmup 50 --eval-every 200 --eval-frames 200 --ckpt-every 100 "$@"
}

if [[ "${BASH_SOURCE[0]}" == "$0" ]]; then
    VTTT=${1:-build/vttt}
    OUT=${2:-example_encoder_out}
    shift $(($# > 2 ? 2 : $#))
    mkdir -p "$OUT"
    [[ -d "$OUT/src/frames" ]] || enc_make_sources "$OUT/src" "$VTTT"
    enc_train "$OUT/src/frames" "$OUT/run" "$VTTT" "$@"
    "$VTTT" encoder eval --encoder "$OUT/run" --frames "$OUT/src/frames" --val-frames "${ENC_VAL:-50}" \
        --png "$OUT/grid.png"
    "$VTTT" encoder eval --encoder "$OUT/run" --frames "$OUT/src/unseen" --val-frames 0 --png "$OUT/grid_unseen.png"
    "$VTTT" encoder encode --encoder "$OUT/run" --out "$OUT/tokens" --val-frames "${ENC_VAL:-50}" "$OUT/src/frames"
fi
