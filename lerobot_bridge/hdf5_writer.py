"""Write one upstream-ACT episode HDF5 file, streaming and atomically.

Layout (tonyzhaozh/act, docs/FORMATS.md 2.1):
    /observations/qpos            (T, D) float32
    /observations/qvel            (T, D) float32   (upstream reads it; zeros when unknown)
    /observations/images/<cam>    (T, H, W, 3) uint8 RGB, chunked one frame per chunk
    /action                       (T, A) float32
    attrs: sim (bool) + provenance

storage="jpeg" writes ALOHA's compressed variant instead (aloha record_episodes.py,
act-plus-plus compress_data.py; see lerobot_bridge.frame_codec): attr compress=True,
    /observations/images/<cam>    (T, L) uint8, row t = frame t's JPEG zero-padded to L, chunk (1, L)
    /compress_len                 (num_cams, T) float32, each frame's JPEG length (cameras in the
                                  order they were first appended; attr camera_names lists them)
where L is the longest JPEG of the episode over all cameras, as their recorder pads. L is known
only at the end, so encoded frames are spooled to an anonymous temporary file beside the output
(unlinked from the start: nothing is left behind even by a killed process) and copied into the
rows at close(): memory stays flat for any episode length (18,000 frames x 3 cameras of 60 KB
would be 3 GB in memory).
image_size=(H, W) resizes every frame (area averaging) before it is stored, in either mode.

Images arrive in blocks and go straight to disk, so memory stays flat however long the
episode is. The file is written as a hidden temporary in the destination folder and renamed
over `path` only when every dataset is complete: a crash never leaves a valid-looking episode.
"""

from __future__ import annotations

import logging
import os
import queue
import re
import tempfile
import threading
from pathlib import Path

import h5py
import numpy as np

from lerobot_bridge.atomic_io import temp_path
from lerobot_bridge.errors import DatasetError
from lerobot_bridge.frame_codec import DEFAULT_JPEG_QUALITY, JpegEncoder, resize_area

STORAGE_MODES = ("raw", "jpeg")

log = logging.getLogger(__name__)

_STOP = object()


