#!/usr/bin/env bash
# `vttt serve` as a process, spoken to with curl: usage errors (2), a
# empty or missing --snapshot-key files (2), non-loopback address without a token and a model that cannot load (1),
# then a live daemon: /health, the bearer token, opening a stream, frames
# as PNG and raw rgb24 with PNG / JSON / raw answers, a wrong-sized frame
# (422), strict HTTP (NUL in the path, a signed number, a chunked body), a
# trickling client closed at --request-deadline, /metrics, snapshot and
# restore, the same tokens as `vttt predict`
# for the frames of a video, DELETE, and SIGTERM -> exit 0.
# Usage: serve_cli.sh path/to/vttt path/to/serve_cli_helper
set -u
VTTT=${1:?usage: serve_cli.sh path/to/vttt path/to/serve_cli_helper}
HELPER=${2:?usage: serve_cli.sh path/to/vttt path/to/serve_cli_helper}
# shellcheck source=tests/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
tl_tmpdir serve_cli
"$HELPER" "$T" || { echo "serve_cli_helper failed"; exit 1; }
M=(--model "$T/model" --encoder "$T/enc")

# no --model: the shipped model for --size, and a clear refusal where there is none
expect_status 2 "no shipped model" "no shipped video model" -- env VTTT_MODELS="$T/nomodels" "$VTTT" serve --listen 127.0.0.1:0
expect_status 2 "no shipped model of that size" "frames of 96" -- "$VTTT" serve --size 96 --listen 127.0.0.1:0
expect_status 2 "unknown option" "unknown option" -- "$VTTT" serve "${M[@]}" --frobnicate 1
expect_status 2 "bad --max-streams" "max-streams" -- "$VTTT" serve "${M[@]}" --max-streams zero
expect_status 2 "bad --max-connections" "max-connections" -- "$VTTT" serve "${M[@]}" --max-connections 0
expect_status 2 "bad --request-deadline" "request-deadline" -- "$VTTT" serve "${M[@]}" --request-deadline -1
expect_status 0 "--help" -- "$VTTT" serve --help
: >"$T/empty.key"
expect_status 2 "empty snapshot key file" "holds 0 bytes" -- "$VTTT" serve "${M[@]}" --snapshot-key "$T/empty.key"
expect_status 2 "missing snapshot key file" "cannot read the snapshot key" -- "$VTTT" serve "${M[@]}" --snapshot-key "$T/none.key"
expect_status 1 "non-loopback without a token" "token" -- "$VTTT" serve "${M[@]}" --listen 0.0.0.0:0
expect_status 1 "bad listen address" "listen address" -- "$VTTT" serve "${M[@]}" --listen nowhere
expect_status 1 "model that cannot load" "cannot load" -- "$VTTT" serve --model "$T/none" --encoder "$T/enc" --listen 127.0.0.1:0

"$VTTT" serve "${M[@]}" --listen 127.0.0.1:0 --token s3cret --max-body 100000 --request-deadline 2 \
    --max-connections 64 --max-connections-per-ip 8 2>"$T/serve.log" &
PID=$!
PORT=
for _ in $(seq 1 300); do
    PORT=$(sed -n 's/.*ready on port \([0-9]*\).*/\1/p' "$T/serve.log")
    [ -n "$PORT" ] && break
    kill -0 "$PID" 2>/dev/null || break
    sleep 0.1
done
[ -n "$PORT" ] || { fail "the daemon did not get ready"; cat "$T/serve.log"; tl_finish ""; }
URL=http://127.0.0.1:$PORT
AUTH="Authorization: Bearer s3cret"

# code METHOD PATH [curl options...]: the HTTP status; the body in $T/body
code() {
    local m=$1 p=$2
    shift 2
    curl -s -o "$T/body" -w '%{http_code}' -X "$m" "$@" "$URL$p"
}
expect_code() {
    local want=$1 what=$2
    shift 2
    local got
    got=$(code "$@")
    [ "$got" = "$want" ] || { fail "$what: HTTP $got, want $want: $(head -c 300 "$T/body")"; }
}

