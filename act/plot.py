"""Loss curves as a PNG, drawn with numpy and written with zlib (no matplotlib at runtime).

One image, one panel per metric (l1, kl, loss), train and validation curves in each, and a last
panel with the deploy metric: validation L1 of the action a robot runs (z = 0) against the
same L1 of always predicting the training mean action. A falling loss says little (the KL term
alone can halve it); a deploy curve that stays above the baseline is a policy that learned nothing
useful, and the panel says so. A log y axis when every value is positive (losses span decades),
the step range on the x axis. Text uses a built-in 3x5 pixel font scaled 2x.
"""

from __future__ import annotations

import math
import struct
import zlib
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from lerobot_bridge.atomic_io import atomic_write_bytes

Series = tuple[Sequence[float], Sequence[float]]  # (steps, values)

TRAIN_COLOR = (31, 119, 180)
VAL_COLOR = (255, 127, 14)
DEPLOY_COLOR = (44, 160, 44)
BASELINE_COLOR = (214, 39, 40)
WARN_COLOR = BASELINE_COLOR
DEPLOY_PANEL = "deploy l1 (z=0)"
CURVE_COLORS = {"train": TRAIN_COLOR, "val": VAL_COLOR, "deploy": DEPLOY_COLOR, "mean action": BASELINE_COLOR}
AXIS_COLOR = (60, 60, 60)
GRID_COLOR = (225, 225, 225)

# 3x5 glyphs, rows top to bottom, '#' = ink.
_FONT = {
    "0": ["###", "#.#", "#.#", "#.#", "###"], "1": [".#.", "##.", ".#.", ".#.", "###"],
    "2": ["###", "..#", "###", "#..", "###"], "3": ["###", "..#", ".##", "..#", "###"],
    "4": ["#.#", "#.#", "###", "..#", "..#"], "5": ["###", "#..", "###", "..#", "###"],
    "6": ["###", "#..", "###", "#.#", "###"], "7": ["###", "..#", ".#.", ".#.", ".#."],
    "8": ["###", "#.#", "###", "#.#", "###"], "9": ["###", "#.#", "###", "..#", "###"],
    ".": ["...", "...", "...", "...", ".#."], "-": ["...", "...", "###", "...", "..."],
    "+": ["...", ".#.", "###", ".#.", "..."], " ": ["...", "...", "...", "...", "..."],
    "e": ["...", "###", "###", "#..", "###"], "l": ["#..", "#..", "#..", "#..", "###"],
    "k": ["#.#", "#.#", "##.", "#.#", "#.#"], "o": ["...", "###", "#.#", "#.#", "###"],
    "s": ["...", ".##", ".#.", "..#", "##."], "t": [".#.", "###", ".#.", ".#.", ".##"],
    "r": ["...", "##.", "#.#", "#..", "#.."], "a": ["...", "##.", "..#", "###", "###"],
    "i": [".#.", "...", ".#.", ".#.", ".#."], "n": ["...", "##.", "#.#", "#.#", "#.#"],
    "v": ["...", "#.#", "#.#", "#.#", ".#."], "p": ["...", "###", "#.#", "###", "#.."],
    "g": ["...", "###", "#.#", "###", "##."], "(": [".#.", "#..", "#..", "#..", ".#."],
    ")": [".#.", "..#", "..#", "..#", ".#."], "_": ["...", "...", "...", "...", "###"],
    ":": ["...", ".#.", "...", ".#.", "..."], "=": ["...", "###", "...", "###", "..."],
    "d": ["..#", "..#", "###", "#.#", "###"], "y": ["#.#", "#.#", "###", "..#", "##."],
    "m": ["...", "###", "###", "#.#", "#.#"], "c": ["...", "###", "#..", "#..", "###"],
    "b": ["#..", "#..", "###", "#.#", "###"], "z": ["...", "###", ".#.", "#..", "###"],
    "h": ["#..", "#..", "###", "#.#", "#.#"], "u": ["...", "#.#", "#.#", "#.#", "###"],
    "w": ["...", "#.#", "#.#", "###", "###"], "f": [".##", "#..", "###", "#..", "#.."],
}
_SCALE = 2
_CHAR_W = 4 * _SCALE


