"""Write small synthetic LeRobot v2.1 datasets (video cameras) with PyAV + pyarrow.

For tests and benchmarks that need what the real fixtures do not have: other codecs (HEVC),
long 480x640 episodes, frames missing from a video. Every image carries the fixtures' frame
code (README of tests/data/lerobot): rows 0..5 hold 12 blocks of 8x6 px, black = 0, white = 1,
most significant bit first, blocks 0-7 = frame_index, blocks 8-11 = episode_index.
"""

from __future__ import annotations

import functools
import json
import os
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

CODE_BLOCK_W, CODE_BLOCK_H = 8, 6


@functools.lru_cache(maxsize=4)
def _background(height: int, width: int) -> np.ndarray:
    """(H, 2W, 3) uint8 smooth colour field, twice as wide so frames can slide across it."""
    y = np.linspace(0, 1, height, dtype=np.float32)[:, None]
    x = np.linspace(0, 2, 2 * width, dtype=np.float32)[None, :]
    img = np.empty((height, 2 * width, 3), np.uint8)
    img[..., 0] = 127 + 100 * np.sin(6 * x) * np.cos(3 * y)
    img[..., 1] = 127 + 100 * np.cos(4 * y + 2 * x)
    img[..., 2] = 60 + 60 * x + 60 * y
    return img


def frame_code_image(frame_index: int, episode_index: int, height: int, width: int) -> np.ndarray:
    """(H, W, 3) uint8: a colour field that slides with the frame, plus the frame code on top."""
    shift = (7 * frame_index) % width
    img = _background(height, width)[:, shift : shift + width].copy()
    bits = [(frame_index >> (7 - b)) & 1 for b in range(8)]
    bits += [(episode_index >> (3 - b)) & 1 for b in range(4)]
    for b, bit in enumerate(bits):
        img[:CODE_BLOCK_H, b * CODE_BLOCK_W : (b + 1) * CODE_BLOCK_W] = 255 * bit
    return img


def read_frame_code(img: np.ndarray) -> tuple[int, int]:
    """(frame_index, episode_index) from an (H, W, 3) image: threshold each block's interior mean."""
    bits = [
        int(img[1 : CODE_BLOCK_H - 1, b * CODE_BLOCK_W + 1 : (b + 1) * CODE_BLOCK_W - 1].mean() > 127)
        for b in range(12)
    ]
    frame = int("".join(map(str, bits[:8])), 2)
    episode = int("".join(map(str, bits[8:])), 2)
    return frame, episode


def encode_video(
    path: Path,
    frames,
    fps: int,
    *,
    codec: str = "libsvtav1",
    gop: int = 2,
    skip: set[int] | None = None,
    options: dict | None = None,
) -> None:
    """Encode an iterable of (H, W, 3) RGB frames; frames whose index is in `skip` are left out
    (their pts stay unused, the way a recorder drops a frame)."""
    os.environ.setdefault("SVT_LOG", "1")  # SVT-AV1 prints its whole configuration at info level
    path.parent.mkdir(parents=True, exist_ok=True)
    skip = skip or set()
    with av.open(str(path), "w") as container:
        stream = container.add_stream(codec, rate=fps)
        stream.pix_fmt = "yuv420p"
        stream.codec_context.gop_size = gop
        if options:
            stream.options = options
        first = True
        for i, rgb in enumerate(frames):
            if first:
                stream.height, stream.width = rgb.shape[:2]
                first = False
            if i in skip:
                continue
            frame = av.VideoFrame.from_ndarray(rgb, format="rgb24")
            frame.pts = i
            frame.time_base = Fraction(1, fps)
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)