expect_code 200 "health" GET /health
grep -q '"status":"ok"' "$T/body" || fail "health body: $(cat "$T/body")"
expect_code 401 "open without the token" POST /v1/streams
expect_code 201 "open" POST /v1/streams -H "$AUTH"
ID=$(sed -n 's/.*"id":"\([0-9a-f]*\)".*/\1/p' "$T/body")
[ ${#ID} = 16 ] || fail "no stream id in $(cat "$T/body")"

expect_code 200 "PNG frame" POST "/v1/streams/$ID/frames" -H "$AUTH" -H 'Content-Type: image/png' --data-binary @"$T/frame.png"
[ "$(head -c 4 "$T/body" | tail -c 3)" = PNG ] || fail "the answer is not a PNG"
expect_code 200 "PNG frame, JSON answer" POST "/v1/streams/$ID/frames?format=json&horizon=2" -H "$AUTH" \
    -H 'Content-Type: image/png' --data-binary @"$T/frame.png"
grep -q '"tokens":\[\[' "$T/body" || fail "no tokens in $(head -c 200 "$T/body")"
expect_code 200 "raw frame, raw answer" POST "/v1/streams/$ID/frames?width=32&height=32&format=rgb24" -H "$AUTH" \
    -H 'Content-Type: application/octet-stream' --data-binary @"$T/frame.rgb"
[ "$(stat -c %s "$T/body")" = 3072 ] || fail "raw answer of $(stat -c %s "$T/body") bytes, want 3072"
expect_code 422 "16x16 frame" POST "/v1/streams/$ID/frames" -H "$AUTH" -H 'Content-Type: image/png' --data-binary @"$T/small.png"
grep -q '32x32' "$T/body" || fail "the 422 does not name the size: $(cat "$T/body")"
head -c 200000 /dev/zero >"$T/big"
expect_code 413 "huge body" POST "/v1/streams/$ID/frames" -H "$AUTH" --data-binary @"$T/big"
expect_code 404 "unknown stream" GET /v1/streams/0000000000000000 -H "$AUTH"
expect_code 400 "NUL in the path" GET '/health%00' --path-as-is
expect_code 400 "sign in a number" POST "/v1/streams/$ID/frames?horizon=+2" -H "$AUTH" -H 'Content-Type: image/png' \
    --data-binary @"$T/frame.png"
expect_code 411 "chunked body" POST "/v1/streams/$ID/frames" -H "$AUTH" -H 'Content-Type: image/png' \
    -H 'Transfer-Encoding: chunked' --data-binary @"$T/frame.png"
# A client that sends one header line every half second never finishes its
# request: --request-deadline 2 closes it (the daemon's end of file).
(
    trap '' PIPE
    exec 3<>"/dev/tcp/127.0.0.1/$PORT" || exit 1
    printf 'GET /health HTTP/1.1\r\nHost: x\r\n' >&3
    for i in $(seq 1 10); do sleep 0.5; printf 'X-Slow-%d: 1\r\n' "$i" >&3 2>/dev/null || break; done
    timeout 2 cat <&3 >/dev/null 2>&1
    [ $? != 124 ]   # end of file or reset, not still open
) || fail "a trickling connection was not closed by --request-deadline"
expect_code 200 "metrics after the trickle" GET /metrics -H "$AUTH"
grep -q '^vttt_connections_cut_total 1$' "$T/body" || fail "metrics: no vttt_connections_cut_total 1"

expect_code 200 "stream info" GET "/v1/streams/$ID" -H "$AUTH"
grep -q '"frames":3' "$T/body" || fail "info: $(cat "$T/body")"
expect_code 200 "metrics" GET /metrics -H "$AUTH"
grep -q '^vttt_frames_total 3$' "$T/body" || fail "metrics: no vttt_frames_total 3"
grep -q '^vttt_http_errors_total{code="422"} 1$' "$T/body" || fail "metrics: no 422 counted"

expect_code 200 "snapshot" POST "/v1/streams/$ID/snapshot" -H "$AUTH"
cp "$T/body" "$T/snap"
expect_code 201 "restore" POST /v1/streams -H "$AUTH" -H 'Content-Type: application/octet-stream' --data-binary @"$T/snap"
grep -q '"frames":3' "$T/body" || fail "restored stream: $(cat "$T/body")"
ID2=$(sed -n 's/.*"id":"\([0-9a-f]*\)".*/\1/p' "$T/body")
code POST "/v1/streams/$ID/frames?format=json" -H "$AUTH" --data-binary @"$T/frame.png" -H 'Content-Type: image/png' >/dev/null
cp "$T/body" "$T/a.json"
code POST "/v1/streams/$ID2/frames?format=json" -H "$AUTH" --data-binary @"$T/frame.png" -H 'Content-Type: image/png' >/dev/null
sed "s/$ID2/$ID/" "$T/body" | cmp -s - "$T/a.json" || fail "the restored stream predicts differently"
# The daemon and `vttt predict` predict the same tokens for the same video:
# predict's tokens.txt against the frames of that video (decoded by
# `vttt ingest video` as predict decodes them) posted one by one as raw
# rgb24 to a new stream.
if command -v ffmpeg >/dev/null; then
    ffmpeg -v error -f lavfi -i "testsrc2=size=32x32:rate=10" -t 1.2 -pix_fmt yuv420p "$T/clip.mp4" ||
        fail "ffmpeg could not make the clip"
    "$VTTT" predict "${M[@]}" --video "$T/clip.mp4" --out "$T/pred" --no-video --quiet ||
        fail "vttt predict failed"
    "$VTTT" ingest video --size 32 --out "$T/clipframes" "$T/clip.mp4" >/dev/null || fail "ingest failed"
    SHARD=$(ls "$T"/clipframes/*.vfr)
    NF=$(wc -l <"$T/pred/tokens.txt")
    [ "$NF" -ge 10 ] || fail "predict wrote $NF token lines, want >= 10"
    expect_code 201 "open for predict" POST /v1/streams -H "$AUTH"
    IDP=$(sed -n 's/.*"id":"\([0-9a-f]*\)".*/\1/p' "$T/body")
    for t in $(seq 0 $((NF - 1))); do
        "$VTTT" frames dump --shard "$SHARD" --raw --start "$t" --count 1 >"$T/f.rgb"
        code POST "/v1/streams/$IDP/frames?width=32&height=32&format=json" -H "$AUTH" \
            -H 'Content-Type: application/octet-stream' --data-binary @"$T/f.rgb" >/dev/null
        got=$(sed -n 's/.*"tokens":\[\[\([0-9,]*\)\]\].*/\1/p' "$T/body" | tr ',' ' ')
        want=$(sed -n "$((t + 1))p" "$T/pred/tokens.txt" | cut -d' ' -f2-)
        [ -n "$got" ] && [ "$got" = "$want" ] || { fail "frame $t: daemon tokens differ from vttt predict's"; break; }
    done
fi
expect_code 200 "delete" DELETE "/v1/streams/$ID" -H "$AUTH"
expect_code 404 "deleted" GET "/v1/streams/$ID" -H "$AUTH"

kill -TERM "$PID"
wait "$PID"
st=$?
[ "$st" = 0 ] || { fail "SIGTERM: exit $st, want 0"; tail -5 "$T/serve.log"; }
grep -q "stopped" "$T/serve.log" || fail "no 'stopped' in the log"
curl -s -o /dev/null "$URL/health" && fail "still answering after SIGTERM"
tl_finish "serve_cli: all checks passed"
