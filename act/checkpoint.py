"""Checkpoints in upstream ACT's contract: `torch.save(policy.state_dict())`, nothing else.

A plain dict of CPU float32 tensors with `model.*` keys, loadable with
`torch.load(path, weights_only=True)` and `policy.load_state_dict(..., strict=True)` by
upstream's code. No optimizer, no config: the config goes in the sidecar
`policy_config.json` (ACTConfig) beside the checkpoints in the run directory.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from lerobot_bridge.atomic_io import atomic_write

POLICY_CONFIG_NAME = "policy_config.json"
_WRAPPER_PREFIXES = ("module.", "_orig_mod.")


def unwrap_model(model: nn.Module) -> nn.Module:
    """Peel DistributedDataParallel (`.module`) and torch.compile (`._orig_mod`) wrappers."""
    while True:
        if isinstance(model, nn.parallel.DistributedDataParallel | nn.DataParallel):
            model = model.module
        elif hasattr(model, "_orig_mod") and isinstance(model._orig_mod, nn.Module):
            model = model._orig_mod
        else:
            return model


def strip_wrapper_prefixes(key: str) -> str:
    """'module._orig_mod.model.x' -> 'model.x' (any order, any depth)."""
    changed = True
    while changed:
        changed = False
        for prefix in _WRAPPER_PREFIXES:
            if key.startswith(prefix):
                key, changed = key[len(prefix):], True
    return key


def portable_state_dict(policy: nn.Module) -> dict[str, Tensor]:
    """The policy's state_dict as upstream expects it: CPU, float32, unwrapped key names."""
    state = unwrap_model(policy).state_dict()
    out: dict[str, Tensor] = {}
    for key, value in state.items():
        value = value.detach().to("cpu")
        if value.is_floating_point():
            value = value.to(torch.float32)
        out[strip_wrapper_prefixes(key)] = value.clone().contiguous()
    return out


def save_checkpoint(policy: nn.Module, path: str | Path) -> None:
    """Write the checkpoint atomically: a temporary file in the same directory, then rename."""
    atomic_torch_save(portable_state_dict(policy), path)


def atomic_torch_save(obj: Any, path: str | Path) -> None:
    """torch.save to a temporary name in the same directory, then rename over `path`."""
    atomic_write(path, lambda tmp: torch.save(obj, tmp))


def load_checkpoint(path: str | Path) -> dict[str, Tensor]:
    """Load a checkpoint on CPU without unpickling arbitrary objects (weights_only=True)."""
    state = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(state, dict):
        raise ValueError(f"{path}: expected a state_dict (dict of tensors), got {type(state).__name__}")
    return {strip_wrapper_prefixes(k): v for k, v in state.items()}
