"""Innate skill directories (both layouts) and plain upstream-ACT folders -> ACT HDF5.

The skill directories are generated here the way Innate's recorder writes them
(innate-os `src/episode_data.cpp`: float64 qpos/action, BGR uint8 frames, action = commands +
progress ramp + termination flag; `src/task_manager.cpp`: data/dataset_metadata.json), so the
tests can assert exact values: every frame, qpos row and action row of the output must equal
the source's (after BGR -> RGB and the float32 cast upstream ACT's layout uses).
"""

from __future__ import annotations

import json
from pathlib import Path

import h5py
import numpy as np
import pytest

from lerobot_bridge.errors import DatasetError
from lerobot_bridge.innate import (
    area_weights,
    conversion_fingerprint,
    convert_innate,
    detect_input_kind,
    has_extra_action_columns,
    resize_area,
    rewrite_innate_args,
)

H, W = 12, 16


def recorder_action(commands: np.ndarray) -> np.ndarray:
    """Append the two columns `EpisodeData::finalize` writes: progress ramp, termination flag."""
    t = commands.shape[0]
    ramp = np.arange(t) / (t - 1) if t > 1 else np.zeros(1)
    term = np.zeros(t)
    term[max(0, t - 10) :] = 1.0
    return np.concatenate([commands, ramp[:, None], term[:, None]], axis=1)


def make_episode(rng: np.random.Generator, t: int, idle_start: int = 0, idle_end: int = 0):
    qpos = rng.normal(size=(t, 6))
    commands = np.concatenate([rng.normal(size=(t, 6)), rng.normal(size=(t, 2)) * 0.1], axis=1)
    commands[:idle_start] = commands[idle_start]  # the operator had not started yet
    if idle_end:
        commands[t - idle_end :] = commands[t - idle_end - 1]
    frames = {name: rng.integers(0, 256, size=(t, H, W, 3), dtype=np.uint8) for name in ("a", "b")}
    return qpos, commands, frames


def write_skill(root: Path, layout: str, lengths: list[int], failures=(), seed=0, idle=(0, 0)) -> dict:
    """A skill directory as Innate writes it; returns the source arrays per episode index."""
    rng = np.random.default_rng(seed)
    data = root / "data"
    data.mkdir(parents=True)
    (root / "metadata.json").write_text(json.dumps({"name": root.name, "type": "learned", "guidelines": "g"}))
    src, entries = {}, []
    for i, t in enumerate(lengths):
        qpos, commands, frames = make_episode(rng, t, *idle)
        with h5py.File(data / f"episode_{i}.h5", "w") as f:
            if layout == "observations":
                action = recorder_action(commands)
                f["observations/qpos"] = qpos
                f["observations/qvel"] = qpos * 0.5
                f["observations/images/camera_2"] = frames["b"]  # written first: order must not matter
                f["observations/images/camera_1"] = frames["a"]
                f["timestamps/arm"] = np.arange(t) / 30.0
            else:  # documented layout: 6 joints + 2 base velocities, no extra columns
                action = commands
                f["qpos"] = qpos
                f["qvel"] = qpos * 0.5
                f["images/arm_camera"] = frames["b"]
                f["images/main_camera"] = frames["a"]
            f["action"] = action
        entry = {
            "episode_id": i,
            "file_name": f"episode_{i}.h5",
            "start_timestamp": "s",
            "end_timestamp": "e",
        }
        if i in failures:
            entry["outcome"] = "failure"
        elif layout == "observations":
            entry["outcome"] = "success"
        entries.append(entry)
        src[i] = dict(qpos=qpos, action=action, frames=frames)
    meta = {
        "data_frequency": 30,
        "dataset_type": "h5",
        "number_of_episodes": len(lengths),
        "episodes": entries,
    }
    (data / "dataset_metadata.json").write_text(json.dumps(meta, indent=4))
    return src


