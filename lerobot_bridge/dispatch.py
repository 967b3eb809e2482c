"""One way in for every input kind: plan a conversion, decide whether an earlier one is
reusable, estimate its size, run it.

    plan = plan_conversion(input_dir, ConversionOptions(...))    # metadata only, nothing written
    earlier = reusable_conversion(out_dir, plan.fingerprint)      # None unless complete and equal
    result = earlier or run_conversion(plan, out_dir, workers=0)

The kind ("lerobot", "innate", "act_hdf5") is detected once here and picks the converter
module (`lerobot_bridge.convert` or `lerobot_bridge.innate`); both CLIs and the Training Manager
call this instead of choosing a converter themselves.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path

from lerobot_bridge.errors import DatasetError
from lerobot_bridge.options import ConversionOptions
from lerobot_bridge.types import ConversionResult

log = logging.getLogger("lerobot_bridge")


@dataclass
class ConversionPlan:
    """What converting the input will be, known from its metadata alone (nothing written)."""

    input_dir: Path
    kind: str  # "lerobot" | "innate" | "act_hdf5"
    options: dict  # the converter's keyword arguments (ConversionOptions.converter_kwargs)
    fingerprint: str  # equal to the ConversionResult.fingerprint the conversion will record


def detect_input_kind(input_dir: str | Path) -> str:
    """"lerobot" (meta/info.json), "innate" (a skill directory) or "act_hdf5" (episode files);
    DatasetError saying what was looked for otherwise."""
    from lerobot_bridge.innate import detect_input_kind as detect

    return detect(input_dir)


def converter(kind: str):
    """The module that converts inputs of this kind."""
    if kind == "lerobot":
        from lerobot_bridge import convert

        return convert
    from lerobot_bridge import innate

    return innate


def plan_conversion(input_dir: str | Path, options: ConversionOptions) -> ConversionPlan:
    """Detect the kind, check the options against it and compute the fingerprint (DatasetError
    naming the file and field when the metadata is bad)."""
    input_dir = Path(input_dir)
    if not input_dir.is_dir():
        raise DatasetError(f"{input_dir}: input directory does not exist; mount or pass a LeRobot dataset "
                           "root (the folder holding meta/info.json) with --input_dir")
    kind = detect_input_kind(input_dir)
    kwargs = options.converter_kwargs(kind)
    fingerprint = converter(kind).conversion_fingerprint(input_dir, **kwargs)
    return ConversionPlan(input_dir, kind, kwargs, fingerprint)


def reusable_conversion(out_dir: str | Path, fingerprint: str) -> ConversionResult | None:
    """The conversion in out_dir when it is complete (conversion.json is written last) and of this
    fingerprint with every episode file present, else None. Read relative to out_dir, so a folder
    written under a temporary name and then renamed is found where it is now."""
    out_dir = Path(out_dir)
    try:
        earlier = ConversionResult.from_dict(json.loads((out_dir / "conversion.json").read_text()))
    except (OSError, json.JSONDecodeError, KeyError, TypeError):
        return None
    earlier.output_dir = str(out_dir)
    if earlier.fingerprint == fingerprint and all(p.exists() for p in earlier.hdf5_paths):
        return earlier
    return None


def estimate_conversion_bytes(plan: ConversionPlan) -> int | None:
    """An upper bound on the bytes the conversion writes, or None where the converter has no
    estimate."""
    estimate = getattr(converter(plan.kind), "estimate_conversion_bytes", None)
    return None if estimate is None else int(estimate(plan.input_dir, **plan.options))


def run_conversion(plan: ConversionPlan, out_dir: str | Path, *, workers: int = 0,
                   progress: bool | None = None) -> ConversionResult:
    """Convert into out_dir (episode_{i}.hdf5 + conversion.json). `workers` applies to LeRobot
    inputs (decoding processes); Innate / ACT HDF5 inputs are read in this process."""
    if plan.kind == "lerobot":
        return converter(plan.kind).convert_dataset(plan.input_dir, out_dir, workers=workers,
                                                    progress=progress, **plan.options)
    log.info("input is %s (no meta/info.json): converting with the Innate / ACT HDF5 importer", plan.kind)
    return converter(plan.kind).convert_innate(plan.input_dir, out_dir, progress=progress, **plan.options)
