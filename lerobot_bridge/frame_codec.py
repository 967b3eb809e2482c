"""Frame storage helpers shared by conversion, the training loader and inference.

- `resize_area`: area-averaging resize (a box filter), the one resize every path uses, so a policy
  trained on frames resized at conversion sees identically resized frames at inference.
- `JpegEncoder` / `JpegDecoder`: JPEG frames for the compressed episode layout real ALOHA
  datasets use (aloha's `record_episodes.py`, act-plus-plus `compress_data.py` / `utils.py`):
  root attr `compress=True`, `/observations/images/<cam>` a (T, L) uint8 dataset whose row t holds
  frame t's JPEG bytes zero-padded to L (the longest frame of the episode, all cameras), and
  `/compress_len` (num_cams, T) float32 (their `create_dataset` without a dtype) with each frame's
  encoded length, cameras in the order of `/observations/images`' creation.

JPEG is encoded and decoded with PyAV's FFmpeg `mjpeg` codec (no OpenCV, no Pillow). ALOHA's tools
call `cv2.imencode(image)` / `cv2.imdecode(row, 1)`, which read and return arrays in BGR order,
and feed the decoded array to the network as is: an array round-trips unchanged whatever its
channel order. We keep exactly that contract by encoding and decoding as "bgr24": our RGB frames
come back RGB from cv2.imdecode (act-plus-plus reads our files as we do), and their files decode
here to the arrays their loader trains on. (A plain image viewer shows such files, theirs and
ours, with red and blue swapped; that is the format, not a bug.)
"""

from __future__ import annotations

import functools
from fractions import Fraction

import av
import numpy as np

# 4:2:0 chroma, full-range YUV: what cv2.imencode writes by default (and libjpeg's default).
JPEG_PIX_FMT = "yuvj420p"
# By measurement (scripts/bench_storage.py, 480x640 H.264 source with sensor-like noise): quality
# 75 stores 2.4x the source video's bytes (90: 3.5x, 50 as ALOHA's recorder: 1.9x) at a mean error
# of 1.45 levels (90: 1.27, 50: 1.91), and the loader decodes ~350 samples/s per core (2 cameras).
DEFAULT_JPEG_QUALITY = 75
_FF_QP2LAMBDA = 118  # FFmpeg's lambda units per quantizer step

# libjpeg's standard luminance table (JPEG Annex K) and the table FFmpeg's mjpeg encoder scales by
# qscale / 8 (MPEG-1's default intra matrix): used only to map a libjpeg quality onto a qscale.
_LIBJPEG_LUMA = np.array([
    16, 11, 10, 16, 24, 40, 51, 61, 12, 12, 14, 19, 26, 58, 60, 55, 14, 13, 16, 24, 40, 57, 69, 56,
    14, 17, 22, 29, 51, 87, 80, 62, 18, 22, 37, 56, 68, 109, 103, 77, 24, 35, 55, 64, 81, 104, 113, 92,
    49, 64, 78, 87, 103, 121, 120, 101, 72, 92, 95, 98, 112, 100, 103, 99,
])  # fmt: skip
_MPEG1_INTRA = np.array([
    8, 16, 19, 22, 26, 27, 29, 34, 16, 16, 22, 24, 27, 29, 34, 37, 19, 22, 26, 27, 29, 34, 34, 38,
    22, 22, 26, 27, 29, 34, 37, 40, 22, 26, 27, 29, 32, 35, 40, 48, 26, 27, 29, 32, 35, 40, 48, 58,
    26, 27, 29, 34, 38, 46, 56, 69, 27, 29, 35, 38, 46, 56, 69, 83,
])  # fmt: skip


# ---------------------------------------------------------------------------------------------
# resize


def parse_image_size(value: str | tuple[int, int] | list[int] | None) -> tuple[int, int] | None:
    """"240x320" / (240, 320) / None -> (H, W) or None; anything else is a ValueError."""
    if value is None:
        return None
    if isinstance(value, str):
        parts = value.lower().replace(",", "x").split("x")
        try:
            size = tuple(int(p) for p in parts)
        except ValueError:
            size = ()
    else:
        size = tuple(int(v) for v in value)
    if len(size) != 2 or min(size) < 1:
        raise ValueError(f"image_size must be HEIGHTxWIDTH, both positive (e.g. 240x320), got {value!r}")
    return size  # type: ignore[return-value]


