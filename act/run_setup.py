"""Run preparation: everything checked and done once before training, apart from the CLI.

    validate_args      every usage check that needs no data (flags, files they name, model shape)
    plan_conversion    the input's kind and the converter's fingerprint, from metadata alone
    find_completed_run the identical command's finished run on the same data, before converting
    prepare            convert (or reuse), split, stats, config, prepared.json: what every rank reads

The output folder's names live here too (the conversion folders, the lock, the temporaries a
killed run leaves), beside act.train's names for the files of a run directory. The CLI
(`train_lerobot_to_act.py`) parses, calls these, and launches.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import math
import os
import re
import shutil
from collections import Counter
from pathlib import Path

from act.augment import AugmentConfig
from act.distributed import (
    LauncherEnv,
    LaunchPlan,
    UsageError,
    plan_launch,
    plan_under_launcher,
    rank_batch_sizes,
)
from act.errors import InsufficientSpaceError
from act.manifest import Manifest, sha256_file
from lerobot_bridge.atomic_io import atomic_write_json
from lerobot_bridge.dispatch import ConversionPlan, reusable_conversion
from lerobot_bridge.errors import DatasetError

log = logging.getLogger("train_act")

SUPPORTED_POLICIES = ("ACT",)
# Arguments that do not change what is trained: they may differ when a run is resumed.
NON_DEFINING_ARGS = {
    "input_dir", "output_dir", "gpus", "num_workers", "convert_workers", "resume", "fresh",
    "keep_converted_hdf5", "log_interval", "run_name", "backbone_weights", "prepare_only", "prepare_timeout",
    "tensorboard", "wandb_project", "convert_dir", "skip_space_check",
}


def validate_args(args: argparse.Namespace, cuda_device_count: int,
                  launcher: LauncherEnv | None = None) -> LaunchPlan:
    """Every check that needs no data; raises UsageError with the fix."""
    from lerobot_bridge.options import ConversionOptions

    try:  # the conversion flags, checked by the conversion's own options object
        conversion = ConversionOptions.from_args(args)
    except DatasetError as e:
        raise UsageError(str(e)) from e
    args.camera_keys, args.camera_names = conversion.camera_keys, conversion.camera_names
    args.episodes, args.exclude_episodes = conversion.episodes, conversion.exclude_episodes
    args.image_size = "x".join(map(str, conversion.image_size)) if conversion.image_size else None
    if args.camera_names and not args.camera_keys:
        raise UsageError("--camera_names needs --camera_keys (one name per key, same order)")
    if args.camera_keys and args.camera_names and len(args.camera_keys) != len(args.camera_names):
        raise UsageError(f"--camera_keys has {len(args.camera_keys)} entries and --camera_names "
                         f"{len(args.camera_names)}: give one name per key")
    if args.camera_names and len(set(args.camera_names)) != len(args.camera_names):
        raise UsageError(f"--camera_names must be unique (got {args.camera_names})")
    if args.policy_class != "ACT":
        raise UsageError(f"--policy_class {args.policy_class}: not supported; supported: "
                         f"{', '.join(SUPPORTED_POLICIES)}")
    if args.num_epochs < 0 or args.steps < 0:
        raise UsageError("--num_epochs and --steps must be >= 0")
    if args.num_epochs == 0 and args.steps == 0:
        raise UsageError("--num_epochs 0 needs --steps N (total optimizer steps), or give --num_epochs N")
    if args.num_epochs > 0 and args.steps > 0:
        raise UsageError(f"--steps {args.steps} counts only with --num_epochs 0: add --num_epochs 0 to train "
                         f"for {args.steps} steps, or drop --steps")
    if args.batch_size < 1:
        raise UsageError(f"--batch_size must be >= 1 (got {args.batch_size})")
    from act.config import ACTConfig

    try:  # the model's own shape rules, worded with the flags (dims and cameras come from the data)
        ACTConfig.check("--", chunk_size=args.chunk_size, hidden_dim=args.hidden_dim,
                        dim_feedforward=args.dim_feedforward, nheads=args.nheads, enc_layers=args.enc_layers,
                        dec_layers=args.dec_layers, dropout=args.dropout, kl_weight=args.kl_weight)
    except ValueError as e:
        raise UsageError(str(e)) from e
    if not args.learning_rate > 0:
        raise UsageError(f"--learning_rate must be > 0 (got {args.learning_rate})")
    if args.lr_backbone is None:
        args.lr_backbone = args.learning_rate
    if args.lr_backbone < 0:
        raise UsageError(f"--lr_backbone must be >= 0 (got {args.lr_backbone})")
    if not 0 <= args.val_ratio < 1:
        raise UsageError(f"--val_ratio must be in [0, 1) (got {args.val_ratio})")
    for name in ("save_interval", "num_workers", "convert_workers", "episode_len", "max_episodes",
                 "val_interval", "log_interval", "val_samples"):
        if getattr(args, name) < 0:
            raise UsageError(f"--{name} must be >= 0 (got {getattr(args, name)})")
    if args.resume and args.fresh:
        raise UsageError("--resume and --fresh contradict each other: pick one")
    if args.run_name != "auto" and not re.fullmatch(r"[A-Za-z0-9._-]+", args.run_name):
        raise UsageError(f"--run_name {args.run_name!r}: use letters, digits, '.', '_' and '-' only")
    for name in ("input_dir", "output_dir"):
        if not getattr(args, name):
            raise UsageError(f"--{name} is required (the container's entrypoint passes /data/input and "
                             "/data/output; outside it name the folders)")
    weights = args.backbone_weights
    if weights and weights.lower() != "none" and not Path(weights).expanduser().is_file():
        raise UsageError(f"--backbone_weights {weights}: no such file (expected torchvision's "
                         "resnet18-f37072fd.pth, or 'none' for a random-init backbone)")
    check_paths_apart(Path(args.input_dir), Path(args.output_dir))
    if args.convert_dir:
        check_cache_apart(Path(args.input_dir), Path(args.output_dir), Path(args.convert_dir))
    if args.warmup_steps < 0:
        raise UsageError(f"--warmup_steps must be >= 0 (got {args.warmup_steps})")
    if args.init_from is not None:
        args.init_from = str(resolve_init_checkpoint(args.init_from))
    from act.tracking import missing_tracking_package

    missing = missing_tracking_package(args.tensorboard, args.wandb_project)
    if missing:
        raise UsageError(missing)
    if args.prepare_timeout <= 0:
        raise UsageError(f"--prepare_timeout must be > 0 seconds (got {args.prepare_timeout})")
    if launcher is not None and launcher.world_size > 1 and not args.prepare_only:
        plan = plan_under_launcher(args.gpus, launcher, cuda_device_count)
    else:
        plan = plan_launch(args.gpus, cuda_device_count)
    if args.precision == "bf16" and plan.device_type != "cuda":
        raise UsageError("--precision bf16 needs a CUDA GPU; on the CPU use --precision auto or fp32")
    rank_batch_sizes(args.batch_size, plan.nproc, args.batch_mode)  # raises on batch < processes
    return plan


# --------------------------------------------------------------------------------------------
# Conversion (once, reused when the input and options are unchanged)


CONVERTED_DIR, CONVERTED_TMP_DIR = "converted_hdf5", ".converted_hdf5_tmp"
# What this run writes or deletes under --output_dir; the input may not lie in any of them.
OWNED_OUTPUT_PATHS = (CONVERTED_DIR, CONVERTED_TMP_DIR, "checkpoints", "manifest.json")
TEMP_NAME = re.compile(r"^\..+\.tmp-\d+$")  # lerobot_bridge.atomic_io.temp_path's names


def resolve_init_checkpoint(init_from: str) -> Path:
    """--init_from: a .ckpt file, or a run directory whose policy_best.ckpt is taken."""
    path = Path(init_from).expanduser().absolute()
    if path.is_dir():
        path = path / "policy_best.ckpt"
    if not path.is_file():
        raise UsageError(f"--init_from {init_from}: no such checkpoint ({path}); pass a run directory "
                         "holding policy_best.ckpt, or a .ckpt file")
    return path


def check_init_checkpoint(path: str, cfg) -> None:
    """The fine-tuning start must fit this dataset's model key for key, shape for shape."""
    from act.act_policy import ACTPolicy
    from act.checkpoint import load_checkpoint

    try:
        state = load_checkpoint(path)
    except Exception as e:  # noqa: BLE001 - any unreadable file means the same fix
        raise UsageError(f"--init_from {path}: not a readable policy checkpoint "
                         f"({type(e).__name__}: {e})") from e
    expected = {k: tuple(v.shape) for k, v in ACTPolicy(cfg).state_dict().items()}
    for key, shape in expected.items():
        if key not in state:
            raise UsageError(f"--init_from {path}: has no {key} (expected shape {shape}); it is not an ACT "
                             "policy checkpoint of this architecture")
        if tuple(state[key].shape) != shape:
            raise UsageError(
                f"--init_from {path}: {key} has shape {tuple(state[key].shape)} there and {shape} in this "
                "model "
                f"(state {cfg.state_dim}, action {cfg.action_dim}, cameras {cfg.camera_names}, hidden "
                f"{cfg.hidden_dim}, chunk {cfg.chunk_size}): fine-tune only between the same robot, cameras "
                "and model flags"
            )
    extra = sorted(set(state) - set(expected))
    if extra:
        raise UsageError(f"--init_from {path}: holds keys this model does not have, first {extra[0]}")


