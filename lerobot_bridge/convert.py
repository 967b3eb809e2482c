"""LeRobot dataset -> folder of upstream-ACT `episode_{i}.hdf5` files + a ConversionResult.

Plan first, then write: the metadata, every data parquet footer and every video file are
checked before the first episode is written, so a broken dataset fails in seconds and names
the file. Each episode is then converted in two passes: its numeric columns (small) decide the
kept row range (idle trimming, --episode_len), and only those rows' frames are decoded and
streamed to disk in blocks.
"""

from __future__ import annotations

import ctypes
import hashlib
import json
import logging
import multiprocessing
import os
import signal
import sys
import threading
import time
from collections.abc import Iterable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from lerobot_bridge.arrow import pa
from lerobot_bridge.atomic_io import atomic_write_json
from lerobot_bridge.dataset import (
    ACTION_KEY,
    STATE_KEY,
    VELOCITY_KEY,
    EpisodeMeta,
    LeRobotDataset,
    open_dataset,
    open_parquet,
    select_cameras,
)
from lerobot_bridge.errors import DatasetError
from lerobot_bridge.frame_codec import DEFAULT_JPEG_QUALITY, JpegEncoder, parse_image_size, resize_area
from lerobot_bridge.hdf5_writer import STORAGE_MODES, TEMP_FILE_RE, EpisodeWriter, remove_stale_episodes
from lerobot_bridge.parquet_io import (
    iter_episode_images,
    read_episode_rows,
    row_groups_for_episode,
)
from lerobot_bridge.selection import select_episodes
from lerobot_bridge.types import ConversionResult, EpisodeReport
from lerobot_bridge.video import SegmentReader, probe_size

log = logging.getLogger(__name__)

CONVERTER_VERSION = "1"  # bump when the output for the same input and options changes
BLOCK_FRAMES = 8  # PNG images decoded per block; in flight per worker: <= (1 + 4 queued) blocks of H x W x 3
FPS_TOLERANCE = 0.10  # median timestamp step vs 1/fps: more than this relative difference is warned about
WATCHDOG_SECONDS = 0.5  # how often a worker checks that its parent is still alive


@dataclass
class EpisodeJob:
    """Everything a (spawned) worker needs to convert one episode; picklable."""

    output_index: int
    output_path: Path
    episode: EpisodeMeta
    fps: float
    codebase_version: str
    cameras: list[tuple[str, str, str]]  # (feature key, ACT name, dtype "video" | "image")
    tasks: dict[int, str]
    state_dim: int
    action_dim: int
    velocity_key: str | None
    idle_threshold: float
    episode_len: int
    thread_count: int
    extra_attrs: dict = field(default_factory=dict)
    # camera key -> (H, W) every episode must decode to (decided in the planning step)
    frame_shapes: dict[str, tuple[int, int]] = field(default_factory=dict)
    # feature key -> info.json `names` (for error messages naming the component)
    feature_names: dict[str, list[str] | None] = field(default_factory=dict)
    storage: str = "raw"  # "raw" (T, H, W, 3) frames or "jpeg" (ALOHA's compressed rows)
    jpeg_quality: int = DEFAULT_JPEG_QUALITY
    image_size: tuple[int, int] | None = None  # (H, W) every frame is resized to; None keeps it


# ---------------------------------------------------------------------------------------------
# trimming


def idle_range(action: np.ndarray, threshold: float) -> tuple[int, int]:
    """Rows [start, stop) left after trimming the idle runs at both ends of an episode.

    An idle run is a run of consecutive actions whose max abs difference from frame to frame
    is below `threshold` (the arm is told to hold still, typically before the operator starts
    and after they stop). The whole run goes, including its last (first) frame, whose action
    is still "hold". Interior pauses stay. threshold <= 0 disables; an episode that is idle
    throughout is kept whole (there is nothing to anchor a trim).

    action (n, A) -> e.g. 4 leading and 6 trailing identical actions give (4, n - 6).
    """
    n = len(action)
    if threshold <= 0 or n < 2:
        return 0, n
    moving = np.abs(np.diff(action, axis=0)).max(axis=1) >= threshold  # (n-1,): a[t+1] vs a[t]
    if not moving.any():
        return 0, n
    first = int(np.argmax(moving))  # first t where a[t+1] differs from a[t]
    last = n - 2 - int(np.argmax(moving[::-1]))  # last such t
    start = first + 1 if first > 0 else 0  # frames 0..first hold the same action
    stop = last + 1 if last < n - 2 else n  # frames last+1..n-1 hold the same action
    return start, stop


def _pad_rows(x: np.ndarray, length: int) -> np.ndarray:
    """(k, D) -> (length, D), repeating the last row."""
    if len(x) >= length:
        return x[:length]
    return np.concatenate([x, np.repeat(x[-1:], length - len(x), axis=0)])


# ---------------------------------------------------------------------------------------------
# one episode (runs in a worker)


def convert_episode(job: EpisodeJob) -> EpisodeReport:
    """Convert one episode; every error names the episode and the file."""
    ep = job.episode
    try:
        return _convert_episode(job)
    except DatasetError as err:
        raise DatasetError(f"episode {ep.index}: {err}") from None
    except Exception as err:  # noqa: BLE001 - re-raised with the episode and file named
        raise RuntimeError(
            f"episode {ep.index} (data {ep.data_path}, videos {[str(v.path) for v in ep.videos.values()]}): "
            f"{type(err).__name__}: {err}"
        ) from err


