"""Training data: (episode, timestep) samples read from upstream-ACT HDF5 episodes.

A sample is what upstream ACT's `EpisodicDataset` returns for one timestep t of one episode:
qpos[t] (normalized), every camera's frame t, action[t : t+chunk] (normalized, zero-padded
past the episode end) and the `is_pad` mask. Differences from upstream, all deliberate:

- Images stay uint8 and channel-last (N_cam, H, W, 3) in the loader; `to_device` moves the
  batch and permutes on the device, so the CPU never touches float pixels (4x less memory
  traffic in the workers and in pinned host memory).
- HDF5 files are opened lazily, once per process, so a DataLoader worker never inherits an
  open HDF5 handle through fork.
- Epochs are defined by `EpochBatchSampler` (see its docstring): every optimizer step sees
  exactly the global batch the user asked for, and every training episode appears at least
  once per epoch, which keeps upstream's "one random timestep per episode" spirit.
- The sampling stream is a pure function of (seed, epoch), so a resumed run or a run with a
  different number of processes sees exactly the same samples.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np
import torch

from lerobot_bridge.errors import DatasetError

# The split is fixed and independent of --seed (upstream: a fixed permutation), so changing
# the training seed never moves an episode between train and validation.
SPLIT_SEED = 0
# Validation uses about this many fixed (episode, t) pairs, spread over every val episode.
DEFAULT_VAL_SAMPLES = 256

Sample = tuple[int, int]  # (episode id, timestep)


# --------------------------------------------------------------------------------------------
# Episode index and split


@dataclass(frozen=True)
class EpisodeIndex:
    """What the sampler needs to know about the converted episodes (read once, cheap)."""

    paths: list[str]
    lengths: list[int]
    camera_names: list[str]
    state_dim: int
    action_dim: int
    image_shapes: dict[str, tuple[int, int, int]]  # camera -> (H, W, 3)

    @property
    def num_episodes(self) -> int:
        return len(self.paths)

    @property
    def num_frames(self) -> int:
        return int(sum(self.lengths))


def read_episode_index(paths: Sequence[str | Path], camera_names: Sequence[str]) -> EpisodeIndex:
    """Read lengths and shapes of every episode; fail with a DatasetError naming the file."""
    if not paths:
        raise DatasetError("no episodes to train on: the converted dataset is empty")
    lengths: list[int] = []
    state_dim = action_dim = -1
    image_shapes: dict[str, tuple[int, int, int]] = {}
    for path in paths:
        try:
            f = h5py.File(path, "r")
        except OSError as e:
            raise DatasetError(f"{path}: cannot open as HDF5 ({e})") from e
        with f:
            for key in ("/observations/qpos", "/action"):
                if key not in f:
                    raise DatasetError(f"{path}: missing dataset {key} (upstream ACT episode layout)")
            qpos, action = f["/observations/qpos"], f["/action"]
            if qpos.ndim != 2 or action.ndim != 2 or qpos.shape[0] != action.shape[0]:
                raise DatasetError(
                    f"{path}: /observations/qpos {qpos.shape} and /action {action.shape} must be "
                    "(T, D) and (T, A) with the same T"
                )
            if qpos.shape[0] == 0:
                raise DatasetError(f"{path}: episode has 0 frames")
            if state_dim < 0:
                state_dim, action_dim = qpos.shape[1], action.shape[1]
            elif (qpos.shape[1], action.shape[1]) != (state_dim, action_dim):
                raise DatasetError(
                    f"{path}: qpos/action dims {qpos.shape[1]}/{action.shape[1]} differ from the "
                    f"first episode's {state_dim}/{action_dim}"
                )
            for cam in camera_names:
                key = f"/observations/images/{cam}"
                if key not in f:
                    raise DatasetError(f"{path}: missing camera dataset {key}")
                images = f[key]
                if images.ndim != 4 or images.shape[0] != qpos.shape[0] or images.shape[3] != 3:
                    raise DatasetError(
                        f"{path}: {key} has shape {images.shape}, expected (T={qpos.shape[0]}, H, W, 3)"
                    )
                if images.dtype != np.uint8:
                    raise DatasetError(f"{path}: {key} has dtype {images.dtype}, expected uint8")
                shape = tuple(int(s) for s in images.shape[1:])
                if image_shapes.setdefault(cam, shape) != shape:
                    raise DatasetError(
                        f"{path}: {key} frames are {shape}, other episodes have {image_shapes[cam]}"
                    )
            lengths.append(int(qpos.shape[0]))
    if len(set(image_shapes.values())) > 1:
        # The backbone's feature maps of all cameras are joined along the width, which needs one
        # frame size (upstream ACT's DETRVAE: torch.cat(all_cam_features, axis=3)).
        sizes = ", ".join(f"{cam} {h}x{w}" for cam, (h, w, _) in image_shapes.items())
        raise DatasetError(
            f"{paths[0]}: the cameras have different frame sizes ({sizes}); ACT needs one size for every "
            "camera: select same-size cameras with --camera_keys"
        )
    return EpisodeIndex(
        paths=[str(p) for p in paths],
        lengths=lengths,
        camera_names=list(camera_names),
        state_dim=int(state_dim),
        action_dim=int(action_dim),
        image_shapes=image_shapes,
    )


def read_all_qpos_action(paths: Sequence[str | Path]) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Every frame's qpos and action of every episode (for dataset_stats.pkl)."""
    qpos_list, action_list = [], []
    for path in paths:
        with h5py.File(path, "r") as f:
            qpos_list.append(np.asarray(f["/observations/qpos"][()], dtype=np.float32))
            action_list.append(np.asarray(f["/action"][()], dtype=np.float32))
    return qpos_list, action_list


