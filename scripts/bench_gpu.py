#!/usr/bin/env python
"""GPU training throughput of the default ACT model: one prepared run of about 5 minutes.

Default model (hidden 512, FFN 3200, 4/7 layers, ResNet18), batch 64, 3 cameras 480x640, chunk
100. In one run, each variant of the same training step on the same device:

  fp32            plain fp32 step (AdamW, fused on CUDA)
  bf16            bf16 autocast (what --precision bf16 trains with)
  bf16_cl         bf16 + channels_last weights (convolutions in NHWC)
  bf16_compile    bf16 + torch.compile of the policy
  bf16_graphs     bf16 + torch.compile(mode="reduce-overhead"), i.e. CUDA graphs

For each: samples/s on a batch already on the device (compute only), GPU busy fraction (CUDA
event time of the steps / wall time), peak GPU memory. Then bf16 fed by the real loader
(ACTEpisodeDataset + DataLoader with --workers processes over episodes written by the bridge's
EpisodeWriter in --storage's layout): samples/s and the fraction of wall time spent waiting for
data. Ratios are against bf16 of the same run and against LeRobot's published ~97 samples/s at
batch 64 on an A100 (a different card: an anchor, not a like-for-like comparison).

    python scripts/bench_gpu.py --out bench_gpu.json                # on the GPU machine
    python scripts/bench_gpu.py --device cpu --tiny                 # a seconds-long check of the script
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from contextlib import nullcontext
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_loader import CAMERAS, write_episodes  # noqa: E402

from act.act_policy import build_policy  # noqa: E402
from act.config import ACTConfig  # noqa: E402
from act.data import ACTEpisodeDataset, EpochBatchSampler, make_loader, to_device  # noqa: E402

LEROBOT_A100_BATCH64 = 97.0  # samples/s, LeRobot's published ACT figure (batch 64, A100)
VARIANTS = ("fp32", "bf16", "bf16_cl", "bf16_compile", "bf16_graphs")


def make_policy(cfg: ACTConfig, device: torch.device, channels_last: bool):
    policy, _ = build_policy(cfg, "none")
    policy.freeze_unused_parameters()
    policy.to(device).train()
    if channels_last:
        policy.to(memory_format=torch.channels_last)
    opt = torch.optim.AdamW(policy.optimizer_param_groups(1e-5, 1e-5), lr=1e-5, weight_decay=1e-4,
                            fused=device.type == "cuda")
    return policy, opt


def synthetic_batch(cfg: ACTConfig, batch: int, h: int, w: int, device: torch.device) -> dict:
    n_cams, dim = len(cfg.camera_names), cfg.state_dim
    cpu = {
        "qpos": torch.randn(batch, dim), "action": torch.randn(batch, cfg.chunk_size, dim),
        "is_pad": torch.zeros(batch, cfg.chunk_size, dtype=torch.bool),
        "images": torch.randint(0, 256, (batch, n_cams, h, w, 3), dtype=torch.uint8),
    }
    return to_device(cpu, device)


def autocast_for(device: torch.device, bf16: bool):
    return torch.autocast(device.type, dtype=torch.bfloat16) if bf16 else nullcontext()


def train_step(model, opt, b: dict, device: torch.device, bf16: bool) -> None:
    with autocast_for(device, bf16):
        loss = model(b["qpos"], b["images"], b["action"], b["is_pad"])["loss"]
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def bench_variant(name: str, cfg: ACTConfig, args, device: torch.device) -> dict:
    """Compute-only figures of one variant: samples/s, GPU busy fraction, peak memory."""
    bf16 = name != "fp32"
    policy, opt = make_policy(cfg, device, channels_last=name == "bf16_cl")
    model = policy
    if name == "bf16_compile":
        model = torch.compile(policy)
    elif name == "bf16_graphs":
        model = torch.compile(policy, mode="reduce-overhead")
    b = synthetic_batch(cfg, args.batch_size, args.height, args.width, device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    t_compile = time.perf_counter()
    for _ in range(args.warmup):  # allocations, kernel choice, compilation, graph capture
        train_step(model, opt, b, device, bf16)
    sync(device)
    warmup_s = time.perf_counter() - t_compile
    gpu_ms = 0.0
    t0 = time.perf_counter()
    for _ in range(args.steps):
        if device.type == "cuda":
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
        train_step(model, opt, b, device, bf16)
        if device.type == "cuda":
            end.record()
            end.synchronize()
            gpu_ms += start.elapsed_time(end)
    sync(device)
    wall = time.perf_counter() - t0
    out = {
        "variant": name,
        "samples_per_s": args.batch_size * args.steps / wall,
        "step_ms": 1000 * wall / args.steps,
        "warmup_s": warmup_s,
        "gpu_busy": gpu_ms / 1000 / wall if device.type == "cuda" else None,
        "peak_memory_gib": torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else None,
    }
    del model, policy, opt, b
    if device.type == "cuda":
        torch.cuda.empty_cache()
    return out


def bench_with_loader(cfg: ACTConfig, args, device: torch.device, root: Path) -> dict:
    """bf16 steps fed by the real loader: samples/s and the share of wall time waiting for data."""
    n_cams, dim = len(cfg.camera_names), cfg.state_dim
    paths = write_episodes(root, args.episodes, args.episode_len, n_cams, args.height, args.width, dim,
                           storage=args.storage)
    stats = {"qpos_mean": np.zeros(dim, np.float32), "qpos_std": np.ones(dim, np.float32),
             "action_mean": np.zeros(dim, np.float32), "action_std": np.ones(dim, np.float32)}
    dataset = ACTEpisodeDataset(paths, cfg.camera_names, cfg.chunk_size, stats)
    lengths = [args.episode_len] * len(paths)
    sampler = EpochBatchSampler(list(range(len(paths))), lengths, [args.batch_size], 0, seed=0)
    steps = args.warmup + args.steps
    sampler.set_epoch(0, 0, steps)
    loader = make_loader(dataset, sampler, args.workers, pin_memory=device.type == "cuda")
    policy, opt = make_policy(cfg, device, channels_last=False)
    it = iter(loader)
    wait = 0.0
    n = 0
    t0 = None
    for i in range(steps):
        if i == args.warmup:  # worker start-up, file opening and the first steps are not measured
            sync(device)
            t0, wait = time.perf_counter(), 0.0
        tw = time.perf_counter()
        batch = next(it)
        b = to_device(batch, device)
        sync(device)  # the copy is part of feeding the step
        wait += time.perf_counter() - tw
        train_step(policy, opt, b, device, bf16=device.type == "cuda")
        if t0 is not None:
            n += b["qpos"].shape[0]
    sync(device)
    wall = time.perf_counter() - t0
    del it, loader
    precision = "bf16" if device.type == "cuda" else "fp32"
    return {"variant": f"{precision}_loader_{args.workers}w_{args.storage}", "samples_per_s": n / wall,
            "data_wait": wait / wall, "workers": args.workers, "storage": args.storage}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--batch_size", type=int, default=64)
    p.add_argument("--cameras", type=int, default=3)
    p.add_argument("--height", type=int, default=480)
    p.add_argument("--width", type=int, default=640)
    p.add_argument("--steps", type=int, default=30, help="timed steps per variant")
    p.add_argument("--warmup", type=int, default=5, help="untimed steps first (compilation, graph capture)")
    p.add_argument("--variants", default=",".join(VARIANTS))
    p.add_argument("--workers", type=int, default=8, help="loader processes for the loader-fed run")
    p.add_argument("--storage", choices=("raw", "jpeg"), default="jpeg", help="episode layout for the loader")
    p.add_argument("--episodes", type=int, default=4)
    p.add_argument("--episode_len", type=int, default=200)
    p.add_argument("--tiny", action="store_true",
                   help="hidden 64, 1+1 layers, batch 4, 32x32, 2 steps: checks the script, measures nothing")
    p.add_argument("--out", default=None, help="also write the results as JSON here")
    args = p.parse_args(argv)
    device = torch.device(args.device)
    cfg_fields = {"state_dim": 14, "action_dim": 14, "camera_names": CAMERAS[: args.cameras]}
    if args.tiny:
        cfg_fields.update(hidden_dim=64, dim_feedforward=128, nheads=2, enc_layers=1, dec_layers=1,
                          chunk_size=10)
        args.batch_size, args.height, args.width = 4, 32, 32
        args.steps, args.warmup, args.episodes, args.episode_len = 2, 1, 2, 20
        args.workers = min(args.workers, 1)
    cfg = ACTConfig(**cfg_fields)
    variants = [v for v in args.variants.split(",") if v]
    unknown = sorted(set(variants) - set(VARIANTS))
    if unknown:
        p.error(f"--variants: unknown {unknown}; choose from {', '.join(VARIANTS)}")
    if device.type != "cuda":  # compile / CUDA graphs / bf16 autocast are GPU figures
        variants = [v for v in variants if v in ("fp32",)]
    info = {"device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
            "torch": torch.__version__, "batch_size": args.batch_size, "cameras": args.cameras,
            "image": [args.height, args.width], "chunk": cfg.chunk_size, "hidden_dim": cfg.hidden_dim}
    print(json.dumps(info))
    results = []
    for name in variants:
        try:
            r = bench_variant(name, cfg, args, device)
        except Exception as e:  # noqa: BLE001 - one variant failing (e.g. no compiler) must not lose the rest
            r = {"variant": name, "error": f"{type(e).__name__}: {e}"[:500]}
        results.append(r)
        print(json.dumps(r), flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        r = bench_with_loader(cfg, args, device, Path(tmp))
    results.append(r)
    print(json.dumps(r), flush=True)
    base = next((r["samples_per_s"] for r in results if r["variant"] == "bf16" and "samples_per_s" in r),
                None)
    print(f"\n{'variant':<28} {'samples/s':>10} {'vs bf16':>8} {'vs LeRobot A100':>16} {'GPU busy':>9} "
          f"{'data wait':>10} {'peak GiB':>9}")
    for r in results:
        if "error" in r:
            print(f"{r['variant']:<28} error: {r['error']}")
            continue
        sps = r["samples_per_s"]

        def fmt(v, spec):
            width = int(spec[1:].split(".")[0])  # ">9.0%" -> 9
            return format(v, spec) if v is not None else "-".rjust(width)

        print(f"{r['variant']:<28} {sps:>10.1f} {fmt(sps / base if base else None, '>8.2f')} "
              f"{sps / LEROBOT_A100_BATCH64:>16.2f} {fmt(r.get('gpu_busy'), '>9.0%')} "
              f"{fmt(r.get('data_wait'), '>10.0%')} {fmt(r.get('peak_memory_gib'), '>9.1f')}")
    if args.out:
        Path(args.out).write_text(json.dumps({"info": info, "results": results}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
