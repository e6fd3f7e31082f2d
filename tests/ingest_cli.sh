#!/usr/bin/env bash
# `vttt ingest video` and `vttt frames` end to end: exit statuses, the
# manifest, frames equal to the ffmpeg command line's (ffmpeg's own psnr
# filter, >= 40 dB), PNG and raw dumps, --list and --shard, resuming after
# kill -9, sources that never deliver (FIFOs, devices, silent servers)
# ending within the timeouts. Usage: ingest_cli.sh path/to/vttt
set -u
VTTT=${1:?usage: ingest_cli.sh path/to/vttt}
# shellcheck source=tests/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
tl_tmpdir ingest_cli
mk() { ffmpeg -nostdin -hide_banner -loglevel error -y -f lavfi -i "$1" "${@:3}" "$T/$2" || { echo "ffmpeg failed"; exit 1; }; }

mk testsrc2=size=320x240:rate=25:duration=2 a.mp4 -c:v libx264 -threads 1
mk life=size=320x200:rate=20:mold=10 b.webm -t 2 -c:v libvpx-vp9 -deadline realtime -cpu-used 8
mk mandelbrot=size=320x240:rate=25 c.avi -t 2 -c:v mpeg4
mk testsrc2=size=320x240:rate=25:duration=6 long.mkv -c:v libx264 -threads 1 -preset ultrafast
yes 'not a video' | head -n 100 >"$T/text.mp4"

# usage errors: 2
expect_status 2 "no subcommand" -- "$VTTT" ingest
expect_status 2 "no --out" -- "$VTTT" ingest video "$T/a.mp4"
expect_status 2 "no sources" -- "$VTTT" ingest video --out "$T/o"
expect_status 2 "unknown option" -- "$VTTT" ingest video --out "$T/o" --frobnicate "$T/a.mp4"
expect_status 2 "bad --fps" -- "$VTTT" ingest video --out "$T/o" --fps abc "$T/a.mp4"
expect_status 2 "bad --shard" -- "$VTTT" ingest video --out "$T/o" --shard 2/2 "$T/a.mp4"
expect_status 0 "--help" -- "$VTTT" ingest video --help
expect_status 2 "frames without a subcommand" -- "$VTTT" frames
expect_status 2 "frames dump without --png/--raw" -- "$VTTT" frames dump --shard x.vfr
[ -e "$T/o" ] && fail "a usage error created the output directory"

# a clean job: 0, one manifest line per source
expect_status 0 "good sources" -- "$VTTT" ingest video --out "$T/o" --fps 10 --jobs 2 "$T/a.mp4" "$T/b.webm" "$T/c.avi"
[ "$(wc -l <"$T/o/manifest.jsonl")" = 3 ] || fail "manifest lines: $(wc -l <"$T/o/manifest.jsonl")"
grep -q 'ingest: 3/3 files done (0 failed' "$T/err.txt" || fail "no final progress line: $(cat "$T/err.txt")"
A=$(ls "$T"/o/a-*.vfr)

# the frames are the ffmpeg command line's
"$VTTT" frames dump --shard "$A" --raw >"$T/ours.raw" || fail "frames dump --raw"
ffmpeg -nostdin -loglevel error -i "$T/a.mp4" -vf 'fps=10,crop=min(iw\,ih):min(iw\,ih),scale=64:64' \
    -f rawvideo -pix_fmt rgb24 - >"$T/ref.raw"
[ "$(stat -c %s "$T/ours.raw")" = "$(stat -c %s "$T/ref.raw")" ] || fail "raw sizes differ"
PSNR=$(ffmpeg -nostdin -hide_banner -f rawvideo -pix_fmt rgb24 -s 64x64 -i "$T/ours.raw" \
    -f rawvideo -pix_fmt rgb24 -s 64x64 -i "$T/ref.raw" -lavfi psnr -f null - 2>&1 | sed -n 's/.*PSNR.* min:\([^ ]*\).*/\1/p')
