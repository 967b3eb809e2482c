"""Seeded random damage to a copy of a real LeRobot fixture, for tests/test_fuzz_inputs.py.

`plan_case(seed, number)` picks the fixture and the mutation family of case `number` without
touching a file (so pytest can name the case at collection); `apply_case(root, seed, number)`
damages the copy at `root` and returns one line per mutation saying exactly what was done.
Everything is drawn from `random.Random(f"{seed}:{number}")`: the same seed and case number
always give the same damage, whatever other cases ran before.

Families:
  bytes    (a) flip / overwrite / zero / truncate bytes of one file: a data parquet, an mp4,
               meta/info.json, the episodes table (jsonl or parquet), the tasks table
  values   (b) rewrite parquet columns with pyarrow (NaN / Inf / huge / negative values, nulls,
               wrong list lengths, wrong types, dropped / renamed columns, dropped / duplicated /
               shuffled rows) in the data files and the v3.0 episodes / tasks tables; for v2.x
               the same kind of damage to the records of episodes.jsonl / tasks.jsonl
  json     (c) meta/info.json fields: deleted keys, wrong types, null, bad fps, shapes, dtypes,
               path templates, codebase_version, chunks_size, totals, extra features
A case applies one mutation, or two (different families) in about one case out of five.
"""

from __future__ import annotations

import json
import math
import random
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

FIXTURES = (
    "so100_v21_video",
    "so100_v30_converted_from_v21",
    "so100_v30_image",
    "so100_v30_video",
    "so100_v30_video_h264",
    "so100_v30_video_multifile",
)
FAMILIES = ("bytes", "values", "json")

VECTOR_COLUMNS = ("action", "observation.state")
INDEX_COLUMNS = ("timestamp", "frame_index", "episode_index", "index", "task_index")

FLOAT_SPECIALS = (
    math.nan, math.inf, -math.inf, 1e30, -1e30, 3.4e38, -3.4e38, 1e300, 1e-45, 0.0, -1.0, 1e9,
)
INT_SPECIALS = (-1, -2, -(2**63), 2**63 - 1, 2**31, 2**40, 0, 10**6, 7)

# JSON values that are wrong almost anywhere (json.dumps writes NaN / Infinity, which Python reads)
JSON_PALETTE = (
    None, True, False, -1, 0, 1, 2**31, 2**64, -(2**63), 1.5, math.nan, math.inf, -math.inf,
    "", "x", "{bogus}", "../../etc", [], [1], [None], {}, {"a": 1}, [6], [0], [-1], "v3.0",
)


# ---------------------------------------------------------------------------------------------
# planning


def case_rng(seed: int, number: int) -> random.Random:
    return random.Random(f"{seed}:{number}")


def plan_case(seed: int, number: int) -> tuple[str, list[str]]:
    """(fixture, families) of a case, drawn first from the case's rng (apply_case repeats the draw)."""
    rng = case_rng(seed, number)
    return _plan(rng)


def _plan(rng: random.Random) -> tuple[str, list[str]]:
    fixture = rng.choice(FIXTURES)
    first = rng.choices(FAMILIES, weights=(3, 4, 3))[0]
    families = [first]
    if rng.random() < 0.2:
        families.append(rng.choice([f for f in FAMILIES if f != first]))
    # json, then values, then bytes: a later step must still be able to parse what it rewrites
    return fixture, sorted(families, key=("json", "values", "bytes").index)


def apply_case(root: Path, seed: int, number: int) -> list[str]:
    """Damage the fixture copy at `root` (must be plan_case's fixture); one description per mutation."""
    rng = case_rng(seed, number)
    _, families = _plan(rng)
    done = []
    for family in families:
        mutate = {"bytes": mutate_bytes, "values": mutate_values, "json": mutate_info_json}[family]
        done.append(f"[{family}] {mutate(root, rng)}")
    return done


# ---------------------------------------------------------------------------------------------
# helpers


