"""Innate skill directories and plain upstream-ACT HDF5 folders -> our ACT HDF5 episodes.

Innate robots record a skill as a folder (`~/skills/<name>/`) with `metadata.json` and
`data/episode_N.h5`. Two episode layouts exist and both are accepted; which one was found
is recorded in `ConversionResult.extra["layouts"]`:

- "observations" (what the recorder writes; innate-inc/innate-os
  `ros2_ws/src/brain/manipulation/src/episode_data.cpp`, `EpisodeData::create_file_and_datasets`
  and `EpisodeData::finalize`): `/observations/qpos` (T, 6) float64, `/observations/qvel`,
  `/observations/images/camera_1` (main) and `camera_2` (arm) uint8 (T, H, W, 3), `/action`
  (T, A + 2) float64 whose two trailing columns are written by `finalize()`: a progress ramp
  i / (T - 1) and a termination flag (1 on the last 10 steps, all ones when T < 10), and
  `/timestamps/...`. Images are OpenCV `cv::Mat`s, i.e. BGR: the runtime
  (`manipulation/manipulation_server.py`, `_run_inference_once`) says "Keep BGR + INTER_AREA to
  match the training pipeline (recorder -> H5 -> webdataset)".
- "top_level" (docs.innate.bot): `qpos`, `qvel`, `action`, `images/main_camera`,
  `images/arm_camera` at the root, RGB frames: Innate's documentation describes this layout
  as RGB (as reported in audit issue 12; the recorder code above writes the other layout).

The same "observations" layout without Innate metadata is upstream ACT's own episode format
(`episode_{i}.hdf5`, RGB): a plain folder of those converts too (`input_kind="act_hdf5"`).

Colour order (`color_order`, default "auto"): "top_level" layout -> RGB (the docs), the
"observations" layout in an Innate skill -> BGR (the recorder), a plain ACT HDF5 folder -> RGB.
"rgb" / "bgr" force one order for every episode. The order used per layout is logged and
recorded in `extra["color_order_by_layout"]`; `extra["converted_bgr_to_rgb"]` is True when any
episode's frames were swapped (the output is always RGB).

Checked before anything is written: every episode's header and its qpos / qvel / action
values (NaN or Inf refused, naming file, field, row and column), the kept cameras' frame sizes
(all equal, unless `image_size` resizes them; mixed sizes name every camera and its HxW), and
`data/dataset_metadata.json` (invalid JSON or a non-numeric `data_frequency` refused: fps would
be wrong). The skill's own `metadata.json` is not read for training (only the Innate export
updates it): a broken one is a warning in `ConversionResult.warnings`.

What the conversion does, once, while streaming frames in blocks (episodes are up to 1800
frames of 480x640 per camera, ~1.6 GB each, so nothing holds a whole camera in memory):
- BGR -> RGB where the source is BGR (our model and upstream ACT see RGB; the Innate export
  folds the runtime's BGR back into the first convolution, see `act/export_innate.py`).
- The two trailing action columns are detected by content (progress ramp + 0/1 flag), kept by
  default, dropped with `keep_extra_action_columns=False`. Kept because Innate's runtime reads
  action[8] as progress for early termination (innate-os `manipulation_server.py`,
  `_run_inference_once`) and Innate's own trainer trains on all 10 columns (innate-inc/ACT
  `act_test/data_utils.py`, `EpisodicHDF5DatasetRAM`: ACTION_DIM = 10, `action` read as
  recorded, observation t paired with action[t : t + chunk]). Idle trimming looks at the other
  columns only (the ramp changes every step and would hide every idle run).
- Episodes whose entry in `data/dataset_metadata.json` says they failed are skipped unless
  `include_failures=True`. The recorder code we could read (`src/task_manager.cpp`,
  `TaskManager::add_episode`) writes `episode_id`, `file_name`, `start_timestamp`,
  `end_timestamp` and no outcome; docs/FORMATS.md section 3 names a per-episode `outcome`. We accept
  `outcome` / `status` / `result` strings ("failure", "failed", "fail", "unsuccessful") and
  `success: false`; this could not be checked against a real Innate recording.
- `episode_len`, `idle_threshold` (the bridge's `idle_range`), `max_episodes`, `camera_keys`,
  `camera_names` mean what they mean for LeRobot inputs; `conversion.json` and stale-file
  removal in the output folder too.
- `image_size=(H, W)` resizes frames with area averaging (Innate's runtime feeds 224x224
  frames resized with OpenCV INTER_AREA; the ones written here are the same box filter, not
  checked byte-for-byte against OpenCV, which is not a dependency).

Output: `episode_{i}.hdf5` in upstream ACT's layout (docs/FORMATS.md 2.1), attr `sim=True` (the
recorder pairs each observation with the command of the same tick), written by the bridge's
`EpisodeWriter` (temporary name, renamed when complete).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np

from lerobot_bridge.convert import (
    EPISODE_FILE_OVERHEAD,
    JPEG_SAMPLE_FRAMES,
    JPEG_SIZE_MARGIN,
    EpisodeProgress,
    check_conversion_options,
    discard_outputs,
    idle_range,
    save_result,
)
from lerobot_bridge.dispatch import (  # noqa: F401 - detect_input_kind: its old home, kept importable
    EPISODE_FILE_RE as _EPISODE_RE,
)
from lerobot_bridge.dispatch import (
    detect_input_kind,
)
from lerobot_bridge.dispatch import (
    episode_dir as _episode_dir,
)
from lerobot_bridge.dispatch import (
    episode_files as _episode_files,
)
from lerobot_bridge.errors import DatasetError
from lerobot_bridge.frame_codec import DEFAULT_JPEG_QUALITY, JpegEncoder
from lerobot_bridge.hdf5_writer import STORAGE_MODES, EpisodeWriter, remove_stale_episodes
from lerobot_bridge.parquet_io import first_non_finite
from lerobot_bridge.selection import select_episodes
from lerobot_bridge.types import ConversionResult, EpisodeReport

# Training Manager / Innate trainer hyperparameter names -> our CLI's names. Innate's
# Training Manager lists LEARNING_RATE, LEARNING_RATE_BACKBONE, BATCH_SIZE, MAX_STEPS,
# CHUNK_SIZE, NUM_WORKERS, WORLD_SIZE (docs/FORMATS.md 3); innate-inc/ACT
# `act_test/train_innate_dist.py` spells them --learning_rate, --learning_rate_backbone,
# --batch_size, --max_steps, --chunk_size, --num_workers. Only names that map cleanly are
# here; `rewrite_innate_args` applies them (and the extra flag a mapping needs).
INNATE_ARG_ALIASES: dict[str, str] = {
    "--max_steps": "--steps",  # also sets --num_epochs 0: our --steps counts only then
    "--learning_rate_backbone": "--lr_backbone",
    "--lr_backbone": "--lr_backbone",
    "--world_size": "--gpus",  # N GPUs -> GPU ids 0..N-1
    "--chunk_size": "--chunk_size",
    "--learning_rate": "--learning_rate",
    "--num_workers": "--num_workers",
}
# Flags an alias implies, inserted before the rewritten flag (a later explicit flag wins).
INNATE_ARG_IMPLIES: dict[str, list[str]] = {"--max_steps": ["--num_epochs", "0"]}

INNATE_CAMERA_ORDER = ("camera_1", "camera_2", "main_camera", "arm_camera")
COLOR_ORDERS = ("auto", "rgb", "bgr")
# color_order="auto": the source channel order per (input kind, layout), and why.
AUTO_COLOR_ORDER = {
    ("innate", "observations"): ("bgr", "Innate recorder layout: OpenCV BGR frames"),
    ("innate", "top_level"): ("rgb", "documented Innate layout: RGB per Innate's docs"),
    ("act_hdf5", "observations"): ("rgb", "upstream ACT episodes are RGB"),
    ("act_hdf5", "top_level"): ("rgb", "documented Innate layout: RGB per Innate's docs"),
}
EXTRA_ACTION_COLUMNS = ("progress", "termination")
_FAILURE_WORDS = {"failure", "failed", "fail", "unsuccessful", "failed_episode"}
_BLOCK = 64  # frames per streamed block
IMPORTER_VERSION = "2"  # in the fingerprint: bump when the output for the same input and options changes

log = logging.getLogger(__name__)


def rewrite_innate_args(argv: list[str]) -> list[str]:
    """Rewrite Innate Training Manager flags into ours (`--flag v` and `--flag=v`).

    `--world_size N` becomes `--gpus 0,...,N-1` (our --gpus takes GPU ids); `--max_steps N`
    becomes `--num_epochs 0 --steps N`. Other arguments pass through untouched.
    """
    out: list[str] = []
    i = 0
    while i < len(argv):
        name, eq, value = argv[i].partition("=")
        if name not in INNATE_ARG_ALIASES:
            out.append(argv[i])
            i += 1
            continue
        if not eq:
            if i + 1 >= len(argv):  # no value: let the parser report it under our name
                out.append(INNATE_ARG_ALIASES[name])
                break
            value = argv[i + 1]
            i += 1
        i += 1
        if name == "--world_size" and value.isdigit() and int(value) > 0:
            value = ",".join(str(g) for g in range(int(value)))
        out += [*INNATE_ARG_IMPLIES.get(name, []), INNATE_ARG_ALIASES[name], value]
    return out




# ---------------------------------------------------------------------------------------
# One source episode: where its arrays live, checked against what we need.
# ---------------------------------------------------------------------------------------


@dataclass
class SourceEpisode:
    """One source episode file: where its arrays live (either layout) and their sizes."""

    index: int
    path: Path
    layout: str  # "observations" | "top_level"
    qpos_key: str
    qvel_key: str | None
    action_key: str
    camera_keys: list[str]  # HDF5 paths, in camera order
    length: int
    state_dim: int
    action_dim: int
    image_shape: tuple[int, int]  # (H, W) of the first camera in camera_keys
    has_extra_columns: bool = False
    camera_shapes: dict[str, tuple[int, int]] | None = None  # HDF5 path -> (H, W)


def _inspect_episode(index: int, path: Path) -> SourceEpisode:
    try:
        f = h5py.File(path, "r")
    except OSError as e:
        raise DatasetError(f"{path}: cannot open as HDF5 ({e})") from e
    with f:
        if "observations" in f and "qpos" in f["observations"]:
            layout, qpos_key, images_group = "observations", "observations/qpos", "observations/images"
            qvel_key = "observations/qvel" if "qvel" in f["observations"] else None
        elif "qpos" in f:
            layout, qpos_key, images_group = "top_level", "qpos", "images"
            qvel_key = "qvel" if "qvel" in f else None
        else:
            raise DatasetError(
                f"{path}: field 'observations/qpos' (recorder / upstream ACT layout) or 'qpos' "
                "(documented Innate layout) is missing; one of them must hold the (T, D) joint positions"
            )
        if "action" not in f:
            raise DatasetError(f"{path}: field 'action' is missing; expected a (T, A) array of commands")
        qpos, action = f[qpos_key], f["action"]
        if qpos.ndim != 2 or not np.issubdtype(qpos.dtype, np.number):
            raise DatasetError(
                f"{path}: field '{qpos_key}' has shape {qpos.shape} {qpos.dtype}; expected (T, D) numbers"
            )
        if action.ndim != 2 or not np.issubdtype(action.dtype, np.number):
            raise DatasetError(
                f"{path}: field 'action' has shape {action.shape} {action.dtype}; expected (T, A) numbers"
            )
        length = qpos.shape[0]
        if action.shape[0] != length:
            raise DatasetError(
                f"{path}: field 'action' has {action.shape[0]} rows but '{qpos_key}' has {length}; "
                "expected one action per observation"
            )
        if length == 0:
            raise DatasetError(f"{path}: field '{qpos_key}' has 0 rows; expected a recorded episode")
        if images_group not in f or not isinstance(f[images_group], h5py.Group) or len(f[images_group]) == 0:
            raise DatasetError(
                f"{path}: group '{images_group}' is missing or empty; expected one (T, H, W, 3) uint8 "
                "dataset per camera"
            )
        names = list(f[images_group].keys())
        known = [n for n in INNATE_CAMERA_ORDER if n in names]
        names = known + sorted(n for n in names if n not in known)  # main camera first
        camera_keys = [f"{images_group}/{n}" for n in names]
        camera_shapes: dict[str, tuple[int, int]] = {}
        for key in camera_keys:
            ds = f[key]
            if not isinstance(ds, h5py.Dataset) or ds.ndim != 4 or ds.shape[-1] != 3 or ds.dtype != np.uint8:
                shape = getattr(ds, "shape", None)
                dtype = getattr(ds, "dtype", None)
                raise DatasetError(
                    f"{path}: field '{key}' has shape {shape} {dtype}; expected (T, H, W, 3) uint8 frames"
                )
            if ds.shape[0] != length:
                raise DatasetError(
                    f"{path}: field '{key}' has {ds.shape[0]} frames but '{qpos_key}' has {length} rows"
                )
            # Sizes across cameras are compared once the cameras to keep are known (_plan).
            camera_shapes[key] = (int(ds.shape[1]), int(ds.shape[2]))
        action_values = action[:]
        fields = [(qpos_key, qpos[:]), ("action", action_values)]
        if qvel_key and f[qvel_key].shape == qpos.shape:
            fields.append((qvel_key, f[qvel_key][:]))
        for name, values in fields:
            _check_finite(path, name, values)
        return SourceEpisode(
            index=index,
            path=path,
            layout=layout,
            qpos_key=qpos_key,
            qvel_key=qvel_key if qvel_key and f[qvel_key].shape == qpos.shape else None,
            action_key="action",
            camera_keys=camera_keys,
            length=length,
            state_dim=qpos.shape[1],
            action_dim=action.shape[1],
            image_shape=camera_shapes[camera_keys[0]],
            has_extra_columns=has_extra_action_columns(action_values),
            camera_shapes=camera_shapes,
        )


def _check_finite(path: Path, name: str, values: np.ndarray) -> None:
    """NaN/Inf in qpos, qvel or action would poison the normalisation statistics and training:
    refuse them, naming the file, field, row and column."""
    if not np.issubdtype(values.dtype, np.floating):
        return
    found = first_non_finite(values)
    if found is None:
        return
    row, column, value, count = found
    raise DatasetError(
        f"{path}: field '{name}' row {row} column {column} is {value}; expected finite numbers "
        f"({count} non-finite value(s) in '{name}')"
    )


def recorded_episodes(root: Path) -> tuple[list[SourceEpisode], dict]:
    """A skill directory's (or ACT folder's) episodes not marked failed in dataset_metadata.json,
    inspected, in index order, and that metadata ({} when absent). No episode files: ([], {})."""
    files = _episode_files(_episode_dir(root)) if root.is_dir() else []
    meta_path, meta = _read_dataset_metadata(root) if files else (None, {})
    failed = _failed_episode_indices(meta_path, meta)
    return [_inspect_episode(i, p) for i, p in files if i not in failed], meta


def has_extra_action_columns(action: np.ndarray) -> bool:
    """True when the last two columns are the recorder's progress ramp and termination flag.

    `EpisodeData::finalize` writes progress = i / (T - 1) (0 when T == 1) and termination = 1 on
    the last 10 steps (every step when T < 10). Checked by value, so a robot whose real last
    two commands happen to look like that is the only false positive, and it cannot happen
    by accident over a whole episode.
    """
    if action.ndim != 2 or action.shape[1] < 3:
        return False
    t = action.shape[0]
    ramp = np.arange(t, dtype=np.float64) / (t - 1) if t > 1 else np.zeros(1)
    term = np.zeros(t)
    term[max(0, t - 10) :] = 1.0
    return bool(np.allclose(action[:, -2], ramp, atol=1e-6) and np.array_equal(action[:, -1], term))


# ---------------------------------------------------------------------------------------
# dataset_metadata.json: failures and the recording frequency.
# ---------------------------------------------------------------------------------------


def _read_dataset_metadata(root: Path) -> tuple[Path | None, dict]:
    for p in (root / "data" / "dataset_metadata.json", root / "dataset_metadata.json"):
        if p.is_file():
            if p.stat().st_size == 0:  # the recorder treats an empty file as "no metadata yet" too
                return p, {}
            try:
                data = json.loads(p.read_text())
            except (json.JSONDecodeError, UnicodeDecodeError) as e:
                raise DatasetError(f"{p}: not valid JSON ({e})") from e
            if not isinstance(data, dict):
                raise DatasetError(f"{p}: top level is {type(data).__name__}; expected a JSON object")
            episodes = data.get("episodes", [])
            if not isinstance(episodes, list):
                raise DatasetError(f"{p}: field 'episodes' is {type(episodes).__name__}; expected a list")
            freq = data.get("data_frequency")
            # The training fps comes from here: a string or a negative number must not become a
            # crash later or a silently wrong rate.
            if freq is not None and (isinstance(freq, bool) or not isinstance(freq, int | float) or freq < 0):
                raise DatasetError(
                    f"{p}: field 'data_frequency' is {freq!r}; expected the recording rate in Hz "
                    "(a positive number), or leave it out"
                )
            return p, data
    return None, {}


def _skill_metadata_warning(root: Path) -> str | None:
    """The skill's metadata.json is not needed to train (only the Innate export rewrites its
    `execution` block), so a broken one is a warning here, not an error."""
    path = root / "metadata.json"
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        return f"{path}: not valid JSON ({e}); conversion does not need it, but the Innate export will fail"
    if not isinstance(data, dict):
        return (
            f"{path}: top level is {type(data).__name__}; expected a JSON object (conversion does not "
            "need it, but the Innate export will fail)"
        )
    return None


def _is_failure(entry: dict) -> bool:
    if entry.get("success") is False:
        return True
    for key in ("outcome", "status", "result"):
        value = entry.get(key)
        if isinstance(value, str) and value.strip().lower() in _FAILURE_WORDS:
            return True
    return False


def _failed_episode_indices(meta_path: Path | None, meta: dict) -> set[int]:
    failed: set[int] = set()
    for i, entry in enumerate(meta.get("episodes", [])):
        if not isinstance(entry, dict):
            raise DatasetError(
                f"{meta_path}: field 'episodes[{i}]' is {type(entry).__name__}; expected an object"
            )
        if not _is_failure(entry):
            continue
        m = _EPISODE_RE.match(str(entry.get("file_name", "")))
        if m:
            failed.add(int(m.group(1)))
        elif isinstance(entry.get("episode_id"), int):
            failed.add(entry["episode_id"])
        else:
            raise DatasetError(
                f"{meta_path}: field 'episodes[{i}]' marks a failure but names no episode; expected "
                "'file_name' (episode_N.h5) or an integer 'episode_id'"
            )
    return failed


# ---------------------------------------------------------------------------------------
# Frame processing and trimming.
# ---------------------------------------------------------------------------------------


def area_weights(n_in: int, n_out: int) -> np.ndarray:
    """(n_out, n_in) box-filter weights: each output pixel averages the input it covers."""
    scale = n_in / n_out
    w = np.zeros((n_out, n_in), dtype=np.float64)
    for o in range(n_out):
        lo, hi = o * scale, (o + 1) * scale
        for i in range(int(np.floor(lo)), min(n_in, int(np.ceil(hi)))):
            w[o, i] = min(hi, i + 1) - max(lo, i)
    return (w / w.sum(axis=1, keepdims=True)).astype(np.float32)


def resize_area(frames: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """(N, H, W, 3) uint8 -> (N, h, w, 3) uint8 by area averaging (rounded to nearest)."""
    n, h, w, _ = frames.shape
    if (h, w) == tuple(size):
        return frames
    wy, wx = area_weights(h, size[0]), area_weights(w, size[1])
    out = np.einsum("yh,nhwc,xw->nyxc", wy, frames.astype(np.float32), wx, optimize=True)
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def _source_rows(start: int, end: int, episode_len: int) -> tuple[np.ndarray, int, int]:
    """Source row for each output row (padding repeats the last row), padded, truncated."""
    rows = np.arange(start, end)
    if episode_len <= 0:
        return rows, 0, 0
    if rows.size >= episode_len:
        return rows[:episode_len], 0, rows.size - episode_len
    pad = episode_len - rows.size
    return np.concatenate([rows, np.full(pad, rows[-1])]), pad, 0


# ---------------------------------------------------------------------------------------
# Writing one ACT episode.
# ---------------------------------------------------------------------------------------


def _write_episode(
    ep: SourceEpisode,
    out_path: Path,
    camera_names: list[str],
    *,
    action_cols: slice,
    rows: np.ndarray,
    bgr_to_rgb: bool,
    image_size: tuple[int, int] | None,
    attrs: dict,
    storage: str = "raw",
    jpeg_quality: int = DEFAULT_JPEG_QUALITY,
) -> None:
    """Stream one source episode into `out_path` through the bridge's atomic EpisodeWriter
    (frames resized here, then stored raw or as JPEG rows by the writer)."""
    contiguous = bool(np.all(np.diff(rows) == 1))
    writer = EpisodeWriter(out_path, int(rows.size), sim=True, attrs=attrs, storage=storage,
                           jpeg_quality=jpeg_quality)
    with h5py.File(ep.path, "r") as src, writer as w:
        qpos = src[ep.qpos_key][:][rows]
        qvel = src[ep.qvel_key][:][rows] if ep.qvel_key else None
        w.write_lowdim(qpos=qpos, action=src[ep.action_key][:, action_cols][rows], qvel=qvel)
        for key, name in zip(ep.camera_keys, camera_names, strict=True):
            src_ds = src[key]
            for b in range(0, rows.size, _BLOCK):
                block_rows = rows[b : b + _BLOCK]
                if contiguous:  # one slice read, no fancy indexing
                    frames = src_ds[int(block_rows[0]) : int(block_rows[-1]) + 1]
                else:  # padding repeats rows: read each once, then expand
                    uniq, inverse = np.unique(block_rows, return_inverse=True)
                    frames = src_ds[uniq.tolist()][inverse]
                if bgr_to_rgb:
                    frames = frames[..., ::-1]
                if image_size is not None:
                    frames = resize_area(frames, image_size)
                w.append_images(name, np.ascontiguousarray(frames))


# ---------------------------------------------------------------------------------------
# The converter.
# ---------------------------------------------------------------------------------------


@dataclass
class _Plan:
    """What convert_innate will convert, decided from the files' headers and metadata."""

    root: Path
    kind: str
    color_order: str  # as asked: "auto", "rgb" or "bgr"
    color_by_layout: dict[str, tuple[str, str]]  # layout -> (source order "rgb" | "bgr", why)
    warnings: list[str]
    meta_path: Path | None
    meta: dict
    total_episodes: int  # episode files found
    skipped: list[int]  # source indices marked failed and left out
    episodes: list[SourceEpisode]  # to convert, in order; camera_keys narrowed to the kept cameras
    keys: list[str]  # HDF5 paths of the kept cameras
    camera_names: list[str]  # their ACT names
    options: dict  # as recorded in conversion.json

    def fingerprint(self) -> str:
        return _fingerprint(self.root, [ep.path for ep in self.episodes], self.options, self.meta_path)


