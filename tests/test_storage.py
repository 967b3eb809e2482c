"""Frame storage modes (issue 16): raw, JPEG in ALOHA's compressed layout, resize at conversion.

Each mode round-trips through the bridge and the loader, files in ALOHA's layout (written here
the way aloha's recorder and act-plus-plus' compress_data.py write them) read in our loader,
ACTRunner resizes frames to the trained size, and a few training steps run on each mode.
"""

from __future__ import annotations

import math
import shutil
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch

from act.act_policy import ACTPolicy
from act.config import ACTConfig
from act.data import (
    ACTEpisodeDataset,
    EpisodeFrames,
    EpochBatchSampler,
    make_loader,
    read_all_qpos_action,
    read_episode_index,
    to_device,
)
from act.policy import ACTRunner
from act.stats import compute_stats
from lerobot_bridge.convert import conversion_fingerprint, convert_dataset, estimate_conversion_bytes
from lerobot_bridge.errors import DatasetError
from lerobot_bridge.frame_codec import JpegDecoder, JpegEncoder, jpeg_qscale, parse_image_size, resize_area
from lerobot_bridge.hdf5_writer import EpisodeWriter
from lerobot_bridge.synthetic import frame_code_image, read_frame_code

FIXTURES = Path(__file__).parent / "data" / "lerobot"
SOURCE = FIXTURES / "so100_v30_video"  # real lerobot-written v3.0, 2 cameras 72x96, 5 episodes
# Measured on this fixture (real camera frames, 72x96) at quality 90 (FFmpeg qscale 3): mean
# |JPEG - raw| per frame 1.67 levels on average, 1.87 at most (quality 75: 2.25 / 2.68; 50: 3.30 /
# 3.94). The bound leaves room for other FFmpeg builds.
JPEG_MAE_BOUND = 3.0

MODES = {
    "raw": {"storage": "raw"},
    "jpeg": {"storage": "jpeg", "jpeg_quality": 90},
    "raw_resized": {"storage": "raw", "image_size": "36x48"},
    "jpeg_resized": {"storage": "jpeg", "jpeg_quality": 90, "image_size": (36, 48)},
}


