"""Fuzz the converter's input: every damaged dataset ends in a success or a clean exit 2.

Each case copies one real fixture (tests/data/lerobot/*) into tmp_path, damages it at random
(tests/fuzz_cases.py: byte flips / truncation of any file, bad values written back into parquet
columns, bad fields in meta/info.json and the jsonl tables) and runs the CLI entry point in this
process: `lerobot_bridge.__main__.main([in, out, "--convert_workers", "1"])`. Allowed outcomes:

- exit 0 and a complete output: conversion.json, exactly the episode_{i}.hdf5 files it lists
  (each opens with h5py), nothing else; and what training does right after converting
  (train_lerobot_to_act.prepare: read_episode_index, read_all_qpos_action, compute_stats)
  succeeds with finite statistics;
- exit 2 with a short `error: ...` on stderr that names a file of the dataset, and an output
  folder holding no file at all (no conversion.json, no episode file, no temporary).

Anything else fails: an exception escaping main, another exit code, no result within
FUZZ_CASE_TIMEOUT seconds (default 20), leftovers, a Python warning raised while converting
(the CLI would print it on stderr; it means unchecked values reached numpy).

The damage is seeded: FUZZ_SEED (default below) and FUZZ_CASES (default 300) pick the cases;
a failure names the seed, the case and the mutation, and
`FUZZ_SEED=<seed> FUZZ_CASES=<more than case> python -m pytest tests/test_fuzz_inputs.py -k c<case>`
repeats it (the case id is c + the 4-digit case number, e.g. -k c0042).
"""

from __future__ import annotations

import contextlib
import faulthandler
import hashlib
import io
import json
import math
import os
import shutil
import signal
import sys
import time
import traceback
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import h5py
import numpy as np
import pytest
from fuzz_cases import FIXTURES, apply_case, plan_case

from act.data import read_all_qpos_action, read_episode_index
from act.stats import compute_stats
from lerobot_bridge.__main__ import main

FIXTURE_DIR = Path(__file__).parent / "data" / "lerobot"
SEED = int(os.environ.get("FUZZ_SEED", "1212"))
NUM_CASES = int(os.environ.get("FUZZ_CASES", "300"))
CASE_TIMEOUT = float(os.environ.get("FUZZ_CASE_TIMEOUT", "20"))
MAX_ERROR_LINES = 3  # "error: ..." is one line; a quoted library message may add a line or two
MAX_ERROR_CHARS = 2000


# ---------------------------------------------------------------------------------------------
# running the entry point


@dataclass
class Run:
    rc: int | None = None
    stdout: str = ""
    stderr: str = ""
    exception: str | None = None  # "Type: message" of an exception that escaped main
    traceback: str = ""
    hung: bool = False
    hang_stack: str = ""
    seconds: float = 0.0
    warnings: list[str] = field(default_factory=list)  # Python warnings raised during main


class CaseTimeout(BaseException):
    """Raised in main's frame by SIGALRM when a case runs past its limit."""


def run_main(in_dir: Path, out_dir: Path, timeout: float = CASE_TIMEOUT) -> Run:
    """`main([in, out, --convert_workers 1])` in this process, with stdout, stderr and warnings
    captured and a wall-clock limit.

    main runs in the main thread (it installs signal handlers). The limit is SIGALRM raising
    CaseTimeout inside main; a hang in C code that never returns to Python is caught by a
    faulthandler backstop instead, which prints every thread's stack and ends the test process."""
    run = Run()
    out, err = io.StringIO(), io.StringIO()

    def on_alarm(signum, frame) -> None:
        run.hung = True
        run.hang_stack = "".join(traceback.format_stack(frame))
        raise CaseTimeout(f"no result within {timeout:g} s")

    previous = signal.signal(signal.SIGALRM, on_alarm)
    faulthandler.dump_traceback_later(timeout + 30, exit=True, file=sys.__stderr__)
    t0 = time.perf_counter()
    try:
        with (
            contextlib.redirect_stdout(out),
            contextlib.redirect_stderr(err),
            warnings.catch_warnings(record=True) as caught,
        ):
            # The CLI prints a Python warning on stderr (once per place); pytest would hide it.
            warnings.simplefilter("always")
            signal.setitimer(signal.ITIMER_REAL, timeout)
            try:
                run.rc = main([str(in_dir), str(out_dir), "--convert_workers", "1"])
            except BaseException as e:  # noqa: BLE001 - anything escaping main is the finding
                if not run.hung:
                    run.exception = f"{type(e).__name__}: {e}"
                    run.traceback = traceback.format_exc()
            finally:
                signal.setitimer(signal.ITIMER_REAL, 0)
    finally:
        faulthandler.cancel_dump_traceback_later()
        signal.signal(signal.SIGALRM, previous)
    run.seconds = time.perf_counter() - t0
    run.warnings = [
        f"{w.category.__name__} at {Path(w.filename).name}:{w.lineno}: {w.message}"
        for w in caught
        if not issubclass(w.category, DeprecationWarning | PendingDeprecationWarning)
    ]
    run.stdout, run.stderr = out.getvalue(), err.getvalue()
    return run


