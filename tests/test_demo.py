"""The closed-loop demo: the task needs the cameras, the recording goes through the real bridge,
and a policy trained by the real CLI succeeds on unseen episodes where goal-blind baselines fail.
"""

from __future__ import annotations

import importlib.util
import json
import os
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from lerobot_bridge.convert import convert_dataset  # noqa: E402
from scripts.demo.env import CAMERAS, ReachConfig, ReachEnv  # noqa: E402
from scripts.demo.evaluate import rollout  # noqa: E402
from scripts.demo.expert import ARRIVED, record_expert_episode  # noqa: E402
from scripts.demo.record import record_dataset  # noqa: E402


def test_goal_is_only_in_the_images():
    a, b = ReachEnv(1), ReachEnv(2)
    b.start = a.start.copy()  # same start, different goal
    assert np.linalg.norm(a.goal - b.goal) > 0.1
    obs_a, obs_b = a.reset(), b.reset()
    np.testing.assert_array_equal(obs_a["state"], obs_b["state"])
    for cam in CAMERAS:
        assert obs_a["images"][cam].shape == (64, 64, 3) and obs_a["images"][cam].dtype == np.uint8
        assert np.abs(obs_a["images"][cam].astype(int) - obs_b["images"][cam].astype(int)).max() > 100
    # Erasing the goal leaves pictures that no longer depend on it.
    for cam in CAMERAS:
        np.testing.assert_array_equal(a.render(cam, show_goal=False), b.render(cam, show_goal=False))
    # Same seed, same episode.
    np.testing.assert_array_equal(ReachEnv(7).goal, ReachEnv(7).goal)


def test_blind_rollout_never_shows_the_goal():
    """The blind baseline must not see the goal at any step, t = 0 included."""
    reference = ReachEnv(5)
    seen = []

    def spy(state, images):
        reference.pos = state.copy()
        seen.append(all(np.array_equal(images[c], reference.render(c, show_goal=False)) for c in CAMERAS))
        return state  # hold still

    success, distance = rollout(spy, 5, show_goal=False)
    assert len(seen) == ReachConfig().max_steps and all(seen)
    assert not success and distance == pytest.approx(float(np.linalg.norm(reference.start - reference.goal)))


def test_env_dynamics():
    env = ReachEnv(3)
    env.reset()
    start = env.pos.copy()
    env.step(start + np.array([1.0, 0.0], np.float32))  # far command: moves max_step only
    np.testing.assert_allclose(env.pos, start + np.array([env.cfg.max_step, 0.0]), atol=1e-6)
    env.step(env.goal)
    env.pos = env.goal.copy()
    assert env.success() and env.distance() == 0.0


def test_expert_succeeds_with_idle_frames_and_varying_lengths():
    lengths = []
    for seed in range(100):
        episode, success = record_expert_episode(seed)
        assert success
        n = len(episode.state)
        lengths.append(n)
        assert episode.state.shape == (n, 2) and episode.action.shape == (n, 2)
        # Idle at the start (holding the start position) and at the end (holding the goal).
        np.testing.assert_array_equal(episode.action[:3], episode.state[:3])
        np.testing.assert_array_equal(episode.action[-4:], episode.state[-4:])
        assert np.abs(np.diff(episode.action[-4:], axis=0)).max() == 0
        # action[t] is where the point is at t + 1 (position control, never above max_step).
        np.testing.assert_allclose(episode.action[:-1], episode.state[1:], atol=1e-6)
        assert np.linalg.norm(np.diff(episode.state, axis=0), axis=1).max() <= ReachConfig().max_step + 1e-6
    assert min(lengths) < max(lengths) - 10


