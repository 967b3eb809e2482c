"""Innate skill directories and plain ACT HDF5 folders: listing, quality flags, rows and frames.

The episodes are the bridge's: episode files and failures come from the Innate importer's own
readers (`lerobot_bridge.innate`), each episode is checked by its `_inspect_episode` (the same
check `convert_innate` makes, so an episode it would refuse is shown with the importer's
message), the flags use `idle_range` on the robot's action columns exactly as `convert_innate`
does (the recorder's trailing progress/termination columns are left out: the ramp changes every
step and would hide every idle run), and the frames are `convert_innate`'s output for that one
episode (`episodes=[i]`, idle trimming off, raw storage, color_order auto so BGR recorder frames
come out RGB), cached as an HDF5 in the manager's cache dir and served from there: the frame at
step t is the frame the trainer gets at t.

Episodes are named by their source index N (`episode_N.h5`), which is what `convert_innate`'s
`episodes=[N]` selects; indices may have gaps. Episodes marked failed in
`data/dataset_metadata.json` are listed (flag `failed`: training skips them) and can be viewed.
"""

from __future__ import annotations

import hashlib
import inspect
import json
import logging
import os
import secrets
import shutil
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import h5py
import numpy as np

from lerobot_bridge.convert import idle_range
from lerobot_bridge.dispatch import detect_input_kind, episode_dir, episode_files
from lerobot_bridge.errors import DatasetError
from lerobot_bridge.innate import (
    EXTRA_ACTION_COLUMNS,
    SourceEpisode,
    _failed_episode_indices,
    _inspect_episode,
    _read_dataset_metadata,
    convert_innate,
    has_extra_action_columns,
)

log = logging.getLogger("manager.skills")

IDLE_THRESHOLD = 1e-4  # the CLI's --idle_threshold default
DEFAULT_FPS = {"innate": 30.0, "act_hdf5": 50.0}  # convert_innate's defaults when none is recorded


@dataclass
class SkillEpisode:
    index: int  # source index N of episode_N.h5
    path: Path
    failed: bool  # marked failed in dataset_metadata.json: training skips it
    source: SourceEpisode | None  # None when the importer refuses the file (see error)
    error: str | None = None
    length: int | None = None  # rows, when the file could be opened at all
    has_extra: bool = False


@dataclass
class Skill:
    root: Path
    kind: str  # "innate" | "act_hdf5"
    episodes: list[SkillEpisode]
    meta_path: Path | None  # data/dataset_metadata.json
    meta: dict  # its contents ({} when absent)
    skill_meta: dict | None  # metadata.json (None when absent or unreadable)
    skill_meta_error: str | None
    fps: float
    fps_recorded: bool
    by_index: dict[int, SkillEpisode] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.by_index = {e.index: e for e in self.episodes}

    @property
    def trainable(self) -> list[SkillEpisode]:
        """The episodes the trainer converts (not marked failed)."""
        return [e for e in self.episodes if not e.failed]

    @property
    def extra_found(self) -> bool:
        """convert_innate's test: every converted episode has the recorder's two trailing columns."""
        readable = [e for e in self.trainable if e.source is not None]
        return bool(readable) and all(e.has_extra for e in readable)

    @property
    def first(self) -> SourceEpisode | None:
        for group in (self.trainable, self.episodes):
            for e in group:
                if e.source is not None:
                    return e.source
        return None

    def episode(self, index: int) -> SkillEpisode:
        try:
            return self.by_index[index]
        except KeyError:
            have = sorted(self.by_index)
            span = ", ".join(str(i) for i in have[:20]) + (" ..." if len(have) > 20 else "")
            raise IndexError(f"episode {index} not found: {self.root.name} has episodes {span}") from None

    def camera_names(self) -> list[str]:
        first = self.first
        return [k.rsplit("/", 1)[1] for k in first.camera_keys] if first else []

    def camera_sizes(self) -> dict[str, tuple[int, int]]:
        first = self.first
        if first is None:
            return {}
        return {k.rsplit("/", 1)[1]: tuple(first.camera_shapes[k]) for k in first.camera_keys}

    def name(self) -> str:
        if self.skill_meta and isinstance(self.skill_meta.get("name"), str) and self.skill_meta["name"]:
            return self.skill_meta["name"]
        return self.root.name


# ---------------------------------------------------------------------------------------------
# listing (memoized on the files' names, sizes and mtimes)

_skill_cache: dict[str, tuple[tuple, Skill]] = {}
_skill_lock = threading.Lock()


def _stamp(root: Path) -> tuple:
    files = episode_files(episode_dir(root)) if root.is_dir() else []
    parts = []
    for p in [p for _, p in files] + [
        root / "metadata.json",
        root / "data" / "dataset_metadata.json",
        root / "dataset_metadata.json",
    ]:
        try:
            st = p.stat()
            parts.append((str(p), st.st_size, st.st_mtime_ns))
        except OSError:
            pass
    return tuple(parts)