def check_paths_apart(input_dir: Path, output_dir: Path) -> None:
    """Refuse an output folder that could overwrite or delete part of the input (and back).

    Reusing a kept conversion (`--input_dir OUT/converted_hdf5 --output_dir OUT`) is the natural
    mistake: this run would replace that folder with its own conversion.
    """
    inp, out = input_dir.resolve(), output_dir.resolve()
    if inp == out or inp in out.parents:
        raise UsageError(f"--output_dir {out} is inside --input_dir {inp}: this run would write into the "
                         "dataset; choose an output folder outside it")
    for name in OWNED_OUTPUT_PATHS:
        owned = out / name
        if inp == owned or owned in inp.parents:
            raise UsageError(
                f"--input_dir {inp} lies in {owned}, which this run writes and replaces under --output_dir "
                f"{out}: pass another --output_dir (or move the folder out of {out} first)"
            )


def check_cache_apart(input_dir: Path, output_dir: Path, cache_dir: Path) -> None:
    """A conversion cache must not lie in the dataset (it would write there) nor hold it, nor be a
    folder the run replaces in its output."""
    inp, out, cache = input_dir.resolve(), output_dir.resolve(), cache_dir.resolve()
    if cache == inp or inp in cache.parents or cache in inp.parents:
        raise UsageError(f"--convert_dir {cache} overlaps --input_dir {inp}: keep the conversion cache "
                         "outside the dataset")
    for name in OWNED_OUTPUT_PATHS:
        owned = out / name
        if cache == owned or owned in cache.parents:
            raise UsageError(f"--convert_dir {cache} lies in {owned}, which the run replaces: pick a "
                             "folder of its own (e.g. OUT/conversion_cache or a shared disk)")