def _convert_episode(job: EpisodeJob) -> EpisodeReport:
    t0 = time.perf_counter()
    ep = job.episode
    # Pass 1: the numeric columns (small) decide which rows are kept.
    rows = read_episode_rows(
        ep.data_path,
        ep.index,
        state_key=STATE_KEY,
        action_key=ACTION_KEY,
        velocity_key=job.velocity_key,
        state_dim=job.state_dim,
        action_dim=job.action_dim,
        expected_length=ep.length,
        feature_names=job.feature_names,
    )
    n = len(rows)
    if n == 0:
        raise DatasetError(f"{ep.data_path}: episode {ep.index} has no rows")
    start, stop = idle_range(rows.action, job.idle_threshold)
    kept = stop - start
    if (
        job.idle_threshold > 0
        and n > 1
        and not (np.abs(np.diff(rows.action, axis=0)) >= job.idle_threshold).any()
    ):
        log.warning("episode %d: no action changes by %g or more; kept whole", ep.index, job.idle_threshold)
    take = min(kept, job.episode_len) if job.episode_len > 0 else kept  # source rows written
    num_out = job.episode_len if job.episode_len > 0 else kept  # rows in the output (T)
    rows_out = slice(start, start + take)

    qvel = rows.velocity[rows_out] if rows.velocity is not None else np.zeros_like(rows.state[rows_out])
    task = _episode_task(job, rows.task_index[rows_out] if rows.task_index is not None else None)
    attrs = {
        "source_episode_index": ep.index,
        "task": task,
        "fps": job.fps,
        "codebase_version": job.codebase_version,
        "source_frame_start": start,  # first source frame_index kept
        "source_frames": n,
        "converter": f"lerobot_bridge {CONVERTER_VERSION}",
        **job.extra_attrs,
    }
    dropped: dict[str, int] = {}
    duplicated: dict[str, int] = {}
    # Pass 2: stream only the kept rows' frames. background=True: HDF5 writes run in a thread
    # while the next frames decode; every array handed over is fresh from the decoder (or a
    # read-only padding view) and never modified afterwards.
    with EpisodeWriter(
        job.output_path,
        num_out,
        sim=True,
        attrs=attrs,
        background=True,
        storage=job.storage,
        jpeg_quality=job.jpeg_quality,
        image_size=job.image_size,
    ) as writer:
        writer.write_lowdim(
            qpos=_pad_rows(rows.state[rows_out], num_out),
            qvel=_pad_rows(qvel, num_out),
            action=_pad_rows(rows.action[rows_out], num_out),
        )
        for key, name, dtype in job.cameras:
            if dtype == "image":
                blocks = iter_episode_images(
                    ep.data_path, ep.index, key, rows_out.start, rows_out.stop, BLOCK_FRAMES
                )
                blocks = _checked_size(blocks, job.frame_shapes.get(key), ep.data_path, ep.index, key)
                _write_camera(writer, name, blocks, num_out - take)
                dropped[name], duplicated[name] = 0, 0
                continue
            segment = ep.videos[key]
            # (take,) times in the (possibly shared) file: from_timestamp + the rows' own timestamps
            reader = SegmentReader(
                segment.path,
                segment.from_timestamp + rows.timestamp[rows_out],
                job.fps,
                thread_count=job.thread_count,
            )
            blocks = _checked_size(
                (frame[None] for frame in reader), job.frame_shapes.get(key), segment.path, ep.index, key
            )
            _write_camera(writer, name, blocks, num_out - take)
            dropped[name], duplicated[name] = reader.dropped, reader.duplicated
            _check_video_match(reader, ep, key, segment.from_timestamp, take)
    return EpisodeReport(
        output_index=job.output_index,
        source_index=ep.index,
        task=task,
        frames_in=n,
        frames_out=num_out,
        idle_trimmed_start=start,
        idle_trimmed_end=n - stop,
        padded=num_out - take,
        truncated=kept - take,
        dropped_frames=dropped,
        duplicated_frames=duplicated,
        seconds=round(time.perf_counter() - t0, 4),
    )


def _checked_size(
    blocks: Iterable[np.ndarray], expected: tuple[int, int] | None, source: Path, episode: int, key: str
) -> Iterator[np.ndarray]:
    """Pass blocks (B, H, W, 3) through, refusing a frame size other than the planned one, named
    against the SOURCE file and episode (the HDF5 writer only sees a temporary output name)."""
    for block in blocks:
        if expected is not None and tuple(block.shape[1:3]) != tuple(expected):
            raise DatasetError(
                f"{source}: episode {episode} camera '{key}' decodes to {block.shape[1]}x{block.shape[2]} "
                f"frames; expected {expected[0]}x{expected[1]} like the other episodes of this camera"
            )
        yield block


def _write_camera(writer: EpisodeWriter, name: str, blocks, pad: int) -> None:
    """Write blocks (B, H, W, 3) of one camera, then `pad` copies of its last frame (--episode_len)."""
    last = None
    for block in blocks:
        writer.append_images(name, block)
        last = block[-1]  # frames are never modified after being yielded: no copy
    for done in range(0, pad, BLOCK_FRAMES):
        count = min(BLOCK_FRAMES, pad - done)
        writer.append_images(name, np.broadcast_to(last, (count, *last.shape)))