def _text(img: np.ndarray, x: int, y: int, text: str, color=AXIS_COLOR) -> None:
    for i, ch in enumerate(text.lower()):
        glyph = _FONT.get(ch, _FONT[" "])
        for row, bits in enumerate(glyph):
            for col, bit in enumerate(bits):
                if bit == "#":
                    y0, x0 = y + row * _SCALE, x + i * _CHAR_W + col * _SCALE
                    img[max(y0, 0) : y0 + _SCALE, max(x0, 0) : x0 + _SCALE] = color


def _line(img: np.ndarray, x0: float, y0: float, x1: float, y1: float, color, width: int = 2) -> None:
    n = int(max(abs(x1 - x0), abs(y1 - y0))) + 1
    xs = np.linspace(x0, x1, n).round().astype(int)
    ys = np.linspace(y0, y1, n).round().astype(int)
    h, w = img.shape[:2]
    for dx in range(width):
        for dy in range(width):
            xx, yy = np.clip(xs + dx, 0, w - 1), np.clip(ys + dy, 0, h - 1)
            img[yy, xx] = color


def _fmt(v: float) -> str:
    if v == 0:
        return "0"
    if 1e-2 <= abs(v) < 1e4:
        return f"{v:.3g}"
    return f"{v:.0e}".replace("e-0", "e-").replace("e+0", "e")


def _color(name: str, i: int):
    return CURVE_COLORS.get(name, (TRAIN_COLOR, VAL_COLOR, DEPLOY_COLOR, BASELINE_COLOR)[i % 4])


