"""Training data: (episode, timestep) samples read from upstream-ACT HDF5 episodes.

A sample is what upstream ACT's `EpisodicDataset` returns for one timestep t of one episode:
qpos[t] (normalized), every camera's frame t, action[t : t+chunk] (normalized, zero-padded
past the episode end) and the `is_pad` mask. Differences from upstream, all deliberate:

- Images stay uint8 and channel-last (N_cam, H, W, 3) in the loader; `to_device` moves the
  batch and permutes on the device, so the CPU never touches float pixels (4x less memory
  traffic in the workers and in pinned host memory).
- HDF5 files are opened lazily, once per process, so a DataLoader worker never inherits an
  open HDF5 handle through fork. Each open episode (`EpisodeFrames`) keeps its normalized qpos
  and actions in memory and its image datasets resolved, so a sample costs one HDF5 chunk read
  per camera and no path lookups.
- A batch is assembled in place (`__getitems__`): every frame is read (or JPEG-decoded) straight
  into its slot of one preallocated (B, N_cam, H, W, 3) array, in shared memory inside a worker,
  so there is no per-sample camera stack, no batch stack, and no copy when the batch crosses to
  the main process. (torch.stack of the batch ran on intra-op threads and slowed 8-11x on a busy
  CPU.)
- Both frame layouts read: raw (T, H, W, 3) frames and ALOHA's JPEG rows (attr compress=True,
  see lerobot_bridge.frame_codec), decoded in the loader's worker processes.
- Epochs are defined by `EpochBatchSampler` (see its docstring): every optimizer step sees
  exactly the global batch the user asked for, and every training episode appears at least
  once per epoch, which keeps upstream's "one random timestep per episode" spirit.
- The sampling stream is a pure function of (seed, epoch), so a resumed run or a run with a
  different number of processes sees exactly the same samples.
"""

from __future__ import annotations

import math
import os
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np
import torch

from act.normalize import Normalizer
from lerobot_bridge.errors import DatasetError
from lerobot_bridge.frame_codec import JpegDecoder

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
            compressed = bool(f.attrs.get("compress", False))
            for cam in camera_names:
                key = f"/observations/images/{cam}"
                if key not in f:
                    raise DatasetError(f"{path}: missing camera dataset {key}")
                images = f[key]
                if images.dtype != np.uint8:
                    raise DatasetError(f"{path}: {key} has dtype {images.dtype}, expected uint8")
                if compressed:
                    shape = _jpeg_frame_shape(path, key, images, qpos.shape[0])
                else:
                    if images.ndim != 4 or images.shape[0] != qpos.shape[0] or images.shape[3] != 3:
                        raise DatasetError(
                            f"{path}: {key} has shape {images.shape}, expected (T={qpos.shape[0]}, H, W, 3)"
                        )
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


def _jpeg_frame_shape(path, key: str, images: h5py.Dataset, length: int) -> tuple[int, int, int]:
    """(H, W, 3) of a compressed camera: its rows must be (T, L) and frame 0 must decode."""
    if images.ndim != 2 or images.shape[0] != length:
        raise DatasetError(
            f"{path}: {key} has shape {images.shape}; with attr compress=True expected (T={length}, L) "
            "rows of zero-padded JPEG bytes (ALOHA's compressed layout)"
        )
    try:
        frame = JpegDecoder().decode(np.asarray(images[0]))
    except ValueError as err:
        raise DatasetError(f"{path}: {key} row 0 is not a JPEG image ({err})") from None
    return (int(frame.shape[0]), int(frame.shape[1]), 3)


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


class EpisodeFrames:
    """One episode file open for reading frames; reused for every sample of that episode.

    Resolves each camera's dataset once and reads a frame straight into a caller's (H, W, 3)
    buffer: raw frames through one low-level HDF5 read of the frame's chunk (no selection
    objects built per read, no chunk cache: the file is opened with rdcc_nbytes=0 so a frame
    goes from disk to the buffer without an intermediate copy); JPEG rows (attr compress=True)
    by reading the row's chunk bytes and decoding them with FFmpeg. Also what replay and
    tools use to read frames of either layout.
    """

    def __init__(self, path: str | Path, camera_names: Sequence[str]) -> None:
        self.path = str(path)
        self.file = h5py.File(self.path, "r", rdcc_nbytes=0)
        self.camera_names = list(camera_names)
        self.compressed = bool(self.file.attrs.get("compress", False))
        self.qpos = np.asarray(self.file["/observations/qpos"][()], dtype=np.float32)  # (T, D)
        self.action = np.asarray(self.file["/action"][()], dtype=np.float32)  # (T, A)
        self.length = int(self.action.shape[0])
        self._images = [self.file[f"/observations/images/{cam}"] for cam in self.camera_names]
        self._decoder = JpegDecoder() if self.compressed else None
        self._spaces = []  # raw: (file space, memory space) per camera
        self._direct = []  # compressed: whether a row is exactly one unfiltered chunk
        for dset in self._images:
            if self.compressed:
                plist = dset.id.get_create_plist()
                self._direct.append(
                    dset.chunks == (1, dset.shape[1]) and plist.get_nfilters() == 0
                )
            else:
                # the memory space is the (H, W, 3) buffer; the file selection one (1, H, W, 3) frame
                self._spaces.append((dset.id.get_space(), h5py.h5s.create_simple(dset.shape[1:])))

    def read_frame(self, camera: int, t: int, out: np.ndarray) -> None:
        """Frame t of camera index `camera` into `out` ((H, W, 3) uint8, C-contiguous)."""
        dset = self._images[camera]
        if self._decoder is None:
            fspace, mspace = self._spaces[camera]
            fspace.select_hyperslab((t, 0, 0, 0), (1, *dset.shape[1:]))
            dset.id.read(mspace, fspace, out)
            return
        if self._direct[camera]:
            row = dset.id.read_direct_chunk((t, 0))[1]  # bytes of the padded row
        else:
            row = dset[t]
        frame = self._decoder.decode(row)
        if frame.shape != out.shape:
            raise DatasetError(
                f"{self.path}: /observations/images/{self.camera_names[camera]} frame {t} decodes to "
                f"{frame.shape}, expected {out.shape} like the episode's first frame"
            )
        out[...] = frame

    def frame(self, camera: int, t: int, shape: tuple[int, int, int]) -> np.ndarray:
        out = np.empty(shape, dtype=np.uint8)
        self.read_frame(camera, t, out)
        return out

    def close(self) -> None:
        self.file.close()


