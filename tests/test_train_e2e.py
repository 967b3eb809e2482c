"""End to end through the real CLI (subprocesses, real LeRobot fixtures, real HDF5, CPU).

Tiny model settings keep a step cheap on 2 cores; everything else is the product's path.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch

from act.act_policy import ACTPolicy
from act.checkpoint import load_checkpoint
from act.config import ACTConfig
from act.plot import decode_png
from act.stats import load_stats

pytestmark = pytest.mark.slow  # real CLI runs: minutes on a shared 2-core CPU

REPO = Path(__file__).resolve().parents[1]
CLI = REPO / "train_lerobot_to_act.py"
REFERENCE = Path("/work/shared/reference")
if not REFERENCE.is_dir():  # the repo copy, when the shared folder is not mounted
    REFERENCE = Path(__file__).parent / "data" / "reference"
TINY = ["--hidden_dim", "64", "--dim_feedforward", "128", "--enc_layers", "1", "--dec_layers", "2",
        "--nheads", "2", "--backbone_weights", "none", "--gpus", "cpu"]


def run_cli(args: list[str], timeout: int = 900) -> subprocess.CompletedProcess:
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1")
    return subprocess.run([sys.executable, str(CLI), *args], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=timeout)


def only_run_dir(out: Path) -> Path:
    (run_dir,) = (out / "checkpoints").iterdir()
    return run_dir


@pytest.fixture(scope="module")
def e2e(tmp_path_factory, fixtures_dir):
    out = tmp_path_factory.mktemp("e2e")
    args = ["--input_dir", str(fixtures_dir / "so100_v30_video"), "--output_dir", str(out),
            "--num_epochs", "2", "--batch_size", "8", "--val_samples", "16", "--keep_converted_hdf5", *TINY]
    proc = run_cli(args)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return out, only_run_dir(out), proc, args


def test_every_output_exists(e2e):
    out, run_dir, proc, _ = e2e
    for name in ("policy_best.ckpt", "policy_last.ckpt", "dataset_stats.pkl", "policy_config.json",
                 "metrics.jsonl", "loss_curves.png"):
        assert (run_dir / name).is_file(), name
    assert (out / "manifest.json").is_file()
    assert not (run_dir / "resume_state.pt").exists()  # a finished run leaves no resume state
    assert len(list((out / "converted_hdf5").glob("episode_*.hdf5"))) == 5
    assert "validation epoch 2 step 2" in proc.stdout
    img = decode_png((run_dir / "loss_curves.png").read_bytes())
    assert img.shape[1] == 4 * img.shape[0] * 4 // 3  # l1, kl, loss and deploy L1 vs the baseline


def test_checkpoint_loads_into_the_model_and_into_act_policy(e2e):
    _, run_dir, _, _ = e2e
    from act.policy import ACTRunner

    cfg = ACTConfig.load_json(run_dir / "policy_config.json")
    assert (cfg.hidden_dim, cfg.state_dim, cfg.camera_names) == (64, 6, ["front", "wrist"])
    state = torch.load(run_dir / "policy_best.ckpt", weights_only=True)
    assert all(k.startswith("model.") for k in state)
    policy = ACTPolicy(cfg)
    policy.load_state_dict(state, strict=True)
    policy.eval()

    stats = load_stats(run_dir / "dataset_stats.pkl")
    runner = ACTRunner.from_run_dir(run_dir, checkpoint="policy_best.ckpt", device="cpu")
    rng = np.random.default_rng(0)
    qpos = rng.normal(size=6).astype(np.float32)
    images = {c: rng.integers(0, 256, (72, 96, 3), dtype=np.uint8) for c in ("front", "wrist")}
    action = runner.act(qpos, images)
    with torch.no_grad():
        q = torch.from_numpy((qpos - stats["qpos_mean"]) / stats["qpos_std"])[None]
        im = torch.from_numpy(np.stack([images["front"], images["wrist"]])).permute(0, 3, 1, 2)[None]
        expected = policy(q, im)[0, 0].numpy() * stats["action_std"] + stats["action_mean"]
    np.testing.assert_allclose(action, expected, rtol=1e-4, atol=1e-5)
    last = load_checkpoint(run_dir / "policy_last.ckpt")
    assert set(last) == set(state)


def test_stats_equal_an_independent_numpy_computation(e2e):
    out, run_dir, _, _ = e2e
    paths = sorted((out / "converted_hdf5").glob("episode_*.hdf5"), key=lambda p: int(p.stem.split("_")[1]))
    qpos, action = [], []
    for p in paths:
        with h5py.File(p, "r") as f:
            qpos.append(f["/observations/qpos"][()].astype(np.float64))
            action.append(f["/action"][()].astype(np.float64))
    stats = load_stats(run_dir / "dataset_stats.pkl")
    for name, arrays in (("qpos", qpos), ("action", action)):
        allx = np.concatenate(arrays)
        np.testing.assert_allclose(stats[f"{name}_mean"], allx.mean(0), rtol=1e-6, atol=1e-7)
        np.testing.assert_allclose(stats[f"{name}_std"], np.maximum(allx.std(0, ddof=1), 1e-2), rtol=1e-6)
        assert stats[f"{name}_mean"].dtype == np.float32
    np.testing.assert_array_equal(stats["example_qpos"], qpos[-1].astype(np.float32))


def test_manifest_figures_agree_with_the_files(e2e):
    out, run_dir, _, _ = e2e
    m = json.loads((out / "manifest.json").read_text())
    assert m["status"] == "completed" and m["error"] is None
    assert Path(m["run_dir"]) == run_dir
    for name, info in m["artifacts"].items():
        data = (out / info["path"]).read_bytes()
        assert hashlib.sha256(data).hexdigest() == info["sha256"] and len(data) == info["bytes"], name
    expected = {"policy_best.ckpt", "policy_last.ckpt", "dataset_stats.pkl", "loss_curves.png",
                "metrics.jsonl"}
    assert expected <= set(m["artifacts"])

    with h5py.File(out / "converted_hdf5" / "episode_0.hdf5", "r") as f:
        assert f["/observations/qpos"].shape[0] == m["conversion"]["episodes"][0]["frames_out"]
    lengths = []
    for i in range(5):
        with h5py.File(out / "converted_hdf5" / f"episode_{i}.hdf5", "r") as f:
            lengths.append(f["/action"].shape[0])
    assert m["dataset"]["frames"] == sum(lengths) and m["dataset"]["episodes"] == 5
    assert m["dataset"]["codebase_version"] == "v3.0" and m["dataset"]["fps"] == 30
    assert m["cameras"] == {"observation.images.front": "front", "observation.images.wrist": "wrist"}
    assert (m["state_dim"], m["action_dim"]) == (6, 6) and m["state_names"][0] == "shoulder_pan.pos"
    split = m["split"]
    assert sorted(split["train_episodes"] + split["val_episodes"]) == list(range(5))
    assert len(split["val_episodes"]) == 1

    t = m["training"]
    steps_per_epoch = math.ceil(len(split["train_episodes"]) / 8)
    assert t["steps_per_epoch"] == steps_per_epoch and t["epochs_completed"] == 2
    assert t["steps_completed"] == 2 * steps_per_epoch and t["samples_seen"] == 8 * t["steps_completed"]
    assert t["world_size"] == 1 and t["global_batch"] == 8 and t["per_rank_batch"] == [8]
    assert t["samples_per_second"] == pytest.approx(t["samples_seen"] / t["seconds"], rel=1e-2)

    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    train_rows = [r for r in rows if r["kind"] == "train"]
    val_rows = [r for r in rows if r["kind"] == "val"]
    assert train_rows[-1]["step"] == t["steps_completed"]
    best_row = min(val_rows, key=lambda r: r["val_loss"])
    assert m["best"]["step"] == best_row["step"]
    assert m["best"]["val_loss"] == pytest.approx(best_row["val_loss"])
    assert m["best"]["val_samples"] == 16
    cfg = m["model"]["config"]
    policy = ACTPolicy(ACTConfig.from_dict(cfg))
    assert m["model"]["parameters"] == sum(p.numel() for p in policy.parameters())
    assert m["backbone_pretrained"] is False
    assert m["software"]["torch"] == torch.__version__


def test_identical_command_on_a_finished_run_does_not_retrain(e2e):
    out, run_dir, _, args = e2e
    before = (run_dir / "policy_last.ckpt").read_bytes()
    proc = run_cli(args)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "already completed" in proc.stdout
    assert (run_dir / "policy_last.ckpt").read_bytes() == before
    m = json.loads((out / "manifest.json").read_text())
    # Decided from the metadata before converting: the manifest keeps the training run's record.
    assert m["status"] == "completed" and m["conversion"]["reused"] is False
    assert "nothing converted or trained this time" in m["notes"][-1]


def test_smoke_one_epoch_batch_8_two_episodes_default_model(tmp_path, fixtures_dir):
    """The seed's documented smoke test, with the real default model size."""
    out = tmp_path / "out"
    proc = run_cli(["--input_dir", str(fixtures_dir / "so100_v21_video"), "--output_dir", str(out),
                    "--num_epochs", "1", "--batch_size", "8", "--max_episodes", "2", "--gpus", "cpu",
                    "--backbone_weights", "none", "--val_samples", "8"])
    assert proc.returncode == 0, proc.stdout + proc.stderr
    m = json.loads((out / "manifest.json").read_text())
    assert m["status"] == "completed" and m["dataset"]["episodes"] == 2
    assert m["split"]["train_episodes"] and m["split"]["val_episodes"]  # 1 + 1
    default_cfg = ACTConfig(state_dim=6, action_dim=6, camera_names=["front", "wrist"], image_size=[72, 96])
    assert m["model"]["config"] == default_cfg.to_dict()  # upstream's architecture, this dataset's dims
    assert m["model"]["parameters"] == sum(p.numel() for p in ACTPolicy(default_cfg).parameters())
    assert m["training"]["steps_completed"] == 1 and m["training"]["samples_seen"] == 8
    assert not (out / ".converted_hdf5_tmp").exists()  # temporary conversion removed at the end
    state = load_checkpoint(only_run_dir(out) / "policy_last.ckpt")
    reference = REFERENCE / "act_state_dict_d14_c100.tsv"
    if not reference.exists():
        return
    keys = [line.split("\t")[0] for line in reference.read_text().splitlines() if not line.startswith("#")]
    assert list(state) == keys  # upstream's key list and order


def test_single_episode_trains_without_validation(tmp_path, fixtures_dir):
    out = tmp_path / "out"
    proc = run_cli(["--input_dir", str(fixtures_dir / "so100_v30_video_h264"), "--output_dir", str(out),
                    "--num_epochs", "1", "--batch_size", "4", "--max_episodes", "1", *TINY])
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "no validation split" in proc.stdout
    m = json.loads((out / "manifest.json").read_text())
    assert m["split"]["val_episodes"] == [] and "best = last" in m["best"]["note"]
    run_dir = only_run_dir(out)
    best, last = load_checkpoint(run_dir / "policy_best.ckpt"), load_checkpoint(run_dir / "policy_last.ckpt")
    assert all(torch.equal(best[k], last[k]) for k in last)
