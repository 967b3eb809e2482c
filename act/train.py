"""The training loop: one process per rank, nanoGPT style.

The CLI (`train_lerobot_to_act.py`) converts the dataset, computes the stats, picks the split
and writes `prepared.json` into the run directory; then every rank runs `train()` on it.
Rank 0 alone writes files. What a step does is upstream ACT's: AdamW on the upstream loss
(masked L1 + kl_weight x KL with the posterior z), no LR schedule, no clipping.

Fault tolerance: SIGTERM/SIGINT set a flag; the step in flight finishes, every rank agrees to
stop at the same step, rank 0 writes `policy_last.ckpt` and `resume_state.pt` (weights,
optimizer, every rank's RNG state, position in the sampling stream, best so far) and the run
exits non-zero. Running the same command again continues bit-for-bit on the same stream.

Where things are: `train()` below reads top to bottom (build, then one loop over every step);
the state that survives a preemption is `act.train_state.TrainState` (the one place
resume_state.pt is written and read); everything recorded (metrics.jsonl, log lines, the plot,
the manifest, trackers, training_complete.json) is `act.recording.Recorder`.
"""

from __future__ import annotations

import json
import logging
import math
import signal
from contextlib import nullcontext
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np
import torch

from act.augment import AugmentConfig, augment_images, step_generator
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
from act.errors import NonFiniteLossError, describe_write_failure
from act.recording import (  # noqa: F401 - read_metrics, format_eta: their old home, kept importable
    COMPLETE_NAME,
    METRICS_NAME,
    PLOT_NAME,
    Recorder,
    format_eta,
    read_metrics,
)
from act.schedule import lr_factor
from act.train_state import TrainState, rng_state, set_rng_state  # noqa: F401 - set_rng_state: old home
from lerobot_bridge.atomic_io import atomic_write_text

log = logging.getLogger("train_act")

PREPARED_NAME = "prepared.json"
RESUME_NAME = "resume_state.pt"  # act.train_state.TrainState.save / load
LAST_NAME = "policy_last.ckpt"
BEST_NAME = "policy_best.ckpt"
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


def epoch_checkpoint_name(epoch: int, seed: int) -> str:
    return f"policy_epoch_{epoch}_seed_{seed}.ckpt"


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
# Building a run: model, optimizer, data


def build_model(cfg: ACTConfig, prep: PreparedRun, device: torch.device) -> tuple[torch.nn.Module, dict]:
    """The policy on its device, with the parameters the loss never reaches frozen (DDP needs
    every trainable parameter to get a gradient), and the manifest's "model" section."""
    from act.act_policy import build_policy

    policy, backbone_pretrained = build_policy(cfg, prep.backbone_weights)  # consumes the torch RNG (init)
    frozen = policy.freeze_unused_parameters()
    policy.to(device)
    summary = {
        "config": cfg.to_dict(),
        "parameters": sum(p.numel() for p in policy.parameters()),
        "trainable_parameters": sum(p.numel() for p in policy.parameters() if p.requires_grad),
        "frozen_unused_parameters": len(frozen),
        "backbone_pretrained": backbone_pretrained,
        "use_all_decoder_layers": cfg.use_all_decoder_layers,
    }
    return policy, summary


def build_optimizer(policy, prep: PreparedRun, device: torch.device) -> torch.optim.AdamW:
    """Upstream's AdamW: weight decay 1e-4, the backbone at its own (usually lower) rate."""
    return torch.optim.AdamW(
        policy.optimizer_param_groups(prep.learning_rate, prep.lr_backbone, WEIGHT_DECAY),
        lr=prep.learning_rate,
        weight_decay=WEIGHT_DECAY,
        fused=device.type == "cuda",
    )


def wrap_for_ddp(policy: torch.nn.Module, ctx: DistContext) -> torch.nn.Module:
    """The module the loop calls: DDP over the policy when there are several ranks, else the policy.

    DDP broadcasts rank 0's weights on construction, so it must come after a resume loaded them.
    Buffers (frozen BatchNorm statistics, the sinusoid table) never change: no need to broadcast
    them before every forward."""
    if not ctx.distributed:
        return policy
    device = ctx.device
    return torch.nn.parallel.DistributedDataParallel(
        policy, device_ids=[device.index] if device.type == "cuda" else None,
        broadcast_buffers=False, gradient_as_bucket_view=True,
    )


