"""Datasets under the data root: discovery, cards, episodes, quality flags and frames.

Everything goes through the bridge: `open_dataset` (metadata only) for cards and episode lists,
`read_episode_rows` + `idle_range` for the flags, and `convert_episode` (the converter's own
per-episode code, idle_threshold 0 so step t is source frame_index t) for the frames, written
once per episode into an HDF5 cache under the cache dir and served from there.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import struct
import threading
import time
import zlib
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np

from lerobot_bridge.convert import EpisodeJob, convert_episode, idle_range
from lerobot_bridge.dataset import (
    ACTION_KEY,
    STATE_KEY,
    VELOCITY_KEY,
    LeRobotDataset,
    open_dataset,
    select_cameras,
)
from lerobot_bridge.dispatch import detect_input_kind
from lerobot_bridge.errors import DatasetError
from lerobot_bridge.parquet_io import read_episode_rows
from manager.skills import skill_card

log = logging.getLogger("manager.datasets")

MAX_DEPTH = 4  # folders below the data root searched for datasets
DEFAULT_CHUNK = 100  # the CLI's --chunk_size default: shorter episodes are flagged
IDLE_THRESHOLD = 1e-4  # the CLI's --idle_threshold default


def is_dataset_dir(path: Path) -> str | None:
    """The input kind ("lerobot", "innate", "act_hdf5") of a folder, or None."""
    if (path / "meta" / "info.json").is_file():
        return "lerobot"
    try:
        return detect_input_kind(path)
    except DatasetError:
        return None


def find_datasets(data_root: Path) -> list[tuple[Path, str]]:
    """Every dataset folder under `data_root` (not descending into datasets), sorted by path."""
    found: list[tuple[Path, str]] = []
    root = Path(os.path.realpath(data_root))

    def walk(folder: Path, depth: int) -> None:
        kind = is_dataset_dir(folder)
        if kind:
            found.append((folder, kind))
            return
        if depth >= MAX_DEPTH:
            return
        try:
            children = sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))
        except OSError:
            return
        for child in children:
            real = Path(os.path.realpath(child))
            if real != root and root not in real.parents:
                continue  # a symlink out of the root is not followed
            walk(child, depth + 1)

    walk(root, 0)
    return found


def dir_size(path: Path) -> int:
    total = 0
    for dirpath, _dirs, files in os.walk(path):
        for name in files:
            try:
                total += os.stat(os.path.join(dirpath, name)).st_size
            except OSError:
                pass
    return total


# ---------------------------------------------------------------------------------------------
# cards


_open_cache: dict[str, tuple[float, LeRobotDataset]] = {}
_open_lock = threading.Lock()


def open_lerobot(path: Path) -> LeRobotDataset:
    """`open_dataset`, memoized on the info.json / episodes metadata mtimes."""
    stamp = _meta_stamp(path)
    key = str(path)
    with _open_lock:
        hit = _open_cache.get(key)
        if hit and hit[0] == stamp:
            return hit[1]
    ds = open_dataset(path)
    with _open_lock:
        _open_cache[key] = (stamp, ds)
    return ds


def _meta_stamp(path: Path) -> float:
    stamp = 0.0
    for p in (path / "meta" / "info.json", path / "meta" / "episodes.jsonl", path / "meta" / "episodes"):
        try:
            stamp += p.stat().st_mtime_ns
        except OSError:
            pass
    return stamp


def dataset_card(path: Path, kind: str, rel: str, used_by: list[str]) -> dict:
    card: dict = {"path": rel, "name": path.name, "kind": kind, "used_by": used_by, "error": None}
    try:
        if kind == "lerobot":
            ds = open_lerobot(path)
            lengths = [e.length for e in ds.episodes]
            card.update(
                version=ds.version,
                episodes=len(ds.episodes),
                frames=int(sum(lengths)),
                fps=ds.fps,
                cameras=[
                    {
                        "key": c.key,
                        "name": c.key.split(".")[-1],
                        "dtype": c.dtype,
                        "height": c.height,
                        "width": c.width,
                        "codec": c.codec,
                    }
                    for c in ds.cameras
                ],
                state_dim=ds.state_dim,
                action_dim=ds.action_dim,
                state_names=ds.feature_names(STATE_KEY),
                action_names=ds.feature_names(ACTION_KEY),
                tasks=[ds.tasks[i] for i in sorted(ds.tasks)]
                or sorted({t for e in ds.episodes for t in e.tasks}),
                robot_type=ds.info.get("robot_type"),
            )
        else:
            card.update(skill_card(path))
    except (DatasetError, OSError, ValueError) as err:
        card["error"] = str(err)
    card["size_bytes"] = dir_size(path)
    return card


def episode_list(ds: LeRobotDataset) -> list[dict]:
    return [{"index": e.index, "length": e.length, "tasks": e.tasks or []} for e in ds.episodes]


# ---------------------------------------------------------------------------------------------
# episode rows and flags


def episode_rows(ds: LeRobotDataset, index: int):
    ep = _episode(ds, index)
    velocity_key = VELOCITY_KEY if ds.has_velocity else None
    return read_episode_rows(
        ep.data_path,
        ep.index,
        state_key=STATE_KEY,
        action_key=ACTION_KEY,
        velocity_key=velocity_key,
        state_dim=ds.state_dim,
        action_dim=ds.action_dim,
        expected_length=ep.length,
        feature_names={k: ds.feature_names(k) for k in (STATE_KEY, ACTION_KEY)},
    )


def _episode(ds: LeRobotDataset, index: int):
    if not 0 <= index < len(ds.episodes):
        raise IndexError(f"episode {index} not found: the dataset has episodes 0..{len(ds.episodes) - 1}")
    return ds.episodes[index]


def episode_flags(
    ds: LeRobotDataset, index: int, chunk_size: int = DEFAULT_CHUNK, cache: EpisodeCache | None = None
) -> dict:
    """The bridge's checks on one episode's rows: idle start/end (`idle_range` at the CLI's
    default threshold), frozen actions, shorter than a chunk, NaN/Inf (the bridge refuses the
    episode), and dropped/duplicated frames once the episode's frames were decoded."""
    ep = _episode(ds, index)
    flags: dict = {"index": index, "length": ep.length, "nan": False, "error": None}
    try:
        rows = episode_rows(ds, index)
    except DatasetError as err:
        message = str(err)
        flags["nan"] = "finite" in message or "NaN" in message or "nan" in message
        flags["error"] = message
        return flags
    n = len(rows)
    start, stop = idle_range(rows.action, IDLE_THRESHOLD)
    flags.update(
        idle_start=int(start),
        idle_end=int(n - stop),
        frozen_actions=bool(n > 1 and np.all(rows.action == rows.action[0])),
        short=bool(n < chunk_size),
        chunk_size=chunk_size,
        task=_task_of(ds, rows.task_index, ep.tasks),
    )
    report = cache.report(ds, index) if cache else None
    if report:
        flags["dropped_frames"] = report.get("dropped_frames", {})
        flags["duplicated_frames"] = report.get("duplicated_frames", {})
    return flags