def _check_video_match(
    reader: SegmentReader, ep: EpisodeMeta, key: str, from_timestamp: float, rows: int
) -> None:
    if reader.dropped > rows // 2:
        # Not a few lost frames but a video that does not cover the episode (wrong from_timestamp,
        # truncated or wrong file): filling the rows would fabricate the images.
        raise DatasetError(
            f"{reader.path}: camera '{key}' has no frame within half a frame period for {reader.dropped} "
            f"of {rows} rows (episode starts at {from_timestamp:.4f} s in this file, {reader.decoded} frames "
            f"decoded); the video does not match the data"
        )
    if reader.dropped or reader.duplicated:
        log.warning(
            "episode %d camera %s: %d rows had no frame within half a frame period (filled with the "
            "nearest frame), %d frames served two rows (%s)",
            ep.index,
            key,
            reader.dropped,
            reader.duplicated,
            reader.path,
        )


def _episode_task(job: EpisodeJob, task_index: np.ndarray | None) -> str:
    """The episode's task through the tasks table (task_index order is first appearance, never
    assume it); episode metadata is the fallback when the dataset has no tasks table."""
    if task_index is not None and len(task_index) and job.tasks:
        names = []
        for i in dict.fromkeys(task_index.tolist()):
            if i not in job.tasks:
                raise DatasetError(
                    f"{job.episode.data_path}: episode {job.episode.index} uses task_index {i}, "
                    f"which the tasks table does not list (known: {sorted(job.tasks)})"
                )
            names.append(job.tasks[i])
        return " | ".join(names)
    return " | ".join(job.episode.tasks)


# ---------------------------------------------------------------------------------------------
# the whole dataset


def _cpu_count() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def _check_files(dataset: LeRobotDataset, episodes: list[EpisodeMeta], cameras: dict[str, str]) -> None:
    """Fail before writing anything: every data parquet has a footer, every mp4 exists."""
    for path in dict.fromkeys(e.data_path for e in episodes):
        open_parquet(path)
    for ep in episodes:
        for key in cameras:
            segment = ep.videos.get(key)
            if segment is not None and not segment.path.is_file():
                raise DatasetError(
                    f"{segment.path}: video file not found (episode {ep.index}, camera '{key}'; "
                    f"from info.json video_path {dataset.info.get('video_path')!r})"
                )


def fingerprint(dataset: LeRobotDataset, episodes: list[EpisodeMeta], options: dict) -> str:
    """sha256 of what decides the output: info.json, episode metadata, the size and mtime of every
    file read, the options and the converter version. Equal fingerprints -> reusable output."""
    h = hashlib.sha256()
    h.update(CONVERTER_VERSION.encode())
    h.update(dataset.info_path.read_bytes())
    files: set[Path] = set()
    meta = []
    for ep in episodes:
        files.add(ep.data_path)
        videos = {
            k: (os.path.relpath(v.path, dataset.root), v.from_timestamp, v.to_timestamp)
            for k, v in ep.videos.items()
        }
        files.update(v.path for v in ep.videos.values())
        meta.append([ep.index, ep.length, ep.tasks, os.path.relpath(ep.data_path, dataset.root), videos])
    for name in ("tasks.jsonl", "tasks.parquet", "episodes.jsonl"):
        if (dataset.root / "meta" / name).is_file():
            files.add(dataset.root / "meta" / name)
    stats = {}
    for path in sorted(files):
        st = path.stat()
        stats[os.path.relpath(path, dataset.root)] = [st.st_size, st.st_mtime_ns]
    h.update(
        json.dumps(
            {"episodes": meta, "files": stats, "tasks": dataset.tasks, "options": options},
            sort_keys=True,
            default=str,
        ).encode()
    )
    return h.hexdigest()


def check_conversion_options(episode_len: int, max_episodes: int, idle_threshold: float) -> None:
    """The options every converter shares must be >= 0 (0 means "off" / "all")."""
    if episode_len < 0 or max_episodes < 0 or idle_threshold < 0:
        raise DatasetError(
            f"options must be >= 0: episode_len={episode_len}, max_episodes={max_episodes}, "
            f"idle_threshold={idle_threshold}"
        )


RAW_SOURCE_SIZE = {"storage": "raw", "jpeg_quality": None, "image_size": None}


def storage_options(
    storage: str, jpeg_quality: int, image_size: str | tuple[int, int] | list[int] | None
) -> dict:
    """Checked frame-storage options as recorded (and fingerprinted): {"storage", "jpeg_quality",
    "image_size"}. jpeg_quality is None with raw storage, so changing it alone does not reconvert."""
    if storage not in STORAGE_MODES:
        raise DatasetError(f"storage must be one of {', '.join(STORAGE_MODES)}, got {storage!r}")
    try:
        quality = int(jpeg_quality)
    except (TypeError, ValueError):
        quality = -1
    if not 1 <= quality <= 100:
        raise DatasetError(f"jpeg_quality must be an integer in 1..100, got {jpeg_quality!r}")
    try:
        size = parse_image_size(image_size)
    except (TypeError, ValueError) as err:
        raise DatasetError(str(err)) from None
    return {
        "storage": storage,
        "jpeg_quality": quality if storage == "jpeg" else None,
        "image_size": list(size) if size else None,
    }


