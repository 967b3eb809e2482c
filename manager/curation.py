"""Curation: delete episodes, edit task text, merge datasets, always into a NEW LeRobot v3.0
dataset written by the project's writer (`lerobot_bridge.writer.write_lerobot_v30`); the source
is never touched and an existing target is never overwritten.

Each kept episode is read through the bridge: state / action rows with `read_episode_rows`
(exact float32 values) and frames from the bridge's own per-episode conversion (the manager's
episode cache, idle_threshold 0, so row t gets the frame the trainer would get at t). Frames are
re-encoded (H.264, crf 0 by default: lossless in YUV 4:2:0, so only the RGB <-> YUV rounding
remains); velocity columns are not carried over (the writer has none).
"""

from __future__ import annotations

import logging
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np

from lerobot_bridge.dataset import LeRobotDataset, select_cameras
from lerobot_bridge.writer import EpisodeData, write_lerobot_v30
from manager.datasets import EpisodeCache, _task_of, episode_rows

log = logging.getLogger("manager.curation")

CRF = 0


class CurationError(ValueError):
    """Refused with `status` (409 target exists, 422 incompatible / bad selection)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass
class Selection:
    dataset: LeRobotDataset
    episodes: list[int]  # source episode indices, in the order they go into the new dataset
    tasks: dict[int, str] | None = None  # source index -> new task text


def check_selection(ds: LeRobotDataset, episodes: list[int]) -> list[int]:
    n = len(ds.episodes)
    bad = [i for i in episodes if not isinstance(i, int) or not 0 <= i < n]
    if bad:
        raise CurationError(422, f"episodes {bad} not found in {ds.root.name} (it has episodes 0..{n - 1})")
    if len(set(episodes)) != len(episodes):
        raise CurationError(422, f"an episode is listed more than once: {episodes}")
    return list(episodes)


def compatibility_problems(datasets: list[LeRobotDataset]) -> list[str]:
    """Why these datasets cannot be merged ([] when they can): fps, state/action features, cameras."""
    first = datasets[0]
    problems = []

    def cams(ds: LeRobotDataset) -> list[tuple[str, int | None, int | None]]:
        return [(c.key, c.height, c.width) for c in ds.cameras]

    for ds in datasets[1:]:
        name = f"{ds.root.name} vs {first.root.name}"
        if ds.fps != first.fps:
            problems.append(f"{name}: fps {ds.fps:g} vs {first.fps:g}")
        if (ds.state_dim, ds.action_dim) != (first.state_dim, first.action_dim):
            problems.append(
                f"{name}: state/action size {ds.state_dim}/{ds.action_dim} "
                f"vs {first.state_dim}/{first.action_dim}"
            )
        for key in ("observation.state", "action"):
            if ds.feature_names(key) != first.feature_names(key):
                problems.append(
                    f"{name}: '{key}' names {ds.feature_names(key)} vs {first.feature_names(key)}"
                )
        if cams(ds) != cams(first):
            problems.append(f"{name}: cameras (key, H, W) {cams(ds)} vs {cams(first)}")
    return problems


def write_new_dataset(target: Path, selections: list[Selection], cache: EpisodeCache) -> dict:
    """Read every selected episode through the bridge and write them as one v3.0 dataset."""
    if target.exists() or target.is_symlink():
        raise CurationError(409, f"{target.name} already exists; nothing is overwritten, pick a new name")
    datasets = [s.dataset for s in selections]
    problems = compatibility_problems(datasets)
    if problems:
        raise CurationError(422, "datasets are not compatible: " + "; ".join(problems))
    first = datasets[0]
    if first.fps != int(first.fps):
        raise CurationError(422, f"fps {first.fps:g} is not an integer; the v3.0 writer needs an integer fps")
    if not any(s.episodes for s in selections):
        raise CurationError(422, "no episodes selected: the new dataset would be empty")
    episodes: list[EpisodeData] = []
    provenance = []
    for sel in selections:
        ds = sel.dataset
        cameras = select_cameras(ds)  # feature key -> ACT name (the cache's names)
        for index in sel.episodes:
            rows = episode_rows(ds, index)
            cached = cache.get(ds, index)
            with h5py.File(cached.path, "r") as f:
                images = {
                    key: np.asarray(f[f"observations/images/{name}"][:]) for key, name in cameras.items()
                }
            task = _task_of(ds, rows.task_index, ds.episodes[index].tasks) or "task"
            if sel.tasks and index in sel.tasks:
                task = sel.tasks[index]
            episodes.append(EpisodeData(state=rows.state, action=rows.action, images=images, task=task))
            provenance.append({"dataset": ds.root.name, "episode": index})
    notes = []
    if any(ds.has_velocity for ds in datasets):
        notes.append("observation.velocity is not carried over (the writer has no velocity column)")
    try:
        write_lerobot_v30(
            target,
            episodes,
            fps=int(first.fps),
            robot_type=str(first.info.get("robot_type") or "unknown"),
            codec="h264",
            state_names=first.feature_names("observation.state"),
            action_names=first.feature_names("action"),
            crf=CRF,
        )
    except FileExistsError as err:
        raise CurationError(409, str(err)) from err
    except ValueError as err:
        raise CurationError(422, str(err)) from err
    log.info(
        "wrote %s: %d episodes from %s", target, len(episodes), sorted({p["dataset"] for p in provenance})
    )
    return {"episodes": len(episodes), "provenance": provenance, "notes": notes}


def remove_partial(target: Path) -> None:
    if target.is_dir() and not (target / "meta" / "info.json").is_file():
        shutil.rmtree(target, ignore_errors=True)


def writable_parent(target: Path) -> None:
    parent = target.parent
    parent.mkdir(parents=True, exist_ok=True)
    if not os.access(parent, os.W_OK):
        raise CurationError(403, f"{parent} is not writable by the manager (a read-only data root?)")
