"""`python -m lerobot_bridge INPUT_DIR OUTPUT_DIR [options]`: convert a LeRobot dataset, an Innate
skill directory or a folder of upstream-ACT episodes to upstream-ACT episode HDF5 files.

Exit codes: 0 done; 2 bad dataset (DatasetError), with the message; 130 on Ctrl-C and 143 on
SIGTERM, after this run's partial outputs are removed (no traceback).
"""

from __future__ import annotations

import argparse
import json
import logging
import signal
import sys
from pathlib import Path

from lerobot_bridge.convert import convert_dataset
from lerobot_bridge.dispatch import detect_input_kind
from lerobot_bridge.errors import DatasetError
from lerobot_bridge.innate import convert_innate
from lerobot_bridge.options import ConversionOptions, add_conversion_flags
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
    add_conversion_flags(p, storage_default="raw")
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
    options = ConversionOptions.from_args(args)
    kind = _input_kind(args.input_dir)
    kwargs = options.converter_kwargs(kind)
    if kind == "lerobot":
        return convert_dataset(args.input_dir, args.output_dir, workers=args.convert_workers, **kwargs)
    logging.getLogger("lerobot_bridge").info(
        "input is %s: converting with the Innate / ACT HDF5 importer (in this process)", kind
    )
    return convert_innate(args.input_dir, args.output_dir, **kwargs)


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
