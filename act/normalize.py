"""Upstream ACT's normalization of qpos and actions, in one place (data, inference, ONNX export).

qpos and actions are standardized per dimension with the dataset's mean and std from
dataset_stats.pkl (act.stats computes them; stds are clipped to >= 1e-2 there, as upstream's
get_norm_stats does): x_n = (x - mean) / std for the model's inputs and targets, and the model's
predicted actions are mapped back with x = x_n * std + mean. Images are not normalized here: the
policy applies ImageNet's mean/std to uint8 frames itself (act_policy.normalize_images).

standardize / unstandardize take numpy arrays, or torch tensors with tensor statistics (the ONNX
graph keeps the statistics as buffers); Normalizer holds them as numpy float32 arrays.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TypeVar

import numpy as np

ArrayT = TypeVar("ArrayT")


def standardize(x: ArrayT, mean, std) -> ArrayT:
    return (x - mean) / std


def unstandardize(x: ArrayT, mean, std) -> ArrayT:
    return x * std + mean


@dataclass(frozen=True)
class Normalizer:
    """The run's qpos / action statistics (float32, shapes (D,) and (A,))."""

    qpos_mean: np.ndarray
    qpos_std: np.ndarray
    action_mean: np.ndarray
    action_std: np.ndarray

    FIELDS = ("qpos_mean", "qpos_std", "action_mean", "action_std")

    @classmethod
    def from_stats(cls, stats: dict) -> Normalizer:
        """From a dataset_stats dict (act.stats.load_stats), as float32 arrays."""
        return cls(**{k: np.asarray(stats[k], dtype=np.float32) for k in cls.FIELDS})

    def qpos(self, qpos: ArrayT) -> ArrayT:
        """Raw qpos (..., D) -> the model's input."""
        return standardize(qpos, self.qpos_mean, self.qpos_std)

    def action(self, action: ArrayT) -> ArrayT:
        """Raw actions (..., A) -> the model's targets."""
        return standardize(action, self.action_mean, self.action_std)

    def unnormalize_action(self, action: ArrayT) -> ArrayT:
        """The model's predicted actions (..., A) -> raw actions for the robot."""
        return unstandardize(action, self.action_mean, self.action_std)
