"""Every real LeRobot fixture converts to upstream-ACT HDF5 with exact frame alignment.

The expected values are read here straight from the fixtures' parquet files with plain
pyarrow (`to_pylist`), independently of the converter's own readers, and every image's
frame code (tests/data/lerobot/README.md) must equal its row's frame_index and episode_index.
"""

from __future__ import annotations

import json
from pathlib import Path

import h5py
import numpy as np
import pyarrow.parquet as pq
import pytest

from lerobot_bridge.convert import conversion_fingerprint, convert_dataset
from lerobot_bridge.types import ConversionResult

FIXTURES = [
    "so100_v21_video",
    "so100_v30_converted_from_v21",
    "so100_v30_image",
    "so100_v30_video",
    "so100_v30_video_h264",
    "so100_v30_video_multifile",
]
IDLE_START, IDLE_END = 4, 6  # the fixtures' idle frames (README)


def frame_code(img: np.ndarray) -> tuple[int, int]:
    """(frame_index, episode_index) from the 12 blocks of 8x6 px in rows 0..5 (README)."""
    bits = [int(img[1:5, 8 * b + 1 : 8 * b + 7].mean() > 127) for b in range(12)]
    return int("".join(map(str, bits[:8])), 2), int("".join(map(str, bits[8:])), 2)


def source_rows(root: Path) -> dict[int, dict[str, np.ndarray]]:
    """episode_index -> columns, from every data parquet under root/data (any version)."""
    rows: dict[int, dict[str, list]] = {}
    for path in sorted((root / "data").rglob("*.parquet")):
        table = pq.read_table(
            path, columns=["observation.state", "action", "frame_index", "episode_index", "task_index"]
        ).to_pylist()
        for r in table:
            ep = rows.setdefault(
                r["episode_index"], {"state": [], "action": [], "frame_index": [], "task_index": []}
            )
            ep["state"].append(r["observation.state"])
            ep["action"].append(r["action"])
            ep["frame_index"].append(r["frame_index"])
            ep["task_index"].append(r["task_index"])
    out = {}
    for ep, cols in rows.items():
        order = np.argsort(cols["frame_index"])
        out[ep] = {k: np.asarray(v)[order] for k, v in cols.items()}
    return out


def source_tasks(root: Path) -> dict[int, str]:
    if (root / "meta" / "tasks.jsonl").exists():
        recs = [json.loads(line) for line in (root / "meta" / "tasks.jsonl").read_text().splitlines() if line]
        return {r["task_index"]: r["task"] for r in recs}
    return {r["task_index"]: r["task"] for r in pq.read_table(root / "meta" / "tasks.parquet").to_pylist()}


@pytest.fixture(scope="module")
def converted(fixtures_dir, tmp_path_factory) -> dict[str, ConversionResult]:
    out = tmp_path_factory.mktemp("converted")
    return {
        name: convert_dataset(fixtures_dir / name, out / name, workers=1, progress=False) for name in FIXTURES
    }


@pytest.mark.parametrize("name", FIXTURES)
def test_fixture_converts_with_exact_alignment(name, fixtures_dir, converted):
    root = fixtures_dir / name
    result = converted[name]
    rows = source_rows(root)
    tasks = source_tasks(root)
    assert (
        result.codebase_version == json.loads((root / "meta" / "info.json").read_text())["codebase_version"]
    )
    assert result.cameras == {"observation.images.front": "front", "observation.images.wrist": "wrist"}
    assert (result.fps, result.state_dim, result.action_dim) == (30.0, 6, 6)
    assert result.state_names[0] == "shoulder_pan.pos" and len(result.action_names) == 6
    assert len(result.episodes) == len(rows) == 5
    assert sorted(result.tasks) == sorted(tasks.values())
    assert result.total_frames_in == 275 and result.total_frames_out == 275 - 5 * (IDLE_START + IDLE_END)
    assert (Path(result.output_dir) / "conversion.json").exists()

    for i, (report, path) in enumerate(zip(result.episodes, result.hdf5_paths, strict=True)):
        src = rows[i]
        n = len(src["frame_index"])
        keep = slice(IDLE_START, n - IDLE_END)
        t_out = n - IDLE_START - IDLE_END
        assert (report.output_index, report.source_index) == (i, i)
        assert (report.frames_in, report.frames_out) == (n, t_out)
        assert (report.idle_trimmed_start, report.idle_trimmed_end) == (IDLE_START, IDLE_END)
        assert report.dropped_frames == {"front": 0, "wrist": 0}
        assert report.duplicated_frames == {"front": 0, "wrist": 0}
        assert report.task == tasks[int(src["task_index"][0])]
        with h5py.File(path, "r") as f:
            assert f.attrs["sim"] is np.True_ or f.attrs["sim"] == True  # noqa: E712
            assert f.attrs["source_episode_index"] == i
            assert f.attrs["task"] == report.task
            assert f.attrs["codebase_version"] == result.codebase_version
            assert f.attrs["fps"] == 30.0
            qpos = f["observations/qpos"][:]
            assert qpos.dtype == np.float32 and f["action"].dtype == np.float32
            np.testing.assert_array_equal(qpos, src["state"][keep].astype(np.float32))
            np.testing.assert_array_equal(f["action"][:], src["action"][keep].astype(np.float32))
            np.testing.assert_array_equal(f["observations/qvel"][:], np.zeros((t_out, 6), np.float32))
            for cam in ("front", "wrist"):
                images = f[f"observations/images/{cam}"]
                assert images.shape == (t_out, 72, 96, 3) and images.dtype == np.uint8
                assert images.chunks == (1, 72, 96, 3)
                codes = [frame_code(img) for img in images[:]]
                expected = [(int(fi), i) for fi in src["frame_index"][keep]]
                assert codes == expected, f"{name} episode {i} camera {cam}"
        assert not list(Path(result.output_dir).glob(".*tmp*"))


