"""The conversion options: one object, one set of command-line flags for both CLIs.

`ConversionOptions` is what a conversion can be asked for, whatever the input kind (LeRobot,
Innate skill, plain ACT HDF5 folder); `add_conversion_flags` gives `python -m lerobot_bridge`
and `train_lerobot_to_act.py` the same flags from it, and `ConversionOptions.from_args` reads
them back, checked. `converter_kwargs(kind)` is what the converters take: options at their
default are left out, so a conversion's fingerprint stays what it was before the option
existed (an earlier conversion stays reusable).
"""

from __future__ import annotations

import argparse
import dataclasses
import re
from dataclasses import dataclass

from lerobot_bridge.errors import DatasetError
from lerobot_bridge.frame_codec import DEFAULT_JPEG_QUALITY
from lerobot_bridge.selection import parse_episode_spec

COLOR_ORDERS = ("auto", "rgb", "bgr")
STORAGES = ("raw", "jpeg")


@dataclass
class ConversionOptions:
    """Every option of a conversion. Frames: `storage` ("raw" = upstream ACT's (T, H, W, 3) uint8,
    "jpeg" = ALOHA's compressed rows) at `jpeg_quality`, resized to `image_size` (H, W) if given.
    `color_order` applies to Innate / ACT HDF5 inputs (LeRobot frames are decoded to RGB)."""

    camera_keys: list[str] | None = None
    camera_names: list[str] | None = None
    episode_len: int = 0
    idle_threshold: float = 1e-4
    max_episodes: int = 0
    episodes: list[int] | None = None
    exclude_episodes: list[int] | None = None
    color_order: str = "auto"
    storage: str = "raw"
    jpeg_quality: int = DEFAULT_JPEG_QUALITY
    image_size: tuple[int, int] | None = None

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        """DatasetError naming the flag, for a value no converter takes."""
        if self.episode_len < 0 or self.max_episodes < 0:
            raise DatasetError("--episode_len and --max_episodes must be >= 0")
        if self.idle_threshold < 0:
            raise DatasetError(f"--idle_threshold must be >= 0 (got {self.idle_threshold})")
        if self.color_order not in COLOR_ORDERS:
            raise DatasetError(f"--color_order must be one of {', '.join(COLOR_ORDERS)} "
                               f"(got {self.color_order!r})")
        if self.storage not in STORAGES:
            raise DatasetError(f"--storage must be one of {', '.join(STORAGES)} (got {self.storage!r})")
        if not 1 <= int(self.jpeg_quality) <= 100:
            raise DatasetError(f"--jpeg_quality must be in 1..100 (got {self.jpeg_quality})")
        # camera keys/names are checked by the converters against the cameras the input has

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> ConversionOptions:
        """From the flags `add_conversion_flags` defined (comma or space separated camera lists,
        episode specs such as 0-9,12, image sizes such as 240x320); DatasetError if one is bad."""
        try:
            episodes = parse_episode_spec(args.episodes, "--episodes")
            exclude = parse_episode_spec(args.exclude_episodes, "--exclude_episodes")
        except ValueError as e:
            raise DatasetError(str(e)) from e
        return cls(
            camera_keys=split_list(args.camera_keys), camera_names=split_list(args.camera_names),
            episode_len=args.episode_len, idle_threshold=args.idle_threshold, max_episodes=args.max_episodes,
            episodes=episodes, exclude_episodes=exclude, color_order=args.color_order, storage=args.storage,
            jpeg_quality=args.jpeg_quality, image_size=parse_size(args.image_size),
        )

    def converter_kwargs(self, kind: str) -> dict:
        """Keyword arguments for the converter of `kind` ("lerobot", "innate", "act_hdf5").

        Selection and frame options enter only when not at their default, so the fingerprint of a
        conversion without them is unchanged. DatasetError for an option the input cannot take."""
        kwargs = {"episode_len": self.episode_len, "idle_threshold": self.idle_threshold,
                  "max_episodes": self.max_episodes, "camera_keys": self.camera_keys,
                  "camera_names": self.camera_names}
        if self.episodes is not None or self.exclude_episodes is not None:
            kwargs.update(episodes=self.episodes, exclude_episodes=self.exclude_episodes)
        if self.storage != "raw" or self.image_size:
            kwargs.update(storage=self.storage, jpeg_quality=int(self.jpeg_quality))
        if self.image_size:
            kwargs["image_size"] = tuple(self.image_size)
        if kind == "lerobot":
            if self.color_order != "auto":  # silently ignoring it would hide a mistaken input folder
                raise DatasetError(f"--color_order {self.color_order}: a LeRobot dataset's videos and images "
                                   "are decoded to RGB; the option applies to Innate / ACT HDF5 inputs only")
        else:
            kwargs["color_order"] = self.color_order
        return kwargs

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def split_list(values: list[str] | str | None) -> list[str] | None:
    """["a,b", "c"] or "a,b c" -> ["a", "b", "c"]; None or nothing -> None."""
    if values is None:
        return None
    items = [values] if isinstance(values, str) else values
    out = [v.strip() for item in items for v in re.split(r"[,\s]+", item) if v.strip()]
    return out or None


