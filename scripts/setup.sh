#!/usr/bin/env bash
# One-time set-up on a fresh machine: the CPU/CUDA torch build first (pinned, so pip
# never resolves an open `torch` requirement to several GB of CUDA wheels), then the
# project itself in editable mode with its dev tools.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
"$PY" -m pip install --quiet "torch==${TORCH_VERSION:-2.13.0}"
"$PY" -m pip install --quiet -e ".[dev]"
