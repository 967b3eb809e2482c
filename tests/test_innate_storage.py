"""Frame storage for Innate / ACT HDF5 inputs: the importer writes JPEG rows (ALOHA's layout) and
resized frames as the LeRobot converter does, fingerprints the options, and its size estimate
covers what it writes (the training CLI's default is --storage jpeg, so every Innate run takes
this path).

Frames are smooth gradients with a moving bar (like camera images, unlike noise, which JPEG
cannot compress), written in the plain upstream-ACT layout (RGB, no colour swap).
"""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np

from act.data import EpisodeFrames, read_episode_index
from lerobot_bridge.innate import conversion_fingerprint, convert_innate, estimate_conversion_bytes

H, W, T = 48, 64, 12
CAMERAS = ["top", "wrist"]


def smooth_frames(t: int, shift: int) -> np.ndarray:
    y, x = np.mgrid[0:H, 0:W].astype(np.float64)
    frames = np.empty((t, H, W, 3), np.uint8)
    for i in range(t):
        bump = 90 * np.exp(-((x - 5 * i) ** 2) / 40)  # a soft blob moving right: frames differ
        frames[i, ..., 0] = np.clip(x * 2 + bump, 0, 255)
        frames[i, ..., 1] = np.clip(y * 3 + shift, 0, 255)
        frames[i, ..., 2] = np.clip(128 + bump / 2, 0, 255)
    return frames


def write_act_folder(root: Path, episodes: int = 2) -> dict[int, dict[str, np.ndarray]]:
    root.mkdir(parents=True)
    rng = np.random.default_rng(0)
    src = {}
    for i in range(episodes):
        frames = {cam: smooth_frames(T, 40 * c + i) for c, cam in enumerate(CAMERAS)}
        with h5py.File(root / f"episode_{i}.hdf5", "w") as f:
            f.attrs["sim"] = True
            f["observations/qpos"] = rng.normal(size=(T, 4)).astype(np.float32)
            f["observations/qvel"] = np.zeros((T, 4), np.float32)
            f["action"] = rng.normal(size=(T, 4)).astype(np.float32)
            for cam in CAMERAS:
                f[f"observations/images/{cam}"] = frames[cam]
        src[i] = frames
    return src


def decoded(path: Path) -> dict[str, np.ndarray]:
    """Every frame of every camera as the training loader decodes it."""
    index = read_episode_index([path], CAMERAS)
    ep = EpisodeFrames(path, CAMERAS)
    try:
        shape = index.image_shapes[CAMERAS[0]]
        return {cam: np.stack([ep.frame(c, t, shape) for t in range(ep.length)])
                for c, cam in enumerate(CAMERAS)}
    finally:
        ep.close()


def folder_bytes(out: Path) -> int:
    return sum(p.stat().st_size for p in out.glob("episode_*.hdf5"))


def test_jpeg_storage_round_trips_close_to_the_source_and_is_smaller(tmp_path):
    src = write_act_folder(tmp_path / "act")
    raw = convert_innate(tmp_path / "act", tmp_path / "raw", progress=False)
    jpeg = convert_innate(tmp_path / "act", tmp_path / "jpeg", storage="jpeg", jpeg_quality=90,
                          progress=False)

    for i, path in enumerate(raw.hdf5_paths):  # raw: exact
        for cam, frames in decoded(Path(path)).items():
            np.testing.assert_array_equal(frames, src[i][cam])
    for i, path in enumerate(jpeg.hdf5_paths):
        with h5py.File(path, "r") as f:
            assert bool(f.attrs["compress"]) is True  # ALOHA's marker that rows are JPEG bytes
            assert f["observations/images/top"].dtype == np.uint8 and f["observations/images/top"].ndim == 2
            assert f["compress_len"].shape == (len(CAMERAS), T)
            np.testing.assert_array_equal(f["action"][:], h5py.File(raw.hdf5_paths[i], "r")["action"][:])
        for cam, frames in decoded(Path(path)).items():
            err = np.abs(frames.astype(int) - src[i][cam].astype(int)).mean(axis=(1, 2, 3))
            to_next = np.abs(frames[:-1].astype(int) - src[i][cam][1:].astype(int)).mean(axis=(1, 2, 3))
            assert err.max() < 2.0, (cam, err)  # q90 on smooth frames: about a level
            assert (err[:-1] < to_next / 2).all(), (cam, err, to_next)  # each row is its own frame
    assert folder_bytes(tmp_path / "jpeg") < folder_bytes(tmp_path / "raw") / 2
    assert jpeg.extra["storage"] == "jpeg" and jpeg.extra["jpeg_quality"] == 90
    assert raw.extra["storage"] == "raw" and raw.extra["jpeg_quality"] is None


