"""Read one episode's rows from a LeRobot data parquet file.

v2.x files hold one episode; v3.0 files hold many, so rows are selected by the `episode_index`
column (row groups whose statistics exclude the episode are skipped; row-group boundaries are
never assumed to align with episodes). Numeric columns of an episode are small and read whole;
image columns (PNG bytes) are streamed in blocks so memory does not grow with episode length.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import av
import numpy as np

from lerobot_bridge.arrow import pa, pc, pq
from lerobot_bridge.dataset import open_parquet
from lerobot_bridge.errors import DatasetError


@dataclass
class EpisodeRows:
    """The numeric columns of one episode, in row (frame_index) order."""

    state: np.ndarray  # (n, D) float32
    action: np.ndarray  # (n, A) float32
    velocity: np.ndarray | None  # (n, D) float32, observation.velocity when present
    timestamp: np.ndarray  # (n,) float64 seconds from the episode start
    frame_index: np.ndarray  # (n,) int64
    task_index: np.ndarray | None  # (n,) int64

    def __len__(self) -> int:
        return len(self.frame_index)


def vector_column(
    col: pa.ChunkedArray | pa.Array, name: str, path: Path, dim: int | None = None
) -> np.ndarray:
    """A vector feature as (n, D) float32.

    Accepts `fixed_size_list<float>[D]` (written through `datasets`) and `list<float>`
    (datasets converted from v2.1); the flatten/reshape path is zero-copy-ish and ~100x
    faster than `to_pylist` (docs/FORMATS.md 1.3). Shape-[1] features may be plain scalar columns.
    """
    arr = col.combine_chunks() if isinstance(col, pa.ChunkedArray) else col
    n = len(arr)
    if arr.null_count:
        raise DatasetError(
            f"{path}: column '{name}' has {arr.null_count} null rows; expected a value per row"
        )
    if (
        pa.types.is_fixed_size_list(arr.type)
        or pa.types.is_list(arr.type)
        or pa.types.is_large_list(arr.type)
    ):
        if not pa.types.is_fixed_size_list(arr.type) and n:
            lengths = pc.list_value_length(arr).to_numpy()
            if lengths.min() != lengths.max():
                raise DatasetError(
                    f"{path}: column '{name}' has rows of different lengths "
                    f"({lengths.min()}..{lengths.max()})"
                )
        elem = arr.type.value_type
        if not (pa.types.is_integer(elem) or pa.types.is_floating(elem)):
            # e.g. list<list<float>>: flatten() would give arrays that numpy cannot cast to float32
            raise DatasetError(f"{path}: column '{name}' has type {arr.type}; expected a list of numbers")
        values = arr.flatten()
        if values.null_count:
            raise DatasetError(f"{path}: column '{name}' contains null elements")
        flat = values.to_numpy(zero_copy_only=False)
        out = flat.reshape(n, -1) if n else flat.reshape(0, dim or 0)
    elif pa.types.is_integer(arr.type) or pa.types.is_floating(arr.type):
        out = arr.to_numpy(zero_copy_only=False).reshape(n, 1)
    else:
        raise DatasetError(f"{path}: column '{name}' has type {arr.type}; expected a list of numbers")
    if dim is not None and n and out.shape[1] != dim:
        raise DatasetError(
            f"{path}: column '{name}' has {out.shape[1]} values per row; info.json features say shape [{dim}]"
        )
    return np.ascontiguousarray(out, dtype=np.float32)


def first_non_finite(values: np.ndarray) -> tuple[int, int, float, int] | None:
    """(row, component, value, count) of the first NaN/Inf in a (n,) or (n, D) array, or None.

    NaN or Inf in a state, action or timestamp poisons the normalisation statistics and every
    gradient step that samples it, so it must be refused at conversion, not found in training."""
    bad = ~np.isfinite(values)
    if not bad.any():
        return None
    flat = int(np.argmax(bad.reshape(-1)))
    width = values.shape[1] if values.ndim == 2 else 1
    row, comp = divmod(flat, width)
    return row, comp, float(values.reshape(-1)[flat]), int(bad.sum())


def check_finite(
    values: np.ndarray,
    *,
    path: Path,
    episode_index: int,
    column: str,
    names: list[str] | None = None,
    frame_index: np.ndarray | None = None,
) -> None:
    """Refuse NaN/Inf, naming the file, episode, row (and frame_index), column and component
    (with its name from info.json `names` when given)."""
    found = first_non_finite(values)
    if found is None:
        return
    row, comp, value, count = found
    where = f"row {row}" + (f" (frame_index {int(frame_index[row])})" if frame_index is not None else "")
    component = ""
    if values.ndim == 2:
        label = f" ('{names[comp]}')" if names and comp < len(names) else ""
        component = f" component {comp}{label}"
    raise DatasetError(
        f"{path}: episode {episode_index} {where}: column '{column}'{component} is {value}; expected "
        f"finite numbers ({count} non-finite value(s) in this episode's '{column}')"
    )


def check_column_types(pf: pq.ParquetFile, path: Path, kinds: dict[str, str]) -> None:
    """Refuse a column whose Arrow type cannot hold what it must (name -> "integer" or "number"),
    before Arrow kernels or numpy casts meet it: a string or list `episode_index` fails inside
    `pc.equal` with an Arrow message that names no file, a list `frame_index` inside numpy."""
    schema = pf.schema_arrow
    for name, kind in kinds.items():
        if name not in schema.names:
            continue  # missing columns are reported by the caller, with what was found
        typ = schema.field(name).type
        ok = pa.types.is_integer(typ) or (kind == "number" and pa.types.is_floating(typ))
        if not ok:
            expected = "integers" if kind == "integer" else "numbers"
            raise DatasetError(f"{path}: column '{name}' has type {typ}; expected {expected}")


def int_column(table: pa.Table, name: str, path: Path, episode_index: int) -> np.ndarray:
    """An integer column (type checked by check_column_types) as int64, refusing nulls: a null
    becomes NaN in to_numpy(), and NaN cast to int64 is an arbitrary number (and a numpy warning)."""
    col = table.column(name)
    if col.null_count:
        raise DatasetError(
            f"{path}: episode {episode_index}: column '{name}' has {col.null_count} null rows; "
            "expected a value per row"
        )
    return col.to_numpy().astype(np.int64)


def row_groups_for_episode(pf: pq.ParquetFile, episode_index: int) -> list[int]:
    """Row groups whose min/max statistics of `episode_index` can contain the episode."""
    md = pf.metadata
    # Leaf column position (image structs hold two leaves each, so it differs from the arrow field index).
    col = next((i for i in range(md.num_columns) if md.schema.column(i).path == "episode_index"), -1)
    groups = []
    for g in range(md.num_row_groups):
        stats = md.row_group(g).column(col).statistics if col >= 0 else None
        # Integer statistics only: a mistyped column (string, bytes) has min/max that do not compare
        # with an int; its row groups are all kept and the column's type is refused by the reader.
        if (
            stats is not None
            and stats.has_min_max
            and isinstance(stats.min, int)
            and isinstance(stats.max, int)
            and not (stats.min <= episode_index <= stats.max)
        ):
            continue
        groups.append(g)
    return groups


def read_episode_rows(
    path: Path,
    episode_index: int,
    *,
    state_key: str,
    action_key: str,
    velocity_key: str | None,
    state_dim: int,
    action_dim: int,
    expected_length: int,
    feature_names: dict[str, list[str] | None] | None = None,
) -> EpisodeRows:
    """One episode's numeric columns, checked: row count, frame_index order, finite and
    increasing timestamps, finite state / action / velocity. feature_names: info.json `names`
    per column, used in error messages."""
    names_of = feature_names or {}
    pf = open_parquet(path)
    names = pf.schema_arrow.names
    required = [state_key, action_key, "episode_index", "frame_index", "timestamp"]
    missing = [c for c in required if c not in names]
    if missing:
        raise DatasetError(f"{path}: missing columns {missing}; found {names}")
    columns = required + [c for c in ("task_index", velocity_key) if c and c in names]
    kinds = dict(episode_index="integer", frame_index="integer", task_index="integer", timestamp="number")
    check_column_types(pf, path, kinds)
    try:
        table = pf.read_row_groups(row_groups_for_episode(pf, episode_index), columns=columns)
    except (pa.ArrowException, OSError) as err:
        raise DatasetError(f"{path}: cannot read rows of episode {episode_index}: {err}") from err
    mask = pc.equal(table.column("episode_index"), episode_index)
    table = table.filter(mask)
    n = table.num_rows
    if n != expected_length:
        raise DatasetError(
            f"{path}: episode {episode_index} has {n} rows; "
            f"the episode metadata says length {expected_length}"
        )
    frame_index = int_column(table, "frame_index", path, episode_index)
    if n and not np.array_equal(frame_index, np.arange(n)):
        raise DatasetError(
            f"{path}: rows of episode {episode_index} are not frame_index 0..{n - 1} in order "
            f"(first values {frame_index[:8].tolist()})"
        )
    if table.column("timestamp").null_count:
        raise DatasetError(
            f"{path}: episode {episode_index}: column 'timestamp' has "
            f"{table.column('timestamp').null_count} null rows; expected a value per row"
        )
    timestamp = table.column("timestamp").to_numpy().astype(np.float64)
    # Before the order check: NaN compares false, so it would pass that check and reach the
    # video reader, which would blame the mp4.
    check_finite(
        timestamp, path=path, episode_index=episode_index, column="timestamp", frame_index=frame_index
    )
    if n > 1 and np.any(np.diff(timestamp) <= 0):
        bad = int(np.argmax(np.diff(timestamp) <= 0))
        raise DatasetError(
            f"{path}: episode {episode_index} timestamps are not increasing at frame {bad + 1} "
            f"({timestamp[bad]} -> {timestamp[bad + 1]})"
        )
    velocity = None
    if velocity_key and velocity_key in table.column_names:
        velocity = vector_column(table.column(velocity_key), velocity_key, path)
    task_index = (
        int_column(table, "task_index", path, episode_index) if "task_index" in table.column_names else None
    )
    state = vector_column(table.column(state_key), state_key, path, state_dim)
    action = vector_column(table.column(action_key), action_key, path, action_dim)
    for key, values in ((state_key, state), (action_key, action), (velocity_key, velocity)):
        if values is not None:
            check_finite(
                values,
                path=path,
                episode_index=episode_index,
                column=key,
                names=names_of.get(key),
                frame_index=frame_index,
            )
    return EpisodeRows(
        state=state,
        action=action,
        velocity=velocity,
        timestamp=timestamp,
        frame_index=frame_index,
        task_index=task_index,
    )


class PngDecoder:
    """PNG bytes -> (H, W, 3) uint8 RGB through FFmpeg's png decoder (no PIL/OpenCV at runtime).

    A fresh codec context per image: FFmpeg's png decoder keeps the previous picture for APNG
    blending, and a reused context was seen to OR each image into the one before it."""

    def decode(self, data: bytes) -> np.ndarray:
        ctx = av.CodecContext.create("png", "r")
        frames = ctx.decode(av.Packet(data))
        if len(frames) != 1:
            raise ValueError(f"PNG decoder returned {len(frames)} frames for one image")
        return frames[0].to_ndarray(format="rgb24")


def iter_episode_images(
    path: Path, episode_index: int, key: str, start: int, stop: int, block_frames: int
) -> Iterator[np.ndarray]:
    """Decoded images of rows [start, stop) of an episode, as blocks (B, H, W, 3) uint8.

    Reads the image column in record batches so only one batch of PNG bytes is in memory."""
    pf = open_parquet(path)
    if key not in pf.schema_arrow.names:
        raise DatasetError(f"{path}: image column '{key}' not found; found {pf.schema_arrow.names}")
    if "episode_index" not in pf.schema_arrow.names:
        raise DatasetError(f"{path}: column 'episode_index' not found; found {pf.schema_arrow.names}")
    check_column_types(pf, path, {"episode_index": "integer"})
    _check_image_type(pf.schema_arrow.field(key).type, key, path)
    decoder = PngDecoder()
    row = 0  # episode-relative row of the next matching record
    block: list[np.ndarray] = []
    batches = pf.iter_batches(
        batch_size=max(block_frames, 16),
        row_groups=row_groups_for_episode(pf, episode_index),
        columns=[key, "episode_index"],
    )
    for batch in batches:
        keep = pc.equal(batch.column("episode_index"), episode_index)
        images = batch.filter(keep).column(key)
        if len(images) == 0:
            continue
        data = images.field("bytes") if pa.types.is_struct(images.type) else images
        for i in range(len(images)):
            if start <= row < stop:
                raw = data[i].as_py()
                if raw is None:
                    raise DatasetError(f"{path}: episode {episode_index} row {row}: '{key}' has no PNG bytes")
                try:
                    block.append(decoder.decode(raw))
                except (av.FFmpegError, ValueError) as err:
                    raise DatasetError(
                        f"{path}: episode {episode_index} row {row}: '{key}' is not a decodable PNG ({err})"
                    ) from err
                if len(block) == block_frames:
                    yield _stack(block, path, key)
                    block = []
            row += 1
            if row >= stop:
                break
        if row >= stop:
            break
    if block:
        yield _stack(block, path, key)
    if row < stop:
        raise DatasetError(f"{path}: episode {episode_index} has only {row} rows of '{key}', expected {stop}")


def _check_image_type(typ: pa.DataType, key: str, path: Path) -> None:
    """An image column holds PNG bytes: binary, or lerobot's struct<bytes: binary, path: string>.
    Anything else (info.json calling a numeric column an image) would reach the PNG decoder."""
    data = typ
    if pa.types.is_struct(typ):
        index = typ.get_field_index("bytes")
        data = typ.field(index).type if index >= 0 else None
    if data is None or not (pa.types.is_binary(data) or pa.types.is_large_binary(data)):
        raise DatasetError(
            f"{path}: column '{key}' (dtype image in info.json) has type {typ}; expected PNG bytes "
            "(binary or struct<bytes: binary, path: string>)"
        )


def _stack(frames: list[np.ndarray], path: Path, key: str) -> np.ndarray:
    shapes = {f.shape for f in frames}
    if len(shapes) != 1:
        raise DatasetError(f"{path}: images of '{key}' change size within an episode: {sorted(shapes)}")
    return np.stack(frames)
