"""Bad inputs: `python -m lerobot_bridge` exits 2 with a message naming the file and what was
expected, and writes no episode file.

Each case damages a copy of a real fixture in tmp_path. The CLI runs as a real subprocess; all
cases start together (one module fixture) so the suite pays interpreter start-up once, not 16 times.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

REPO = Path(__file__).resolve().parents[1]


def _info(root: Path) -> dict:
    return json.loads((root / "meta" / "info.json").read_text())


def _set_info(root: Path, info: dict) -> None:
    (root / "meta" / "info.json").write_text(json.dumps(info))


def _edit_info(**changes) -> Callable[[Path], None]:
    def edit(root: Path) -> None:
        info = _info(root)
        info.update(changes)
        _set_info(root, info)

    return edit


def _drop_feature(key: str) -> Callable[[Path], None]:
    def edit(root: Path) -> None:
        info = _info(root)
        del info["features"][key]
        _set_info(root, info)

    return edit


def _truncate_parquet(root: Path) -> None:
    path = root / "data/chunk-000/file-000.parquet"
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])  # what a recording that never reached finalize() leaves


def _truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[:2000])


def _shift_from_timestamp(root: Path) -> None:
    """Point episode 1's videos 100 s past the end of the file (a corrupted episodes table)."""
    path = root / "meta/episodes/chunk-000/file-000.parquet"
    table = pq.read_table(path)
    for key in ("observation.images.front", "observation.images.wrist"):
        name = f"videos/{key}/from_timestamp"
        values = table.column(name).to_pylist()
        values[1] += 100.0
        table = table.set_column(table.column_names.index(name), name, pa.array(values, pa.float64()))
    pq.write_table(table, path)


def _gap_v21(root: Path) -> None:
    path = root / "meta/episodes.jsonl"
    lines = [line for line in path.read_text().splitlines() if json.loads(line)["episode_index"] != 2]
    path.write_text("\n".join(lines) + "\n")


def _gap_v30(root: Path) -> None:
    path = root / "meta/episodes/chunk-000/file-000.parquet"
    table = pq.read_table(path)
    pq.write_table(table.filter(pc.not_equal(table.column("episode_index"), 2)), path)


# Damage of the kinds tests/test_fuzz_inputs.py found escaping as tracebacks (one per class).

V30_EPISODES = "meta/episodes/chunk-000/file-000.parquet"


def _edit_feature(key: str, **changes) -> Callable[[Path], None]:
    def edit(root: Path) -> None:
        info = _info(root)
        info["features"][key].update(changes)
        _set_info(root, info)

    return edit


def _set_feature(key: str, value) -> Callable[[Path], None]:
    def edit(root: Path) -> None:
        info = _info(root)
        info["features"][key] = value
        _set_info(root, info)

    return edit


def _set_column(rel: str, name: str, values: list, typ: pa.DataType) -> Callable[[Path], None]:
    """Rewrite one column of a parquet table of the fixture copy."""

    def edit(root: Path) -> None:
        path = root / rel
        table = pq.read_table(path)
        table = table.set_column(table.column_names.index(name), pa.field(name, typ), pa.array(values, typ))
        pq.write_table(table, path)

    return edit


def _with_row(rel: str, name: str, row: int, value) -> Callable[[Path], None]:
    """Set one value of a parquet column, keeping the column's type (None for a null)."""

    def edit(root: Path) -> None:
        table = pq.read_table(root / rel)
        values = table.column(name).to_pylist()
        values[row] = value
        _set_column(rel, name, values, table.schema.field(name).type)(root)

    return edit


def _as_strings(rel: str, name: str) -> Callable[[Path], None]:
    def edit(root: Path) -> None:
        values = pq.read_table(root / rel).column(name).to_pylist()
        _set_column(rel, name, [str(v) for v in values], pa.string())(root)

    return edit


def _non_utf8_line(root: Path) -> None:
    path = root / "meta/episodes.jsonl"
    lines = path.read_bytes().splitlines()
    lines[1] = lines[1].replace(b"Grasp", b"Gr\xffsp")
    path.write_bytes(b"\n".join(lines) + b"\n")


def _non_utf8_column_name(root: Path) -> None:
    """Every raw copy of a column name in the footer made invalid UTF-8 (a damaged footer)."""
    path = root / "data/chunk-000/file-000.parquet"
    path.write_bytes(path.read_bytes().replace(b"frame_index", b"\xfframe_index"))


def _non_utf8_mp4_tag(root: Path) -> None:
    """The encoder tag of the mp4 header ("Lavf...") made invalid UTF-8."""
    path = root / "videos/observation.images.front/chunk-000/file-000.mp4"
    path.write_bytes(path.read_bytes().replace(b"Lavf", b"L\xffvf", 1))