def test_image_dataset_decodes_losslessly(converted):
    """PNG images decode exactly: the frame-code blocks are pure black or white."""
    result = converted["so100_v30_image"]
    with h5py.File(result.hdf5_paths[0], "r") as f:
        code_rows = f["observations/images/front"][:, :6, :96]  # (T, 6, 96, 3)
    assert set(np.unique(code_rows).tolist()) <= {0, 255}


def test_v21_and_its_v30_conversion_give_identical_episodes(converted):
    """lerobot's v2.1 -> v3.0 converter remuxes the same streams into shared files: after conversion
    the two must be byte-identical, which checks from_timestamp handling against per-episode files."""
    a, b = converted["so100_v21_video"], converted["so100_v30_converted_from_v21"]
    for pa_, pb in zip(a.hdf5_paths, b.hdf5_paths, strict=True):
        with h5py.File(pa_, "r") as fa, h5py.File(pb, "r") as fb:
            for key in (
                "observations/qpos",
                "action",
                "observations/images/front",
                "observations/images/wrist",
            ):
                np.testing.assert_array_equal(fa[key][:], fb[key][:])


def test_fingerprint_tracks_content_and_options(fixtures_dir, converted, tmp_path):
    again = convert_dataset(
        fixtures_dir / "so100_v30_video", tmp_path / "a", workers=1, progress=False, max_episodes=1
    )
    assert again.fingerprint != converted["so100_v30_video"].fingerprint  # options differ
    same = convert_dataset(
        fixtures_dir / "so100_v30_video", tmp_path / "b", workers=1, progress=False, max_episodes=1
    )
    assert same.fingerprint == again.fingerprint
    # what the training CLI computes before converting, to reuse an earlier conversion
    assert conversion_fingerprint(fixtures_dir / "so100_v30_video", max_episodes=1) == same.fingerprint
    assert conversion_fingerprint(fixtures_dir / "so100_v30_video", max_episodes=2) != same.fingerprint
    assert ConversionResult.from_dict(json.loads((tmp_path / "b" / "conversion.json").read_text())) == same


def test_episode_len_truncates_and_pads(fixtures_dir, tmp_path):
    result = convert_dataset(
        fixtures_dir / "so100_v21_video",
        tmp_path,
        episode_len=40,
        idle_threshold=0,
        workers=1,
        progress=False,
    )
    rows = source_rows(fixtures_dir / "so100_v21_video")
    for i, report in enumerate(result.episodes):
        n = len(rows[i]["frame_index"])
        assert report.frames_out == 40
        assert (report.truncated, report.padded) == (max(0, n - 40), max(0, 40 - n))
        with h5py.File(result.hdf5_paths[i], "r") as f:
            codes = [frame_code(img) for img in f["observations/images/wrist"][:]]
            kept = min(n, 40)
            assert codes == [(t, i) for t in range(kept)] + [(kept - 1, i)] * (40 - kept)
            action = f["action"][:]
            np.testing.assert_array_equal(action[:kept], rows[i]["action"][:kept].astype(np.float32))
            np.testing.assert_array_equal(
                action[kept:], np.repeat(action[kept - 1 : kept], 40 - kept, axis=0)
            )


