"""`python -m lerobot_bridge INPUT_DIR OUTPUT_DIR [options]`: convert a LeRobot dataset, an Innate
skill directory or a folder of upstream-ACT episodes to upstream-ACT episode HDF5 files.

Exit codes: 0 done; 2 bad dataset (DatasetError), with the message; 130 on Ctrl-C and 143 on
SIGTERM, after this run's partial outputs are removed (no traceback).
"""

from __future__ import annotations

import argparse
import json
import logging
import re
import signal
import sys
from pathlib import Path

from lerobot_bridge.convert import convert_dataset
from lerobot_bridge.errors import DatasetError
from lerobot_bridge.innate import COLOR_ORDERS, convert_innate, detect_input_kind
from lerobot_bridge.selection import parse_episode_spec
from lerobot_bridge.types import ConversionResult


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m lerobot_bridge",
        description="Convert a LeRobot dataset (v2.0/v2.1/v3.0), an Innate skill directory or a folder of "
        "upstream-ACT episode_*.hdf5 files to upstream ACT episode_{i}.hdf5 files (the kind is detected).",
    )
    p.add_argument(
        "input_dir",
        help="LeRobot dataset root (contains meta/info.json), Innate skill directory (metadata.json + "
        "data/episode_N.h5) or a folder of episode_*.hdf5 files",
    )
    p.add_argument("output_dir", help="folder for episode_{i}.hdf5 and conversion.json")
    p.add_argument(
        "--camera_keys",
        nargs="+",
        default=None,
        help="cameras to use, in order (default: every camera). LeRobot: feature keys; Innate / ACT "
        "HDF5: camera names (camera_1) or HDF5 paths. All must have the same frame size",
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
    p.add_argument("--episodes", default=None, help="source episode indices to convert, e.g. 0-9,12 (all)")
    p.add_argument("--exclude_episodes", default=None, help="source episode indices to leave out, e.g. 3,17")
    p.add_argument(
        "--convert_workers",
        type=int,
        default=0,
        help="LeRobot inputs: 0 = one per CPU; N worker processes. Ignored for Innate / ACT HDF5 inputs, "
        "which convert in this process (they are read, not decoded)",
    )
    p.add_argument(
        "--color_order",
        choices=COLOR_ORDERS,
        default="auto",
        help="Innate / ACT HDF5 inputs: channel order of the source frames. auto: Innate recorder layout "
        "(observations/images/camera_N) BGR, documented Innate layout (images/main_camera) RGB, plain "
        "ACT HDF5 RGB. LeRobot inputs (always RGB) accept only auto",
    )
    p.add_argument(
        "--storage",
        choices=("raw", "jpeg"),
        default="raw",
        help="raw (default here: upstream ACT's (T, H, W, 3) uint8 frames, which its own loader reads) or "
        "jpeg (ALOHA's compressed layout, which act-plus-plus and train_lerobot_to_act.py read; ~160x "
        "smaller at 480x640)",
    )
    p.add_argument("--jpeg_quality", type=int, default=75, help="libjpeg quality 1..100 of --storage jpeg")
    p.add_argument(
        "--image_size",
        default=None,
        help="HxW, e.g. 240x320: resize every camera's frames (area averaging); default: as recorded",
    )
    p.add_argument("--report", action="store_true", help="print the conversion report as JSON on stdout")
    return p


def _input_kind(input_dir: str) -> str:
    """LeRobot unless the folder is an Innate skill / ACT HDF5 folder. A missing folder or one
    with a meta/ folder goes to the LeRobot converter, whose messages say what is missing there."""
    root = Path(input_dir)
    if not root.is_dir() or (root / "meta").is_dir():
        return "lerobot"
    return detect_input_kind(root)


def convert(args: argparse.Namespace) -> ConversionResult:
    options = dict(
        camera_keys=args.camera_keys,
        camera_names=args.camera_names,
        episode_len=args.episode_len,
        idle_threshold=args.idle_threshold,
        max_episodes=args.max_episodes,
    )
    try:
        selection = {"episodes": parse_episode_spec(args.episodes, "--episodes"),
                     "exclude_episodes": parse_episode_spec(args.exclude_episodes, "--exclude_episodes")}
    except ValueError as e:
        raise DatasetError(str(e)) from e
    if any(v is not None for v in selection.values()):
        options.update(selection)
    if args.storage != "raw" or args.jpeg_quality != 75:
        options.update(storage=args.storage, jpeg_quality=args.jpeg_quality)
    if args.image_size:
        match = re.fullmatch(r"\s*(\d+)\s*[xX]\s*(\d+)\s*", args.image_size)
        if not match or min(int(match.group(1)), int(match.group(2))) < 1:
            raise DatasetError(f"--image_size {args.image_size}: expected HxW with H, W >= 1 (e.g. 240x320)")
        options["image_size"] = (int(match.group(1)), int(match.group(2)))
    kind = _input_kind(args.input_dir)
    if kind == "lerobot":
        if args.color_order != "auto":  # silently ignoring it would hide a mistaken input folder
            raise DatasetError(
                f"--color_order {args.color_order}: {args.input_dir} is a LeRobot dataset, whose videos and "
                "images are decoded to RGB; the option applies to Innate / ACT HDF5 inputs only"
            )
        return convert_dataset(args.input_dir, args.output_dir, workers=args.convert_workers, **options)
    logging.getLogger("lerobot_bridge").info(
        "input is %s: converting with the Innate / ACT HDF5 importer (--convert_workers not used)", kind
    )
    return convert_innate(args.input_dir, args.output_dir, color_order=args.color_order, **options)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    # force: an in-process caller (a test, a notebook) may hold a handler on a stream that is
    # now closed; this CLI owns its logging while it runs.
    logging.basicConfig(
        level=logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
        force=True,
    )
    received: list[int] = []

    def on_sigterm(signum: int, frame) -> None:  # noqa: ARG001
        # Take the KeyboardInterrupt path: the converters cancel and terminate their workers and
        # remove this run's outputs on it. Once: a second SIGTERM must not interrupt that cleanup.
        if not received:
            received.append(signum)
            raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, on_sigterm)
    try:
        result = convert(args)
    except DatasetError as err:
        print(f"error: {err}", file=sys.stderr)
        return err.exit_code
    except KeyboardInterrupt:
        signum = received[0] if received else signal.SIGINT
        print(
            f"interrupted ({signal.Signals(signum).name}): this run's episode files were removed from "
            f"{args.output_dir}",
            file=sys.stderr,
        )
        return 128 + signum
    finally:
        signal.signal(signal.SIGTERM, previous)
    if args.report:
        print(json.dumps(result.to_dict(), indent=2, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
