"""`python -m act.policy --run_dir RUN --source_episode N / --val_episodes`: replay episodes of the run's
dataset, decoded by the bridge with the run's conversion options, without --keep_converted_hdf5.

One tiny CPU training on the embedded v3.0 video fixture (kept conversion, so the reference HDF5
exists); the replay by source index must give exactly the per-step L1 of replaying that HDF5.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from act.policy import ACTRunner, convert_source_episodes, main, replay, run_manifest

pytestmark = pytest.mark.slow  # a real CLI run (about a minute on a shared 2-core CPU)

REPO = Path(__file__).resolve().parents[1]
TINY = ["--hidden_dim", "64", "--dim_feedforward", "128", "--enc_layers", "1", "--dec_layers", "1",
        "--nheads", "2", "--chunk_size", "10", "--backbone_weights", "none", "--gpus", "cpu"]


@pytest.fixture(scope="module")
def trained(tmp_path_factory, fixtures_dir) -> tuple[Path, Path, dict]:
    out = tmp_path_factory.mktemp("replay_run")
    # --episode_len 40 and the default idle trimming: the replay must apply the run's options.
    args = ["--input_dir", str(fixtures_dir / "so100_v30_video"), "--output_dir", str(out),
            "--run_name", "tiny", "--num_epochs", "1", "--batch_size", "4", "--val_samples", "8",
            "--val_ratio", "0.4", "--episode_len", "40", "--keep_converted_hdf5", *TINY]
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1")
    proc = subprocess.run([sys.executable, str(REPO / "train_lerobot_to_act.py"), *args], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    run = out / "checkpoints" / "tiny"
    return out, run, json.loads((out / "manifest.json").read_text())


def converted(out: Path, manifest: dict, source_index: int) -> Path:
    """The HDF5 training converted for this source episode (kept by --keep_converted_hdf5)."""
    (report,) = [e for e in manifest["conversion"]["episodes"] if e["source_index"] == source_index]
    return out / "converted_hdf5" / f"episode_{report['output_index']}.hdf5"


def per_joint(stdout: str) -> dict[str, float]:
    return {line.split()[0]: float(line.split()[1]) for line in stdout.splitlines()
            if len(line.split()) == 2 and line.split()[0] in ("0", "1", "2", "3", "4", "5", "mean")}


def test_source_episode_replay_equals_converted_hdf5_replay(trained, tmp_path, capsys):
    out, run, manifest = trained
    source = manifest["conversion"]["episodes"][2]["source_index"]
    runner = ACTRunner.from_run_dir(run, device="cpu")
    reference = replay(runner, converted(out, manifest, source))  # (T, A) per-step L1
    assert reference.shape == (40, 6)
    paths = convert_source_episodes(run_manifest(run), [source], tmp_path)
    np.testing.assert_array_equal(replay(runner, paths[source]), reference)

    assert main(["--run_dir", str(run), "--source_episode", str(source), "--device", "cpu"]) == 0
    printed = capsys.readouterr().out
    assert f"source episode {source}: 40 steps" in printed
    lines = per_joint(printed)
    for j in range(6):
        assert lines[str(j)] == pytest.approx(reference.mean(axis=0)[j], abs=1e-6)
    assert lines["mean"] == pytest.approx(reference.mean(), abs=1e-6)


def test_val_episodes_replays_the_runs_validation_split(trained, capsys):
    out, run, manifest = trained
    val_out = manifest["split"]["val_episodes"]
    assert len(val_out) == 2
    by_output = {e["output_index"]: e["source_index"] for e in manifest["conversion"]["episodes"]}
    runner = ACTRunner.from_run_dir(run, device="cpu")
    references = {by_output[i]: replay(runner, out / "converted_hdf5" / f"episode_{i}.hdf5") for i in val_out}

    assert main(["--run_dir", str(run), "--val_episodes", "--device", "cpu"]) == 0
    printed = capsys.readouterr().out
    for source in references:
        assert f"source episode {source}: 40 steps" in printed
    everything = np.concatenate(list(references.values()))
    assert "all 2 episodes: 80 steps" in printed
    tail = printed[printed.index("all 2 episodes"):]
    assert per_joint(tail)["mean"] == pytest.approx(everything.mean(), abs=1e-6)


def test_missing_episode_file_says_how_to_get_one(trained, tmp_path, capsys):
    _, run, _ = trained
    missing = tmp_path / "episode_0.hdf5"
    assert main(["--run_dir", str(run), "--episode", str(missing), "--device", "cpu"]) == 2
    err = capsys.readouterr().err
    assert "--keep_converted_hdf5" in err and "--source_episode" in err


def test_unknown_source_episode_is_an_error(trained, capsys):
    _, run, _ = trained
    assert main(["--run_dir", str(run), "--source_episode", "99", "--device", "cpu"]) == 2
    assert "source episode(s) [99]" in capsys.readouterr().err