case "$PSNR" in
    inf) ;;
    '') fail "no PSNR from ffmpeg" ;;
    *) awk -v p="$PSNR" 'BEGIN { exit !(p >= 40) }' || fail "PSNR $PSNR dB < 40" ;;
esac
"$VTTT" frames dump --shard "$A" --raw --start 5 --count 3 | cmp -s - <(tail -c +$((5 * 12288 + 1)) "$T/ours.raw" | head -c $((3 * 12288))) \
    || fail "raw window differs"
expect_status 0 "png dump" -- "$VTTT" frames dump --shard "$A" --png "$T/png" --start 2 --count 3
[ "$(ls "$T/png")" = "$(printf 'frame_000002.png\nframe_000003.png\nframe_000004.png')" ] || fail "png names: $(ls "$T/png")"
[ "$(head -c 24 "$T/png/frame_000002.png" | od -An -tx1 | tr -d ' \n')" = 89504e470d0a1a0a0000000d494844520000004000000040 ] \
    || fail "not a 64x64 PNG"
expect_status 2 "window past the end" -- "$VTTT" frames dump --shard "$A" --raw --start 19 --count 2
"$VTTT" frames info --shard "$A" | grep -q '"frames": 20' || fail "frames info"
expect_status 1 "not a shard" -- "$VTTT" frames info --shard "$T/a.mp4"

# damaged sources: 1, recorded with a reason, the others done
expect_status 1 "with a damaged source" -- "$VTTT" ingest video --out "$T/d" --fps 10 "$T/text.mp4" "$T/missing.mp4" "$T/a.mp4"
grep -q '"source":"'"$T"'/text.mp4".*"status":"error","error":"cannot open' "$T/d/manifest.jsonl" || fail "text.mp4 not recorded"
grep -q '"source":"'"$T"'/missing.mp4".*"status":"error"' "$T/d/manifest.jsonl" || fail "missing.mp4 not recorded"
grep -q '"source":"'"$T"'/a.mp4".*"status":"ok"' "$T/d/manifest.jsonl" || fail "a.mp4 not done"
expect_status 1 "rerun: failures still reported" -- "$VTTT" ingest video --out "$T/d" --fps 10 "$T/text.mp4" "$T/missing.mp4" "$T/a.mp4"
grep -q '3 skipped' "$T/err.txt" || fail "rerun did not skip: $(cat "$T/err.txt")"
[ "$(wc -l <"$T/d/manifest.jsonl")" = 3 ] || fail "rerun appended lines"

# --list and --shard i/N
printf '# sources\n%s\n\n  %s  \n%s\n' "$T/a.mp4" "$T/b.webm" "$T/c.avi" >"$T/list.txt"
expect_status 0 "shard 0/2" -- "$VTTT" ingest video --out "$T/s" --size 16 --list "$T/list.txt" --shard 0/2
expect_status 0 "shard 1/2" -- "$VTTT" ingest video --out "$T/s" --size 16 --list "$T/list.txt" --shard 1/2
[ "$(cat "$T"/s/manifest-0-of-2.jsonl | wc -l) $(cat "$T"/s/manifest-1-of-2.jsonl | wc -l)" = "2 1" ] || fail "shard split"
OMPI_COMM_WORLD_RANK=1 OMPI_COMM_WORLD_SIZE=2 expect_status 0 "shard mpi (rank 1 of 2)" -- "$VTTT" ingest video --out "$T/s" --size 16 --list "$T/list.txt" --shard mpi
grep -q '1/1 files done (0 failed, 1 skipped' "$T/err.txt" || fail "--shard mpi: $(cat "$T/err.txt")"
expect_status 2 "shard mpi outside mpirun" -- env -u OMPI_COMM_WORLD_RANK -u PMI_RANK -u SLURM_PROCID "$VTTT" ingest video --out "$T/s" --list "$T/list.txt" --shard mpi
expect_status 0 "whole list after the shards" -- "$VTTT" ingest video --out "$T/s" --size 16 --list - <"$T/list.txt"
grep -q '3 skipped' "$T/err.txt" || fail "--list - after shards did not skip"

