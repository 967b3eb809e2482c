"""Training runs under the runs root: read from manifest.json / metrics.jsonl, launched as the
real CLI (`train_lerobot_to_act.py`) in its own process group, stopped with SIGTERM (the CLI
saves a resumable state and exits 143), resumed by running the identical argv again."""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import logging
import os
import re
import signal
import subprocess
import sys
import threading
import time
from datetime import datetime
from pathlib import Path

log = logging.getLogger("manager.runs")

LAUNCH_FILE = "manager_launch.json"  # what the manager launched in an OUTPUT folder: argv, pid
LOG_FILE = "run.log"
MAX_DEPTH = 3
# Flags the form does not offer: the manager sets the paths; resume/fresh are buttons / never.
HIDDEN_FLAGS = {"input_dir", "output_dir", "resume", "fresh", "help"}
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")


def cli_module():
    import train_lerobot_to_act

    return train_lerobot_to_act


# ---------------------------------------------------------------------------------------------
# the form: the CLI's own parser


def form_spec() -> list[dict]:
    """Every CLI flag the form offers, with the parser's defaults, types, choices and help."""
    parser = cli_module().build_parser()
    groups = {id(a): g.title for g in parser._action_groups for a in g._group_actions}
    spec = []
    for action in parser._actions:
        if not action.option_strings or action.dest in HIDDEN_FLAGS:
            continue
        if isinstance(action, argparse._StoreTrueAction):
            kind = "bool"
        elif action.choices:
            kind = "choice"
        elif action.nargs in ("+", "*"):
            kind = "list"
        elif action.type is int:
            kind = "int"
        elif action.type is float:
            kind = "float"
        else:
            kind = "str"
        spec.append(
            {
                "name": action.dest,
                "flag": action.option_strings[0],
                "kind": kind,
                "default": action.default,
                "choices": list(action.choices) if action.choices else None,
                "help": action.help or "",
                "group": groups.get(id(action), ""),
            }
        )
    return spec


class FormError(ValueError):
    pass


def flags_to_argv(values: dict) -> list[str]:
    """Form values -> CLI argv (only flags the parser knows, only values that differ from the
    default), checked by the CLI's own parser. Raises FormError naming the flag."""
    spec = {s["name"]: s for s in form_spec()}
    argv: list[str] = []
    for name, value in values.items():
        if name not in spec:
            raise FormError(f"unknown flag '{name}': not an option of train_lerobot_to_act.py's form")
        s = spec[name]
        if value is None or value == "":
            continue
        if s["kind"] == "bool":
            if value in (True, "true", "on", "1", 1):
                argv.append(s["flag"])
            elif value not in (False, "false", "off", "0", 0):
                raise FormError(f"{s['flag']}: expected true or false, got {value!r}")
            continue
        if s["kind"] == "list":
            items = value if isinstance(value, list) else re.split(r"[\s,]+", str(value).strip())
            items = [str(i) for i in items if str(i)]
            if items:
                argv += [s["flag"], *items]
            continue
        text = str(value).strip()
        if text.startswith("-") and s["kind"] not in ("int", "float"):
            raise FormError(f"{s['flag']}: value {text!r} may not start with '-'")
        if s["default"] is not None and text == str(s["default"]):
            continue
        argv += [s["flag"], text]
    parser = cli_module().build_parser()
    err = io.StringIO()
    try:
        with contextlib.redirect_stderr(err):
            parser.parse_args(["--input_dir", "x", "--output_dir", "y", *argv])
    except SystemExit:
        message = err.getvalue().strip().splitlines()
        raise FormError(message[-1] if message else "invalid arguments") from None
    return argv


# ---------------------------------------------------------------------------------------------
# reading runs


def find_outputs(runs_root: Path) -> list[Path]:
    root = Path(os.path.realpath(runs_root))
    found: list[Path] = []

    def walk(folder: Path, depth: int) -> None:
        if (folder / "manifest.json").is_file() or (folder / LAUNCH_FILE).is_file():
            found.append(folder)
            return
        if depth >= MAX_DEPTH:
            return
        try:
            children = sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))
        except OSError:
            return
        for child in children:
            real = Path(os.path.realpath(child))
            if root in real.parents:
                walk(child, depth + 1)

    walk(root, 0)
    return found


def read_json(path: Path) -> dict:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def read_metrics(path: Path) -> list[dict]:
    rows = []
    try:
        text = path.read_text()
    except OSError:
        return rows
    for line in text.splitlines():
        try:
            row = json.loads(line)
        except ValueError:
            continue  # a torn last line while the run writes it
        if isinstance(row, dict):
            rows.append(row)
    return rows


def run_dir_of(output: Path, manifest: dict) -> Path | None:
    run_dir = manifest.get("run_dir")
    if isinstance(run_dir, str) and Path(run_dir).is_dir():
        real = Path(os.path.realpath(run_dir))
        if Path(os.path.realpath(output)) in real.parents:
            return real
    ckpts = output / "checkpoints"
    if ckpts.is_dir():
        runs = sorted((p for p in ckpts.iterdir() if p.is_dir()), key=lambda p: p.stat().st_mtime)
        if runs:
            return runs[-1]
    return None


