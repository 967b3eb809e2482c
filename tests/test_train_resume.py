"""Preemption: SIGTERM saves a resumable state; the identical command continues to the same weights.

Also SIGKILL (nothing saved at the kill): the rerun continues from the last periodic state.
CPU, fixed seed, default dropout 0.1: the resumed run restores every RNG state and the sampler
position, so the final weights must equal the uninterrupted run's (tolerance 1e-6, in practice
bitwise equal with one thread).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from test_train_e2e import CLI, REPO, TINY, only_run_dir, run_cli
from test_train_learning import write_reaching_episodes

pytestmark = pytest.mark.slow  # real CLI runs: minutes on a shared 2-core CPU

STEPS = 16  # 24 training episodes / batch 6 = 4 steps per epoch -> 4 epochs


def args_for(episodes: Path, out: Path) -> list[str]:
    return ["--input_dir", str(episodes), "--output_dir", str(out), "--num_epochs", "0",
            "--steps", str(STEPS), "--batch_size", "6", "--chunk_size", "10", "--val_samples", "8",
            "--val_interval", "1", "--log_interval", "1", *TINY]


def start_cli(args: list[str]) -> subprocess.Popen:
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1")
    return subprocess.Popen([sys.executable, str(CLI), *args], cwd=REPO, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)


def wait_for_step(out: Path, step: int, proc: subprocess.Popen, timeout: float = 600) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        assert proc.poll() is None, "the run ended before it could be interrupted:\n" + proc.stdout.read()
        for metrics in (out / "checkpoints").glob("*/metrics.jsonl"):
            rows = [json.loads(x) for x in metrics.read_text().splitlines() if x.strip()]
            if any(r["kind"] == "train" and r["step"] >= step for r in rows):
                return
        time.sleep(0.05)
    proc.kill()  # never leave a run behind
    raise AssertionError(f"step {step} not reached in {timeout} s")


@pytest.fixture(scope="module")
def episodes(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("reaching") / "episodes"
    write_reaching_episodes(root, n_episodes=30)
    return root


@pytest.fixture(scope="module")
def uninterrupted(episodes, tmp_path_factory) -> dict[str, torch.Tensor]:
    out = tmp_path_factory.mktemp("uninterrupted")
    proc = run_cli(args_for(episodes, out))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return torch.load(only_run_dir(out) / "policy_last.ckpt", weights_only=True)


def assert_same_weights(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    assert a.keys() == b.keys()
    worst = max((a[k].float() - b[k].float()).abs().max().item() for k in a)
    assert worst <= 1e-6, f"max abs weight difference {worst}"


def test_sigterm_then_same_command_gives_the_uninterrupted_weights(episodes, uninterrupted, tmp_path):
    out = tmp_path / "out"
    args = args_for(episodes, out)
    proc = start_cli(args)
    wait_for_step(out, 6, proc)  # mid-epoch (4 steps per epoch)
    proc.send_signal(signal.SIGTERM)
    log = proc.communicate(timeout=600)[0]
    assert proc.returncode == 128 + signal.SIGTERM, log
    assert "finishing the current step" in log
    run_dir = only_run_dir(out)
    assert (run_dir / "resume_state.pt").is_file() and (run_dir / "policy_last.ckpt").is_file()
    m = json.loads((out / "manifest.json").read_text())
    assert m["status"] == "interrupted" and m["training"]["outcome"] == "interrupted"
    stopped_at = m["training"]["steps_completed"]
    assert 6 <= stopped_at < STEPS
    assert (out / ".converted_hdf5_tmp").is_dir()  # kept for the resume

    again = run_cli(args)
    assert again.returncode == 0, again.stdout + again.stderr
    assert "resuming" in again.stdout and "reusing the conversion" in again.stdout
    m = json.loads((out / "manifest.json").read_text())
    assert m["status"] == "completed" and m["training"]["steps_completed"] == STEPS
    assert m["training"]["samples_seen"] == STEPS * 6
    assert m["training"]["resumed_from"]["global_step"] == stopped_at
    assert not (out / ".converted_hdf5_tmp").exists()
    rows = [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows if r["kind"] == "train"] == list(range(1, STEPS + 1))
    assert_same_weights(torch.load(run_dir / "policy_last.ckpt", weights_only=True), uninterrupted)


def test_sigkill_resumes_from_the_last_saved_state(episodes, uninterrupted, tmp_path):
    out = tmp_path / "out"
    args = args_for(episodes, out)
    proc = start_cli(args)
    wait_for_step(out, 9, proc)  # the state of epoch 2 (step 8) has been saved before step 9 starts
    proc.kill()
    proc.communicate(timeout=60)
    run_dir = only_run_dir(out)
    state = torch.load(run_dir / "resume_state.pt", weights_only=True)
    assert state["global_step"] >= 8 and state["global_step"] % 4 == 0
    m = json.loads((out / "manifest.json").read_text())
    assert m["status"] == "running"  # the killed run could not say anything else: readable, not torn

    again = run_cli(args)
    assert again.returncode == 0, again.stdout + again.stderr
    assert f"global step {state['global_step']}" in again.stdout
    assert_same_weights(torch.load(run_dir / "policy_last.ckpt", weights_only=True), uninterrupted)


def test_resume_with_other_arguments_is_refused(episodes, tmp_path):
    out = tmp_path / "out"
    args = args_for(episodes, out)
    proc = start_cli(args)
    wait_for_step(out, 2, proc)
    proc.send_signal(signal.SIGTERM)
    proc.communicate(timeout=600)
    changed = [*args[:-len(TINY)], "--run_name", only_run_dir(out).name, *TINY]
    changed[changed.index("--batch_size") + 1] = "3"
    again = run_cli(changed)
    assert again.returncode == 2
    assert "--batch_size: 6 then, 3 now" in again.stderr and "--fresh" in again.stderr
    fresh = run_cli([*changed, "--fresh"])
    assert fresh.returncode == 0, fresh.stdout + fresh.stderr