def read(path: Path) -> dict:
    with h5py.File(path, "r") as f:
        return {
            "qpos": f["observations/qpos"][:],
            "qvel": f["observations/qvel"][:],
            "action": f["action"][:],
            "images": {k: f["observations/images"][k][:] for k in f["observations/images"]},
            "sim": bool(f.attrs["sim"]),
            "dtypes": (f["observations/qpos"].dtype, f["action"].dtype),
            "chunks": f["observations/images"][next(iter(f["observations/images"]))].chunks,
        }


def test_recorder_layout_exact_bgr_extra_columns_and_failure_skipped(tmp_path):
    skill = tmp_path / "pick_sock"
    src = write_skill(skill, "observations", [23, 17, 30], failures={1})
    assert detect_input_kind(skill) == "innate"

    res = convert_innate(skill, tmp_path / "out", idle_threshold=0)
    assert res.input_kind == "innate"
    assert [e.source_index for e in res.episodes] == [0, 2]  # episode 1 failed
    assert res.extra["skipped_failures"] == [1]
    assert res.extra["layouts"] == ["observations"]
    assert res.extra["converted_bgr_to_rgb"] is True
    assert res.extra["action_extra_columns"] == {
        "found": True,
        "kept": True,
        "names": ["progress", "termination"],
        "columns": [8, 9],
    }
    assert res.cameras == {
        "observations/images/camera_1": "camera_1",
        "observations/images/camera_2": "camera_2",
    }
    assert (res.state_dim, res.action_dim, res.fps) == (6, 10, 30.0)
    assert res.total_frames_out == 23 + 30

    for report in res.episodes:
        s, out = src[report.source_index], read(tmp_path / "out" / f"episode_{report.output_index}.hdf5")
        assert out["sim"] and out["dtypes"] == (np.float32, np.float32)
        assert out["chunks"] == (1, H, W, 3)
        np.testing.assert_array_equal(out["qpos"], s["qpos"].astype(np.float32))
        np.testing.assert_array_equal(out["qvel"], (s["qpos"] * 0.5).astype(np.float32))
        np.testing.assert_array_equal(out["action"], s["action"].astype(np.float32))
        # BGR -> RGB exactly once, camera_1 (main) first whatever order the file holds them in
        np.testing.assert_array_equal(out["images"]["camera_1"], s["frames"]["a"][..., ::-1])
        np.testing.assert_array_equal(out["images"]["camera_2"], s["frames"]["b"][..., ::-1])


def test_drop_extra_columns_and_include_failures(tmp_path):
    skill = tmp_path / "skill"
    src = write_skill(skill, "observations", [15, 12], failures={0})
    res = convert_innate(
        skill, tmp_path / "out", keep_extra_action_columns=False, include_failures=True, idle_threshold=0
    )
    assert [e.source_index for e in res.episodes] == [0, 1]
    assert res.action_dim == 8 and res.extra["action_extra_columns"]["kept"] is False
    out = read(tmp_path / "out" / "episode_0.hdf5")
    np.testing.assert_array_equal(out["action"], src[0]["action"][:, :8].astype(np.float32))


def test_documented_top_level_layout(tmp_path):
    skill = tmp_path / "wave"
    src = write_skill(skill, "top_level", [11, 14], seed=3)
    res = convert_innate(skill, tmp_path / "out", idle_threshold=0, camera_names=["main", "arm"])
    assert res.extra["layouts"] == ["top_level"]
    assert res.extra["action_extra_columns"]["found"] is False
    assert res.cameras == {"images/main_camera": "main", "images/arm_camera": "arm"}
    for i in (0, 1):
        out = read(tmp_path / "out" / f"episode_{i}.hdf5")
        np.testing.assert_array_equal(out["action"], src[i]["action"].astype(np.float32))
        np.testing.assert_array_equal(out["qpos"], src[i]["qpos"].astype(np.float32))
        # documented layout: RGB per Innate's docs, so frames pass through unswapped (issue 12)
        np.testing.assert_array_equal(out["images"]["main"], src[i]["frames"]["a"])
        np.testing.assert_array_equal(out["images"]["arm"], src[i]["frames"]["b"])
    assert res.extra["color_order_by_layout"] == {"top_level": "rgb"}
    assert res.extra["converted_bgr_to_rgb"] is False


