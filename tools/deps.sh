#!/usr/bin/env bash
# Installs the Debian packages vttt builds and tests with (python3-pip:
# tools/video_corpus.sh downloads one PyPI wheel). The CUDA toolkit
# (nvcc, cuBLAS) comes with the machine's image; where nvcc is missing the
# CUDA backend is simply not built. clang, its libFuzzer runtime
# (libclang-rt-14-dev) and its OpenMP (libomp-14-dev) build the fuzz targets
# (tools/fuzz.sh); the main build uses gcc.
set -euo pipefail
SUDO=""
if [ "$(id -u)" != 0 ]; then SUDO=sudo; fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update
$SUDO apt-get install -y --no-install-recommends \
    build-essential cmake pkg-config \
    libopenblas-dev libopenblas-openmp-dev check libcjson-dev libpng-dev \
    libavformat-dev libavcodec-dev libavutil-dev libswscale-dev libavfilter-dev ffmpeg \
    libopenmpi-dev openmpi-bin \
    libmicrohttpd-dev libssl-dev curl \
    python3 python3-pip \
    clang libclang-rt-14-dev libomp-14-dev
