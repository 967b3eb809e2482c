"""The converter's parts on their own: idle trimming, nearest-frame matching (drops and
duplicates), HEVC with B-frames, the atomic episode writer, camera shapes, parquet vectors."""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
import pyarrow as pa
import pytest

from lerobot_bridge.convert import convert_dataset, idle_range
from lerobot_bridge.dataset import _camera_hw, format_path
from lerobot_bridge.errors import DatasetError
from lerobot_bridge.hdf5_writer import EpisodeWriter
from lerobot_bridge.parquet_io import vector_column
from lerobot_bridge.synthetic import read_frame_code, write_v21_dataset
from lerobot_bridge.video import SegmentReader

FPS = 30.0


def _actions(values: list[float]) -> np.ndarray:
    return np.asarray(values, np.float32)[:, None].repeat(3, axis=1)  # (n, 3)


@pytest.mark.parametrize(
    ("values", "threshold", "expected"),
    [
        ([0, 0, 0, 0, 1, 2, 3, 3, 3], 1e-4, (4, 6)),  # idle runs of 4 and 3 frames go whole
        ([0, 1, 2, 2, 2, 3, 4], 1e-4, (0, 7)),  # an interior pause stays
        ([5, 5, 5, 5], 1e-4, (0, 4)),  # idle throughout: kept whole
        ([0, 0, 1, 2], 0.0, (0, 4)),  # 0 disables
        ([0, 0.5e-4, 1, 2], 1e-4, (2, 4)),  # below the threshold counts as idle
        ([0, 0, 1, 2], 2.0, (0, 4)),  # every change below a huge threshold: idle throughout
    ],
)
def test_idle_range(values, threshold, expected):
    assert idle_range(_actions(values), threshold) == expected


def _video(fixtures_dir: Path) -> Path:
    return fixtures_dir / "so100_v21_video/videos/chunk-000/observation.images.front/episode_000000.mp4"


def _read(reader: SegmentReader) -> list[tuple[int, int]]:
    return [read_frame_code(img) for img in reader]


def test_reader_counts_duplicates_and_drops(fixtures_dir):
    # Rows 0 and 0.01 s are both within half a frame (16.7 ms) of frame 0: a duplicate.
    # A row 10 s past the end has no frame of its own: a drop, filled with the nearest (last) frame.
    times = np.array([0.0, 0.01, 1 / FPS, 2 / FPS, 10.0])
    reader = SegmentReader(_video(fixtures_dir), times, FPS)
    assert _read(reader) == [(0, 0), (0, 0), (1, 0), (2, 0), (44, 0)]
    assert (reader.dropped, reader.duplicated) == (1, 1)


def test_reader_seeks_into_the_middle_of_a_b_frame_stream(fixtures_dir):
    """Episode 3 of the H.264 set starts inside a file shared with earlier episodes."""
    import pyarrow.parquet as pq

    root = fixtures_dir / "so100_v30_video_h264"
    ep = pq.read_table(root / "meta/episodes/chunk-000/file-000.parquet").to_pylist()[3]
    start = ep["videos/observation.images.wrist/from_timestamp"]
    path = root / "videos/observation.images.wrist/chunk-{:03d}/file-{:03d}.mp4".format(
        ep["videos/observation.images.wrist/chunk_index"], ep["videos/observation.images.wrist/file_index"]
    )
    rows = np.arange(10, 20) / FPS  # frames 10..19 of the episode
    reader = SegmentReader(path, start + rows, FPS, thread_count=1)
    assert _read(reader) == [(f, 3) for f in range(10, 20)]
    assert reader.decoded < 20  # decoding started near the segment, not at the file start
    assert (reader.dropped, reader.duplicated) == (0, 0)


def test_hevc_with_b_frames_and_missing_frames(tmp_path):
    """HEVC (not among the real fixtures) with B-frames, and frames missing from the video."""
    root = write_v21_dataset(
        tmp_path / "hevc",
        [30, 40],
        codec="libx265",
        codec_name="hevc",
        encoder_options={"x265-params": "log-level=error:bframes=3:keyint=10"},
        dropped={1: {10, 11, 25}},
    )
    result = convert_dataset(root, tmp_path / "out", idle_threshold=0, workers=1, progress=False)
    assert [e.dropped_frames for e in result.episodes] == [{"front": 0}, {"front": 3}]
    assert [e.duplicated_frames for e in result.episodes] == [{"front": 0}, {"front": 0}]
    with h5py.File(result.hdf5_paths[0], "r") as f:
        assert [read_frame_code(x) for x in f["observations/images/front"][:]] == [(t, 0) for t in range(30)]
    with h5py.File(result.hdf5_paths[1], "r") as f:
        codes = [c for c, _ in map(read_frame_code, f["observations/images/front"][:])]
    expected = list(range(40))
    expected[10], expected[11] = 9, 12  # each missing frame is filled by the nearest frame in time
    expected[25] = 24  # equidistant: the earlier frame
    assert codes == expected