def area_weights(n_in: int, n_out: int) -> np.ndarray:
    """(n_out, n_in) box-filter weights: each output pixel averages the input it covers."""
    scale = n_in / n_out
    w = np.zeros((n_out, n_in), dtype=np.float64)
    for o in range(n_out):
        lo, hi = o * scale, (o + 1) * scale
        for i in range(int(np.floor(lo)), min(n_in, int(np.ceil(hi)))):
            w[o, i] = min(hi, i + 1) - max(lo, i)
    return (w / w.sum(axis=1, keepdims=True)).astype(np.float32)


@functools.lru_cache(maxsize=16)
def _band(n_in: int, n_out: int) -> tuple[np.ndarray, np.ndarray]:
    """area_weights x n_out as integers, as a band: (K, n_out) input indices and integer weights,
    K = most inputs per output. Output o covers [o n_in / n_out, (o+1) n_in / n_out), so input i's
    overlap times n_out is min((o+1) n_in, (i+1) n_out) - max(o n_in, i n_out): an integer, and the
    weights of an output sum to n_in. Integers make the resize exact (no float rounding decides a
    .5), and the band costs K multiply-adds per output instead of the dense product's n_in (the
    dense einsum took 77 ms per 480x640 frame)."""
    o = np.arange(n_out)[:, None]
    i = np.arange(n_in)[None, :]
    dense = np.minimum((o + 1) * n_in, (i + 1) * n_out) - np.maximum(o * n_in, i * n_out)
    dense = np.maximum(dense, 0)  # (n_out, n_in)
    first = np.argmax(dense > 0, axis=1)  # (n_out,) first input each output covers
    span = int((dense > 0).sum(axis=1).max())
    idx = first[None, :] + np.arange(span)[:, None]  # (K, n_out)
    inside = idx < n_in
    idx = np.where(inside, idx, n_in - 1)
    weights = np.where(inside, np.take_along_axis(dense.T, idx, axis=0), 0)
    return idx, weights


def _resize_axis(x: np.ndarray, axis: int, n_out: int) -> np.ndarray:
    """Integer weighted sums along `axis` (values grow by a factor n_in)."""
    idx, weights = _band(x.shape[axis], n_out)
    shape = [1] * x.ndim
    shape[axis] = n_out
    out = np.take(x, idx[0], axis=axis) * weights[0].reshape(shape).astype(x.dtype)
    for k in range(1, len(idx)):
        out += np.take(x, idx[k], axis=axis) * weights[k].reshape(shape).astype(x.dtype)
    return out


def _round_div(acc: np.ndarray, k: int) -> np.ndarray:
    """acc / k rounded half to even (as np.rint), exactly, as uint8."""
    q = acc // k
    r2 = 2 * (acc - q * k)
    q += (r2 > k) | ((r2 == k) & (q & 1 == 1))
    return q.astype(np.uint8)


