"""Read LeRobot datasets (v2.0, v2.1, v3.0), Innate skills and upstream-ACT HDF5 folders, and
convert them to upstream ACT's per-episode HDF5 layout.

The public face (names resolve on first use, so a worker that imports `lerobot_bridge.errors`
does not load the converters):

    from lerobot_bridge import convert_dataset, convert_innate, detect_input_kind, DatasetError
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

_EXPORTS = {
    "ConversionResult": "lerobot_bridge.types",
    "EpisodeReport": "lerobot_bridge.types",
    "DatasetError": "lerobot_bridge.errors",
    "open_dataset": "lerobot_bridge.dataset",
    "convert_dataset": "lerobot_bridge.convert",
    "conversion_fingerprint": "lerobot_bridge.convert",
    "convert_innate": "lerobot_bridge.innate",
    "detect_input_kind": "lerobot_bridge.dispatch",
    "parse_episode_spec": "lerobot_bridge.selection",
}
__all__ = [
    "ConversionResult", "DatasetError", "EpisodeReport", "conversion_fingerprint", "convert_dataset",
    "convert_innate", "detect_input_kind", "open_dataset", "parse_episode_spec",
]

if TYPE_CHECKING:
    from lerobot_bridge.convert import conversion_fingerprint, convert_dataset
    from lerobot_bridge.dataset import open_dataset
    from lerobot_bridge.dispatch import detect_input_kind
    from lerobot_bridge.errors import DatasetError
    from lerobot_bridge.innate import convert_innate
    from lerobot_bridge.selection import parse_episode_spec
    from lerobot_bridge.types import ConversionResult, EpisodeReport


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'lerobot_bridge' has no attribute {name!r}")
    value = getattr(importlib.import_module(_EXPORTS[name]), name)
    globals()[name] = value
    return value
