"""The training loop: one process per rank, nanoGPT style.

The CLI (`train_lerobot_to_act.py`) converts the dataset, computes the stats, picks the split
and writes `prepared.json` into the run directory; then every rank runs `train()` on it.
Rank 0 alone writes files. What a step does is upstream ACT's: AdamW on the upstream loss
(masked L1 + kl_weight x KL with the posterior z), no LR schedule, no clipping.

Fault tolerance: SIGTERM/SIGINT set a flag; the step in flight finishes, every rank agrees to
stop at the same step, rank 0 writes `policy_last.ckpt` and `resume_state.pt` (weights,
optimizer, every rank's RNG state, position in the sampling stream, best so far) and the run
exits non-zero. Running the same command again continues bit-for-bit on the same stream.
"""

from __future__ import annotations

import json
import logging
import math
import signal
import sys
import time
from contextlib import nullcontext
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np
import torch

from act.augment import AugmentConfig, augment_images, step_generator
from act.checkpoint import atomic_torch_save
from act.config import ACTConfig
from act.data import (
    ACTEpisodeDataset,
    EpochBatchSampler,
    ListBatchSampler,
    make_loader,
    to_device,
    validation_samples,
)
from act.distributed import DistContext
from act.errors import NonFiniteLossError, ResumeStateError, describe_write_failure
from act.manifest import Manifest, now_iso
from act.plot import write_loss_curves
from act.schedule import lr_factor
from act.tracking import Trackers
from lerobot_bridge.atomic_io import atomic_write_text

log = logging.getLogger("train_act")

PREPARED_NAME = "prepared.json"
RESUME_NAME = "resume_state.pt"
COMPLETE_NAME = "training_complete.json"
METRICS_NAME = "metrics.jsonl"
PLOT_NAME = "loss_curves.png"
VAL_SEED = 1234  # validation's CVAE noise is the same every time, and never touches training RNG
WEIGHT_DECAY = 1e-4  # upstream


@dataclass
class PreparedRun:
    """Everything a rank needs, decided once by the launcher (JSON in the run directory)."""

    output_dir: str
    run_dir: str
    run_name: str
    manifest_path: str
    hdf5_paths: list[str]
    lengths: list[int]
    camera_names: list[str]
    train_ids: list[int]
    val_ids: list[int]
    device_type: str  # "cuda" | "cpu"
    rank_batch_sizes: list[int]
    steps_per_epoch: int
    num_epochs: int
    total_steps: int
    val_interval: int  # epochs
    log_interval: int  # steps
    save_interval: int  # epochs
    seed: int
    learning_rate: float
    lr_backbone: float
    precision: str  # auto | bf16 | fp32
    num_workers: int  # DataLoader workers per rank (resolved, >= 0)
    backbone_weights: str | None
    resume: bool
    val_samples: int = 256
    notes: list[str] = field(default_factory=list)
    gpu_ids: list[int] = field(default_factory=list)
    lr_schedule: str = "constant"  # act.schedule
    warmup_steps: int = 0
    init_from: str | None = None  # a checkpoint to fine-tune from (never on resume)
    tensorboard: bool = False
    wandb_project: str | None = None
    augment: bool = False  # act.augment on training batches

    @property
    def global_batch(self) -> int:
        return sum(self.rank_batch_sizes)

    def save(self, path: str | Path) -> None:
        atomic_write_text(path, json.dumps(asdict(self), indent=2) + "\n")

    @classmethod
    def load(cls, path: str | Path) -> PreparedRun:
        data = json.loads(Path(path).read_text())
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})


@dataclass
class TrainResult:
    outcome: str  # "completed" | "interrupted"
    figures: dict[str, Any]


# --------------------------------------------------------------------------------------------
# Stop requests (SIGTERM / SIGINT)


class StopFlag:
    """Set by SIGTERM/SIGINT; the loop checks it after every step."""

    def __init__(self) -> None:
        self.signum: int | None = None

    def install(self) -> None:
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, self._handle)

    def _handle(self, signum, frame) -> None:  # noqa: ARG002
        if self.signum is None:
            log.warning("received %s: finishing the current step, then saving", signal.Signals(signum).name)
        self.signum = signum

    @property
    def requested(self) -> bool:
        return self.signum is not None


