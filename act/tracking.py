"""Optional live experiment tracking: TensorBoard event files and Weights & Biases.

Both receive exactly the rows written to metrics.jsonl (the source of truth), on rank 0 only.
Neither is required: the CLI refuses --tensorboard / --wandb_project up front when the package
is missing. W&B honours its own environment (WANDB_MODE=offline, WANDB_ENTITY, WANDB_API_KEY);
no entity is set here.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

TENSORBOARD_DIR = "tensorboard"
# Scalars each row kind carries; the rest (kind, time, epoch bookkeeping) is not a curve.
_SKIP = {"kind", "time", "step"}


def missing_tracking_package(tensorboard: bool, wandb_project: str | None) -> str | None:
    """The pip line a requested tracker needs, or None when everything is installed."""
    if tensorboard and importlib.util.find_spec("tensorboard") is None:
        return "--tensorboard needs the tensorboard package: pip install tensorboard"
    if wandb_project and importlib.util.find_spec("wandb") is None:
        return ("--wandb_project needs the wandb package: pip install wandb (WANDB_MODE=offline needs "
                "no account)")
    return None


def scalars(row: dict[str, Any]) -> dict[str, float]:
    """'train/loss', 'val/val_l1_deploy', ...: every numeric field of a metrics.jsonl row."""
    prefix = row["kind"]
    return {f"{prefix}/{k}": float(v) for k, v in row.items()
            if k not in _SKIP and isinstance(v, int | float) and not isinstance(v, bool)}


class Trackers:
    """Forward metrics rows to the trackers asked for; a no-op when none are."""

    def __init__(self, run_dir: Path, run_name: str, tensorboard: bool, wandb_project: str | None,
                 start_step: int, config: dict[str, Any]) -> None:
        self.tb = self.wandb = None
        if tensorboard:
            from torch.utils.tensorboard import SummaryWriter

            # purge_step: a resumed run drops the events an interrupted session wrote past its
            # last saved step, as metrics.jsonl does.
            self.tb = SummaryWriter(str(run_dir / TENSORBOARD_DIR), purge_step=start_step or None)
        if wandb_project:
            import wandb

            self.wandb = wandb.init(project=wandb_project, name=run_name, id=run_name, resume="allow",
                                    dir=str(run_dir), config=config)

    def log(self, row: dict[str, Any]) -> None:
        values = scalars(row)
        if self.tb is not None:
            for key, value in values.items():
                self.tb.add_scalar(key, value, global_step=row["step"])
        if self.wandb is not None:
            self.wandb.log(values, step=row["step"])

    def close(self) -> None:
        if self.tb is not None:
            self.tb.close()
        if self.wandb is not None:
            self.wandb.finish()