def test_resized_jpeg_frames_have_the_asked_size(tmp_path):
    write_act_folder(tmp_path / "act", episodes=1)
    result = convert_innate(tmp_path / "act", tmp_path / "out", storage="jpeg", image_size=(24, 32),
                            progress=False)
    frames = decoded(Path(result.hdf5_paths[0]))
    assert {cam: f.shape for cam, f in frames.items()} == {cam: (T, 24, 32, 3) for cam in CAMERAS}
    assert result.extra["image_size"] == [24, 32] and result.extra["source_image_size"] == [H, W]


def test_storage_options_enter_the_fingerprint(tmp_path):
    write_act_folder(tmp_path / "act", episodes=1)
    prints = {
        "raw": conversion_fingerprint(tmp_path / "act"),
        "jpeg75": conversion_fingerprint(tmp_path / "act", storage="jpeg", jpeg_quality=75),
        "jpeg90": conversion_fingerprint(tmp_path / "act", storage="jpeg", jpeg_quality=90),
    }
    assert len(set(prints.values())) == 3
    # raw fingerprints as before the option existed (earlier conversions stay reusable)
    assert conversion_fingerprint(tmp_path / "act", storage="raw", jpeg_quality=50) == prints["raw"]
    result = convert_innate(tmp_path / "act", tmp_path / "out", storage="jpeg", jpeg_quality=90,
                            progress=False)
    assert result.fingerprint == prints["jpeg90"]


def test_estimate_covers_what_the_importer_writes(tmp_path):
    write_act_folder(tmp_path / "act")
    for name, options in {"raw": {}, "jpeg": {"storage": "jpeg"},
                          "small": {"storage": "jpeg", "image_size": (24, 32)}}.items():
        estimate = estimate_conversion_bytes(tmp_path / "act", **options)
        convert_innate(tmp_path / "act", tmp_path / name, progress=False, **options)
        written = folder_bytes(tmp_path / name)
        assert written <= estimate, (name, written, estimate)
        assert estimate < 4 * written + 2 * 32 * 1024, (name, written, estimate)  # an estimate, not a guess
    assert estimate_conversion_bytes(tmp_path / "act") == 2 * T * (2 * H * W * 3 + 4 * 12) + 2 * 32 * 1024


def test_fingerprint_survives_a_move_but_not_a_new_importer(tmp_path, monkeypatch):
    """A skill moved or mounted elsewhere keeps its conversion (paths inside the folder, not
    absolute ones, are fingerprinted); a new importer version makes it reconvert."""
    import os
    import shutil

    from lerobot_bridge import innate

    write_act_folder(tmp_path / "act", episodes=1)
    before = conversion_fingerprint(tmp_path / "act")
    moved = tmp_path / "mounted" / "elsewhere"
    moved.parent.mkdir()
    os.rename(tmp_path / "act", moved)  # a move keeps sizes and mtimes
    assert conversion_fingerprint(moved) == before
    shutil.copytree(moved, tmp_path / "copy", copy_function=shutil.copy2)  # cp -p: mtimes kept
    assert conversion_fingerprint(tmp_path / "copy") == before
    monkeypatch.setattr(innate, "IMPORTER_VERSION", innate.IMPORTER_VERSION + "-next")
    assert conversion_fingerprint(moved) != before


def test_bridge_cli_gives_an_innate_skill_every_frame_option(tmp_path):
    """`python -m lerobot_bridge SKILL OUT --storage jpeg --jpeg_quality 90 --image_size 24x32` on
    an Innate folder: the options reach the importer (issue 13: every input kind, both CLIs; the
    training CLI's path is tests/test_cli.py's)."""
    import json

    from lerobot_bridge.__main__ import main as bridge_main

    src = write_act_folder(tmp_path / "act", episodes=1)
    code = bridge_main([str(tmp_path / "act"), str(tmp_path / "out"), "--storage", "jpeg",
                        "--jpeg_quality", "90", "--image_size", "24x32"])
    assert code == 0
    conversion = json.loads((tmp_path / "out" / "conversion.json").read_text())
    assert conversion["extra"]["storage"] == "jpeg" and conversion["extra"]["jpeg_quality"] == 90
    assert conversion["extra"]["image_size"] == [24, 32]
    frames = decoded(tmp_path / "out" / "episode_0.hdf5")
    with h5py.File(tmp_path / "out" / "episode_0.hdf5", "r") as f:
        assert bool(f.attrs["compress"]) is True
    # area-averaged halves of the source, then JPEG at q90: close to the 2x2 box means
    box = src[0]["top"].reshape(T, 24, 2, 32, 2, 3).astype(float).mean(axis=(2, 4))
    err = np.abs(frames["top"] - box).mean(axis=(1, 2, 3))
    to_next = np.abs(frames["top"][:-1] - box[1:]).mean(axis=(1, 2, 3))
    assert err.max() < 4.0, err  # measured 2.6 on average: 24x32 leaves JPEG few pixels per block
    assert (err[:-1] < to_next).all(), (err, to_next)