def split_episodes(num_episodes: int, val_ratio: float) -> tuple[list[int], list[int]]:
    """Episode ids for training and validation.

    A fixed permutation (SPLIT_SEED, not --seed) as upstream; at least one validation
    episode whenever there are 2 or more and val_ratio > 0; one episode means no validation.
    """
    if num_episodes < 1:
        raise ValueError("need at least one episode")
    if num_episodes == 1 or val_ratio <= 0:
        return [0] if num_episodes == 1 else list(range(num_episodes)), []
    num_val = min(num_episodes - 1, max(1, round(num_episodes * val_ratio)))
    order = np.random.default_rng(SPLIT_SEED).permutation(num_episodes)
    return sorted(int(i) for i in order[num_val:]), sorted(int(i) for i in order[:num_val])


def validation_samples(
    val_ids: Sequence[int], lengths: Sequence[int], target: int = DEFAULT_VAL_SAMPLES
) -> list[Sample]:
    """A fixed set of (episode, t) pairs: evenly spaced timesteps in every validation episode.

    Fixed (not random) so successive validations compare like with like; every validation
    episode contributes, from its first to its last frame.
    """
    if not val_ids:
        return []
    per_episode = max(1, math.ceil(target / len(val_ids)))
    samples: list[Sample] = []
    for ep in val_ids:
        length = lengths[ep]
        k = min(length, per_episode)
        ts = np.unique(np.linspace(0, length - 1, k).round().astype(int))
        samples.extend((int(ep), int(t)) for t in ts)
    return samples


# --------------------------------------------------------------------------------------------
# Sampling


def rank_batch_offsets(rank_batch_sizes: Sequence[int]) -> list[int]:
    """[0, b0, b0+b1, ...]: where each rank's slice of a global batch starts."""
    return [0, *np.cumsum(rank_batch_sizes).tolist()]


class EpochBatchSampler:
    """Yields this rank's list of (episode, t) for each optimizer step of an epoch.

    One epoch = ceil(num_train_episodes / global_batch) steps of exactly global_batch samples.
    The epoch's episode stream is one random permutation of the training episodes (so every
    episode appears at least once) followed by further permutations that fill the last batch
    ("drawing episodes again"), shuffled together; each draw gets a uniformly random timestep.
    The stream depends only on (seed, epoch): rank r takes the same slice of every global
    batch in every process, so ranks are disjoint and the union is exactly what a single
    process with the global batch would see.
    """

    def __init__(
        self,
        train_ids: Sequence[int],
        lengths: Sequence[int],
        rank_batch_sizes: Sequence[int],
        rank: int,
        seed: int,
    ) -> None:
        if not train_ids:
            raise ValueError("no training episodes")
        self.train_ids = np.asarray(train_ids, dtype=np.int64)
        self.lengths = np.asarray(lengths, dtype=np.int64)
        self.rank_batch_sizes = list(rank_batch_sizes)
        self.global_batch = int(sum(rank_batch_sizes))
        self.offsets = rank_batch_offsets(rank_batch_sizes)
        self.rank = rank
        self.seed = seed
        self.steps_per_epoch = math.ceil(len(self.train_ids) / self.global_batch)
        self.epoch = 0
        self.start_step = 0
        self.num_steps = self.steps_per_epoch

    def set_epoch(self, epoch: int, start_step: int = 0, num_steps: int | None = None) -> None:
        """Start at step `start_step` of `epoch` and yield `num_steps` batches, running on into
        the following epochs (default: the rest of this epoch).

        One iterator can thus cover a whole run, so DataLoader workers keep prefetching across
        epoch boundaries (with one step per epoch, a fresh iterator per epoch would stall every
        step on loading). Resume starts mid-epoch exactly where the interrupted run stopped.
        """
        self.epoch = epoch
        self.start_step = start_step
        self.num_steps = self.steps_per_epoch - start_step if num_steps is None else num_steps

    def global_stream(self, epoch: int) -> np.ndarray:
        """(steps_per_epoch * global_batch, 2) int64 array of (episode, t) for the epoch."""
        rng = np.random.default_rng([self.seed, epoch])
        total = self.steps_per_epoch * self.global_batch
        permutations = math.ceil(total / len(self.train_ids))
        episodes = np.concatenate([rng.permutation(self.train_ids) for _ in range(permutations)])[:total]
        rng.shuffle(episodes)
        # Uniform t in [0, length): floor(u * length) with u in [0, 1).
        ts = np.floor(rng.random(total) * self.lengths[episodes]).astype(np.int64)
        return np.stack([episodes, ts], axis=1)

    def __iter__(self) -> Iterator[list[Sample]]:
        lo, hi = self.offsets[self.rank], self.offsets[self.rank + 1]
        epoch, step, remaining = self.epoch, self.start_step, self.num_steps
        while remaining > 0:
            stream = self.global_stream(epoch)
            for s in range(step, min(self.steps_per_epoch, step + remaining)):
                batch = stream[s * self.global_batch : (s + 1) * self.global_batch]
                yield [(int(e), int(t)) for e, t in batch[lo:hi]]
                remaining -= 1
            epoch, step = epoch + 1, 0

    def __len__(self) -> int:
        return max(0, self.num_steps)