@dataclass
class TrainData:
    """This rank's loaders: an endless-per-run training stream and its share of the fixed validation set."""

    sampler: EpochBatchSampler
    loader: torch.utils.data.DataLoader
    val_dataset: ACTEpisodeDataset
    val_loader: torch.utils.data.DataLoader
    has_val: bool
    pin: bool

    def full_val_loader(self, prep: PreparedRun) -> torch.utils.data.DataLoader:
        """The whole validation set on one rank (rank 0 scoring checkpoints at the end)."""
        all_val = validation_samples(prep.val_ids, prep.lengths, prep.val_samples)
        batches = ListBatchSampler(all_val, max(prep.rank_batch_sizes))
        return make_loader(self.val_dataset, batches, 0, self.pin)


def build_data(prep: PreparedRun, ctx: DistContext, cfg: ACTConfig) -> TrainData:
    """Batches: qpos (B, D), images (B, N_cam, H, W, 3) uint8, action (B, chunk, A), is_pad (B, chunk)
    with B this rank's batch size; normalized with the run's dataset_stats.pkl."""
    from act.stats import load_stats

    stats = load_stats(Path(prep.run_dir) / "dataset_stats.pkl")
    dataset = ACTEpisodeDataset(prep.hdf5_paths, prep.camera_names, cfg.chunk_size, stats)
    sampler = EpochBatchSampler(prep.train_ids, prep.lengths, prep.rank_batch_sizes, ctx.rank, prep.seed)
    assert sampler.steps_per_epoch == prep.steps_per_epoch
    pin = ctx.device.type == "cuda"
    loader = make_loader(dataset, sampler, prep.num_workers, pin)
    val_pairs = validation_samples(prep.val_ids, prep.lengths, prep.val_samples)[ctx.rank :: ctx.world_size]
    val_dataset = ACTEpisodeDataset(prep.hdf5_paths, prep.camera_names, cfg.chunk_size, stats)
    val_batches = ListBatchSampler(val_pairs, prep.rank_batch_sizes[ctx.rank])
    val_loader = make_loader(val_dataset, val_batches, 0, pin)
    return TrainData(sampler, loader, val_dataset, val_loader, has_val=bool(prep.val_ids), pin=pin)


def set_learning_rate(optimizer: torch.optim.Optimizer, base_lrs: list[float], factor: float) -> None:
    for group, base in zip(optimizer.param_groups, base_lrs, strict=True):
        group["lr"] = base * factor


# --------------------------------------------------------------------------------------------
# Checkpointing, validation, the NaN guard


def write_checkpoint(policy: torch.nn.Module, path: Path) -> None:
    """A policy_*.ckpt (rank 0); a failed write names the file and the free space."""
    from act.checkpoint import save_checkpoint

    try:
        save_checkpoint(policy, path)
    except (OSError, RuntimeError) as e:
        raise describe_write_failure(path, e) from e


def save_for_resume(state: TrainState, ctx: DistContext, run_dir: Path) -> None:
    """policy_last.ckpt, then resume_state.pt. Collective: every rank's RNG state is gathered."""
    rngs = ctx.gather_objects(rng_state())
    if not ctx.is_main:
        return
    write_checkpoint(state.policy, run_dir / LAST_NAME)
    state.save(run_dir / RESUME_NAME, rngs, ctx.world_size)


def validate_and_keep_best(state: TrainState, rec: Recorder, val_loader, ctx: DistContext, amp_dtype,
                           run_dir: Path) -> None:
    """Score the policy on the validation set (collective); a new lowest val_loss is policy_best.ckpt.

    Upstream ACT picks its best checkpoint by validation loss; so does this (the deploy L1 is
    recorded beside it, and used to rank every checkpoint at the end)."""
    figures = validate(state.policy, val_loader, ctx.device, amp_dtype, ctx)
    figures.update(epoch=state.epoch, step=state.global_step)
    rec.validation(figures)
    if state.best is None or figures["val_loss"] < state.best["val_loss"]:
        state.best = dict(figures)
        if ctx.is_main:
            write_checkpoint(state.policy, run_dir / BEST_NAME)


