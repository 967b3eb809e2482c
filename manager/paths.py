"""Resolve a path named by a request inside one of the manager's roots, or refuse it."""

from __future__ import annotations

import os
from pathlib import Path


class PathRefused(Exception):
    """A request named a path the manager will not touch; `status` is the HTTP status to answer."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def resolve_inside(root: Path, rel: str | None, what: str = "path", must_exist: bool = True) -> Path:
    """`root / rel` with symlinks resolved, refused (403) unless it stays inside `root`.

    Refused: absolute paths, any `..` component, a symlink (anywhere on the way) that leads
    outside the root. Missing (404) when `must_exist` and nothing is there. `rel` "" or "." is
    the root itself.
    """
    rel = (rel or "").strip()
    if "\x00" in rel:
        raise PathRefused(403, f"{what} {rel!r}: NUL bytes are not allowed")
    if rel.startswith(("/", "\\")) or os.path.isabs(rel) or (len(rel) > 1 and rel[1] == ":"):
        raise PathRefused(
            403, f"{what} {rel!r}: absolute paths are refused; give a path relative to the root"
        )
    parts = Path(rel).parts
    if ".." in parts or any(p == ".." for p in rel.replace("\\", "/").split("/")):
        raise PathRefused(403, f"{what} {rel!r}: '..' is refused; paths must stay inside the root")
    root_real = Path(os.path.realpath(root))
    full = Path(os.path.realpath(root_real / rel))
    if full != root_real and root_real not in full.parents:
        raise PathRefused(403, f"{what} {rel!r} leads outside the root (a symlink to {full}); refused")
    if must_exist and not full.exists():
        raise PathRefused(404, f"{what} {rel!r} not found under the root")
    return full


def check_new_name(root: Path, rel: str, what: str = "target") -> Path:
    """A path for something new, inside `root`, that does not exist yet (409 when it does)."""
    rel = (rel or "").strip().rstrip("/")
    if not rel:
        raise PathRefused(400, f"{what}: a name is required")
    full = resolve_inside(root, rel, what, must_exist=False)
    if full.exists() or full.is_symlink():
        raise PathRefused(409, f"{what} {rel!r} already exists; nothing is overwritten, pick a new name")
    return full


def relative_to_root(root: Path, path: Path) -> str:
    return Path(os.path.realpath(path)).relative_to(Path(os.path.realpath(root))).as_posix()
