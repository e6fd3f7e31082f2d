#!/usr/bin/env bash
# Installs the dependencies and builds vttt.
set -euo pipefail
cd "$(dirname "$0")/.."
bash tools/deps.sh
bash tools/build.sh