def open_skill(root: Path) -> Skill:
    """Every episode file of an Innate skill / ACT HDF5 folder, checked by the importer."""
    root = Path(root)
    stamp = _stamp(root)
    key = str(root)
    with _skill_lock:
        hit = _skill_cache.get(key)
        if hit and hit[0] == stamp:
            return hit[1]
    skill = _read_skill(root)
    with _skill_lock:
        _skill_cache[key] = (stamp, skill)
    return skill


def _read_skill(root: Path) -> Skill:
    kind = detect_input_kind(root)
    if kind == "lerobot":
        raise DatasetError(f"{root}: is a LeRobot dataset, not an Innate skill or ACT HDF5 folder")
    files = episode_files(episode_dir(root))
    meta_path, meta = _read_dataset_metadata(root)
    failed = _failed_episode_indices(meta_path, meta)
    episodes = []
    for index, path in files:
        ep = SkillEpisode(index=index, path=path, failed=index in failed, source=None)
        try:
            ep.source = _inspect_episode(index, path)
            ep.length = ep.source.length
            with h5py.File(path, "r") as f:
                ep.has_extra = has_extra_action_columns(f[ep.source.action_key][:])
        except DatasetError as err:
            ep.error = str(err)
            ep.length = _rows_anyway(path)
        episodes.append(ep)
    skill_meta, skill_meta_error = None, None
    if (root / "metadata.json").is_file():
        try:
            data = json.loads((root / "metadata.json").read_text())
            if isinstance(data, dict):
                skill_meta = data
            else:
                skill_meta_error = f"metadata.json: top level is {type(data).__name__}; expected an object"
        except (OSError, ValueError) as err:
            skill_meta_error = f"metadata.json: not valid JSON ({err})"
    freq = meta.get("data_frequency")
    fps = float(freq or 0) or DEFAULT_FPS[kind]
    return Skill(
        root=root,
        kind=kind,
        episodes=episodes,
        meta_path=meta_path,
        meta=meta,
        skill_meta=skill_meta,
        skill_meta_error=skill_meta_error,
        fps=fps,
        fps_recorded=bool(freq),
    )


def _rows_anyway(path: Path) -> int | None:
    """Rows of an episode the importer refused (for the list), when the file opens at all."""
    try:
        with h5py.File(path, "r") as f:
            for key in ("observations/qpos", "qpos", "action"):
                if key in f and getattr(f[key], "ndim", 0) >= 1:
                    return int(f[key].shape[0])
    except (OSError, ValueError):
        return None
    return None


def skill_card(root: Path) -> dict:
    """The fields of a dataset card for a skill / ACT folder (datasets.dataset_card adds the rest)."""
    skill = open_skill(root)
    trainable = [e for e in skill.trainable if e.source is not None]
    first = skill.first
    refused = [e for e in skill.trainable if e.source is None]
    notes = [f"episode {e.index}: refused by the bridge ({e.error})" for e in refused]
    failed = [e.index for e in skill.episodes if e.failed]
    if failed:
        notes.append(f"episodes {failed} are marked failed in dataset_metadata.json: training skips them")
    if skill.skill_meta_error:
        notes.append(skill.skill_meta_error)
    sizes = skill.camera_sizes()
    return {
        "version": None,
        "episodes": len(trainable),
        "frames": int(sum(e.length or 0 for e in trainable)),
        "fps": skill.fps if skill.fps_recorded else None,
        "cameras": [
            {"key": k, "name": k.split("/")[-1], "dtype": "hdf5", "height": h, "width": w, "codec": None}
            for k, (h, w) in ((k, sizes[k.rsplit("/", 1)[1]]) for k in (first.camera_keys if first else []))
        ],
        "state_dim": first.state_dim if first else None,
        "action_dim": first.action_dim if first else None,
        "state_names": None,
        "action_names": action_names(skill),
        "tasks": [skill.name()] if skill.kind == "innate" else [],
        "robot_type": None,
        "notes": notes,
        "layout": first.layout if first else None,
        "skill_metadata": skill.skill_meta,
        "episode_files": len(skill.episodes),
    }


def action_names(skill: Skill) -> list[str] | None:
    first = skill.first
    if first is None or not skill.extra_found:
        return None
    return [str(j) for j in range(first.action_dim - 2)] + list(EXTRA_ACTION_COLUMNS)


def episode_list(skill: Skill) -> list[dict]:
    task = skill.name() if skill.kind == "innate" else ""
    return [
        {
            "index": e.index,
            "length": e.length,
            "tasks": [task] if task else [],
            "failed": e.failed,
            "file": e.path.name,
        }
        for e in skill.episodes
    ]


# ---------------------------------------------------------------------------------------------
# rows and flags


def episode_rows(skill: Skill, index: int) -> tuple[np.ndarray, np.ndarray]:
    """(qpos, action) of one episode as recorded (float64 for the recorder); DatasetError when
    the importer refuses the episode."""
    ep = skill.episode(index)
    if ep.source is None:
        raise DatasetError(ep.error or f"{ep.path}: unreadable")
    with h5py.File(ep.path, "r") as f:
        return np.asarray(f[ep.source.qpos_key][:]), np.asarray(f[ep.source.action_key][:])


