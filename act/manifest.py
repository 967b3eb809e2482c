"""`manifest.json`: what a run was asked to do, what it did, and what it left behind.

Rewritten atomically (temporary name + os.replace) at the start, periodically during
training and at the end, so a reader (a batch scheduler, a user after a preemption) always
finds a complete JSON document whose `status` says whether to trust the artifacts.
"""

from __future__ import annotations

import hashlib
import json
import platform
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from lerobot_bridge.atomic_io import atomic_write_text

STATUSES = ("running", "prepared", "completed", "failed", "interrupted")  # prepared: --prepare_only


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def sha256_file(path: str | Path, block: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(block):
            h.update(chunk)
    return h.hexdigest()


def describe_artifacts(run_dir: str | Path, output_dir: str | Path) -> dict[str, dict[str, Any]]:
    """Every file in the run directory: path relative to the output dir, bytes and sha256."""
    run_dir, output_dir = Path(run_dir), Path(output_dir)
    out: dict[str, dict[str, Any]] = {}
    for p in sorted(run_dir.iterdir()):
        if p.is_file() and not p.name.startswith("."):
            out[p.name] = {
                "path": str(p.relative_to(output_dir)) if p.is_relative_to(output_dir) else str(p),
                "bytes": p.stat().st_size,
                "sha256": sha256_file(p),
            }
    return out


def software_versions() -> dict[str, str]:
    import h5py
    import numpy
    import torch

    versions = {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "numpy": numpy.__version__,
        "h5py": h5py.__version__,
        "cuda": str(torch.version.cuda),
        "cudnn": str(torch.backends.cudnn.version()) if torch.backends.cudnn.is_available() else "none",
        "platform": platform.platform(),
    }
    for name in ("av", "pyarrow", "einops"):
        module = sys.modules.get(name)
        if module is None:
            try:
                module = __import__(name)
            except ImportError:
                continue
        versions[name] = getattr(module, "__version__", "unknown")
    try:
        from importlib.metadata import version

        versions["train_act"] = version("train-act")
    except Exception:  # not installed as a distribution (plain checkout)
        versions["train_act"] = "unknown"
    return versions


class Manifest:
    """A JSON document of named sections, rewritten whole on every `write()`."""

    def __init__(self, path: str | Path, data: dict[str, Any] | None = None) -> None:
        self.path = Path(path)
        self.data: dict[str, Any] = data if data is not None else {}

    @classmethod
    def load_or_new(cls, path: str | Path) -> Manifest:
        """Continue an existing manifest (the launcher's, when a torchrun worker takes over)."""
        path = Path(path)
        if path.exists():
            try:
                return cls(path, json.loads(path.read_text()))
            except (OSError, ValueError):
                pass  # not readable JSON (never with atomic writes): start over rather than fail here
        return cls(path)

    def update(self, **sections: Any) -> Manifest:
        self.data.update(sections)
        return self

    def set_status(self, status: str, error: str | None = None) -> Manifest:
        assert status in STATUSES, status
        self.data["status"] = status
        self.data["error"] = error
        if status != "running":
            self.data["finished_at"] = now_iso()
        return self

    def write(self) -> None:
        self.data["updated_at"] = now_iso()
        self.data.setdefault("format", "train_act manifest v1")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(self.path, json.dumps(self.data, indent=2, default=_json_default) + "\n")


def _json_default(obj: Any) -> Any:
    import numpy as np

    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"not JSON serializable: {type(obj).__name__}")

