"""Open a LeRobot dataset root (v2.0 / v2.1 / v3.0) and describe it: features, cameras,
episodes, tasks and the files that hold each episode.

Nothing here reads frames or data rows; it validates the metadata up front so a bad dataset
fails before anything is written, with a message that names the file and what was expected.
Facts: docs/FORMATS.md section 1.
"""

from __future__ import annotations

import json
import logging
import math
import os
from dataclasses import dataclass, field
from pathlib import Path

from lerobot_bridge.arrow import pa, pq
from lerobot_bridge.errors import DatasetError

log = logging.getLogger(__name__)

SUPPORTED_VERSIONS = ("v2.0", "v2.1", "v3.0")
STATE_KEY = "observation.state"
ACTION_KEY = "action"
VELOCITY_KEY = "observation.velocity"
CAMERA_DTYPES = ("video", "image")


@dataclass(frozen=True)
class CameraFeature:
    """One camera feature from info.json (`dtype` video or image)."""

    key: str  # e.g. "observation.images.front"
    dtype: str  # "video" (frames in mp4 files) or "image" (PNG bytes in the parquet rows)
    height: int | None  # from `shape` read in the order given by `names`; the decoded frame wins
    width: int | None
    codec: str | None  # video.codec from the feature's info block, if any


@dataclass(frozen=True)
class VideoSegment:
    """Where one episode's frames of one camera live."""

    path: Path
    from_timestamp: float  # seconds into the file where the episode's timestamp 0 sits (0 in v2.x)
    to_timestamp: float | None  # end of the segment (v3.0 only)


@dataclass
class EpisodeMeta:
    index: int  # the source's episode_index
    length: int  # number of rows from the episode metadata
    tasks: list[str]  # tasks listed in the episode metadata (may be empty)
    data_path: Path  # parquet file holding the rows (shared by many episodes in v3.0)
    videos: dict[str, VideoSegment] = field(default_factory=dict)  # camera key -> segment
    index_range: tuple[int, int] | None = None  # v3.0 global `index` range [from, to)


@dataclass
class LeRobotDataset:
    root: Path
    info: dict
    version: str
    fps: float
    features: dict[str, dict]
    cameras: list[CameraFeature]  # every camera feature, in info.json order
    episodes: list[EpisodeMeta]  # sorted by episode_index
    tasks: dict[int, str]  # task_index -> task

    @property
    def state_dim(self) -> int:
        return _vector_dim(self.features[STATE_KEY], STATE_KEY, self.root)

    @property
    def action_dim(self) -> int:
        return _vector_dim(self.features[ACTION_KEY], ACTION_KEY, self.root)

    @property
    def has_velocity(self) -> bool:
        return VELOCITY_KEY in self.features

    def feature_names(self, key: str) -> list[str] | None:
        return flatten_names(self.features[key].get("names"))

    @property
    def info_path(self) -> Path:
        return self.root / "meta" / "info.json"


def open_dataset(root: str | os.PathLike) -> LeRobotDataset:
    """Read and validate `meta/info.json`, the episode table and the tasks table of `root`."""
    root = Path(root)
    if not root.is_dir():
        raise DatasetError(f"{root}: dataset root does not exist or is not a directory")
    info_path = root / "meta" / "info.json"
    info = _read_info(info_path)
    version = info["codebase_version"]
    features = info["features"]
    fps = _read_fps(info, info_path)

    for key, feat in features.items():
        _check_feature(feat, key, info_path)
    for key in (STATE_KEY, ACTION_KEY):
        if key not in features:
            raise DatasetError(
                f"{info_path}: features has no '{key}'; ACT needs '{STATE_KEY}' (robot state) and "
                f"'{ACTION_KEY}' (commanded action). Features present: {sorted(features)}"
            )
        _vector_dim(features[key], key, root)

    cameras = [
        _camera_feature(key, feat, info_path)
        for key, feat in features.items()
        if feat.get("dtype") in CAMERA_DTYPES
    ]
    if version == "v3.0":
        tasks = _read_tasks_v3(root)
        episodes = _read_episodes_v3(root, info, cameras)
    else:
        tasks = _read_tasks_v2(root)
        episodes = _read_episodes_v2(root, info, cameras)
    _check_contiguous(episodes, info, root)
    return LeRobotDataset(root, info, version, fps, features, cameras, episodes, tasks)


