"""Everything a training run must carry across a preemption, in one object: `TrainState`.

`resume_state.pt` is `TrainState.save`'s output and `TrainState.load`'s input; nothing else
reads or writes it, so its keys are listed in one place (this file). The format is a plain
dict of tensors and Python numbers, loadable with `torch.load(weights_only=True)`:

    model          the bare policy's state_dict (no DDP "module." prefix), on the CPU
    optimizer      AdamW's state_dict (moments, step counts, param-group learning rates)
    epoch          completed epochs
    step_in_epoch  optimizer steps taken in the current epoch
    global_step    optimizer steps taken in the run
    samples_seen   global_step x global batch
    train_seconds  seconds spent training, all sessions together
    best           the best validation figures so far (dict of floats/ints) or None
    rng            every rank's torch RNG state, indexed by rank
    world_size     how many ranks wrote it (informational)
    saved_at       ISO time (informational)

Why the RNG states and the position in the epoch: dropout and the CVAE's posterior noise draw
from the global torch RNG, and the sampling stream is a pure function of (seed, epoch, step in
epoch) (see act.data.EpochBatchSampler). Restoring both makes an interrupted-and-resumed run
bit-identical to one that was never interrupted. The learning-rate schedule is a pure function
of global_step (act.schedule), so it needs no entry.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import torch

from act.checkpoint import atomic_torch_save
from act.errors import ResumeStateError, describe_write_failure
from act.manifest import now_iso


def rng_state() -> dict[str, torch.Tensor]:
    """This process's torch RNG state (CPU, and the current GPU's once CUDA is initialized)."""
    state = {"cpu": torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state()
    return state


def set_rng_state(state: dict[str, torch.Tensor]) -> None:
    torch.set_rng_state(state["cpu"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state(state["cuda"])


@dataclass
class TrainState:
    """The model, its optimizer and the run's position: what `resume_state.pt` holds.

    The RNG states are not a field: they live in the torch runtime of every rank. `save` takes
    them already gathered (a collective every rank joins, see act.train.save_for_resume) and
    `load` puts this rank's back.
    """

    policy: torch.nn.Module  # the bare policy, never the DDP wrapper
    optimizer: torch.optim.Optimizer
    epoch: int = 0  # completed epochs
    step_in_epoch: int = 0  # steps taken in the current epoch (0 at a boundary)
    global_step: int = 0  # optimizer steps taken
    samples_seen: int = 0  # global_step x global batch
    train_seconds: float = 0.0  # banked: earlier sessions (and this one, once `bank_time` ran)
    best: dict[str, Any] | None = None  # validation figures of policy_best.ckpt
    # Not saved: where this session started (None on a fresh run), for the manifest.
    resumed_from: dict[str, int] | None = None
    clock_start: float = field(default_factory=time.perf_counter, repr=False)  # not saved

    # The integer counters, saved under their own names: the single list of them.
    COUNTERS: ClassVar[tuple[str, ...]] = ("epoch", "step_in_epoch", "global_step", "samples_seen")

    # -------------------------------------------------------------------------- progress
    def advance(self, global_batch: int) -> None:
        """One optimizer step taken (every rank counts the global batch)."""
        self.step_in_epoch += 1
        self.global_step += 1
        self.samples_seen += global_batch

    def end_epoch(self) -> None:
        self.epoch += 1
        self.step_in_epoch = 0

    # -------------------------------------------------------------------------- time
    def start_clock(self) -> None:
        self.clock_start = time.perf_counter()

    def seconds(self) -> float:
        """Training seconds so far: the banked ones plus this session's since `start_clock`."""
        return self.train_seconds + (time.perf_counter() - self.clock_start)

    def bank_time(self) -> None:
        """Move this session's seconds into `train_seconds` (at the end: `seconds()` stops growing)."""
        self.train_seconds += time.perf_counter() - self.clock_start
        self.clock_start = time.perf_counter()

    # -------------------------------------------------------------------------- resume_state.pt
    def save(self, path: str | Path, rngs: list[dict[str, torch.Tensor]], world_size: int) -> None:
        """Write resume_state.pt atomically (rank 0 only); `rngs` is every rank's `rng_state()`."""
        state = {
            "model": {k: v.detach().cpu() for k, v in self.policy.state_dict().items()},
            "optimizer": self.optimizer.state_dict(),
            **{name: getattr(self, name) for name in self.COUNTERS},
            "train_seconds": self.seconds(),
            "best": self.best,
            "rng": rngs,
            "world_size": world_size,
            "saved_at": now_iso(),
        }
        try:
            atomic_torch_save(state, path)
        except (OSError, RuntimeError) as e:
            raise describe_write_failure(Path(path), e) from e

    def load(self, path: str | Path, rank: int) -> None:
        """Restore everything `save` wrote, and put this rank's RNG state back.

        Every rank reads the file. A rank beyond the saved world size keeps its own seeding.
        Any failure (damaged file, another run's shapes) is a ResumeStateError: --fresh fixes it.
        """
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
            self.policy.load_state_dict(state["model"])
            self.optimizer.load_state_dict(state["optimizer"])
            for name in self.COUNTERS:
                setattr(self, name, int(state[name]))
            self.train_seconds, self.best = float(state["train_seconds"]), state["best"]
            rngs = state["rng"]
            if rank < len(rngs):
                set_rng_state(rngs[rank])
        except Exception as e:  # noqa: BLE001 - any unreadable or foreign state means the same fix
            raise ResumeStateError(
                f"{path}: cannot resume from this file ({type(e).__name__}: {e}); it is damaged or "
                "was written by another run or version. Add --fresh to start the run over"
            ) from e
        self.resumed_from = {"epoch": self.epoch, "step_in_epoch": self.step_in_epoch,
                             "global_step": self.global_step}