class NonFiniteGuard:
    """Stops the run (every rank, same step) once a loss since the last check was NaN/Inf.

    `observe` folds each step's loss into an on-device flag (no sync); `check` runs before
    anything is saved, so no file ever holds weights trained on a non-finite loss. One
    device->host sync per check, not per step."""

    def __init__(self, ctx: DistContext, prep: PreparedRun, step: int) -> None:
        self.ctx, self.prep = ctx, prep
        self.flag = torch.zeros((), dtype=torch.bool, device=ctx.device)  # any NaN/Inf since the last check
        self.last_finite_step = step

    def observe(self, loss: torch.Tensor) -> None:
        self.flag |= ~torch.isfinite(loss.detach())

    def check(self, step: int) -> None:
        if self.ctx.any_rank(bool(self.flag.item())):
            raise NonFiniteLossError(
                f"the training loss became NaN/Inf between step {self.last_finite_step + 1} and step "
                f"{step}; training stopped and nothing after step {self.last_finite_step} was saved "
                f"({LAST_NAME} / {BEST_NAME} in {self.prep.run_dir} are from the last finite state "
                f"saved, if any). Try a lower --learning_rate (now {self.prep.learning_rate:g}) or "
                "--precision fp32, and check the data"
            )
        self.last_finite_step = step


# --------------------------------------------------------------------------------------------
# The loop


def train(prep: PreparedRun, ctx: DistContext, stop: StopFlag) -> TrainResult:
    """Train on `prep` as this rank; rank 0 writes every file. Returns how it ended.

    One loop over every remaining step of the run: batch, forward, loss, backward, AdamW step,
    then the numbers go to the recorder. Epoch boundaries validate and save; a stop request
    saves the state and returns "interrupted".
    """
    run_dir = Path(prep.run_dir)
    device = ctx.device
    main = ctx.is_main
    amp_dtype = resolve_amp_dtype(prep.precision, device)
    autocast = (lambda: torch.autocast("cuda", dtype=amp_dtype)) if amp_dtype else nullcontext
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True  # fixed image sizes: pick the fastest conv kernels once

    # ---- model, optimizer, state. Different dropout / CVAE noise per rank; the data stream is
    # shared (see EpochBatchSampler). The seed comes first: it decides the initial weights.
    torch.manual_seed(prep.seed + ctx.rank)
    cfg = ACTConfig.load_json(run_dir / "policy_config.json")
    policy, model_summary = build_model(cfg, prep, device)
    optimizer = build_optimizer(policy, prep, device)
    base_lrs = [group["lr"] for group in optimizer.param_groups]  # the schedule scales these
    state = TrainState(policy, optimizer)
    if prep.init_from and not prep.resume:  # fine-tuning: start from a trained policy (checked in prepare)
        from act.checkpoint import load_checkpoint

        policy.load_state_dict(load_checkpoint(prep.init_from))
        if main:
            log.info("fine-tuning from %s", prep.init_from)
    resume_path = run_dir / RESUME_NAME
    if prep.resume and resume_path.exists():
        state.load(resume_path, ctx.rank)  # weights, optimizer, counters, best, this rank's RNG
        if main:
            log.info("resuming %s at epoch %d, step %d (global step %d)", run_dir, state.epoch + 1,
                     state.step_in_epoch, state.global_step)
    model = wrap_for_ddp(policy, ctx)

    # ---- data
    data = build_data(prep, ctx, cfg)
    # DDP averages gradients over ranks; scaling each rank's mean loss by b_r * W / G makes that
    # average the mean over the global batch even when the ranks' batch sizes differ by one.
    loss_scale = prep.rank_batch_sizes[ctx.rank] * ctx.world_size / prep.global_batch

    # ---- recording
    rec = Recorder(prep, ctx, state, model_summary, amp_dtype)
    state.start_clock()
    rec.start(data.has_val)
    guard = NonFiniteGuard(ctx, prep, state.global_step)
    interrupted = False
    policy.train()

    # One iterator over every remaining step of the run (across epochs), so loader workers keep
    # prefetching over epoch boundaries.
    data.sampler.set_epoch(state.epoch, state.step_in_epoch, prep.total_steps - state.global_step)
    for batch in data.loader:
        rec.batch_arrived()
        set_learning_rate(optimizer, base_lrs,
                          lr_factor(state.global_step, prep.total_steps, prep.warmup_steps, prep.lr_schedule))
        # qpos (B, D), images (B, N_cam, 3, H, W) uint8, action (B, chunk, A), is_pad (B, chunk) bool
        b = to_device(batch, device)
        if prep.augment:  # its own generator per (seed, rank, step): resume-exact, global RNG untouched
            b["images"] = augment_images(b["images"], AugmentConfig(),
                                         step_generator(device, prep.seed, ctx.rank, state.global_step))
        with autocast():
            # Teacher-forced CVAE: l1 (masked, over the chunk), kl (posterior z), loss = l1 + kl_weight * kl
            out = model(b["qpos"], b["images"], b["action"], b["is_pad"])  # each a () tensor
        optimizer.zero_grad(set_to_none=True)
        (out["loss"] * loss_scale).backward()  # DDP all-reduces (averages) the gradients here
        optimizer.step()
        guard.observe(out["loss"])
        rec.train_step(out)
        state.advance(prep.global_batch)

        if state.global_step % prep.log_interval == 0 or state.global_step == prep.total_steps:
            guard.check(state.global_step)
            rec.log_train(lr=optimizer.param_groups[0]["lr"])  # the rate the last step used

        if state.step_in_epoch == prep.steps_per_epoch:  # epoch boundary
            state.end_epoch()
            last_epoch = state.global_step >= prep.total_steps
            saving = prep.save_interval > 0 and state.epoch % prep.save_interval == 0
            validating = state.epoch % prep.val_interval == 0 or last_epoch
            if saving or validating:
                guard.check(state.global_step)
            if main and saving:
                write_checkpoint(policy, run_dir / epoch_checkpoint_name(state.epoch, prep.seed))
            if validating:
                if data.has_val:
                    validate_and_keep_best(state, rec, data.val_loader, ctx, amp_dtype, run_dir)
                rec.write_metrics()
                if not last_epoch:  # the last epoch's state is the finished run's: nothing to resume
                    save_for_resume(state, ctx, run_dir)
                rec.write_manifest()

        # Every rank takes the same decision at the same step (a CPU all-reduce over gloo).
        if ctx.any_rank(stop.requested):
            interrupted = True
            break
        rec.step_done()

    rec.close()
    # A signal during the very last step: just finish.
    if interrupted and state.global_step < prep.total_steps:
        guard.check(state.global_step)
        save_for_resume(state, ctx, run_dir)
        return TrainResult("interrupted", rec.interrupted(resume_path))
    return finish(state, rec, guard, data, prep, ctx, amp_dtype)


