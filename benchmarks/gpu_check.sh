#!/usr/bin/env bash
# The one prepared GPU command (issue 12): everything a GPU machine must show, in under 8 minutes.
# Runs in a copy of the repository root; installs nothing. Results: gpu-results/summary.md and
# one JSON file per section, written as they come. Extra arguments go to python -m benchmarks.gpu
# (e.g. --out DIR, --sections env,losses, --cpu).
set -u
cd "$(dirname "$0")/.."
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
PYTHON="${PYTHON:-python}"
exec "$PYTHON" -m benchmarks.gpu --out gpu-results "$@"