def _rel(root: Path, path: Path) -> str:
    return str(path.relative_to(root))


def _is_v2(root: Path) -> bool:
    return (root / "meta" / "episodes.jsonl").is_file()


def data_files(root: Path) -> list[Path]:
    return sorted((root / "data").glob("*/*.parquet"))


def video_files(root: Path) -> list[Path]:
    return sorted((root / "videos").rglob("*.mp4"))


def episode_tables(root: Path) -> list[Path]:
    if _is_v2(root):
        return [root / "meta" / "episodes.jsonl"]
    return sorted((root / "meta" / "episodes").glob("*/*.parquet"))


def task_tables(root: Path) -> list[Path]:
    return [p for p in (root / "meta" / "tasks.jsonl", root / "meta" / "tasks.parquet") if p.is_file()]


def _short(values, limit: int = 8) -> str:
    values = list(values)
    return str(values[:limit])[:-1] + (", ...]" if len(values) > limit else "]")


# ---------------------------------------------------------------------------------------------
# (a) bytes


def mutate_bytes(root: Path, rng: random.Random) -> str:
    groups = {
        "data": data_files(root),
        "video": video_files(root),
        "info": [root / "meta" / "info.json"],
        "episodes": episode_tables(root),
        "tasks": task_tables(root),
    }
    groups = {k: v for k, v in groups.items() if v}
    path = rng.choice(groups[rng.choice(sorted(groups))])
    data = bytearray(path.read_bytes())
    size = len(data)
    region = rng.choice(("anywhere", "head", "tail"))
    lo, hi = {"anywhere": (0, size), "head": (0, min(size, 512)), "tail": (max(0, size - 2048), size)}[region]
    op = rng.choice(("flip", "flip", "overwrite", "zero", "truncate", "truncate_tail"))
    if op == "flip":
        count = rng.choice((1, 1, 2, 4, 16, 64))
        offsets = sorted(rng.randrange(lo, hi) for _ in range(count))
        for off in offsets:
            data[off] ^= rng.randrange(1, 256)
        what = f"xor {count} byte(s) at offsets {_short(offsets)} ({region})"
    elif op in ("overwrite", "zero"):
        start = rng.randrange(lo, hi)
        length = min(size - start, rng.choice((1, 8, 64, 512)))
        fill = bytes(length) if op == "zero" else bytes(rng.randrange(256) for _ in range(length))
        data[start : start + length] = fill
        kind = "zeroed" if op == "zero" else "random-overwrote"
        what = f"{kind} bytes [{start}, {start + length}) ({region})"
    elif op == "truncate":
        keep = rng.choice((0, 1, 8, rng.randrange(size), size // 2))
        del data[keep:]
        what = f"truncated to {keep} of {size} bytes"
    else:  # truncate_tail: lose the last few bytes (a footer / moov atom cut short)
        cut = min(size, rng.choice((1, 4, 8, 100, 1000)))
        del data[size - cut :]
        what = f"removed the last {cut} of {size} bytes"
    path.write_bytes(bytes(data))
    return f"{_rel(root, path)}: {what}"


# ---------------------------------------------------------------------------------------------
# (b) values


def mutate_values(root: Path, rng: random.Random) -> str:
    r = rng.random()
    if r < 0.7:
        path = rng.choice(data_files(root))
        return f"{_rel(root, path)}: {mutate_data_table(path, rng)}"
    if r < 0.9:
        path = rng.choice(episode_tables(root))
        if path.suffix == ".jsonl":
            return f"{_rel(root, path)}: {mutate_jsonl(path, rng, EPISODE_FIELDS)}"
        return f"{_rel(root, path)}: {mutate_episodes_table(path, rng)}"
    tables = task_tables(root)
    if not tables:
        path = rng.choice(data_files(root))
        return f"{_rel(root, path)}: {mutate_data_table(path, rng)}"
    path = rng.choice(tables)
    if path.suffix == ".jsonl":
        return f"{_rel(root, path)}: {mutate_jsonl(path, rng, ('task_index', 'task'))}"
    return f"{_rel(root, path)}: {mutate_generic_table(path, rng, ['task_index', 'task'])}"


def _write(path: Path, table: pa.Table) -> None:
    pq.write_table(table, path)


def _set(table: pa.Table, name: str, array: pa.Array | pa.ChunkedArray) -> pa.Table:
    i = table.column_names.index(name)
    return table.set_column(i, pa.field(name, array.type), array)


def _rows(table: pa.Table, rng: random.Random) -> list[int]:
    n = table.num_rows
    k = min(n, rng.choice((1, 1, 1, 2, 3)))
    return sorted(rng.sample(range(n), k)) if n else []


def _float32(x: float) -> float:
    with np.errstate(over="ignore"):
        return float(np.float32(x))


def _special_values(table: pa.Table, name: str, rng: random.Random) -> tuple[pa.Table, str]:
    """Put a NaN / Inf / huge / negative value in a few rows of a numeric or vector column."""
    col = table.column(name)
    typ = col.type
    values = col.to_pylist()
    rows = _rows(table, rng)
    is_list = pa.types.is_list(typ) or pa.types.is_fixed_size_list(typ) or pa.types.is_large_list(typ)
    elem_type = typ.value_type if is_list else typ
    if pa.types.is_floating(elem_type):
        value = rng.choice(FLOAT_SPECIALS)
        if elem_type == pa.float32():
            value = _float32(value)
    elif pa.types.is_integer(elem_type):
        value = rng.choice(INT_SPECIALS)
    else:
        return _nulls(table, name, rng)
    where = []
    for r in rows:
        if is_list:
            if not values[r]:
                continue
            j = rng.randrange(len(values[r]))
            values[r] = list(values[r])
            values[r][j] = value
            where.append(f"{r}[{j}]")
        else:
            values[r] = value
            where.append(str(r))
    return _set(table, name, pa.array(values, typ)), f"column '{name}' rows {_short(where)} set to {value!r}"


def _shift_int(table: pa.Table, name: str, rng: random.Random) -> tuple[pa.Table, str]:
    """Add a constant to (or negate) a whole integer / float column."""
    col = table.column(name)
    if not (pa.types.is_integer(col.type) or pa.types.is_floating(col.type)):
        return _special_values(table, name, rng)
    values = col.to_pylist()
    op = rng.choice(("+1", "-1", "negate", "+1000", "*2"))
    fn = {"+1": lambda v: v + 1, "-1": lambda v: v - 1, "negate": lambda v: -v,
          "+1000": lambda v: v + 1000, "*2": lambda v: v * 2}[op]
    values = [None if v is None else fn(v) for v in values]
    return _set(table, name, pa.array(values, col.type)), f"column '{name}': every value {op}"


def _nulls(table: pa.Table, name: str, rng: random.Random) -> tuple[pa.Table, str]:
    col = table.column(name)
    values = col.to_pylist()
    rows = _rows(table, rng)
    typ = col.type
    is_list = pa.types.is_list(typ) or pa.types.is_fixed_size_list(typ) or pa.types.is_large_list(typ)
    inner = is_list and rng.random() < 0.5
    for r in rows:
        if inner and values[r]:
            values[r] = list(values[r])
            values[r][rng.randrange(len(values[r]))] = None
        else:
            values[r] = None
    kind = "an element null" if inner else "null"
    return _set(table, name, pa.array(values, typ)), f"column '{name}' rows {_short(rows)} {kind}"


def _wrong_list_length(table: pa.Table, name: str, rng: random.Random) -> tuple[pa.Table, str]:
    col = table.column(name)
    typ = col.type
    values = [list(v) if v is not None else None for v in col.to_pylist()]
    dim = len(next(v for v in values if v is not None))
    elem = typ.value_type
    if rng.random() < 0.5:
        # one row of a different length (only a variable-length list can hold it)
        r = rng.randrange(len(values))
        new = rng.choice((0, 1, dim - 1, dim + 1, 2 * dim))
        values[r] = (values[r] * 3)[:new]
        return (
            _set(table, name, pa.array(values, pa.list_(elem))),
            f"column '{name}' as list<{elem}>, row {r} has {new} values instead of {dim}",
        )
    # every row of another length, as a fixed_size_list (a feature shape that disagrees with info.json)
    new = rng.choice((1, dim - 1, dim + 1, 2 * dim))
    values = [(v * 3)[:new] for v in values]
    return (
        _set(table, name, pa.array(values, pa.list_(elem, new))),
        f"column '{name}' as fixed_size_list<{elem}>[{new}] (info.json says {dim})",
    )


def _wrong_type(table: pa.Table, name: str, rng: random.Random) -> tuple[pa.Table, str]:
    col = table.column(name)
    values = col.to_pylist()
    choice = rng.choice(("string", "float64_nan", "bool", "int64", "list_of_list"))
    if choice == "string":
        new = pa.array([None if v is None else str(v) for v in values], pa.string())
    elif choice == "float64_nan":
        flat = [_first_number(v) for v in values]
        flat[rng.randrange(len(flat))] = math.nan
        new = pa.array(flat, pa.float64())
    elif choice == "bool":
        new = pa.array([bool(_first_number(v)) for v in values], pa.bool_())
    elif choice == "int64":
        new = pa.array([_int_or_none(_first_number(v)) for v in values], pa.int64())
    else:
        new = pa.array([[[_first_number(v)]] for v in values], pa.list_(pa.list_(pa.float64())))
    return _set(table, name, new), f"column '{name}' ({col.type}) replaced by {new.type} ({choice})"


def _first_number(v):
    while isinstance(v, list | tuple):
        v = v[0] if v else 0.0
    if isinstance(v, dict | bytes | str) or v is None:
        return 0.0
    return v


def _int_or_none(v):
    try:
        return int(v)
    except (ValueError, OverflowError):
        return None


def _drop_or_rename(table: pa.Table, name: str, rng: random.Random) -> tuple[pa.Table, str]:
    if rng.random() < 0.5:
        return table.drop_columns([name]), f"column '{name}' dropped"
    new = rng.choice((name.upper(), name + "_", name.replace(".", "_"), " " + name))
    names = [new if c == name else c for c in table.column_names]
    return table.rename_columns(names), f"column '{name}' renamed to {new!r}"


def _row_damage(table: pa.Table, rng: random.Random) -> tuple[pa.Table, str]:
    n = table.num_rows
    op = rng.choice(("drop_one", "duplicate_one", "shuffle", "reverse", "empty", "first_half", "swap_two"))
    if op == "drop_one" and n:
        r = rng.randrange(n)
        idx = [i for i in range(n) if i != r]
        what = f"row {r} removed"
    elif op == "duplicate_one" and n:
        r = rng.randrange(n)
        idx = list(range(r + 1)) + list(range(r, n))
        what = f"row {r} duplicated"
    elif op == "shuffle":
        idx = list(range(n))
        rng.shuffle(idx)
        what = "rows shuffled"
    elif op == "reverse":
        idx = list(range(n))[::-1]
        what = "rows reversed"
    elif op == "first_half":
        idx = list(range(n // 2))
        what = f"only the first {n // 2} of {n} rows kept"
    elif op == "swap_two" and n >= 2:
        a, b = sorted(rng.sample(range(n), 2))
        idx = list(range(n))
        idx[a], idx[b] = b, a
        what = f"rows {a} and {b} swapped"
    else:
        idx = []
        what = f"all {n} rows removed (schema kept)"
    return table.take(pa.array(idx, pa.int64())), what


def _image_damage(table: pa.Table, name: str, rng: random.Random) -> tuple[pa.Table, str]:
    """A camera column of PNG bytes (struct<bytes, path>): break one row's image."""
    col = table.column(name)
    values = col.to_pylist()
    r = rng.randrange(len(values))
    op = rng.choice(("truncate", "flip", "null_bytes", "empty", "null_struct", "not_png"))
    v = dict(values[r])
    raw = bytearray(v["bytes"])
    if op == "truncate":
        v["bytes"] = bytes(raw[: rng.randrange(len(raw))])
    elif op == "flip":
        for _ in range(rng.choice((1, 8, 64))):
            raw[rng.randrange(len(raw))] ^= rng.randrange(1, 256)
        v["bytes"] = bytes(raw)
    elif op == "null_bytes":
        v["bytes"] = None
    elif op == "empty":
        v["bytes"] = b""
    elif op == "not_png":
        v["bytes"] = b"GIF89a" + bytes(raw[6:])
    values[r] = None if op == "null_struct" else v
    return _set(table, name, pa.array(values, col.type)), f"column '{name}' row {r}: image {op}"


def mutate_data_table(path: Path, rng: random.Random) -> str:
    table = pq.read_table(path)
    images = [f.name for f in table.schema if pa.types.is_struct(f.type)]
    op = rng.choices(
        ("special", "shift", "nulls", "list_length", "type", "drop_rename", "rows", "image"),
        weights=(6, 2, 1, 2, 1, 1, 2, 2 if images else 0),
    )[0]
    if op == "image":
        table, what = _image_damage(table, rng.choice(images), rng)
    elif op == "rows":
        table, what = _row_damage(table, rng)
    else:
        if op in ("list_length",):
            name = rng.choice(VECTOR_COLUMNS)
        elif op == "shift":
            name = rng.choice(INDEX_COLUMNS)
        else:
            name = rng.choice(VECTOR_COLUMNS + INDEX_COLUMNS)
        fn = {"special": _special_values, "shift": _shift_int, "nulls": _nulls,
              "list_length": _wrong_list_length, "type": _wrong_type, "drop_rename": _drop_or_rename}[op]
        table, what = fn(table, name, rng)
    _write(path, table)
    return what


def mutate_episodes_table(path: Path, rng: random.Random) -> str:
    table = pq.read_table(path)
    plain = [c for c in table.column_names if not c.startswith("stats/")]
    return mutate_generic_table(path, rng, plain, table)


def mutate_generic_table(
    path: Path, rng: random.Random, columns: list[str], table: pa.Table | None = None
) -> str:
    table = pq.read_table(path) if table is None else table
    columns = [c for c in columns if c in table.column_names]
    op = rng.choices(
        ("special", "shift", "nulls", "type", "drop_rename", "rows"), weights=(6, 3, 1, 1, 1, 2)
    )[0]
    if op == "rows":
        table, what = _row_damage(table, rng)
    else:
        name = rng.choice(columns)
        fn = {"special": _special_values, "shift": _shift_int, "nulls": _nulls,
              "type": _wrong_type, "drop_rename": _drop_or_rename}[op]
        table, what = fn(table, name, rng)
    _write(path, table)
    return what


# v2.x jsonl records

EPISODE_FIELDS = ("episode_index", "length", "tasks")


def mutate_jsonl(path: Path, rng: random.Random, fields: tuple[str, ...]) -> str:
    lines = [line for line in path.read_text().splitlines() if line.strip()]
    recs = [json.loads(line) for line in lines]
    op = rng.choices(
        ("field_value", "field_delete", "field_shift", "drop_line", "dup_line", "swap_lines", "garbage_line",
         "not_object"),
        weights=(5, 1, 3, 1, 1, 1, 1, 1),
    )[0]
    i = rng.randrange(len(recs))
    if op == "field_value":
        key = rng.choice(fields)
        value = rng.choice(JSON_PALETTE)
        recs[i][key] = value
        what = f"line {i + 1}: '{key}' = {value!r}"
    elif op == "field_delete":
        key = rng.choice(fields)
        recs[i].pop(key, None)
        what = f"line {i + 1}: '{key}' deleted"
    elif op == "field_shift":
        key = rng.choice([f for f in fields if isinstance(recs[i].get(f), int)] or list(fields))
        delta = rng.choice((1, -1, 100, -100, 10**9))
        old = recs[i].get(key)
        recs[i][key] = old + delta if isinstance(old, int) else delta
        what = f"line {i + 1}: '{key}' {old!r} -> {recs[i][key]!r}"
    elif op == "drop_line":
        del recs[i]
        what = f"line {i + 1} removed"
    elif op == "dup_line":
        recs.insert(i, dict(recs[i]))
        what = f"line {i + 1} duplicated"
    elif op == "swap_lines":
        j = rng.randrange(len(recs))
        recs[i], recs[j] = recs[j], recs[i]
        what = f"lines {i + 1} and {j + 1} swapped"
    else:
        recs[i] = None  # placeholder, written raw below
        what = f"line {i + 1} replaced by {'garbage' if op == 'garbage_line' else 'a JSON list'}"
    out = []
    for rec in recs:
        if rec is None:
            out.append('{"episode_index": 0, "len' if op == "garbage_line" else "[1, 2, 3]")
        else:
            out.append(json.dumps(rec))
    path.write_text("\n".join(out) + "\n")
    return what


# ---------------------------------------------------------------------------------------------
# (c) meta/info.json


V2_DATA = "data/chunk-{episode_chunk:03d}/episode_{episode_index:06d}.parquet"
V3_DATA = "data/chunk-{chunk_index:03d}/file-{file_index:03d}.parquet"
V3_VIDEO = "videos/{video_key}/chunk-{chunk_index:03d}/file-{file_index:03d}.mp4"
BAD_TEMPLATES = (
    "{bogus}", "../{chunk_index}/x.parquet", "/etc/{chunk_index}.parquet", "data/{chunk_index",
    "data/{chunk_index.real}.parquet", "data/{chunk_index[0]}.parquet", "data/{0}.parquet", "",
    "data/{chunk_index:s}.parquet", "data/{episode_index:06d}.parquet", "data/{chunk_index!x}.parquet",
    "data/{chunk_index:>{file_index}}.parquet", "data/{chunk_index:,d}/{file_index:q}.parquet", ".",
    "data", V2_DATA, V3_DATA, V3_VIDEO, None, 5, ["data"], "{video_key}",
)


def _random_node(obj, rng: random.Random, depth: int = 0) -> list:
    """A random path of keys / indices into a JSON tree (biased to stop at a shallow depth)."""
    if isinstance(obj, dict):
        children = list(obj.keys())
    else:
        children = list(range(len(obj))) if isinstance(obj, list) else []
    if not children or (depth > 0 and rng.random() < 0.35):
        return []
    key = rng.choice(children)
    return [key, *_random_node(obj[key], rng, depth + 1)]


def _feature_keys(info: dict) -> list[str]:
    feats = info.get("features")
    return list(feats) if isinstance(feats, dict) else []


def mutate_info_json(root: Path, rng: random.Random) -> str:
    path = root / "meta" / "info.json"
    info = json.loads(path.read_text())
    cameras = [k for k, f in info["features"].items() if f.get("dtype") in ("video", "image")]
    op = rng.choices(
        ("generic", "fps", "version", "vector_shape", "camera_shape", "dtype", "template", "chunks_size",
         "totals", "feature_value", "extra_feature", "camera_info"),
        weights=(6, 2, 2, 2, 2, 2, 3, 1, 1, 1, 1, 1),
    )[0]
    if op == "generic":
        node = _random_node(info, rng)
        parent = info
        for k in node[:-1]:
            parent = parent[k]
        if rng.random() < 0.3:
            del parent[node[-1]]
            what = f"deleted {node}"
        else:
            value = rng.choice(JSON_PALETTE)
            parent[node[-1]] = value
            what = f"{node} = {value!r}"
    elif op == "fps":
        value = rng.choice((-30, 0, math.nan, math.inf, 1e-9, 1e9, "30", None, True, 29.97, 15, 60, -0.0))
        info["fps"] = value
        what = f"fps = {value!r}"
    elif op == "version":
        value = rng.choice(("v2.0", "v2.1", "v3.0", "v1.6", "3.0", None, 3.0, ["v3.0"], "", "V3.0", "v3.0 "))
        info["codebase_version"] = value
        what = f"codebase_version = {value!r}"
    elif op == "vector_shape":
        key = rng.choice(VECTOR_COLUMNS)
        value = rng.choice(([0], [-1], [7], [5], [6, 1], [], "6", [6.0], None, [True], [2**40], [3, 2], 6))
        info["features"][key]["shape"] = value
        what = f"features['{key}'].shape = {value!r}"
    elif op == "camera_shape":
        key = rng.choice(cameras)
        field, value = rng.choice((
            ("shape", [72, 96]), ("shape", [0, 0, 3]), ("shape", [-72, 96, 3]), ("shape", ["a", "b", "c"]),
            ("shape", [96, 72, 3]), ("shape", None), ("shape", [72.5, 96, 3]), ("shape", [3, 72, 96]),
            ("shape", [2**40, 2**40, 3]), ("names", ["channels", "height", "width"]), ("names", None),
            ("names", ["height", "height", "width"]), ("names", "hwc"), ("names", [1, 2, 3]),
        ))
        info["features"][key][field] = value
        what = f"features['{key}'].{field} = {value!r}"
    elif op == "dtype":
        key = rng.choice(_feature_keys(info))
        value = rng.choice(("float64", "int64", "string", "video", "image", None, 5, "bool", ""))
        info["features"][key]["dtype"] = value
        what = f"features['{key}'].dtype = {value!r}"
    elif op == "template":
        key = rng.choice(("data_path", "video_path"))
        value = rng.choice(BAD_TEMPLATES)
        info[key] = value
        what = f"{key} = {value!r}"
    elif op == "chunks_size":
        value = rng.choice((0, -1, "1000", None, 1.5, 1, 2, math.nan))
        info["chunks_size"] = value
        what = f"chunks_size = {value!r}"
    elif op == "totals":
        key = rng.choice(("total_episodes", "total_frames", "total_tasks", "splits"))
        value = rng.choice((-1, 0, 10**9, "5", None, {"train": "0:99"}, 1))
        info[key] = value
        what = f"{key} = {value!r}"
    elif op == "feature_value":
        key = rng.choice(_feature_keys(info))
        value = rng.choice((5, "x", None, [], [1, 2], True))
        info["features"][key] = value
        what = f"features['{key}'] = {value!r}"
    elif op == "extra_feature":
        key, value = rng.choice((
            ("observation.velocity", {"dtype": "float32", "shape": [6], "names": None}),
            ("observation.velocity", {"dtype": "float32", "shape": [3], "names": None}),
            ("observation.images.extra", {"dtype": "video", "shape": [72, 96, 3],
                                          "names": ["height", "width", "channels"]}),
            ("observation.images.extra", {"dtype": "image", "shape": [72, 96, 3],
                                          "names": ["height", "width", "channels"]}),
        ))
        info["features"][key] = value
        what = f"added features['{key}'] = {value!r}"
    else:  # camera_info
        key = rng.choice(cameras)
        value = rng.choice((None, 5, "x", [], {"video.codec": 5}, {"video.codec": None}, {"video.fps": -1}))
        info["features"][key]["info"] = value
        what = f"features['{key}'].info = {value!r}"
    path.write_text(json.dumps(info, indent=2))
    return f"meta/info.json: {what}"