def write_v21_dataset(
    root: Path,
    lengths: list[int],
    *,
    height: int = 72,
    width: int = 96,
    fps: int = 30,
    codec: str = "libsvtav1",
    codec_name: str = "av1",
    camera_keys: tuple[str, ...] = ("observation.images.front",),
    dim: int = 6,
    dropped: dict[int, set[int]] | None = None,  # episode -> frame indices missing from its video
    encoder_options: dict | None = None,
    seed: int = 0,
) -> Path:
    """A v2.1 dataset: one parquet and one mp4 per episode and camera, metadata as lerobot 0.3 writes it."""
    rng = np.random.default_rng(seed)
    root = Path(root)
    (root / "meta").mkdir(parents=True, exist_ok=True)
    dropped = dropped or {}
    names = [f"joint_{j}.pos" for j in range(dim)]
    start = 0
    with (root / "meta" / "episodes.jsonl").open("w") as fh:
        for ep, n in enumerate(lengths):
            fh.write(json.dumps({"episode_index": ep, "tasks": ["synthetic task"], "length": n}) + "\n")
    (root / "meta" / "tasks.jsonl").write_text(json.dumps({"task_index": 0, "task": "synthetic task"}) + "\n")
    for ep, n in enumerate(lengths):
        t = np.linspace(0, 1, n + 1, dtype=np.float32)[:, None]
        goal = rng.uniform(-1, 1, (1, dim)).astype(np.float32)
        path = (t * goal).astype(np.float32)  # (n+1, dim) a smooth move
        state, action = path[:-1], path[1:]
        table = pa.table(
            {
                "observation.state": pa.FixedSizeListArray.from_arrays(pa.array(state.ravel()), dim),
                "action": pa.FixedSizeListArray.from_arrays(pa.array(action.ravel()), dim),
                "timestamp": pa.array(np.arange(n, dtype=np.float32) / fps),
                "frame_index": pa.array(np.arange(n, dtype=np.int64)),
                "episode_index": pa.array(np.full(n, ep, dtype=np.int64)),
                "index": pa.array(np.arange(start, start + n, dtype=np.int64)),
                "task_index": pa.array(np.zeros(n, dtype=np.int64)),
            }
        )
        data_path = root / f"data/chunk-000/episode_{ep:06d}.parquet"
        data_path.parent.mkdir(parents=True, exist_ok=True)
        pq.write_table(table, data_path)
        for key in camera_keys:
            frames = (frame_code_image(i, ep, height, width) for i in range(n))
            encode_video(
                root / f"videos/chunk-000/{key}/episode_{ep:06d}.mp4",
                frames,
                fps,
                codec=codec,
                skip=dropped.get(ep),
                options=encoder_options,
            )
        start += n
    vector = {"dtype": "float32", "shape": [dim], "names": names}
    scalar = {"shape": [1], "names": None}
    features = {"observation.state": vector, "action": dict(vector)}
    for key in camera_keys:
        features[key] = {
            "dtype": "video",
            "shape": [height, width, 3],
            "names": ["height", "width", "channels"],
            "info": {
                "video.height": height,
                "video.width": width,
                "video.codec": codec_name,
                "video.pix_fmt": "yuv420p",
                "video.is_depth_map": False,
                "video.fps": fps,
                "video.channels": 3,
                "has_audio": False,
            },
        }
    features.update(
        {
            "timestamp": {"dtype": "float32", **scalar},
            "frame_index": {"dtype": "int64", **scalar},
            "episode_index": {"dtype": "int64", **scalar},
            "index": {"dtype": "int64", **scalar},
            "task_index": {"dtype": "int64", **scalar},
        }
    )
    info = {
        "codebase_version": "v2.1",
        "robot_type": "synthetic",
        "total_episodes": len(lengths),
        "total_frames": int(sum(lengths)),
        "total_tasks": 1,
        "total_videos": len(lengths) * len(camera_keys),
        "total_chunks": 1,
        "chunks_size": 1000,
        "fps": fps,
        "splits": {"train": f"0:{len(lengths)}"},
        "data_path": "data/chunk-{episode_chunk:03d}/episode_{episode_index:06d}.parquet",
        "video_path": "videos/chunk-{episode_chunk:03d}/{video_key}/episode_{episode_index:06d}.mp4",
        "features": features,
    }
    (root / "meta" / "info.json").write_text(json.dumps(info, indent=4))
    return root
