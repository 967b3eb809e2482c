#!/usr/bin/env bash
# The project's test command (README): set up, lint, run the whole test suite.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
bash scripts/setup.sh
"$PY" -m ruff check .
"$PY" -m pytest -q "$@"