class EpisodeWriter:
    """Usage:

        with EpisodeWriter(path, num_frames=T, attrs={...}) as w:
            w.write_lowdim(qpos=..., qvel=..., action=...)
            for block in blocks:              # (B, H, W, 3) uint8, any B
                w.append_images("cam_high", block)
        # renamed to `path` here; an exception inside the block deletes the temporary instead

    background=True writes images from a thread (h5py releases the GIL inside HDF5 calls), so
    disk writes overlap with decoding the next frames. The queue holds at most `queue_blocks`
    blocks, so memory stays bounded. The caller must not modify an array after passing it.
    """

    def __init__(
        self,
        path: str | os.PathLike,
        num_frames: int,
        *,
        sim: bool = True,
        attrs: dict | None = None,
        background: bool = False,
        queue_blocks: int = 4,
        storage: str = "raw",
        jpeg_quality: int = DEFAULT_JPEG_QUALITY,
        image_size: tuple[int, int] | None = None,
    ):
        if num_frames < 1:
            raise ValueError(f"an episode needs at least one frame, got num_frames={num_frames}")
        if storage not in STORAGE_MODES:
            raise ValueError(f"storage must be one of {STORAGE_MODES}, got {storage!r}")
        self.path = Path(path)
        self.num_frames = num_frames
        self.storage = storage
        self.jpeg_quality = int(jpeg_quality)
        self.image_size = None if image_size is None else (int(image_size[0]), int(image_size[1]))
        self.tmp_path = temp_path(self.path)
        self._file = h5py.File(self.tmp_path, "w")
        self._file.attrs["sim"] = bool(sim)
        if storage == "jpeg":
            self._file.attrs["compress"] = True  # what ALOHA / act-plus-plus loaders test
            self._file.attrs["jpeg_quality"] = self.jpeg_quality
        for key, value in (attrs or {}).items():
            self._file.attrs[key] = value
        self._obs = self._file.create_group("observations")
        self._images = self._obs.create_group("images")
        self._queued: dict[str, int] = {}  # frames accepted per camera (checked in the caller's thread)
        self._frame_shape: dict[str, tuple[int, ...]] = {}
        self._written: dict[str, int] = {}  # frames on disk per camera (the writing thread's count)
        self._datasets: dict[str, h5py.Dataset] = {}
        self._encoders: dict[str, JpegEncoder] = {}
        # camera -> (offset, length) of each encoded frame in the spool file, in frame order
        self._jpeg: dict[str, list[tuple[int, int]]] = {}
        self._spool = None  # tempfile.TemporaryFile, opened with the first encoded frame
        self._spool_end = 0
        self._lowdim_written = False
        self._closed = False
        self._queue: queue.Queue | None = queue.Queue(maxsize=queue_blocks) if background else None
        self._thread: threading.Thread | None = None
        self._error: BaseException | None = None

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
        shape = self._frame_shape.setdefault(camera, frames.shape[1:])
        if frames.shape[1:] != shape:
            raise DatasetError(
                f"camera '{camera}': frame size {frames.shape[1:]} differs from earlier frames {shape}"
            )
        start = self._queued.get(camera, 0)
        stop = start + len(frames)
        if stop > self.num_frames:
            raise ValueError(f"camera '{camera}': {stop} frames written, the episode has {self.num_frames}")
        self._queued[camera] = stop
        if self._queue is None:
            self._write_frames(camera, frames)
            return
        self._raise_background_error()
        if self._thread is None:
            self._thread = threading.Thread(target=self._drain, name="EpisodeWriter", daemon=True)
            self._thread.start()
        self._queue.put((camera, frames))

    def _write_frames(self, camera: str, frames: np.ndarray) -> None:
        # Resizing and encoding run here, i.e. in the background thread when there is one: numpy's
        # ufuncs and FFmpeg release the GIL, so they overlap with decoding the next frames.
        if self.image_size is not None:
            frames = resize_area(frames, self.image_size)
        if self.storage == "jpeg":
            self._encode_frames(camera, frames)
            return
        dset = self._datasets.get(camera)
        if dset is None:  # opened once: a group lookup per frame costs as much as the write
            h, w = frames.shape[1:3]
            dset = self._images.create_dataset(
                camera, shape=(self.num_frames, h, w, 3), dtype=np.uint8, chunks=(1, h, w, 3)
            )
            self._datasets[camera] = dset
            self._written[camera] = 0
        start = self._written[camera]
        # One direct chunk write per frame: the chunk is exactly one frame, uncompressed, so the
        # frame's bytes are the chunk. This skips HDF5's selection and chunk-cache machinery.
        write_chunk = dset.id.write_direct_chunk
        for i, frame in enumerate(frames):
            write_chunk(
                (start + i, 0, 0, 0), frame if frame.flags.c_contiguous else np.ascontiguousarray(frame)
            )
        self._written[camera] = start + len(frames)

    def _encode_frames(self, camera: str, frames: np.ndarray) -> None:
        encoder = self._encoders.get(camera)
        if encoder is None:
            encoder = JpegEncoder(frames.shape[1], frames.shape[2], self.jpeg_quality)
            self._encoders[camera] = encoder
            self._jpeg[camera] = []
            self._written[camera] = 0
        if self._spool is None:
            self._spool = tempfile.TemporaryFile(dir=self.path.parent, prefix=".jpeg-spool-")
        index = self._jpeg[camera]
        for frame in frames:
            data = encoder.encode(frame)
            self._spool.write(data)  # appends: frames of all cameras interleave in arrival order
            index.append((self._spool_end, len(data)))
            self._spool_end += len(data)
        self._written[camera] += len(frames)

    def _write_jpeg_datasets(self) -> None:
        """The padded (T, L) rows and /compress_len, once every frame's length is known."""
        cameras = list(self._jpeg)
        lengths = np.array([[n for _, n in self._jpeg[c]] for c in cameras], dtype=np.float32)  # (C, T)
        self._spool.flush()
        fd = self._spool.fileno()
        padded = int(lengths.max())
        row = np.zeros(padded, dtype=np.uint8)
        for camera in cameras:
            dset = self._images.create_dataset(
                camera, shape=(self.num_frames, padded), dtype=np.uint8, chunks=(1, padded)
            )
            for t, (offset, n) in enumerate(self._jpeg[camera]):
                row[:n] = np.frombuffer(os.pread(fd, n, offset), dtype=np.uint8)
                row[n:] = 0
                dset.id.write_direct_chunk((t, 0), row)  # chunk = one row: its bytes are the chunk

        # float32 and no explicit chunks: exactly what aloha's recorder creates (create_dataset with
        # a shape only); lengths below 2**24 are exact in float32.
        dset = self._file.create_dataset("compress_len", data=lengths)
        dset.attrs["camera_names"] = cameras

    def _drain(self) -> None:
        while True:
            item = self._queue.get()
            if item is _STOP:
                return
            if self._error is None:  # after an error keep consuming so the producer never blocks
                try:
                    self._write_frames(*item)
                except BaseException as err:  # noqa: BLE001 - re-raised in the caller's thread
                    self._error = err

    def _raise_background_error(self) -> None:
        if self._error is not None:
            raise self._error

    def _stop_background(self) -> None:
        if self._thread is not None:
            self._queue.put(_STOP)
            self._thread.join()
            self._thread = None

    # -- finishing ----------------------------------------------------------------------------

    def close(self) -> Path:
        """Check completeness, flush and rename the temporary file to `path`."""
        if self._closed:
            return self.path
        try:
            self._stop_background()
            self._raise_background_error()
        except BaseException:
            self.abort()
            raise
        incomplete = {c: n for c, n in self._written.items() if n != self.num_frames}
        if not self._lowdim_written or incomplete:
            self.abort()
            raise ValueError(
                f"{self.path}: incomplete episode (lowdim written: {self._lowdim_written}, "
                f"frames per camera {incomplete} of {self.num_frames})"
            )
        try:
            if self.storage == "jpeg" and self._jpeg:
                self._write_jpeg_datasets()
            if self.image_size is not None:
                self._file.attrs["image_size"] = list(self.image_size)
        except BaseException:
            self.abort()
            raise
        self._close_spool()
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
            self._stop_background()
            self._file.close()
        finally:
            self._close_spool()
            self.tmp_path.unlink(missing_ok=True)

    def _close_spool(self) -> None:
        if self._spool is not None:
            self._spool.close()  # anonymous: closing frees its space
            self._spool = None

    def __enter__(self) -> EpisodeWriter:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()


_EPISODE_FILE = re.compile(r"^episode_(\d+)\.hdf5$")
TEMP_FILE_RE = re.compile(r"^\.episode_\d+\.hdf5\.tmp-\d+$")  # EpisodeWriter's temporaries


def remove_stale_episodes(folder: Path, count: int) -> None:
    """Remove `episode_{i}.hdf5` with i >= count (from an earlier, larger run) and temporaries
    of crashed runs: anyone who globs the folder would mix them into training."""
    for path in folder.iterdir():
        m = _EPISODE_FILE.match(path.name)
        if (m and int(m.group(1)) >= count) or TEMP_FILE_RE.match(path.name):
            log.info("removing stale %s", path)
            path.unlink()