# kill -9 mid-job, then the same command: finished sources skipped, the rest done
for i in 0 1 2 3 4 5; do cp "$T/long.mkv" "$T/long$i.mkv"; done
"$VTTT" ingest video --out "$T/k" --fps 25 --quiet "$T"/long[0-5].mkv 2>/dev/null &
PID=$!
for _ in $(seq 1 3000); do
    n=$(cat "$T/k/manifest.jsonl" 2>/dev/null | wc -l)
    if [ "$n" -ge 1 ] && ls "$T/k" | grep -q '\.tmp$'; then break; fi
    sleep 0.01
done
kill -9 $PID 2>/dev/null
wait $PID 2>/dev/null
DONE=$(cat "$T/k/manifest.jsonl" 2>/dev/null | wc -l)
if [ "$DONE" -ge 6 ]; then
    echo "note: the job finished before it could be killed; resume check is partial"
fi
expect_status 0 "resume after kill -9" -- "$VTTT" ingest video --out "$T/k" --fps 25 "$T"/long[0-5].mkv
grep -q "$DONE skipped" "$T/err.txt" || fail "resume did not skip the $DONE finished sources: $(cat "$T/err.txt")"
[ "$(grep -c '"status":"ok"' "$T/k/manifest.jsonl")" = 6 ] || fail "not all sources ok after resume"
ls "$T/k" | grep -q '\.tmp$' && fail "a .tmp shard is left after resume"
for s in "$T"/k/*.vfr; do
    "$VTTT" frames info --shard "$s" | grep -q '"frames": 150' || fail "$s is not complete"
done

# sources that never deliver: a FIFO nobody writes to, one whose writer
# stops, character devices, a server that accepts and never answers, one
# that stops part way (loopback only). Each ends with its own manifest
# line within the timeouts, the good source beside them is done, and the
# whole job runs under `timeout` so that a hang fails instead of hanging CI.
mkfifo "$T/silent.fifo" "$T/stops.fifo"
mk testsrc2=size=160x120:rate=10:duration=3 stream.mkv -c:v mpeg4
(head -c 4000 "$T/stream.mkv"; exec sleep 30) >"$T/stops.fifo" &
WRITER=$!
python3 "$(dirname "${BASH_SOURCE[0]}")/stall_server.py" "$T/stream.mkv" "$T/port" &
SERVER=$!
tl_wait_for "$T/port" 10 || fail "the stalling server did not start"
URL=http://127.0.0.1:$(cat "$T/port")
SRC=("$T/silent.fifo" "$T/stops.fifo" /dev/zero /dev/null "$URL/silent.mkv" "$URL/stops.mkv" "$T/a.mp4")
expect_status 1 "sources that never deliver" -- timeout 60 "$VTTT" ingest video --out "$T/h" --fps 10 --jobs 3 \
    --open-timeout 2 --stall-timeout 2 "${SRC[@]}"
kill "$WRITER" "$SERVER" 2>/dev/null
wait "$WRITER" "$SERVER" 2>/dev/null
[ "$(wc -l <"$T/h/manifest.jsonl")" = 7 ] || fail "not one manifest line for each of 7 sources"
line() { grep -F "\"source\":\"$1\"" "$T/h/manifest.jsonl"; }
for want in "$T/silent.fifo|timed out opening" "$T/stops.fifo|stalled: no data" "/dev/zero|not a regular file or stream" \
    "/dev/null|not a regular file or stream" "$URL/silent.mkv|timed out opening" "$URL/stops.mkv|stalled: no data"; do
    src=${want%%|*}
    line "$src" | grep -q "\"status\":\"error\".*${want#*|}" || fail "$src: not '${want#*|}': $(line "$src")"
done
line "$T/a.mp4" | grep -q '"status":"ok"' || fail "the good source beside them: $(line "$T/a.mp4")"
expect_status 2 "bad --stall-timeout" -- "$VTTT" ingest video --out "$T/o" --stall-timeout -1 "$T/a.mp4"

tl_finish "ingest_cli: all checks passed"