def reference_area_resize(frames: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Exact area averaging, computed another way: split every pixel into H/g x W/g' cells
    (np.repeat; g = gcd of the input and output sizes), so each output pixel is the plain mean of
    an h/g x w/g' block of cells."""
    n, h, w, c = frames.shape
    gy, gx = math.gcd(h, size[0]), math.gcd(w, size[1])
    big = np.repeat(np.repeat(frames.astype(np.int64), size[0] // gy, axis=1), size[1] // gx, axis=2)
    sums = big.reshape(n, size[0], h // gy, size[1], w // gx, c).sum(axis=(2, 4))
    return np.rint(sums / ((h // gy) * (w // gx))).astype(np.uint8)  # rint: half to even


@pytest.fixture(scope="module")
def converted(tmp_path_factory) -> dict[str, object]:
    """The fixture converted once per storage mode (one worker: in-process, quick)."""
    root = tmp_path_factory.mktemp("storage")
    return {
        name: convert_dataset(SOURCE, root / name, workers=1, progress=False, **opts)
        for name, opts in MODES.items()
    }


def all_frames(path: Path, cameras: list[str]) -> dict[str, np.ndarray]:
    ep = EpisodeFrames(path, cameras)
    try:
        index = read_episode_index([path], cameras)
        shape = index.image_shapes[cameras[0]]
        return {
            cam: np.stack([ep.frame(c, t, shape) for t in range(ep.length)]) for c, cam in enumerate(cameras)
        }
    finally:
        ep.close()


# ---------------------------------------------------------------------------------------------
# codec units


def test_resize_area_equals_an_independent_reference():
    rng = np.random.default_rng(0)
    frames = rng.integers(0, 256, (2, 480, 640, 3), dtype=np.uint8)
    np.testing.assert_array_equal(resize_area(frames, (240, 320)), reference_area_resize(frames, (240, 320)))
    small = rng.integers(0, 256, (3, 12, 18, 3), dtype=np.uint8)
    for size in ((6, 9), (4, 6), (5, 7), (12, 5)):
        got, ref = resize_area(small, size), reference_area_resize(small, size)
        if small.shape[1] % size[0] == 0 and small.shape[2] % size[1] == 0:
            np.testing.assert_array_equal(got, ref)  # whole-number factors: exact integer path
        else:  # fractional weights in float32: only a value within float error of .5 may round the other way
            diff = np.abs(got.astype(int) - ref)
            assert diff.max() <= 1 and (diff == 0).mean() > 0.99
    assert resize_area(small, (12, 18)) is small


def test_parse_image_size_and_quality_mapping():
    assert parse_image_size("240x320") == (240, 320) and parse_image_size([224, 224]) == (224, 224)
    assert parse_image_size(None) is None
    for bad in ("240", "0x320", "ax3", (1, 2, 3)):
        with pytest.raises(ValueError, match="image_size"):
            parse_image_size(bad)
    # libjpeg quality -> FFmpeg qscale through the luminance table's mean
    assert [jpeg_qscale(q) for q in (50, 75, 90, 95)] == [14, 7, 3, 1]
    with pytest.raises(ValueError):
        jpeg_qscale(0)


def test_jpeg_codec_round_trip_keeps_the_array_channel_order():
    """cv2.imencode/imdecode semantics: the array comes back in its own channel order."""
    frame = frame_code_image(37, 5, 48, 96)
    frame[20:, :, 0], frame[20:, :, 2] = 250, 10  # strongly red in RGB terms
    encoded = JpegEncoder(48, 96, 90).encode(frame)
    assert encoded[:2].tobytes() == b"\xff\xd8" and encoded[-2:].tobytes() == b"\xff\xd9"
    padded = np.concatenate([encoded, np.zeros(300, np.uint8)])  # rows are zero-padded
    decoded = JpegDecoder().decode(padded)
    # sharp colour edges and black/white code blocks: 4:2:0 chroma bleeds more than on camera frames
    assert decoded.shape == frame.shape and np.abs(decoded.astype(int) - frame).mean() < 2 * JPEG_MAE_BOUND
    assert decoded[30:, :, 0].mean() > 200 and decoded[30:, :, 2].mean() < 60
    assert read_frame_code(decoded) == (37, 5)


# ---------------------------------------------------------------------------------------------
# conversion: each mode round-trips


def test_each_storage_mode_round_trips(converted):
    raw = converted["raw"]
    cams = raw.camera_names
    for name, result in converted.items():
        assert result.extra["storage"] == MODES[name]["storage"]
        # in the fingerprinted options unless the default (raw at the source size)
        assert ("storage" in result.extra["options"]) == (name != "raw")
        size = parse_image_size(MODES[name].get("image_size"))
        assert result.extra["image_size"] == (list(size) if size else None)
        assert result.extra["source_image_size"] == [72, 96]
        assert result.extra["jpeg_quality"] == (90 if name.startswith("jpeg") else None)
        assert [e.frames_out for e in result.episodes] == [e.frames_out for e in raw.episodes]
    errors = []
    for raw_path, *others in zip(*(converted[n].hdf5_paths for n in MODES), strict=True):
        raw_frames = all_frames(raw_path, cams)
        jpeg, raw_small, jpeg_small = (all_frames(p, cams) for p in others)
        with h5py.File(others[0]) as f:
            assert bool(f.attrs["compress"]) and f["/observations/images"][cams[0]].ndim == 2
        with h5py.File(others[1]) as f:
            assert list(f.attrs["image_size"]) == [36, 48] and "compress" not in f.attrs
        for cam in cams:
            assert jpeg[cam].shape == raw_frames[cam].shape
            err = np.abs(jpeg[cam].astype(int) - raw_frames[cam]).mean(axis=(1, 2, 3))
            errors.extend(err.tolist())
            expected_small = reference_area_resize(raw_frames[cam], (36, 48))
            np.testing.assert_array_equal(raw_small[cam], expected_small)  # resize = reference
            assert np.abs(jpeg_small[cam].astype(int) - expected_small).mean() < JPEG_MAE_BOUND
    assert max(errors) < JPEG_MAE_BOUND, f"JPEG q90 mean abs error per frame up to {max(errors):.2f}"


def test_storage_options_are_fingerprinted_and_checked(converted, tmp_path):
    fps = {name: result.fingerprint for name, result in converted.items()}
    assert len(set(fps.values())) == len(MODES)  # a changed option reconverts
    assert conversion_fingerprint(SOURCE, storage="jpeg", jpeg_quality=90) == fps["jpeg"]
    assert conversion_fingerprint(SOURCE, storage="jpeg", jpeg_quality=50) != fps["jpeg"]
    # with raw frames the JPEG quality changes nothing, so it does not reconvert either
    assert conversion_fingerprint(SOURCE, storage="raw", jpeg_quality=50) == fps["raw"]
    assert conversion_fingerprint(SOURCE, storage="raw", image_size=[36, 48]) == fps["raw_resized"]
    bad_options = (
        ({"storage": "png"}, "storage must be one of"),
        ({"storage": "jpeg", "jpeg_quality": 0}, "jpeg_quality"),
        ({"image_size": "36"}, "image_size"),
    )
    for bad, match in bad_options:
        with pytest.raises(DatasetError, match=match):
            convert_dataset(SOURCE, tmp_path / "bad", workers=1, progress=False, **bad)


def test_estimate_covers_what_conversion_writes(converted):
    for name, result in converted.items():
        estimate = estimate_conversion_bytes(SOURCE, **MODES[name])
        written = result.extra["bytes_written"]
        assert written == sum(p.stat().st_size for p in result.hdf5_paths)
        # an upper bound, and not a wild one (idle trimming removes frames the estimate counts)
        assert written <= estimate <= 2.5 * written, (name, estimate, written)
    raw = estimate_conversion_bytes(SOURCE, storage="raw", episode_len=10)
    assert raw >= 5 * 10 * 2 * 72 * 96 * 3


# ---------------------------------------------------------------------------------------------
# ALOHA's layout, both directions


def write_like_aloha_recorder(path: Path, frames: dict[str, np.ndarray], contiguous: bool = False) -> None:
    """aloha scripts/record_episodes.py with COMPRESS = True (cv2.imencode replaced by the same JPEG
    encoder; the HDF5 calls as theirs); contiguous=True: act-plus-plus compress_data.py, whose image
    datasets have no chunks."""
    cams = list(frames)
    t = len(next(iter(frames.values())))
    h, w = frames[cams[0]].shape[1:3]
    enc = JpegEncoder(h, w, 50)  # their quality 50
    encoded = {c: [enc.encode(f) for f in frames[c]] for c in cams}
    compressed_len = np.array([[len(e) for e in encoded[c]] for c in cams])
    padded_size = compressed_len.max()
    with h5py.File(path, "w", rdcc_nbytes=1024**2 * 2) as root:
        root.attrs["sim"] = False
        root.attrs["compress"] = True
        obs = root.create_group("observations")
        image = obs.create_group("images")
        for cam in cams:
            if contiguous:
                image.create_dataset(cam, (t, padded_size), dtype="uint8")
            else:
                image.create_dataset(cam, (t, padded_size), dtype="uint8", chunks=(1, padded_size))
            rows = np.zeros((t, padded_size), np.uint8)
            for i, e in enumerate(encoded[cam]):
                rows[i, : len(e)] = e
            root[f"/observations/images/{cam}"][...] = rows
        obs.create_dataset("qpos", (t, 14), dtype="f4")  # their default dtype, spelled out
        obs.create_dataset("qvel", (t, 14), dtype="f4")
        obs.create_dataset("effort", (t, 14), dtype="f4")
        root.create_dataset("action", (t, 14), dtype="f4")
        root["/observations/qpos"][...] = np.arange(t * 14).reshape(t, 14) / 100
        root["/action"][...] = -np.arange(t * 14).reshape(t, 14) / 100
        root.create_dataset("compress_len", (len(cams), t), dtype="f4")
        root["/compress_len"][...] = compressed_len


@pytest.mark.parametrize("contiguous", [False, True])
def test_aloha_recorder_files_read_in_our_loader(tmp_path, contiguous):
    cams = ["cam_high", "cam_left_wrist"]
    frames = {c: np.stack([frame_code_image(t, k, 48, 96) for t in range(7)]) for k, c in enumerate(cams)}
    path = tmp_path / "episode_0.hdf5"
    write_like_aloha_recorder(path, frames, contiguous)
    index = read_episode_index([path], cams)
    assert index.lengths == [7] and index.image_shapes == {c: (48, 96, 3) for c in cams}
    stats = compute_stats(*read_all_qpos_action([path]))
    ds = ACTEpisodeDataset([path], cams, chunk_size=4, stats=stats)
    batch = ds.__getitems__([(0, 3), (0, 6)])
    assert batch["images"].shape == (2, 2, 48, 96, 3)
    for i, t in enumerate((3, 6)):
        for c, cam in enumerate(cams):
            got = batch["images"][i, c].numpy()
            assert read_frame_code(got) == (t, c)
            assert np.abs(got.astype(int) - frames[cam][t]).mean() < 2 * JPEG_MAE_BOUND  # quality 50
    assert batch["is_pad"][1].tolist() == [False, True, True, True]


def test_our_jpeg_files_have_alohas_layout_and_read_like_act_plus_plus(converted):
    result = converted["jpeg"]
    cams = result.camera_names
    path = result.hdf5_paths[0]
    ours = all_frames(path, cams)
    with h5py.File(path, "r") as root:
        assert root.attrs.get("compress", False)
        lengths = root["/compress_len"]
        t = root["/action"].shape[0]
        assert lengths.shape == (len(cams), t) and lengths.dtype == np.float32
        assert list(lengths.attrs["camera_names"]) == cams
        padded = int(lengths[()].max())
        for c, cam in enumerate(cams):
            rows = root[f"/observations/images/{cam}"]
            assert rows.shape == (t, padded) and rows.dtype == np.uint8 and rows.chunks == (1, padded)
            for ts in range(t):
                # act-plus-plus utils.py: root[f'/observations/images/{cam}'][ts], then cv2.imdecode(row, 1)
                row = root[f"/observations/images/{cam}"][ts]
                n = int(lengths[c, ts])
                assert row[:2].tobytes() == b"\xff\xd8" and row[n - 2 : n].tobytes() == b"\xff\xd9"
                assert not row[n:].any()  # zero padding after the image
                np.testing.assert_array_equal(JpegDecoder().decode(row), ours[cam][ts])


def test_writer_rejects_unknown_storage(tmp_path):
    with pytest.raises(ValueError, match="storage"):
        EpisodeWriter(tmp_path / "e.hdf5", 3, storage="png")


def test_jpeg_writer_spools_to_disk_and_leaves_nothing_behind(tmp_path, converted):
    """Encoded frames wait in an anonymous file (no name in the folder), not in memory."""
    frames = np.stack([frame_code_image(t, 0, 48, 96) for t in range(4)])
    with pytest.raises(RuntimeError, match="boom"):
        with EpisodeWriter(tmp_path / "episode_0.hdf5", 4, storage="jpeg", background=True) as w:
            w.write_lowdim(np.zeros((4, 2)), np.zeros((4, 2)))
            w.append_images("a", frames)
            w.append_images("b", frames[:2])
            raise RuntimeError("boom")
    assert list(tmp_path.iterdir()) == []
    out = Path(converted["jpeg"].output_dir)
    assert sorted(p.name for p in out.iterdir()) == ["conversion.json"] + [
        f"episode_{i}.hdf5" for i in range(len(converted["jpeg"].episodes))
    ]


# ---------------------------------------------------------------------------------------------
# inference and training on each mode


def tiny_config(**overrides) -> ACTConfig:
    base = dict(state_dim=6, action_dim=6, camera_names=["front", "wrist"], chunk_size=4, hidden_dim=32,
                dim_feedforward=64, nheads=4, enc_layers=1, dec_layers=1, latent_dim=8)
    base.update(overrides)
    return ACTConfig(**base)


STATS = {k: np.zeros(6, np.float32) for k in ("qpos_mean", "action_mean")} | {
    k: np.ones(6, np.float32) for k in ("qpos_std", "action_std")
}


def test_runner_resizes_frames_to_the_trained_size(tmp_path):
    torch.manual_seed(0)
    cfg = tiny_config(image_size=[24, 32])
    cfg.save_json(tmp_path / "policy_config.json")
    assert ACTConfig.load_json(tmp_path / "policy_config.json").image_size == [24, 32]
    policy = ACTPolicy(cfg).eval()
    runner = ACTRunner(policy, STATS)
    plain = ACTRunner(policy, STATS)
    plain.image_size = None  # a config from before image_size: frames used as given
    rng = np.random.default_rng(0)
    qpos = rng.normal(size=6).astype(np.float32)
    big = {c: rng.integers(0, 256, (48, 64, 3), dtype=np.uint8) for c in cfg.camera_names}
    small = {c: reference_area_resize(f[None], (24, 32))[0] for c, f in big.items()}
    np.testing.assert_array_equal(runner.predict_chunk(qpos, big), plain.predict_chunk(qpos, small))
    np.testing.assert_array_equal(runner.predict_chunk(qpos, small), plain.predict_chunk(qpos, small))
    assert not np.array_equal(plain.predict_chunk(qpos, big), plain.predict_chunk(qpos, small))
    assert ACTRunner(ACTPolicy(tiny_config()).eval(), STATS).image_size is None


@pytest.mark.parametrize("mode", list(MODES))
def test_training_steps_and_runner_on_each_mode(converted, mode):
    """The loader feeds the model for a few optimizer steps (one worker process for JPEG: the
    decoding happens there), and ACTRunner runs on the mode's frames."""
    result = converted[mode]
    paths = [str(p) for p in result.hdf5_paths]
    index = read_episode_index(paths, result.camera_names)
    h, w, _ = index.image_shapes[result.camera_names[0]]
    assert (h, w) == ((36, 48) if "resized" in mode else (72, 96))
    stats = compute_stats(*read_all_qpos_action(paths))
    torch.manual_seed(0)
    cfg = tiny_config(camera_names=result.camera_names, image_size=[h, w])
    policy = ACTPolicy(cfg)
    opt = torch.optim.AdamW(policy.parameters(), lr=1e-3)
    dataset = ACTEpisodeDataset(paths, result.camera_names, cfg.chunk_size, stats)
    sampler = EpochBatchSampler(list(range(len(paths))), index.lengths, [4], 0, seed=0)
    sampler.set_epoch(0, num_steps=3)
    workers = 1 if mode.startswith("jpeg") else 0
    losses = []
    for batch in make_loader(dataset, sampler, workers, pin_memory=False):
        b = to_device(batch, torch.device("cpu"))
        assert b["images"].shape == (4, 2, 3, h, w) and b["images"].dtype == torch.uint8
        loss = policy(b["qpos"], b["images"], b["action"], b["is_pad"])["loss"]
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert len(losses) == 3 and np.isfinite(losses).all()
    runner = ACTRunner(policy.eval(), stats)
    frames = all_frames(Path(paths[0]), result.camera_names)
    ep = EpisodeFrames(paths[0], result.camera_names)
    action = runner.act(ep.qpos[0], {c: frames[c][0] for c in result.camera_names})
    ep.close()
    assert action.shape == (6,) and np.isfinite(action).all()


def test_fixture_copy_is_untouched(tmp_path):
    """Conversion reads the source only (a copy converts to the same fingerprint)."""
    copy = tmp_path / "src"
    shutil.copytree(SOURCE, copy)
    assert conversion_fingerprint(copy, storage="jpeg") != conversion_fingerprint(copy, storage="raw")


@pytest.mark.parametrize("storage", ["raw", "jpeg"])
def test_reused_batch_buffers_never_overwrite_a_batch_still_held(tmp_path, storage):
    """In-process batches come from reused buffers (BatchPool); keeping every batch (list(loader))
    or a view of one must still give each its own frames."""
    paths = []
    for e in range(2):
        path = tmp_path / f"episode_{e}.hdf5"
        with EpisodeWriter(path, 6, storage=storage) as w:
            w.write_lowdim(np.zeros((6, 2)), np.zeros((6, 2)))
            w.append_images("a", np.stack([frame_code_image(t, e, 24, 96) for t in range(6)]))
        paths.append(path)
    stats = {k: np.zeros(2, np.float32) for k in ("qpos_mean", "action_mean")} | {
        k: np.ones(2, np.float32) for k in ("qpos_std", "action_std")
    }
    dataset = ACTEpisodeDataset(paths, ["a"], chunk_size=3, stats=stats)
    sampler = EpochBatchSampler([0, 1], [6, 6], [3], 0, seed=1)
    sampler.set_epoch(0, num_steps=6)
    keys = list(sampler)
    kept = list(make_loader(dataset, sampler, 0, pin_memory=False))  # every batch held at once
    views = []
    for batch in make_loader(dataset, sampler, 0, pin_memory=False):
        views.append(to_device(batch, torch.device("cpu"))["images"])  # only a permuted view kept
    for batch, view, expected in zip(kept, views, keys, strict=True):
        for i, (e, t) in enumerate(expected):
            assert read_frame_code(batch["images"][i, 0].numpy()) == (t, e)
            assert read_frame_code(view[i, 0].permute(1, 2, 0).numpy()) == (t, e)
    # batches dropped as soon as used (the training loop) do reuse the buffers: two alternate
    pointers = {batch["images"].data_ptr() for batch in make_loader(dataset, sampler, 0, pin_memory=False)}
    assert len(pointers) <= 2
