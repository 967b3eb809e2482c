#!/usr/bin/env python
"""Can data loading keep up with training? Loader samples/s next to one training step.

Generates ACT HDF5 episodes (480x640, written by the bridge's EpisodeWriter, i.e. the layout
training reads), then in one run measures:
  1. our data pipeline (ACTEpisodeDataset + EpochBatchSampler + DataLoader, random (episode, t),
     chunk 100) in samples/s, with 2 and 3 cameras, in the main process and with N workers;
  2. one optimizer step of the default ACT model (hidden 512, FFN 3200, 4/7 layers) on the
     same batch shape, in samples/s.
The ratio loader/step says whether loading keeps up (>= 1) per worker count; a GPU step is
far faster than a CPU one, so run this on the training machine for the real answer.

    python scripts/bench_loader.py                 # CPU: step batch 4 (64 would take minutes)
    python scripts/bench_loader.py --device cuda   # step at batch 64, bf16 autocast
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from act.act_policy import build_policy  # noqa: E402
from act.config import ACTConfig  # noqa: E402
from act.data import ACTEpisodeDataset, EpochBatchSampler, make_loader, to_device  # noqa: E402
from lerobot_bridge.hdf5_writer import EpisodeWriter  # noqa: E402

CAMERAS = ["cam_high", "cam_left_wrist", "cam_right_wrist"]


def write_episodes(root: Path, n_episodes: int, length: int, n_cams: int, h: int, w: int,
                   dim: int, storage: str = "raw") -> list[Path]:
    rng = np.random.default_rng(0)
    # Smooth-ish content (not noise): closer to what a compressor, if any, would see in practice.
    base = np.add.outer(np.arange(h), np.arange(w)).astype(np.int64)
    paths = []
    for e in range(n_episodes):
        path = root / f"episode_{e}.hdf5"
        with EpisodeWriter(path, num_frames=length, storage=storage) as wr:
            wr.write_lowdim(qpos=rng.normal(size=(length, dim)), action=rng.normal(size=(length, dim)))
            for c in range(n_cams):
                for start in range(0, length, 50):
                    n = min(50, length - start)
                    block = np.empty((n, h, w, 3), np.uint8)
                    for i in range(n):
                        block[i] = ((base + (start + i) * 3 + c * 40) % 256).astype(np.uint8)[..., None]
                    wr.append_images(CAMERAS[c], block)
        paths.append(path)
    return paths


def bench_loader(paths, cams, lengths, batch, workers, seconds, chunk, dim) -> float:
    stats = {"qpos_mean": np.zeros(dim, np.float32), "qpos_std": np.ones(dim, np.float32),
             "action_mean": np.zeros(dim, np.float32), "action_std": np.ones(dim, np.float32)}
    dataset = ACTEpisodeDataset(paths, cams, chunk, stats)
    # Many episode draws per epoch so one epoch is long enough to time.
    train_ids = list(range(len(paths))) * 200
    sampler = EpochBatchSampler(list(range(len(paths))), lengths, [batch], 0, seed=0)
    sampler.train_ids = np.asarray(train_ids)
    sampler.steps_per_epoch = len(train_ids) // batch
    sampler.set_epoch(0)
    loader = make_loader(dataset, sampler, workers, pin_memory=False)
    it = iter(loader)
    next(it)  # worker start-up and file opening are not what we measure
    n, t0 = 0, time.perf_counter()
    for b in it:
        n += b["qpos"].shape[0]
        if time.perf_counter() - t0 > seconds:
            break
    rate = n / (time.perf_counter() - t0)
    del it, loader
    return rate


def bench_step(n_cams, batch, device, h, w, dim, steps, amp) -> float:
    cfg = ACTConfig(state_dim=dim, action_dim=dim, camera_names=CAMERAS[:n_cams])
    policy, _ = build_policy(cfg, "none")
    policy.freeze_unused_parameters()
    policy.to(device).train()
    opt = torch.optim.AdamW(policy.optimizer_param_groups(5e-5, 5e-5), lr=5e-5, weight_decay=1e-4,
                            fused=device.type == "cuda")
    batch_cpu = {
        "qpos": torch.randn(batch, dim), "action": torch.randn(batch, cfg.chunk_size, dim),
        "is_pad": torch.zeros(batch, cfg.chunk_size, dtype=torch.bool),
        "images": torch.randint(0, 256, (batch, n_cams, h, w, 3), dtype=torch.uint8),
    }
    times = []
    for i in range(steps + 1):
        if device.type == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        b = to_device(batch_cpu, device)
        with torch.autocast("cuda", dtype=torch.bfloat16) if amp else torch.autocast("cpu", enabled=False):
            loss = policy(b["qpos"], b["images"], b["action"], b["is_pad"])["loss"]
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if device.type == "cuda":
            torch.cuda.synchronize()
        if i:  # the first step pays for allocations / kernel selection
            times.append(time.perf_counter() - t0)
    return batch / float(np.median(times))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="cpu")
    p.add_argument("--step_batch", type=int, default=0, help="0 = 64 (the default) on CUDA, 4 on CPU")
    p.add_argument("--loader_batch", type=int, default=64)
    p.add_argument("--workers", type=int, nargs="+", default=[0, 2])
    p.add_argument("--episodes", type=int, default=2)
    p.add_argument("--length", type=int, default=100)
    p.add_argument("--seconds", type=float, default=8.0, help="time per loader measurement")
    p.add_argument("--steps", type=int, default=2, help="timed training steps (median)")
    p.add_argument("--dir", default=None, help="where to write the episodes (default: a temp folder)")
    args = p.parse_args()
    device = torch.device(args.device)
    step_batch = args.step_batch or (64 if device.type == "cuda" else 4)
    amp = device.type == "cuda" and torch.cuda.is_bf16_supported()
    h, w, dim, chunk = 480, 640, 14, 100
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    print(f"torch {torch.__version__}, {cpus} CPUs, device {device}"
          f"{' (' + torch.cuda.get_device_name(device) + ')' if device.type == 'cuda' else ''}")
    print(f"episodes {args.episodes} x {args.length} frames, {h}x{w}, chunk {chunk}, dim {dim}")
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        rows = []
        for n_cams in (2, 3):
            folder = Path(tmp) / f"cams{n_cams}"
            folder.mkdir()
            t0 = time.perf_counter()
            paths = write_episodes(folder, args.episodes, args.length, n_cams, h, w, dim)
            print(f"[{n_cams} cameras] wrote {args.episodes} episodes in {time.perf_counter() - t0:.1f} s")
            step_rate = bench_step(n_cams, step_batch, device, h, w, dim, args.steps, amp)
            print(f"[{n_cams} cameras] training step (default model, batch {step_batch}, "
                  f"{'bf16' if amp else 'fp32'}): {step_rate:.3g} samples/s "
                  f"({step_batch / step_rate * 1000:.0f} ms/step)")
            lengths = [args.length] * args.episodes
            for workers in args.workers:
                rate = bench_loader(paths, CAMERAS[:n_cams], lengths, args.loader_batch, workers,
                                    args.seconds, chunk, dim)
                rows.append((n_cams, workers, rate, step_rate))
                print(f"[{n_cams} cameras] loader, {workers} worker(s): {rate:.1f} samples/s "
                      f"= {rate / step_rate:.2f}x the training step's consumption")
        print("\ncameras | loader workers | loader samples/s | train step samples/s | loader / step")
        for n_cams, workers, rate, step_rate in rows:
            ratio = rate / step_rate
            print(f"{n_cams:7d} | {workers:14d} | {rate:16.1f} | {step_rate:20.3g} | {ratio:13.2f}")


if __name__ == "__main__":
    main()
