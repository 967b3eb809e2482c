#!/usr/bin/env bash
# Installs what tests/test_manager_browser.py needs: Debian's chromium (the browser Playwright drives through
# executable_path=/usr/bin/chromium; `playwright install` is never run) and the pinned Playwright for Python.
# Idempotent: does nothing that is already done. Needs root (or sudo) for apt-get.
set -euo pipefail

PLAYWRIGHT_VERSION=1.65.2
cd "$(dirname "$0")/.."
# The project's venv (scripts/setup.sh) when there is one, as scripts/test.sh runs the tests with it.
py=${PYTHON:-python3}
[[ -z ${PYTHON:-} && -x .venv/bin/python ]] && py=.venv/bin/python
sudo_cmd=()
if [[ $(id -u) -ne 0 ]]; then sudo_cmd=(sudo); fi

if [[ -x /usr/bin/chromium ]]; then
    echo "[install_browser] chromium present: $(/usr/bin/chromium --version 2>/dev/null || echo '?')"
else
    echo "[install_browser] installing Debian's chromium (apt-get)"
    "${sudo_cmd[@]}" apt-get update
    DEBIAN_FRONTEND=noninteractive "${sudo_cmd[@]}" apt-get install -y --no-install-recommends chromium
fi

if "$py" -c "import importlib.metadata as m, sys; sys.exit(m.version('playwright') != '${PLAYWRIGHT_VERSION}')" 2>/dev/null; then
    echo "[install_browser] playwright ${PLAYWRIGHT_VERSION} present"
else
    "$py" -m pip install --quiet "playwright==${PLAYWRIGHT_VERSION}"
fi
