"""The training data pipeline: split, epoch sampler, samples, loader, launch arithmetic, PNG."""

from __future__ import annotations

import math
from collections import Counter
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch

from act.data import (
    ACTEpisodeDataset,
    EpochBatchSampler,
    ListBatchSampler,
    make_loader,
    read_episode_index,
    split_episodes,
    to_device,
    validation_samples,
)
from act.distributed import UsageError, plan_launch, rank_batch_sizes
from act.plot import decode_png, encode_png, render_loss_curves, write_loss_curves
from lerobot_bridge.errors import DatasetError

CAMS = ["top", "wrist"]


def write_episode(path: Path, length: int, seed: int, h: int = 8, w: int = 12, dims=(3, 2)) -> dict:
    """An upstream-ACT episode (docs/FORMATS.md 2.1) whose every value encodes (episode seed, t)."""
    d, a = dims
    t = np.arange(length, dtype=np.float32)[:, None]
    qpos = seed * 100 + t + np.arange(d, dtype=np.float32) / 10  # (T, D)
    action = -(seed * 100 + t) - np.arange(a, dtype=np.float32) / 10  # (T, A)
    images = {}
    with h5py.File(path, "w") as f:
        f.attrs["sim"] = True
        f["/observations/qpos"] = qpos
        f["/observations/qvel"] = np.zeros_like(qpos)
        f["/action"] = action
        for c, cam in enumerate(CAMS):
            img = np.zeros((length, h, w, 3), np.uint8)
            img[:, 0, 0, 0] = np.arange(length) % 256  # frame number in the first pixel
            img[:, 0, 0, 1] = seed
            img[:, 0, 0, 2] = c
            f.create_dataset(f"/observations/images/{cam}", data=img, chunks=(1, h, w, 3))
            images[cam] = img
    return {"qpos": qpos, "action": action, "images": images}


@pytest.fixture()
def episodes(tmp_path: Path):
    lengths = [5, 9, 13, 7, 11]
    paths, contents = [], []
    for i, n in enumerate(lengths):
        p = tmp_path / f"episode_{i}.hdf5"
        contents.append(write_episode(p, n, seed=i))
        paths.append(p)
    return paths, lengths, contents


def fake_stats(d=3, a=2):
    return {
        "qpos_mean": np.full(d, 2.0, np.float32), "qpos_std": np.full(d, 4.0, np.float32),
        "action_mean": np.full(a, -1.0, np.float32), "action_std": np.full(a, 0.5, np.float32),
    }


# ---------------------------------------------------------------------------- split / validation


def test_split_is_fixed_and_keeps_a_validation_episode():
    train, val = split_episodes(5, 0.2)
    assert (len(train), len(val)) == (4, 1)
    assert sorted(train + val) == list(range(5))
    assert split_episodes(5, 0.2) == (train, val)  # no dependence on any global RNG or --seed
    np.random.seed(123)
    torch.manual_seed(7)
    assert split_episodes(5, 0.2) == (train, val)
    assert [len(x) for x in split_episodes(2, 0.2)] == [1, 1]  # >= 1 val episode with 2 episodes
    assert split_episodes(1, 0.2) == ([0], [])  # one episode: no validation
    assert [len(x) for x in split_episodes(50, 0.2)] == [40, 10]
    assert split_episodes(10, 0.0) == (list(range(10)), [])


def test_validation_samples_cover_every_val_episode_end_to_end():
    lengths = [5, 9, 13, 7, 11]
    pairs = validation_samples([1, 3], lengths, target=8)
    by_ep = {e: sorted(t for ep, t in pairs if ep == e) for e in (1, 3)}
    assert by_ep[1][0] == 0 and by_ep[1][-1] == 8 and len(by_ep[1]) == 4
    assert by_ep[3][0] == 0 and by_ep[3][-1] == 6 and len(by_ep[3]) == 4
    assert validation_samples([2], lengths, target=100) == [(2, t) for t in range(13)]  # capped at length
    assert validation_samples([], lengths) == []


# ---------------------------------------------------------------------------- sampler


def test_epoch_has_exact_global_batches_and_covers_every_train_episode():
    train_ids, lengths = [0, 2, 3, 5, 7, 8, 9], [10, 3, 4, 6, 8, 5, 7, 9, 2, 11]
    sampler = EpochBatchSampler(train_ids, lengths, [3], rank=0, seed=1)
    assert sampler.steps_per_epoch == math.ceil(7 / 3) == 3
    for epoch in range(20):
        sampler.set_epoch(epoch)
        batches = list(sampler)
        assert len(batches) == 3 and all(len(b) == 3 for b in batches)
        counts = Counter(e for b in batches for e, _ in b)
        assert set(counts) == set(train_ids)  # every training episode, nothing else
        assert max(counts.values()) <= 2  # fills are further permutations: balanced
        assert all(0 <= t < lengths[e] for b in batches for e, t in b)


