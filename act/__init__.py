"""ACT (Action Chunking Transformer): model, data pipeline, training and inference.

Checkpoints are upstream ACT's contract (tonyzhaozh/act): a plain state_dict with the
`model.` prefix, loadable with `torch.load(..., weights_only=True)`.

The public face (see ARCHITECTURE.md for where each concern lives):

    from act import ACTConfig, ACTPolicy, ACTRunner
    runner = ACTRunner.from_run_dir("OUT/checkpoints/RUN", device="cpu")

Names resolve on first use (PEP 562), so `python -m act.policy` and the light modules
(`act.schedule`, `act.errors`) do not import the whole package first.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

_EXPORTS = {
    "ACTConfig": "act.config",
    "ACTPolicy": "act.act_policy",
    "build_policy": "act.act_policy",
    "ACTRunner": "act.policy",
    "TemporalEnsembler": "act.policy",
    "load_checkpoint": "act.checkpoint",
    "save_checkpoint": "act.checkpoint",
    "compute_stats": "act.stats",
    "load_stats": "act.stats",
    "save_stats": "act.stats",
}
__all__ = [
    "ACTConfig", "ACTPolicy", "ACTRunner", "TemporalEnsembler", "build_policy", "compute_stats",
    "load_checkpoint", "load_stats", "save_checkpoint", "save_stats",
]

if TYPE_CHECKING:
    from act.act_policy import ACTPolicy, build_policy
    from act.checkpoint import load_checkpoint, save_checkpoint
    from act.config import ACTConfig
    from act.policy import ACTRunner, TemporalEnsembler
    from act.stats import compute_stats, load_stats, save_stats


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'act' has no attribute {name!r}")
    value = getattr(importlib.import_module(_EXPORTS[name]), name)
    globals()[name] = value  # cache: the next lookup is a plain attribute
    return value