def plan_conversion(args: argparse.Namespace) -> ConversionPlan:
    """Validate the input's metadata and compute the converter's fingerprint; DatasetError if bad."""
    from lerobot_bridge.dispatch import plan_conversion as plan
    from lerobot_bridge.options import ConversionOptions

    return plan(args.input_dir, ConversionOptions.from_args(args))


def convert_input(args: argparse.Namespace, conv_dir: Path, plan: ConversionPlan) -> tuple[object, bool]:
    """ConversionResult for args.input_dir in conv_dir; reuses an earlier identical conversion.

    The converter's own fingerprint decides: computed from the input's metadata before converting
    and compared with the one in the conversion.json an earlier run left (written last, atomically).
    With --convert_dir, conv_dir is the cache entry DIR/<fingerprint>: see convert_into_cache.
    """
    if args.convert_dir:
        return convert_into_cache(args, conv_dir, plan)
    earlier = reusable_conversion(conv_dir, plan.fingerprint)
    if earlier is not None:
        log.info("reusing the conversion in %s (input and options unchanged)", conv_dir)
        return earlier, True
    check_free_space(args, conv_dir, plan)
    if conv_dir.exists():
        shutil.rmtree(conv_dir)
    conv_dir.mkdir(parents=True)
    return run_converter(args, conv_dir, plan), False


