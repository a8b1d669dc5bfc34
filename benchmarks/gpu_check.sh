#!/usr/bin/env bash
# The one prepared GPU command: everything a GPU machine must show, in under 8 minutes.
# Runs in a copy of the repository root; installs nothing. Results: gpu-results/summary.md and
# one JSON file per section, written as they come. Extra arguments go to python -m benchmarks.gpu
# (e.g. --out DIR, --sections env,losses, --cpu). Exit status: 0 every section passed (or was
# skipped for a reason the summary names), 1 a section FAILED / ERROR / TIMEOUT, 2 bad input,
# 130 interrupted (Ctrl-C: the running section and its processes are killed first).
# benchmarks/gpu_versions_check.sh runs it in --cpu mode on the GPU machine's package versions.
set -u
cd "$(dirname "$0")/.."
# Installed, parity/ and train/ are the packages jaxloss.parity and jaxloss.train (pyproject.toml
# package-dir). Without an install, lay out that package tree with links, outside the checkout.
site="$(mktemp -d)"
mkdir "$site/jaxloss"
ln -s "$PWD"/jaxloss/* "$site/jaxloss/"
ln -s "$PWD/parity" "$site/jaxloss/parity"
ln -s "$PWD/train" "$site/jaxloss/train"
export PYTHONPATH="$site:$PWD${PYTHONPATH:+:$PYTHONPATH}"
PYTHON="${PYTHON:-python}"
exec "$PYTHON" -m benchmarks.gpu --out gpu-results "$@"
