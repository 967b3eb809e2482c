"""Audit issue 12, data bridge part: each defect reproduced on a copy of a real fixture (or an
Innate skill written by tests/test_innate_import.py's helpers) in tmp_path.

Every refusal asserts the exit code of `python -m lerobot_bridge` (2 on DatasetError), that the
message names the file, the field and the episode, and that the output folder holds nothing that
looks valid (no conversion.json, no episode_*.hdf5, no EpisodeWriter temporaries). Error cases
call the CLI's `main()` in-process (same code, no interpreter start-up); the signal cases run it
as a real subprocess in its own session.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import h5py
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from test_innate_import import H, W, write_skill

from lerobot_bridge import convert as convert_module
from lerobot_bridge.__main__ import main as cli_main
from lerobot_bridge.convert import _checked_size, conversion_fingerprint, convert_dataset
from lerobot_bridge.errors import DatasetError
from lerobot_bridge.synthetic import encode_video, frame_code_image, write_v21_dataset
from lerobot_bridge.types import ConversionResult

REPO = Path(__file__).resolve().parents[1]
MOTORS = [
    "shoulder_pan.pos",
    "shoulder_lift.pos",
    "elbow_flex.pos",
    "wrist_flex.pos",
    "wrist_roll.pos",
    "gripper.pos",
]


# ---------------------------------------------------------------------------------------------
# helpers


def copy_fixture(fixtures_dir: Path, name: str, tmp_path: Path) -> Path:
    root = tmp_path / name
    shutil.copytree(fixtures_dir / name, root)
    return root


def run_cli(capsys, *args) -> tuple[int, str]:
    """(exit code, last stderr line) of `python -m lerobot_bridge ARGS`, run in-process."""
    capsys.readouterr()
    code = cli_main([str(a) for a in args])
    err = capsys.readouterr().err.strip()
    return code, err.splitlines()[-1] if err else ""


def assert_nothing_valid(out: Path) -> None:
    """Nothing a later reader could take for a complete (or partial) conversion."""
    if not out.exists():
        return
    left = sorted(p.name for p in out.iterdir())
    assert not [n for n in left if n == "conversion.json" or n.startswith(("episode_", ".episode_"))], left


def _edit_parquet(path: Path, column: str, row: int, component: int | None, value: float) -> None:
    table = pq.read_table(path)
    col = table.column(column)
    values = col.to_pylist()
    if component is None:
        values[row] = value
    else:
        values[row][component] = value
    table = table.set_column(table.column_names.index(column), column, pa.array(values, col.type))
    pq.write_table(table, path)


def _add_velocity(root: Path) -> None:
    """An observation.velocity feature (2 x state) in every data file of a v2.1 copy."""
    info = json.loads((root / "meta/info.json").read_text())
    info["features"]["observation.velocity"] = {"dtype": "float32", "shape": [6], "names": MOTORS}
    (root / "meta/info.json").write_text(json.dumps(info))
    for path in sorted((root / "data").rglob("*.parquet")):
        table = pq.read_table(path)
        state = table.column("observation.state")
        velocity = pa.array([[2 * v for v in row] for row in state.to_pylist()], state.type)
        pq.write_table(table.append_column("observation.velocity", velocity), path)


def _reencode(path: Path, episode: int, frames: int, height: int, width: int) -> None:
    """Replace one mp4 with the same frame-coded content at another size."""
    path.unlink()
    encode_video(
        path,
        (frame_code_image(i, episode, height, width) for i in range(frames)),
        30,
        codec="libx264",
        options={"preset": "ultrafast"},
    )


def _episode_lengths(root: Path) -> dict[int, int]:
    lines = (root / "meta/episodes.jsonl").read_text().splitlines()
    return {rec["episode_index"]: rec["length"] for rec in map(json.loads, lines)}


# ---------------------------------------------------------------------------------------------
# 1 + 6: NaN / Inf refused at conversion, blamed on the parquet file, episode, row and column


@pytest.mark.parametrize(
    "column, component, value, expected",
    [
        ("action", 5, float("nan"), "column 'action' component 5 ('gripper.pos') is nan"),
        (
            "observation.state",
            0,
            float("inf"),
            "column 'observation.state' component 0 ('shoulder_pan.pos') is inf",
        ),
        (
            "observation.velocity",
            2,
            float("-inf"),
            "column 'observation.velocity' component 2 ('elbow_flex.pos') is -inf",
        ),
        # item 6: a NaN timestamp used to reach the video reader and be blamed on the mp4
        ("timestamp", None, float("nan"), "column 'timestamp' is nan"),
    ],
)
def test_non_finite_values_are_refused_naming_file_episode_row_and_column(
    fixtures_dir, tmp_path, capsys, column, component, value, expected
):
    root = copy_fixture(fixtures_dir, "so100_v21_video", tmp_path)
    if column == "observation.velocity":
        _add_velocity(root)
    out = tmp_path / "out"
    # A complete earlier conversion in the folder: the failed run must not leave it looking valid.
    assert run_cli(capsys, root, out, "--convert_workers", "2")[0] == 0
    assert (out / "conversion.json").is_file()
    bad = root / "data/chunk-000/episode_000002.parquet"
    _edit_parquet(bad, column, 7, component, value)

    code, message = run_cli(capsys, root, out, "--convert_workers", "2")
    assert code == 2, message
    # the worker's DatasetError arrives as a DatasetError (exit 2), not wrapped as RuntimeError
    assert message.startswith("error: episode 2: "), message
    assert f"{bad}: episode 2 row 7 (frame_index 7): {expected}; expected finite numbers" in message
    assert ".mp4" not in message
    assert_nothing_valid(out)


def test_nan_timestamp_in_a_v30_file_names_the_episode_and_its_row(fixtures_dir, tmp_path, capsys):
    """v3.0: one data file holds every episode; the row is counted within the episode."""
    root = copy_fixture(fixtures_dir, "so100_v30_video", tmp_path)
    path = root / "data/chunk-000/file-000.parquet"
    table = pq.read_table(path)
    episode = table.column("episode_index").to_numpy()
    global_row = int(np.flatnonzero(episode == 3)[4])  # row 4 of episode 3
    _edit_parquet(path, "timestamp", global_row, None, float("nan"))
    out = tmp_path / "out"
    code, message = run_cli(capsys, root, out, "--convert_workers", "1")
    assert code == 2
    assert f"{path}: episode 3 row 4 (frame_index 4): column 'timestamp' is nan" in message
    assert ".mp4" not in message
    assert_nothing_valid(out)


@pytest.mark.parametrize(
    "field, row, column, value",
    [
        ("observations/qpos", 3, 2, float("nan")),
        ("action", 5, 7, float("inf")),
        ("observations/qvel", 0, 0, float("nan")),
    ],
)
def test_innate_non_finite_values_are_refused_before_writing(tmp_path, capsys, field, row, column, value):
    skill = tmp_path / "skill"
    write_skill(skill, "observations", [12, 14, 11])
    bad = skill / "data" / "episode_1.h5"
    with h5py.File(bad, "a") as f:
        data = f[field][()]
        data[row, column] = value
        del f[field]
        f[field] = data
    out = tmp_path / "out"
    code, message = run_cli(capsys, skill, out)
    assert code == 2
    assert f"{bad}: field '{field}' row {row} column {column} is {value}; expected finite numbers" in message
    assert_nothing_valid(out)
    assert not out.exists()  # refused in the planning step: nothing was written at all


def test_act_hdf5_folder_nan_is_refused(tmp_path, capsys):
    folder = tmp_path / "act"
    folder.mkdir()
    for i in range(2):
        with h5py.File(folder / f"episode_{i}.hdf5", "w") as f:
            qpos = np.zeros((6, 14), np.float32)
            if i == 1:
                qpos[4, 13] = np.nan
            f["observations/qpos"], f["observations/qvel"], f["action"] = qpos, qpos, qpos + 1
            f["observations/images/top"] = np.zeros((6, H, W, 3), np.uint8)
    out = tmp_path / "out"
    code, message = run_cli(capsys, folder, out)
    assert code == 2
    assert f"{folder / 'episode_1.hdf5'}: field 'observations/qpos' row 4 column 13 is nan" in message
    assert_nothing_valid(out)


# ---------------------------------------------------------------------------------------------
# 2: cameras of different sizes are refused up front; an odd episode names its source video


def test_cameras_of_different_sizes_are_refused_before_any_episode(fixtures_dir, tmp_path, capsys):
    root = copy_fixture(fixtures_dir, "so100_v21_video", tmp_path)
    lengths = _episode_lengths(root)
    for ep, n in lengths.items():
        _reencode(root / f"videos/chunk-000/observation.images.wrist/episode_{ep:06d}.mp4", ep, n, 48, 64)
    info = json.loads((root / "meta/info.json").read_text())
    info["features"]["observation.images.wrist"]["shape"] = [48, 64, 3]  # declared correctly
    (root / "meta/info.json").write_text(json.dumps(info))

    out = tmp_path / "out"
    code, message = run_cli(capsys, root, out, "--convert_workers", "2")
    assert code == 2
    assert "'observation.images.front' 72x96, 'observation.images.wrist' 48x64" in message
    assert "--camera_keys" in message and str(root / "meta/info.json") in message
    assert not out.exists()  # the planning step refused: no episode was converted

    # the fix the message gives works
    code, _ = run_cli(
        capsys, root, out, "--camera_keys", "observation.images.wrist", "--convert_workers", "1"
    )
    assert code == 0
    with h5py.File(out / "episode_0.hdf5", "r") as f:
        assert f["observations/images/wrist"].shape[1:] == (48, 64, 3)


def test_one_episode_with_another_video_size_names_its_source_file(fixtures_dir, tmp_path, capsys):
    root = copy_fixture(fixtures_dir, "so100_v21_video", tmp_path)
    odd = root / "videos/chunk-000/observation.images.wrist/episode_000003.mp4"
    _reencode(odd, 3, _episode_lengths(root)[3], 48, 64)
    out = tmp_path / "out"
    code, message = run_cli(capsys, root, out, "--convert_workers", "2")
    assert code == 2
    assert message.startswith(f"error: {odd}: camera 'observation.images.wrist' of episode 3 is 48x64"), (
        message
    )
    assert "episode 0" in message and "72x96" in message
    assert ".tmp-" not in message
    assert not out.exists()


def test_worker_frame_size_check_names_source_and_episode():
    """The same check while decoding (a header that disagrees with its frames), in the worker."""
    blocks = [np.zeros((1, 72, 96, 3), np.uint8), np.zeros((1, 48, 64, 3), np.uint8)]
    checked = _checked_size(iter(blocks), (72, 96), Path("/d/videos/ep7.mp4"), 7, "observation.images.wrist")
    assert next(checked).shape == (1, 72, 96, 3)
    with pytest.raises(
        DatasetError,
        match=r"^/d/videos/ep7.mp4: episode 7 camera 'observation.images.wrist' "
        r"decodes to 48x64 frames; expected 72x96",
    ):
        next(checked)


def test_innate_cameras_of_different_sizes_are_refused_up_front(tmp_path, capsys):
    skill = tmp_path / "skill"
    write_skill(skill, "observations", [9, 9])
    for i in range(2):
        with h5py.File(skill / "data" / f"episode_{i}.h5", "a") as f:
            del f["observations/images/camera_2"]
            f["observations/images/camera_2"] = np.zeros((9, 6, 8, 3), np.uint8)
    out = tmp_path / "out"
    code, message = run_cli(capsys, skill, out)
    assert code == 2
    assert f"'observations/images/camera_1' {H}x{W}, 'observations/images/camera_2' 6x8" in message
    assert "--camera_keys" in message and "episode_0.h5" in message
    assert not out.exists()
    assert run_cli(capsys, skill, out, "--camera_keys", "camera_2")[0] == 0


# ---------------------------------------------------------------------------------------------
# 8: accepted, but with a warning in ConversionResult.warnings (and the log)


def test_warnings_declared_shape_fps_and_max_episodes(fixtures_dir, tmp_path, caplog):
    root = copy_fixture(fixtures_dir, "so100_v21_video", tmp_path)
    info = json.loads((root / "meta/info.json").read_text())
    info["features"]["observation.images.wrist"]["shape"] = [100, 200, 3]  # wrong: the videos are 72x96
    info["fps"] = 15  # the timestamps step by 1/30 s
    (root / "meta/info.json").write_text(json.dumps(info))
    out = tmp_path / "out"
    with caplog.at_level("WARNING", logger="lerobot_bridge"):
        result = convert_dataset(root, out, max_episodes=9, workers=1, progress=False)
    assert len(result.warnings) == 3, result.warnings
    count, shape, fps = result.warnings
    assert "features['observation.images.wrist'].shape declares 100x200" in shape
    assert "decode to 72x96; using the decoded size" in shape
    assert "fps is 15 (a 66.67 ms step)" in fps and "step by 33.33 ms" in fps
    assert str(root / "data/chunk-000/episode_000000.parquet") in fps
    assert count.startswith("max_episodes=9") and count.endswith("using all 5")
    assert [r.message for r in caplog.records if r.levelname == "WARNING"][:3] == result.warnings
    with h5py.File(out / "episode_0.hdf5", "r") as f:  # the decoded size wins
        assert f["observations/images/wrist"].shape[1:] == (72, 96, 3)
    saved = json.loads((out / "conversion.json").read_text())
    assert saved["warnings"] == result.warnings
    del saved["warnings"]  # conversion.json files written before the field existed
    assert ConversionResult.from_dict(saved).warnings == []


def test_clean_dataset_has_no_warnings(fixtures_dir, tmp_path):
    result = convert_dataset(
        fixtures_dir / "so100_v30_video", tmp_path / "out", workers=1, progress=False, max_episodes=2
    )
    assert result.warnings == []


def test_innate_metadata_broken_skill_file_warns_bad_frequency_refuses(tmp_path, capsys):
    skill = tmp_path / "skill"
    write_skill(skill, "observations", [8, 8])
    (skill / "metadata.json").write_text("{broken")  # not read for training: a warning
    out = tmp_path / "out"
    assert run_cli(capsys, skill, out, "--max_episodes", "5")[0] == 0
    cli_result = json.loads((out / "conversion.json").read_text())
    assert len(cli_result["warnings"]) == 2
    assert cli_result["warnings"][0].endswith("using all 2")
    assert cli_result["warnings"][1].startswith(f"{skill / 'metadata.json'}: not valid JSON")

    meta_path = skill / "data" / "dataset_metadata.json"
    meta = json.loads(meta_path.read_text())
    meta["data_frequency"] = "fast"  # training fps comes from here: refuse
    meta_path.write_text(json.dumps(meta))
    fresh = tmp_path / "fresh"
    code, message = run_cli(capsys, skill, fresh)
    assert code == 2
    assert f"{meta_path}: field 'data_frequency' is 'fast'; expected the recording rate in Hz" in message
    assert not fresh.exists()  # refused while planning, before the output folder is made


# ---------------------------------------------------------------------------------------------
# 7: Innate colour order, per layout, and the CLI dispatching to the Innate importer


def test_cli_converts_innate_with_color_order_per_layout(tmp_path, capsys):
    recorder = tmp_path / "recorder"
    src = write_skill(recorder, "observations", [7])
    documented = tmp_path / "documented"
    src_doc = write_skill(documented, "top_level", [7], seed=1)

    assert run_cli(capsys, recorder, tmp_path / "o1", "--idle_threshold", "0")[0] == 0
    res = ConversionResult.from_dict(json.loads((tmp_path / "o1" / "conversion.json").read_text()))
    assert res.input_kind == "innate"
    assert res.extra["color_order_by_layout"] == {"observations": "bgr"}
    assert res.extra["converted_bgr_to_rgb"] is True and res.extra["color_order_option"] == "auto"
    with h5py.File(tmp_path / "o1" / "episode_0.hdf5", "r") as f:
        np.testing.assert_array_equal(f["observations/images/camera_1"][:], src[0]["frames"]["a"][..., ::-1])

    assert run_cli(capsys, documented, tmp_path / "o2", "--idle_threshold", "0")[0] == 0
    res = json.loads((tmp_path / "o2" / "conversion.json").read_text())
    assert res["extra"]["color_order_by_layout"] == {"top_level": "rgb"}
    assert res["extra"]["converted_bgr_to_rgb"] is False
    with h5py.File(tmp_path / "o2" / "episode_0.hdf5", "r") as f:
        np.testing.assert_array_equal(f["observations/images/main_camera"][:], src_doc[0]["frames"]["a"])

    # explicit override, recorded and fingerprinted
    args = ["--idle_threshold", "0", "--color_order", "bgr"]
    assert run_cli(capsys, documented, tmp_path / "o3", *args)[0] == 0
    res = json.loads((tmp_path / "o3" / "conversion.json").read_text())
    assert res["extra"]["color_order_by_layout"] == {"top_level": "bgr"}
    assert res["extra"]["converted_bgr_to_rgb"] is True
    with h5py.File(tmp_path / "o3" / "episode_0.hdf5", "r") as f:
        np.testing.assert_array_equal(
            f["observations/images/main_camera"][:], src_doc[0]["frames"]["a"][..., ::-1]
        )
    from lerobot_bridge.innate import conversion_fingerprint as innate_fingerprint

    assert innate_fingerprint(documented, idle_threshold=0, color_order="bgr") == res["fingerprint"]
    assert innate_fingerprint(documented, idle_threshold=0) != res["fingerprint"]
    with pytest.raises(ValueError, match="color_order must be one of"):
        innate_fingerprint(documented, color_order="yuv")



def test_cli_refuses_color_order_for_lerobot_inputs(fixtures_dir, tmp_path, capsys):
    out = tmp_path / "out"
    code, message = run_cli(capsys, fixtures_dir / "so100_v30_video", out, "--color_order", "bgr")
    assert code == 2
    assert "--color_order bgr:" in message and "applies to Innate / ACT HDF5 inputs only" in message
    assert not out.exists()


# ---------------------------------------------------------------------------------------------
# A dataset slow enough to interrupt: one long episode encoded once, hard-linked N times.


def slow_dataset(root: Path, episodes: int, frames: int, height: int = 240, width: int = 320) -> Path:
    write_v21_dataset(
        root,
        [frames],
        height=height,
        width=width,
        codec="libx264",
        codec_name="h264",
        encoder_options={"preset": "ultrafast"},
    )
    table = pq.read_table(root / "data/chunk-000/episode_000000.parquet")
    video = root / "videos/chunk-000/observation.images.front/episode_000000.mp4"
    lines = []
    for ep in range(episodes):
        if ep:
            t = table.set_column(
                table.column_names.index("episode_index"),
                "episode_index",
                pa.array([ep] * frames, pa.int64()),
            )
            t = t.set_column(
                t.column_names.index("index"),
                "index",
                pa.array(range(ep * frames, (ep + 1) * frames), pa.int64()),
            )
            pq.write_table(t, root / f"data/chunk-000/episode_{ep:06d}.parquet")
            os.link(video, video.with_name(f"episode_{ep:06d}.mp4"))
        lines.append(json.dumps({"episode_index": ep, "tasks": ["synthetic task"], "length": frames}))
    (root / "meta/episodes.jsonl").write_text("\n".join(lines) + "\n")
    info = json.loads((root / "meta/info.json").read_text())
    info.update(total_episodes=episodes, total_frames=episodes * frames)
    (root / "meta/info.json").write_text(json.dumps(info))
    return root


# ---------------------------------------------------------------------------------------------
# 5: each episode is reported when it finishes


def test_parallel_progress_reports_each_episode_as_it_finishes(tmp_path, monkeypatch):
    root = slow_dataset(tmp_path / "ds", episodes=6, frames=240)
    out = tmp_path / "out"
    seen: list[tuple[int, int]] = []  # (output index reported, episode files on disk at that moment)
    done = convert_module.EpisodeProgress.done

    def record(self, report):
        seen.append((report.output_index, len(list(out.glob("episode_*.hdf5")))))
        done(self, report)

    monkeypatch.setattr(convert_module.EpisodeProgress, "done", record)
    convert_dataset(root, out, idle_threshold=0, workers=2, progress=False)
    assert sorted(i for i, _ in seen) == list(range(6))
    # Waiting for every episode (FIRST_EXCEPTION) reported the first one only once all 6 files
    # existed. Now it is reported when it finishes, while the 2 workers still hold later ones.
    assert seen[0][1] < 6, seen
    assert [n for _, n in seen] == sorted(n for _, n in seen)  # each report sees >= as many files


# ---------------------------------------------------------------------------------------------
# 3 + 4: SIGTERM / Ctrl-C / SIGKILL during a parallel conversion


def _children(pid: int) -> set[int]:
    """Every descendant of pid (workers, multiprocessing's resource tracker), from /proc."""
    found: set[int] = set()
    todo = [pid]
    while todo:
        p = todo.pop()
        for task in Path(f"/proc/{p}/task").glob("*"):
            try:
                kids = {int(c) for c in (task / "children").read_text().split()}
            except OSError:
                continue
            todo += sorted(kids - found)
            found |= kids
    return found


def _alive(pid: int) -> bool:
    """Running (not gone, not a zombie waiting to be reaped)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def _group_alive(pgid: int) -> list[int]:
    alive = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == pgid and fields[0] != "Z":
            alive.append(int(stat.parent.name))
    return alive


@pytest.fixture(scope="module")
def interruptible_dataset(tmp_path_factory) -> Path:
    # ~1 s per episode per worker on a 2-core machine: a full run takes ~7 s, far longer than
    # the interrupt needs. Only the first few episodes are ever written (~140 MB each).
    return slow_dataset(tmp_path_factory.mktemp("slow") / "ds", episodes=12, frames=600)


def _start_conversion(dataset: Path, out: Path, log: Path) -> subprocess.Popen:
    """The CLI with 2 workers in its own session; returns once its first episode is logged and
    every worker is running."""
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    cmd = [
        sys.executable,
        "-m",
        "lerobot_bridge",
        str(dataset),
        str(out),
        "--convert_workers",
        "2",
        "--idle_threshold",
        "0",
    ]
    with open(log, "w") as fh:
        proc = subprocess.Popen(cmd, stdout=fh, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    deadline = time.monotonic() + 120
    while "episode 1/12" not in log.read_text() and "episode 2/12" not in log.read_text():
        assert proc.poll() is None, log.read_text()
        assert time.monotonic() < deadline, log.read_text()
        time.sleep(0.05)
    return proc


@pytest.mark.parametrize("how, code", [("sigterm", 143), ("ctrl_c", 130)])
def test_interrupt_stops_workers_at_once_and_removes_outputs(interruptible_dataset, tmp_path, how, code):
    out, log = tmp_path / "out", tmp_path / "log.txt"
    proc = _start_conversion(interruptible_dataset, out, log)
    children = _children(proc.pid)
    assert len(children) >= 2, children  # the workers (+ the resource tracker)
    t0 = time.monotonic()
    if how == "sigterm":
        os.kill(proc.pid, signal.SIGTERM)
    else:  # the terminal sends SIGINT to the whole foreground process group
        os.killpg(proc.pid, signal.SIGINT)
    rc = proc.wait(timeout=10)
    elapsed = time.monotonic() - t0
    text = log.read_text()
    assert rc == code, text
    assert elapsed < 3.0, f"took {elapsed:.1f} s to exit"
    assert "Traceback" not in text, text
    assert "episode 12/12" not in text  # it did not finish the queue
    name = "SIGTERM" if how == "sigterm" else "SIGINT"
    assert f"interrupted ({name}): this run's episode files were removed" in text
    deadline = time.monotonic() + 3
    while (_group_alive(proc.pid) or [c for c in children if _alive(c)]) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _group_alive(proc.pid) and not [c for c in children if _alive(c)]
    assert_nothing_valid(out)


def test_sigkill_of_the_parent_takes_workers_and_resource_tracker_down(interruptible_dataset, tmp_path):
    out, log = tmp_path / "out", tmp_path / "log.txt"
    proc = _start_conversion(interruptible_dataset, out, log)
    children = _children(proc.pid)
    assert len(children) >= 2, children
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=10)
    deadline = time.monotonic() + 5
    while [c for c in children if _alive(c)] and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not [c for c in children if _alive(c)], [
        Path(f"/proc/{c}/cmdline").read_bytes() for c in children if _alive(c)
    ]
    assert not _group_alive(proc.pid)
    assert not (out / "conversion.json").exists()  # a killed run never looks complete


def test_worker_watchdog_alone_ends_an_orphaned_worker(tmp_path):
    """Without PR_SET_PDEATHSIG (which fires when the creating THREAD exits, not the process),
    the getppid() watchdog alone must end a worker whose parent died."""
    child_code = (
        "import os, threading, time\n"
        "from lerobot_bridge.convert import _watch_parent\n"
        "threading.Thread(target=_watch_parent, args=(os.getppid(),), daemon=True).start()\n"
        "print('ready', flush=True)\n"  # shares the parent's stdout
        "time.sleep(60)\n"
    )
    parent_code = (
        "import subprocess, sys, time\n"
        f"p = subprocess.Popen([sys.executable, '-c', {child_code!r}])\n"
        "print(p.pid, flush=True)\n"
        "time.sleep(60)\n"
    )
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    parent = subprocess.Popen(
        [sys.executable, "-c", parent_code],
        stdout=subprocess.PIPE,
        text=True,
        env=env,
        start_new_session=True,
    )
    child = int(parent.stdout.readline())
    try:
        assert parent.stdout.readline().strip() == "ready"  # the child's watchdog is running
        assert _alive(child)
        parent.kill()
        parent.wait(timeout=10)
        deadline = time.monotonic() + 5
        while _alive(child) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not _alive(child)
    finally:
        if _alive(child):
            os.kill(child, signal.SIGKILL)


def test_keyboard_interrupt_in_run_jobs_cancels_and_cleans_up(interruptible_dataset, tmp_path, monkeypatch):
    """The training CLI calls convert_dataset and raises KeyboardInterrupt from its SIGTERM
    handler: the call must end promptly with KeyboardInterrupt and an empty output folder."""
    out = tmp_path / "out"
    done = convert_module.EpisodeProgress.done

    def interrupt_after_first(self, report):
        done(self, report)
        raise KeyboardInterrupt

    monkeypatch.setattr(convert_module.EpisodeProgress, "done", interrupt_after_first)
    t0 = time.monotonic()
    with pytest.raises(KeyboardInterrupt):
        convert_dataset(interruptible_dataset, out, idle_threshold=0, workers=2, progress=False)
    assert time.monotonic() - t0 < 6.0  # 12 episodes take ~7 s; the first finishes after ~1-2 s
    assert_nothing_valid(out)
    assert conversion_fingerprint(interruptible_dataset, idle_threshold=0)  # the input is untouched