def test_idle_threshold_zero_keeps_everything_and_max_episodes(fixtures_dir, tmp_path):
    (tmp_path / "episode_7.hdf5").write_bytes(b"stale")  # left by an earlier, larger conversion
    result = convert_dataset(
        fixtures_dir / "so100_v30_video_h264",
        tmp_path,
        idle_threshold=0,
        max_episodes=2,
        workers=1,
        progress=False,
    )
    assert [r.frames_out for r in result.episodes] == [r.frames_in for r in result.episodes]
    assert [r.idle_trimmed_start + r.idle_trimmed_end for r in result.episodes] == [0, 0]
    assert sorted(p.name for p in tmp_path.glob("episode_*.hdf5")) == ["episode_0.hdf5", "episode_1.hdf5"]
    with h5py.File(result.hdf5_paths[1], "r") as f:
        codes = [frame_code(img) for img in f["observations/images/front"][:]]
    assert codes == [(t, 1) for t in range(result.episodes[1].frames_in)]


def test_camera_override_selects_and_renames(fixtures_dir, tmp_path):
    result = convert_dataset(
        fixtures_dir / "so100_v30_video_multifile",
        tmp_path,
        camera_keys=["observation.images.wrist"],
        camera_names=["cam_high"],
        workers=1,
        progress=False,
        max_episodes=3,
    )
    assert result.cameras == {"observation.images.wrist": "cam_high"}
    with h5py.File(result.hdf5_paths[2], "r") as f:
        assert list(f["observations/images"]) == ["cam_high"]
        codes = [frame_code(img) for img in f["observations/images/cam_high"][:]]
    n = result.episodes[2].frames_in
    assert codes == [(t, 2) for t in range(IDLE_START, n - IDLE_END)]


def test_spawn_workers_match_in_process(fixtures_dir, converted, tmp_path):
    result = convert_dataset(fixtures_dir / "so100_v30_video_multifile", tmp_path, workers=2, progress=False)
    assert result.extra["workers"] == 2
    reference = converted["so100_v30_video_multifile"]
    assert [r.frames_out for r in result.episodes] == [r.frames_out for r in reference.episodes]
    for pa_, pb in zip(result.hdf5_paths, reference.hdf5_paths, strict=True):
        with h5py.File(pa_, "r") as fa, h5py.File(pb, "r") as fb:
            np.testing.assert_array_equal(
                fa["observations/images/front"][:], fb["observations/images/front"][:]
            )
            np.testing.assert_array_equal(fa["action"][:], fb["action"][:])


def test_format_variants_v20_float_fps_chw_dict_names_velocity(fixtures_dir, tmp_path):
    """What other writers produce (docs/FORMATS.md 1.1-1.3): codebase v2.0, fps as a float, channel-first
    camera shape, `names` as a dict, unknown info keys, and an observation.velocity column."""
    import shutil

    import pyarrow as pa

    root = tmp_path / "variant"
    shutil.copytree(fixtures_dir / "so100_v21_video", root)
    (root / "meta/episodes_stats.jsonl").unlink()
    info = json.loads((root / "meta/info.json").read_text())
    info["codebase_version"] = "v2.0"
    info["fps"] = 30.0
    info["tools"] = {"anything": 1}
    motors = info["features"]["observation.state"]["names"]
    info["features"]["observation.state"]["names"] = {"motors": motors}
    info["features"]["observation.images.front"].update(
        shape=[3, 72, 96], names=["channel", "height", "width"]
    )
    info["features"]["observation.velocity"] = {"dtype": "float32", "shape": [6], "names": None}
    (root / "meta/info.json").write_text(json.dumps(info))
    for path in sorted((root / "data").rglob("*.parquet")):
        table = pq.read_table(path)
        state = np.asarray(table.column("observation.state").to_pylist(), np.float32)
        velocity = pa.array((2 * state).tolist(), pa.list_(pa.float32()))
        pq.write_table(table.append_column("observation.velocity", velocity), path)

    result = convert_dataset(root, tmp_path / "out", workers=1, progress=False, max_episodes=2)
    assert result.codebase_version == "v2.0" and result.fps == 30.0
    assert result.state_names == motors and result.extra["has_velocity"]
    rows = source_rows(fixtures_dir / "so100_v21_video")
    for i, path in enumerate(result.hdf5_paths):
        n = len(rows[i]["frame_index"])
        with h5py.File(path, "r") as f:
            qpos, qvel = f["observations/qpos"][:], f["observations/qvel"][:]
            np.testing.assert_array_equal(qvel, 2 * qpos)
            np.testing.assert_array_equal(
                qpos, rows[i]["state"][IDLE_START : n - IDLE_END].astype(np.float32)
            )
            front = f["observations/images/front"]
            assert front.shape[1:] == (72, 96, 3)
            assert [frame_code(img) for img in front[:]] == [(t, i) for t in range(IDLE_START, n - IDLE_END)]