# ---------------------------------------------------------------------------------------------
# judging the outcome


def files_under(folder: Path) -> list[str]:
    if not folder.exists():
        return []
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if not p.is_dir())


def check_success(out_dir: Path) -> list[str]:
    """Problems with an exit-0 output (empty list: complete and trainable)."""
    conv = out_dir / "conversion.json"
    if not conv.is_file():
        return [f"exit 0 but no conversion.json; output holds {files_under(out_dir)}"]
    try:
        result = json.loads(conv.read_text())
        listed = [f"episode_{e['output_index']}.hdf5" for e in result["episodes"]]
        camera_names = list(result["cameras"].values())
    except (ValueError, KeyError, TypeError, AttributeError) as e:
        return [f"conversion.json unreadable: {type(e).__name__}: {e}"]
    problems = []
    if not listed:
        problems.append("conversion.json lists no episodes")
    present = files_under(out_dir)
    missing = [f for f in listed if f not in present]
    extra = [f for f in present if f not in listed and f != "conversion.json"]
    if missing:
        problems.append(f"episode files listed in conversion.json but absent: {missing}")
    if extra:
        problems.append(f"files in the output that conversion.json does not list (temporary/stale): {extra}")
    paths = [str(out_dir / f) for f in listed if f in present]
    for p in paths:
        try:
            with h5py.File(p, "r"):
                pass
        except OSError as e:
            problems.append(f"{p}: does not open with h5py ({e})")
    if problems or not paths:
        return problems
    # What train_lerobot_to_act.prepare() does right after converting.
    try:
        read_episode_index(paths, camera_names)
        qpos, action = read_all_qpos_action(paths)
        stats = compute_stats(qpos, action)
    except Exception as e:  # noqa: BLE001 - training would crash (or exit 2) on an output we called complete
        return [f"training's read of the converted output fails: {type(e).__name__}: {e}\n"
                f"{traceback.format_exc()}"]
    for key, value in stats.items():
        arr = np.asarray(value, dtype=np.float64)
        if not np.all(np.isfinite(arr)):
            problems.append(f"stats['{key}'] not finite: {arr.tolist()}")
    return problems


def check_clean_error(run: Run, in_dir: Path, out_dir: Path) -> list[str]:
    """Problems with an exit-2 result (empty list: a clean, short error naming a dataset file)."""
    problems = []
    lines = run.stderr.strip().splitlines()
    # Log lines may come first (the CLI logs to stderr); the message is the `error: ` line onwards.
    start = next((i for i, line in enumerate(lines) if line.startswith("error: ")), None)
    if start is None:
        problems.append("exit 2 but no line on stderr starts with 'error: '")
        start = 0
    message = "\n".join(lines[start:])
    if "Traceback (most recent call last)" in run.stderr:
        problems.append("stderr holds a traceback")
    if len(lines) - start > MAX_ERROR_LINES or len(message) > MAX_ERROR_CHARS:
        problems.append(f"error message too long: {len(lines) - start} lines, {len(message)} chars "
                        f"(at most {MAX_ERROR_LINES} lines, {MAX_ERROR_CHARS} chars)")
    if str(in_dir) not in message:
        problems.append(f"error message names no file of the dataset (no '{in_dir}' in it)")
    left = files_under(out_dir)
    if left:
        problems.append(f"exit 2 but the output folder is not empty: {left}")
    return problems


def judge(run: Run, in_dir: Path, out_dir: Path) -> list[str]:
    if run.hung:
        return [f"no result within {CASE_TIMEOUT:g} s (hang); main's thread is at:\n{run.hang_stack}"]
    if run.exception is not None:
        return [f"exception escaped main: {run.exception}"]
    # A RuntimeWarning (NaN cast to int, overflow) means unchecked values reached numpy; the CLI
    # would print it on stderr next to (or instead of) a clean message.
    problems = [f"Python warning during the run: {w}" for w in run.warnings]
    if run.rc == 0:
        return problems + check_success(out_dir)
    if run.rc == 2:
        return problems + check_clean_error(run, in_dir, out_dir)
    return problems + [f"exit code {run.rc!r} (expected 0 or 2); output holds {files_under(out_dir)}"]


