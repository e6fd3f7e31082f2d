#!/usr/bin/env bash
# Installs the dependencies, builds vttt and fetches the example's real
# clip (python3-imageio's cockatoo.mp4, by `apt-get download`; cached).
set -euo pipefail
cd "$(dirname "$0")/.."
bash tools/deps.sh
bash tools/build.sh
bash tools/video_corpus.sh --clip cockatoo >/dev/null