def run_converter(args: argparse.Namespace, out_dir: Path, plan: ConversionPlan):
    from lerobot_bridge.dispatch import run_conversion

    return run_conversion(plan, out_dir, workers=args.convert_workers)


def cache_entry(cache_dir: str | Path, fingerprint: str) -> Path:
    """The folder of one conversion in a --convert_dir cache: named by its fingerprint."""
    return Path(cache_dir).absolute() / fingerprint[:24]


def convert_into_cache(args: argparse.Namespace, entry: Path, plan: ConversionPlan) -> tuple[object, bool]:
    """Reuse entry (DIR/<fingerprint>) or convert into it, once for every run sharing the cache.

    One run converts a fingerprint at a time (a lock file beside the entry; the others wait and
    then reuse it). The conversion is written to a temporary folder and renamed to entry when
    complete, so an entry is always whole; what a run finds in the cache it never deletes.
    Temporary folders left by a killed run are removed by the next run holding that lock (their
    writer is dead: nobody else may write there without the lock)."""
    import fcntl
    import socket

    entry.parent.mkdir(parents=True, exist_ok=True)
    lock_path = entry.parent / f".{entry.name}.lock"
    fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            log.info("another run is converting the same data into %s: waiting for it", entry)
            fcntl.flock(fd, fcntl.LOCK_EX)
        earlier = reusable_conversion(entry, plan.fingerprint)
        if earlier is not None:
            log.info("reusing the cached conversion %s (input and options unchanged)", entry)
            return earlier, True
        if entry.exists():
            raise DatasetError(f"{entry}: a cached conversion of this data whose files are incomplete "
                               "or unreadable (removed or changed by hand?); delete that folder to convert "
                               "again")
        for stale in entry.parent.glob(f".{entry.name}.tmp-*"):
            log.info("removing %s, left by a run that was killed while converting", stale)
            shutil.rmtree(stale, ignore_errors=True)
        check_free_space(args, entry.parent, plan)
        tmp = entry.parent / f".{entry.name}.tmp-{socket.gethostname()}-{os.getpid()}"
        tmp.mkdir()
        try:
            result = run_converter(args, tmp, plan)
            os.rename(tmp, entry)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        result.output_dir = str(entry)
        atomic_write_json(entry / "conversion.json", result.to_dict())
        log.info("converted into the cache: %s", entry)
        return result, False
    finally:
        os.close(fd)


def check_free_space(args: argparse.Namespace, target: Path, plan: ConversionPlan) -> None:
    """Refuse (exit 2) before writing when the conversion will not fit where it goes: the converter
    estimates an upper bound on its bytes from the metadata (and a few encoded frames for JPEG)."""
    if args.skip_space_check:
        return
    from lerobot_bridge.dispatch import estimate_conversion_bytes

    needed = estimate_conversion_bytes(plan)
    if needed is None:
        return
    probe = target
    while not probe.exists() and probe.parent != probe:
        probe = probe.parent
    free = shutil.disk_usage(probe).free
    if needed > free:
        raise InsufficientSpaceError(space_message(needed, free, probe, args))
    log.info("conversion needs up to %s; %s free under %s", human_bytes(needed), human_bytes(free), probe)