def test_plain_upstream_act_folder_is_rgb_and_exact(tmp_path):
    rng = np.random.default_rng(5)
    folder = tmp_path / "act"
    folder.mkdir()
    srcs = []
    for i in range(3):
        t = 9 + i
        qpos, action = (
            rng.normal(size=(t, 14)).astype(np.float32),
            rng.normal(size=(t, 14)).astype(np.float32),
        )
        top = rng.integers(0, 256, size=(t, H, W, 3), dtype=np.uint8)
        with h5py.File(folder / f"episode_{i}.hdf5", "w") as f:
            f.attrs["sim"] = True
            f["observations/qpos"], f["observations/qvel"], f["action"] = qpos, qpos * 0, action
            f["observations/images/top"] = top
        srcs.append((qpos, action, top))
    assert detect_input_kind(folder) == "act_hdf5"
    res = convert_innate(folder, tmp_path / "out", idle_threshold=0, max_episodes=2)
    assert res.input_kind == "act_hdf5" and len(res.episodes) == 2
    assert res.extra["converted_bgr_to_rgb"] is False
    for i in range(2):
        out = read(tmp_path / "out" / f"episode_{i}.hdf5")
        np.testing.assert_array_equal(out["qpos"], srcs[i][0])
        np.testing.assert_array_equal(out["action"], srcs[i][1])
        np.testing.assert_array_equal(out["images"]["top"], srcs[i][2])


def test_idle_trim_and_episode_len_keep_frames_aligned(tmp_path):
    skill = tmp_path / "skill"
    src = write_skill(skill, "observations", [40], idle=(5, 4))
    res = convert_innate(skill, tmp_path / "out", idle_threshold=1e-4)
    rep = res.episodes[0]
    # Rows 0..5 hold one command, rows 35..39 another: the bridge's rule (lerobot_bridge.convert.
    # idle_range) drops whole idle runs, so rows 6..34 stay. The trailing progress/termination
    # columns change every row and must not hide the idle runs.
    assert (rep.idle_trimmed_start, rep.idle_trimmed_end, rep.frames_out) == (6, 5, 29)
    out = read(tmp_path / "out" / "episode_0.hdf5")
    np.testing.assert_array_equal(out["images"]["camera_1"], src[0]["frames"]["a"][6:35, ..., ::-1])
    np.testing.assert_array_equal(out["action"], src[0]["action"][6:35].astype(np.float32))

    res = convert_innate(skill, tmp_path / "pad", idle_threshold=1e-4, episode_len=33)
    assert (res.episodes[0].padded, res.episodes[0].frames_out) == (4, 33)
    out = read(tmp_path / "pad" / "episode_0.hdf5")
    expected_rows = list(range(6, 35)) + [34] * 4  # padding repeats the last frame
    np.testing.assert_array_equal(out["images"]["camera_2"], src[0]["frames"]["b"][expected_rows][..., ::-1])
    np.testing.assert_array_equal(out["qpos"], src[0]["qpos"][expected_rows].astype(np.float32))

    res = convert_innate(skill, tmp_path / "cut", idle_threshold=0, episode_len=10)
    assert (res.episodes[0].truncated, res.episodes[0].frames_out) == (30, 10)