def _plan(
    input_dir: str | Path,
    *,
    keep_extra_action_columns: bool = True,
    include_failures: bool = False,
    episode_len: int = 0,
    idle_threshold: float = 1e-4,
    max_episodes: int = 0,
    camera_keys: list[str] | None = None,
    camera_names: list[str] | None = None,
    color_order: str | None = "auto",
    image_size: tuple[int, int] | None = None,
    episodes: list[int] | None = None,
    exclude_episodes: list[int] | None = None,
    storage: str = "raw",
    jpeg_quality: int = DEFAULT_JPEG_QUALITY,
) -> _Plan:
    """Check the input and decide what to convert; the arguments are convert_innate's."""
    check_conversion_options(episode_len, max_episodes, idle_threshold)
    if storage not in STORAGE_MODES:
        raise DatasetError(f"storage must be one of {', '.join(STORAGE_MODES)}, got {storage!r}")
    if isinstance(jpeg_quality, bool) or not isinstance(jpeg_quality, int) or not 1 <= jpeg_quality <= 100:
        raise DatasetError(f"jpeg_quality must be an integer in 1..100, got {jpeg_quality!r}")
    root = Path(input_dir)
    kind = detect_input_kind(root)
    if kind == "lerobot":
        raise DatasetError(
            f"{root}: is a LeRobot dataset (meta/info.json); use lerobot_bridge.convert.convert_dataset"
        )
    if color_order is None:
        color_order = "auto"
    if color_order not in COLOR_ORDERS:
        raise ValueError(f"color_order must be one of {COLOR_ORDERS}, got {color_order!r}")
    if image_size is not None and (len(image_size) != 2 or min(image_size) < 1):
        raise ValueError(f"image_size must be (height, width) with positive values, got {image_size!r}")

    files = _episode_files(_episode_dir(root))
    meta_path, meta = _read_dataset_metadata(root)
    failed = _failed_episode_indices(meta_path, meta)
    skipped = sorted(i for i, _ in files if i in failed) if not include_failures else []
    selected = [(i, p) for i, p in files if include_failures or i not in failed]
    selection = None if episodes is None and exclude_episodes is None else [episodes, exclude_episodes]
    if selection is not None:
        keep = set(select_episodes([i for i, _ in files], episodes, exclude_episodes, str(root)))
        selected = [(i, p) for i, p in selected if i in keep]
    warnings: list[str] = []
    if max_episodes > len(selected):
        warnings.append(
            f"max_episodes={max_episodes} but {root} has {len(selected)} episodes to convert; "
            f"using all {len(selected)}"
        )
    if max_episodes > 0:
        selected = selected[:max_episodes]
    if not selected:
        raise DatasetError(
            f"{root}: no episodes left to convert ({len(files)} found, {len(skipped)} marked failed in "
            f"{meta_path}); pass include_failures=True to train on failed episodes too"
        )

    episodes = [_inspect_episode(i, p) for i, p in selected]
    first = episodes[0]
    for ep in episodes[1:]:
        for what, a, b in (
            ("state dim", ep.state_dim, first.state_dim),
            ("action dim", ep.action_dim, first.action_dim),
            (
                "cameras",
                [k.rsplit("/", 1)[1] for k in ep.camera_keys],
                [k.rsplit("/", 1)[1] for k in first.camera_keys],
            ),
        ):
            if a != b:
                raise DatasetError(
                    f"{ep.path}: {what} is {a} but {first.path} has {b}; expected every episode of a skill "
                    "to share it (ACT batches episodes together)"
                )

    keys = _select_cameras(first, camera_keys)
    picks = [first.camera_keys.index(k) for k in keys]  # same layout in every episode (checked above)
    first_sizes = [first.camera_shapes[k] for k in keys]
    if image_size is None and len(set(first_sizes)) > 1:
        listing = ", ".join(f"'{k}' {h}x{w}" for k, (h, w) in zip(keys, first_sizes, strict=True))
        groups: dict[tuple[int, int], list[str]] = {}
        for k, size in zip(keys, first_sizes, strict=True):
            groups.setdefault(size, []).append(k.rsplit("/", 1)[1])
        largest = max(groups.values(), key=len)
        raise DatasetError(
            f"{first.path}: the selected cameras have different frame sizes (HxW): {listing}; ACT stacks "
            "every camera of a sample into one tensor, so they must all have the same size. Pick "
            f"same-size cameras with --camera_keys (e.g. --camera_keys {' '.join(largest)}) or resize "
            "them all with image_size"
        )
    for ep in episodes:
        ep.camera_keys = [ep.camera_keys[i] for i in picks]
        sizes = [ep.camera_shapes[k] for k in ep.camera_keys]
        if sizes != first_sizes and image_size is None:
            raise DatasetError(
                f"{ep.path}: camera frame sizes are {sizes} (HxW, cameras {ep.camera_keys}) but {first.path} "
                f"has {first_sizes}; expected every episode of a skill to share them (ACT batches "
                "episodes together)"
            )
        ep.image_shape = sizes[0]
    resolved = {}
    for layout in sorted({ep.layout for ep in episodes}):
        if color_order == "auto":
            resolved[layout] = AUTO_COLOR_ORDER[(kind, layout)]
        else:
            resolved[layout] = (color_order, "color_order option")
    meta_warning = _skill_metadata_warning(root) if kind == "innate" else None
    if meta_warning:
        warnings.append(meta_warning)
    source_names = [k.rsplit("/", 1)[1] for k in keys]
    if camera_names is None:
        camera_names = source_names
    if len(camera_names) != len(source_names) or len(set(camera_names)) != len(camera_names):
        raise DatasetError(
            f"{first.path}: camera_names {camera_names} must be {len(source_names)} unique names, one per "
            f"camera kept ({source_names})"
        )

    options = dict(
        keep_extra_action_columns=keep_extra_action_columns,
        include_failures=include_failures,
        episode_len=episode_len,
        idle_threshold=float(idle_threshold),  # 0 and 0.0 must fingerprint alike
        max_episodes=max_episodes,
        camera_keys=keys,
        camera_names=camera_names,
        color_order=color_order,
        image_size=list(image_size) if image_size else None,
    )
    if selection is not None:  # only when given, so earlier conversions' fingerprints stay valid
        options["selection"] = selection
    if storage != "raw":  # likewise: raw frames fingerprint as before the option existed
        options.update(storage=storage, jpeg_quality=int(jpeg_quality))
    return _Plan(
        root=root,
        kind=kind,
        color_order=color_order,
        color_by_layout=resolved,
        warnings=warnings,
        meta_path=meta_path,
        meta=meta,
        total_episodes=len(files),
        skipped=skipped,
        episodes=episodes,
        keys=keys,
        camera_names=camera_names,
        options=options,
    )


