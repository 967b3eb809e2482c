"""dataset_stats.pkl: upstream's values, portable pickles, and a loader that refuses code."""

from __future__ import annotations

import os
import pickle

import numpy as np
import pytest

from act.stats import compute_stats, load_stats, save_stats


def test_compute_stats_values_by_hand():
    # joint 0: frames 0, 2, 4 over two episodes -> mean 2, unbiased std sqrt((4 + 0 + 4) / 2) = 2
    # joint 1: constant 5 -> std 0, clipped to 0.01
    qpos = [np.array([[0.0, 5.0], [2.0, 5.0]], np.float32), np.array([[4.0, 5.0]], np.float32)]
    action = [np.array([[1.0], [1.0]], np.float32), np.array([[4.0]], np.float32)]
    stats = compute_stats(qpos, action)
    assert set(stats) == {"action_mean", "action_std", "qpos_mean", "qpos_std", "example_qpos"}
    np.testing.assert_array_equal(stats["qpos_mean"], [2.0, 5.0])
    np.testing.assert_allclose(stats["qpos_std"], [2.0, 0.01], rtol=1e-6)
    np.testing.assert_allclose(stats["action_mean"], [2.0])
    np.testing.assert_allclose(stats["action_std"], [np.sqrt(3.0)], rtol=1e-6)  # (1+1+4)/2
    np.testing.assert_array_equal(stats["example_qpos"], qpos[-1])  # upstream keeps the last episode's
    assert all(v.dtype == np.float32 for v in stats.values())


def test_compute_stats_rejects_mismatched_lengths():
    with pytest.raises(ValueError, match="episode 0"):
        compute_stats([np.zeros((3, 2))], [np.zeros((4, 2))])


def test_round_trip_and_plain_pickle_compatibility(tmp_path):
    rng = np.random.default_rng(0)
    stats = compute_stats([rng.normal(size=(20, 6)).astype(np.float32)],
                          [rng.normal(size=(20, 6)).astype(np.float32)])
    path = tmp_path / "dataset_stats.pkl"
    save_stats(stats, path)
    data = path.read_bytes()
    # numpy 2's module path would not import under numpy 1.x (upstream's environment)
    assert b"numpy._core" not in data and b"numpy.core" not in data
    for loaded in (load_stats(path), pickle.loads(data)):  # ours, and what upstream does
        assert set(loaded) == set(stats)
        for key, value in stats.items():
            assert loaded[key].dtype == value.dtype and np.array_equal(loaded[key], value), key
    # a pickle written the ordinary way (numpy's own reduce) also loads through the safe reader
    plain = tmp_path / "plain.pkl"
    plain.write_bytes(pickle.dumps(stats))
    assert np.array_equal(load_stats(plain)["example_qpos"], stats["example_qpos"])


class _RunsCode:
    def __init__(self, marker: str):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


class _OpensFile:
    def __init__(self, marker: str):
        self.marker = marker

    def __reduce__(self):
        return open, (self.marker, "w")


@pytest.mark.parametrize("payload", [_RunsCode, _OpensFile])
def test_restricted_unpickler_refuses_code(tmp_path, payload):
    marker = tmp_path / "pwned"
    path = tmp_path / "dataset_stats.pkl"
    path.write_bytes(pickle.dumps({"action_mean": np.zeros(2, np.float32), "x": payload(str(marker))}))
    with pytest.raises(pickle.UnpicklingError, match="refusing"):
        load_stats(path)
    assert not marker.exists()


def test_normalizer_is_upstreams_formula_on_numpy_and_torch():
    """act.normalize holds the one formula data, inference and ONNX use: (x - mean) / std in,
    x * std + mean out, float32 stats, the same on numpy arrays and torch tensors."""
    import torch

    from act.normalize import Normalizer, standardize

    stats = {"qpos_mean": [1.0, -2.0], "qpos_std": [2.0, 0.5], "action_mean": [0.5], "action_std": [4.0]}
    norm = Normalizer.from_stats(stats)
    assert all(getattr(norm, k).dtype == np.float32 for k in Normalizer.FIELDS)
    qpos = np.array([[3.0, -1.0], [1.0, -2.0]], np.float32)
    np.testing.assert_array_equal(norm.qpos(qpos), [[1.0, 2.0], [0.0, 0.0]])
    np.testing.assert_array_equal(norm.action(np.array([[8.5]], np.float32)), [[2.0]])
    np.testing.assert_array_equal(norm.unnormalize_action(np.array([[2.0]], np.float32)), [[8.5]])
    # on tensors with tensor statistics, as the ONNX graph uses it
    t = standardize(torch.from_numpy(qpos), torch.from_numpy(norm.qpos_mean), torch.from_numpy(norm.qpos_std))
    assert isinstance(t, torch.Tensor) and torch.equal(t, torch.tensor([[1.0, 2.0], [0.0, 0.0]]))