POOL_BATCHES = 2  # batch buffers kept per shape in the main process (see BatchPool)


def _storage_uses(t: torch.Tensor) -> int | None:
    """How many holders t's storage has (views, numpy arrays, pinned copies do not count: they
    hold their own), or None where torch does not expose it."""
    use_count = getattr(torch._C, "_storage_Use_Count", None)
    if use_count is None:
        return None
    try:
        return int(use_count(t.untyped_storage()._cdata))
    except (AttributeError, RuntimeError, TypeError):
        return None


class BatchPool:
    """Batch buffers reused in the main process (DataLoader with workers 0).

    A fresh (64, 2, 480, 640, 3) batch is 118 MB of new memory whose first touch costs a page
    fault per 4 KB: measured on a 2-core VM, 87 ms per batch against 22 ms to refill a reused
    one, i.e. a fresh batch cost more than reading its frames. A buffer is reused only when
    nothing but the pool refers to it: no Python reference to the tensor (sys.getrefcount) and
    no view or numpy array on its storage (torch's storage use count, compared with its value
    when the buffer was new). A batch the caller still holds is therefore never overwritten; the
    pool then allocates a fresh one and keeps it in place of its oldest buffer (POOL_BATCHES per
    shape at most), so a caller that keeps batches costs fresh memory, never wrong data.
    """

    def __init__(self) -> None:
        self._buffers: dict[tuple, list[tuple[torch.Tensor, int | None]]] = {}

    def get(self, shape: tuple[int, ...], dtype: torch.dtype) -> torch.Tensor:
        key = (shape, dtype)
        entries = self._buffers.setdefault(key, [])
        for i in range(len(entries)):
            # 2 = the list's reference + getrefcount's argument: nobody else holds the tensor
            if sys.getrefcount(entries[i][0]) == 2 and entries[i][1] is not None:
                if _storage_uses(entries[i][0]) == entries[i][1]:
                    return entries[i][0]
        t = torch.empty(shape, dtype=dtype)
        if len(entries) >= POOL_BATCHES:  # all held by the caller: forget the oldest (its holder keeps it)
            entries.pop(0)
        entries.append((t, _storage_uses(t)))
        if len(self._buffers) > 8:  # shapes change rarely (the last validation batch): drop the oldest
            self._buffers.pop(next(iter(self._buffers)))
        return t


def _batch_array(shape: tuple[int, ...], dtype: torch.dtype) -> torch.Tensor:
    """An uninitialized tensor; in a DataLoader worker, in shared memory from the start (what
    default_collate does), so sending the batch to the main process copies nothing."""
    if torch.utils.data.get_worker_info() is not None:
        try:
            numel = math.prod(shape)
            elem = torch.empty(0, dtype=dtype)
            return elem.new(elem._typed_storage()._new_shared(numel, device=elem.device)).view(shape)
        except (AttributeError, RuntimeError):  # private API moved: fall back to a plain tensor
            pass
    return torch.empty(shape, dtype=dtype)