# name: (fixture, damage, extra CLI args, fragments the message must contain)
CASES: dict[str, tuple[str, Callable[[Path], None] | None, list[str], list[str]]] = {
    "missing_root": (
        "so100_v21_video",
        lambda root: shutil.rmtree(root),
        [],
        ["dataset root does not exist"],
    ),
    "missing_info": (
        "so100_v21_video",
        lambda root: (root / "meta/info.json").unlink(),
        [],
        ["meta/info.json: file not found", "must contain meta/info.json"],
    ),
    "bad_json": (
        "so100_v21_video",
        lambda root: (root / "meta/info.json").write_text('{"codebase_version": "v2.1",'),
        [],
        ["meta/info.json: not valid JSON"],
    ),
    "v1": (
        "so100_v21_video",
        _edit_info(codebase_version="v1.6"),
        [],
        ["codebase_version 'v1.6' is not supported", "expected one of v2.0, v2.1, v3.0", "v1.x"],
    ),
    "unknown_version": (
        "so100_v30_video",
        _edit_info(codebase_version="v4.2"),
        [],
        ["codebase_version 'v4.2' is not supported", "expected one of v2.0, v2.1, v3.0"],
    ),
    "no_state": (
        "so100_v30_video",
        _drop_feature("observation.state"),
        [],
        ["meta/info.json: features has no 'observation.state'"],
    ),
    "no_action": (
        "so100_v21_video",
        _drop_feature("action"),
        [],
        ["meta/info.json: features has no 'action'"],
    ),
    "truncated_parquet": (
        "so100_v30_video",
        _truncate_parquet,
        [],
        ["data/chunk-000/file-000.parquet: not a readable parquet file", "magic bytes", "finalize()"],
    ),
    "missing_mp4": (
        "so100_v30_video_multifile",
        lambda root: (root / "videos/observation.images.wrist/chunk-000/file-001.mp4").unlink(),
        [],
        ["videos/observation.images.wrist/chunk-000/file-001.mp4: video file not found", "episode 2"],
    ),
    "corrupt_mp4_in_worker": (
        "so100_v30_video_h264",
        lambda root: _truncate(root / "videos/observation.images.front/chunk-000/file-000.mp4"),
        ["--convert_workers", "2"],
        # two workers: whichever of episodes 0 and 1 (both in this file) fails first is named
        ["error: episode ", "videos/observation.images.front/chunk-000/file-000.mp4: cannot open video"],
    ),
    "video_does_not_cover_episode": (
        "so100_v30_video",
        _shift_from_timestamp,
        [],
        [
            "episode 1: ",
            "camera 'observation.images.front' has no frame within half a frame period",
            "the video does not match the data",
        ],
    ),
    "gap_v21": (
        "so100_v21_video",
        _gap_v21,
        [],
        ["meta/episodes.jsonl: episode_index values are not contiguous from 0: missing 2"],
    ),
    "gap_v30": (
        "so100_v30_video",
        _gap_v30,
        [],
        ["meta/episodes: episode_index values are not contiguous from 0: missing 2", "total_episodes=5"],
    ),
    "data_path_escapes": (
        "so100_v21_video",
        _edit_info(data_path="../../outside/episode_{episode_index:06d}.parquet"),
        [],
        ["'data_path' template", "outside the dataset root"],
    ),
    "video_path_absolute": (
        "so100_v30_video",
        _edit_info(video_path="/tmp/{video_key}/chunk-{chunk_index:03d}/file-{file_index:03d}.mp4"),
        [],
        ["'video_path' template", "outside the dataset root"],
    ),
    "video_path_null_with_video_cameras": (
        "so100_v21_video",
        _edit_info(video_path=None),
        [],
        ["meta/info.json: camera 'observation.images.front' has dtype video but 'video_path' is None",
         "expected a path template"],
    ),
    "unknown_camera_key": (
        "so100_v30_image",
        None,
        ["--camera_keys", "observation.images.top"],
        [
            "--camera_keys ['observation.images.top'] not found",
            "available camera keys: ['observation.images.front', 'observation.images.wrist']",
        ],
    ),
    "camera_names_length": (
        "so100_v30_video",
        None,
        ["--camera_keys", "observation.images.front", "--camera_names", "a", "b"],
        ["--camera_names has 2 names but there are 1 cameras", "available camera keys"],
    ),
    "camera_names_not_unique": (
        "so100_v30_video",
        None,
        ["--camera_names", "cam", "cam"],
        ["camera names must be unique", "available camera keys"],
    ),
    # --- found by the fuzz test: damage that used to escape as a traceback ---
    "feature_not_object": (
        "so100_v21_video",
        _set_feature("action", None),
        [],
        ["meta/info.json: features['action'] must be an object with dtype/shape, got null"],
    ),
    "camera_shape_not_integers": (
        "so100_v30_video",
        _edit_feature("observation.images.front", shape=["a", "b", "c"]),
        [],
        ["meta/info.json: features['observation.images.front'].shape must be three positive integers"],
    ),
    "chunks_size_string": (
        "so100_v21_video",
        _edit_info(chunks_size="1000"),
        [],
        ["meta/info.json: 'chunks_size' must be a positive integer", "got '1000'"],
    ),
    "data_path_subscript": (
        "so100_v21_video",
        _edit_info(data_path="data/{episode_index[0]}.parquet"),
        [],
        ["meta/info.json: cannot format 'data_path' template", "TypeError"],
    ),
    "fps_nan": (
        "so100_v30_video",
        _edit_info(fps=float("nan")),
        [],
        ["meta/info.json: 'fps' must be a finite positive number, got nan"],
    ),
    "v30_episode_length_null": (
        "so100_v30_video",
        _with_row(V30_EPISODES, "length", 1, None),
        [],
        ["meta/episodes/chunk-000/file-000.parquet: row 1: 'length' must be an integer >= 0, got None"],
    ),
    "v30_task_index_null": (
        "so100_v30_video",
        _with_row("meta/tasks.parquet", "task_index", 1, None),
        [],
        ["meta/tasks.parquet: row 1: 'task_index' must be an integer >= 0, got None"],
    ),
    "jsonl_not_utf8": (
        "so100_v21_video",
        _non_utf8_line,
        [],
        ["meta/episodes.jsonl:2: not valid UTF-8"],
    ),
    "parquet_column_name_not_utf8": (
        "so100_v30_video",
        _non_utf8_column_name,
        [],
        ["data/chunk-000/file-000.parquet: not a readable parquet file"],
    ),
    "data_episode_index_strings": (
        "so100_v30_video",
        _as_strings("data/chunk-000/file-000.parquet", "episode_index"),
        [],
        ["data/chunk-000/file-000.parquet: column 'episode_index' has type string; expected integers"],
    ),
    "from_timestamp_huge": (
        "so100_v30_video",
        _with_row(V30_EPISODES, "videos/observation.images.front/from_timestamp", 1, 1e30),
        [],
        ["episode 1: ", "file-000.mp4: cannot seek to 1e+30 s", "from_timestamp"],
    ),
    "image_dtype_on_numeric_column": (
        "so100_v30_image",
        _edit_feature("timestamp", dtype="image"),
        [],
        [
            "data/chunk-000/file-000.parquet: column 'timestamp' (dtype image in info.json) has type float",
            "expected PNG bytes",
        ],
    ),
    "mp4_tag_not_utf8": (
        "so100_v30_video",
        _non_utf8_mp4_tag,
        [],
        ["videos/observation.images.front/chunk-000/file-000.mp4: cannot open video"],
    ),
    "frame_index_null": (
        "so100_v30_video",
        _with_row("data/chunk-000/file-000.parquet", "frame_index", 3, None),
        [],
        ["data/chunk-000/file-000.parquet: episode 0: column 'frame_index' has 1 null rows"],
    ),
}


