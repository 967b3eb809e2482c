"""Two real CPU processes (torchrun + gloo) against one process with the same global batch.

With dropout 0 the only randomness left in a step is the CVAE's latent sample, which each rank
draws from its own generator, so the 1- and 2-process runs cannot be bitwise equal. What must
be equal is everything else: the first step starts from the same weights on the same samples,
so its KL term (a function of the encoder's mu/logvar only, no sampling) must agree to float
precision (rel 1e-4), which fails if a rank saw other samples, the rank means were combined
with the wrong weights, or rank 1 started from other weights. The L1 terms and the final
weights may differ only by the latent noise: stated tolerances below.
"""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path

import pytest
import torch
from test_train_e2e import TINY, only_run_dir, run_cli
from test_train_learning import write_reaching_episodes
from test_train_resume import start_cli, wait_for_step

pytestmark = pytest.mark.slow  # real CLI runs: minutes on a shared 2-core CPU


def train_rows(out):
    rows = [json.loads(x) for x in (only_run_dir(out) / "metrics.jsonl").read_text().splitlines()]
    return [r for r in rows if r["kind"] == "train"]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    episodes = tmp_path_factory.mktemp("reaching") / "episodes"
    write_reaching_episodes(episodes, n_episodes=20)
    common = ["--input_dir", str(episodes), "--num_epochs", "0", "--steps", "3", "--chunk_size", "10",
              "--dropout", "0", "--val_samples", "8", "--log_interval", "1", *TINY]
    outs = {}
    for name, extra in {
        "single": ["--batch_size", "7", "--gpus", "cpu"],
        "two_global": ["--batch_size", "7", "--gpus", "cpu:2", "--batch_mode", "fixed_global"],
        "two_per_gpu": ["--batch_size", "4", "--gpus", "cpu:2", "--batch_mode", "fixed_per_gpu"],
    }.items():
        out = tmp_path_factory.mktemp(name)
        proc = run_cli([*common, "--output_dir", str(out), *extra])
        assert proc.returncode == 0, proc.stdout + proc.stderr
        outs[name] = (out, proc)
    return outs


def test_two_processes_fixed_global_match_one_process(runs):
    (single, _), (two, proc) = runs["single"], runs["two_global"]
    assert "launching 2 cpu workers (gloo)" in proc.stdout
    m1 = json.loads((single / "manifest.json").read_text())
    m2 = json.loads((two / "manifest.json").read_text())
    assert m2["status"] == "completed" and m2["training"]["world_size"] == 2
    assert m2["training"]["per_rank_batch"] == [4, 3] and m2["training"]["global_batch"] == 7
    assert m2["training"]["samples_seen"] == m1["training"]["samples_seen"] == 21

    r1, r2 = train_rows(single), train_rows(two)
    assert [r["step"] for r in r1] == [r["step"] for r in r2] == [1, 2, 3]
    assert r2[0]["kl"] == pytest.approx(r1[0]["kl"], rel=1e-4)  # same weights, same samples at step 1
    for a, b in zip(r1, r2, strict=True):
        print(f"step {a['step']}: 1 process loss {a['loss']:.5f} l1 {a['l1']:.5f} kl {a['kl']:.6f} | "
              f"2 processes loss {b['loss']:.5f} l1 {b['l1']:.5f} kl {b['kl']:.6f}")
        assert b["kl"] == pytest.approx(a["kl"], rel=1e-3)  # weights drift only by the latent noise
        assert b["l1"] == pytest.approx(a["l1"], rel=0.05)  # differs only by the latent sample
    w1 = torch.load(only_run_dir(single) / "policy_last.ckpt", weights_only=True)
    w2 = torch.load(only_run_dir(two) / "policy_last.ckpt", weights_only=True)
    assert list(w1) == list(w2)  # unwrapped from DDP: no "module." prefix
    # Adam moves every weight by about +-lr per step whatever the gradient's size, so a weight whose
    # gradient sign flips with the latent sample can end up 2 x lr x 3 steps = 3e-4 apart; that
    # bounds the worst case. Most weights are driven by the (identical) data and must agree: the
    # mean difference must stay far below one step's size.
    diffs = torch.cat([(w1[k] - w2[k]).abs().flatten() for k in w1 if w1[k].is_floating_point()])
    print(f"weights after 3 steps: max abs difference {diffs.max():.2e}, mean {diffs.mean():.2e}")
    assert diffs.max() <= 2 * 5e-5 * 3 * 1.05
    assert diffs.mean() < 5e-5 / 5


def test_fixed_per_gpu_doubles_the_global_batch(runs):
    out, proc = runs["two_per_gpu"]
    m = json.loads((out / "manifest.json").read_text())
    t = m["training"]
    assert t["per_rank_batch"] == [4, 4] and t["global_batch"] == 8 and t["samples_seen"] == 24
    assert m["plan"]["batch_mode"] == "fixed_per_gpu" and m["arguments"]["batch_size"] == 4
    assert list(m["artifacts"]) and not list(only_run_dir(out).glob(".worker_error*"))


def worker_pids(out: Path, rank: int) -> list[int]:
    """PIDs of this run's torchrun workers of a given rank (from /proc/<pid>/environ)."""
    marker = f"TRAIN_ACT_PREPARED={out}".encode()
    pids = []
    for environ in Path("/proc").glob("[0-9]*/environ"):
        try:
            env = environ.read_bytes().split(b"\0")
        except OSError:
            continue
        if any(e.startswith(marker) for e in env) and f"RANK={rank}".encode() in env:
            pids.append(int(environ.parent.name))
    return pids


def test_a_dying_worker_ends_the_run_with_an_error_not_a_hang(tmp_path):
    episodes = tmp_path / "episodes"
    write_reaching_episodes(episodes, n_episodes=10)
    out = tmp_path / "out"
    args = [*TINY, "--input_dir", str(episodes), "--output_dir", str(out), "--num_epochs", "0",
            "--steps", "5000", "--batch_size", "4", "--chunk_size", "10", "--log_interval", "1",
            "--gpus", "cpu:2"]
    proc = start_cli(args)
    try:
        wait_for_step(out, 2, proc)
        victims = worker_pids(out, 1)
    except BaseException:
        proc.kill()  # never leave a 5000-step run behind
        raise
    assert len(victims) == 1
    os.kill(victims[0], signal.SIGKILL)
    t0 = time.time()
    log = proc.communicate(timeout=300)[0]
    print(f"run ended {time.time() - t0:.1f} s after rank 1 was killed, exit code {proc.returncode}")
    assert proc.returncode not in (0, None)
    m = json.loads((out / "manifest.json").read_text())
    assert m["status"] == "failed" and "training worker failed" in m["error"], log[-3000:]
