#!/usr/bin/env bash
# The project's test command (README): set up (.venv, scripts/setup.sh), lint, run the whole test suite
# with the venv's python. Extra arguments go to pytest (e.g. `bash scripts/test.sh tests/test_policy.py`).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
bash scripts/install_browser.sh  # Debian's chromium + Playwright, for the Training Manager's browser test
py=.venv/bin/python
"$py" -m ruff check .
"$py" -m pytest -q "$@"