def conversion_fingerprint(input_dir: str | Path, **options) -> str:
    """The `ConversionResult.fingerprint` that `convert_innate(input_dir, out, **options)` returns
    (options: its keyword arguments but `progress`), read from the files' headers without
    converting: equal to an earlier result's -> that output is reusable."""
    return _plan(input_dir, **options).fingerprint()


def estimate_conversion_bytes(input_dir: str | Path, **options) -> int:
    """An upper bound on the bytes `convert_innate(input_dir, out, **options)` writes, from the
    files' headers (as `convert.estimate_conversion_bytes`): every kept episode's length (or
    episode_len) times the kept cameras; raw frames H x W x 3 at the stored size, JPEG rows the
    largest of JPEG_SAMPLE_FRAMES encoded frames of the first episode times JPEG_SIZE_MARGIN; plus
    qpos, qvel and action as float32 and EPISODE_FILE_OVERHEAD per episode."""
    options = {k: v for k, v in options.items() if k != "progress"}
    plan = _plan(input_dir, **options)
    if not plan.episodes:
        return 0
    episode_len = int(options.get("episode_len", 0) or 0)
    frames = episode_len * len(plan.episodes) if episode_len > 0 else sum(ep.length for ep in plan.episodes)
    image_size = options.get("image_size")
    first = plan.episodes[0]
    per_camera_frame = 0
    for key in first.camera_keys:
        shape = (first.camera_shapes or {}).get(key, first.image_shape)
        h, w = tuple(image_size) if image_size else shape
        if options.get("storage", "raw") == "jpeg":
            quality = int(options.get("jpeg_quality", DEFAULT_JPEG_QUALITY))
            with h5py.File(first.path, "r") as src:
                sample = src[key][: min(JPEG_SAMPLE_FRAMES, first.length)]
            sample = resize_area(np.ascontiguousarray(sample), (h, w))
            encoder = JpegEncoder(h, w, quality)
            largest = max(len(encoder.encode(np.ascontiguousarray(f))) for f in sample)
            per_camera_frame += int(np.ceil(largest * JPEG_SIZE_MARGIN))
        else:
            per_camera_frame += h * w * 3
    lowdim = 4 * (2 * first.state_dim + first.action_dim)
    return int(frames * (per_camera_frame + lowdim) + EPISODE_FILE_OVERHEAD * len(plan.episodes))