def _frame_shapes(
    dataset: LeRobotDataset, episodes: list[EpisodeMeta], cameras: dict[str, str], warnings: list[str]
) -> dict[str, tuple[int, int]]:
    """(H, W) per selected camera, from the files themselves (every video header; the first PNG
    of the first episode for image cameras), checked before any episode is converted:

    - every video of a camera must have one size (else the odd file and its episode are named);
    - info.json's declared shape may be wrong: the decoded size wins, with a warning;
    - all cameras must have one size: ACT stacks the cameras of a sample into one tensor, so
      mixed sizes would convert fully and then crash the first training batch.
    """
    declared = {c.key: (c.height, c.width) for c in dataset.cameras}
    dtypes = {c.key: c.dtype for c in dataset.cameras}
    shapes: dict[str, tuple[int, int]] = {}
    for key in cameras:
        if dtypes[key] == "video":
            sizes: dict[Path, tuple[int, int]] = {}
            users: dict[Path, list[int]] = {}
            for ep in episodes:
                path = ep.videos[key].path
                if path not in sizes:
                    try:
                        sizes[path] = probe_size(path)
                    except DatasetError as err:  # same form as a worker's error: episode, then file
                        raise DatasetError(f"episode {ep.index}: {err} (camera '{key}')") from None
                users.setdefault(path, []).append(ep.index)
            first_path = episodes[0].videos[key].path
            shape = sizes[first_path]
            for path, size in sizes.items():
                if size != shape:
                    raise DatasetError(
                        f"{path}: camera '{key}' of episode {users[path][0]} is {size[0]}x{size[1]} (HxW), "
                        f"but episode {episodes[0].index} ({first_path}) is {shape[0]}x{shape[1]}; every "
                        "episode of a camera must have the same frame size (re-encode or drop that episode)"
                    )
            source = "videos"
        else:
            ep = episodes[0]
            try:
                first = next(iter_episode_images(ep.data_path, ep.index, key, 0, 1, 1), None)
            except (pa.ArrowException, OSError, ValueError) as err:
                if isinstance(err, DatasetError):
                    raise
                raise DatasetError(
                    f"{ep.data_path}: cannot read image column '{key}' of episode {ep.index} "
                    f"({type(err).__name__}: {err})"
                ) from err
            if first is None:
                raise DatasetError(f"{ep.data_path}: episode {ep.index} has no '{key}' image")
            shape = (int(first.shape[1]), int(first.shape[2]))
            source = f"images (first PNG of episode {ep.index} in {ep.data_path})"
        if declared[key] != (None, None) and declared[key] != shape:
            dh, dw = declared[key]
            warnings.append(
                f"{dataset.info_path}: features['{key}'].shape declares {dh}x{dw} (HxW) but its {source} "
                f"decode to {shape[0]}x{shape[1]}; using the decoded size"
            )
        shapes[key] = shape
    if len(set(shapes.values())) > 1:
        groups: dict[tuple[int, int], list[str]] = {}
        for key, shape in shapes.items():
            groups.setdefault(shape, []).append(key)
        largest = max(groups.values(), key=len)
        listing = ", ".join(f"'{k}' {h}x{w}" for k, (h, w) in shapes.items())
        raise DatasetError(
            f"{dataset.info_path}: the selected cameras have different frame sizes (HxW): {listing}; ACT "
            "stacks every camera of a sample into one tensor, so they must all have the same size. "
            f"Pick same-size cameras with --camera_keys (e.g. --camera_keys {' '.join(largest)})"
        )
    return shapes


def _fps_warning(dataset: LeRobotDataset, ep: EpisodeMeta) -> str | None:
    """A warning when the first episode's median timestamp step disagrees with info.json fps by
    more than FPS_TOLERANCE: frames are matched to rows by timestamp with a half-period (1/(2 fps))
    tolerance and training/deployment run at `fps`, so a wrong fps silently shifts both."""
    pf = open_parquet(ep.data_path)
    if not {"timestamp", "episode_index"} <= set(pf.schema_arrow.names):
        return None  # the episode's own read names the missing column
    try:
        groups = row_groups_for_episode(pf, ep.index)
        table = pf.read_row_groups(groups, columns=["timestamp", "episode_index"])
        ts = table.column("timestamp").to_numpy().astype(np.float64)[
            table.column("episode_index").to_numpy() == ep.index
        ]
    except (pa.ArrowException, OSError, ValueError, TypeError):
        return None  # unreadable or mistyped columns: the episode's own read reports them with the file
    steps = np.diff(ts[np.isfinite(ts)])  # NaN/Inf are refused when the episode is converted
    steps = steps[steps > 0]
    if len(steps) < 2:
        return None
    step, expected = float(np.median(steps)), 1.0 / dataset.fps
    if abs(step - expected) <= FPS_TOLERANCE * expected:
        return None
    return (
        f"{dataset.info_path}: fps is {dataset.fps:g} (a {expected * 1000:.2f} ms step) but episode "
        f"{ep.index}'s timestamps in {ep.data_path} step by {step * 1000:.2f} ms (median, "
        f"{1.0 / step:.3g} fps); frames are matched to rows within half a frame period of the "
        "declared fps, so check info.json fps"
    )


