"""The LeRobot v3.0 writer: same layout as lerobot's own files, values that read back exactly.

Layout is checked against `tests/data/lerobot/so100_v30_video_h264` (written by lerobot 0.6.1
with H.264): the same info.json, parquet schemas, stats structure. Frames carry a frame code
(as the fixtures do) so decoding each episode at its `from_timestamp` must give back exactly
the frames written for it.
"""

from __future__ import annotations

import json
from pathlib import Path

import av
import numpy as np
import pyarrow.parquet as pq
import pytest

from lerobot_bridge.writer import EpisodeData, write_lerobot_v30

FIXTURE = Path(__file__).parent / "data" / "lerobot" / "so100_v30_video_h264"
EPISODES = "meta/episodes/chunk-000/file-000.parquet"
DATA = "data/chunk-000/file-000.parquet"
NAMES = [
    "shoulder_pan.pos",
    "shoulder_lift.pos",
    "elbow_flex.pos",
    "wrist_flex.pos",
    "wrist_roll.pos",
    "gripper.pos",
]
TASKS = ["Push the blue block to the left side.", "Grasp the red block and place it in the bin."]


def frame_code_image(
    frame_index: int, episode_index: int, camera: int, h: int = 72, w: int = 96
) -> np.ndarray:
    """A smooth picture with the fixtures' frame code in rows 0..5 (8 bits frame, 4 bits episode)."""
    yy, xx = np.mgrid[0:h, 0:w]
    img = np.zeros((h, w, 3), np.uint8)
    img[..., 0] = (xx * 2 + frame_index * 3) % 200 + 20
    img[..., 1] = (yy * 2 + episode_index * 40) % 200 + 20
    img[..., 2] = 60 + 80 * camera
    bits = [(frame_index >> (7 - b)) & 1 for b in range(8)] + [
        (episode_index >> (3 - b)) & 1 for b in range(4)
    ]
    img[:6, : 12 * 8] = 0
    for b, bit in enumerate(bits):
        img[:6, b * 8 : b * 8 + 8] = 255 * bit
    return img


def read_frame_code(img: np.ndarray) -> tuple[int, int]:
    bits = [int(img[1:5, b * 8 + 2 : b * 8 + 6].mean() > 127) for b in range(12)]
    frame = int("".join(map(str, bits[:8])), 2)
    episode = int("".join(map(str, bits[8:])), 2)
    return frame, episode


def make_episodes(lengths: list[int], seed: int = 0) -> list[EpisodeData]:
    rng = np.random.default_rng(seed)
    episodes = []
    for e, n in enumerate(lengths):
        images = {
            cam: np.stack([frame_code_image(t, e, c) for t in range(n)])
            for c, cam in enumerate(["front", "wrist"])
        }
        state = rng.normal(size=(n, 6)).astype(np.float32)
        action = rng.normal(size=(n, 6)).astype(np.float32)
        episodes.append(EpisodeData(state, action, images, TASKS[e % 2 if e < 2 else 0]))
    return episodes


@pytest.fixture(scope="module", params=["h264", "av1"])
def written(request, tmp_path_factory) -> tuple[Path, list[EpisodeData], str]:
    episodes = make_episodes([40, 17, 33])
    root = tmp_path_factory.mktemp(request.param) / "ds"
    write_lerobot_v30(
        root,
        episodes,
        fps=30,
        robot_type="so100_follower",
        codec=request.param,
        state_names=NAMES,
        action_names=NAMES,
    )
    return root, episodes, request.param


def test_layout_matches_lerobot_fixture(written):
    root, episodes, codec = written
    ours = json.loads((root / "meta/info.json").read_text())
    ref = json.loads((FIXTURE / "meta/info.json").read_text())
    assert list(ours) == list(ref)
    assert list(ours["features"]) == list(ref["features"])
    if codec == "h264":  # the fixture is H.264 with lerobot's defaults: every feature identical
        assert ours["features"] == ref["features"]
    else:
        assert ours["features"]["observation.images.front"]["info"]["video.codec"] == "av1"
    for key in ("chunks_size", "data_path", "video_path", "robot_type", "codebase_version", "fps"):
        assert ours[key] == ref[key]
    assert (ours["total_episodes"], ours["total_frames"], ours["total_tasks"]) == (3, 90, 2)
    assert ours["splits"] == {"train": "0:3"}

    # Parquet schemas: identical column names, order and types (metadata aside).
    for rel in (DATA, EPISODES, "meta/tasks.parquet"):
        schema = pq.read_schema(root / rel).remove_metadata()
        assert schema == pq.read_schema(FIXTURE / rel).remove_metadata(), rel
    # The `huggingface` metadata that `datasets` reads describes the same features.
    hf = json.loads(pq.read_schema(root / DATA).metadata[b"huggingface"])["info"]["features"]
    hf_ref = json.loads(pq.read_schema(FIXTURE / DATA).metadata[b"huggingface"])["info"]["features"]
    assert hf == hf_ref
    pandas_meta = json.loads(pq.read_schema(root / "meta/tasks.parquet").metadata[b"pandas"])
    assert pandas_meta["index_columns"] == ["task"]

    # stats.json: same features, same statistics, same nesting (image stats (3, 1, 1)).
    stats = json.loads((root / "meta/stats.json").read_text())
    ref_stats = json.loads((FIXTURE / "meta/stats.json").read_text())
    assert set(stats) == set(ref_stats)
    for feature, block in ref_stats.items():
        assert list(stats[feature]) == list(block), feature
        for name, value in block.items():
            assert np.shape(stats[feature][name]) == np.shape(value), (feature, name)

    # Same file tree (one data file, one mp4 per camera).
    files = sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())
    assert files == sorted(str(p.relative_to(FIXTURE)) for p in FIXTURE.rglob("*") if p.is_file())
    assert root.stat().st_mode & 0o055  # not the 0700 of a temporary directory