@pytest.mark.parametrize("background", [False, True])
def test_writer_is_atomic(tmp_path, background):
    path = tmp_path / "episode_0.hdf5"
    path.write_bytes(b"previous")
    with pytest.raises(RuntimeError), EpisodeWriter(path, 4, attrs={"task": "t"}, background=background) as w:
        w.write_lowdim(qpos=np.zeros((4, 2)), action=np.ones((4, 2)))
        w.append_images("cam", np.zeros((2, 8, 8, 3), np.uint8))
        raise RuntimeError("crash mid-episode")
    assert path.read_bytes() == b"previous"  # untouched
    assert sorted(p.name for p in tmp_path.iterdir()) == ["episode_0.hdf5"]  # no temporary left

    with (
        pytest.raises(ValueError, match="incomplete episode"),
        EpisodeWriter(path, 4, background=background) as w,
    ):
        w.write_lowdim(qpos=np.zeros((4, 2)), action=np.ones((4, 2)))
        w.append_images("cam", np.zeros((3, 8, 8, 3), np.uint8))
    assert path.read_bytes() == b"previous"

    frames = np.arange(4 * 8 * 8 * 3, dtype=np.uint8).reshape(4, 8, 8, 3)
    with EpisodeWriter(path, 4, attrs={"task": "t"}, background=background) as w:
        w.write_lowdim(qpos=np.full((4, 2), 0.5), action=np.ones((4, 2)))
        w.append_images("cam", frames[:3])
        w.append_images("cam", frames[3:])
    with h5py.File(path, "r") as f:
        assert f.attrs["sim"] and f.attrs["task"] == "t"
        np.testing.assert_array_equal(f["observations/images/cam"][:], frames)
        assert f["observations/images/cam"].chunks == (1, 8, 8, 3)
        np.testing.assert_array_equal(f["observations/qvel"][:], np.zeros((4, 2), np.float32))
        assert f["observations/qpos"].dtype == np.float32


def test_camera_shape_order_from_names():
    assert _camera_hw([72, 96, 3], ["height", "width", "channels"]) == (72, 96)
    assert _camera_hw([3, 72, 96], ["channel", "height", "width"]) == (72, 96)
    assert _camera_hw([3, 480, 640], None) == (480, 640)
    assert _camera_hw([480, 640, 3], None) == (480, 640)


def test_vector_columns_fixed_and_variable_lists(tmp_path):
    values = np.arange(6, dtype=np.float64)
    fixed = pa.FixedSizeListArray.from_arrays(pa.array(values, pa.float32()), 3)
    listed = pa.array([[0.0, 1.0, 2.0], [3.0, 4.0, 5.0]], pa.list_(pa.float64()))
    for col in (fixed, pa.chunked_array([listed[:1], listed[1:]])):
        out = vector_column(col, "action", tmp_path, 3)
        assert out.dtype == np.float32
        np.testing.assert_array_equal(out, values.reshape(2, 3))
    with pytest.raises(DatasetError, match="different lengths"):
        vector_column(pa.array([[0.0, 1.0], [2.0]]), "action", tmp_path)
    with pytest.raises(DatasetError, match=r"info.json features say shape \[4\]"):
        vector_column(fixed, "action", tmp_path, 4)


def test_path_templates_stay_inside_root(tmp_path):
    assert format_path(tmp_path, "data/{x:03d}.parquet", "data_path", x=1) == tmp_path / "data/001.parquet"
    for bad in ("../x.parquet", "data/../../x.parquet", "/etc/passwd"):
        with pytest.raises(DatasetError, match="outside the dataset root"):
            format_path(tmp_path, bad, "data_path")
    with pytest.raises(DatasetError, match="cannot format"):
        format_path(tmp_path, "data/{missing}.parquet", "data_path", x=1)
