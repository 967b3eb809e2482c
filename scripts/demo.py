#!/usr/bin/env python
"""End-to-end demo: record a visual task as a LeRobot dataset, train ACT on it with this
project's CLI, and measure closed-loop success on episodes never seen in training.

    python scripts/demo.py                      # ~minutes on a laptop CPU
    python scripts/demo.py --workdir runs/demo --episodes 200 --steps 1500

1. Record: a scripted expert solves the 2-D reaching task (scripts/demo/env.py: the goal is
   visible only in the two cameras) and is written as a LeRobot v3.0 dataset with H.264
   videos (lerobot_bridge/writer.py).
2. Train: `python train_lerobot_to_act.py --input_dir ... --output_dir ...` in a subprocess,
   exactly as a user runs it (small model, randomly initialized backbone).
3. Evaluate: load the run with act.policy.ACTRunner and run the policy closed loop on unseen
   seeds, with chunk execution and with temporal ensembling; baselines that cannot see the
   goal (same policy with the goal erased from the images; the mean action).
Prints where everything is and the success rates; writes WORKDIR/demo_results.json.

Threads: torch's default (one intra-op thread per core) fights other jobs on a shared machine (on a
busy 2-core machine a training step with 2 threads took 3.2 s against 0.48 s with 1; on a quiet one
2 threads were 13% faster). Training gets half the CPUs this process may use, at most 4
(OMP_NUM_THREADS / MKL_NUM_THREADS for the CLI subprocess); evaluation runs batch-1 inference with
1 thread (2x faster than 2 threads for this small model even on a quiet machine). --threads N overrides.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from scripts.demo.env import ReachConfig  # noqa: E402
from scripts.demo.evaluate import evaluate_run  # noqa: E402
from scripts.demo.record import record_dataset  # noqa: E402

RUN_NAME = "demo"
EVAL_FIRST_SEED = 1_000_000  # training uses seeds 0..episodes-1: evaluation seeds are unseen


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter
    )
    p.add_argument(
        "--workdir",
        type=Path,
        default=REPO / "runs" / "demo",
        help="dataset/, output/ (checkpoints, manifest) and demo_results.json go here",
    )
    p.add_argument("--episodes", type=int, default=200, help="expert episodes to record (seeds 0..N-1)")
    p.add_argument(
        "--eval_episodes", type=int, default=50, help="closed-loop episodes per mode (unseen seeds)"
    )
    p.add_argument("--image_size", type=int, default=64, help="camera images are square, this many pixels")
    p.add_argument(
        "--codec", choices=["h264", "av1"], default="h264", help="video codec of the recorded dataset"
    )
    p.add_argument("--steps", type=int, default=1000, help="optimizer steps")
    p.add_argument("--batch_size", type=int, default=8)
    p.add_argument("--learning_rate", type=float, default=3e-4)
    p.add_argument("--chunk_size", type=int, default=20)
    p.add_argument(
        "--episode_len",
        type=int,
        default=30,
        help="pad every (idle-trimmed) episode to this many frames by repeating its last frame, so "
        "the policy learns to hold at the goal (0 = keep lengths: nothing after the end is trained)",
    )
    p.add_argument(
        "--dropout",
        type=float,
        default=0.0,
        help="transformer dropout; upstream's 0.1 slows this small model's learning to see the goal "
        "enough that some seeds miss it within the step budget",
    )
    p.add_argument("--seed", type=int, default=42, help="training seed (the CLI's default)")
    p.add_argument("--checkpoint", default="policy_last.ckpt", help="which checkpoint of the run to evaluate")
    p.add_argument("--skip_training", action="store_true", help="evaluate the existing run in WORKDIR")
    p.add_argument(
        "--threads",
        type=int,
        default=0,
        help="torch intra-op threads for training (0 = auto: half the CPUs available, at most 4); "
        "evaluation always uses 1",
    )
    return p.parse_args(argv)


def available_cpus() -> int:
    """CPUs this process may run on (its affinity mask: a container's or taskset's limit)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def training_threads(requested: int = 0) -> int:
    """Intra-op threads for the training subprocess: `requested`, or half the available CPUs, at most 4."""
    return requested if requested > 0 else max(1, min(4, available_cpus() // 2))


def train_command(dataset: Path, output: Path, args: argparse.Namespace) -> list[str]:
    """The CLI call a user would type, with settings small enough for a CPU."""
    # fmt: off
    return [
        sys.executable, str(REPO / "train_lerobot_to_act.py"),
        "--input_dir", str(dataset),
        "--output_dir", str(output),
        "--run_name", RUN_NAME,
        "--fresh",
        "--gpus", "cpu",
        "--backbone_weights", "none",
        "--num_epochs", "0",
        "--steps", str(args.steps),
        "--batch_size", str(args.batch_size),
        "--learning_rate", str(args.learning_rate),
        "--chunk_size", str(args.chunk_size),
        "--hidden_dim", "64",
        "--dim_feedforward", "256",
        "--enc_layers", "2",
        "--dec_layers", "1",
        "--nheads", "8",
        "--dropout", str(args.dropout),
        "--episode_len", str(args.episode_len),
        "--seed", str(args.seed),
        "--val_ratio", "0.1",
        "--val_interval", "10",
    ]
    # fmt: on


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    workdir = args.workdir.resolve()
    dataset, output = workdir / "dataset", workdir / "output"
    run_dir = output / "checkpoints" / RUN_NAME
    cfg = ReachConfig(image_size=args.image_size)
    timings: dict[str, float] = {}

    if not args.skip_training:
        start = time.perf_counter()
        recorded = record_dataset(
            dataset, args.episodes, first_seed=0, cfg=cfg, codec=args.codec, overwrite=True
        )
        timings["record_s"] = round(time.perf_counter() - start, 1)
        print(
            f"[demo] recorded {recorded['episodes']} expert episodes ({recorded['frames']} frames, expert "
            f"success {recorded['expert_success_rate']:.0%}) -> {dataset}  [{timings['record_s']} s]",
            flush=True,
        )

        command = train_command(dataset, output, args)
        threads = training_threads(args.threads)
        env = dict(os.environ, OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
        print(f"[demo] training ({threads} torch thread(s) of {available_cpus()} CPUs):", " ".join(command),
              flush=True)
        start = time.perf_counter()
        subprocess.run(command, check=True, cwd=REPO, env=env)
        timings["train_s"] = round(time.perf_counter() - start, 1)
        print(f"[demo] training done  [{timings['train_s']} s]", flush=True)

    seeds = range(EVAL_FIRST_SEED, EVAL_FIRST_SEED + args.eval_episodes)
    import torch

    caller_threads = torch.get_num_threads()
    torch.set_num_threads(1)  # batch-1 inference of a small model: more threads only add contention
    print(
        f"[demo] evaluating {args.checkpoint} closed loop on {args.eval_episodes} unseen episodes per mode "
        "(chunk, ensemble, blind, mean_action; a line every 10 episodes)",
        flush=True,
    )
    start = time.perf_counter()
    try:
        results = evaluate_run(run_dir, seeds, cfg, checkpoint=args.checkpoint, progress=True)
    finally:
        torch.set_num_threads(caller_threads)  # main() also runs inside the test process
    timings["evaluate_s"] = round(time.perf_counter() - start, 1)
    print(f"[demo] evaluation done  [{timings['evaluate_s']} s]", flush=True)

    summary = {
        "dataset": str(dataset),
        "run_dir": str(run_dir),
        "manifest": str(output / "manifest.json"),
        "checkpoint": args.checkpoint,
        "train_seeds": [0, args.episodes],
        "eval_seeds": [seeds.start, seeds.stop],
        "results": results,
        "timings": timings,
        "threads": {"training": training_threads(args.threads), "evaluation": 1, "cpus": available_cpus()},
        "args": {k: str(v) for k, v in vars(args).items()},
    }
    results_path = workdir / "demo_results.json"
    tmp = results_path.with_name(results_path.name + ".tmp")
    tmp.write_text(json.dumps(summary, indent=2) + "\n")
    tmp.replace(results_path)

    labels = {
        "chunk": "ACT, chunk execution",
        "ensemble": "ACT, temporal ensembling",
        "blind": "baseline: same policy, goal erased from images",
        "mean_action": "baseline: mean action",
    }
    print(
        f"\n[demo] closed-loop success on {args.eval_episodes} unseen episodes "
        f"(goal within {cfg.success_radius} after {cfg.max_steps} steps):"
    )
    for mode, r in results.items():
        print(
            f"  {labels[mode]:<48} {r['success_rate']:6.0%}   median final distance "
            f"{r['median_final_distance']:.3f}"
        )
    print(
        f"\n[demo] dataset:     {dataset}\n[demo] checkpoints: {run_dir}\n"
        f"[demo] manifest:    {output / 'manifest.json'}\n[demo] results:     {results_path}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
