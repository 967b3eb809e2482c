"""Atomic file writes: nothing half-written under a name that looks complete.

Every output file (episodes, conversion.json, checkpoints, stats, configs, the manifest) is
written to a temporary name in the same directory and renamed with `os.replace` when complete,
so a crash or a kill leaves either the old file or the new one, never a truncated one. The
temporary name `.{name}.tmp-{pid}` is hidden from globs like `episode_*.hdf5`, and the pid keeps
two processes writing the same file from sharing a temporary. No torch here: the bridge uses it.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path


def temp_path(path: str | os.PathLike) -> Path:
    """The temporary name `path` is written under before the rename (same directory)."""
    path = Path(path)
    return path.with_name(f".{path.name}.tmp-{os.getpid()}")


def atomic_write(path: str | os.PathLike, write: Callable[[Path], object]) -> None:
    """Call `write(tmp)` to fill a temporary file, then rename it to `path`; on any error the
    temporary is removed and `path` is left as it was."""
    tmp = temp_path(path)
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write `data` atomically, fsynced before the rename (small files: the cost is nothing)."""

    def write(tmp: Path) -> None:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())

    atomic_write(path, write)


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    atomic_write_bytes(path, text.encode())


def atomic_write_json(path: str | os.PathLike, data: object) -> None:
    """Indented JSON with a trailing newline; values JSON cannot hold (paths, numpy scalars) as str."""
    atomic_write_text(path, json.dumps(data, indent=2, default=str) + "\n")