def _iso_seconds(text: str | None) -> float | None:
    if not text:
        return None
    try:
        return datetime.fromisoformat(text).timestamp()
    except ValueError:
        return None


class RunRegistry:
    """The processes this server launched (pid, Popen) and every run on disk."""

    def __init__(self, runs_root: Path) -> None:
        self.runs_root = Path(runs_root)
        self._procs: dict[str, subprocess.Popen] = {}
        self._lock = threading.Lock()

    # --- state

    def _alive(self, output: Path) -> tuple[bool, int | None]:
        key = str(Path(os.path.realpath(output)))
        with self._lock:
            proc = self._procs.get(key)
        if proc is not None:
            return proc.poll() is None, proc.returncode
        launch = read_json(output / LAUNCH_FILE)
        pid = launch.get("pid")
        if isinstance(pid, int) and pid > 0 and launch.get("returncode") is None:
            try:
                os.kill(pid, 0)
                cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
                return ("train_lerobot_to_act" in cmdline), None
            except (OSError, ProcessLookupError):
                return False, None
        return False, launch.get("returncode")

    def summary(self, output: Path, rel: str) -> dict:
        manifest = read_json(output / "manifest.json")
        launch = read_json(output / LAUNCH_FILE)
        run_dir = run_dir_of(output, manifest)
        metrics = read_metrics(run_dir / "metrics.jsonl") if run_dir else []
        alive, rc = self._alive(output)
        status = manifest.get("status") or ("starting" if alive else "unknown")
        if alive:
            status = "running"
        elif status == "running":
            status = "exited" if rc is None else f"exited ({rc})"
        training = manifest.get("training") or {}
        plan = manifest.get("plan") or {}
        planned = training.get("steps_planned") or plan.get("steps")
        train_rows = [r for r in metrics if r.get("kind") == "train"]
        done = max([int(training.get("steps_completed") or 0)] + [int(r.get("step", 0)) for r in train_rows])
        progress = (done / planned) if planned else None
        eta = None
        if alive and planned and len(train_rows) >= 2:
            recent = train_rows[-10:]
            t0, t1 = _iso_seconds(recent[0].get("time")), _iso_seconds(recent[-1].get("time"))
            steps = recent[-1]["step"] - recent[0]["step"]
            if t0 and t1 and t1 > t0 and steps > 0:
                eta = (planned - done) * (t1 - t0) / steps
        dataset = manifest.get("dataset") or {}
        arguments = manifest.get("arguments") or {}
        return {
            "id": rel,
            "name": Path(rel).name,
            "status": status,
            "alive": alive,
            "returncode": rc,
            "error": manifest.get("error"),
            "dataset": dataset.get("path") or launch.get("dataset") or arguments.get("input_dir"),
            "run_name": manifest.get("run_name"),
            "run_dir": str(run_dir) if run_dir else None,
            "steps_completed": done,
            "steps_planned": planned,
            "progress": progress,
            "eta_seconds": eta,
            "best": manifest.get("best"),
            "verdict": manifest.get("verdict"),
            "started_at": manifest.get("started_at") or launch.get("started_at"),
            "updated_at": manifest.get("updated_at"),
            "launched_here": bool(launch),
            "artifacts": sorted(p.name for p in run_dir.iterdir() if p.is_file()) if run_dir else [],
        }

    def detail(self, output: Path, rel: str) -> dict:
        info = self.summary(output, rel)
        manifest = read_json(output / "manifest.json")
        launch = read_json(output / LAUNCH_FILE)
        info["arguments"] = manifest.get("arguments") or {}
        info["command"] = launch.get("argv") or manifest.get("command")
        info["notes"] = manifest.get("notes") or []
        info["exports"] = read_exports(output)
        info["checkpoints"] = (
            sorted(p.name for p in Path(info["run_dir"]).glob("*.ckpt")) if info["run_dir"] else []
        )
        return info

    # --- processes

    def launch(self, output: Path, argv: list[str], dataset_rel: str) -> subprocess.Popen:
        """Start argv (a list, never a shell string) in its own process group, log to OUTPUT/run.log."""
        key = str(Path(os.path.realpath(output)))
        with self._lock:
            proc = self._procs.get(key)
            if proc is not None and proc.poll() is None:
                raise RuntimeError("this run is already running")
        output.mkdir(parents=True, exist_ok=True)
        log_file = open(output / LOG_FILE, "ab")  # noqa: SIM115 - handed to the child
        log_file.write(f"\n[manager] {time.strftime('%Y-%m-%d %H:%M:%S')} starting: {argv}\n".encode())
        log_file.flush()
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        proc = subprocess.Popen(  # noqa: S603 - argv list, validated flags only
            argv,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            cwd=str(output),
            env=env,
            start_new_session=True,
        )
        log_file.close()
        with self._lock:
            self._procs[key] = proc
        self._write_launch(
            output,
            {
                "argv": argv,
                "pid": proc.pid,
                "dataset": dataset_rel,
                "started_at": datetime.now().astimezone().isoformat(timespec="seconds"),
                "returncode": None,
            },
        )
        threading.Thread(target=self._reap, args=(output, proc), daemon=True, name=f"reap-{proc.pid}").start()
        log.info("launched run %s (pid %d): %s", output.name, proc.pid, " ".join(argv))
        return proc

    def _write_launch(self, output: Path, data: dict) -> None:
        path = output / LAUNCH_FILE
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(json.dumps(data, indent=2) + "\n")
        os.replace(tmp, path)

    def _reap(self, output: Path, proc: subprocess.Popen) -> None:
        rc = proc.wait()
        launch = read_json(output / LAUNCH_FILE)
        if launch.get("pid") == proc.pid:
            launch["returncode"] = rc
            launch["ended_at"] = datetime.now().astimezone().isoformat(timespec="seconds")
            self._write_launch(output, launch)
        log.info("run %s (pid %d) exited with code %d", output.name, proc.pid, rc)

    def stop(self, output: Path) -> int:
        alive, _ = self._alive(output)
        if not alive:
            raise RuntimeError("this run is not running")
        launch = read_json(output / LAUNCH_FILE)
        pid = launch.get("pid")
        os.killpg(os.getpgid(pid), signal.SIGTERM)
        log.info("sent SIGTERM to run %s (process group %d)", output.name, pid)
        return pid

    def resume(self, output: Path) -> subprocess.Popen:
        alive, _ = self._alive(output)
        if alive:
            raise RuntimeError("this run is still running; stop it first")
        launch = read_json(output / LAUNCH_FILE)
        argv = launch.get("argv")
        if not isinstance(argv, list) or not argv:
            raise FileNotFoundError(
                f"{LAUNCH_FILE} not found: only runs started from the manager can be resumed here "
                "(run the identical command again in a shell)"
            )
        return self.launch(output, argv, launch.get("dataset", ""))

    def stop_all(self) -> None:
        with self._lock:
            procs = list(self._procs.values())
        for proc in procs:
            if proc.poll() is None:
                with contextlib.suppress(OSError):
                    os.killpg(proc.pid, signal.SIGTERM)


