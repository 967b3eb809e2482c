"""Export a training run as an Innate skill policy (thin wrapper over act.export_innate).

    python scripts/export_innate.py --run_dir OUT/checkpoints/RUN --skill_dir ~/skills/pick_sock [--step N]

Writes SKILL/<run_id>/act_policy_step_<N>.pth and SKILL/<run_id>/dataset_stats.pt, updates
SKILL/metadata.json's `execution` block (the previous file is kept as metadata.json.bak-<UTC>)
and prints what it wrote as JSON. Exit code 2 when the run or the skill cannot be exported.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # runnable from a checkout

from act.export_innate import ExportError, export_innate  # noqa: E402
from lerobot_bridge.errors import DatasetError  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument(
        "--run_dir", required=True, help="run directory: policy_*.ckpt, dataset_stats.pkl, policy_config.json"
    )
    p.add_argument(
        "--skill_dir", required=True, help="the Innate skill directory (holds metadata.json, data/)"
    )
    p.add_argument(
        "--checkpoint", default="policy_best.ckpt", help="checkpoint file name in run_dir (or a path)"
    )
    p.add_argument(
        "--step", type=int, default=None, help="training step for the file name (default: from the run)"
    )
    p.add_argument(
        "--run_id", default=None, help="folder name inside the skill (default: the run directory's name)"
    )
    p.add_argument(
        "--duration", type=float, default=None, help="execution.duration in s (default: from the data)"
    )
    p.add_argument(
        "--skip_runtime_check",
        action="store_true",
        help="export even if Innate's fixed runtime architecture could not load the model (testing only)",
    )
    args = p.parse_args(argv)
    try:
        written = export_innate(
            args.run_dir,
            args.skill_dir,
            checkpoint=args.checkpoint,
            step=args.step,
            run_id=args.run_id,
            duration=args.duration,
            check_runtime=not args.skip_runtime_check,
        )
    except (ExportError, DatasetError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    for warning in written["warnings"]:
        print(f"warning: {warning}", file=sys.stderr)
    print(json.dumps(written, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