# ---------------------------------------------------------------------------------------------
# info.json


def _read_info(info_path: Path) -> dict:
    if not info_path.is_file():
        raise DatasetError(
            f"{info_path}: file not found; a LeRobot dataset root must contain meta/info.json "
            f"(is {info_path.parent.parent} the dataset root?)"
        )
    try:
        info = json.loads(info_path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise DatasetError(f"{info_path}: not valid JSON ({err})") from err
    if not isinstance(info, dict):
        raise DatasetError(f"{info_path}: expected a JSON object, got {type(info).__name__}")
    version = info.get("codebase_version")
    if version is None:
        raise DatasetError(
            f"{info_path}: no 'codebase_version'; expected one of {', '.join(SUPPORTED_VERSIONS)}"
        )
    if version not in SUPPORTED_VERSIONS:
        hint = ""
        if isinstance(version, str) and version.startswith("v1."):
            hint = " (v1.x datasets predate meta/info.json features; convert them with lerobot first)"
        raise DatasetError(
            f"{info_path}: codebase_version '{version}' is not supported; expected one of "
            f"{', '.join(SUPPORTED_VERSIONS)}{hint}"
        )
    if not isinstance(info.get("features"), dict):
        raise DatasetError(f"{info_path}: 'features' must be an object mapping feature keys to specs")
    if not isinstance(info.get("data_path"), str):
        raise DatasetError(f"{info_path}: 'data_path' must be a path template string")
    return info


def _read_fps(info: dict, info_path: Path) -> float:
    fps = info.get("fps")
    # NaN passes `fps <= 0` (every comparison with NaN is false) and Inf makes the half-period 0:
    # both would reach the video matcher and blame the mp4.
    if not _is_number(fps) or not math.isfinite(fps) or fps <= 0:
        raise DatasetError(f"{info_path}: 'fps' must be a finite positive number, got {fps!r}")
    return float(fps)


def _is_int(value) -> bool:
    """A JSON / parquet integer: bool is an int subclass in Python but never a valid count or index."""
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _check_feature(feat, key: str, info_path: Path) -> None:
    """Every feature spec must be an object: the code below reads dtype / shape / names from it."""
    if not isinstance(feat, dict):
        raise DatasetError(
            f"{info_path}: features['{key}'] must be an object with dtype/shape, got {json.dumps(feat)}"
        )


def _vector_dim(feat: dict, key: str, root: Path) -> int:
    shape = feat.get("shape")
    if not isinstance(shape, list) or len(shape) != 1 or not _is_int(shape[0]) or shape[0] < 1:
        raise DatasetError(
            f"{root / 'meta' / 'info.json'}: features['{key}'].shape must be [D] with D >= 1, got {shape!r}"
        )
    return shape[0]


def flatten_names(names) -> list[str] | None:
    """`names` may be a flat list, a dict like {"motors": [...]} or null (docs/FORMATS.md 1.1)."""
    if isinstance(names, list) and all(isinstance(n, str) for n in names):
        return list(names)
    if isinstance(names, dict):
        flat: list[str] = []
        for value in names.values():
            if isinstance(value, list):
                flat.extend(str(v) for v in value)
        return flat or None
    return None


def _camera_feature(key: str, feat: dict, info_path: Path) -> CameraFeature:
    height, width = _camera_hw(feat.get("shape"), feat.get("names"), f"{info_path}: features['{key}'].shape")
    info = feat.get("info") or feat.get("video_info") or {}
    codec = info.get("video.codec") if isinstance(info, dict) else None
    return CameraFeature(key=key, dtype=feat["dtype"], height=height, width=width, codec=codec)


def _camera_hw(shape, names, where: str = "camera shape") -> tuple[int | None, int | None]:
    """Height and width from `shape`, in the order given by `names` (HWC or CHW).

    A shape that is not three entries is treated as undeclared (the decoded size is used anyway);
    three entries that are not positive integers are refused, naming `where`."""
    if not isinstance(shape, list) or len(shape) != 3:
        return None, None
    if not all(_is_int(n) and n >= 1 for n in shape):
        raise DatasetError(f"{where} must be three positive integers (HWC or CHW), got {json.dumps(shape)}")
    if isinstance(names, list) and len(names) == 3:
        lowered = [str(n).lower() for n in names]
        if "height" in lowered and "width" in lowered:
            return int(shape[lowered.index("height")]), int(shape[lowered.index("width")])
    # No usable names: channel-first when the first axis looks like channels and the last does not.
    if shape[0] in (1, 3, 4) and shape[2] not in (1, 3, 4):
        return int(shape[1]), int(shape[2])
    return int(shape[0]), int(shape[1])


# ---------------------------------------------------------------------------------------------
# paths


def format_path(root: Path, template: str, field_name: str, **values) -> Path:
    """Format an info.json path template and check the result stays inside the dataset root.

    The check is lexical (normpath, no symlink resolution): a Hugging Face cache snapshot is a
    tree of symlinks into ../blobs, which is fine, while `../` or absolute templates are not.
    """
    try:
        rel = template.format(**values)
    # TypeError / AttributeError: a field like {chunk_index[0]} or {chunk_index.x} applied to our ints.
    except (KeyError, IndexError, ValueError, TypeError, AttributeError) as err:
        raise DatasetError(
            f"{root / 'meta' / 'info.json'}: cannot format '{field_name}' template {template!r} "
            f"with {sorted(values)} ({type(err).__name__}: {err})"
        ) from err
    root_norm = os.path.normpath(os.path.abspath(root))
    full = os.path.normpath(os.path.join(root_norm, rel))
    if os.path.isabs(rel) or os.path.commonpath([root_norm, full]) != root_norm:
        raise DatasetError(
            f"{root / 'meta' / 'info.json'}: '{field_name}' template {template!r} gives {rel!r}, "
            f"which is outside the dataset root {root}; paths must be relative and stay inside it"
        )
    return Path(full)


# ---------------------------------------------------------------------------------------------
# tasks


def _read_tasks_v2(root: Path) -> dict[int, str]:
    path = root / "meta" / "tasks.jsonl"
    if not path.is_file():
        log.warning("%s not found: tasks are taken from meta/episodes.jsonl", path)
        return {}
    tasks: dict[int, str] = {}
    for lineno, rec in _jsonl(path):
        if not _is_int(rec.get("task_index")) or not isinstance(rec.get("task"), str):
            raise DatasetError(f"{path}:{lineno}: expected {{'task_index': int, 'task': str}}, got {rec}")
        tasks[rec["task_index"]] = rec["task"]
    return tasks


def _read_tasks_v3(root: Path) -> dict[int, str]:
    path = root / "meta" / "tasks.parquet"
    if not path.is_file():
        log.warning("%s not found: tasks are taken from meta/episodes", path)
        return {}
    table = read_parquet(path)
    # pandas wrote the task as the index; pyarrow shows it as a column named "task" or "__index_level_0__".
    task_col = next((c for c in ("task", "__index_level_0__") if c in table.column_names), None)
    if "task_index" not in table.column_names or task_col is None:
        raise DatasetError(f"{path}: expected columns 'task_index' and 'task', found {table.column_names}")
    indices = table.column("task_index").to_pylist()
    names = table.column(task_col).to_pylist()
    tasks: dict[int, str] = {}
    for row, (i, t) in enumerate(zip(indices, names, strict=True)):
        # Nulls, NaN floats and strings would become a wrong key (or a crash) in the task lookup.
        if not _is_int(i) or i < 0:
            raise DatasetError(f"{path}: row {row}: 'task_index' must be an integer >= 0, got {i!r}")
        if not isinstance(t, str):
            raise DatasetError(f"{path}: row {row}: '{task_col}' must be a string (the task), got {t!r}")
        tasks[i] = t
    return tasks


# ---------------------------------------------------------------------------------------------
# episodes


def _jsonl(path: Path):
    try:
        data = path.read_bytes()
    except OSError as err:
        raise DatasetError(f"{path}: cannot read ({err})") from err
    # Bytes, split first: a decoding error can then name its line (JSON Lines is UTF-8).
    for lineno, raw in enumerate(data.splitlines(), 1):
        try:
            line = raw.decode("utf-8")
        except UnicodeDecodeError as err:
            raise DatasetError(f"{path}:{lineno}: not valid UTF-8 ({err})") from err
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
        except json.JSONDecodeError as err:
            raise DatasetError(f"{path}:{lineno}: not valid JSON ({err})") from err
        if not isinstance(rec, dict):
            raise DatasetError(f"{path}:{lineno}: expected a JSON object per line")
        yield lineno, rec


def _video_template(root: Path, info: dict, cameras: list[CameraFeature]) -> str | None:
    """info.json's `video_path`, checked once: it must be a template when any camera is a video."""
    template = info.get("video_path")
    video_keys = [cam.key for cam in cameras if cam.dtype == "video"]
    if video_keys and not isinstance(template, str):
        raise DatasetError(
            f"{root / 'meta' / 'info.json'}: camera '{video_keys[0]}' has dtype video but 'video_path' "
            f"is {template!r}; expected a path template"
        )
    return template


def _read_episodes_v2(root: Path, info: dict, cameras: list[CameraFeature]) -> list[EpisodeMeta]:
    path = root / "meta" / "episodes.jsonl"
    if not path.is_file():
        raise DatasetError(f"{path}: file not found; {info['codebase_version']} datasets list episodes there")
    chunks_size = info.get("chunks_size")
    if chunks_size is None:
        chunks_size = 1000  # lerobot's default; older v2.0 files may omit it
    if not _is_int(chunks_size) or chunks_size < 1:
        raise DatasetError(
            f"{root / 'meta' / 'info.json'}: 'chunks_size' must be a positive integer (episodes per "
            f"chunk folder), got {chunks_size!r}"
        )
    video_template = _video_template(root, info, cameras)
    episodes = []
    for lineno, rec in _jsonl(path):
        index, length = rec.get("episode_index"), rec.get("length")
        if not _is_int(index) or index < 0 or not _is_int(length) or length < 0:
            raise DatasetError(
                f"{path}:{lineno}: expected integers 'episode_index' >= 0 and 'length' >= 0, got {rec}"
            )
        chunk = index // chunks_size
        data_path = format_path(
            root, info["data_path"], "data_path", episode_chunk=chunk, episode_index=index, chunk_index=chunk
        )
        videos = {}
        for cam in cameras:
            if cam.dtype != "video":
                continue
            vpath = format_path(
                root,
                video_template,
                "video_path",
                episode_chunk=chunk,
                video_key=cam.key,
                episode_index=index,
                chunk_index=chunk,
            )
            videos[cam.key] = VideoSegment(vpath, 0.0, None)
        tasks = _task_list(rec.get("tasks"), f"{path}:{lineno}")
        episodes.append(EpisodeMeta(index, length, tasks, data_path, videos))
    episodes.sort(key=lambda e: e.index)
    return episodes


def _read_episodes_v3(root: Path, info: dict, cameras: list[CameraFeature]) -> list[EpisodeMeta]:
    ep_dir = root / "meta" / "episodes"
    files = sorted(ep_dir.glob("*/*.parquet"))
    if not files:
        raise DatasetError(f"{ep_dir}: no */*.parquet files; v3.0 datasets list episodes there")
    video_template = _video_template(root, info, cameras)
    episodes = []
    for path in files:
        table = read_parquet(path)
        cols = set(table.column_names)
        needed = ["episode_index", "length", "data/chunk_index", "data/file_index"]
        for cam in cameras:
            if cam.dtype == "video":
                needed += [f"videos/{cam.key}/{k}" for k in ("chunk_index", "file_index", "from_timestamp")]
        missing = [c for c in needed if c not in cols]
        if missing:
            raise DatasetError(f"{path}: missing episode columns {missing}")
        rows = table.select([c for c in table.column_names if not c.startswith("stats/")]).to_pylist()
        for number, row in enumerate(rows):
            where = f"{path}: row {number}"
            index = _row_int(row, "episode_index", where)
            length = _row_int(row, "length", where)
            data_path = format_path(
                root,
                info["data_path"],
                "data_path",
                chunk_index=_row_int(row, "data/chunk_index", where),
                file_index=_row_int(row, "data/file_index", where),
            )
            videos = {}
            for cam in cameras:
                if cam.dtype != "video":
                    continue
                prefix = f"videos/{cam.key}/"
                vpath = format_path(
                    root,
                    video_template,
                    "video_path",
                    video_key=cam.key,
                    chunk_index=_row_int(row, prefix + "chunk_index", where),
                    file_index=_row_int(row, prefix + "file_index", where),
                )
                from_ts = _row_seconds(row, prefix + "from_timestamp", where)
                to_ts = None
                if row.get(prefix + "to_timestamp") is not None:
                    to_ts = _row_seconds(row, prefix + "to_timestamp", where)
                videos[cam.key] = VideoSegment(vpath, from_ts, to_ts)
            index_range = None
            if row.get("dataset_from_index") is not None and row.get("dataset_to_index") is not None:
                index_range = (
                    _row_int(row, "dataset_from_index", where),
                    _row_int(row, "dataset_to_index", where),
                )
            tasks = _task_list(row.get("tasks"), where)
            episodes.append(EpisodeMeta(index, length, tasks, data_path, videos, index_range))
    episodes.sort(key=lambda e: e.index)
    return episodes


def _row_int(row: dict, name: str, where: str) -> int:
    """An integer >= 0 from an episodes-table row. Nulls, NaN floats, strings and bools are refused
    here, where the column can be named, instead of failing later as a wrong path or index."""
    value = row.get(name)
    if not _is_int(value) or value < 0:
        raise DatasetError(f"{where}: '{name}' must be an integer >= 0, got {value!r}")
    return value


def _row_seconds(row: dict, name: str, where: str) -> float:
    """A finite, non-negative time in seconds from an episodes-table row."""
    value = row.get(name)
    if not _is_number(value) or not math.isfinite(value) or value < 0:
        raise DatasetError(f"{where}: '{name}' must be a finite number of seconds >= 0, got {value!r}")
    return float(value)


def _task_list(tasks, where: str) -> list[str]:
    """An episode's `tasks`: a list of strings, or absent / null (then the tasks table is used)."""
    if tasks is None:
        return []
    if not isinstance(tasks, list) or not all(isinstance(t, str) for t in tasks):
        raise DatasetError(f"{where}: 'tasks' must be a list of strings, got {tasks!r}")
    return list(tasks)


def _check_contiguous(episodes: list[EpisodeMeta], info: dict, root: Path) -> None:
    """Episodes must be exactly 0..N-1: a gap or a duplicate means a crashed or hand-edited
    dataset, where positional lookups (lerobot's own) silently pair the wrong video with rows."""
    where = root / "meta" / ("episodes" if info["codebase_version"] == "v3.0" else "episodes.jsonl")
    if not episodes:
        raise DatasetError(f"{where}: no episodes listed")
    indices = [e.index for e in episodes]
    seen, dupes = set(), set()
    for i in indices:
        (dupes if i in seen else seen).add(i)
    if dupes:
        raise DatasetError(f"{where}: episode_index listed more than once: {sorted(dupes)}")
    # Sorted, unique and >= 0 here: the gaps are counted and the first 20 listed without building
    # range(max + 1), which one corrupted episode_index like 2**31 would make billions long.
    missing_count = indices[-1] + 1 - len(indices)
    if missing_count:
        missing: list[int] = []
        expected = 0
        for i in indices:
            missing.extend(range(expected, min(i, expected + 20 - len(missing))))
            if len(missing) >= 20:
                break
            expected = i + 1
        shown = ", ".join(map(str, missing)) + (" ..." if missing_count > len(missing) else "")
        raise DatasetError(
            f"{where}: episode_index values are not contiguous from 0: missing {shown} "
            f"(found {len(indices)} episodes, indices {indices[0]}..{indices[-1]}; "
            f"info.json total_episodes={info.get('total_episodes')}). The dataset was probably "
            f"left incomplete by a crash; repair or re-export it"
        )
    total = info.get("total_episodes")
    if isinstance(total, int) and total != len(episodes):
        log.warning(
            "%s: total_episodes=%s but %d episodes are listed",
            root / "meta" / "info.json",
            total,
            len(episodes),
        )


# ---------------------------------------------------------------------------------------------
# cameras


def select_cameras(
    dataset: LeRobotDataset, camera_keys: list[str] | None = None, camera_names: list[str] | None = None
) -> dict[str, str]:
    """Camera feature key -> ACT camera name, in camera order.

    Default: every video/image feature in info.json order, named by its last dotted part.
    `camera_keys` picks and orders features; `camera_names` renames them (same length)."""
    available = [c.key for c in dataset.cameras]
    listing = f"available camera keys: {available}"
    keys = list(camera_keys) if camera_keys else available
    if not keys:
        raise DatasetError(
            f"{dataset.info_path}: no camera features (dtype video or image); ACT needs at least one"
        )
    unknown = [k for k in keys if k not in available]
    if unknown:
        raise DatasetError(f"--camera_keys {unknown} not found in {dataset.info_path}; {listing}")
    if len(set(keys)) != len(keys):
        raise DatasetError(f"--camera_keys lists a key more than once: {keys}; {listing}")
    if camera_names:
        names = list(camera_names)
        if len(names) != len(keys):
            raise DatasetError(
                f"--camera_names has {len(names)} names but there are {len(keys)} cameras {keys}; "
                f"give one name per camera key ({listing})"
            )
    else:
        names = [k.split(".")[-1] for k in keys]
    if len(set(names)) != len(names):
        raise DatasetError(
            f"camera names must be unique, got {names} for keys {keys}; pass --camera_names ({listing})"
        )
    bad = [n for n in names if not n or "/" in n or n in (".", "..")]
    if bad:
        raise DatasetError(f"camera names {bad} are not valid HDF5 dataset names (no '/', not empty)")
    return dict(zip(keys, names, strict=True))


# ---------------------------------------------------------------------------------------------
# parquet


def read_parquet(path: Path, columns: list[str] | None = None) -> pa.Table:
    """pyarrow's read with errors that name the file (e.g. an unfinalized v3.0 file has no footer)."""
    try:
        return pq.read_table(path, columns=columns)
    except FileNotFoundError as err:
        raise DatasetError(f"{path}: file not found") from err
    # UnicodeDecodeError: a damaged footer whose column names are not UTF-8.
    except (pa.ArrowException, OSError, UnicodeDecodeError) as err:
        raise DatasetError(f"{path}: cannot read parquet ({err})") from err


def open_parquet(path: Path) -> pq.ParquetFile:
    if not path.is_file():
        raise DatasetError(f"{path}: file not found")
    try:
        return pq.ParquetFile(path)
    # UnicodeDecodeError: a damaged footer whose column names are not UTF-8.
    except (pa.ArrowException, OSError, UnicodeDecodeError) as err:
        hint = ""
        if "magic bytes" in str(err):
            hint = " (a v3.0 dataset whose recording never reached finalize() looks like this)"
        raise DatasetError(f"{path}: not a readable parquet file: {err}{hint}") from err
