#!/usr/bin/env bash
# One-shot GPU check for a session that is lent a GPU: builds vttt with
# CUDA, runs the CUDA tests, every CUDA bench (fused kernels, whole layer,
# projection GEMM; 125m layer shape, TTT-Linear and TTT-MLP, prefill and
# training step, contexts 2k..64k) and the straightforward PyTorch layer
# (tools/ttt_torch_bench.py) side by side, all within one deadline
# (default 480 s, the 8 minutes of one device call). Every output
# goes under $OUT (default ./gpu_out); SUMMARY.txt lists each step's exit
# status and time, and a step that runs out of time or fails does not stop
# the next ones.
#
#   OUT=/some/dir bash tools/gpu_check.sh
# Settings (environment): DEADLINE_S (480), CONTEXTS (2048,...,65536),
# MODEL_CONTEXTS (2048,8192: the whole 125m model's training step),
# REPS (3), TORCH_REPS (1), CUDA_ARCH (90: H100/H200), JOBS (nproc),
# BUILD (build-gpu).
set -u
cd "$(dirname "$0")/.."
OUT=${OUT:-$PWD/gpu_out}
DEADLINE_S=${DEADLINE_S:-480}
CONTEXTS=${CONTEXTS:-2048,4096,8192,16384,32768,65536}
MODEL_CONTEXTS=${MODEL_CONTEXTS:-2048,8192}
REPS=${REPS:-3}
TORCH_REPS=${TORCH_REPS:-1}
CUDA_ARCH=${CUDA_ARCH:-90}
JOBS=${JOBS:-$(nproc)}
BUILD=${BUILD:-build-gpu}
mkdir -p "$OUT"
START=$(date +%s)
SUMMARY=$OUT/SUMMARY.txt
: >"$SUMMARY"

left() { echo $((DEADLINE_S - ($(date +%s) - START))); }

# step NAME CAP_S CMD...: runs CMD with stdout+stderr in $OUT/NAME.log,
# for at most min(CAP_S, time left) seconds; records status and time.
step() {
    local name=$1 cap=$2
    shift 2
    local t=$(left)
    ((cap < t)) || cap=$t
    if ((cap < 5)); then
        echo "$name: skipped (deadline)" | tee -a "$SUMMARY"
        return 0
    fi
    local t0=$(date +%s)
    timeout --kill-after=5 "$cap" "$@" >"$OUT/$name.log" 2>&1
    local rc=$?
    local msg="exit $rc"
    ((rc == 124 || rc == 137)) && msg="timed out after ${cap}s (exit $rc)"
    echo "$name: $msg in $(($(date +%s) - t0))s" | tee -a "$SUMMARY"
    return 0
}

{
    date -u
    nvidia-smi || true
    nvcc --version || true
    cmake --version | head -1
    git log --oneline -1 2>/dev/null || true
} >"$OUT/machine.txt" 2>&1

step configure 60 cmake -S . -B "$BUILD" -DCMAKE_BUILD_TYPE=Release -DVTTT_CUDA=ON -DVTTT_WERROR=ON \
    -DCMAKE_CUDA_ARCHITECTURES="$CUDA_ARCH"
step build 200 cmake --build "$BUILD" -j"$JOBS" --target vttt test_cuda test_ttt_cuda
# the tests: op by op (test_cuda); fused kernels, the device layer and a
# model's training step against the CPU (test_ttt_cuda)
step test_cuda 40 "$BUILD/tests/test_cuda"
step test_ttt_cuda 60 "$BUILD/tests/test_ttt_cuda"
# the benches, each part checked against the CPU before it is timed
step bench_gemm 20 "$BUILD/vttt" bench cuda --parts gemm --contexts "$CONTEXTS" --reps "$REPS"
step bench_kernels 80 "$BUILD/vttt" bench cuda --parts kernels --contexts "$CONTEXTS" --reps "$REPS"
step bench_layer 80 "$BUILD/vttt" bench cuda --parts layer --contexts "$CONTEXTS" --reps "$REPS"
step bench_model 60 "$BUILD/vttt" bench cuda --parts model --contexts "$MODEL_CONTEXTS" --reps 2
step torch_bench 120 /usr/bin/python3 -u tools/ttt_torch_bench.py --contexts "$CONTEXTS" --reps "$TORCH_REPS"
echo "total $(($(date +%s) - START))s of ${DEADLINE_S}s" | tee -a "$SUMMARY"