def test_recorded_dataset_converts_through_the_bridge(tmp_path):
    """Recorder -> LeRobot v3.0 -> bridge -> ACT HDF5 gives back the expert's (idle-trimmed) data."""
    summary = record_dataset(tmp_path / "ds", num_episodes=4, first_seed=10)
    assert summary["expert_success_rate"] == 1.0
    info = json.loads((tmp_path / "ds/meta/info.json").read_text())
    assert (
        info["codebase_version"] == "v3.0" and info["features"]["observation.images.top"]["dtype"] == "video"
    )
    result = convert_dataset(tmp_path / "ds", tmp_path / "hdf5", workers=1)
    assert result.camera_names == ["top", "wrist"]
    for report, seed in zip(result.episodes, range(10, 14), strict=True):
        expert, _ = record_expert_episode(seed)
        start, stop = report.idle_trimmed_start, report.frames_in - report.idle_trimmed_end
        assert report.frames_in == len(expert.state)
        assert start >= 3 and report.idle_trimmed_end >= 5  # idle runs at both ends were removed
        # The first kept frame moves; the last kept command is within ARRIVED of the goal.
        assert np.abs(expert.action[start] - expert.state[start]).max() > 0
        assert np.linalg.norm(expert.action[stop - 1] - expert.action[-1]) <= ARRIVED + 1e-6
        with h5py.File(tmp_path / "hdf5" / f"episode_{report.output_index}.hdf5") as f:
            np.testing.assert_array_equal(f["observations/qpos"][:], expert.state[start:stop])
            np.testing.assert_array_equal(f["action"][:], expert.action[start:stop])
            for cam in CAMERAS:
                decoded = f[f"observations/images/{cam}"][:].astype(np.int16)
                error = np.abs(decoded - expert.images[cam][start:stop].astype(np.int16)).mean(axis=(1, 2, 3))
                assert error.max() < 3.0, (cam, error.max())


@pytest.mark.slow
@pytest.mark.timeout(3600)  # the suite's 600 s per test is for tests that run in CI
@pytest.mark.skipif(
    os.environ.get("TRAIN_ACT_DEMO_TEST") != "1",
    reason="the closed-loop demo trains 1000 steps (10-25 min on 2 CPU cores, more than the rest of the "
    "suite together); run it with TRAIN_ACT_DEMO_TEST=1 bash scripts/test.sh tests/test_demo.py",
)
def test_demo_policy_succeeds_closed_loop_and_blind_baselines_fail(tmp_path):
    """The README's demo, end to end: record -> train (CLI subprocess) -> closed-loop evaluation.

    Trains with the demo's defaults and training seed 42 (the CLI's default, not picked for its
    result). Measured with these defaults (200 episodes padded to 30 frames, 1000 steps, batch 8,
    lr 3e-4, chunk 20, dropout 0), success chunk / ensemble / goal erased / mean action over
    the same 50 unseen seeds, for five training seeds:
    0: 100/100/4/0 %, 1: 98/100/6/0 %, 2: 100/100/6/0 %, 3: 100/100/6/0 %, 42: 100/100/10/0 %.
    Seed 1 without the padded final hold (--episode_len 0): 0 % / 0 %; with dropout 0.1: 50 % / 64 %;
    with neither (the demo's earlier settings): 58 % / 58 %.
    Runtime in a fresh-clone .ci/run on 2 cores with torch's default threads: 547 s (record 22 s, training
    439 s, evaluation 86 s). With the demo's thread counts (training 1 thread on 2 CPUs, evaluation 1) on
    2 cores shared with other test runs (load average 4-13): 1300 s (34 s, 951 s, 308 s), 100/100/12/0 %.
    """
    spec = importlib.util.spec_from_file_location("demo_main", REPO / "scripts" / "demo.py")
    demo = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(demo)
    assert demo.main(["--workdir", str(tmp_path)]) == 0

    summary = json.loads((tmp_path / "demo_results.json").read_text())
    results = summary["results"]
    train_seeds, eval_seeds = range(*summary["train_seeds"]), range(*summary["eval_seeds"])
    assert len(eval_seeds) >= 50 and not set(train_seeds) & set(eval_seeds)
    for mode in ("chunk", "ensemble", "blind", "mean_action"):
        assert results[mode]["episodes"] == len(eval_seeds)
    assert results["chunk"]["success_rate"] >= 0.9, results
    assert results["ensemble"]["success_rate"] >= 0.9, results
    assert results["blind"]["success_rate"] <= 0.2, results
    assert results["mean_action"]["success_rate"] <= 0.2, results
    run_dir = Path(summary["run_dir"])
    for name in ("policy_best.ckpt", "policy_last.ckpt", "dataset_stats.pkl", "policy_config.json"):
        assert (run_dir / name).is_file(), name
    assert (tmp_path / "output" / "manifest.json").is_file()