@dataclass
class _Plan:
    """What convert_dataset will do, decided from metadata and file headers before writing."""

    dataset: LeRobotDataset
    cameras: dict[str, str]  # key -> ACT name
    episodes: list[EpisodeMeta]
    options: dict  # as recorded in conversion.json (and fingerprinted)
    frame_shapes: dict[str, tuple[int, int]]  # key -> (H, W)
    warnings: list[str]
    frame: dict  # storage_options(): storage, jpeg_quality, image_size


def _plan(
    input_dir: str | os.PathLike,
    *,
    camera_keys: list[str] | None = None,
    camera_names: list[str] | None = None,
    episode_len: int = 0,
    idle_threshold: float = 1e-4,
    max_episodes: int = 0,
    storage: str = "raw",
    jpeg_quality: int = DEFAULT_JPEG_QUALITY,
    image_size: str | tuple[int, int] | list[int] | None = None,
    episodes: list[int] | None = None,
    exclude_episodes: list[int] | None = None,
) -> _Plan:
    """Open and check the dataset, its files and its cameras' frame sizes."""
    check_conversion_options(episode_len, max_episodes, idle_threshold)
    frame_options = storage_options(storage, jpeg_quality, image_size)
    dataset = open_dataset(input_dir)
    cameras = select_cameras(dataset, camera_keys, camera_names)
    warnings: list[str] = []
    if max_episodes > len(dataset.episodes):
        warnings.append(
            f"max_episodes={max_episodes} but {dataset.root} has {len(dataset.episodes)} episodes; "
            f"using all {len(dataset.episodes)}"
        )
    selection = None if episodes is None and exclude_episodes is None else [episodes, exclude_episodes]
    chosen = dataset.episodes
    if selection is not None:
        keep = set(select_episodes([ep.index for ep in dataset.episodes], episodes, exclude_episodes,
                                   str(dataset.root)))
        chosen = [ep for ep in dataset.episodes if ep.index in keep]
    episodes = chosen[:max_episodes] if max_episodes else chosen
    _check_files(dataset, episodes, cameras)
    shapes = _frame_shapes(dataset, episodes, cameras, warnings)
    fps_warning = _fps_warning(dataset, episodes[0])
    if fps_warning:
        warnings.append(fps_warning)
    options = {
        "camera_keys": list(cameras),
        "camera_names": list(cameras.values()),
        "episode_len": episode_len,
        "idle_threshold": float(idle_threshold),  # 0 and 0.0 must fingerprint alike
        "max_episodes": max_episodes,
        # only when given, so the fingerprints of earlier conversions stay valid
        **({"selection": selection} if selection is not None else {}),
        # only when not the default (raw at the source size), so the fingerprints of earlier
        # conversions, all raw, stay valid
        **(frame_options if frame_options != RAW_SOURCE_SIZE else {}),
    }
    return _Plan(dataset, cameras, episodes, options, shapes, warnings, frame_options)


def conversion_fingerprint(input_dir: str | os.PathLike, **options) -> str:
    """The `ConversionResult.fingerprint` that `convert_dataset(input_dir, out, **options)` returns
    (options: its keyword arguments but `workers` and `progress`, which do not change the output),
    read from the metadata without converting: equal to an earlier result's -> that output is reusable."""
    plan = _plan(input_dir, **options)
    return fingerprint(plan.dataset, plan.episodes, plan.options)


# Free-space estimate. Per episode file: HDF5 metadata (superblock, groups, attrs, chunk index);
# measured 14-20 KB on small episodes, so 32 KiB is an upper bound.
EPISODE_FILE_OVERHEAD = 32 * 1024
JPEG_SAMPLE_FRAMES = 4  # frames per camera encoded to measure the JPEG size of this dataset
# JPEG rows are padded to the episode's longest frame and later frames may hold more detail than
# the sampled ones: the largest sampled JPEG is scaled by this.
JPEG_SIZE_MARGIN = 1.5
# When no frame can be sampled: bytes per pixel of a JPEG row at quality <= 95; natural 640x480
# camera frames at libjpeg quality 90 are about 0.2-0.35 bytes per pixel.
JPEG_FALLBACK_BYTES_PER_PIXEL = 0.5


def estimate_conversion_bytes(input_dir: str | os.PathLike, **options) -> int:
    """An upper bound on the bytes `convert_dataset(input_dir, out, **options)` writes, before
    converting: for the free-space check (the output is written in full before training starts).

    options: convert_dataset's keyword arguments (`workers` and `progress` are ignored). From the
    metadata: frames = every selected episode's length (or episode_len each; idle trimming only
    removes frames), times cameras. Raw: H x W x 3 bytes per camera-frame at the stored size
    (image_size if given). JPEG: the largest of JPEG_SAMPLE_FRAMES frames per camera decoded from
    the first episode and encoded with these options, times JPEG_SIZE_MARGIN (a measured factor
    for this dataset; JPEG_FALLBACK_BYTES_PER_PIXEL if nothing decodes). Plus qpos, qvel and
    action as float32 and EPISODE_FILE_OVERHEAD per episode."""
    options = {k: v for k, v in options.items() if k not in ("workers", "progress")}
    plan = _plan(input_dir, **options)
    episode_len = int(options.get("episode_len", 0) or 0)
    frames = episode_len * len(plan.episodes) if episode_len > 0 else sum(ep.length for ep in plan.episodes)
    size = plan.frame["image_size"]
    per_camera_frame = 0
    for key in plan.cameras:
        h, w = size or plan.frame_shapes[key]
        if plan.frame["storage"] == "jpeg":
            per_camera_frame += _jpeg_frame_bytes(plan, key, (h, w), plan.frame["jpeg_quality"])
        else:
            per_camera_frame += h * w * 3
    lowdim = 4 * (2 * plan.dataset.state_dim + plan.dataset.action_dim)
    return int(frames * (per_camera_frame + lowdim) + EPISODE_FILE_OVERHEAD * len(plan.episodes))


