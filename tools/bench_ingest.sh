#!/usr/bin/env bash
# Ingest throughput and memory against the ffmpeg command line doing the
# same work, timed side by side:
#   ours:   vttt ingest video --fps R --size S SRC        (shard written to disk)
#   ffmpeg: ffmpeg -i SRC -vf fps=R,crop=...,scale=S:S -f rawvideo -pix_fmt rgb24 FILE
# on a 480p H.264 source (made here by ffmpeg), alternating the two REPEATS
# times; prints frames/s of each run, the ratio of each pair and the median
# ratio (target >= 0.9). Then the peak resident memory (/usr/bin/time -v) of
# both on a 10-minute 480p source (target < 200 MB).
# Usage: tools/bench_ingest.sh [path/to/vttt] (default build/vttt)
# Env: REPEATS (5), SECONDS_SRC (60), FPS (30), SIZE (64), KEEP=1 keeps the temp dir.
set -euo pipefail
VTTT=${1:-build/vttt}
REPEATS=${REPEATS:-5}
SECONDS_SRC=${SECONDS_SRC:-60}
FPS=${FPS:-30}
SIZE=${SIZE:-64}
[ -x "$VTTT" ] || { echo "no vttt binary at $VTTT (build first: tools/build.sh)"; exit 2; }
command -v ffmpeg >/dev/null || { echo "ffmpeg not found"; exit 2; }
T=$(mktemp -d "${TMPDIR:-/tmp}/vttt_bench_ingest_XXXXXX")
[ "${KEEP:-0}" = 1 ] || trap 'rm -rf "$T"' EXIT

echo "machine: $(nproc) cores, load average $(cut -d' ' -f1-3 /proc/loadavg) (measure when quiet)"
echo "ffmpeg: $(ffmpeg -version | head -1)"
SRC=$T/src480.mp4
ffmpeg -nostdin -loglevel error -y -f lavfi -i "testsrc2=size=640x480:rate=30:duration=$SECONDS_SRC" \
    -c:v libx264 -preset veryfast -pix_fmt yuv420p -g 60 "$SRC"
FRAMES=$(( SECONDS_SRC * FPS ))
echo "source: 640x480 H.264 (x264 veryfast), 30 fps, ${SECONDS_SRC} s; output ${SIZE}x${SIZE} at ${FPS} fps = $FRAMES frames"
VF="fps=$FPS,crop=min(iw\\,ih):min(iw\\,ih),scale=$SIZE:$SIZE"

calc() { awk "BEGIN { printf \"%.6f\", $1 }"; }
# Each run prints "wall_s cpu_s" (cpu = user + system).
timed() { /usr/bin/time -f '%e %U %S' -o "$T/time.txt" "$@" && awk '{ printf "%s %.3f", $1, $2 + $3 }' "$T/time.txt"; }
run_ours() {
    rm -rf "$T/out"
    timed "$VTTT" ingest video --out "$T/out" --fps "$FPS" --size "$SIZE" --quiet "$SRC"
}
run_ffmpeg() {
    timed ffmpeg -nostdin -loglevel error -y -i "$SRC" -vf "$VF" -f rawvideo -pix_fmt rgb24 "$T/ref.raw"
    rm -f "$T/ref.raw"
}

run_ours >/dev/null; run_ffmpeg >/dev/null   # warm the page cache
RATIOS=()
BEST_A=1e9; BEST_B=1e9; CPU_A=0; CPU_B=0
printf '%-4s %14s %16s %8s %12s %12s\n' run "vttt frames/s" "ffmpeg frames/s" ratio "vttt cpu s" "ffmpeg cpu s"
for i in $(seq 1 "$REPEATS"); do
    if [ $((i % 2)) = 1 ]; then a=$(run_ours); b=$(run_ffmpeg); else b=$(run_ffmpeg); a=$(run_ours); fi
    set -- $a; wa=$1; ca=$2
    set -- $b; wb=$1; cb=$2
    fa=$(calc "$FRAMES / $wa"); fb=$(calc "$FRAMES / $wb"); r=$(calc "$fa / $fb")
    RATIOS+=("$r")
    BEST_A=$(calc "$wa < $BEST_A ? $wa : $BEST_A"); BEST_B=$(calc "$wb < $BEST_B ? $wb : $BEST_B")
    CPU_A=$(calc "$CPU_A + $ca"); CPU_B=$(calc "$CPU_B + $cb")
    printf '%-4s %14.0f %16.0f %8.3f %12.2f %12.2f\n' "$i" "$fa" "$fb" "$r" "$ca" "$cb"
done
MEDIAN=$(printf '%s\n' "${RATIOS[@]}" | sort -g | awk '{a[NR]=$1} END {print (NR % 2) ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2}')
printf 'ratio vttt/ffmpeg frames/s: median of pairs %.3f, best run of each %.3f (%.0f vs %.0f frames/s); target >= 0.9\n' \
    "$MEDIAN" "$(calc "$BEST_B / $BEST_A")" "$(calc "$FRAMES / $BEST_A")" "$(calc "$FRAMES / $BEST_B")"
printf 'cpu time per frame: vttt %.3f ms, ffmpeg %.3f ms (ratio ffmpeg/vttt %.3f; load-independent)\n' \
    "$(calc "1000 * $CPU_A / ($REPEATS * $FRAMES)")" "$(calc "1000 * $CPU_B / ($REPEATS * $FRAMES)")" "$(calc "$CPU_B / $CPU_A")"

# Peak memory on a 10-minute source (the 60-s clip looped by stream copy).
LONG=$T/src480_10min.mp4
ONE=$T/one_min.mp4
ffmpeg -nostdin -loglevel error -y -f lavfi -i "testsrc2=size=640x480:rate=30:duration=60" \
    -c:v libx264 -preset ultrafast -pix_fmt yuv420p -g 60 "$ONE"
ffmpeg -nostdin -loglevel error -y -stream_loop 9 -i "$ONE" -c copy "$LONG"
echo "10-minute source: $(ffprobe -v error -show_entries format=duration -of csv=p=0 "$LONG") s"
rm -rf "$T/out"
MEM_OURS=$(/usr/bin/time -v "$VTTT" ingest video --out "$T/out" --fps "$FPS" --size "$SIZE" --quiet "$LONG" 2>&1 \
    | sed -n 's/.*Maximum resident set size (kbytes): //p')
NOUT=$("$VTTT" frames info --shard "$(ls "$T"/out/*.vfr)" | sed -n 's/.*"frames": \([0-9]*\).*/\1/p')
MEM_FF=$(/usr/bin/time -v ffmpeg -nostdin -loglevel error -y -i "$LONG" -vf "$VF" -f rawvideo -pix_fmt rgb24 /dev/null 2>&1 \
    | sed -n 's/.*Maximum resident set size (kbytes): //p')
printf 'peak RSS, 10-min 480p source (%s frames out): vttt %.1f MB, ffmpeg %.1f MB (target < 200 MB)\n' \
    "$NOUT" "$(calc "$MEM_OURS / 1024")" "$(calc "$MEM_FF / 1024")"
