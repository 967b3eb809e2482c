"""Run a trained ACT policy on a robot (or replay a recorded episode): `ACTRunner`.

    runner = ACTRunner.from_run_dir("out/checkpoints/my_run", temporal_ensemble=True)
    runner.reset()                                   # at the start of every episode
    action = runner.act(qpos, {"top": rgb_hwc_uint8})  # (A,), in the robot's units

What it does, as upstream's evaluation loop (imitate_episodes.py eval_bc):
qpos -> (qpos - qpos_mean) / qpos_std; images HWC uint8 per camera -> (1, N_cam, 3, H, W),
ImageNet normalization inside the policy; z = 0; action = pred * action_std + action_mean.
Frames whose size differs from the trained size (policy_config.json `image_size`, e.g. a
policy trained on frames resized to 240x320 at conversion) are resized to it with the same
area resize conversion used (lerobot_bridge.frame_codec.resize_area), so the policy sees what
it trained on; `image_size=None` (configs from before) uses frames as given.

Two execution modes:
- chunk execution: query the policy every `query_frequency` steps (default chunk_size) and
  play the chunk open loop;
- temporal ensembling: query every step; the action for step t is the weighted mean of every
  stored chunk's prediction for t, weights exp(-k * i) with i = 0 for the OLDEST prediction
  (k = 0.01). Which predictions exist is tracked with a mask; upstream instead treats all-zero
  rows as empty and so silently drops a genuine prediction of exactly zero.

CLI (a first sanity check after training), replaying recorded episodes through the policy and
printing the per-joint L1 between predicted and recorded actions:
    python -m act.policy --run_dir OUT/checkpoints/RUN --source_episode N   # episode_index N of the dataset
    python -m act.policy --run_dir OUT/checkpoints/RUN --val_episodes       # the run's validation episodes
    python -m act.policy --run_dir OUT/checkpoints/RUN --episode FILE.hdf5  # an ACT HDF5 episode
    [--checkpoint NAME] [--temporal_ensemble] [--max_steps N]
--source_episode and --val_episodes read OUT/manifest.json (dataset path, conversion arguments, split)
and decode those episodes from the dataset with the bridge, with the run's conversion options, into a
temporary folder: the same HDF5 the training converted (which stays on disk only with
--keep_converted_hdf5, in OUT/converted_hdf5/).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from act.act_policy import ACTPolicy
from act.checkpoint import POLICY_CONFIG_NAME, load_checkpoint
from act.config import ACTConfig
from act.normalize import Normalizer
from act.stats import STATS_FILE_NAME, load_stats
from lerobot_bridge.frame_codec import resize_area

TEMPORAL_ENSEMBLE_K = 0.01


class TemporalEnsembler:
    """Temporal ensembling over the last `chunk_size` chunks, one chunk pushed per step.

    Storage: a ring of chunks (chunk_size, chunk_size, A) and a `valid` mask over its slots;
    slot s holds the chunk queried at the step t with t % chunk_size == s.
    """

    def __init__(self, chunk_size: int, k: float = TEMPORAL_ENSEMBLE_K):
        self.chunk_size = chunk_size
        self.k = k
        self.reset()

    def reset(self) -> None:
        self._chunks: np.ndarray | None = None  # (C, C, A), allocated on the first update
        self._valid = np.zeros(self.chunk_size, dtype=bool)  # (C,) which slots hold a chunk
        self._t = 0

    def update(self, chunk: np.ndarray) -> np.ndarray:
        """chunk (C, A): the prediction made at this step for steps t..t+C-1 -> action (A,) for t."""
        C = self.chunk_size
        if chunk.shape[0] != C:
            raise ValueError(f"expected a chunk of {C} steps, got {chunk.shape}")
        if self._chunks is None:
            self._chunks = np.zeros((C, C, chunk.shape[1]), dtype=np.float64)
        t = self._t
        self._chunks[t % C] = chunk
        self._valid[t % C] = True
        # The chunk queried `age` steps ago predicts this step at its row `age`; oldest first.
        ages = np.arange(C - 1, -1, -1)
        ages = ages[ages <= t]
        slots = (t - ages) % C
        ages, slots = ages[self._valid[slots]], slots[self._valid[slots]]
        preds = self._chunks[slots, ages]  # (n, A), oldest query first
        weights = np.exp(-self.k * np.arange(len(preds)))  # i = 0 (oldest) weighs most
        weights /= weights.sum()
        self._t += 1
        return (weights[:, None] * preds).sum(axis=0)


class ACTRunner:
    def __init__(self, policy: ACTPolicy, stats: dict[str, np.ndarray], device: str | torch.device = "cpu",
                 temporal_ensemble: bool = False, query_frequency: int | None = None):
        self.cfg: ACTConfig = policy.cfg
        self.device = torch.device(device)
        self.policy = policy.to(self.device).eval()
        self.normalizer = Normalizer.from_stats(stats)
        self.temporal_ensemble = temporal_ensemble
        chunk = self.cfg.chunk_size
        if temporal_ensemble:
            if query_frequency not in (None, 1):
                raise ValueError("temporal ensembling queries the policy every step (query_frequency 1)")
            query_frequency = 1
        self.query_frequency = chunk if query_frequency is None else int(query_frequency)
        if not 1 <= self.query_frequency <= chunk:
            raise ValueError(f"query_frequency must be in 1..{chunk}, got {self.query_frequency}")
        self.ensembler = TemporalEnsembler(chunk) if temporal_ensemble else None
        size = self.cfg.image_size
        self.image_size: tuple[int, int] | None = (int(size[0]), int(size[1])) if size else None
        self.reset()

    @classmethod
    def from_run_dir(cls, run_dir: str | Path, checkpoint: str = "policy_best.ckpt", device: str = "cpu",
                     temporal_ensemble: bool = False, query_frequency: int | None = None) -> ACTRunner:
        """Load `checkpoint` (a name inside run_dir, or a path), dataset_stats.pkl and policy_config.json."""
        run_dir = Path(run_dir)
        cfg = ACTConfig.load_json(run_dir / POLICY_CONFIG_NAME)
        ckpt_path = Path(checkpoint) if Path(checkpoint).is_absolute() else run_dir / checkpoint
        policy = ACTPolicy(cfg)
        policy.load_state_dict(load_checkpoint(ckpt_path), strict=True)
        stats = load_stats(run_dir / STATS_FILE_NAME)
        return cls(policy, stats, device=device, temporal_ensemble=temporal_ensemble,
                   query_frequency=query_frequency)

    def reset(self) -> None:
        """Forget the current episode (call before each new one)."""
        self._t = 0
        self._chunk: np.ndarray | None = None
        if self.ensembler is not None:
            self.ensembler.reset()

    @torch.inference_mode()
    def predict_chunk(self, qpos: np.ndarray, images: dict[str, np.ndarray]) -> np.ndarray:
        """One policy query: qpos (D,) raw, images {camera: (H, W, 3) uint8} -> actions (chunk, A) raw."""
        qpos = np.asarray(qpos, dtype=np.float32)
        if qpos.shape != (self.cfg.state_dim,):
            raise ValueError(f"qpos: expected shape ({self.cfg.state_dim},), got {qpos.shape}")
        frames = []
        for name in self.cfg.camera_names:
            if name not in images:
                raise KeyError(f"images: camera {name!r} missing (policy cameras: {self.cfg.camera_names})")
            frame = np.asarray(images[name])
            if frame.dtype != np.uint8 or frame.ndim != 3 or frame.shape[2] != 3:
                raise ValueError(f"images[{name!r}]: expected (H, W, 3) uint8 RGB, "
                                 f"got {frame.shape} {frame.dtype}")
            frames.append(self.resize_frame(frame))
        qpos_norm = self.normalizer.qpos(qpos)
        qpos_t = torch.from_numpy(qpos_norm).to(self.device)[None]  # (1, D)
        image_t = torch.from_numpy(np.stack(frames)).to(self.device)  # (N_cam, H, W, 3) uint8
        image_t = image_t.permute(0, 3, 1, 2)[None]  # (1, N_cam, 3, H, W)
        pred = self.policy(qpos_t, image_t)[0].float().cpu().numpy()  # (chunk, A) normalized
        return self.normalizer.unnormalize_action(pred)

    def resize_frame(self, frame: np.ndarray) -> np.ndarray:
        """(H, W, 3) uint8 at the camera's size -> at the trained size (unchanged when equal or
        unknown). Shrinking is area averaging, exactly as conversion resized the training frames."""
        if self.image_size is None or frame.shape[:2] == self.image_size:
            return frame
        return resize_area(frame[None], self.image_size)[0]

    def act(self, qpos: np.ndarray, images: dict[str, np.ndarray]) -> np.ndarray:
        """The action (A,) to execute at this step."""
        t = self._t
        self._t += 1
        if self.ensembler is not None:
            return self.ensembler.update(self.predict_chunk(qpos, images)).astype(np.float32)
        if t % self.query_frequency == 0:
            self._chunk = self.predict_chunk(qpos, images)
        return self._chunk[t % self.query_frequency].astype(np.float32)


# --------------------------------------------------------------------------- replay CLI

def replay(runner: ACTRunner, episode: Path, max_steps: int = 0) -> np.ndarray:
    """Per-step |predicted - recorded| (T, A) over the episode.

    Frames are read one step at a time: a whole camera of a long episode is gigabytes
    (1800 x 480 x 640 x 3). The layout checks are the training loader's, so an episode that
    replays is one that trains.
    """
    from act.data import EpisodeFrames, read_episode_index
    from lerobot_bridge.errors import DatasetError

    cfg = runner.cfg
    index = read_episode_index([episode], cfg.camera_names)  # layout, T, image shapes and dtype
    if index.state_dim != cfg.state_dim:
        raise DatasetError(f"{episode}: /observations/qpos has {index.state_dim} columns, "
                           f"expected (T, {cfg.state_dim})")
    if index.action_dim != cfg.action_dim:
        raise DatasetError(f"{episode}: /action has {index.action_dim} columns, "
                           f"expected (T, {cfg.action_dim})")
    steps = index.lengths[0] if max_steps <= 0 else min(max_steps, index.lengths[0])
    runner.reset()
    errors = np.empty((steps, cfg.action_dim), dtype=np.float64)
    # Raw frames or JPEG rows (--storage jpeg), read as the training loader reads them.
    frames = EpisodeFrames(episode, cfg.camera_names)
    try:
        shapes = [index.image_shapes[cam] for cam in cfg.camera_names]  # (H, W, 3) each
        for t in range(steps):
            images = {cam: frames.frame(i, t, shapes[i]) for i, cam in enumerate(cfg.camera_names)}
            pred = runner.act(frames.qpos[t], images)
            errors[t] = np.abs(pred - frames.action[t])
    finally:
        frames.close()
    return errors


EPISODE_HINT = ("converted ACT HDF5 episodes stay on disk only when training ran with --keep_converted_hdf5 "
                "(OUT/converted_hdf5/episode_<i>.hdf5); without one, replay straight from the dataset: "
                "--source_episode N (its episode_index) or --val_episodes")


def run_manifest(run_dir: str | Path) -> dict:
    """OUT/manifest.json for OUT/checkpoints/<run>, checked to describe that run."""
    from lerobot_bridge.errors import DatasetError

    run_dir = Path(run_dir)
    path = run_dir.absolute().parent.parent / "manifest.json"
    if not path.is_file():
        raise DatasetError(f"{path}: not found; --run_dir must be OUT/checkpoints/<run_name> of a training "
                           "output folder OUT (the manifest is OUT/manifest.json)")
    manifest = json.loads(path.read_text())
    if manifest.get("run_name") not in (None, run_dir.name):
        raise DatasetError(f"{path} describes run {manifest['run_name']!r}, not {run_dir.name!r} (the"
                           " manifest holds the latest run of that output folder): use --episode FILE")
    for key in ("dataset", "conversion", "arguments"):
        if not manifest.get(key):
            raise DatasetError(f"{path}: no {key!r} section (the run stopped before converting its data)")
    return manifest


def validation_source_episodes(manifest: dict) -> list[int]:
    """The run's validation episodes (manifest split.val_episodes: output indices) as source episode_index."""
    from lerobot_bridge.errors import DatasetError

    val = (manifest.get("split") or {}).get("val_episodes")
    if not val:
        raise DatasetError("the run has no validation episodes (1 episode or --val_ratio 0); "
                           "use --source_episode N")
    source = {e["output_index"]: e["source_index"] for e in manifest["conversion"]["episodes"]}
    return [source[i] for i in val]