# --------------------------------------------------------------------------------------------
# Dataset


class ACTEpisodeDataset(torch.utils.data.Dataset):
    """Map-style dataset indexed by (episode, t); reads one frame per camera per sample."""

    def __init__(
        self,
        paths: Sequence[str | Path],
        camera_names: Sequence[str],
        chunk_size: int,
        stats: dict[str, np.ndarray],
    ) -> None:
        self.paths = [str(p) for p in paths]
        self.camera_names = list(camera_names)
        self.chunk_size = chunk_size
        self.qpos_mean = np.asarray(stats["qpos_mean"], dtype=np.float32)
        self.qpos_std = np.asarray(stats["qpos_std"], dtype=np.float32)
        self.action_mean = np.asarray(stats["action_mean"], dtype=np.float32)
        self.action_std = np.asarray(stats["action_std"], dtype=np.float32)
        self._files: dict[int, h5py.File] = {}
        self._pid = -1

    def _file(self, episode: int) -> h5py.File:
        # Handles are per process: a forked DataLoader worker must open its own.
        if self._pid != os.getpid():
            self._files, self._pid = {}, os.getpid()
        f = self._files.get(episode)
        if f is None:
            f = self._files[episode] = h5py.File(self.paths[episode], "r")
        return f

    def close(self) -> None:
        if self._pid == os.getpid():
            for f in self._files.values():
                f.close()
        self._files = {}

    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        state["_files"], state["_pid"] = {}, -1  # never pickle open handles (spawn workers)
        return state

    def __len__(self) -> int:  # only informative: samples are addressed by (episode, t)
        return len(self.paths)

    def __getitem__(self, key: Sample) -> dict[str, np.ndarray]:
        episode, t = key
        f = self._file(episode)
        actions = f["/action"]
        length = actions.shape[0]
        if not 0 <= t < length:
            raise IndexError(f"timestep {t} outside episode {episode} of length {length}")
        qpos = (f["/observations/qpos"][t].astype(np.float32) - self.qpos_mean) / self.qpos_std  # (D,)
        chunk = actions[t : t + self.chunk_size].astype(np.float32)  # (n <= chunk, A)
        n = chunk.shape[0]
        action = np.zeros((self.chunk_size, chunk.shape[1]), dtype=np.float32)  # (chunk, A)
        action[:n] = (chunk - self.action_mean) / self.action_std
        is_pad = np.zeros(self.chunk_size, dtype=bool)  # (chunk,)
        is_pad[n:] = True
        images = np.stack(
            [f[f"/observations/images/{cam}"][t] for cam in self.camera_names]
        )  # (N_cam, H, W, 3) uint8
        return {"qpos": qpos, "images": images, "action": action, "is_pad": is_pad}


class ListBatchSampler:
    """A fixed list of batches (validation): yields the given lists of samples in order."""

    def __init__(self, samples: Sequence[Sample], batch_size: int) -> None:
        self.batches = [list(samples[i : i + batch_size]) for i in range(0, len(samples), batch_size)]

    def __iter__(self) -> Iterator[list[Sample]]:
        return iter(self.batches)

    def __len__(self) -> int:
        return len(self.batches)


def make_loader(
    dataset: ACTEpisodeDataset, batch_sampler, num_workers: int, pin_memory: bool
) -> torch.utils.data.DataLoader:
    """A DataLoader over (episode, t) batches.

    It gets its own torch.Generator so creating an iterator (every epoch, and once more on
    resume) never consumes the global torch RNG that dropout and the CVAE noise use; that
    keeps an interrupted-and-resumed run bitwise on the same random stream.
    """
    return torch.utils.data.DataLoader(
        dataset,
        batch_sampler=batch_sampler,
        num_workers=num_workers,
        pin_memory=pin_memory,
        persistent_workers=num_workers > 0,
        prefetch_factor=4 if num_workers > 0 else None,
        generator=torch.Generator().manual_seed(0),
    )


def to_device(batch: dict[str, torch.Tensor], device: torch.device) -> dict[str, torch.Tensor]:
    """Move a collated batch to the device; images become (B, N_cam, 3, H, W) uint8 there."""
    non_blocking = device.type == "cuda"
    out = {k: v.to(device, non_blocking=non_blocking) for k, v in batch.items()}
    out["images"] = out["images"].permute(0, 1, 4, 2, 3)  # (B, N, H, W, 3) -> (B, N, 3, H, W)
    return out
