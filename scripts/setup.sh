#!/usr/bin/env bash
# One-time set-up on a fresh machine, into the project's own virtual environment `.venv`
# (Debian's and Ubuntu's python3 refuse `pip install` outside one: externally-managed-environment):
#   1. `python3 -m venv .venv` (installs python3.X-venv with apt-get when that module is missing and
#      we are root; otherwise says the one command that fixes it);
#   2. torch==$TORCH_VERSION (2.13.0) FIRST: the project's own requirement is an open `torch>=2.2`,
#      and pip resolving an open requirement picks whatever torch build it finds (on PyPI for Linux:
#      the CUDA build, several GB). With the pin installed first, that requirement is already met and
#      nothing else is fetched. Where pip is configured with a local CPU wheel (CI machines), that
#      wheel is used; TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu picks the CPU-only build;
#   3. `pip install -e ".[dev]"`: the project in editable mode with its dev tools (pytest, ruff).
# Re-running is quick: each step is skipped when its result is already there.
#
#   bash scripts/setup.sh                  # then: .venv/bin/python ..., or `source .venv/bin/activate`
#   PYTHON=python3.12 bash scripts/setup.sh # another interpreter for the venv (default python3)
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$(pwd)
base=${PYTHON:-python3}
venv=.venv
py=$venv/bin/python
torch_version=${TORCH_VERSION:-2.13.0}
say() { printf 'setup.sh: %s\n' "$*"; }

# ---- 1. the virtual environment
if ! "$py" -c 'import sys' >/dev/null 2>&1; then
    command -v "$base" >/dev/null || { say "no $base on PATH: install Python >= 3.11 first" >&2; exit 1; }
    if ! "$base" -c 'import ensurepip, venv' >/dev/null 2>&1; then
        pkg=python$("$base" -c 'import sys; print(f"{sys.version_info[0]}.{sys.version_info[1]}")')-venv
        if [[ $(id -u) -eq 0 ]] && command -v apt-get >/dev/null; then
            say "$base has no venv/ensurepip module: apt-get install $pkg"
            apt-get update -qq
            DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$pkg" >/dev/null
        else
            say "$base has no venv/ensurepip module; fix: sudo apt-get install $pkg  (then run this again)" >&2
            exit 1
        fi
    fi
    say "creating $repo/$venv with $(command -v "$base") ($("$base" --version 2>&1))"
    "$base" -m venv --clear "$venv"
fi
pip=("$py" -m pip --disable-pip-version-check)

# ---- 2. torch, pinned, before anything that requires it
if have=$("$py" -c "import torch; print(torch.__version__)" 2>/dev/null) && [[ ${have%%+*} == "$torch_version" ]]; then
    say "torch==$torch_version already installed ($have)"
else
    say "installing torch==$torch_version (first, so the open torch requirement below is already met)"
    "${pip[@]}" install --quiet ${TORCH_INDEX_URL:+--extra-index-url "$TORCH_INDEX_URL"} "torch==$torch_version"
fi

# ---- 3. the project, editable, with its dev tools
# The stamp records what the last install saw; the import check that this checkout is the one installed.
stamp=$venv/.train_act_installed
want="$(sha256sum pyproject.toml | cut -d' ' -f1) $repo"
if [[ -f $stamp && $(cat "$stamp") == "$want" ]] \
    && "$py" -c "import act, lerobot_bridge, pytest, ruff, sys; sys.exit(not act.__file__.startswith('$repo/'))" \
        >/dev/null 2>&1; then
    say "project already installed in $venv (pyproject.toml unchanged)"
else
    say "installing the project: pip install -e \".[dev]\""
    "${pip[@]}" install --quiet -e ".[dev]"
    printf '%s\n' "$want" >"$stamp"
fi
say "ready: $repo/$venv/bin/python"