@pytest.fixture(scope="module")
def cli_runs(fixtures_dir, tmp_path_factory) -> dict[str, tuple[subprocess.CompletedProcess, Path]]:
    base = tmp_path_factory.mktemp("bad_inputs")
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    procs = {}
    for name, (fixture, damage, args, _) in CASES.items():
        root = base / name / "input"
        shutil.copytree(fixtures_dir / fixture, root)
        if damage is not None:
            damage(root)
        out = base / name / "output"
        cmd = [sys.executable, "-m", "lerobot_bridge", str(root), str(out), "--convert_workers", "1", *args]
        procs[name] = (
            subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env),
            out,
        )
    results = {}
    for name, (proc, out) in procs.items():
        stdout, stderr = proc.communicate(timeout=120)
        results[name] = (subprocess.CompletedProcess(proc.args, proc.returncode, stdout, stderr), out)
    return results


@pytest.mark.parametrize("case", list(CASES))
def test_bad_input_exits_2_with_message(case, cli_runs):
    proc, out = cli_runs[case]
    assert proc.returncode == 2, proc.stderr
    message = proc.stderr.strip().splitlines()[-1]
    assert message.startswith("error: ")
    for fragment in CASES[case][3]:
        assert fragment in message, f"{fragment!r} not in {message!r}"
    assert "Traceback" not in proc.stderr
    assert not out.exists() or not [*out.glob("*.hdf5"), *out.glob("conversion.json")]  # nothing left


def test_valid_input_exits_0(fixtures_dir, tmp_path):
    out = tmp_path / "out"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "lerobot_bridge",
            str(fixtures_dir / "so100_v30_image"),
            str(out),
            "--max_episodes",
            "1",
            "--episode_len",
            "30",
            "--convert_workers",
            "1",
            "--report",
        ],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert [e["frames_out"] for e in report["episodes"]] == [30]
    assert sorted(p.name for p in out.iterdir()) == ["conversion.json", "episode_0.hdf5"]