def finish(state: TrainState, rec: Recorder, guard: NonFiniteGuard, data: TrainData, prep: PreparedRun,
           ctx: DistContext, amp_dtype) -> TrainResult:
    """The run's end: a last validation if the last step had none, then (rank 0) policy_last.ckpt,
    every checkpoint ranked by deploy L1, the baseline verdict, training_complete.json, and
    resume_state.pt removed (a finished run has nothing to resume)."""
    run_dir = Path(prep.run_dir)
    guard.check(state.global_step)
    if data.has_val and (rec.last_val is None or rec.last_val["step"] != state.global_step):
        validate_and_keep_best(state, rec, data.val_loader, ctx, amp_dtype, run_dir)
        rec.write_metrics()
    if not ctx.is_main:
        return TrainResult("completed", rec.figures("completed"))

    write_checkpoint(state.policy, run_dir / LAST_NAME)
    if not data.has_val:
        write_checkpoint(state.policy, run_dir / BEST_NAME)
        state.best = {"epoch": state.epoch, "step": state.global_step,
                      "note": "no validation split: best = last"}
    result = rec.completed_figures()
    ranking: list[dict[str, Any]] = []
    if data.has_val:
        # Figures already measured need no second pass: policy_last/best, and epoch checkpoints
        # saved at a step that was validated.
        val_at_step = {r["step"]: r for r in rec.metrics if r.get("kind") == "val"}
        known = {LAST_NAME: rec.last_val, BEST_NAME: state.best}
        for path in run_dir.glob("policy_epoch_*_seed_*.ckpt"):
            saved_epoch = int(path.name.split("_")[2])
            if saved_epoch * prep.steps_per_epoch in val_at_step:
                known[path.name] = val_at_step[saved_epoch * prep.steps_per_epoch]
        ranking = rank_checkpoints(state.policy, run_dir, known, lambda: data.full_val_loader(prep),
                                   ctx.device, amp_dtype)
    verdict = baseline_verdict(state.best)
    rec.log_verdict(verdict)
    rec.write_completion(result, verdict, ranking)
    resume_path = run_dir / RESUME_NAME
    if resume_path.exists():
        resume_path.unlink()
    rec.completed(result, verdict, ranking)
    return TrainResult("completed", result)