def _resize_integer(frames: np.ndarray, fy: int, fx: int) -> np.ndarray:
    """Whole-number factors (480x640 -> 240x320): block sums. Same result as the band, several
    times faster: rows are summed as whole contiguous rows, then neighbouring pixels through a
    reshape (no gathers, no multiplies)."""
    k = fy * fx
    dtype = np.uint16 if k * 255 < 2**16 else np.uint32
    n, h, w, c = frames.shape
    rows = frames[:, 0::fy].astype(dtype)  # (n, h/fy, w, c)
    for a in range(1, fy):
        rows += frames[:, a::fy]
    cols = rows.reshape(n, h // fy, w // fx, fx, c)
    acc = cols[:, :, :, 0].copy()  # (n, H, W, c)
    for b in range(1, fx):
        acc += cols[:, :, :, b]
    return _round_div(acc, k)


def resize_area(frames: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """(N, H, W, 3) uint8 -> (N, h, w, 3) uint8 by area averaging, exactly (rounded half to even).

    Each output pixel is the mean of the input area it covers (fractional pixels weighted by the
    covered fraction), as OpenCV's INTER_AREA when shrinking. Integer arithmetic throughout, so
    the result is the exact rational mean rounded: conversion and inference (ACTRunner) agree
    bit for bit, and so does any exact reference. Separable: width, then height."""
    n, h, w, _ = frames.shape
    size = (int(size[0]), int(size[1]))
    if (h, w) == size:
        return frames
    if h % size[0] == 0 and w % size[1] == 0:
        return _resize_integer(frames, h // size[0], w // size[1])
    den_y = h if h != size[0] else 1
    den_x = w if w != size[1] else 1
    dtype = np.int32 if 255 * den_y * den_x < 2**31 else np.int64
    acc = frames.astype(dtype)
    if w != size[1]:
        acc = _resize_axis(acc, 2, size[1])
    if h != size[0]:
        acc = _resize_axis(acc, 1, size[0])
    return _round_div(acc, den_y * den_x)


# ---------------------------------------------------------------------------------------------
# JPEG


def jpeg_qscale(quality: int) -> int:
    """libjpeg quality 1..100 (what cv2, PIL and aloha's recorder take) -> FFmpeg mjpeg qscale 1..31.

    FFmpeg's encoder has one quantizer scale instead of libjpeg's quality-scaled tables; we pick the
    qscale whose luminance table has the mean of libjpeg's table at `quality` (90 -> 3, 75 -> 7,
    50 -> 14, >= 95 -> 1). Sizes and errors are close to, not equal to, libjpeg's at that quality;
    the measured error is what the tests and the README state.
    """
    if not 1 <= int(quality) <= 100:
        raise ValueError(f"jpeg_quality must be in 1..100, got {quality!r}")
    quality = int(quality)
    scale = 5000 / quality if quality < 50 else 200 - 2 * quality  # libjpeg's jpeg_quality_scaling
    table = np.clip((_LIBJPEG_LUMA * scale + 50) // 100, 1, 255)
    return int(np.clip(round(8 * table.mean() / _MPEG1_INTRA.mean()), 1, 31))


class JpegEncoder:
    """Encodes (H, W, 3) uint8 frames of one fixed size to standalone JPEG images (1-D uint8).

    One FFmpeg context per stream of frames (opening one costs more than encoding a frame).
    """

    def __init__(self, height: int, width: int, quality: int = DEFAULT_JPEG_QUALITY) -> None:
        self.height, self.width = int(height), int(width)
        self.qscale = jpeg_qscale(quality)
        ctx = av.CodecContext.create("mjpeg", "w")
        ctx.width, ctx.height = self.width, self.height
        ctx.pix_fmt = JPEG_PIX_FMT
        ctx.time_base = Fraction(1, 30)  # required to open; meaningless for single images
        # A constant quantizer: qmin = qmax pins FFmpeg's rate control to it; lmin lets it reach 1
        # (the default lambda floor is qscale 2).
        ctx.qmin = ctx.qmax = self.qscale
        ctx.options = {"lmin": str(_FF_QP2LAMBDA)}
        ctx.thread_count = 1  # one frame at a time; callers parallelize by process
        ctx.open()
        self._ctx = ctx

    def encode(self, frame: np.ndarray) -> np.ndarray:
        """(H, W, 3) uint8 -> (L,) uint8 JPEG bytes (SOI ... EOI)."""
        if frame.shape != (self.height, self.width, 3) or frame.dtype != np.uint8:
            raise ValueError(
                f"frame must be ({self.height}, {self.width}, 3) uint8, got {frame.shape} {frame.dtype}"
            )
        # bgr24 in, as cv2.imencode reads its input: see the module docstring.
        vf = av.VideoFrame.from_ndarray(np.ascontiguousarray(frame), format="bgr24").reformat(
            format=JPEG_PIX_FMT
        )
        packets = self._ctx.encode(vf)
        if len(packets) != 1:  # mjpeg is intra-only with no delay: one packet per frame
            raise RuntimeError(f"mjpeg encoder returned {len(packets)} packets for one frame")
        return np.frombuffer(bytes(packets[0]), dtype=np.uint8)


class JpegDecoder:
    """Decodes JPEG images (bytes or 1-D uint8, trailing zero padding allowed) to (H, W, 3) uint8."""

    def __init__(self) -> None:
        ctx = av.CodecContext.create("mjpeg", "r")
        ctx.thread_count = 1  # frame threads would only delay each frame; workers are processes
        self._ctx = ctx

    def decode(self, data: bytes | np.ndarray) -> np.ndarray:
        """The array cv2.imdecode(data, 1) returns (see the module docstring on channel order)."""
        try:
            frames = self._ctx.decode(av.Packet(data))
        except av.FFmpegError as err:
            raise ValueError(f"not a decodable JPEG image ({err})") from err
        if len(frames) != 1:
            raise ValueError(f"not a decodable JPEG image ({len(frames)} frames decoded)")
        return frames[0].to_ndarray(format="bgr24")
