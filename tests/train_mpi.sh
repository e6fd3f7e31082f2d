#!/usr/bin/env bash
# Data-parallel training over MPI: `mpirun -np 2 vttt train` gives the same
# losses, validation losses and weights as one process with the same global
# batch (float tolerance), with and without gradient accumulation; and a
# killed two-rank run resumes where it stopped. Exits 77 (skipped) where
# mpirun is missing. Usage: train_mpi.sh path/to/vttt
set -u
VTTT=${1:?usage: train_mpi.sh path/to/vttt}
if ! command -v mpirun >/dev/null 2>&1; then
    echo "SKIP: mpirun not found (apt-get install openmpi-bin libopenmpi-dev, then rebuild)"
    exit 77
fi
# shellcheck source=tests/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
tl_tmpdir train_mpi
# as root Open MPI wants to be told; oversubscribe: the test may have fewer cores than ranks
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
MPIRUN=(mpirun -np 2 --oversubscribe)
# sanitizer builds: Open MPI keeps allocations to the end that LeakSanitizer
# reports (the same code runs leak-checked in one process in train_cli.sh)
export ASAN_OPTIONS="${ASAN_OPTIONS:+$ASAN_OPTIONS:}detect_leaks=0"

"$VTTT" textgen --bytes 200000 --seed 4 --out "$T/corpus.txt" || exit 1
"$VTTT" tokenizer train --vocab-size 300 --out "$T/tok.bpe" "$T/corpus.txt" >/dev/null 2>&1 || exit 1
"$VTTT" ingest text --tokenizer "$T/tok.bpe" --out "$T/data" --val-fraction 0.05 "$T/corpus.txt" >/dev/null 2>&1 ||
    exit 1
RUN=(--data "$T/data" --val "$T/data" --model-preset test --steps 12 --batch 4 --seq 64 --warmup 3 --seed 2
    --eval-every 6 --eval-seqs 6 --ckpt-every 6 --threads 1 --quiet)

# close FILE_A FILE_B KEY: the KEY values of two metrics files agree to 1e-4 (relative)
close() {
    paste -d' ' <(grep -o "\"$3\":[-0-9.e+]*" "$1" | cut -d: -f2) <(grep -o "\"$3\":[-0-9.e+]*" "$2" | cut -d: -f2) |
        awk -v what="$3" '{ n++; d = $1 - $2; if (d < 0) d = -d; s = $1 < 0 ? -$1 : $1;
                            if (d > 1e-4 * s + 1e-6) { print what " line " n ": " $1 " vs " $2; bad = 1 } }
                          END { if (n == 0) { print "no " what " values"; exit 1 } exit bad }'
}

"$VTTT" train "${RUN[@]}" --out "$T/one" --comm single || fail "one process"
if ! "${MPIRUN[@]}" "$VTTT" train "${RUN[@]}" --out "$T/two" >"$T/two.log" 2>&1; then
    fail "mpirun -np 2"
    head -20 "$T/two.log"
fi
"${MPIRUN[@]}" "$VTTT" train "${RUN[@]}" --out "$T/two_accum" --accum 2 >"$T/accum.log" 2>&1 ||
    { fail "mpirun -np 2 --accum 2"; head -20 "$T/accum.log"; }
for run in two two_accum; do
    [ -s "$T/$run/metrics.jsonl" ] || { fail "$run: no metrics"; continue; }
    close "$T/one/metrics.jsonl" "$T/$run/metrics.jsonl" loss || fail "$run: training losses differ from one process"
    close "$T/one/metrics.jsonl" "$T/$run/metrics.jsonl" val_loss || fail "$run: validation losses differ"
    [ "$(grep -c '"loss"' "$T/$run/metrics.jsonl")" = 12 ] || fail "$run: not 12 loss lines (rank 0 writes alone)"
done

# weights: compare as float32 arrays (same layout; the header is identical)
A="$T/one/latest/model.safetensors" B="$T/two/latest/model.safetensors"
if [ -s "$A" ] && [ -s "$B" ]; then
    HDR=$((8 + $(od -An -tu8 -N8 "$A" | tr -d ' ')))
    cmp -s <(head -c "$HDR" "$A") <(head -c "$HDR" "$B") || fail "model headers differ"
    paste -d' ' <(tail -c +$((HDR + 1)) "$A" | od -An -v -tf4 -w4) <(tail -c +$((HDR + 1)) "$B" | od -An -v -tf4 -w4) |
        awk '{ d = $1 - $2; if (d < 0) d = -d; if (d > m) m = d } END { if (m > 1e-4) { print "max weight difference " m; exit 1 } }' ||
        fail "weights of 1 and 2 processes differ"
fi

# a two-rank run killed part way resumes (with two ranks) to the same end
"${MPIRUN[@]}" "$VTTT" train "${RUN[@]}" --out "$T/cut" --steps 12 >"$T/cut.log" 2>&1 &
PID=$!
i=0
while [ ! -e "$T/cut/step-00000006" ] && [ $i -lt 6000 ]; do sleep 0.01; i=$((i + 1)); done
# SIGKILL the ranks (mpirun's children, by id); mpirun then ends the job
children() { # the ids of $1's child processes, from /proc/ID/stat ("ID (comm) state ppid ...")
    local s line state ppid
    for s in /proc/[0-9]*/stat; do
        line=$(cat "$s" 2>/dev/null) || continue
        read -r state ppid _ <<<"${line##*) }"
        [ "$ppid" = "$1" ] && echo "${line%% *}"
    done
}
for c in $(children "$PID"); do kill -9 "$c" 2>/dev/null; done
wait "$PID" 2>/dev/null
[ -e "$T/cut/step-00000012" ] && echo "note: the two-rank run finished before it could be killed"
"${MPIRUN[@]}" "$VTTT" train --out "$T/cut" --resume --threads 1 --quiet >"$T/resume.log" 2>&1 ||
    { fail "resume of a two-rank run"; head -20 "$T/resume.log"; }
cmp -s "$T/two/latest/model.safetensors" "$T/cut/latest/model.safetensors" ||
    fail "the resumed two-rank run differs from the uninterrupted one"

tl_finish "train_mpi: all passed"
