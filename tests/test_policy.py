"""Inference (ACTRunner, temporal ensembling, replay CLI) and the checkpoint files it reads."""

from __future__ import annotations

import math
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch

from act.act_policy import ACTPolicy
from act.checkpoint import POLICY_CONFIG_NAME, load_checkpoint, save_checkpoint
from act.config import ACTConfig
from act.policy import ACTRunner, TemporalEnsembler, main
from act.stats import STATS_FILE_NAME, save_stats


def tiny_config(**overrides) -> ACTConfig:
    base = dict(state_dim=3, action_dim=2, camera_names=["top", "wrist"], chunk_size=4, hidden_dim=64,
                dim_feedforward=128, nheads=4, enc_layers=1, dec_layers=2, latent_dim=8)
    base.update(overrides)
    return ACTConfig(**base)


STATS = {
    "qpos_mean": np.array([0.5, -1.0, 2.0], np.float32),
    "qpos_std": np.array([2.0, 0.5, 1.0], np.float32),
    "action_mean": np.array([10.0, -3.0], np.float32),
    "action_std": np.array([4.0, 0.25], np.float32),
    "example_qpos": np.zeros((5, 3), np.float32),
}


@pytest.fixture
def run_dir(tmp_path) -> tuple[Path, ACTPolicy]:
    torch.manual_seed(0)
    cfg = tiny_config()
    policy = ACTPolicy(cfg).eval()
    run = tmp_path / "checkpoints" / "run"
    run.mkdir(parents=True)
    save_checkpoint(policy, run / "policy_best.ckpt")
    save_stats(STATS, run / STATS_FILE_NAME)
    cfg.save_json(run / POLICY_CONFIG_NAME)
    return run, policy


def observation(t: int) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    rng = np.random.default_rng(t)
    qpos = rng.normal(size=3).astype(np.float32)
    images = {cam: rng.integers(0, 256, (64, 64, 3), dtype=np.uint8) for cam in ("top", "wrist")}
    return qpos, images


def expected_chunk(policy: ACTPolicy, qpos: np.ndarray, images: dict[str, np.ndarray]) -> np.ndarray:
    """Upstream's eval, written out: normalize qpos, CHW images / 255, z = 0, unnormalize."""
    q = torch.from_numpy((qpos - STATS["qpos_mean"]) / STATS["qpos_std"])[None]
    im = torch.stack([torch.from_numpy(images[c]).permute(2, 0, 1) for c in ("top", "wrist")])[None] / 255.0
    with torch.no_grad():
        pred = policy(q, im)[0].numpy()
    return pred * STATS["action_std"] + STATS["action_mean"]


# --------------------------------------------------------------------------- temporal ensembling

def test_temporal_ensemble_hand_computed():
    ens = TemporalEnsembler(chunk_size=3, k=0.01)
    w0, w1, w2 = 1.0, math.exp(-0.01), math.exp(-0.02)  # oldest prediction weighs most
    chunks = [np.array([[1.0], [2.0], [3.0]]),
              np.array([[0.0], [0.0], [0.0]]),  # an exact-zero prediction is a prediction
              np.array([[10.0], [20.0], [30.0]]),
              np.array([[5.0], [5.0], [5.0]])]
    expected = [1.0,
                (2 * w0 + 0 * w1) / (w0 + w1),
                (3 * w0 + 0 * w1 + 10 * w2) / (w0 + w1 + w2),
                (0 * w0 + 20 * w1 + 5 * w2) / (w0 + w1 + w2)]  # the t=0 chunk has expired
    for chunk, value in zip(chunks, expected, strict=True):
        assert ens.update(chunk)[0] == pytest.approx(value, rel=1e-12)
    ens.reset()
    assert ens.update(np.array([[7.0], [8.0], [9.0]]))[0] == 7.0


# --------------------------------------------------------------------------- runner from a run dir

def test_runner_chunk_execution_from_saved_run_dir(run_dir):
    run, policy = run_dir
    runner = ACTRunner.from_run_dir(run, device="cpu", query_frequency=2)
    chunks = {t: expected_chunk(policy, *observation(t)) for t in (0, 2, 4)}
    for t in range(5):
        action = runner.act(*observation(t))
        query_t = t - t % 2
        np.testing.assert_allclose(action, chunks[query_t][t % 2], rtol=1e-5, atol=1e-5)
    runner.reset()  # a new episode queries again at its first step
    np.testing.assert_allclose(runner.act(*observation(4)), chunks[4][0], rtol=1e-5, atol=1e-5)


def test_runner_default_plays_whole_chunk(run_dir):
    run, policy = run_dir
    runner = ACTRunner.from_run_dir(run)
    assert runner.query_frequency == 4
    chunk0 = expected_chunk(policy, *observation(0))
    actions = [runner.act(*observation(t)) for t in range(4)]  # observations 1..3 are not used
    np.testing.assert_allclose(np.stack(actions), chunk0, rtol=1e-5, atol=1e-5)