def test_camera_selection_conversion_json_and_stale_files(tmp_path):
    skill = tmp_path / "skill"
    src = write_skill(skill, "observations", [9, 9, 9])
    out = tmp_path / "out"
    convert_innate(skill, out, idle_threshold=0)
    assert sorted(p.name for p in out.glob("episode_*.hdf5")) == [f"episode_{i}.hdf5" for i in range(3)]
    res = convert_innate(
        skill, out, idle_threshold=0, max_episodes=2, camera_keys=["camera_2"], camera_names=["arm"]
    )
    assert sorted(p.name for p in out.glob("episode_*.hdf5")) == [
        "episode_0.hdf5",
        "episode_1.hdf5",
    ]  # no stale 2
    assert res.cameras == {"observations/images/camera_2": "arm"}
    # the fingerprint the training CLI computes before converting, to reuse an earlier conversion
    same = dict(idle_threshold=0, max_episodes=2, camera_keys=["camera_2"], camera_names=["arm"])
    assert conversion_fingerprint(skill, **same) == res.fingerprint
    assert conversion_fingerprint(skill, **{**same, "max_episodes": 3}) != res.fingerprint
    saved = json.loads((out / "conversion.json").read_text())
    assert saved["extra"]["options"]["camera_keys"] == ["observations/images/camera_2"]
    assert saved["episodes"][1]["source_index"] == 1 and saved["input_kind"] == "innate"
    data = read(out / "episode_1.hdf5")
    assert list(data["images"]) == ["arm"]
    np.testing.assert_array_equal(data["images"]["arm"], src[1]["frames"]["b"][..., ::-1])
    with pytest.raises(DatasetError, match=r"camera 'top' not found; available: \['camera_1', 'camera_2'\]"):
        convert_innate(skill, out, camera_keys=["top"])


def test_resize_area_is_a_box_filter(tmp_path):
    rng = np.random.default_rng(1)
    frames = rng.integers(0, 256, size=(2, 8, 12, 3), dtype=np.uint8)
    half = resize_area(frames, (4, 6))
    expected = frames.reshape(2, 4, 2, 6, 2, 3).astype(np.float64).mean(axis=(2, 4))
    np.testing.assert_array_equal(half, np.rint(expected).astype(np.uint8))
    w = area_weights(640, 224)
    np.testing.assert_allclose(w.sum(axis=1), 1.0, rtol=1e-6)
    assert (w > 0).sum(axis=1).max() <= 4  # each output pixel covers 640/224 = 2.86 inputs

    skill = tmp_path / "skill"
    src = write_skill(skill, "observations", [6])
    res = convert_innate(skill, tmp_path / "out", idle_threshold=0, image_size=(6, 8))
    assert res.extra["image_size"] == [6, 8] and res.extra["source_image_size"] == [H, W]
    out = read(tmp_path / "out" / "episode_0.hdf5")
    np.testing.assert_array_equal(
        out["images"]["camera_1"], resize_area(src[0]["frames"]["a"][..., ::-1], (6, 8))
    )


def test_extra_column_detection():
    commands = np.random.default_rng(0).normal(size=(25, 8))
    assert has_extra_action_columns(recorder_action(commands))
    assert has_extra_action_columns(recorder_action(commands[:5]))  # T < 10: flag on every step
    assert not has_extra_action_columns(commands)
    shifted = recorder_action(commands)
    shifted[3, -1] = 1.0  # a flag outside the last 10 steps is a real command, not the recorder's
    assert not has_extra_action_columns(shifted)


