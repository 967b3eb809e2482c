"""Export a training run as a LeRobot ACT policy folder (thin wrapper over act.export_lerobot).

    python scripts/export_lerobot.py --run_dir OUT/checkpoints/RUN --out DIR [--checkpoint policy_best.ckpt]

DIR gets LeRobot's `pretrained_model/` files (config.json, model.safetensors, policy_preprocessor.json,
policy_postprocessor.json and their normalizer state files) plus train_act_export.json; load it with
`ACTPolicy.from_pretrained(DIR)` or pass it as `--policy.path=DIR` to lerobot's commands. Prints what it
wrote as JSON. Exit code 2, with nothing written, when the run cannot be expressed in LeRobot.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # runnable from a checkout

from act.export_lerobot import ExportError, export_lerobot  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--run_dir", required=True,
                   help="run directory: policy_*.ckpt, dataset_stats.pkl, policy_config.json")
    p.add_argument("--out", required=True,
                   help="the LeRobot policy folder to create (must not exist or be empty)")
    p.add_argument("--checkpoint", default="policy_best.ckpt",
                   help="checkpoint file name in run_dir (or a path)")
    p.add_argument("--image_size", default=None,
                   help="HxW of the camera frames, only when OUT/manifest.json does not record it")
    p.add_argument("--n_action_steps", type=int, default=None,
                   help="actions run per policy query in LeRobot (default: chunk_size, upstream's chunking)")
    p.add_argument("--temporal_ensemble", action="store_true",
                   help="LeRobot's temporal ensembling with upstream's k = 0.01 (n_action_steps 1)")
    p.add_argument("--device", default="cpu", help="config.json device (LeRobot falls back when unavailable)")
    args = p.parse_args(argv)
    image_size = None
    if args.image_size is not None:
        match = re.fullmatch(r"\s*(\d+)\s*[xX]\s*(\d+)\s*", args.image_size)
        if not match or min(int(match.group(1)), int(match.group(2))) < 1:
            print(f"error: --image_size {args.image_size}: expected HxW (e.g. 480x640)", file=sys.stderr)
            return 2
        image_size = (int(match.group(1)), int(match.group(2)))
    try:
        written = export_lerobot(args.run_dir, args.out, checkpoint=args.checkpoint, image_size=image_size,
                                 n_action_steps=args.n_action_steps,
                                 temporal_ensemble_coeff=0.01 if args.temporal_ensemble else None,
                                 device=args.device)
    except (ExportError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(json.dumps(written, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