def test_timesteps_are_uniform_over_the_episode():
    sampler = EpochBatchSampler([0], [4], [1], rank=0, seed=0)
    ts = []
    for epoch in range(4000):
        sampler.set_epoch(epoch)
        ts += [t for b in sampler for _, t in b]
    freq = np.bincount(ts, minlength=4) / len(ts)
    assert np.allclose(freq, 0.25, atol=0.03), freq


def test_stream_is_a_function_of_seed_and_epoch():
    a = EpochBatchSampler([0, 1, 2, 3], [9, 9, 9, 9], [2], 0, seed=5)
    b = EpochBatchSampler([0, 1, 2, 3], [9, 9, 9, 9], [2], 0, seed=5)
    np.testing.assert_array_equal(a.global_stream(3), b.global_stream(3))
    assert not np.array_equal(a.global_stream(3), a.global_stream(4))
    c = EpochBatchSampler([0, 1, 2, 3], [9, 9, 9, 9], [2], 0, seed=6)
    assert not np.array_equal(a.global_stream(3), c.global_stream(3))


@pytest.mark.parametrize("sizes", [[3, 2], [2, 2, 1], [5]])
def test_ranks_take_disjoint_slices_whose_union_is_the_single_process_stream(sizes):
    train_ids, lengths = list(range(11)), [20] * 11
    single = EpochBatchSampler(train_ids, lengths, [5], 0, seed=3)
    ranks = [EpochBatchSampler(train_ids, lengths, sizes, r, seed=3) for r in range(len(sizes))]
    for epoch in (0, 1, 7):
        single.set_epoch(epoch)
        for r in ranks:
            r.set_epoch(epoch)
        per_rank = [list(r) for r in ranks]
        for step, full in enumerate(single):
            parts = [per_rank[r][step] for r in range(len(sizes))]
            assert [len(p) for p in parts] == sizes
            assert [s for p in parts for s in p] == full  # disjoint positions, same samples, same order


def test_resume_mid_epoch_and_runs_across_epochs():
    sampler = EpochBatchSampler(list(range(10)), [30] * 10, [2], 0, seed=0)
    sampler.set_epoch(4)
    full = list(sampler)
    sampler.set_epoch(4, start_step=2)
    assert list(sampler) == full[2:]
    sampler.set_epoch(4, start_step=1, num_steps=2)
    assert list(sampler) == full[1:3] and len(sampler) == 2
    sampler.set_epoch(5)
    following = list(sampler)
    sampler.set_epoch(4, start_step=3, num_steps=5)  # runs on into epoch 5
    assert list(sampler) == full[3:] + following[:3]


# ---------------------------------------------------------------------------- samples


def test_sample_values_padding_and_images(episodes):
    paths, lengths, contents = episodes
    stats = fake_stats()
    ds = ACTEpisodeDataset(paths, CAMS, chunk_size=6, stats=stats)
    s = ds[(2, 10)]  # episode 2 has 13 frames: 3 real actions, 3 padded
    np.testing.assert_allclose(s["qpos"], (contents[2]["qpos"][10] - 2.0) / 4.0)
    np.testing.assert_allclose(s["action"][:3], (contents[2]["action"][10:13] + 1.0) / 0.5)
    assert np.all(s["action"][3:] == 0)
    assert s["is_pad"].tolist() == [False] * 3 + [True] * 3
    assert s["images"].dtype == np.uint8 and s["images"].shape == (2, 8, 12, 3)
    for c, cam in enumerate(CAMS):
        np.testing.assert_array_equal(s["images"][c], contents[2]["images"][cam][10])
        assert tuple(s["images"][c, 0, 0]) == (10, 2, c)  # frame t of episode 2, camera c
    s0 = ds[(1, 0)]
    assert not s0["is_pad"].any()
    with pytest.raises(IndexError):
        ds[(0, 5)]