class ACTEpisodeDataset(torch.utils.data.Dataset):
    """Map-style dataset indexed by (episode, t); reads one frame per camera per sample.

    `dataset[(e, t)]` returns one sample (numpy); `dataset.__getitems__([(e, t), ...])`, what the
    DataLoader calls with a batch sampler, returns the whole batch as tensors built in place.
    """

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
        self.normalizer = Normalizer.from_stats(stats)
        self._files: dict[int, EpisodeFrames] = {}
        self._normalized: dict[int, tuple[np.ndarray, np.ndarray]] = {}  # episode -> (qpos, action)
        self._frame_shape: tuple[int, int, int] | None = None
        self._pool = BatchPool()
        self._pid = -1

    def _episode(self, episode: int) -> EpisodeFrames:
        # Handles are per process: a forked DataLoader worker must open its own.
        if self._pid != os.getpid():
            self._files, self._normalized, self._pid = {}, {}, os.getpid()
            self._pool = BatchPool()
        ep = self._files.get(episode)
        if ep is None:
            ep = self._files[episode] = EpisodeFrames(self.paths[episode], self.camera_names)
            # Normalized once per episode and process: a sample is then two slices.
            self._normalized[episode] = (self.normalizer.qpos(ep.qpos), self.normalizer.action(ep.action))
            if self._frame_shape is None and self.camera_names:
                self._frame_shape = _frame_shape_of(ep)
        return ep

    def close(self) -> None:
        if self._pid == os.getpid():
            for ep in self._files.values():
                ep.close()
        self._files, self._normalized = {}, {}

    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        # never pickle open handles (spawn workers)
        state["_files"], state["_normalized"], state["_pid"] = {}, {}, -1
        state["_pool"] = BatchPool()
        return state

    def __len__(self) -> int:  # only informative: samples are addressed by (episode, t)
        return len(self.paths)

    def _fill(self, keys: Sequence[Sample], qpos, images, action, is_pad) -> None:
        """Write samples `keys` into the batch arrays (numpy views), row i = keys[i]."""
        action[...] = 0.0
        is_pad[...] = False
        for i, (episode, t) in enumerate(keys):
            ep = self._episode(episode)
            if not 0 <= t < ep.length:
                raise IndexError(f"timestep {t} outside episode {episode} of length {ep.length}")
            qpos_n, action_n = self._normalized[episode]
            qpos[i] = qpos_n[t]
            n = min(self.chunk_size, ep.length - t)
            action[i, :n] = action_n[t : t + n]
            is_pad[i, n:] = True
            for c in range(len(self.camera_names)):
                ep.read_frame(c, t, images[i, c])

    def _shapes(self, first_episode: int) -> tuple[int, int, tuple[int, int, int]]:
        ep = self._episode(first_episode)
        shape = self._frame_shape or (0, 0, 3)
        return ep.qpos.shape[1], ep.action.shape[1], shape

    def __getitem__(self, key: Sample) -> dict[str, np.ndarray]:
        episode, t = key
        d, a, shape = self._shapes(episode)
        qpos = np.empty((1, d), np.float32)
        images = np.empty((1, len(self.camera_names), *shape), np.uint8)
        action = np.empty((1, self.chunk_size, a), np.float32)
        is_pad = np.empty((1, self.chunk_size), bool)
        self._fill([(episode, t)], qpos, images, action, is_pad)
        # qpos (D,), images (N_cam, H, W, 3) uint8, action (chunk, A), is_pad (chunk,)
        return {"qpos": qpos[0], "images": images[0], "action": action[0], "is_pad": is_pad[0]}

    def __getitems__(self, keys: Sequence[Sample]) -> dict[str, torch.Tensor]:
        """A whole batch, assembled in place (see the module docstring)."""
        keys = [(int(e), int(t)) for e, t in keys]
        b = len(keys)
        d, a, shape = self._shapes(keys[0][0])
        # In a worker the batch goes to the main process in shared memory (fresh per batch:
        # the main process holds it as long as it likes); in the main process buffers are reused.
        new = _batch_array if torch.utils.data.get_worker_info() is not None else self._pool.get
        batch = {
            "qpos": new((b, d), torch.float32),
            "images": new((b, len(self.camera_names), *shape), torch.uint8),
            "action": new((b, self.chunk_size, a), torch.float32),
            "is_pad": new((b, self.chunk_size), torch.bool),
        }
        arrays = {k: v.numpy() for k, v in batch.items()}
        self._fill(keys, arrays["qpos"], arrays["images"], arrays["action"], arrays["is_pad"])
        return batch


def _frame_shape_of(ep: EpisodeFrames) -> tuple[int, int, int]:
    """(H, W, 3) of the episode's first camera: the dataset's shape, or frame 0 decoded (JPEG)."""
    dset = ep._images[0]
    if not ep.compressed:
        return tuple(int(x) for x in dset.shape[1:])  # type: ignore[return-value]
    return JpegDecoder().decode(dset[0]).shape  # type: ignore[return-value]


def collate_batch(data):
    """The DataLoader's collate_fn: a batch from `__getitems__` is complete already (a dict of
    tensors); a list of per-sample dicts (other datasets, tests) is collated as usual."""
    if isinstance(data, dict):
        return data
    return torch.utils.data.default_collate(data)


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
        collate_fn=collate_batch,
        generator=torch.Generator().manual_seed(0),
    )


def to_device(batch: dict[str, torch.Tensor], device: torch.device) -> dict[str, torch.Tensor]:
    """Move a collated batch to the device; images become (B, N_cam, 3, H, W) uint8 there."""
    non_blocking = device.type == "cuda"
    out = {k: v.to(device, non_blocking=non_blocking) for k, v in batch.items()}
    out["images"] = out["images"].permute(0, 1, 4, 2, 3)  # (B, N, H, W, 3) -> (B, N, 3, H, W)
    return out
