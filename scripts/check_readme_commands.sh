#!/usr/bin/env bash
# Fresh-clone check (.ci/run): the README's own commands, exactly as written there, in a new `git clone`
# of this repository in a temporary folder, in a new environment (no .venv yet, the stock python3).
#
# The commands are not copied here: every fenced ```bash block that follows a line
# `<!-- readme-check: NAME -->` in README.md is extracted and run with bash -euo pipefail from the
# clone's root, so the README and this check cannot drift apart.
#
#   bash scripts/check_readme_commands.sh                    # README_CHECK="main-job sanity-check"
#   README_CHECK="demo main-job sanity-check" bash scripts/check_readme_commands.sh
#
# README_CHECK: which named blocks to run, in this order (`tests` is what .ci/run runs itself in the
# checkout; `demo` adds ~10 minutes and tests/test_demo.py runs the same code).
# README_CHECK_PATH: PATH for the commands (default: a stock one, so `python3` is the system's
# python3, e.g. Debian's externally-managed one, not a pyenv/conda/venv interpreter on your PATH).
# The clone is of HEAD: uncommitted changes are not in it (a warning says so).
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$(pwd)
read -r -a names <<<"${README_CHECK:-main-job sanity-check}"
stock_path=${README_CHECK_PATH:-/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin}
t_start=$SECONDS
say() { printf '[readme-check %4ds] %s\n' "$((SECONDS - t_start))" "$*"; }
fail() { printf '\nreadme-check: FAILED: %s\n' "$*" >&2; exit 1; }

if [[ -n $(git status --porcelain --untracked-files=no 2>/dev/null) ]]; then
    say "WARNING: the working tree has uncommitted changes; the fresh clone checks HEAD ($(git rev-parse --short HEAD))"
fi
work=$(mktemp -d "${TMPDIR:-/tmp}/train_act_readme.XXXXXX")
cleanup() { rm -rf "$work"; }
trap cleanup EXIT
git clone --quiet --no-hardlinks "$repo" "$work/clone"
clone=$work/clone
say "fresh clone of $(git -C "$clone" rev-parse --short HEAD) in $clone"

# NAME -> the block's text, one file per block; every requested name must exist.
python3 - "$clone/README.md" "$work/blocks" "${names[@]}" <<'EOF'
import re
import sys
from pathlib import Path

readme, out, wanted = Path(sys.argv[1]).read_text(), Path(sys.argv[2]), sys.argv[3:]
out.mkdir()
blocks = dict(re.findall(r"<!-- readme-check: ([\w-]+) -->\s*\n```bash\n(.*?)```", readme, re.S))
missing = [n for n in wanted if n not in blocks]
if missing:
    sys.exit(f"README.md has no `<!-- readme-check: NAME -->` + ```bash block for {missing} (found {sorted(blocks)})")
for name in wanted:
    (out / f"{name}.sh").write_text(blocks[name])
EOF

echo "python3 for the commands: $(PATH=$stock_path command -v python3) ($(PATH=$stock_path python3 --version 2>&1))"
for name in "${names[@]}"; do
    say "README block '$name':"
    sed 's/^/    /' "$work/blocks/$name.sh"
    start=$SECONDS
    (cd "$clone" && env -u VIRTUAL_ENV -u PYTHONPATH -u PYTHONHOME PATH="$stock_path" \
        bash -euo pipefail "$work/blocks/$name.sh") >"$work/$name.log" 2>&1 \
        || { tail -40 "$work/$name.log"; fail "README block '$name' exited non-zero (log above)"; }
    tail -3 "$work/$name.log" | sed 's/^/    | /'
    say "ok: '$name' in $((SECONDS - start)) s"
done

# What the main job must have left behind (README, "What a run produces").
if [[ " ${names[*]} " == *" main-job "* ]]; then
    "$clone/.venv/bin/python" - "$clone/runs/quickstart" <<'EOF'
import json
import sys
from pathlib import Path

out = Path(sys.argv[1])
manifest = json.loads((out / "manifest.json").read_text())
assert manifest["status"] == "completed", f"manifest status {manifest['status']!r}"
run = Path(manifest["run_dir"])
for name in ("policy_best.ckpt", "policy_last.ckpt", "dataset_stats.pkl", "policy_config.json",
             "metrics.jsonl", "loss_curves.png", "prepared.json", "training_complete.json"):
    assert (run / name).is_file(), f"missing {run / name}"
print(f"ok: {out}/manifest.json completed; {run.name}/ has the checkpoints, stats, metrics and plot")
EOF
fi
say "OK: README blocks [${names[*]}] ran as written in a fresh clone"