# --------------------------------------------------------------------------------------------
# Small helpers


def resolve_amp_dtype(precision: str, device: torch.device) -> torch.dtype | None:
    """bf16 autocast on GPUs that support it (auto/bf16), fp32 otherwise or when asked."""
    if precision == "fp32" or device.type != "cuda":
        return None
    if torch.cuda.is_bf16_supported():
        return torch.bfloat16
    if precision == "bf16":
        raise RuntimeError(f"--precision bf16: {torch.cuda.get_device_name(device)} has no bf16 support")
    return None


def rng_state() -> dict[str, torch.Tensor]:
    state = {"cpu": torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state()
    return state


def set_rng_state(state: dict[str, torch.Tensor]) -> None:
    torch.set_rng_state(state["cpu"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state(state["cuda"])


def epoch_checkpoint_name(epoch: int, seed: int) -> str:
    return f"policy_epoch_{epoch}_seed_{seed}.ckpt"


def read_metrics(path: Path, max_step: int | None = None) -> list[dict]:
    """metrics.jsonl rows (skipping a torn last line), optionally only up to a step (resume)."""
    rows = []
    if path.exists():
        for line in path.read_text().splitlines():
            try:
                row = json.loads(line)
            except json.JSONDecodeError:
                continue
            if max_step is None or row.get("step", 0) <= max_step:
                rows.append(row)
    return rows


def format_eta(seconds: float) -> str:
    if not math.isfinite(seconds):
        return "?"
    seconds = int(seconds)
    h, rem = divmod(seconds, 3600)
    m, s = divmod(rem, 60)
    return f"{h}h{m:02d}m" if h else f"{m}m{s:02d}s"


# --------------------------------------------------------------------------------------------
# Validation


@torch.no_grad()
def validate(policy, loader, device: torch.device, amp_dtype, ctx: DistContext) -> dict[str, float]:
    """Upstream's validation loss (posterior z) and the deploy metric (z = 0), over the fixed set.

    `val_l1_deploy` is the per-element L1 over non-padded action entries of the prediction a
    robot would execute; `val_l1_mean_action` is the same for a constant predictor of the
    training mean action (0 after normalization): the number a policy must beat.
    """
    was_training = policy.training
    policy.eval()
    sums = np.zeros(7)  # n, loss*n, l1*n, kl*n, deploy abs, baseline abs, valid elements
    devices = [device] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(VAL_SEED + ctx.rank)
        for batch in loader:
            b = to_device(batch, device)
            n = b["qpos"].shape[0]
            with torch.autocast("cuda", dtype=amp_dtype) if amp_dtype else nullcontext():
                out = policy(b["qpos"], b["images"], b["action"], b["is_pad"])
                a_hat = policy(b["qpos"], b["images"])  # (B, chunk, A), z = 0
            valid = (~b["is_pad"]).unsqueeze(-1).float()  # (B, chunk, 1)
            target = b["action"]
            sums += np.array([
                n,
                out["loss"].item() * n,
                out["l1"].item() * n,
                out["kl"].item() * n,
                ((a_hat.float() - target).abs() * valid).sum().item(),
                (target.abs() * valid).sum().item(),
                valid.sum().item() * target.shape[-1],
            ])
    sums = np.array(ctx.all_sum(sums.tolist()))
    policy.train(was_training)
    n, elems = max(sums[0], 1), max(sums[6], 1)
    return {  # plain Python numbers: they go into JSON and into resume_state.pt (weights_only)
        "val_loss": float(sums[1] / n),
        "val_l1": float(sums[2] / n),
        "val_kl": float(sums[3] / n),
        "val_l1_deploy": float(sums[4] / elems),
        "val_l1_mean_action": float(sums[5] / elems),
        "val_samples": int(sums[0]),
    }


def rank_checkpoints(policy, run_dir: Path, known: dict[str, dict], make_val_loader, device: torch.device,
                     amp_dtype) -> list[dict[str, Any]]:
    """Every saved policy_*.ckpt scored on the fixed validation set, best deploy L1 first.

    known: figures already measured for a file name at the step it was saved (policy_best,
    policy_last, epoch checkpoints saved at a validation step); the rest are evaluated here on
    rank 0 alone. `policy` is left holding the weights it came in with.
    """
    from act.checkpoint import load_checkpoint

    keys = ("val_loss", "val_l1", "val_kl", "val_l1_deploy", "val_l1_mean_action", "step")
    rows = []
    final = None
    for path in sorted(run_dir.glob("policy_*.ckpt")):
        figures = known.get(path.name)
        if figures is None:
            if final is None:
                final = {k: v.detach().clone() for k, v in policy.state_dict().items()}
                loader = make_val_loader()
            policy.load_state_dict(load_checkpoint(path))
            figures = validate(policy, loader, device, amp_dtype, DistContext(device=device))
        rows.append({"checkpoint": path.name, **{k: figures[k] for k in keys if k in figures}})
    if final is not None:
        policy.load_state_dict(final)
    rows.sort(key=lambda r: (not math.isfinite(r["val_l1_deploy"]), r["val_l1_deploy"]))
    for i, row in enumerate(rows, 1):
        row["rank"] = i
    return rows


def baseline_verdict(best: dict[str, Any] | None) -> dict[str, Any] | None:
    """Does the best checkpoint beat always predicting the training mean action (deploy L1, z = 0)?

    A falling training loss says nothing about this: the KL term alone can halve the loss while
    the actions a robot would run stay worse than a constant. None without validation figures.
    """
    if not best or "val_l1_deploy" not in best:
        return None
    deploy, baseline = best["val_l1_deploy"], best["val_l1_mean_action"]
    beats = bool(deploy < baseline)
    if beats:
        message = (f"policy_best.ckpt beats the mean-action baseline on the validation set: deploy "
                   f"L1 (z = 0) {deploy:.4f} vs {baseline:.4f}")
    else:
        message = (f"policy_best.ckpt does NOT beat the mean-action baseline on the validation set: "
                   f"deploy L1 (z = 0) {deploy:.4f} vs {baseline:.4f} for always predicting the training "
                   "mean action. This policy has not learned a useful mapping; train longer "
                   "(--num_epochs), use a pretrained backbone, or check the data and cameras before "
                   "deploying it")
    return {"beats_mean_action_baseline": beats, "checkpoint": "policy_best.ckpt",
            "val_l1_deploy": deploy, "val_l1_mean_action": baseline, "message": message}


# --------------------------------------------------------------------------------------------
# The loop


def train(prep: PreparedRun, ctx: DistContext, stop: StopFlag) -> TrainResult:
    from act.act_policy import build_policy
    from act.checkpoint import save_checkpoint
    from act.stats import load_stats

    run_dir = Path(prep.run_dir)
    device = ctx.device
    amp_dtype = resolve_amp_dtype(prep.precision, device)
    autocast = (lambda: torch.autocast("cuda", dtype=amp_dtype)) if amp_dtype else nullcontext
    main = ctx.is_main

    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True  # fixed image sizes: pick the fastest conv kernels once
    # Different dropout / CVAE noise per rank; the data stream is shared (see EpochBatchSampler).
    torch.manual_seed(prep.seed + ctx.rank)
    cfg = ACTConfig.load_json(run_dir / "policy_config.json")
    policy, backbone_pretrained = build_policy(cfg, prep.backbone_weights)
    frozen = policy.freeze_unused_parameters()
    policy.to(device)
    n_params = sum(p.numel() for p in policy.parameters())
    n_trainable = sum(p.numel() for p in policy.parameters() if p.requires_grad)
    optimizer = torch.optim.AdamW(
        policy.optimizer_param_groups(prep.learning_rate, prep.lr_backbone, WEIGHT_DECAY),
        lr=prep.learning_rate,
        weight_decay=WEIGHT_DECAY,
        fused=device.type == "cuda",
    )

    base_lrs = [group["lr"] for group in optimizer.param_groups]  # the schedule scales these
    if prep.init_from and not prep.resume:  # fine-tuning: start from a trained policy (checked in prepare)
        from act.checkpoint import load_checkpoint

        policy.load_state_dict(load_checkpoint(prep.init_from))
        if main:
            log.info("fine-tuning from %s", prep.init_from)

    # ---- resume
    epoch = step_in_epoch = global_step = samples_seen = 0
    train_seconds = 0.0
    best: dict[str, Any] | None = None
    resume_path = run_dir / RESUME_NAME
    resumed_from = None
    if prep.resume and resume_path.exists():
        try:
            state = torch.load(resume_path, map_location="cpu", weights_only=True)
            policy.load_state_dict(state["model"])
            optimizer.load_state_dict(state["optimizer"])
            epoch, step_in_epoch = int(state["epoch"]), int(state["step_in_epoch"])
            global_step, samples_seen = int(state["global_step"]), int(state["samples_seen"])
            train_seconds, best = float(state["train_seconds"]), state["best"]
            rngs = state["rng"]
            if ctx.rank < len(rngs):
                set_rng_state(rngs[ctx.rank])
        except Exception as e:  # noqa: BLE001 - any unreadable or foreign state means the same fix
            raise ResumeStateError(
                f"{resume_path}: cannot resume from this file ({type(e).__name__}: {e}); it is damaged or "
                "was written by another run or version. Add --fresh to start the run over"
            ) from e
        resumed_from = {"epoch": epoch, "step_in_epoch": step_in_epoch, "global_step": global_step}
        if main:
            log.info("resuming %s at epoch %d, step %d (global step %d)", run_dir, epoch + 1,
                     step_in_epoch, global_step)
        del state

    model = policy
    if ctx.distributed:
        # Buffers (frozen BatchNorm statistics, the sinusoid table) never change: no need to
        # broadcast them before every forward.
        model = torch.nn.parallel.DistributedDataParallel(
            policy, device_ids=[device.index] if device.type == "cuda" else None,
            broadcast_buffers=False, gradient_as_bucket_view=True,
        )

    # ---- data
    stats = load_stats(run_dir / "dataset_stats.pkl")
    dataset = ACTEpisodeDataset(prep.hdf5_paths, prep.camera_names, cfg.chunk_size, stats)
    sampler = EpochBatchSampler(prep.train_ids, prep.lengths, prep.rank_batch_sizes, ctx.rank, prep.seed)
    assert sampler.steps_per_epoch == prep.steps_per_epoch
    pin = device.type == "cuda"
    loader = make_loader(dataset, sampler, prep.num_workers, pin)
    val_pairs = validation_samples(prep.val_ids, prep.lengths, prep.val_samples)[ctx.rank :: ctx.world_size]
    val_dataset = ACTEpisodeDataset(prep.hdf5_paths, prep.camera_names, cfg.chunk_size, stats)
    val_batches = ListBatchSampler(val_pairs, prep.rank_batch_sizes[ctx.rank])
    val_loader = make_loader(val_dataset, val_batches, 0, pin)
    has_val = bool(prep.val_ids)
    # DDP averages gradients over ranks; scaling each rank's mean loss by b_r * W / G makes that
    # average the mean over the global batch even when the ranks' batch sizes differ by one.
    loss_scale = prep.rank_batch_sizes[ctx.rank] * ctx.world_size / prep.global_batch

    metrics_path = run_dir / METRICS_NAME
    metrics = read_metrics(metrics_path, max_step=global_step) if main and prep.resume else []
    manifest = Manifest.load_or_new(prep.manifest_path) if main else None

    def figures(outcome: str) -> dict[str, Any]:
        elapsed = train_seconds + (time.perf_counter() - t_start)
        return {
            "outcome": outcome,
            "world_size": ctx.world_size,
            "device": str(device.type),
            "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
            "precision": "bf16 autocast" if amp_dtype else "fp32",
            "per_rank_batch": prep.rank_batch_sizes,
            "global_batch": prep.global_batch,
            "steps_per_epoch": prep.steps_per_epoch,
            "epochs_planned": prep.num_epochs,
            "steps_planned": prep.total_steps,
            "epochs_completed": epoch,
            "steps_completed": global_step,
            "samples_seen": samples_seen,
            "seconds": round(elapsed, 3),
            "samples_per_second": round(samples_seen / elapsed, 3) if elapsed > 0 else None,
            "resumed_from": resumed_from,
            "dataloader_workers_per_rank": prep.num_workers,
        }

    def write_manifest(outcome: str = "running") -> None:
        if not main:
            return
        manifest.update(
            model={
                "config": cfg.to_dict(),
                "parameters": n_params,
                "trainable_parameters": n_trainable,
                "frozen_unused_parameters": len(frozen),
                "backbone_pretrained": backbone_pretrained,
                "use_all_decoder_layers": cfg.use_all_decoder_layers,
            },
            backbone_pretrained=backbone_pretrained,
            training=figures(outcome),
            best=best,
            last_validation=last_val,
        )
        manifest.write()

    def write_checkpoint(path: Path) -> None:
        try:
            save_checkpoint(policy, path)
        except (OSError, RuntimeError) as e:
            raise describe_write_failure(path, e) from e

    def check_finite() -> None:
        """Stop (every rank, same step) once a loss since the last check was NaN/Inf.

        Called before anything is saved, so no file ever holds weights trained on a non-finite
        loss. One device->host sync per call, not per step."""
        nonlocal last_finite_step
        if ctx.any_rank(bool(nonfinite.item())):
            raise NonFiniteLossError(
                f"the training loss became NaN/Inf between step {last_finite_step + 1} and step "
                f"{global_step}; training stopped and nothing after step {last_finite_step} was saved "
                f"(policy_last.ckpt / policy_best.ckpt in {run_dir} are from the last finite state "
                f"saved, if any). Try a lower --learning_rate (now {prep.learning_rate:g}) or "
                "--precision fp32, and check the data"
            )
        last_finite_step = global_step

    def save_state(completed_epoch_boundary: bool) -> None:
        """policy_last.ckpt + resume_state.pt (collective: gathers every rank's RNG state)."""
        rngs = ctx.gather_objects(rng_state())
        if not main:
            return
        write_checkpoint(run_dir / "policy_last.ckpt")
        save_resume_state(
            {
                "model": {k: v.detach().cpu() for k, v in policy.state_dict().items()},
                "optimizer": optimizer.state_dict(),
                "epoch": epoch,
                "step_in_epoch": step_in_epoch,
                "global_step": global_step,
                "samples_seen": samples_seen,
                "train_seconds": train_seconds + (time.perf_counter() - t_start),
                "best": best,
                "rng": rngs,
                "world_size": ctx.world_size,
                "saved_at": now_iso(),
            },
            resume_path,
        )

    def save_resume_state(state: dict[str, Any], path: Path) -> None:
        try:
            atomic_torch_save(state, path)
        except (OSError, RuntimeError) as e:
            raise describe_write_failure(path, e) from e

    def record(row: dict[str, Any]) -> None:
        metrics.append(row)
        if main:
            trackers.log(row)

    def write_metrics() -> None:
        if main:
            atomic_write_text(metrics_path, "".join(json.dumps(r) + "\n" for r in metrics))
            write_loss_curves(run_dir / PLOT_NAME, metrics)  # deploy L1 vs the baseline too

    def run_validation() -> None:
        nonlocal best, last_val
        if not has_val:
            return
        last_val = validate(policy, val_loader, device, amp_dtype, ctx)
        last_val.update(epoch=epoch, step=global_step)
        record({"kind": "val", **last_val, "time": now_iso()})
        if main:
            log.info(
                "validation epoch %d step %d: loss %.4f l1 %.4f kl %.4f | deploy L1 (z=0) %.4f vs "
                "mean-action %.4f",
                epoch, global_step, last_val["val_loss"], last_val["val_l1"], last_val["val_kl"],
                last_val["val_l1_deploy"], last_val["val_l1_mean_action"],
            )
        if best is None or last_val["val_loss"] < best["val_loss"]:
            best = dict(last_val)
            if main:
                write_checkpoint(run_dir / "policy_best.ckpt")

    # ---- loop
    last_val: dict[str, Any] | None = None
    trackers = Trackers(run_dir, prep.run_name, prep.tensorboard and main,
                        prep.wandb_project if main else None, global_step, {"prepared": asdict(prep)})
    t_start = time.perf_counter()
    start_step = global_step
    write_manifest()
    if main:
        if not has_val:
            log.warning("only %d episode(s) and no validation split: best checkpoint = last",
                        len(prep.train_ids))
        log.info(
            "training: %d train / %d val episodes, %d epochs x %d steps = %d steps, global batch %d "
            "(per rank %s), %s, %s",
            len(prep.train_ids), len(prep.val_ids), prep.num_epochs, prep.steps_per_epoch,
            prep.total_steps, prep.global_batch, prep.rank_batch_sizes, device,
            "bf16 autocast" if amp_dtype else "fp32",
        )
    bar = None
    if main and sys.stderr.isatty():
        from tqdm import tqdm

        bar = tqdm(total=prep.total_steps, initial=global_step, unit="step", dynamic_ncols=True)
    acc = torch.zeros(3, device=device)  # running sums of l1, kl, loss since the last log line
    acc_n = 0
    nonfinite = torch.zeros((), dtype=torch.bool, device=device)  # any NaN/Inf loss since the last check
    last_finite_step = global_step
    t_log, samples_at_log = time.perf_counter(), samples_seen
    data_wait = 0.0  # seconds spent waiting for the loader since the last log line
    t_step_end = time.perf_counter()
    interrupted = False
    policy.train()

    # One iterator over every remaining step of the run (across epochs), so loader workers keep
    # prefetching over epoch boundaries.
    sampler.set_epoch(epoch, step_in_epoch, prep.total_steps - global_step)
    for batch in loader:
        data_wait += time.perf_counter() - t_step_end
        factor = lr_factor(global_step, prep.total_steps, prep.warmup_steps, prep.lr_schedule)
        for group, base in zip(optimizer.param_groups, base_lrs, strict=True):
            group["lr"] = base * factor
        b = to_device(batch, device)
        if prep.augment:
            b["images"] = augment_images(b["images"], AugmentConfig(),
                                         step_generator(device, prep.seed, ctx.rank, global_step))
        with autocast():
            out = model(b["qpos"], b["images"], b["action"], b["is_pad"])
        optimizer.zero_grad(set_to_none=True)
        (out["loss"] * loss_scale).backward()
        optimizer.step()

        nonfinite |= ~torch.isfinite(out["loss"].detach())
        acc += torch.stack([out["l1"], out["kl"], out["loss"]]).detach().float()
        acc_n += 1
        step_in_epoch += 1
        global_step += 1
        samples_seen += prep.global_batch
        if bar is not None:
            bar.update(1)

        if global_step % prep.log_interval == 0 or global_step == prep.total_steps:
            check_finite()
            # Global-batch mean: weight each rank's mean by its share of the global batch.
            means = acc / acc_n * (prep.rank_batch_sizes[ctx.rank] / prep.global_batch * ctx.world_size)
            if ctx.distributed:
                torch.distributed.all_reduce(means)
                means /= ctx.world_size
            l1, kl, loss = means.tolist()
            now = time.perf_counter()
            rate = (samples_seen - samples_at_log) / max(now - t_log, 1e-9)
            eta = (prep.total_steps - global_step) * prep.global_batch / rate if rate > 0 else math.inf
            lr = optimizer.param_groups[0]["lr"]  # the rate the last step used
            wait_fraction = min(1.0, data_wait / max(now - t_log, 1e-9))
            record({
                "kind": "train", "epoch": epoch + (step_in_epoch / prep.steps_per_epoch),
                "step": global_step, "loss": loss, "l1": l1, "kl": kl, "lr": lr,
                "samples_per_second": rate, "data_wait_fraction": wait_fraction, "time": now_iso(),
            })
            if main:
                if bar is not None:
                    bar.set_postfix(loss=f"{loss:.4f}", l1=f"{l1:.4f}", kl=f"{kl:.4f}")
                else:
                    log.info(
                        "epoch %d/%d step %d/%d loss %.4f l1 %.4f kl %.4f lr %.2e %.1f samples/s "
                        "(data wait %.0f%%) ETA %s",
                        epoch + 1, prep.num_epochs, global_step, prep.total_steps, loss, l1, kl, lr, rate,
                        100 * wait_fraction, format_eta(eta),
                    )
            acc.zero_()
            acc_n, t_log, samples_at_log, data_wait = 0, now, samples_seen, 0.0
            write_metrics()

        if step_in_epoch == prep.steps_per_epoch:  # epoch boundary
            epoch += 1
            step_in_epoch = 0
            last_epoch = global_step >= prep.total_steps
            saving = prep.save_interval > 0 and epoch % prep.save_interval == 0
            if saving or epoch % prep.val_interval == 0 or last_epoch:
                check_finite()
            if main and saving:
                write_checkpoint(run_dir / epoch_checkpoint_name(epoch, prep.seed))
            if epoch % prep.val_interval == 0 or last_epoch:
                run_validation()
                write_metrics()
                if not last_epoch:
                    save_state(True)
                write_manifest()

        # Every rank takes the same decision at the same step (a CPU all-reduce over gloo).
        if ctx.any_rank(stop.requested):
            interrupted = True
            break
        t_step_end = time.perf_counter()

    if bar is not None:
        bar.close()
    if interrupted:
        if global_step >= prep.total_steps:
            interrupted = False  # the signal arrived during the very last step: just finish
        else:
            check_finite()
            save_state(False)
            write_metrics()
            write_manifest("interrupted")
            if main:
                log.warning("interrupted at epoch %d step %d: state saved to %s; run the same command "
                            "again to continue", epoch + 1, global_step, resume_path)
            trackers.close()
            return TrainResult("interrupted", figures("interrupted"))

    # ---- completed
    check_finite()
    if has_val and (last_val is None or last_val["step"] != global_step):
        run_validation()
        write_metrics()
    if main:
        write_checkpoint(run_dir / "policy_last.ckpt")
        if not has_val:
            write_checkpoint(run_dir / "policy_best.ckpt")
            best = {"epoch": epoch, "step": global_step, "note": "no validation split: best = last"}
        train_seconds += time.perf_counter() - t_start
        t_start = time.perf_counter()  # from here on figures() adds nothing to train_seconds
        result = figures("completed")
        result["seconds"] = round(train_seconds, 3)
        result["samples_per_second"] = round(samples_seen / train_seconds, 3) if train_seconds else None
        result["steps_this_session"] = global_step - start_step
        ranking: list[dict[str, Any]] = []
        if has_val:
            val_at_step = {r["step"]: r for r in metrics if r.get("kind") == "val"}
            known = {"policy_last.ckpt": last_val, "policy_best.ckpt": best}
            for path in run_dir.glob("policy_epoch_*_seed_*.ckpt"):
                saved_epoch = int(path.name.split("_")[2])
                if saved_epoch * prep.steps_per_epoch in val_at_step:
                    known[path.name] = val_at_step[saved_epoch * prep.steps_per_epoch]

            def make_val_loader():
                all_val = validation_samples(prep.val_ids, prep.lengths, prep.val_samples)
                return make_loader(val_dataset, ListBatchSampler(all_val, max(prep.rank_batch_sizes)), 0, pin)

            ranking = rank_checkpoints(policy, run_dir, known, make_val_loader, device, amp_dtype)
        verdict = baseline_verdict(best)
        if verdict is not None:
            if verdict["beats_mean_action_baseline"]:
                log.info("%s", verdict["message"])
            else:
                log.warning("%s\nWARNING: %s\n%s", "!" * 100, verdict["message"], "!" * 100)
        atomic_write_text(run_dir / COMPLETE_NAME, json.dumps({"finished_at": now_iso(), **result,
                                                                "best": best, "verdict": verdict,
                                                                "checkpoint_ranking": ranking},
                                                               indent=2) + "\n")
        if resume_path.exists():
            resume_path.unlink()
        write_manifest("completed")
        notes = manifest.data.get("notes", [])
        if verdict is not None and not verdict["beats_mean_action_baseline"]:
            notes = [*notes, verdict["message"]]
        manifest.update(training=result, verdict=verdict, checkpoint_ranking=ranking, notes=notes)
        manifest.write()
        log.info("training done: %d steps, %d samples in %.1f s (%.1f samples/s); best epoch %s step %s",
                 global_step, samples_seen, train_seconds, result["samples_per_second"] or 0,
                 best.get("epoch") if best else None, best.get("step") if best else None)
        trackers.close()
        return TrainResult("completed", result)
    return TrainResult("completed", figures("completed"))