def parse_size(text: str | None) -> tuple[int, int] | None:
    """"240x320" -> (240, 320); None -> None; DatasetError naming --image_size otherwise."""
    if text is None:
        return None
    match = re.fullmatch(r"\s*(\d+)\s*[xX]\s*(\d+)\s*", str(text))
    if not match or min(int(match.group(1)), int(match.group(2))) < 1:
        raise DatasetError(f"--image_size {text}: expected HxW with H, W >= 1 (e.g. 224x224)")
    return int(match.group(1)), int(match.group(2))


def add_conversion_flags(parser: argparse.ArgumentParser | argparse._ArgumentGroup, *,
                         storage_default: str = "raw") -> None:
    """The conversion flags, the same in both CLIs (only the storage default differs: the bridge
    CLI writes upstream ACT's raw layout, which upstream's own loader reads; training defaults to
    JPEG, measured to fit real datasets on real disks)."""
    p = parser
    p.add_argument("--camera_keys", nargs="+", default=None,
                   help="cameras to use, in order (space or comma separated; default: every camera). "
                   "LeRobot: feature keys; Innate / ACT HDF5: camera names (camera_1) or HDF5 paths")
    p.add_argument("--camera_names", nargs="+", default=None,
                   help="ACT camera names for --camera_keys (same count); default: the last dotted part of "
                   "each key (LeRobot) or the source names")
    p.add_argument("--episode_len", type=int, default=0,
                   help="0 keeps each episode's length; N truncates to N frames or pads by repeating the "
                   "last frame")
    p.add_argument("--idle_threshold", type=float, default=1e-4,
                   help="trim idle frames at episode start/end (max abs action change below this); 0 = off")
    p.add_argument("--max_episodes", type=int, default=0, help="use the first N episodes (0 = all)")
    p.add_argument("--episodes", default=None,
                   help="source episode indices to use, e.g. 0-9,12,20-24 (default: all); applied before "
                   "--max_episodes")
    p.add_argument("--exclude_episodes", default=None,
                   help="source episode indices to leave out, e.g. 3,17 or 40-49")
    p.add_argument("--convert_workers", type=int, default=0,
                   help="LeRobot inputs: conversion processes (0 = one per CPU). Innate / ACT HDF5 inputs "
                   "convert in one process (their frames are read, not decoded)")
    p.add_argument("--color_order", default="auto", choices=COLOR_ORDERS,
                   help="channel order of Innate / ACT HDF5 frames: auto = BGR for an Innate recorder skill "
                   "(observations/ layout), RGB for the documented top-level layout and for plain ACT HDF5 "
                   "folders (LeRobot videos are always RGB)")
    p.add_argument("--storage", default=storage_default, choices=STORAGES,
                   help=f"how converted frames are stored (default {storage_default}): jpeg = ALOHA's "
                   "compressed layout (act-plus-plus and the training loader read it; about 2.4x the source "
                   "video at 480x640), raw = upstream ACT's (T, H, W, 3) uint8 (921,600 bytes a 480x640 "
                   "frame, what upstream ACT's own loader reads)")
    p.add_argument("--jpeg_quality", type=int, default=DEFAULT_JPEG_QUALITY,
                   help=f"libjpeg quality 1..100 of --storage jpeg (default {DEFAULT_JPEG_QUALITY}: 1.45 "
                   "mean grey levels of error, measured; 90: 1.5x the bytes)")
    p.add_argument("--image_size", default=None,
                   help="HxW, e.g. 240x320 or 224x224: resize every camera's frames at conversion (area "
                   "averaging, as Innate's runtime); default: as recorded")
