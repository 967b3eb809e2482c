"""Write a LeRobot v3.0 dataset (video cameras) with pyarrow and PyAV, no `lerobot` needed.

The demo records its expert episodes through this writer so they reach training through the
same bridge as user data. The layout matches what lerobot 0.6 writes (checked against the
fixtures in `tests/data/lerobot/so100_v30_video*`):

    meta/info.json                              codebase_version "v3.0", features, path templates
    meta/tasks.parquet                          task_index (int64), task (string)
    meta/stats.json                             per feature min/max/mean/std/count/q01..q99
    meta/episodes/chunk-000/file-000.parquet    one row per episode (indices, video spans, stats)
    data/chunk-000/file-000.parquet             one row per frame (vectors as fixed_size_list)
    videos/<key>/chunk-000/file-000.mp4         all episodes of one camera, back to back

All episodes go into one data file and one mp4 per camera (fine for demo-sized data). An
episode's video starts at `from_timestamp`, read back from the muxed packets (the measured
duration of the earlier episodes), not computed as `index / fps`.

Everything is written into a temporary sibling directory and renamed into place at the
end, so an interrupted run never leaves a folder that looks like a valid dataset.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

CODEBASE_VERSION = "v3.0"
CHUNKS_SIZE = 1000
DATA_PATH = "data/chunk-{chunk_index:03d}/file-{file_index:03d}.parquet"
VIDEO_PATH = "videos/{video_key}/chunk-{chunk_index:03d}/file-{file_index:03d}.mp4"
EPISODES_PATH = "meta/episodes/chunk-000/file-000.parquet"
QUANTILES = (0.01, 0.10, 0.50, 0.90, 0.99)
# codec name in info.json -> PyAV encoder, as lerobot's `encode_video_frames` uses them.
ENCODERS = {"h264": "libx264", "av1": "libsvtav1"}
INDEX_FEATURES = ("timestamp", "frame_index", "episode_index", "index", "task_index")


@dataclass
class EpisodeData:
    """One recorded episode. Row t pairs the observation at t with the action taken at t."""

    state: np.ndarray  # (T, D) float32
    action: np.ndarray  # (T, A) float32
    images: dict[str, np.ndarray]  # camera key -> (T, H, W, 3) uint8 RGB
    task: str


def video_key(camera: str) -> str:
    """`top` -> `observation.images.top`; full keys pass through."""
    return camera if camera.startswith("observation.") else f"observation.images.{camera}"


def write_lerobot_v30(
    root: str | Path,
    episodes: Sequence[EpisodeData],
    fps: int,
    robot_type: str = "demo",
    codec: str = "h264",
    state_names: list[str] | None = None,
    action_names: list[str] | None = None,
    crf: int = 30,
    gop: int = 2,
    overwrite: bool = False,
) -> Path:
    """Write `episodes` as a LeRobot v3.0 dataset at `root` and return `root`.

    codec: "h264" (libx264) or "av1" (libsvtav1, lerobot's default). crf/gop as lerobot's
    encoder settings (lerobot: crf 30, g 2). Image sizes must be even (yuv420p).
    """
    root = Path(root)
    if codec not in ENCODERS:
        raise ValueError(f"codec must be one of {sorted(ENCODERS)}, got {codec!r}")
    if root.exists() and not overwrite:
        raise FileExistsError(f"{root} exists (pass overwrite=True to replace it)")
    state_dim, action_dim, cameras = _check_episodes(episodes)
    state_names = _check_names(state_names, state_dim, "state_names")
    action_names = _check_names(action_names, action_dim, "action_names")

    root.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{root.name}.tmp-", dir=root.parent))
    umask = os.umask(0)
    os.umask(umask)
    tmp.chmod(0o777 & ~umask)  # mkdtemp makes it 0700; the dataset should get normal permissions
    try:
        tasks = list(dict.fromkeys(ep.task for ep in episodes))  # first-appearance order, as lerobot
        lengths = [len(ep.state) for ep in episodes]
        starts = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)  # global index ranges

        frames = _frame_table(episodes, fps, tasks)
        _write_data(tmp / DATA_PATH.format(chunk_index=0, file_index=0), frames, state_dim, action_dim)

        spans: dict[str, list[tuple[float, float]]] = {}
        video_info: dict[str, dict] = {}
        for cam in cameras:
            key = video_key(cam)
            path = tmp / VIDEO_PATH.format(video_key=key, chunk_index=0, file_index=0)
            stacked = [ep.images[cam] for ep in episodes]
            spans[key] = _encode_video(path, stacked, fps, codec, crf, gop)
            height, width = stacked[0].shape[1:3]
            video_info[key] = _video_info(height, width, fps, codec, crf, gop)

        per_episode_stats = [
            _episode_stats(ep, frames, starts[i], starts[i + 1]) for i, ep in enumerate(episodes)
        ]
        _write_episodes(tmp / EPISODES_PATH, episodes, tasks, starts, spans, per_episode_stats)
        _write_tasks(tmp / "meta/tasks.parquet", tasks)
        stats = _dataset_stats(episodes, frames)
        _write_json(tmp / "meta/stats.json", stats)

        features: dict[str, dict] = {
            "observation.state": {"dtype": "float32", "shape": [state_dim], "names": state_names},
            "action": {"dtype": "float32", "shape": [action_dim], "names": action_names},
        }
        for key, info in video_info.items():
            features[key] = {
                "dtype": "video",
                "shape": [info["video.height"], info["video.width"], 3],
                "names": ["height", "width", "channels"],
                "info": info,
            }
        features["timestamp"] = {"dtype": "float32", "shape": [1], "names": None}
        for name in INDEX_FEATURES[1:]:
            features[name] = {"dtype": "int64", "shape": [1], "names": None}
        info_json = {
            "codebase_version": CODEBASE_VERSION,
            "fps": fps,
            "features": features,
            "total_episodes": len(episodes),
            "total_frames": int(starts[-1]),
            "total_tasks": len(tasks),
            "chunks_size": CHUNKS_SIZE,
            "data_files_size_in_mb": 100,
            "video_files_size_in_mb": 200,
            "data_path": DATA_PATH,
            "video_path": VIDEO_PATH,
            "robot_type": robot_type,
            "splits": {"train": f"0:{len(episodes)}"},
        }
        _write_json(tmp / "meta/info.json", info_json)

        if root.exists():
            shutil.rmtree(root)
        os.replace(tmp, root)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return root


# ----------------------------------------------------------------------------- validation


def _check_episodes(episodes: Sequence[EpisodeData]) -> tuple[int, int, list[str]]:
    if not episodes:
        raise ValueError("no episodes to write")
    first = episodes[0]
    state_dim, action_dim = first.state.shape[1], first.action.shape[1]
    cameras = list(first.images)
    for i, ep in enumerate(episodes):
        n = len(ep.state)
        if n == 0:
            raise ValueError(f"episode {i}: no frames")
        if ep.state.shape != (n, state_dim) or ep.action.shape != (n, action_dim):
            raise ValueError(
                f"episode {i}: state {ep.state.shape} / action {ep.action.shape}, "
                f"expected ({n}, {state_dim}) / ({n}, {action_dim})"
            )
        if list(ep.images) != cameras:
            raise ValueError(f"episode {i}: cameras {list(ep.images)}, expected {cameras}")
        for cam, img in ep.images.items():
            ref = first.images[cam].shape[1:]
            if img.dtype != np.uint8 or img.ndim != 4 or img.shape[0] != n or img.shape[1:] != ref:
                raise ValueError(
                    f"episode {i} camera {cam!r}: images {img.dtype} {img.shape}, "
                    f"expected uint8 ({n}, {ref[0]}, {ref[1]}, 3)"
                )
            if img.shape[3] != 3 or img.shape[1] % 2 or img.shape[2] % 2:
                raise ValueError(f"camera {cam!r}: need RGB frames with even height/width, got {img.shape}")
        if not isinstance(ep.task, str) or not ep.task:
            raise ValueError(f"episode {i}: task must be a non-empty string")
    return state_dim, action_dim, cameras


def _check_names(names: list[str] | None, dim: int, what: str) -> list[str] | None:
    if names is not None and len(names) != dim:
        raise ValueError(f"{what} has {len(names)} names for dimension {dim}")
    return list(names) if names is not None else None


# ----------------------------------------------------------------------------- data file


def _frame_table(episodes: Sequence[EpisodeData], fps: int, tasks: list[str]) -> dict[str, np.ndarray]:
    """All frames of all episodes as flat columns (global row order)."""
    lengths = [len(ep.state) for ep in episodes]
    frame_index = np.concatenate([np.arange(n, dtype=np.int64) for n in lengths])
    return {
        "observation.state": np.concatenate([ep.state for ep in episodes]).astype(np.float32),
        "action": np.concatenate([ep.action for ep in episodes]).astype(np.float32),
        # lerobot stores frame_index / fps as float32.
        "timestamp": (frame_index / fps).astype(np.float32),
        "frame_index": frame_index,
        "episode_index": np.repeat(np.arange(len(episodes), dtype=np.int64), lengths),
        "index": np.arange(sum(lengths), dtype=np.int64),
        "task_index": np.repeat(np.array([tasks.index(ep.task) for ep in episodes], np.int64), lengths),
    }


def _fixed_list(values: np.ndarray) -> pa.FixedSizeListArray:
    """(N, D) float32 -> fixed_size_list<float>[D], how `datasets` stores lerobot vectors."""
    return pa.FixedSizeListArray.from_arrays(pa.array(values.reshape(-1), pa.float32()), values.shape[1])


def _write_data(path: Path, frames: dict[str, np.ndarray], state_dim: int, action_dim: int) -> None:
    # The `huggingface` schema metadata lets `datasets` (and so lerobot) restore the features.
    def vector(d: int) -> dict:
        return {"feature": {"dtype": "float32", "_type": "Value"}, "length": d, "_type": "List"}

    hf_features = {"observation.state": vector(state_dim), "action": vector(action_dim)}
    hf_features["timestamp"] = {"dtype": "float32", "_type": "Value"}
    for name in INDEX_FEATURES[1:]:
        hf_features[name] = {"dtype": "int64", "_type": "Value"}
    columns = {
        "observation.state": _fixed_list(frames["observation.state"]),
        "action": _fixed_list(frames["action"]),
        **{name: pa.array(frames[name]) for name in INDEX_FEATURES},
    }
    table = pa.table(columns).replace_schema_metadata(
        {"huggingface": json.dumps({"info": {"features": hf_features}})}
    )
    _write_parquet(table, path)


# ----------------------------------------------------------------------------- video


def _encode_video(
    path: Path, episodes: list[np.ndarray], fps: int, codec: str, crf: int, gop: int
) -> list[tuple[float, float]]:
    """Encode all episodes' frames into one mp4; return each episode's (from, to) seconds.

    The spans are read back from the muxed file (packet pts x time base), so they are what
    a reader will find, whatever time base the muxer chose.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    height, width = episodes[0].shape[1:3]
    rate = Fraction(fps).limit_denominator(1001)
    options = {"g": str(gop), "crf": str(crf)}
    if codec == "av1":
        options["preset"] = "12"  # lerobot's default for libsvtav1
    os.environ.setdefault("SVT_LOG", "1")  # SVT-AV1 prints its banner to stderr otherwise
    with av.open(str(path), "w", format="mp4") as container:
        stream = container.add_stream(ENCODERS[codec], rate=rate, options=options)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        pts = 0
        for frames in episodes:
            for image in frames:
                frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(image), format="rgb24")
                frame.pts, frame.time_base = pts, 1 / rate
                pts += 1
                for packet in stream.encode(frame):
                    container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)

    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        packet_pts = sorted(p.pts for p in container.demux(stream) if p.pts is not None)
        time_base = stream.time_base
    total = sum(len(f) for f in episodes)
    if len(packet_pts) != total:
        raise RuntimeError(f"{path}: muxed {len(packet_pts)} frames, expected {total}")
    seconds = [float(p * time_base) for p in packet_pts]
    frame_period = float(1 / rate)
    spans, start = [], 0
    for frames in episodes:
        end = start + len(frames)
        to = seconds[end] if end < total else seconds[-1] + frame_period
        spans.append((seconds[start], to))
        start = end
    return spans


