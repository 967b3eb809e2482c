"""Export a training run's inference graph to ONNX (thin wrapper over act.export_onnx).

    python scripts/export_onnx.py --run_dir OUT/checkpoints/RUN --out policy.onnx [--checkpoint NAME]

Graph: qpos (B, state_dim) float32 raw + images (B, N_cam, 3, H, W) uint8 RGB (or float32 0..1 with
--image_dtype float32) -> actions (B, chunk_size, action_dim) float32 raw; the normalization from
dataset_stats.pkl and ImageNet's image normalization are inside, z = 0, B is dynamic. After writing,
the file is run with onnxruntime (CPU) on random inputs against ACTRunner and the max abs difference
is printed (--no_check skips that). Exit code 2 when the run cannot be exported or the check fails.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # runnable from a checkout

from act.export_onnx import OPSET, ExportError, check_onnx, export_onnx  # noqa: E402

CHECK_ATOL = 1e-4  # what the check accepts; measured differences are ~3e-6 (tests/test_export_onnx.py)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--run_dir", required=True,
                   help="run directory: policy_*.ckpt, dataset_stats.pkl, policy_config.json")
    p.add_argument("--out", required=True, help="the .onnx file to write")
    p.add_argument("--checkpoint", default="policy_best.ckpt",
                   help="checkpoint file name in run_dir (or a path)")
    p.add_argument("--image_size", default=None,
                   help="HxW of the camera frames, only when OUT/manifest.json does not record it")
    p.add_argument("--image_dtype", choices=("uint8", "float32"), default="uint8",
                   help="images input: uint8 0..255 (default) or float32 0..1")
    p.add_argument("--opset", type=int, default=OPSET)
    p.add_argument("--no_check", action="store_true", help="skip the onnxruntime-vs-ACTRunner check")
    args = p.parse_args(argv)
    image_size = None
    if args.image_size is not None:
        match = re.fullmatch(r"\s*(\d+)\s*[xX]\s*(\d+)\s*", args.image_size)
        if not match or min(int(match.group(1)), int(match.group(2))) < 1:
            print(f"error: --image_size {args.image_size}: expected HxW (e.g. 480x640)", file=sys.stderr)
            return 2
        image_size = (int(match.group(1)), int(match.group(2)))
    try:
        written = export_onnx(args.run_dir, args.out, checkpoint=args.checkpoint, image_size=image_size,
                              image_dtype=args.image_dtype, opset=args.opset)
    except (ExportError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if not args.no_check:
        diff = check_onnx(args.out, args.run_dir, checkpoint=args.checkpoint)
        written["check"] = {"max_abs_diff_onnxruntime_vs_act_runner": diff, "atol": CHECK_ATOL}
        if not diff <= CHECK_ATOL:
            print(json.dumps(written, indent=2))
            print(f"error: onnxruntime differs from ACTRunner by {diff} > {CHECK_ATOL}", file=sys.stderr)
            return 2
    print(json.dumps(written, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