def build_argv(dataset: Path, output: Path, flags: list[str]) -> list[str]:
    cli = Path(cli_module().__file__).resolve()
    return [sys.executable, str(cli), "--input_dir", str(dataset), "--output_dir", str(output), *flags]


# ---------------------------------------------------------------------------------------------
# export to an Innate skill: the project's exporter, run as its CLI

EXPORTS_FILE = "manager_exports.jsonl"  # in an OUTPUT folder: every export started from the manager
CKPT_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}\.ckpt$")
EXPORT_TIMEOUT = 600


def export_innate(run_dir: Path, skill_dir: Path, checkpoint: str, skip_runtime_check: bool) -> dict:
    """Run `python -m act.export_innate --run_dir RUN --skill_dir SKILL --checkpoint C` (an argv list;
    the exporter's CLI, also scripts/export_innate.py, in the installed package, so the image has it)
    and return {"returncode", "result" (its JSON on success), "error", "warnings", "argv"}."""
    argv = [
        sys.executable,
        "-m",
        "act.export_innate",
        "--run_dir",
        str(run_dir),
        "--skill_dir",
        str(skill_dir),
        "--checkpoint",
        checkpoint,
    ]
    if skip_runtime_check:
        argv.append("--skip_runtime_check")
    t0 = time.perf_counter()
    try:
        proc = subprocess.run(  # noqa: S603 - argv list, paths checked by the caller
            argv,
            capture_output=True,
            text=True,
            stdin=subprocess.DEVNULL,
            timeout=EXPORT_TIMEOUT,
            env=dict(os.environ, PYTHONUNBUFFERED="1"),
        )
    except subprocess.TimeoutExpired:
        return {
            "returncode": None,
            "result": None,
            "error": f"the exporter did not finish within {EXPORT_TIMEOUT} s",
            "warnings": [],
            "argv": argv,
        }
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    warnings = [line.removeprefix("warning: ") for line in lines if line.startswith("warning: ")]
    errors = [line.removeprefix("error: ") for line in lines if line.startswith("error: ")]
    result = None
    if proc.returncode == 0:
        try:
            result = json.loads(proc.stdout)
        except ValueError:
            result = {"output": proc.stdout}
    error = None
    if proc.returncode != 0:
        error = "; ".join(errors) or "\n".join(lines[-20:]) or f"exit code {proc.returncode}"
    log.info(
        "export of %s into %s: exit %s in %.1f s",
        run_dir,
        skill_dir,
        proc.returncode,
        time.perf_counter() - t0,
    )
    return {
        "returncode": proc.returncode,
        "result": result,
        "error": error,
        "warnings": warnings,
        "argv": argv,
    }


def record_export(output: Path, record: dict) -> None:
    with (output / EXPORTS_FILE).open("a") as fh:
        fh.write(json.dumps(record) + "\n")


def read_exports(output: Path) -> list[dict]:
    return read_metrics(output / EXPORTS_FILE)
