"""Normalization statistics: upstream ACT's `dataset_stats.pkl`.

A plain pickle of a dict of numpy float32 arrays: action_mean/std (A,), qpos_mean/std (D,),
example_qpos (T, D). Mean over every frame of every episode (train and val, as upstream),
unbiased std clipped to >= 1e-2 so near-constant joints do not blow up.

Two things upstream gets subtly wrong or leaves open, handled here:
- Portability: numpy 2 pickles name `numpy._core.multiarray`, which numpy 1.x (upstream's
  environment) cannot import. We write arrays as `numpy.array(nested list, dtype)`, which
  every numpy loads, with float32 values preserved exactly.
- Safety: the file is a pickle, so reading one from an untrusted run directory could run code.
  `load_stats` uses an unpickler that only resolves numpy array/dtype constructors and plain
  builtin containers and numbers.
"""

from __future__ import annotations

import io
import pickle
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from lerobot_bridge.atomic_io import atomic_write_bytes

STATS_FILE_NAME = "dataset_stats.pkl"
STATS_KEYS = ("action_mean", "action_std", "qpos_mean", "qpos_std", "example_qpos")
MIN_STD = 1e-2


def compute_stats(qpos_list: Sequence[np.ndarray], action_list: Sequence[np.ndarray]
                  ) -> dict[str, np.ndarray]:
    """qpos_list[i] (T_i, D), action_list[i] (T_i, A) per episode -> upstream's stats dict.

    Episodes may have different lengths (upstream requires equal lengths; the statistics over
    all frames are the same when they are). example_qpos is the last episode's qpos, as upstream.
    """
    if len(qpos_list) == 0 or len(qpos_list) != len(action_list):
        raise ValueError(f"need one qpos and one action array per episode, got {len(qpos_list)} and "
                         f"{len(action_list)}")
    for i, (q, a) in enumerate(zip(qpos_list, action_list, strict=True)):
        if q.ndim != 2 or a.ndim != 2 or q.shape[0] != a.shape[0] or q.shape[0] == 0:
            raise ValueError(f"episode {i}: expected qpos (T, D) and action (T, A) with the same T > 0, "
                             f"got {q.shape} and {a.shape}")
    # float64 accumulation: a float32 sum over ~1e6 frames loses digits.
    all_qpos = np.concatenate([np.asarray(q, dtype=np.float64) for q in qpos_list])  # (N, D)
    all_action = np.concatenate([np.asarray(a, dtype=np.float64) for a in action_list])  # (N, A)
    if all_qpos.shape[0] < 2:
        raise ValueError("need at least 2 frames to compute an unbiased std")

    def mean_std(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        mean = x.mean(axis=0)
        std = np.clip(x.std(axis=0, ddof=1), MIN_STD, np.inf)
        return mean.astype(np.float32), std.astype(np.float32)

    action_mean, action_std = mean_std(all_action)
    qpos_mean, qpos_std = mean_std(all_qpos)
    return {
        "action_mean": action_mean,
        "action_std": action_std,
        "qpos_mean": qpos_mean,
        "qpos_std": qpos_std,
        "example_qpos": np.asarray(qpos_list[-1], dtype=np.float32).copy(),
    }


class _PortablePickler(pickle.Pickler):
    """Pickles ndarrays as numpy.array(nested list, dtype str): loadable by numpy 1.x and 2.x."""

    def reducer_override(self, obj):
        if type(obj) is np.ndarray and obj.dtype.kind in "biuf" and obj.size > 0:
            return np.array, (obj.tolist(), obj.dtype.str)
        if isinstance(obj, np.generic) and obj.dtype.kind in "biuf":
            return np.array, (obj.item(), obj.dtype.str)  # numpy scalar -> 0-d array
        return NotImplemented


def dumps_stats(stats: dict) -> bytes:
    buf = io.BytesIO()
    _PortablePickler(buf, protocol=4).dump(dict(stats))
    return buf.getvalue()


def save_stats(stats: dict, path: str | Path) -> None:
    """Write the pickle atomically (temporary name in the same directory, then rename)."""
    atomic_write_bytes(path, dumps_stats(stats))


_SAFE_BUILTINS = frozenset({"dict", "list", "tuple", "set", "frozenset", "int", "float", "complex", "bool",
                            "str", "bytes", "bytearray", "slice", "range"})
_NUMPY_GLOBALS = {
    ("numpy", "array"), ("numpy", "ndarray"), ("numpy", "dtype"),
    ("numpy._core.multiarray", "_reconstruct"), ("numpy.core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "scalar"), ("numpy.core.multiarray", "scalar"),
}


class RestrictedUnpickler(pickle.Unpickler):
    """Resolves only numpy arrays/dtypes/scalars and plain builtins; anything else is refused."""

    def find_class(self, module: str, name: str):
        if module == "builtins" and name in _SAFE_BUILTINS:
            return getattr(__import__("builtins"), name)
        if (module, name) in _NUMPY_GLOBALS:
            if module == "numpy.core.multiarray" and hasattr(np, "_core"):
                module = "numpy._core.multiarray"  # numpy 2 names it so (the old path warns)
            mod = __import__(module, fromlist=[name])
            return getattr(mod, name)
        if module.startswith("numpy") and module.split(".")[-1] == "dtypes" and name.endswith("DType"):
            return getattr(np.dtypes, name)  # numpy 2's per-dtype classes (np.dtypes.Float32DType)
        raise pickle.UnpicklingError(f"refusing to load global {module}.{name}: dataset_stats.pkl may "
                                     f"only hold numpy arrays and builtin values")


def loads_stats(data: bytes) -> dict:
    stats = RestrictedUnpickler(io.BytesIO(data)).load()
    if not isinstance(stats, dict):
        raise pickle.UnpicklingError(f"expected a dict of arrays, got {type(stats).__name__}")
    return stats


def load_stats(path: str | Path) -> dict[str, np.ndarray]:
    """Load dataset_stats.pkl safely; checks the keys upstream's inference needs."""
    path = Path(path)
    try:
        stats = loads_stats(path.read_bytes())
    except pickle.UnpicklingError as e:
        raise pickle.UnpicklingError(f"{path}: {e}") from e
    missing = [k for k in ("action_mean", "action_std", "qpos_mean", "qpos_std") if k not in stats]
    if missing:
        raise KeyError(f"{path}: missing keys {missing} (expected {list(STATS_KEYS)})")
    return {k: np.asarray(v) if not isinstance(v, np.ndarray) else v for k, v in stats.items()}