def test_runner_temporal_ensemble(run_dir):
    run, policy = run_dir
    runner = ACTRunner.from_run_dir(run, temporal_ensemble=True)
    reference = TemporalEnsembler(chunk_size=4)
    for t in range(5):  # step 4: the step-0 chunk has expired
        expected = reference.update(expected_chunk(policy, *observation(t)))
        np.testing.assert_allclose(runner.act(*observation(t)), expected, rtol=1e-5, atol=1e-5)


def test_runner_rejects_missing_camera(run_dir):
    run, _ = run_dir
    runner = ACTRunner.from_run_dir(run)
    qpos, images = observation(0)
    with pytest.raises(KeyError, match="wrist"):
        runner.act(qpos, {"top": images["top"]})


# --------------------------------------------------------------------------- checkpoint files

def test_checkpoint_is_plain_cpu_float32_state_dict(run_dir, tmp_path):
    run, policy = run_dir
    state = torch.load(run / "policy_best.ckpt", weights_only=True)
    assert list(state) == list(policy.state_dict())
    assert all(v.dtype == torch.float32 and v.device.type == "cpu" for v in state.values())
    for key, value in policy.state_dict().items():
        assert torch.equal(state[key], value), key
    # wrapped or half-precision models still save upstream's plain contract
    compiled = torch.compile(policy.half())  # not run: only its `_orig_mod.` key prefix matters
    assert next(iter(compiled.state_dict())).startswith("_orig_mod.")
    save_checkpoint(compiled, tmp_path / "wrapped.ckpt")
    wrapped = load_checkpoint(tmp_path / "wrapped.ckpt")
    assert list(wrapped) == list(state)
    assert all(v.dtype == torch.float32 for v in wrapped.values())
    assert not list(tmp_path.glob(".*tmp*"))  # atomic write left no temporary file
    ACTPolicy(tiny_config()).load_state_dict(wrapped, strict=True)


# --------------------------------------------------------------------------- replay CLI

def write_episode(path: Path, steps: int, cameras: tuple[str, ...] = ("top", "wrist")) -> np.ndarray:
    rng = np.random.default_rng(7)
    action = rng.normal(size=(steps, 2)).astype(np.float32)
    with h5py.File(path, "w") as f:
        f.attrs["sim"] = True
        f["/observations/qpos"] = np.stack([observation(t)[0] for t in range(steps)])
        f["/observations/qvel"] = np.zeros((steps, 3), np.float32)
        for cam in cameras:
            f[f"/observations/images/{cam}"] = np.stack([observation(t)[1][cam] for t in range(steps)])
        f["/action"] = action
    return action


def test_replay_cli_prints_per_joint_l1(run_dir, tmp_path, capsys):
    run, policy = run_dir
    episode = tmp_path / "episode_0.hdf5"
    recorded = write_episode(episode, steps=6)
    assert main(["--run_dir", str(run), "--episode", str(episode), "--device", "cpu"]) == 0
    out = capsys.readouterr().out
    chunks = {t: expected_chunk(policy, *observation(t)) for t in (0, 4)}
    predicted = np.stack([chunks[t - t % 4][t % 4] for t in range(6)])
    per_joint = np.abs(predicted - recorded).mean(axis=0)
    lines = {line.split()[0]: float(line.split()[1]) for line in out.splitlines()
             if line.split() and line.split()[0] in ("0", "1", "mean")}
    assert lines["0"] == pytest.approx(per_joint[0], abs=1e-5)
    assert lines["1"] == pytest.approx(per_joint[1], abs=1e-5)
    assert lines["mean"] == pytest.approx(per_joint.mean(), abs=1e-5)


def test_replay_cli_missing_camera_exits_2(run_dir, tmp_path, capsys):
    run, _ = run_dir
    episode = tmp_path / "episode_0.hdf5"
    write_episode(episode, steps=2, cameras=("top",))
    assert main(["--run_dir", str(run), "--episode", str(episode), "--device", "cpu"]) == 2
    err = capsys.readouterr().err
    assert "/observations/images/wrist" in err and str(episode) in err


def test_checkpoint_unwraps_ddp(tmp_path):
    import torch.distributed as dist

    if dist.is_initialized():
        pytest.skip("a process group already exists in this process")
    store = dist.FileStore(str(tmp_path / "store"), 1)
    dist.init_process_group("gloo", store=store, rank=0, world_size=1)
    try:
        policy = ACTPolicy(tiny_config())
        policy.freeze_unused_parameters()
        ddp = torch.nn.parallel.DistributedDataParallel(policy)
        assert next(iter(ddp.state_dict())).startswith("module.")
        save_checkpoint(ddp, tmp_path / "ddp.ckpt")
        state = torch.load(tmp_path / "ddp.ckpt", weights_only=True)
        assert list(state) == list(policy.state_dict())
    finally:
        dist.destroy_process_group()
