"""What a conversion returns: the contract between the data bridge and training.

Every input kind (LeRobot v2.x/v3.0, Innate skill directories, plain ACT HDF5 folders)
converts into a folder of upstream-ACT `episode_{i}.hdf5` files plus a `ConversionResult`.
Training reads only the HDF5 files and this result; the manifest records `to_dict()`.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class EpisodeReport:
    """What happened to one source episode."""

    output_index: int  # i in episode_{i}.hdf5
    source_index: int  # the source's episode_index
    task: str
    frames_in: int
    frames_out: int
    idle_trimmed_start: int = 0
    idle_trimmed_end: int = 0
    padded: int = 0  # frames added by --episode_len padding
    truncated: int = 0  # frames cut by --episode_len
    # per camera: rows with no frame within half a frame period (filled with the nearest frame)
    dropped_frames: dict[str, int] = field(default_factory=dict)
    # per camera: frames that are the in-tolerance match of two consecutive rows
    duplicated_frames: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0


@dataclass
class ConversionResult:
    input_kind: str  # "lerobot", "innate", "act_hdf5"
    input_dir: str
    output_dir: str
    codebase_version: str | None
    fps: float
    cameras: dict[str, str]  # source key -> ACT camera name, in camera order
    state_dim: int
    action_dim: int
    state_names: list[str] | None
    action_names: list[str] | None
    episodes: list[EpisodeReport]
    fingerprint: str  # identifies the input content + conversion options (resume reuses a match)
    tasks: list[str] = field(default_factory=list)
    total_frames_in: int = 0
    total_frames_out: int = 0
    seconds: float = 0.0
    extra: dict = field(default_factory=dict)  # input-kind specific facts
    # What the conversion accepted but a user should know (declared camera size differs from the
    # video, fps inconsistent with the timestamps, max_episodes above the episode count, ...);
    # each is also logged. Absent in conversion.json files written before it existed.
    warnings: list[str] = field(default_factory=list)

    @property
    def camera_names(self) -> list[str]:
        return list(self.cameras.values())

    @property
    def hdf5_paths(self) -> list[Path]:
        return [Path(self.output_dir) / f"episode_{e.output_index}.hdf5" for e in self.episodes]

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> ConversionResult:
        data = dict(data)
        data.setdefault("warnings", [])  # conversion.json written before the field existed
        data["episodes"] = [EpisodeReport(**e) for e in data["episodes"]]
        return cls(**data)
