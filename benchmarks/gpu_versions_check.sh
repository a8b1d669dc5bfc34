#!/usr/bin/env bash
# Proves `python -m benchmarks.gpu --cpu` on the GPU machine's versions before a GPU is lent.
#
# The GPU machine runs Python 3.12, torch 2.11, torchvision 0.26 and jax 0.11.2 (flax, optax,
# orbax installed, no network). This builds a virtual environment with Python 3.12,
# torch 2.11.0, torchvision 0.26.0 and the newest jax the registries here have (0.10.2: jax
# 0.11.2 is not published to them; the code keeps to APIs that jax 0.11 documents), then runs
# every section of the prepared command in --cpu mode there. It exits with the command's status
# (0: every section PASSED, DONE or SKIPPED for a named reason).
#
# What it proves: the torch 2.11 / torchvision 0.26 / Python 3.12 side of the GPU machine (API
# names, the fp32 precision settings, torch.compile's tracing on 2.11) and the whole command's
# code paths. What it cannot: jax 0.11 itself, CUDA kernels, TF32. PyPI's Linux x86_64
# torch==2.11.0 is the CUDA build (torch's CPU-only "+cpu" wheels are on no registry reachable
# here), so the CUDA libraries are installed too (several GB, once); it runs on the CPU all the
# same.
#
#   bash benchmarks/gpu_versions_check.sh [VENV_DIR] [OUT_DIR]
#   PYTHON312=/path/to/python3.12 bash benchmarks/gpu_versions_check.sh
set -euo pipefail
cd "$(dirname "$0")/.."
VENV="${1:-/tmp/jaxloss-gpu-versions}"
OUT="${2:-/tmp/jaxloss-gpu-versions-out}"
PY312="${PYTHON312:-$(command -v python3.12 || echo "$HOME/.pyenv/versions/3.12.1/bin/python3.12")}"

if [ ! -x "$VENV/bin/python" ]; then
    "$PY312" -m venv "$VENV"
    "$VENV/bin/python" -m pip install -q \
        torch==2.11.0 torchvision==0.26.0 jax==0.10.2 jaxlib==0.10.2 \
        'flax>=0.12.8' 'optax>=0.2.8' 'orbax-checkpoint>=0.12' 'numpy>=2.0' rich
fi
"$VENV/bin/python" -c 'import sys, torch, torchvision, jax; print("python", sys.version.split()[0], "torch", torch.__version__, "torchvision", torchvision.__version__, "jax", jax.__version__)'
PYTHON="$VENV/bin/python" exec bash benchmarks/gpu_check.sh --cpu --out "$OUT"