def _video_info(height: int, width: int, fps: int, codec: str, crf: int, gop: int) -> dict:
    return {
        "video.height": int(height),
        "video.width": int(width),
        "video.codec": codec,
        "video.pix_fmt": "yuv420p",
        "video.fps": fps,
        "video.channels": 3,
        "has_audio": False,
        "video.g": gop,
        "video.crf": crf,
        "video.preset": 12 if codec == "av1" else None,
        "video.fast_decode": 0,
        "video.video_backend": "pyav",
        "video.extra_options": {},
        "is_depth_map": False,
    }


# ----------------------------------------------------------------------------- stats


def _vector_stats(values: np.ndarray) -> dict[str, np.ndarray]:
    """(N, D) -> lerobot's stats block: each entry shape (D,) (count: (1,))."""
    values = values.astype(np.float64)
    q = np.quantile(values, QUANTILES, axis=0)
    stats = {
        "min": values.min(0),
        "max": values.max(0),
        "mean": values.mean(0),
        "std": values.std(0),
        "count": np.array([len(values)], np.int64),
    }
    stats.update({f"q{round(p * 100):02d}": q[i] for i, p in enumerate(QUANTILES)})
    return stats


def _image_stats(images: np.ndarray, max_frames: int = 100) -> dict[str, np.ndarray]:
    """(T, H, W, 3) uint8 -> per-channel stats in [0, 1], shaped (3, 1, 1) as lerobot stores them.

    Like lerobot, estimated on an evenly spaced subset of frames; count is the frame count.
    """
    step = max(1, len(images) // max_frames)
    pixels = images[::step].reshape(-1, 3).astype(np.float64) / 255.0
    stats = _vector_stats(pixels)
    stats = {k: v.reshape(3, 1, 1) for k, v in stats.items() if k != "count"}
    stats["count"] = np.array([len(images)], np.int64)
    return {k: stats[k] for k in ("min", "max", "mean", "std", "count", *_quantile_names())}


def _quantile_names() -> list[str]:
    return [f"q{round(p * 100):02d}" for p in QUANTILES]


def _stats_for_rows(ep_images: dict[str, np.ndarray], frames: dict[str, np.ndarray], rows: slice) -> dict:
    stats = {
        "observation.state": _vector_stats(frames["observation.state"][rows]),
        "action": _vector_stats(frames["action"][rows]),
    }
    for cam, images in ep_images.items():
        stats[video_key(cam)] = _image_stats(images)
    for name in INDEX_FEATURES:
        stats[name] = _vector_stats(frames[name][rows].reshape(-1, 1))
    return stats


def _episode_stats(ep: EpisodeData, frames: dict[str, np.ndarray], start: int, end: int) -> dict:
    return _stats_for_rows(ep.images, frames, slice(int(start), int(end)))


def _dataset_stats(episodes: Sequence[EpisodeData], frames: dict[str, np.ndarray]) -> dict:
    """Stats over the whole dataset (meta/stats.json), as JSON-ready nested lists."""
    cams = list(episodes[0].images)
    # Subsample frames per episode so the image stats stay cheap on long datasets.
    images = {
        cam: np.concatenate([ep.images[cam][:: max(1, len(ep.state) // 20)] for ep in episodes])
        for cam in cams
    }
    stats = _stats_for_rows(images, frames, slice(None))
    total = len(frames["index"])
    for cam in cams:
        stats[video_key(cam)]["count"] = np.array([total], np.int64)
    return {feature: {k: v.tolist() for k, v in block.items()} for feature, block in stats.items()}


# ----------------------------------------------------------------------------- meta files


def _write_episodes(
    path: Path,
    episodes: Sequence[EpisodeData],
    tasks: list[str],
    starts: np.ndarray,
    spans: dict[str, list[tuple[float, float]]],
    per_episode_stats: list[dict],
) -> None:
    n = len(episodes)
    int64 = pa.int64()
    columns: dict[str, pa.Array] = {
        "episode_index": pa.array(np.arange(n, dtype=np.int64)),
        "tasks": pa.array([[ep.task] for ep in episodes], pa.list_(pa.string())),
        "length": pa.array(np.diff(starts)),
        "data/chunk_index": pa.array(np.zeros(n, np.int64)),
        "data/file_index": pa.array(np.zeros(n, np.int64)),
        "dataset_from_index": pa.array(starts[:-1]),
        "dataset_to_index": pa.array(starts[1:]),
    }
    for key, key_spans in spans.items():
        columns[f"videos/{key}/chunk_index"] = pa.array(np.zeros(n, np.int64))
        columns[f"videos/{key}/file_index"] = pa.array(np.zeros(n, np.int64))
        columns[f"videos/{key}/from_timestamp"] = pa.array([s[0] for s in key_spans], pa.float64())
        columns[f"videos/{key}/to_timestamp"] = pa.array([s[1] for s in key_spans], pa.float64())
    for feature, block in per_episode_stats[0].items():
        for stat in block:
            values = [ep_stats[feature][stat] for ep_stats in per_episode_stats]
            if stat == "count":
                columns[f"stats/{feature}/{stat}"] = pa.array([v.tolist() for v in values], pa.list_(int64))
            elif values[0].ndim == 3:  # image stats (3, 1, 1)
                typ = pa.list_(pa.list_(pa.list_(pa.float64())))
                columns[f"stats/{feature}/{stat}"] = pa.array([v.tolist() for v in values], typ)
            else:
                columns[f"stats/{feature}/{stat}"] = pa.array(
                    [v.tolist() for v in values], pa.list_(pa.float64())
                )
    columns["meta/episodes/chunk_index"] = pa.array(np.zeros(n, np.int64))
    columns["meta/episodes/file_index"] = pa.array(np.zeros(n, np.int64))
    _write_parquet(pa.table(columns), path)


def _write_tasks(path: Path, tasks: list[str]) -> None:
    # lerobot writes this with pandas, the task string being the index; the pandas metadata
    # lets `pd.read_parquet` restore that index (lerobot looks tasks up by string).
    pandas_meta = {
        "index_columns": ["task"],
        "column_indexes": [
            {
                "name": None,
                "field_name": None,
                "pandas_type": "unicode",
                "numpy_type": "object",
                "metadata": {"encoding": "UTF-8"},
            }
        ],
        "columns": [
            {
                "name": "task_index",
                "field_name": "task_index",
                "pandas_type": "int64",
                "numpy_type": "int64",
                "metadata": None,
            },
            {
                "name": "task",
                "field_name": "task",
                "pandas_type": "unicode",
                "numpy_type": "object",
                "metadata": None,
            },
        ],
        "attributes": {},
        "creator": {"library": "pyarrow", "version": pa.__version__},
    }
    table = pa.table(
        {"task_index": pa.array(np.arange(len(tasks), dtype=np.int64)), "task": pa.array(tasks, pa.string())}
    ).replace_schema_metadata({"pandas": json.dumps(pandas_meta)})
    _write_parquet(table, path)


def _write_parquet(table: pa.Table, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, path)


def _write_json(path: Path, data: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=4) + "\n")