def episode_flags(skill: Skill, index: int, chunk_size: int = 100) -> dict:
    """The importer's checks on one episode: refused (NaN/Inf or a bad file, the importer's
    message), idle start/end (`idle_range` at the CLI's default threshold on the robot's action
    columns, as convert_innate trims), frozen actions (every robot action equal), shorter than a
    chunk, marked failed."""
    ep = skill.episode(index)
    flags: dict = {
        "index": index,
        "length": ep.length,
        "nan": False,
        "error": None,
        "failed": ep.failed,
        "task": skill.name() if skill.kind == "innate" else "",
        "file": ep.path.name,
    }
    if ep.source is None:
        message = ep.error or "unreadable"
        flags["nan"] = "finite" in message or "NaN" in message or "nan" in message
        flags["error"] = message
        return flags
    _qpos, action = episode_rows(skill, index)
    robot = action[:, : action.shape[1] - 2] if skill.extra_found else action
    n = len(action)
    start, stop = idle_range(robot, IDLE_THRESHOLD)
    flags.update(
        idle_start=int(start),
        idle_end=int(n - stop),
        frozen_actions=bool(n > 1 and np.all(robot == robot[0])),
        short=bool(n < chunk_size),
        chunk_size=chunk_size,
        extra_action_columns=skill.extra_found,
    )
    return flags


# ---------------------------------------------------------------------------------------------
# frames: convert_innate(episodes=[i]) into the manager's cache


_CONVERT_PARAMS = set(inspect.signature(convert_innate).parameters)


class SkillFrameCache:
    """One `convert_innate` output per episode (idle_threshold 0, raw, color_order auto)."""

    def __init__(self, cache_dir: Path) -> None:
        self.cache_dir = Path(cache_dir)
        self._locks: dict[str, threading.Lock] = {}
        self._guard = threading.Lock()

    def _lock(self, key: str) -> threading.Lock:
        with self._guard:
            return self._locks.setdefault(key, threading.Lock())

    def _key(self, skill: Skill, ep: SkillEpisode) -> str:
        h = hashlib.sha256()
        h.update(f"{skill.root.resolve()}|{ep.index}|failed={ep.failed}".encode())
        for p in (ep.path, skill.meta_path):
            if p is None:
                continue
            try:
                st = p.stat()
                h.update(f"{p}:{st.st_size}:{st.st_mtime_ns}".encode())
            except OSError:
                pass
        return h.hexdigest()[:24]

    def get(self, skill: Skill, index: int) -> dict[str, Path]:
        """camera name -> the cached HDF5 holding it (one file; one per camera when the skill's
        cameras differ in size, which the importer refuses to stack)."""
        ep = skill.episode(index)
        if ep.source is None:
            raise DatasetError(ep.error or f"{ep.path}: unreadable")
        key = self._key(skill, ep)
        entry = self.cache_dir / f"innate-{key}-ep{index}"
        with self._lock(key):
            if not (entry / "cameras.json").is_file():
                self.cache_dir.mkdir(parents=True, exist_ok=True)
                tmp = self.cache_dir / f".tmp-{key}-{secrets.token_hex(4)}"
                t0 = time.perf_counter()
                try:
                    cameras = self._convert(skill, ep, tmp)
                    (tmp / "cameras.json").write_text(json.dumps(cameras))
                    if entry.exists():
                        shutil.rmtree(entry)
                    os.rename(tmp, entry)
                finally:
                    shutil.rmtree(tmp, ignore_errors=True)
                log.info(
                    "converted episode %d of %s with the Innate importer in %.2f s",
                    index,
                    skill.root.name,
                    time.perf_counter() - t0,
                )
        cameras = json.loads((entry / "cameras.json").read_text())
        return {name: entry / rel for name, rel in cameras.items()}

    def _convert(self, skill: Skill, ep: SkillEpisode, out: Path) -> dict[str, str]:
        options = dict(
            episodes=[ep.index],
            idle_threshold=0,
            episode_len=0,
            color_order="auto",
            include_failures=ep.failed,
            progress=False,
        )
        if "storage" in _CONVERT_PARAMS:
            options["storage"] = "raw"
        try:
            result = convert_innate(skill.root, out, **options)
            return {name: "episode_0.hdf5" for name in result.cameras.values()}
        except DatasetError as err:
            if "different frame sizes" not in str(err):
                raise
        # cameras of different sizes: the importer refuses to stack them, so one camera per file
        cameras = {}
        for name in skill.camera_names():
            convert_innate(skill.root, out / name, camera_keys=[name], **options)
            cameras[name] = f"{name}/episode_0.hdf5"
        return cameras

    def frame(self, skill: Skill, index: int, camera: str, t: int) -> np.ndarray:
        files = self.get(skill, index)
        if camera not in files:
            raise KeyError(f"camera {camera!r} not found; cameras: {list(files)}")
        with h5py.File(files[camera], "r") as f:
            images = f[f"observations/images/{camera}"]
            if not 0 <= t < images.shape[0]:
                raise IndexError(f"step {t} out of range 0..{images.shape[0] - 1}")
            return np.asarray(images[t])
