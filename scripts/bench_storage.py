#!/usr/bin/env python
"""Frame storage modes side by side: disk, conversion speed, loader speed, in one run.

Writes a synthetic LeRobot v2.1 dataset (lerobot_bridge.synthetic, H.264, 480x640 by default;
--noise adds camera-like sensor noise, which is what makes real frames expensive to compress),
then for each storage mode (raw, jpeg at --jpeg_quality, raw resized to --image_size, jpeg
resized) converts it with the bridge in this process and measures:

  bytes/camera-frame   converted HDF5 bytes / camera-frames, and x the source video's
  conversion fps       camera-frames/s, and x plain PyAV decode of the same videos (same threads)
  loader samples/s     ACTEpisodeDataset + EpochBatchSampler + DataLoader (workers 0, batch 64,
                       chunk 100, random (episode, t)), and x plain h5py reads of the same stored
                       frames (datasets opened once, `dset[t]` per camera, no batch assembled: the
                       floor of reading; for JPEG each row is also decoded, as act-plus-plus'
                       loader does with cv2.imdecode)
  jpeg error           mean |decoded - raw converted frame| in levels (JPEG modes)

Ratios come from one run on one machine, so they hold even when absolute figures move with load.
LeRobot's published training throughput (~97 samples/s at batch 64 on an A100, 2 cameras 480x640)
is printed as the rate a GPU step consumes: loader samples/s per worker against it says how many
loader workers keep such a GPU fed.

    python scripts/bench_storage.py                       # 2 episodes x 150 frames, 2 cameras
    python scripts/bench_storage.py --episodes 4 --length 300 --noise 3 --seconds 8
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import av
import h5py
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import lerobot_bridge.synthetic as synthetic  # noqa: E402
from act.data import ACTEpisodeDataset, EpochBatchSampler, make_loader  # noqa: E402
from lerobot_bridge.convert import convert_dataset, estimate_conversion_bytes  # noqa: E402
from lerobot_bridge.frame_codec import DEFAULT_JPEG_QUALITY, JpegDecoder  # noqa: E402

LEROBOT_PUBLISHED_SAMPLES_PER_S = 97.0  # training, batch 64, A100 (issue 16's anchor)
CAMERAS = ("observation.images.cam_high", "observation.images.cam_wrist")


def write_dataset(root: Path, episodes: int, length: int, h: int, w: int, noise: float) -> Path:
    if noise > 0:
        clean = synthetic.frame_code_image

        def noisy(frame_index: int, episode_index: int, height: int, width: int) -> np.ndarray:
            img = clean(frame_index, episode_index, height, width).astype(np.float32)
            rng = np.random.default_rng([frame_index, episode_index])
            img += rng.normal(0.0, noise, img.shape).astype(np.float32)
            return np.clip(np.rint(img), 0, 255).astype(np.uint8)

        synthetic.frame_code_image = noisy  # write_v21_dataset looks it up at call time
    try:
        return synthetic.write_v21_dataset(
            root, [length] * episodes, height=h, width=w, codec="libx264", codec_name="h264",
            camera_keys=CAMERAS, encoder_options={"preset": "veryfast", "crf": "23"},
        )
    finally:
        if noise > 0:
            synthetic.frame_code_image = clean


def pyav_decode_fps(root: Path) -> tuple[float, int]:
    """Plain sequential decode of every video to RGB arrays (auto threads): camera-frames/s."""
    videos = sorted(root.glob("videos/**/*.mp4"))
    n, t0 = 0, time.perf_counter()
    for path in videos:
        with av.open(str(path)) as container:
            stream = container.streams.video[0]
            stream.thread_type = "AUTO"
            for frame in container.decode(stream):
                frame.to_ndarray(format="rgb24")
                n += 1
    return n / (time.perf_counter() - t0), n


def loader_rate(paths, cams, lengths, batch, seconds, chunk, dim) -> tuple[float, list]:
    """Our loader in the main process; returns samples/s and the (e, t) keys it read."""
    stats = {"qpos_mean": np.zeros(dim, np.float32), "qpos_std": np.ones(dim, np.float32),
             "action_mean": np.zeros(dim, np.float32), "action_std": np.ones(dim, np.float32)}
    dataset = ACTEpisodeDataset(paths, cams, chunk, stats)
    sampler = EpochBatchSampler(list(range(len(paths))), lengths, [batch], 0, seed=0)
    sampler.train_ids = np.asarray(list(range(len(paths))) * 500)
    sampler.steps_per_epoch = len(sampler.train_ids) // batch
    sampler.set_epoch(0)
    keys = [k for b in sampler for k in b]
    loader = make_loader(dataset, sampler, 0, pin_memory=False)
    it = iter(loader)
    next(it)  # opening files is not what we measure
    n, t0 = 0, time.perf_counter()
    for b in it:
        n += b["qpos"].shape[0]
        if time.perf_counter() - t0 > seconds:
            break
    rate = n / (time.perf_counter() - t0)
    dataset.close()
    return rate, keys[batch : batch + n]


def h5py_rate(paths, cams, keys, chunk, seconds, decode: bool) -> float:
    """The floor: plain h5py reads of the same stored frames (rows, decoded when JPEG) and
    low-dim slices."""
    decoder = JpegDecoder()
    files = [h5py.File(p, "r") for p in paths]
    dsets = [([f[f"/observations/images/{c}"] for c in cams], f["/observations/qpos"], f["/action"])
             for f in files]
    n, t0 = 0, time.perf_counter()
    for e, t in keys:
        images, qpos, action = dsets[e]
        for d in images:
            row = d[t]
            if decode:
                decoder.decode(row)
        qpos[t]
        action[t : t + chunk]
        n += 1
        if time.perf_counter() - t0 > seconds:
            break
    rate = n / (time.perf_counter() - t0)
    for f in files:
        f.close()
    return rate


def jpeg_error(raw_paths, paths, cams, samples=20) -> float:
    """Mean |decoded JPEG - raw converted frame| over a few frames (levels of 255)."""
    errs = []
    dec = JpegDecoder()
    with h5py.File(raw_paths[0], "r") as fr, h5py.File(paths[0], "r") as fj:
        length = fj["/action"].shape[0]
        for t in np.linspace(0, length - 1, samples).astype(int):
            for c in cams:
                raw = fr[f"/observations/images/{c}"][t].astype(np.int16)
                got = dec.decode(fj[f"/observations/images/{c}"][t]).astype(np.int16)
                errs.append(np.abs(got - raw).mean())
    return float(np.mean(errs))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--episodes", type=int, default=2)
    p.add_argument("--length", type=int, default=150)
    p.add_argument("--height", type=int, default=480)
    p.add_argument("--width", type=int, default=640)
    p.add_argument("--noise", type=float, default=2.0, help="sensor-like noise sigma in levels (0 = clean)")
    p.add_argument("--jpeg_quality", type=int, default=DEFAULT_JPEG_QUALITY)
    p.add_argument("--image_size", default="240x320")
    p.add_argument("--seconds", type=float, default=5.0, help="time per loader / h5py measurement")
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--dir", default=None, help="where to write (default: a temporary folder)")
    args = p.parse_args()
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"{cpus} CPUs, load average {load:.1f} at start; {args.episodes} episodes x {args.length} frames, "
          f"{len(CAMERAS)} cameras {args.height}x{args.width} H.264 (noise sigma {args.noise}), "
          f"chunk 100, loader batch {args.batch}, workers 0")
    modes = [
        ("raw", {"storage": "raw"}),
        (f"jpeg q{args.jpeg_quality}", {"storage": "jpeg", "jpeg_quality": args.jpeg_quality}),
        (f"raw {args.image_size}", {"storage": "raw", "image_size": args.image_size}),
        (f"jpeg q{args.jpeg_quality} {args.image_size}",
         {"storage": "jpeg", "jpeg_quality": args.jpeg_quality, "image_size": args.image_size}),
    ]
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        src = write_dataset(
            Path(tmp) / "src", args.episodes, args.length, args.height, args.width, args.noise
        )
        video_bytes = sum(f.stat().st_size for f in src.glob("videos/**/*.mp4"))
        decode_fps, cam_frames = pyav_decode_fps(src)
        src_per_frame = video_bytes / cam_frames
        print(f"source: {src_per_frame:,.0f} bytes/camera-frame (H.264); plain PyAV decode "
              f"{decode_fps:,.0f} camera-frames/s")
        rows, raw_paths = [], None
        for name, opts in modes:
            out = Path(tmp) / name.replace(" ", "_")
            estimate = estimate_conversion_bytes(src, idle_threshold=0, **opts)
            t0 = time.perf_counter()
            result = convert_dataset(src, out, workers=1, progress=False, idle_threshold=0, **opts)
            conv_s = time.perf_counter() - t0
            written = result.extra["bytes_written"]
            per_frame = written / cam_frames
            conv_fps = cam_frames / conv_s
            paths = [str(x) for x in result.hdf5_paths]
            cams = result.camera_names
            lengths = [e.frames_out for e in result.episodes]
            rate, keys = loader_rate(paths, cams, lengths, args.batch, args.seconds, 100, 6)
            floor = h5py_rate(paths, cams, keys, 100, args.seconds, decode=opts["storage"] == "jpeg")
            if raw_paths is None:
                raw_paths = paths
            same_size = opts["storage"] == "jpeg" and "image_size" not in opts
            err = jpeg_error(raw_paths, paths, cams) if same_size else float("nan")
            rows.append((name, per_frame, per_frame / src_per_frame, estimate / written, conv_fps,
                         conv_fps / decode_fps, rate, rate / floor, err))
            plus = " + decode" if opts["storage"] == "jpeg" else ""
            print(f"[{name}] {per_frame:,.0f} B/camera-frame, convert {conv_fps:,.0f} frames/s, "
                  f"loader {rate:,.0f} samples/s vs plain h5py reads{plus} {floor:,.0f}")
            if paths is not raw_paths:  # the raw frames stay for the JPEG error; others go
                for x in out.glob("*.hdf5"):
                    x.unlink()
    print("\nmode | bytes/camera-frame | x source video | estimate/actual | convert frames/s | "
          "x PyAV decode | loader samples/s | x plain h5py reads (+decode) | x LeRobot 97/s | jpeg MAE")
    for name, per, ratio, est, fps, fps_ratio, rate, floor_ratio, err in rows:
        print(f"{name} | {per:,.0f} | {ratio:.1f} | {est:.2f} | {fps:,.0f} | {fps_ratio:.2f} | {rate:,.0f} | "
              f"{floor_ratio:.2f} | {rate / LEROBOT_PUBLISHED_SAMPLES_PER_S:.1f} | "
              f"{'' if np.isnan(err) else f'{err:.2f}'}")
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"load average {load:.1f} at the end")


if __name__ == "__main__":
    main()