def _panel(img: np.ndarray, x: int, y: int, w: int, h: int, title: str, curves: dict[str, Series]) -> None:
    left, right, top, bottom = 70, 12, 34, 30
    px0, px1, py0, py1 = x + left, x + w - right, y + top, y + h - bottom
    _text(img, x + left, y + 8, title)
    points = [(np.asarray(s, float), np.asarray(v, float)) for s, v in curves.values() if len(s)]
    finite = [v[np.isfinite(v)] for _, v in points]
    values = np.concatenate(finite) if finite else np.array([])
    img[py0:py1, px0] = AXIS_COLOR
    img[py1, px0:px1] = AXIS_COLOR
    if values.size == 0:
        _text(img, px0 + 10, (py0 + py1) // 2, "no data")
        return
    steps = np.concatenate([s for s, _ in points])
    sx0, sx1 = float(steps.min()), float(steps.max())
    if sx1 == sx0:
        sx1 = sx0 + 1
    log = bool(np.all(values > 0))
    f = np.log10 if log else (lambda a: a)
    vy0, vy1 = float(np.min(f(values))), float(np.max(f(values)))
    if log:
        vy0, vy1 = math.floor(vy0 * 2) / 2, math.ceil(vy1 * 2) / 2
    if vy1 - vy0 < 1e-9:
        vy0, vy1 = vy0 - 0.5, vy1 + 0.5

    def to_px(s: np.ndarray, v: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        xs = px0 + (s - sx0) / (sx1 - sx0) * (px1 - px0 - 1)
        ys = py1 - (f(v) - vy0) / (vy1 - vy0) * (py1 - py0 - 1)
        return xs, ys

    ticks = np.linspace(vy0, vy1, 5)
    for tv in ticks:
        ty = int(round(py1 - (tv - vy0) / (vy1 - vy0) * (py1 - py0 - 1)))
        img[ty, px0 + 1 : px1] = GRID_COLOR
        label = _fmt(10**tv if log else tv)
        _text(img, px0 - 6 - len(label) * _CHAR_W, ty - 5, label)
    _text(img, px0, py1 + 8, _fmt(sx0))
    end = _fmt(sx1)
    _text(img, px1 - len(end) * _CHAR_W, py1 + 8, end)
    _text(img, (px0 + px1) // 2 - 2 * _CHAR_W, py1 + 8, "step")
    for i, (name, (s, v)) in enumerate(curves.items()):
        color = _color(name, i)
        s, v = np.asarray(s, float), np.asarray(v, float)
        ok = np.isfinite(v) & (v > 0 if log else True)
        xs, ys = to_px(s[ok], v[ok])
        if len(xs) == 1:
            _line(img, xs[0] - 2, ys[0], xs[0] + 2, ys[0], color, 3)
        for i in range(len(xs) - 1):
            _line(img, xs[i], ys[i], xs[i + 1], ys[i + 1], color)
    legend_x = px1 - max(8, *(len(name) for name in curves)) * _CHAR_W
    for i, name in enumerate(curves):
        ly = y + 8 + i * 12
        color = _color(name, i)
        img[ly + 3 : ly + 6, legend_x - 16 : legend_x - 4] = color
        _text(img, legend_x, ly, name, color)
    if log:
        _text(img, x + 4, y + 8 + 14, "log")
    if title == DEPLOY_PANEL and not beats_baseline(curves):
        _text(img, x + left, y + 8 + 14, "not below mean action", WARN_COLOR)


def curves_from_metrics(rows: list[dict]) -> dict[str, dict[str, Series]]:
    """metrics.jsonl rows -> the plot's panels: l1, kl, loss (train and val) and the deploy panel.

    Train rows carry `l1`, `kl`, `loss`; validation rows `val_l1`, `val_kl`, `val_loss` and the deploy
    metric `val_l1_deploy` (z = 0) beside `val_l1_mean_action` (the constant mean-action predictor).
    """
    train = [r for r in rows if r.get("kind") == "train"]
    val = [r for r in rows if r.get("kind") == "val"]

    def series(rs: list[dict], key: str) -> Series:
        picked = [(r["step"], r[key]) for r in rs if key in r]
        return [s for s, _ in picked], [v for _, v in picked]

    panels: dict[str, dict[str, Series]] = {
        key: {"train": series(train, key), "val": series(val, f"val_{key}")} for key in ("l1", "kl", "loss")
    }
    panels[DEPLOY_PANEL] = {"deploy": series(val, "val_l1_deploy"),
                            "mean action": series(val, "val_l1_mean_action")}
    return panels


def beats_baseline(deploy_panel: dict[str, Series]) -> bool:
    """True unless the last deploy L1 is no lower than the last mean-action L1 (or there is no data)."""
    deploy, baseline = deploy_panel.get("deploy", ([], []))[1], deploy_panel.get("mean action", ([], []))[1]
    if not len(deploy) or not len(baseline):
        return True  # nothing to judge: no warning
    return bool(deploy[-1] < baseline[-1])


def render_loss_curves(panels: dict[str, dict[str, Series]], panel_size=(400, 300)) -> np.ndarray:
    """(H, W, 3) uint8 image: one panel per key of `panels` ({title: {curve name: series}})."""
    pw, ph = panel_size
    img = np.full((ph, pw * len(panels), 3), 255, dtype=np.uint8)
    for i, (title, curves) in enumerate(panels.items()):
        _panel(img, i * pw, 0, pw, ph, title, curves)
    return img


def encode_png(rgb: np.ndarray) -> bytes:
    """Minimal PNG encoder: 8-bit RGB, filter 0 on every row, one IDAT chunk."""
    assert rgb.dtype == np.uint8 and rgb.ndim == 3 and rgb.shape[2] == 3
    h, w, _ = rgb.shape
    raw = np.concatenate([np.zeros((h, 1), np.uint8), rgb.reshape(h, w * 3)], axis=1).tobytes()

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0)  # 8-bit, truecolor, no interlace
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(raw, 6)) + chunk(
        b"IEND", b""
    )


def decode_png(data: bytes) -> np.ndarray:
    """Inverse of `encode_png` (filter 0 only): for tests and for reading our own plots."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    pos, idat, w, h = 8, b"", 0, 0
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        kind, body = data[pos + 4 : pos + 8], data[pos + 8 : pos + 8 + length]
        if kind == b"IHDR":
            w, h = struct.unpack(">II", body[:8])
        elif kind == b"IDAT":
            idat += body
        pos += 12 + length
    rows = np.frombuffer(zlib.decompress(idat), np.uint8).reshape(h, 1 + w * 3)
    assert np.all(rows[:, 0] == 0), "only filter type 0 is supported"
    return rows[:, 1:].reshape(h, w, 3).copy()


def write_loss_curves(path: str | Path, history: dict[str, dict[str, Series]] | list[dict]) -> None:
    """Write the PNG atomically. history: the metrics.jsonl rows (every panel, deploy L1 against the
    mean-action baseline included), or the panels themselves {"l1": {"train": (steps, values), ...}}."""
    panels = curves_from_metrics(history) if isinstance(history, list) else history
    atomic_write_bytes(path, encode_png(render_loss_curves(panels)))
