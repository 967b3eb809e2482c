"""Write one upstream-ACT episode HDF5 file, streaming and atomically.

Layout (tonyzhaozh/act, FORMATS 2.1):
    /observations/qpos            (T, D) float32
    /observations/qvel            (T, D) float32   (upstream reads it; zeros when unknown)
    /observations/images/<cam>    (T, H, W, 3) uint8 RGB, chunked one frame per chunk
    /action                       (T, A) float32
    attrs: sim (bool) + provenance

Images arrive in blocks and go straight to disk, so memory stays flat however long the
episode is. The file is written as a hidden temporary in the destination folder and renamed
over `path` only when every dataset is complete: a crash never leaves a valid-looking episode.
"""

from __future__ import annotations

import os
from pathlib import Path

import h5py
import numpy as np

from lerobot_bridge.errors import DatasetError


class EpisodeWriter:
    """Usage:

    with EpisodeWriter(path, num_frames=T, attrs={...}) as w:
        w.write_lowdim(qpos=..., qvel=..., action=...)
        for block in blocks:              # (B, H, W, 3) uint8, any B
            w.append_images("cam_high", block)
    # renamed to `path` here; an exception inside the block deletes the temporary instead
    """

    def __init__(
        self, path: str | os.PathLike, num_frames: int, *, sim: bool = True, attrs: dict | None = None
    ):
        if num_frames < 1:
            raise ValueError(f"an episode needs at least one frame, got num_frames={num_frames}")
        self.path = Path(path)
        self.num_frames = num_frames
        self.tmp_path = self.path.with_name(f".{self.path.name}.tmp-{os.getpid()}")
        self._file = h5py.File(self.tmp_path, "w")
        self._file.attrs["sim"] = bool(sim)
        for key, value in (attrs or {}).items():
            self._file.attrs[key] = value
        self._obs = self._file.create_group("observations")
        self._images = self._obs.create_group("images")
        self._cursor: dict[str, int] = {}
        self._lowdim_written = False
        self._closed = False

    # -- writing ------------------------------------------------------------------------------

    def write_lowdim(self, qpos: np.ndarray, action: np.ndarray, qvel: np.ndarray | None = None) -> None:
        """qpos (T, D), action (T, A), qvel (T, D) or None for zeros; stored as float32."""
        t = self.num_frames
        qpos = np.asarray(qpos, np.float32)
        action = np.asarray(action, np.float32)
        qvel = np.zeros_like(qpos) if qvel is None else np.asarray(qvel, np.float32)
        for name, arr in (("qpos", qpos), ("qvel", qvel), ("action", action)):
            if arr.ndim != 2 or arr.shape[0] != t:
                raise ValueError(f"{name} must be ({t}, dim), got {arr.shape}")
        self._obs.create_dataset("qpos", data=qpos)
        self._obs.create_dataset("qvel", data=qvel)
        self._file.create_dataset("action", data=action)
        self._lowdim_written = True

    def write_dataset(self, name: str, data: np.ndarray) -> None:
        """Any extra per-episode dataset (e.g. `observations/effort`, `base_action`)."""
        self._file.create_dataset(name, data=data)

    def append_images(self, camera: str, frames: np.ndarray) -> None:
        """Append a block of frames (B, H, W, 3) uint8 RGB to camera `camera`."""
        frames = np.asarray(frames)
        if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
            raise ValueError(
                f"camera '{camera}': frames must be (B, H, W, 3) uint8, got {frames.shape} {frames.dtype}"
            )
        if camera not in self._cursor:
            h, w = frames.shape[1:3]
            self._images.create_dataset(
                camera, shape=(self.num_frames, h, w, 3), dtype=np.uint8, chunks=(1, h, w, 3)
            )
            self._cursor[camera] = 0
        dset = self._images[camera]
        if frames.shape[1:] != dset.shape[1:]:
            raise DatasetError(
                f"camera '{camera}': frame size {frames.shape[1:]} differs from earlier frames "
                f"{dset.shape[1:]}"
            )
        start = self._cursor[camera]
        stop = start + len(frames)
        if stop > self.num_frames:
            raise ValueError(f"camera '{camera}': {stop} frames written, the episode has {self.num_frames}")
        dset[start:stop] = frames
        self._cursor[camera] = stop

    def frames_written(self, camera: str) -> int:
        return self._cursor.get(camera, 0)

    # -- finishing ----------------------------------------------------------------------------

    def close(self) -> Path:
        """Check completeness, flush and rename the temporary file to `path`."""
        if self._closed:
            return self.path
        incomplete = {c: n for c, n in self._cursor.items() if n != self.num_frames}
        if not self._lowdim_written or incomplete:
            self.abort()
            raise ValueError(
                f"{self.path}: incomplete episode (lowdim written: {self._lowdim_written}, "
                f"frames per camera {incomplete} of {self.num_frames})"
            )
        self._file.close()
        os.replace(self.tmp_path, self.path)
        self._closed = True
        return self.path

    def abort(self) -> None:
        """Drop the temporary file; `path` is left as it was."""
        if self._closed:
            return
        self._closed = True
        try:
            self._file.close()
        finally:
            self.tmp_path.unlink(missing_ok=True)

    def __enter__(self) -> EpisodeWriter:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()
