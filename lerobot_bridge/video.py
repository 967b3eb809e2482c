"""Decode one episode's segment of an mp4 once, in order, and pair frames with data rows.

Why not LeRobot's way (open + seek + decode one frame per sample, 1e-4 s tolerance): random
access costs ~6 ms a frame and the strict tolerance fails on wall-clock timestamps and dropped
frames. Here a segment is decoded sequentially from the keyframe at or before its start, and
each row gets the decoded frame nearest in time (docs/FORMATS.md 1.4):

- row r of an episode wants the frame at `from_timestamp + timestamp[r]` (v3.0 files hold many
  episodes back to back; v2.x files start each episode at 0);
- a row whose nearest frame is more than half a frame period away has no frame of its own: it is
  counted as *dropped* and filled with that nearest frame;
- a frame that is the in-tolerance match of two consecutive rows (rows denser than frames,
  e.g. a camera delivering 15 fps into a 30 fps recording) is counted as *duplicated*.

Works for AV1 (libdav1d), H.264 with B-frames (the decoder hands frames out in presentation
order) and HEVC: nothing here depends on the codec.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from pathlib import Path

import av
import numpy as np

from lerobot_bridge.errors import DatasetError

# What av.open raises for a damaged file: FFmpeg's errors, and UnicodeDecodeError when PyAV decodes
# container metadata (tags, format names) from bytes that are not UTF-8.
OPEN_ERRORS = (av.FFmpegError, UnicodeDecodeError)


def probe_size(path: Path) -> tuple[int, int]:
    """(height, width) of the first video stream, from the container header (nothing decoded):
    cheap enough to check every file before the first episode is converted."""
    path = Path(path)
    try:
        with av.open(str(path)) as container:
            if not container.streams.video:
                raise DatasetError(f"{path}: no video stream")
            ctx = container.streams.video[0].codec_context
            height, width = int(ctx.height), int(ctx.width)
    except OPEN_ERRORS as err:
        raise DatasetError(f"{path}: cannot open video ({err})") from err
    if height <= 0 or width <= 0:
        raise DatasetError(f"{path}: video stream has no frame size in its header ({height}x{width})")
    return height, width


class SegmentReader:
    """Frames of one camera for a run of rows, one (H, W, 3) uint8 RGB frame per row.

    Frames are yielded one at a time, without stacking, so the only copy between the decoder and
    the HDF5 chunk is the YUV -> RGB conversion. After iteration `dropped`, `duplicated` and
    `decoded` hold the counts for the segment.
    """

    def __init__(
        self,
        path: Path,
        row_times: np.ndarray,  # (n,) seconds in the file's timeline, increasing
        fps: float,
        *,
        thread_count: int = 0,  # 0 = FFmpeg's choice; pin it when several workers share the CPU
    ) -> None:
        if len(row_times) == 0:
            raise ValueError("no rows to read")
        self.path = Path(path)
        self.row_times = np.asarray(row_times, dtype=np.float64)
        self.half_period = 0.5 / fps
        self.thread_count = thread_count
        self.dropped = 0
        self.duplicated = 0
        self.decoded = 0

    def _open(self):
        if not self.path.is_file():
            raise DatasetError(f"{self.path}: video file not found")
        try:
            container = av.open(str(self.path))
        except OPEN_ERRORS as err:
            raise DatasetError(f"{self.path}: cannot open video ({err})") from err
        if not container.streams.video:
            container.close()
            raise DatasetError(f"{self.path}: no video stream")
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        stream.codec_context.thread_count = self.thread_count
        return container, stream

    def _ticks(self, seconds: float, stream) -> int:
        """`seconds` in the stream's time base; a time that does not fit FFmpeg's int64 timestamps
        (a corrupted from_timestamp such as 1e30) is refused, not left to OverflowError in seek."""
        if stream.time_base is None or stream.time_base <= 0:
            raise DatasetError(f"{self.path}: video stream has no time base; cannot seek")
        ticks = seconds / stream.time_base
        if not math.isfinite(ticks) or abs(ticks) >= 2**62:
            raise DatasetError(
                f"{self.path}: cannot seek to {seconds:g} s, far beyond any video (check the episode's "
                "from_timestamp in the episodes table)"
            )
        return int(ticks)

    def _frames(self) -> Iterator[tuple[float, av.VideoFrame]]:
        """(time, frame) from the keyframe at or before the first row to past the last row."""
        first = self.row_times[0] - self.half_period
        for attempt in ("seek", "from_start"):
            container, stream = self._open()
            seconds_per_tick = float(stream.time_base)  # float, not Fraction arithmetic per frame
            try:
                if attempt == "seek" and first > 0:
                    # backward=True: land on the keyframe at or before `first`; PyAV flushes the decoder.
                    container.seek(self._ticks(first, stream), stream=stream, backward=True, any_frame=False)
                started = False
                for frame in container.decode(stream):
                    if frame.pts is None:
                        raise DatasetError(f"{self.path}: decoded a frame without a timestamp (pts)")
                    t = frame.pts * seconds_per_tick
                    if not started:
                        started = True
                        # A seek that lands after the segment start (bad index) would silently skip
                        # frames: decode from the beginning instead.
                        if attempt == "seek" and first > 0 and t > self.row_times[0] + self.half_period:
                            break
                    yield t, frame
                    if t >= self.row_times[-1]:
                        return
                else:
                    return  # end of stream
            except av.FFmpegError as err:
                raise DatasetError(f"{self.path}: video decoding failed ({err})") from err
            finally:
                container.close()
        # unreachable: the from_start attempt always returns

    def __iter__(self) -> Iterator[np.ndarray]:
        """One (H, W, 3) uint8 RGB frame per row, in row order. A frame that serves two rows is
        yielded twice (same array): write it before asking for the next."""
        rows = self.row_times
        n = len(rows)
        r = 0  # next row to assign
        shape = None
        prev_t: float | None = None
        prev_frame: av.VideoFrame | None = None
        prev_rgb: np.ndarray | None = None  # converted lazily: pre-roll frames are never converted
        prev_id = -1
        last_matched_id = -2  # frame matched (within tolerance) by the previous matched row

        def assign() -> np.ndarray:
            """Give the previous frame to row r and count what that means."""
            nonlocal r, prev_rgb, last_matched_id, shape
            if prev_rgb is None:
                prev_rgb = prev_frame.to_ndarray(format="rgb24")  # (H, W, 3)
                if shape is None:
                    shape = prev_rgb.shape
                elif prev_rgb.shape != shape:
                    raise DatasetError(
                        f"{self.path}: frame size changes from {shape} to {prev_rgb.shape} at {prev_t:.4f}s"
                    )
            if abs(rows[r] - prev_t) > self.half_period + 1e-6:
                self.dropped += 1  # filled with the nearest frame; not a match, so no duplicate either
            else:
                if prev_id == last_matched_id:
                    self.duplicated += 1
                last_matched_id = prev_id
            r += 1
            return prev_rgb

        for t, frame in self._frames():
            self.decoded += 1
            if prev_t is not None and t <= prev_t:
                continue  # a repeated or out-of-order timestamp adds nothing
            if prev_frame is not None:
                # Rows at or before the midpoint between the previous frame and this one are
                # nearest to the previous frame.
                midpoint = 0.5 * (prev_t + t)
                while r < n and rows[r] <= midpoint:
                    yield assign()
            prev_t, prev_frame, prev_rgb, prev_id = t, frame, None, prev_id + 1
        if prev_frame is None:
            raise DatasetError(
                f"{self.path}: no frames decoded for the segment {rows[0]:.4f}s..{rows[-1]:.4f}s"
            )
        while r < n:
            yield assign()