def test_values_read_back(written):
    root, episodes, _ = written
    data = pq.read_table(root / DATA)
    n = len(data)
    state = data["observation.state"].combine_chunks().flatten().to_numpy().reshape(n, -1)
    action = data["action"].combine_chunks().flatten().to_numpy().reshape(n, -1)
    np.testing.assert_array_equal(state, np.concatenate([ep.state for ep in episodes]))
    np.testing.assert_array_equal(action, np.concatenate([ep.action for ep in episodes]))
    np.testing.assert_array_equal(data["index"].to_numpy(), np.arange(90))
    np.testing.assert_array_equal(data["episode_index"].to_numpy(), np.repeat([0, 1, 2], [40, 17, 33]))
    frame_index = np.concatenate([np.arange(40), np.arange(17), np.arange(33)])
    np.testing.assert_array_equal(data["frame_index"].to_numpy(), frame_index)
    np.testing.assert_array_equal(data["timestamp"].to_numpy(), (frame_index / 30).astype(np.float32))
    # Task indices follow first appearance, through the tasks table.
    tasks = pq.read_table(root / "meta/tasks.parquet").to_pylist()
    assert tasks == [{"task_index": 0, "task": TASKS[0]}, {"task_index": 1, "task": TASKS[1]}]
    np.testing.assert_array_equal(data["task_index"].to_numpy(), np.repeat([0, 1, 0], [40, 17, 33]))

    eps = pq.read_table(root / EPISODES).to_pylist()
    assert [e["episode_index"] for e in eps] == [0, 1, 2]
    assert [e["length"] for e in eps] == [40, 17, 33]
    assert [e["tasks"] for e in eps] == [[TASKS[0]], [TASKS[1]], [TASKS[0]]]
    assert [(e["dataset_from_index"], e["dataset_to_index"]) for e in eps] == [(0, 40), (40, 57), (57, 90)]
    for e, ep in zip(eps, episodes, strict=True):
        np.testing.assert_allclose(e["stats/observation.state/mean"], ep.state.mean(0), rtol=1e-6, atol=1e-7)
        np.testing.assert_allclose(e["stats/action/max"], ep.action.max(0))
        assert e["stats/action/count"] == [len(ep.action)]
    stats = json.loads((root / "meta/stats.json").read_text())
    np.testing.assert_allclose(
        stats["action"]["mean"], action.astype(np.float64).mean(0), rtol=1e-6, atol=1e-7
    )
    np.testing.assert_allclose(stats["observation.state"]["std"], state.astype(np.float64).std(0), rtol=1e-6)
    assert stats["index"]["count"] == [90]


def test_video_segments_decode_to_the_written_frames(written):
    """Decode each episode at from_timestamp + t/fps: exact frame code, small codec error."""
    root, episodes, codec = written
    eps = pq.read_table(root / EPISODES).to_pylist()
    for cam in ["front", "wrist"]:
        key = f"observation.images.{cam}"
        with av.open(str(root / f"videos/{key}/chunk-000/file-000.mp4")) as container:
            stream = container.streams.video[0]
            assert stream.codec_context.name in ({"h264"} if codec == "h264" else {"av1", "libdav1d"})
            frames = [
                (float(f.pts * f.time_base), f.to_ndarray(format="rgb24")) for f in container.decode(stream)
            ]
        assert len(frames) == 90
        times = np.array([t for t, _ in frames])
        for e, (row, ep) in enumerate(zip(eps, episodes, strict=True)):
            start = row[f"videos/{key}/from_timestamp"]
            assert row[f"videos/{key}/to_timestamp"] == pytest.approx(start + len(ep.state) / 30, abs=1e-6)
            for t in range(len(ep.state)):
                i = int(np.argmin(np.abs(times - (start + t / 30))))
                assert abs(times[i] - (start + t / 30)) < 1e-3
                decoded = frames[i][1]
                assert read_frame_code(decoded) == (t, e)
                error = np.abs(decoded.astype(np.int16) - ep.images[cam][t].astype(np.int16)).mean()
                assert error < 6.0, (cam, e, t, error)


def test_bad_input_leaves_nothing(tmp_path):
    good = make_episodes([5])[0]
    bad = EpisodeData(good.state[:4], good.action, good.images, good.task)
    with pytest.raises(ValueError, match="episode 1"):
        write_lerobot_v30(tmp_path / "ds", [good, bad], fps=30)
    odd = EpisodeData(good.state, good.action, {"front": good.images["front"][:, :71]}, good.task)
    with pytest.raises(ValueError, match="even"):
        write_lerobot_v30(tmp_path / "ds", [odd], fps=30)
    assert list(tmp_path.iterdir()) == []  # no dataset, no temporary leftovers
    write_lerobot_v30(tmp_path / "ds", [good], fps=30)
    with pytest.raises(FileExistsError):
        write_lerobot_v30(tmp_path / "ds", [good], fps=30)
    write_lerobot_v30(tmp_path / "ds", [good, good], fps=30, overwrite=True)
    assert json.loads((tmp_path / "ds/meta/info.json").read_text())["total_episodes"] == 2
    assert [p.name for p in tmp_path.iterdir()] == ["ds"]