def convert_source_episodes(manifest: dict, source_indices: list[int], out_dir: Path) -> dict[int, Path]:
    """Decode these source episodes of the run's dataset with the run's conversion options.

    LeRobot input: only those episodes are decoded (one bridge EpisodeJob each, built as
    `convert_dataset` builds it). Innate / ACT HDF5 input: the importer converts the folder (no
    video to decode). Returns {source index: episode HDF5 in out_dir}.
    """
    from lerobot_bridge.errors import DatasetError
    from lerobot_bridge.frame_codec import DEFAULT_JPEG_QUALITY

    dataset_path = Path(manifest["dataset"]["path"])
    kind = manifest["dataset"].get("input_kind", "lerobot")
    args = manifest["arguments"]
    options = {k: args.get(k) for k in ("episode_len", "idle_threshold", "max_episodes", "camera_keys",
                                        "camera_names")}
    # Frames stored as training stored them (JPEG at its quality, resized): the same pixels.
    extra = manifest["conversion"].get("extra") or {}
    frame = {"storage": extra.get("storage") or "raw",
             "jpeg_quality": extra.get("jpeg_quality") or DEFAULT_JPEG_QUALITY,
             "image_size": tuple(extra["image_size"]) if extra.get("image_size") else None}
    if not dataset_path.is_dir():
        raise DatasetError(f"{dataset_path}: the run's dataset (manifest dataset.path) is not there; "
                           "pass --episode FILE instead")
    trained = {e["source_index"]: e for e in manifest["conversion"]["episodes"]}
    unknown = [i for i in source_indices if i not in trained]
    if unknown:
        raise DatasetError(f"source episode(s) {unknown} were not in this run's conversion "
                           f"(episode_index values: {sorted(trained)})")
    if kind != "lerobot":
        from lerobot_bridge.innate import convert_innate

        # The importer's extra.image_size is the stored size even when nothing was resized: the
        # option it was given is in extra.options.
        asked = (extra.get("options") or {}).get("image_size")
        frame["image_size"] = tuple(asked) if asked else None
        options.update({k: v for k, v in frame.items() if v is not None})
        if frame["storage"] == "raw":
            options.pop("jpeg_quality")
        result = convert_innate(dataset_path, out_dir, progress=False, **options)
        paths = dict(zip((e.source_index for e in result.episodes), result.hdf5_paths, strict=True))
        return {i: paths[i] for i in source_indices}

    from lerobot_bridge.convert import EpisodeJob, convert_episode
    from lerobot_bridge.dataset import VELOCITY_KEY, open_dataset, select_cameras

    dataset = open_dataset(dataset_path)
    cameras = select_cameras(dataset, options["camera_keys"], options["camera_names"])
    dtypes = {c.key: c.dtype for c in dataset.cameras}
    episodes = {ep.index: ep for ep in dataset.episodes}
    paths = {}
    for i in source_indices:
        if i not in episodes:
            raise DatasetError(f"{dataset_path}: no episode_index {i} (the dataset changed since training?)")
        job = EpisodeJob(
            output_index=trained[i]["output_index"], output_path=out_dir / f"source_episode_{i}.hdf5",
            episode=episodes[i], fps=dataset.fps, codebase_version=dataset.version,
            cameras=[(k, name, dtypes[k]) for k, name in cameras.items()], tasks=dataset.tasks,
            state_dim=dataset.state_dim, action_dim=dataset.action_dim,
            velocity_key=VELOCITY_KEY if dataset.has_velocity else None,
            idle_threshold=float(options["idle_threshold"]), episode_len=int(options["episode_len"]),
            thread_count=0, extra_attrs={"source_dataset": str(dataset.root.name)}, **frame,
        )
        report = convert_episode(job)
        if (report.frames_in, report.frames_out) != (trained[i]["frames_in"], trained[i]["frames_out"]):
            print(f"warning: source episode {i} now gives {report.frames_in} -> {report.frames_out} frames, "
                  f"training converted {trained[i]['frames_in']} -> {trained[i]['frames_out']}: the dataset "
                  "changed since training", file=sys.stderr)
        paths[i] = job.output_path
    return paths