def human_bytes(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TiB"


def space_message(needed: int, free: int, where: Path, args: argparse.Namespace) -> str:
    shrink = []
    if args.storage == "raw":
        shrink.append("--storage jpeg (about 160x smaller than raw at 480x640, measured)")
    elif args.jpeg_quality > 50:
        shrink.append(f"a lower --jpeg_quality (now {args.jpeg_quality})")
    if not args.image_size:
        shrink.append("--image_size 240x320 (a quarter of 480x640's pixels)")
    shrink.append("fewer episodes (--max_episodes N, --episodes, --exclude_episodes)")
    shrink.append("--convert_dir DIR on a bigger disk")
    return (f"not enough free space to convert {args.input_dir}: the conversion needs up to "
            f"{human_bytes(needed)} ({needed} bytes, an upper bound) under {where}, which has "
            f"{human_bytes(free)} free. Shrink it with {'; '.join(shrink)}; or free space "
            "(--skip_space_check converts anyway)")


def discard_conversion(conv_dir: Path | None, keep: bool, complete_too: bool) -> None:
    """Remove this run's temporary conversion folder: always when it is incomplete (no
    conversion.json), and a complete one too when `complete_too` (a failed run: nothing resumes)."""
    if conv_dir is None or not conv_dir.exists() or (keep and (conv_dir / "conversion.json").exists()):
        return
    if conv_dir.name not in (CONVERTED_DIR, CONVERTED_TMP_DIR):  # a --convert_dir cache entry: never
        return
    if complete_too or not (conv_dir / "conversion.json").exists():
        shutil.rmtree(conv_dir, ignore_errors=True)


# --------------------------------------------------------------------------------------------
# The output folder: one run at a time, no stale temporaries


def lock_output_dir(output_dir: Path) -> int:
    """Hold an exclusive lock on the output folder for this process's lifetime (released at exit,
    even on SIGKILL). A second run on the same folder is refused before it writes anything."""
    import fcntl

    fd = os.open(output_dir, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        holder = ""
        try:
            holder = json.loads((output_dir / "manifest.json").read_text()).get("started_at", "")
        except (OSError, ValueError, AttributeError):
            pass
        raise UsageError(
            f"--output_dir {output_dir} is in use by another training run"
            f"{f' (started {holder})' if holder else ''}: wait for it to end, or pass another --output_dir"
        ) from None
    return fd


def sweep_stale_temporaries(output_dir: Path) -> list[str]:
    """Remove what killed runs left: temporaries of atomic writes (a SIGKILLed checkpoint write
    leaves a ~300 MB `.policy_best.ckpt.tmp-PID`), per-rank error notes, and an incomplete
    temporary conversion. Safe: this process holds the folder's lock, so no run is writing them."""
    removed = []
    folders = [output_dir, *output_dir.glob("checkpoints/*"), output_dir / CONVERTED_DIR,
               output_dir / CONVERTED_TMP_DIR]
    for folder in folders:
        if not folder.is_dir():
            continue
        for path in folder.iterdir():
            if (TEMP_NAME.match(path.name) or path.name.startswith(".worker_error.rank")) and path.is_file():
                path.unlink(missing_ok=True)
                removed.append(str(path))
    tmp_conv = output_dir / CONVERTED_TMP_DIR
    if tmp_conv.is_dir() and not (tmp_conv / "conversion.json").exists():
        shutil.rmtree(tmp_conv, ignore_errors=True)
        removed.append(str(tmp_conv))
    if removed:
        log.info("removed %d leftover(s) of an earlier killed run: %s", len(removed), ", ".join(removed))
    return removed


# --------------------------------------------------------------------------------------------
# Preparing the run (launcher only)


def slug(text: str, limit: int = 32) -> str:
    s = re.sub(r"[^a-z0-9]+", "_", text.lower()).strip("_")
    return s[:limit].strip("_") or "task"


def defining_args(args: argparse.Namespace) -> dict:
    return {k: v for k, v in sorted(vars(args).items()) if k not in NON_DEFINING_ARGS}


def untrained_hold_note(episodes: list, episode_len: int) -> str | None:
    """A warning when idle trimming removed final holds and nothing pads them back.

    Upstream's loss ignores chunk steps past an episode's end, so without its final hold no
    sample teaches the policy to stay still once the task is done, and a chunk executed near
    the end runs untrained actions (the closed-loop demo drifted off its goal this way).
    episodes: the conversion's EpisodeReports.
    """
    trimmed = [e for e in episodes if e.idle_trimmed_end > 0]
    if episode_len > 0 or not trimmed:
        return None
    longest = max(e.frames_out for e in episodes)
    return (
        f"idle trimming removed the final hold of {len(trimmed)} of {len(episodes)} episodes: chunk "
        "steps past an episode's end are not trained, so the policy is not taught to hold still "
        f"once the task is done. To keep a trained hold pass --episode_len {longest} (the longest "
        "trimmed episode; shorter ones are padded with their last frame) or --idle_threshold 0"
    )


def run_digest(args: argparse.Namespace) -> str:
    text = json.dumps(defining_args(args), sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:8]


def resolve_run_name(args: argparse.Namespace, task_name: str) -> str:
    if args.run_name != "auto":
        return args.run_name
    return f"{slug(task_name)}_{run_digest(args)}"


def find_completed_run(args: argparse.Namespace, output_dir: Path, fingerprint: str) -> Path | None:
    """The run directory of this exact command's completed run on this exact data, found
    before converting anything (the automatic run name needs the dataset's task, which only the
    conversion reads, so look for the argument digest among the existing runs)."""
    from act.train import COMPLETE_NAME, PREPARED_NAME

    if args.fresh:
        return None
    checkpoints = output_dir / "checkpoints"
    if args.run_name != "auto":
        candidates = [checkpoints / args.run_name]
    elif args.task_name != "auto":
        candidates = [checkpoints / f"{slug(args.task_name)}_{run_digest(args)}"]
    else:
        candidates = sorted(checkpoints.glob(f"*_{run_digest(args)}"))
    for run_dir in candidates:
        if not (run_dir / COMPLETE_NAME).is_file():
            continue
        try:
            prepared = json.loads((run_dir / PREPARED_NAME).read_text())
        except (OSError, ValueError):
            continue
        if prepared.get("defining_args") == defining_args(args) and \
                prepared.get("dataset_fingerprint", fingerprint) == fingerprint:
            return run_dir
    return None


def auto_interval(total: int, times: int, cap: int | None = None) -> int:
    n = max(1, math.ceil(total / times))
    return min(n, cap) if cap else n


def resolve_num_workers(requested: int, plan: LaunchPlan) -> int:
    if requested > 0:
        return requested
    if plan.device_type != "cuda":
        return 0
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(0, min(8, cpus // plan.nproc - 1))


def run_state(run_dir: Path) -> str:
    from act.train import COMPLETE_NAME, RESUME_NAME

    if (run_dir / COMPLETE_NAME).exists():
        return "completed"
    if (run_dir / RESUME_NAME).exists():
        return "resumable"
    return "new"


def keeps_conversion(args: argparse.Namespace) -> bool:
    """Whether the run leaves its conversion behind (kept in OUT, or a cache entry: never removed)."""
    return bool(args.keep_converted_hdf5 or args.convert_dir)


def conversion_dir(args: argparse.Namespace, fingerprint: str) -> Path:
    if args.convert_dir:
        return cache_entry(args.convert_dir, fingerprint)
    name = CONVERTED_DIR if args.keep_converted_hdf5 else CONVERTED_TMP_DIR
    return Path(args.output_dir).absolute() / name


def check_finite_stats(stats: dict, input_dir: str) -> None:
    import numpy as np

    for key, value in stats.items():
        bad = np.flatnonzero(~np.isfinite(np.asarray(value, dtype=np.float64)))
        if bad.size:
            raise DatasetError(f"{input_dir}: dataset statistic {key} is not finite at component(s) "
                               f"{bad[:8].tolist()}: the data holds NaN/Inf or values too large for float32")


def prepare(args: argparse.Namespace, plan: LaunchPlan, manifest: Manifest, conv_plan: ConversionPlan,
            conv_dir: Path):
    """Convert, split, stats, config: everything done once. Returns the PreparedRun."""
    import numpy as np

    from act.config import ACTConfig
    from act.data import read_all_qpos_action, read_episode_index, split_episodes, validation_samples
    from act.stats import compute_stats, save_stats
    from act.train import PREPARED_NAME, PreparedRun

    output_dir = Path(args.output_dir).absolute()
    result, reused = convert_input(args, conv_dir, conv_plan)
    paths = [str(p) for p in result.hdf5_paths]
    tasks = Counter(e.task for e in result.episodes)
    task_name = tasks.most_common(1)[0][0] if args.task_name == "auto" and tasks else args.task_name
    index = read_episode_index(paths, result.camera_names)
    if index.num_frames < 2:
        raise DatasetError(
            f"{args.input_dir}: only {index.num_frames} frame in all after conversion (--max_episodes "
            f"{args.max_episodes}, --episode_len {args.episode_len}, idle trimming --idle_threshold "
            f"{args.idle_threshold}); training needs at least 2 frames"
        )
    conversion_warnings = list(getattr(result, "warnings", []) or [])
    manifest.update(
        task_name=task_name,
        dataset={
            "path": str(Path(args.input_dir).absolute()),
            "input_kind": result.input_kind,
            "codebase_version": result.codebase_version,
            "fps": result.fps,
            "episodes": len(result.episodes),
            "episodes_in_source": result.extra.get("total_episodes_in_source", len(result.episodes)),
            "frames": result.total_frames_out,
            "frames_in_source_episodes": result.total_frames_in,
            "fingerprint": result.fingerprint,
            "tasks": dict(tasks),
            "image_shapes": {k: list(v) for k, v in index.image_shapes.items()},
        },
        conversion={**result.to_dict(), "reused": reused,
                    "kept": keeps_conversion(args), "cache": bool(args.convert_dir),
                    "directory": str(conv_dir)},
        cameras=dict(result.cameras),
        state_dim=result.state_dim,
        action_dim=result.action_dim,
        state_names=result.state_names,
        action_names=result.action_names,
    )

    run_name = resolve_run_name(args, task_name)
    run_dir = output_dir / "checkpoints" / run_name
    state = run_state(run_dir)
    if args.fresh and run_dir.exists():
        log.info("--fresh: removing the earlier run in %s", run_dir)
        shutil.rmtree(run_dir)
        state = "new"
    manifest.update(run_name=run_name, run_dir=str(run_dir))
    prepared_path = run_dir / PREPARED_NAME
    earlier: dict = {}
    if state != "new":
        try:
            earlier = json.loads(prepared_path.read_text()) if prepared_path.exists() else {}
        except (OSError, ValueError) as e:
            raise UsageError(f"{prepared_path}: unreadable ({e}); add --fresh to start the run over") from e
        if earlier.get("dataset_fingerprint", result.fingerprint) != result.fingerprint:
            raise UsageError(
                f"{run_dir} holds a {'completed' if state == 'completed' else 'interrupted'} run trained on "
                f"other data (dataset fingerprint {earlier['dataset_fingerprint'][:12]} then, "
                f"{result.fingerprint[:12]} now): add --fresh to train this data in its place, or pass "
                "another --run_name or --output_dir"
            )
    if state == "completed":
        if args.resume:
            raise UsageError(f"--resume: the run in {run_dir} already completed; nothing to resume "
                             "(use --fresh to train again, or another --run_name)")
        raise UsageError(f"{run_dir} holds a completed run of other arguments with the same name: add "
                         "--fresh to replace it, or pass another --run_name")
    if args.resume and state != "resumable":
        raise UsageError(f"--resume: no interrupted run to resume in {run_dir}; drop --resume to start it")
    resume = state == "resumable"
    if resume:
        diff = {k: (earlier.get("defining_args", {}).get(k), v) for k, v in defining_args(args).items()
                if earlier.get("defining_args", {}).get(k) != v}
        if diff:
            raise UsageError(
                f"{run_dir} holds an interrupted run trained with different arguments "
                f"({', '.join(f'--{k}: {a!r} then, {b!r} now' for k, (a, b) in diff.items())}): "
                "repeat the original command to resume, or add --fresh to start over"
            )
    run_dir.mkdir(parents=True, exist_ok=True)

    train_ids, val_ids = split_episodes(index.num_episodes, args.val_ratio)
    notes = []
    hold_note = untrained_hold_note(result.episodes, args.episode_len)
    if hold_note:
        log.warning(hold_note)
        notes.append(hold_note)
    notes.extend(conversion_warnings)  # the bridge logged them already
    if not val_ids:
        notes.append("no validation split (1 episode or --val_ratio 0): policy_best.ckpt = policy_last.ckpt")
    sizes = rank_batch_sizes(args.batch_size, plan.nproc, args.batch_mode)
    global_batch = sum(sizes)
    steps_per_epoch = math.ceil(len(train_ids) / global_batch)
    if args.num_epochs > 0:
        num_epochs, total_steps = args.num_epochs, args.num_epochs * steps_per_epoch
    else:
        total_steps, num_epochs = args.steps, math.ceil(args.steps / steps_per_epoch)
    if resume and earlier.get("global_batch") not in (None, global_batch):
        raise UsageError(f"{run_dir} was trained with a global batch of {earlier['global_batch']}, now "
                         f"{global_batch} (--batch_mode fixed_per_gpu with other --gpus): use the same GPUs, "
                         "or --fresh")

    qpos_list, action_list = read_all_qpos_action(paths)
    stats = compute_stats(qpos_list, action_list)
    check_finite_stats(stats, args.input_dir)
    save_stats(stats, run_dir / "dataset_stats.pkl")
    cfg = ACTConfig(
        state_dim=index.state_dim, action_dim=index.action_dim, camera_names=index.camera_names,
        chunk_size=args.chunk_size, hidden_dim=args.hidden_dim, dim_feedforward=args.dim_feedforward,
        nheads=args.nheads, enc_layers=args.enc_layers, dec_layers=args.dec_layers, dropout=args.dropout,
        kl_weight=args.kl_weight, use_all_decoder_layers=args.use_all_decoder_layers,
        image_size=list(next(iter(index.image_shapes.values()))[:2]) if index.image_shapes else None,
    )
    if args.init_from and not resume:
        check_init_checkpoint(args.init_from, cfg)
    cfg.save_json(run_dir / "policy_config.json")
    val_interval = args.val_interval or auto_interval(num_epochs, 50)
    log_interval = args.log_interval or auto_interval(total_steps, 100, cap=100)
    prep = PreparedRun(
        output_dir=str(output_dir), run_dir=str(run_dir), run_name=run_name,
        manifest_path=str(manifest.path), hdf5_paths=paths, lengths=index.lengths,
        camera_names=index.camera_names, train_ids=train_ids, val_ids=val_ids,
        device_type=plan.device_type, rank_batch_sizes=sizes, steps_per_epoch=steps_per_epoch,
        num_epochs=num_epochs, total_steps=total_steps, val_interval=val_interval,
        log_interval=log_interval, save_interval=args.save_interval, seed=args.seed,
        learning_rate=args.learning_rate, lr_backbone=args.lr_backbone, precision=args.precision,
        num_workers=resolve_num_workers(args.num_workers, plan), backbone_weights=args.backbone_weights,
        resume=resume, notes=notes, gpu_ids=list(plan.gpu_ids), val_samples=max(1, args.val_samples),
        lr_schedule=args.lr_schedule, warmup_steps=args.warmup_steps, init_from=args.init_from,
        tensorboard=args.tensorboard, wandb_project=args.wandb_project, augment=args.augment,
    )
    data = prep.__dict__ | {"defining_args": defining_args(args), "global_batch": global_batch,
                            "dataset_fingerprint": result.fingerprint}
    atomic_write_json(prepared_path, data)

    val_pairs = validation_samples(val_ids, index.lengths, prep.val_samples)
    manifest.update(
        split={
            "train_episodes": train_ids, "val_episodes": val_ids,
            "split_seed": "fixed (0), independent of --seed",
            "val_ratio": args.val_ratio, "validation_samples": len(val_pairs),
            "validation_samples_note": "fixed (episode, t) pairs, evenly spaced over each validation episode",
        },
        stats={k: np.asarray(v).tolist() for k, v in stats.items() if k != "example_qpos"},
        notes=manifest.data.get("notes", []) + notes,
        plan={"epochs": num_epochs, "steps": total_steps, "steps_per_epoch": steps_per_epoch,
              "global_batch": global_batch, "per_rank_batch": sizes, "batch_mode": args.batch_mode,
              "world_size": plan.nproc, "device": plan.device_type, "gpu_ids": list(plan.gpu_ids),
              "backend": plan.backend, "val_interval_epochs": val_interval,
              "log_interval_steps": log_interval,
              "dataloader_workers_per_rank": prep.num_workers},
        resumed=resume,
        augmentation=AugmentConfig().to_dict() if args.augment else None,
        schedule={"lr_schedule": args.lr_schedule, "warmup_steps": args.warmup_steps,
                  "learning_rate": args.learning_rate, "lr_backbone": args.lr_backbone},
        init_from=({"path": args.init_from, "sha256": sha256_file(args.init_from)}
                   if args.init_from else None),
    )
    manifest.write()
    if resume:
        log.info("resuming the interrupted run in %s", run_dir)
    return prep