def test_loader_workers_and_device_layout(episodes):
    paths, lengths, contents = episodes
    ds = ACTEpisodeDataset(paths, CAMS, chunk_size=4, stats=fake_stats())
    sampler = EpochBatchSampler([0, 1, 2, 3], lengths, [3], 0, seed=0)
    sampler.set_epoch(0)
    expected = list(sampler)
    for workers in (0, 2):
        loader = make_loader(ds, sampler, workers, pin_memory=False)
        for batch, keys in zip(loader, expected, strict=True):
            b = to_device(batch, torch.device("cpu"))
            assert b["images"].shape == (3, 2, 3, 8, 12) and b["images"].dtype == torch.uint8
            assert b["qpos"].dtype == torch.float32 and b["is_pad"].dtype == torch.bool
            for i, (e, t) in enumerate(keys):
                # (B, N, 3, H, W): channel 0 of pixel (0, 0) holds the frame number, channel 1 the episode
                assert b["images"][i, 1, 0, 0, 0].item() == t and b["images"][i, 1, 1, 0, 0].item() == e
                assert b["qpos"][i, 0].item() == pytest.approx((e * 100 + t - 2.0) / 4.0)
    torch_state = torch.get_rng_state()
    list(make_loader(ds, ListBatchSampler([(0, 0), (1, 1)], 1), 0, False))
    assert torch.equal(torch_state, torch.get_rng_state())  # loaders never consume the global RNG


def test_episode_index_and_bad_episodes(episodes, tmp_path):
    paths, lengths, _ = episodes
    index = read_episode_index(paths, CAMS)
    assert index.lengths == lengths and (index.state_dim, index.action_dim) == (3, 2)
    assert index.image_shapes == {"top": (8, 12, 3), "wrist": (8, 12, 3)}
    with pytest.raises(DatasetError, match="missing camera dataset /observations/images/front"):
        read_episode_index(paths, ["front"])
    bad = tmp_path / "bad.hdf5"
    with h5py.File(bad, "w") as f:
        f["/observations/qpos"] = np.zeros((4, 3), np.float32)
        f["/action"] = np.zeros((5, 2), np.float32)
    with pytest.raises(DatasetError, match="bad.hdf5.*same T"):
        read_episode_index([bad], [])
    junk = tmp_path / "junk.hdf5"
    junk.write_bytes(b"not hdf5")
    with pytest.raises(DatasetError, match="junk.hdf5: cannot open as HDF5"):
        read_episode_index([junk], [])


# ---------------------------------------------------------------------------- launch arithmetic


def test_batch_split_modes():
    assert rank_batch_sizes(64, 1, "fixed_global") == [64]
    assert rank_batch_sizes(10, 4, "fixed_global") == [3, 3, 2, 2]
    assert sum(rank_batch_sizes(65, 8, "fixed_global")) == 65
    assert rank_batch_sizes(8, 3, "fixed_per_gpu") == [8, 8, 8]
    with pytest.raises(UsageError, match="smaller than the 4 processes.*fixed_per_gpu"):
        rank_batch_sizes(3, 4, "fixed_global")


def test_gpu_selection():
    plan = plan_launch("all", 0)
    assert (plan.device_type, plan.nproc, plan.backend) == ("cpu", 1, "none")
    assert "no CUDA GPU" in plan.warning
    assert plan_launch("all", 4).gpu_ids == (0, 1, 2, 3) and plan_launch("all", 4).backend == "nccl"
    assert plan_launch("1,3", 4).gpu_ids == (1, 3)
    assert plan_launch("2", 4).nproc == 1 and plan_launch("2", 4).backend == "none"
    assert (plan_launch("cpu:2", 0).nproc, plan_launch("cpu:2", 0).backend) == (2, "gloo")
    assert plan_launch("cpu", 8).device_type == "cpu"
    with pytest.raises(UsageError, match=r"\[2\] do not exist; visible GPU ids: \[0, 1\]"):
        plan_launch("0,2", 2)
    with pytest.raises(UsageError, match="no CUDA GPU visible"):
        plan_launch("0", 0)
    for bad in ("cpu:0", "cpu:x", "gpu0", "0,0"):
        with pytest.raises(UsageError):
            plan_launch(bad, 2)


# ---------------------------------------------------------------------------- PNG


def test_png_round_trip_and_curves(tmp_path):
    rgb = np.random.default_rng(0).integers(0, 256, (7, 5, 3), dtype=np.uint8)
    np.testing.assert_array_equal(decode_png(encode_png(rgb)), rgb)
    steps = np.arange(1, 51)
    history = {k: {"train": (steps, 1.0 / steps), "val": (steps[::10], 2.0 / steps[::10])}
               for k in ("l1", "kl", "loss")}
    path = tmp_path / "curves.png"
    write_loss_curves(path, history)
    img = decode_png(path.read_bytes())
    assert img.shape == render_loss_curves(history).shape == (300, 1200, 3)
    for color in ((31, 119, 180), (255, 127, 14)):  # both curves are drawn in every panel
        for panel in range(3):
            region = img[:, panel * 400 : (panel + 1) * 400]
            assert np.all(region == color, axis=-1).sum() > 50