def convert_innate(
    input_dir: str | Path,
    output_dir: str | Path,
    *,
    keep_extra_action_columns: bool = True,
    include_failures: bool = False,
    episode_len: int = 0,
    idle_threshold: float = 1e-4,
    max_episodes: int = 0,
    camera_keys: list[str] | None = None,
    camera_names: list[str] | None = None,
    color_order: str | None = "auto",
    image_size: tuple[int, int] | None = None,
    episodes: list[int] | None = None,
    exclude_episodes: list[int] | None = None,
    storage: str = "raw",
    jpeg_quality: int = DEFAULT_JPEG_QUALITY,
    progress: bool | None = None,
) -> ConversionResult:
    """Convert an Innate skill directory or a folder of upstream-ACT episodes.

    Writes `output_dir/episode_{i}.hdf5` (i = 0.. in source episode order) and
    `output_dir/conversion.json`, like `lerobot_bridge.convert.convert_dataset`.
    camera_keys: cameras to keep, in order, by name ("camera_1") or HDF5 path; None = all,
        main camera first. camera_names: the ACT names for them (default: the source names).
    color_order: channel order of the source frames: "auto" (or None) = per layout (Innate
        recorder "observations" layout BGR, documented "top_level" layout RGB, plain upstream-ACT
        folders RGB); "rgb" / "bgr" force one order. The output is always RGB.
    image_size: (height, width) to resize every frame to (area averaging); None keeps it.
    storage: "raw" (upstream ACT's (T, H, W, 3) uint8) or "jpeg" (ALOHA's compressed rows at
        `jpeg_quality`), as `convert_dataset`.
    episodes / exclude_episodes: source episode indices to keep / drop (lerobot_bridge.selection),
        applied before max_episodes.
    progress: a tqdm bar (True), log lines (False), or None = bar only on a terminal.
    """
    t0 = time.perf_counter()
    plan = _plan(
        input_dir,
        keep_extra_action_columns=keep_extra_action_columns,
        include_failures=include_failures,
        episode_len=episode_len,
        idle_threshold=idle_threshold,
        max_episodes=max_episodes,
        camera_keys=camera_keys,
        camera_names=camera_names,
        color_order=color_order,
        image_size=image_size,
        episodes=episodes,
        exclude_episodes=exclude_episodes,
        storage=storage,
        jpeg_quality=jpeg_quality,
    )
    root, kind, color_by_layout = plan.root, plan.kind, plan.color_by_layout
    meta_path, meta, skipped = plan.meta_path, plan.meta, plan.skipped
    episodes, keys, camera_names = plan.episodes, plan.keys, plan.camera_names
    first = episodes[0]

    with_extra = [ep.has_extra_columns for ep in episodes]
    extra_found = all(with_extra)
    if any(with_extra) and not extra_found and not keep_extra_action_columns:
        odd = [str(ep.path) for ep in episodes if not ep.has_extra_columns][:3]
        raise DatasetError(
            f"{odd}: field 'action' has no trailing progress/termination columns while other episodes do; "
            "cannot drop them consistently (keep them, or fix these episodes)"
        )
    drop_extra = extra_found and not keep_extra_action_columns
    action_dim = first.action_dim - 2 if drop_extra else first.action_dim
    robot_cols = first.action_dim - 2 if extra_found else first.action_dim  # columns idle trimming looks at
    fps = float(meta.get("data_frequency") or 0) or (30.0 if kind == "innate" else 50.0)
    fps_source = f"{meta_path}: data_frequency" if meta.get("data_frequency") else "default (not recorded)"

    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    for message in plan.warnings:
        log.warning("%s", message)
    log.info(
        "converting %d episodes of %s (%s, layouts %s, cameras %s, extra action columns %s)",
        len(episodes),
        root,
        kind,
        sorted({ep.layout for ep in episodes}),
        dict(zip(keys, camera_names, strict=True)),
        ("kept" if keep_extra_action_columns else "dropped") if extra_found else "none",
    )
    for layout, (order, why) in color_by_layout.items():
        log.info(
            "%s layout: source frames read as %s (color_order=%s: %s)%s",
            layout,
            order.upper(),
            plan.color_order,
            why,
            ", converted to RGB" if order == "bgr" else "",
        )
    if skipped:
        log.info("skipping %d episodes marked failed in %s: %s", len(skipped), meta_path, skipped)
    reports: list[EpisodeReport] = []
    try:
        with EpisodeProgress(len(episodes), progress) as bar:
            for out_index, ep in enumerate(episodes):
                te = time.perf_counter()
                with h5py.File(ep.path, "r") as f:
                    robot_action = f[ep.action_key][:, :robot_cols]
                start, end = idle_range(robot_action, idle_threshold)
                rows, padded, truncated = _source_rows(start, end, episode_len)
                _write_episode(
                    ep,
                    out / f"episode_{out_index}.hdf5",
                    camera_names,
                    action_cols=slice(0, action_dim),
                    rows=rows,
                    bgr_to_rgb=color_by_layout[ep.layout][0] == "bgr",
                    image_size=image_size,
                    storage=storage,
                    jpeg_quality=jpeg_quality,
                    attrs={
                        "source_file": str(ep.path),
                        "source_episode_index": ep.index,
                        "source_layout": ep.layout,
                        "fps": fps,
                        "input_kind": kind,
                    },
                )
                reports.append(
                    EpisodeReport(
                        output_index=out_index,
                        source_index=ep.index,
                        task=root.name,
                        frames_in=ep.length,
                        frames_out=int(rows.size),
                        idle_trimmed_start=start,
                        idle_trimmed_end=ep.length - end,
                        padded=padded,
                        truncated=truncated,
                        seconds=time.perf_counter() - te,
                    )
                )
                bar.done(reports[-1])
    except BaseException as err:
        discard_outputs(out, len(episodes))
        if isinstance(err, Exception) and not isinstance(err, DatasetError):
            # h5py's read errors do not say which file (a corrupt chunk, a file cut short)
            raise RuntimeError(f"{ep.path}: {type(err).__name__}: {err}") from err
        raise
    remove_stale_episodes(out, len(episodes))

    h, w = image_size or first.image_shape
    orders = sorted({order for order, _ in color_by_layout.values()})
    result = ConversionResult(
        input_kind=kind,
        input_dir=str(root.absolute()),
        output_dir=str(out.absolute()),
        codebase_version=None,
        fps=fps,
        cameras=dict(zip(keys, camera_names, strict=True)),
        state_dim=first.state_dim,
        action_dim=action_dim,
        state_names=None,
        action_names=None,
        episodes=reports,
        fingerprint=plan.fingerprint(),
        tasks=[root.name],
        total_frames_in=sum(r.frames_in for r in reports),
        total_frames_out=sum(r.frames_out for r in reports),
        seconds=round(time.perf_counter() - t0, 3),
        extra={
            "layouts": sorted({ep.layout for ep in episodes}),
            # the source order if one for every episode, else "mixed" (see color_order_by_layout)
            "color_order": orders[0] if len(orders) == 1 else "mixed",
            "color_order_option": plan.color_order,
            "color_order_by_layout": {layout: order for layout, (order, _) in color_by_layout.items()},
            # True when frames were swapped BGR -> RGB (the output is RGB either way)
            "converted_bgr_to_rgb": any(order == "bgr" for order, _ in color_by_layout.values()),
            "image_size": [h, w],
            "source_image_size": list(first.image_shape),
            "storage": storage,
            "jpeg_quality": int(jpeg_quality) if storage == "jpeg" else None,
            "action_extra_columns": {
                "found": extra_found,
                "kept": extra_found and keep_extra_action_columns,
                "names": list(EXTRA_ACTION_COLUMNS) if extra_found else [],
                "columns": [action_dim - 2, action_dim - 1]
                if extra_found and keep_extra_action_columns
                else [],
            },
            "skipped_failures": skipped,
            "dataset_metadata": str(meta_path) if meta_path else None,
            "fps_source": fps_source,
            "skill_metadata": str(root / "metadata.json") if (root / "metadata.json").is_file() else None,
            "total_episodes_in_source": plan.total_episodes,
            "options": plan.options,
        },
        warnings=list(plan.warnings),
    )
    save_result(result)
    return result