def test_errors_name_file_field_and_expectation(tmp_path):
    with pytest.raises(DatasetError, match=r"meta/info.json.*metadata.json.*episode_\*.hdf5"):
        detect_input_kind(tmp_path)
    with pytest.raises(DatasetError, match="does not exist"):
        detect_input_kind(tmp_path / "nope")
    (tmp_path / "bare" / "data").mkdir(parents=True)
    (tmp_path / "bare" / "data" / "episode_0.h5").touch()
    assert detect_input_kind(tmp_path / "bare") == "innate"  # recordings without metadata files
    (tmp_path / "bare" / "data" / "dataset_metadata.json").touch()
    assert detect_input_kind(tmp_path / "bare" / "data") == "innate"  # the data/ folder itself
    with pytest.raises(DatasetError, match=r"bare/data/episode_0\.h5: cannot open as HDF5"):
        convert_innate(tmp_path / "bare", tmp_path / "o0")

    skill = tmp_path / "skill"
    write_skill(skill, "observations", [8, 8])
    with h5py.File(skill / "data" / "episode_1.h5", "a") as f:
        del f["action"]
    with pytest.raises(DatasetError, match=r"episode_1\.h5: field 'action' is missing"):
        convert_innate(skill, tmp_path / "o1")

    skill2 = tmp_path / "skill2"
    write_skill(skill2, "observations", [8])
    with h5py.File(skill2 / "data" / "episode_0.h5", "a") as f:
        del f["observations/images/camera_2"]
        f["observations/images/camera_2"] = np.zeros((7, H, W, 3), np.uint8)
    with pytest.raises(
        DatasetError, match=r"episode_0\.h5: field 'observations/images/camera_2' has 7 frames"
    ):
        convert_innate(skill2, tmp_path / "o2")

    skill3 = tmp_path / "skill3"
    write_skill(skill3, "observations", [8])
    (skill3 / "data" / "dataset_metadata.json").write_text("{not json")
    with pytest.raises(DatasetError, match=r"dataset_metadata.json: not valid JSON"):
        convert_innate(skill3, tmp_path / "o3")

    skill4 = tmp_path / "skill4"
    write_skill(skill4, "observations", [8], failures={0})
    with pytest.raises(DatasetError, match="no episodes left.*include_failures"):
        convert_innate(skill4, tmp_path / "o4")

    skill5 = tmp_path / "skill5"
    write_skill(skill5, "observations", [8, 9])
    with h5py.File(skill5 / "data" / "episode_1.h5", "a") as f:
        del f["observations/qpos"]
        f["observations/qpos"] = np.zeros((9, 7))
    with pytest.raises(DatasetError, match=r"episode_1\.h5: state dim is 7 but .*episode_0\.h5 has 6"):
        convert_innate(skill5, tmp_path / "o5")
    assert not list((tmp_path / "o5").glob("*tmp*"))  # nothing half-written left behind


def test_rewrite_innate_args():
    argv = ["--max_steps", "5000", "--learning_rate_backbone=1e-5", "--world_size", "4", "--batch_size", "96"]
    expected = "--num_epochs 0 --steps 5000 --lr_backbone 1e-5 --gpus 0,1,2,3 --batch_size 96"
    assert rewrite_innate_args(argv) == expected.split()
    assert rewrite_innate_args(["--world_size=1", "--chunk_size", "30"]) == [
        "--gpus",
        "0",
        "--chunk_size",
        "30",
    ]
    assert rewrite_innate_args(["--input_dir", "x"]) == ["--input_dir", "x"]


def test_a_failed_conversion_leaves_no_complete_looking_folder(tmp_path):
    """An unreadable chunk in episode 1 (a real HDF5 read error while writing, after every header
    checked out): the error names the file, and the folder keeps neither this run's episode 0
    nor the earlier run's conversion.json."""
    skill = tmp_path / "skill"
    write_skill(skill, "observations", [9, 9])
    out = tmp_path / "out"
    convert_innate(skill, out, idle_threshold=0)
    bad = skill / "data" / "episode_1.h5"
    with h5py.File(bad, "a") as f:
        frames = f["observations/images/camera_1"][()]
        del f["observations/images/camera_1"]
        ds = f.create_dataset("observations/images/camera_1", data=frames, chunks=(1, *frames.shape[1:]),
                              compression="gzip")
        chunk = ds.id.get_chunk_info(0)
    with open(bad, "r+b") as raw:
        raw.seek(chunk.byte_offset)
        raw.write(b"\xff" * chunk.size)
    with pytest.raises(RuntimeError, match=str(bad)):
        convert_innate(skill, out, idle_threshold=0)
    assert sorted(p.name for p in out.iterdir()) == []