def _jpeg_frame_bytes(plan: _Plan, key: str, size: tuple[int, int], quality: int) -> int:
    """Estimated stored bytes per frame of camera `key` in JPEG rows (see estimate_conversion_bytes)."""
    fallback = int(np.ceil(size[0] * size[1] * JPEG_FALLBACK_BYTES_PER_PIXEL))
    try:
        sample = _sample_frames(plan, key)
    except Exception as err:  # noqa: BLE001 - an estimate must not fail where conversion reports it
        log.debug("no sample frames of %s for the JPEG size estimate (%s)", key, err)
        sample = None
    if sample is None or not len(sample):
        return fallback
    sample = resize_area(sample, size)
    encoder = JpegEncoder(size[0], size[1], quality)
    largest = max(len(encoder.encode(frame)) for frame in sample)
    return int(np.ceil(largest * JPEG_SIZE_MARGIN))


def _sample_frames(plan: _Plan, key: str) -> np.ndarray | None:
    """Up to JPEG_SAMPLE_FRAMES frames (N, H, W, 3) of camera `key`, from its first episode."""
    import av

    ep = plan.episodes[0]
    segment = ep.videos.get(key)
    if segment is None:  # image (PNG) camera
        n = JPEG_SAMPLE_FRAMES
        return np.asarray(next(iter_episode_images(ep.data_path, ep.index, key, 0, n, n)))
    frames = []
    with av.open(str(segment.path)) as container:
        stream = container.streams.video[0]
        # from the episode's start: in a v3.0 file shared by episodes, the file start is another one's
        start = int(segment.from_timestamp / stream.time_base) if stream.time_base else 0
        if start > 0:
            container.seek(start, stream=stream, backward=True)
        for frame in container.decode(stream):
            if frame.time is not None and frame.time < segment.from_timestamp - 1e-3:
                continue
            frames.append(frame.to_ndarray(format="rgb24"))
            if len(frames) == JPEG_SAMPLE_FRAMES:
                break
    return np.stack(frames) if frames else None