def _select_cameras(first: SourceEpisode, camera_keys: list[str] | None) -> list[str]:
    """HDF5 paths of the cameras to keep, in order; names or full paths accepted."""
    if camera_keys is None:
        return list(first.camera_keys)
    by_name = {k.rsplit("/", 1)[1]: k for k in first.camera_keys}
    chosen = []
    for key in camera_keys:
        path = key if key in first.camera_keys else by_name.get(key)
        if path is None:
            raise DatasetError(
                f"{first.path}: camera {key!r} not found; available: {list(by_name)} "
                f"(or their paths {first.camera_keys})"
            )
        chosen.append(path)
    if not chosen or len(set(chosen)) != len(chosen):
        raise DatasetError(
            f"{first.path}: camera_keys {camera_keys} must name at least one camera, each once"
        )
    return chosen


def _fingerprint(root: Path, paths: list[Path], options: dict, meta_path: Path | None) -> str:
    """Identifies the importer's version, the input files (path inside the input folder, size,
    mtime) and the options; an earlier conversion with the same fingerprint is reused. Relative
    paths: a skill moved or mounted elsewhere keeps its conversion (as LeRobot inputs do)."""
    h = hashlib.sha256()
    h.update(f"innate importer {IMPORTER_VERSION}\n".encode())
    for p in [*paths, *([meta_path] if meta_path else [])]:
        st = p.stat()
        h.update(f"{os.path.relpath(p, root)}|{st.st_size}|{st.st_mtime_ns}\n".encode())
    h.update(json.dumps(options, sort_keys=True).encode())
    return h.hexdigest()