def print_report(label: str, errors: np.ndarray, mode: str, seconds: float, device) -> None:
    ms_per_step = 1000 * seconds / max(len(errors), 1)
    print(f"{label}: {len(errors)} steps, {mode}, {ms_per_step:.1f} ms/step on {device}")
    print("joint  L1 (mean |pred - recorded|, action units)")
    per_joint = errors.mean(axis=0)
    for j, value in enumerate(per_joint):
        print(f"{j:5d}  {value:.6f}")
    print(f"mean   {per_joint.mean():.6f}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m act.policy", description=(
        "Replay recorded episodes through a trained policy and print the per-joint L1 between predicted "
        "and recorded actions: a source episode of the run's dataset (decoded with the run's conversion "
        "options), the run's validation episodes, or an ACT HDF5 episode file."))
    parser.add_argument("--run_dir", required=True, help="OUT/checkpoints/<run_name> directory")
    which = parser.add_mutually_exclusive_group(required=True)
    which.add_argument("--source_episode", type=int, nargs="+", metavar="N",
                       help="episode_index N of the run's dataset (read from OUT/manifest.json)")
    which.add_argument("--val_episodes", action="store_true",
                       help="the run's validation episodes (manifest split.val_episodes)")
    which.add_argument("--episode", help="episode_<i>.hdf5 in upstream ACT's layout; training keeps its "
                       "conversion in OUT/converted_hdf5/ only with --keep_converted_hdf5")
    parser.add_argument("--checkpoint", default="policy_best.ckpt")
    parser.add_argument("--temporal_ensemble", action="store_true")
    parser.add_argument("--query_frequency", type=int, default=None)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--max_steps", type=int, default=0, help="replay only the first N steps (0 = all)")
    args = parser.parse_args(argv)

    from lerobot_bridge.errors import DatasetError

    try:
        runner = ACTRunner.from_run_dir(args.run_dir, checkpoint=args.checkpoint, device=args.device,
                                        temporal_ensemble=args.temporal_ensemble,
                                        query_frequency=args.query_frequency)
        results: list[tuple[str, np.ndarray, float]] = []
        if args.episode is not None:
            episode = Path(args.episode)
            if not episode.is_file():
                raise DatasetError(f"{episode}: episode file not found; {EPISODE_HINT}")
            start = time.perf_counter()
            results.append((f"episode {episode}", replay(runner, episode, args.max_steps),
                            time.perf_counter() - start))
        else:
            manifest = run_manifest(args.run_dir)
            sources = validation_source_episodes(manifest) if args.val_episodes else args.source_episode
            with tempfile.TemporaryDirectory(prefix="act_replay_") as tmp:
                t0 = time.perf_counter()
                paths = convert_source_episodes(manifest, sources, Path(tmp))
                print(f"decoded source episode(s) {sources} of {manifest['dataset']['path']} with the run's "
                      f"conversion options in {time.perf_counter() - t0:.1f} s")
                for i in sources:
                    start = time.perf_counter()
                    results.append((f"source episode {i}", replay(runner, paths[i], args.max_steps),
                                    time.perf_counter() - start))
    except DatasetError as e:
        print(f"error: {e}", file=sys.stderr)
        return DatasetError.exit_code
    except FileNotFoundError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2

    if args.temporal_ensemble:
        mode = f"temporal ensemble (k={TEMPORAL_ENSEMBLE_K})"
    else:
        mode = f"chunks every {runner.query_frequency} steps"
    for label, errors, seconds in results:
        print_report(label, errors, mode, seconds, runner.device)
    if len(results) > 1:
        everything = np.concatenate([errors for _, errors, _ in results])
        print_report(f"all {len(results)} episodes", everything, mode,
                     sum(seconds for _, _, seconds in results), runner.device)
    return 0


if __name__ == "__main__":
    sys.exit(main())
