"""Failures during a run that the user can act on.

The CLI prints the message (no traceback) and exits with `exit_code`; under torchrun each
rank's message reaches the manifest. Bad input data is `lerobot_bridge.errors.DatasetError`
and bad flags `act.distributed.UsageError`; these are the ones found while training.
"""

from __future__ import annotations

import shutil
from pathlib import Path


class RunError(RuntimeError):
    """A run stopped for a reason the message explains; exit code 1 unless a subclass says."""

    exit_code = 1


class NonFiniteLossError(RunError):
    """The training loss became NaN/Inf: nothing after that point is saved (exit 1)."""


class ResumeStateError(RunError):
    """resume_state.pt cannot be read or does not fit this run (exit 2: --fresh fixes it)."""

    exit_code = 2


class OutputWriteError(RunError):
    """An output file could not be written (a full disk, a read-only folder): exit 2."""

    exit_code = 2


class InsufficientSpaceError(RunError):
    """The conversion would not fit in the free space where it goes (exit 2, before writing)."""

    exit_code = 2


def describe_write_failure(path: str | Path, err: BaseException) -> OutputWriteError:
    """An OutputWriteError naming the file, the cause and the free space where it was written.

    torch.save on a full disk fails with "PytorchStreamWriter failed writing file ... unexpected
    pos", which says nothing about space; the free-space figure does.
    """
    path = Path(path)
    try:
        free = shutil.disk_usage(path.parent).free
        space = f"{free / 2**20:.1f} MiB free on its file system"
    except OSError:
        space = "free space unknown"
    return OutputWriteError(
        f"cannot write {path} ({type(err).__name__}: {err}); {space}. The previous {path.name}, if any, "
        "is kept unchanged. Free some space (or point --output_dir elsewhere) and run the same command "
        "again to resume"
    )