def convert_dataset(
    input_dir: str | os.PathLike,
    output_dir: str | os.PathLike,
    *,
    camera_keys: list[str] | None = None,
    camera_names: list[str] | None = None,
    episode_len: int = 0,
    idle_threshold: float = 1e-4,
    max_episodes: int = 0,
    storage: str = "raw",
    jpeg_quality: int = DEFAULT_JPEG_QUALITY,
    image_size: str | tuple[int, int] | list[int] | None = None,
    episodes: list[int] | None = None,
    exclude_episodes: list[int] | None = None,
    workers: int = 0,
    progress: bool | None = None,
) -> ConversionResult:
    """Convert a LeRobot dataset to `output_dir/episode_{i}.hdf5`, i = 0.. in episode_index order.

    episode_len: 0 keeps each episode's length; N truncates to N or pads by repeating the last frame.
    idle_threshold: trim idle runs at both ends (max abs action change below it); 0 disables.
    max_episodes: 0 = all, else the first N by episode_index (of the selected ones).
    episodes / exclude_episodes: source episode indices to keep / drop (lerobot_bridge.selection).
    storage: "raw" stores (T, H, W, 3) uint8 frames (upstream ACT's layout, 3 bytes a pixel);
        "jpeg" stores ALOHA's compressed layout (attr compress=True, padded JPEG rows, /compress_len)
        that act-plus-plus reads, at `jpeg_quality` (libjpeg scale, 1..100), decoded by the loader.
    image_size: (H, W) or "HxW": resize every frame (area averaging) at conversion; None keeps
        the source size. Recorded in each episode (attr image_size) and in result.extra.
    workers: 0 = one per CPU (at most one per episode); N processes (spawn), FFmpeg threads
        split between them. 1 runs in this process.
    progress: a tqdm bar (True), log lines (False), or None = bar only on a terminal.

    Writes `conversion.json` (the returned result) last. On any error the episode files of this
    run and conversion.json are removed, so a failed run never leaves a folder that looks complete.
    """
    t0 = time.perf_counter()
    if workers < 0:
        raise DatasetError(f"options must be >= 0: workers={workers}")
    plan = _plan(
        input_dir,
        camera_keys=camera_keys,
        camera_names=camera_names,
        episode_len=episode_len,
        idle_threshold=idle_threshold,
        max_episodes=max_episodes,
        storage=storage,
        jpeg_quality=jpeg_quality,
        image_size=image_size,
        episodes=episodes,
        exclude_episodes=exclude_episodes,
    )
    dataset, cameras, episodes, options = plan.dataset, plan.cameras, plan.episodes, plan.options
    for message in plan.warnings:
        log.warning("%s", message)
    fp = fingerprint(dataset, episodes, options)

    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    cpus = _cpu_count()
    n_workers = workers or cpus
    n_workers = max(1, min(n_workers, len(episodes)))
    # One worker: FFmpeg's own choice (0). Several: split the CPUs, or every worker's decoder
    # starts cpus+1 threads and they oversubscribe the machine (docs/FORMATS.md 1.4).
    threads = 0 if n_workers == 1 else max(1, cpus // n_workers)
    dtypes = {c.key: c.dtype for c in dataset.cameras}
    velocity_key = VELOCITY_KEY if dataset.has_velocity else None
    jobs = [
        EpisodeJob(
            output_index=i,
            output_path=out / f"episode_{i}.hdf5",
            episode=ep,
            fps=dataset.fps,
            codebase_version=dataset.version,
            cameras=[(k, name, dtypes[k]) for k, name in cameras.items()],
            tasks=dataset.tasks,
            state_dim=dataset.state_dim,
            action_dim=dataset.action_dim,
            velocity_key=velocity_key,
            idle_threshold=idle_threshold,
            episode_len=episode_len,
            thread_count=threads,
            extra_attrs={"source_dataset": str(dataset.root.name)},
            frame_shapes=plan.frame_shapes,
            feature_names={
                k: dataset.feature_names(k) for k in (STATE_KEY, ACTION_KEY, velocity_key) if k is not None
            },
            storage=plan.frame["storage"],
            jpeg_quality=plan.frame["jpeg_quality"] or DEFAULT_JPEG_QUALITY,
            image_size=tuple(plan.frame["image_size"]) if plan.frame["image_size"] else None,
        )
        for i, ep in enumerate(episodes)
    ]
    log.info(
        "converting %d episodes of %s (%s, %g fps, cameras %s) with %d worker(s) x %s decoder thread(s)",
        len(jobs),
        dataset.root,
        dataset.version,
        dataset.fps,
        cameras,
        n_workers,
        threads or "auto",
    )
    try:
        reports = _run_jobs(jobs, n_workers, progress)
    except BaseException:
        discard_outputs(out, len(jobs))
        raise
    remove_stale_episodes(out, len(jobs))

    result = ConversionResult(
        input_kind="lerobot",
        input_dir=str(Path(input_dir).absolute()),
        output_dir=str(out.absolute()),
        codebase_version=dataset.version,
        fps=dataset.fps,
        cameras=cameras,
        state_dim=dataset.state_dim,
        action_dim=dataset.action_dim,
        state_names=dataset.feature_names(STATE_KEY),
        action_names=dataset.feature_names(ACTION_KEY),
        episodes=reports,
        fingerprint=fp,
        tasks=[dataset.tasks[i] for i in sorted(dataset.tasks)]
        or list(dict.fromkeys(r.task for r in reports)),
        total_frames_in=sum(r.frames_in for r in reports),
        total_frames_out=sum(r.frames_out for r in reports),
        seconds=round(time.perf_counter() - t0, 3),
        extra={
            "robot_type": dataset.info.get("robot_type"),
            "camera_dtypes": {k: dtypes[k] for k in cameras},
            "has_velocity": dataset.has_velocity,
            "total_episodes_in_source": len(dataset.episodes),
            "options": options,
            "workers": n_workers,
            "decoder_threads_per_worker": threads,
            "frame_shapes": {k: list(v) for k, v in plan.frame_shapes.items()},
            # how frames are stored (also in options, which the fingerprint covers, unless raw at the
            # source size: the default, left out so earlier conversions' fingerprints stay valid)
            "storage": plan.frame["storage"],
            "jpeg_quality": plan.frame["jpeg_quality"],
            "image_size": plan.frame["image_size"],  # [H, W] stored, or None = the source size
            "source_image_size": list(next(iter(plan.frame_shapes.values()), ())) or None,
            "bytes_written": sum((out / f"episode_{i}.hdf5").stat().st_size for i in range(len(jobs))),
        },
        warnings=list(plan.warnings),
    )
    save_result(result)
    return result


def _run_jobs(jobs: list[EpisodeJob], n_workers: int, progress: bool | None) -> list[EpisodeReport]:
    """Convert every job; each episode is reported as soon as it finishes.

    On any exception (a worker's DatasetError, KeyboardInterrupt, the SIGTERM handlers of our
    CLIs, which raise KeyboardInterrupt) the queued episodes are cancelled and the workers are
    terminated at once instead of finishing their episode, so the caller can remove the outputs
    and exit within a second or two. The caller (convert_dataset) discards the outputs.
    """
    reports: list[EpisodeReport] = []
    with EpisodeProgress(len(jobs), progress) as bar:
        if n_workers == 1:
            for job in jobs:
                reports.append(convert_episode(job))
                bar.done(reports[-1])
            return reports
        # spawn: PyAV/FFmpeg and h5py are not fork-safe.
        pool = ProcessPoolExecutor(
            max_workers=n_workers,
            mp_context=multiprocessing.get_context("spawn"),
            initializer=_worker_init,
            initargs=(os.getpid(),),
        )
        try:
            order: dict[Future, int] = {}
            for i, job in enumerate(jobs):
                order[pool.submit(convert_episode, job)] = i
            pending = set(order)
            while pending:
                # FIRST_COMPLETED: report each episode when it finishes, not all at the end.
                finished, pending = wait(pending, return_when=FIRST_COMPLETED)
                for fut in sorted(finished, key=order.__getitem__):
                    err = fut.exception()
                    if err is not None:
                        raise err  # a worker's DatasetError stays a DatasetError (exit 2)
                    reports.append(fut.result())
                    bar.done(reports[-1])
        except BaseException:
            _stop_pool_now(pool)
            raise
        pool.shutdown(wait=True)
    return sorted(reports, key=lambda r: r.output_index)


def _stop_pool_now(pool: ProcessPoolExecutor, grace: float = 1.0) -> None:
    """Cancel what is queued and end the workers now: SIGTERM, then SIGKILL after `grace` s.

    `shutdown(wait=True)` (what `with ProcessPoolExecutor` does) would let every worker finish
    the episode it holds, minutes for long episodes, while the user waits on Ctrl-C or SIGTERM.
    Returns once every worker is gone, so none of them writes to the output folder any more."""
    processes = list((getattr(pool, "_processes", None) or {}).values())  # before shutdown clears it
    pool.shutdown(wait=False, cancel_futures=True)
    for proc in processes:
        if proc.is_alive():
            proc.terminate()
    deadline = time.monotonic() + grace
    for proc in processes:
        proc.join(max(0.0, deadline - time.monotonic()))
        if proc.is_alive():
            proc.kill()
            proc.join(1.0)


def _worker_init(parent_pid: int) -> None:
    """Runs first in every worker process (spawned, so a fresh interpreter)."""
    # Ctrl-C reaches the whole foreground process group; only the parent acts on it (it stops
    # the workers), a KeyboardInterrupt here would just print a traceback per worker.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _die_with_parent(parent_pid)


def _die_with_parent(parent_pid: int) -> None:
    """Make this process exit when `parent_pid` dies, even by SIGKILL (no cleanup runs there):
    otherwise every worker (~300 MB each) and, through them, multiprocessing's resource tracker
    live on forever.

    Two mechanisms: Linux's PR_SET_PDEATHSIG delivers SIGKILL at once, but fires when the parent
    THREAD that created this process exits (the pool may start workers from a thread other than
    the main one), so a daemon thread also polls getppid(), which changes when the parent dies."""
    if sys.platform.startswith("linux"):
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(1, signal.SIGKILL, 0, 0, 0)  # 1 = PR_SET_PDEATHSIG
        except (OSError, AttributeError):
            pass  # the watchdog below still works
    if os.getppid() != parent_pid:  # the parent died before prctl took effect
        os.kill(os.getpid(), signal.SIGKILL)
    threading.Thread(target=_watch_parent, args=(parent_pid,), name="watch-parent", daemon=True).start()


def _watch_parent(parent_pid: int) -> None:
    while True:
        time.sleep(WATCHDOG_SECONDS)
        if os.getppid() != parent_pid:  # reparented: the parent is gone
            os.kill(os.getpid(), signal.SIGKILL)


class EpisodeProgress:
    """Progress over converted episodes, for every converter: a tqdm bar (progress=True), a log
    line per episode (False), or None = a bar only on a terminal."""

    def __init__(self, total: int, progress: bool | None) -> None:
        self.total = total
        self.bar = None
        if sys.stderr.isatty() if progress is None else progress:
            from tqdm import tqdm

            self.bar = tqdm(total=total, unit="episode", desc="converting", dynamic_ncols=True)

    def done(self, report: EpisodeReport) -> None:
        if self.bar is not None:
            self.bar.update(1)
            self.bar.set_postfix(frames=report.frames_out)
            return
        log.info(
            "episode %d/%d (source %d): %d -> %d frames (idle trimmed %d+%d) in %.2f s",
            report.output_index + 1,
            self.total,
            report.source_index,
            report.frames_in,
            report.frames_out,
            report.idle_trimmed_start,
            report.idle_trimmed_end,
            report.seconds,
        )

    def __enter__(self) -> EpisodeProgress:
        return self

    def __exit__(self, *exc) -> None:
        if self.bar is not None:
            self.bar.close()


def discard_outputs(out: Path, count: int) -> None:
    """After a failed run, remove its `episode_{i}.hdf5` (i < count), `conversion.json` and every
    EpisodeWriter temporary: episodes already rewritten plus older ones would make a folder that
    looks complete but mixes runs, and a terminated worker never removes its own temporary."""
    for i in range(count):
        (out / f"episode_{i}.hdf5").unlink(missing_ok=True)
    (out / "conversion.json").unlink(missing_ok=True)
    if out.is_dir():
        for path in out.iterdir():
            if TEMP_FILE_RE.match(path.name):
                path.unlink(missing_ok=True)


def save_result(result: ConversionResult) -> None:
    """Write `conversion.json` in the output folder, last: a folder holding one is complete, and
    its fingerprint says for which input and options (see `conversion_fingerprint`)."""
    atomic_write_json(Path(result.output_dir) / "conversion.json", result.to_dict())
    log.info(
        "converted %d episodes, %d -> %d frames in %.1f s",
        len(result.episodes),
        result.total_frames_in,
        result.total_frames_out,
        result.seconds,
    )
