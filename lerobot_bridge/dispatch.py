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
import re
from dataclasses import dataclass
from pathlib import Path

from lerobot_bridge.errors import DatasetError
from lerobot_bridge.options import ConversionOptions
from lerobot_bridge.types import ConversionResult

log = logging.getLogger("lerobot_bridge")
EPISODE_FILE_RE = re.compile(r"^episode_(\d+)\.(h5|hdf5)$")  # Innate / upstream ACT episode files


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
    root = Path(input_dir)
    if not root.is_dir():
        raise DatasetError(f"{root}: input directory does not exist (or is not a directory)")
    if (root / "meta" / "info.json").is_file():
        return "lerobot"
    if (root / "metadata.json").is_file() or (root / "data" / "dataset_metadata.json").is_file():
        if episode_files(episode_dir(root)):
            return "innate"
        raise DatasetError(
            f"{root}: looks like an Innate skill directory (metadata.json) but {root / 'data'} holds no "
            "episode_N.h5 files; expected data/episode_0.h5, data/episode_1.h5, ..."
        )
    if episode_files(root / "data"):
        return "innate"  # recordings without metadata files (copied by hand)
    if (root / "dataset_metadata.json").is_file() and episode_files(root):
        return "innate"  # the skill's data/ folder itself
    if episode_files(root):
        return "act_hdf5"
    raise DatasetError(
        f"{root}: not a dataset this tool reads. Looked for meta/info.json (LeRobot v2.x/v3.0), "
        "metadata.json + data/episode_N.h5 (Innate skill directory), and episode_*.hdf5 / "
        "episode_*.h5 files (upstream ACT episodes); found none of them"
    )


def episode_dir(root: Path) -> Path:
    """Where a skill keeps its episode files: data/ when there is one, else the folder itself."""
    return root / "data" if (root / "data").is_dir() else root


def episode_files(folder: Path) -> list[tuple[int, Path]]:
    """(index, path) of the episode_N.h5 / episode_N.hdf5 files in folder, by index."""
    if not folder.is_dir():
        return []
    found = []
    for p in folder.iterdir():
        m = EPISODE_FILE_RE.match(p.name)
        if m and p.is_file():
            found.append((int(m.group(1)), p))
    found.sort()
    return found


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