def report(number: int, fixture: str, mutations: list[str], run: Run, problems: list[str]) -> str:
    return "\n".join([
        f"fuzz case failed: seed={SEED} case={number} fixture={fixture}",
        f"reproduce: FUZZ_SEED={SEED} FUZZ_CASES={max(number + 1, NUM_CASES)} "
        f"python -m pytest tests/test_fuzz_inputs.py -k c{number:04d}",
        "mutations:",
        *(f"  {m}" for m in mutations),
        f"outcome: rc={run.rc!r} exception={run.exception!r} hung={run.hung} ({run.seconds:.2f} s)",
        *(f"warning: {w}" for w in run.warnings),
        "problems:",
        *(f"  - {p}" for p in problems),
        "--- stderr ---", run.stderr.rstrip()[-4000:],
        "--- stdout ---", run.stdout.rstrip()[-2000:],
        *(["--- traceback ---", run.traceback.rstrip()[-6000:]] if run.traceback else []),
    ])


# ---------------------------------------------------------------------------------------------
# the tests


def _case_id(number: int) -> str:
    fixture, families = plan_case(SEED, number)
    return f"c{number:04d}-{fixture}-{'+'.join(families)}"


def _copy(fixture: str, tmp_path: Path) -> Path:
    root = tmp_path / fixture
    shutil.copytree(FIXTURE_DIR / fixture, root)
    return root


@pytest.mark.parametrize("number", range(NUM_CASES), ids=[_case_id(n) for n in range(NUM_CASES)])
def test_fuzzed_dataset_converts_or_exits_2(number: int, tmp_path: Path) -> None:
    fixture, _ = plan_case(SEED, number)
    in_dir = _copy(fixture, tmp_path)
    mutations = apply_case(in_dir, SEED, number)
    out_dir = tmp_path / "out"
    run = run_main(in_dir, out_dir)
    problems = judge(run, in_dir, out_dir)
    assert not problems, report(number, fixture, mutations, run, problems)


@pytest.mark.parametrize("fixture", FIXTURES)
def test_unmutated_fixture_passes_the_checks(fixture: str, tmp_path: Path) -> None:
    """The judge itself: every undamaged fixture converts and trains cleanly."""
    in_dir = _copy(fixture, tmp_path)
    out_dir = tmp_path / "out"
    run = run_main(in_dir, out_dir)
    problems = judge(run, in_dir, out_dir)
    assert run.rc == 0 and not problems, report(-1, fixture, ["(none)"], run, problems)


def _digest(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def test_cases_are_reproducible(tmp_path: Path) -> None:
    """The same seed and case number damage a copy identically (descriptions and bytes)."""
    for number in range(8):
        fixture, _ = plan_case(SEED, number)
        a, b = _copy(fixture, tmp_path / f"a{number}"), _copy(fixture, tmp_path / f"b{number}")
        assert apply_case(a, SEED, number) == apply_case(b, SEED, number)
        assert _digest(a) == _digest(b), f"case {number} damaged two copies differently"


def test_judge_rejects_bad_outcomes(tmp_path: Path) -> None:
    """The judge fails what the contract forbids: leftovers, no file named, NaN stats, bad rc."""
    in_dir, out_dir = tmp_path / "ds", tmp_path / "out"
    out_dir.mkdir()
    (out_dir / ".episode_0.hdf5.tmp-1").write_bytes(b"")
    bad = Run(rc=2, stderr="error: something broke\n")
    problems = judge(bad, in_dir, out_dir)
    assert any("names no file" in p for p in problems) and any("not empty" in p for p in problems)
    assert judge(Run(rc=1), in_dir, out_dir) and judge(Run(hung=True), in_dir, out_dir)
    assert judge(Run(exception="KeyError: 'x'"), in_dir, out_dir)
    # exit 0 with NaN actions: the stats check catches it
    out_ok = tmp_path / "ok"
    out_ok.mkdir()
    with h5py.File(out_ok / "episode_0.hdf5", "w") as f:
        f["/observations/qpos"] = np.zeros((3, 2), np.float32)
        f["/action"] = np.array([[0, 0], [math.nan, 1], [0, 1]], np.float32)
        f["/observations/images/cam"] = np.zeros((3, 4, 4, 3), np.uint8)
    (out_ok / "conversion.json").write_text(json.dumps({"episodes": [{"output_index": 0}],
                                                        "cameras": {"k": "cam"}}))
    assert any("not finite" in p for p in check_success(out_ok))


def test_run_main_stops_a_hang(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """The per-case limit interrupts a main that does not return, and says where it was."""

    def stuck(argv):
        time.sleep(30)

    monkeypatch.setattr(sys.modules[__name__], "main", stuck)
    run = run_main(tmp_path / "ds", tmp_path / "out", timeout=0.5)
    assert run.hung and run.seconds < 5 and "stuck" in run.hang_stack
    assert "hang" in judge(run, tmp_path / "ds", tmp_path / "out")[0]
