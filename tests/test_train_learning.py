"""Training learns: validation deploy L1 (z = 0) falls well below a constant mean-action predictor.

The fixture is generated here: upstream-ACT HDF5 episodes of a smooth reach from a random
start to a random goal (action[t] = qpos[t+1]), one 32x32 camera showing the goal. The real
LeRobot fixtures have only 4 training episodes whose images carry a frame code, which a model
memorizes instead of generalizing; 40 reaching episodes give validation something to measure.
The run goes through the real CLI (the folder is read by the ACT HDF5 importer).
"""

from __future__ import annotations

import json
from pathlib import Path

import h5py
import numpy as np
import pytest
from test_train_e2e import TINY, only_run_dir, run_cli

pytestmark = pytest.mark.slow  # real CLI runs: minutes on a shared 2-core CPU


def write_reaching_episodes(root: Path, n_episodes: int = 40, length: int = 40, dim: int = 3,
                            size: int = 32, seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    root.mkdir(parents=True, exist_ok=True)
    for i in range(n_episodes):
        start, goal = rng.uniform(-1, 1, dim), rng.uniform(-1, 1, dim)
        s = np.clip(np.arange(length + 1) / (0.8 * length), 0, 1)[:, None]
        s = 3 * s**2 - 2 * s**3  # smooth start and stop
        path = (start + (goal - start) * s).astype(np.float32)  # (T+1, dim)
        images = np.zeros((length, size, size, 3), np.uint8)
        gy, gx = ((goal[:2] + 1) / 2 * (size - 4)).astype(int)
        images[:, gy : gy + 4, gx : gx + 4] = 255
        with h5py.File(root / f"episode_{i}.hdf5", "w") as f:
            f.attrs["sim"] = True
            f["/observations/qpos"] = path[:-1]
            f["/observations/qvel"] = np.zeros_like(path[:-1])
            f["/action"] = path[1:]
            f.create_dataset("/observations/images/top", data=images, chunks=(1, size, size, 3))


def test_validation_l1_falls_well_below_the_mean_action_predictor(tmp_path):
    write_reaching_episodes(tmp_path / "episodes")
    out = tmp_path / "out"
    proc = run_cli(["--input_dir", str(tmp_path / "episodes"), "--output_dir", str(out), "--num_epochs", "0",
                    "--steps", "80", "--batch_size", "16", "--chunk_size", "10", "--learning_rate", "1e-3",
                    "--val_samples", "64", "--val_interval", "20", "--log_interval", "20", *TINY])
    assert proc.returncode == 0, proc.stdout + proc.stderr
    rows = [json.loads(x) for x in (only_run_dir(out) / "metrics.jsonl").read_text().splitlines()]
    val = [r for r in rows if r["kind"] == "val"]
    final = val[-1]
    model_l1, baseline_l1 = final["val_l1_deploy"], final["val_l1_mean_action"]
    print(f"validation deploy L1 (z=0) after {final['step']} steps: {model_l1:.4f}; "
          f"constant mean-action predictor: {baseline_l1:.4f}")
    assert final["step"] == 80 and final["val_samples"] == 64
    assert model_l1 < 0.6 * baseline_l1
    m = json.loads((out / "manifest.json").read_text())
    assert m["dataset"]["input_kind"] == "act_hdf5" and len(m["split"]["val_episodes"]) == 8
    assert m["best"]["val_loss"] == min(r["val_loss"] for r in val)
