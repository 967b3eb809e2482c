"""`python -m lerobot_bridge INPUT_DIR OUTPUT_DIR [options]`: convert a LeRobot dataset to
upstream-ACT episode HDF5 files. Exit code 2 on a bad dataset (DatasetError), with the message."""

from __future__ import annotations

import argparse
import json
import logging
import sys

from lerobot_bridge.convert import convert_dataset
from lerobot_bridge.errors import DatasetError


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m lerobot_bridge",
        description="Convert a LeRobot dataset (v2.0/v2.1/v3.0) to upstream ACT episode_{i}.hdf5 files.",
    )
    p.add_argument("input_dir", help="LeRobot dataset root (contains meta/info.json)")
    p.add_argument("output_dir", help="folder for episode_{i}.hdf5 and conversion.json")
    p.add_argument(
        "--camera_keys",
        nargs="+",
        default=None,
        help="camera features to use, in order (default: every video/image feature)",
    )
    p.add_argument(
        "--camera_names",
        nargs="+",
        default=None,
        help="ACT camera names, one per camera key (default: last dotted part of the key)",
    )
    p.add_argument(
        "--episode_len",
        type=int,
        default=0,
        help="0 keeps each length; N truncates to N or pads by repeating the last frame",
    )
    p.add_argument(
        "--idle_threshold",
        type=float,
        default=1e-4,
        help="trim idle runs at both ends where actions change by less than this (0 disables)",
    )
    p.add_argument("--max_episodes", type=int, default=0, help="0 = all, else the first N by episode_index")
    p.add_argument("--convert_workers", type=int, default=0, help="0 = one per CPU; N worker processes")
    p.add_argument("--report", action="store_true", help="print the conversion report as JSON on stdout")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        result = convert_dataset(
            args.input_dir,
            args.output_dir,
            camera_keys=args.camera_keys,
            camera_names=args.camera_names,
            episode_len=args.episode_len,
            idle_threshold=args.idle_threshold,
            max_episodes=args.max_episodes,
            workers=args.convert_workers,
        )
    except DatasetError as err:
        print(f"error: {err}", file=sys.stderr)
        return err.exit_code
    if args.report:
        print(json.dumps(result.to_dict(), indent=2, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
