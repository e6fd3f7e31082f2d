#!/usr/bin/env bash
# Builds the libFuzzer targets (tests/fuzz/fuzz_*.c) with clang, ASan and
# UBSan into build-fuzz/, then fuzzes each for SECONDS (default 60), one
# after the other, on a copy of its committed corpus (build-fuzz/corpus/<target>,
# kept between runs) plus its regression inputs. Prints the executions per
# target; fails on any crash, leak, sanitizer report or failed fuzz check,
# leaving the input under build-fuzz/crashes/<target>/ and the log under
# build-fuzz/logs/<target>.log.
#   tools/fuzz.sh [SECONDS] [TARGET...]
# Environment: FUZZ_BUILD (the build directory, build-fuzz), FUZZ_CC (clang),
# FUZZ_JOBS (build jobs, nproc), FUZZ_ARGS (more libFuzzer flags, e.g.
# -max_len=65536).
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-60}
shift || true
if [ $# -gt 0 ]; then
    targets=("$@")
else
    targets=()
    for f in tests/fuzz/fuzz_*.c; do
        t=${f#tests/fuzz/fuzz_}
        targets+=("${t%.c}")
    done
fi
start=$(date +%s)
B=${FUZZ_BUILD:-build-fuzz}
mkdir -p "$B"/logs
if ! { CC=${FUZZ_CC:-clang} cmake -S . -B "$B" -DVTTT_FUZZ=ON -DVTTT_CUDA=OFF -DVTTT_NATIVE=OFF \
        -DCMAKE_BUILD_TYPE=Fuzz -DCMAKE_C_FLAGS_FUZZ="-O1 -gline-tables-only -Wno-pass-failed" &&
       cmake --build "$B" -j"${FUZZ_JOBS:-$(nproc)}" $(printf -- '--target fuzz_%s ' "${targets[@]}"); } \
       >"$B"/logs/build.log 2>&1; then
    tail -30 "$B"/logs/build.log >&2
    echo "fuzz: the build failed ($B/logs/build.log)" >&2
    exit 1
fi
echo "fuzz: built ${#targets[@]} targets in $(($(date +%s) - start)) s; ${secs} s each"

export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=0}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
export OMP_NUM_THREADS=1 OMP_WAIT_POLICY=passive
# the targets write their inputs to scratch files: in memory where possible,
# in a directory of this run's that goes with it (a crashed target leaves its own)
base=${TMPDIR:-/tmp}
if [ -z "${TMPDIR:-}" ] && [ -d /dev/shm ] && [ -w /dev/shm ]; then base=/dev/shm; fi
TMPDIR=$(mktemp -d "$base/vttt-fuzz.XXXXXX")
export TMPDIR
trap 'rm -rf "$TMPDIR"' EXIT
failed=()
for t in "${targets[@]}"; do
    corpus="$B"/corpus/$t crashes="$B"/crashes/$t log="$B"/logs/$t.log
    mkdir -p "$corpus" "$crashes"
    cp -n tests/fuzz/corpus/"$t"/* "$corpus"/ 2>/dev/null || true
    extra=()
    [ -d tests/fuzz/regressions/"$t" ] && extra+=(tests/fuzz/regressions/"$t")
    rc=0
    # shellcheck disable=SC2086
    "$B"/tests/fuzz/fuzz_"$t" -max_total_time="$secs" -timeout=20 -rss_limit_mb=2048 \
        -print_final_stats=1 -artifact_prefix="$crashes"/ ${FUZZ_ARGS:-} "$corpus" "${extra[@]}" >"$log" 2>&1 || rc=$?
    execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
    cov=$(grep -o 'cov: [0-9]*' "$log" | tail -1 || true)
    if [ "$rc" != 0 ] || grep -q -E 'ERROR: (AddressSanitizer|LeakSanitizer)|runtime error:|fuzz check failed' "$log"; then
        failed+=("$t")
        printf 'fuzz: %-16s FAILED (exit %s) after %s executions; see %s and %s/\n' "$t" "$rc" "${execs:-?}" "$log" "$crashes"
        grep -m1 -E 'ERROR:|runtime error:|fuzz check failed|SUMMARY' "$log" | sed 's/^/    /' || true
    else
        printf 'fuzz: %-16s %10s executions  %s  corpus %s inputs\n' "$t" "${execs:-?}" "$cov" "$(ls "$corpus" | wc -l)"
    fi
done
echo "fuzz: done in $(($(date +%s) - start)) s"
if [ ${#failed[@]} -gt 0 ]; then
    echo "fuzz: crashes in: ${failed[*]}" >&2
    exit 1
fi
