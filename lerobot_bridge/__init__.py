"""Read LeRobot datasets (v2.0, v2.1, v3.0) and other demonstration folders, and convert
them to upstream ACT's per-episode HDF5 layout."""

from lerobot_bridge.errors import DatasetError
from lerobot_bridge.types import ConversionResult, EpisodeReport

__all__ = ["ConversionResult", "DatasetError", "EpisodeReport"]