def _task_of(ds: LeRobotDataset, task_index, fallback: list[str]) -> str:
    if task_index is not None and len(task_index) and ds.tasks:
        return " | ".join(ds.tasks.get(int(i), f"task {i}") for i in dict.fromkeys(task_index.tolist()))
    return " | ".join(fallback)


# ---------------------------------------------------------------------------------------------
# frames: one episode converted by the bridge into a cache HDF5


@dataclass
class CachedEpisode:
    path: Path
    cameras: list[str]  # ACT camera names, in camera order
    length: int


class EpisodeCache:
    """Per-episode HDF5 files written by the bridge's `convert_episode` (idle_threshold 0)."""

    def __init__(self, cache_dir: Path) -> None:
        self.cache_dir = Path(cache_dir)
        self._locks: dict[str, threading.Lock] = {}
        self._guard = threading.Lock()

    def _key(self, ds: LeRobotDataset, index: int) -> str:
        h = hashlib.sha256()
        h.update(str(ds.root).encode())
        h.update(str(_meta_stamp(ds.root)).encode())
        ep = ds.episodes[index]
        for p in [ep.data_path, *(v.path for v in ep.videos.values())]:
            try:
                st = p.stat()
                h.update(f"{p}:{st.st_size}:{st.st_mtime_ns}".encode())
            except OSError:
                pass
        return h.hexdigest()[:24]

    def _lock(self, key: str) -> threading.Lock:
        with self._guard:
            return self._locks.setdefault(key, threading.Lock())

    def report(self, ds: LeRobotDataset, index: int) -> dict | None:
        path = self.cache_dir / f"{self._key(ds, index)}_ep{index}.json"
        try:
            return json.loads(path.read_text())
        except (OSError, ValueError):
            return None

    def get(self, ds: LeRobotDataset, index: int) -> CachedEpisode:
        ep = _episode(ds, index)
        key = self._key(ds, index)
        h5 = self.cache_dir / f"{key}_ep{index}.hdf5"
        report_path = self.cache_dir / f"{key}_ep{index}.json"
        cameras = select_cameras(ds)
        with self._lock(key):
            if not (h5.is_file() and report_path.is_file()):
                self.cache_dir.mkdir(parents=True, exist_ok=True)
                dtypes = {c.key: c.dtype for c in ds.cameras}
                job = EpisodeJob(
                    output_index=index,
                    output_path=h5,
                    episode=ep,
                    fps=ds.fps,
                    codebase_version=ds.version,
                    cameras=[(k, name, dtypes[k]) for k, name in cameras.items()],
                    tasks=ds.tasks,
                    state_dim=ds.state_dim,
                    action_dim=ds.action_dim,
                    velocity_key=VELOCITY_KEY if ds.has_velocity else None,
                    idle_threshold=0.0,
                    episode_len=0,
                    thread_count=1,
                    extra_attrs={"source_dataset": ds.root.name},
                    frame_shapes={},
                    feature_names={k: ds.feature_names(k) for k in (STATE_KEY, ACTION_KEY)},
                )
                t0 = time.perf_counter()
                report = convert_episode(job)
                report_path.write_text(json.dumps(report.__dict__))
                log.info(
                    "decoded episode %d of %s through the bridge in %.2f s",
                    index,
                    ds.root.name,
                    time.perf_counter() - t0,
                )
        return CachedEpisode(h5, list(cameras.values()), ep.length)

    def frame(self, ds: LeRobotDataset, index: int, camera: str, t: int) -> np.ndarray:
        cached = self.get(ds, index)
        if camera not in cached.cameras:
            raise KeyError(f"camera {camera!r} not found; cameras: {cached.cameras}")
        with h5py.File(cached.path, "r") as f:
            images = f[f"observations/images/{camera}"]
            if not 0 <= t < images.shape[0]:
                raise IndexError(f"step {t} out of range 0..{images.shape[0] - 1}")
            return np.asarray(images[t])


def encode_png(img: np.ndarray) -> bytes:
    """(H, W, 3) uint8 RGB -> PNG bytes (lossless; zlib only, no imaging library)."""
    img = np.ascontiguousarray(img, dtype=np.uint8)
    height, width = img.shape[:2]
    raw = np.concatenate([np.zeros((height, 1), np.uint8), img.reshape(height, width * 3)], axis=1)

    def chunk(tag: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data) & 0xFFFFFFFF)
        )

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(raw.tobytes(), 6))
        + chunk(b"IEND", b"")
    )
