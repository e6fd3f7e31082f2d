#!/usr/bin/env bash
# Configures and builds vttt into build/ (warnings are errors).
set -euo pipefail
cd "$(dirname "$0")/.."
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release -DVTTT_WERROR=ON "$@"
cmake --build build -j"$(nproc)"
