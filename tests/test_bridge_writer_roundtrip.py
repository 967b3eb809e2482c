"""The project's own LeRobot v3.0 writer (lerobot_bridge.writer, used by the demo) and the
converter agree: frame-coded episodes written by one come back exactly from the other."""

from __future__ import annotations

import h5py
import numpy as np
import pytest

from lerobot_bridge.convert import convert_dataset
from lerobot_bridge.synthetic import frame_code_image, read_frame_code

writer = pytest.importorskip("lerobot_bridge.writer")


@pytest.mark.parametrize("codec", ["h264", "av1"])
def test_writer_output_converts_exactly(tmp_path, codec):
    episodes = []
    for e, n in enumerate([20, 33, 27]):
        state = np.cumsum(np.full((n, 4), 0.01, np.float32), axis=0) + e
        images = np.stack([frame_code_image(i, e, 48, 96) for i in range(n)])  # (n, 48, 96, 3)
        episodes.append(
            writer.EpisodeData(state=state, action=state + 0.01, images={"top": images}, task=f"t{e % 2}")
        )
    root = writer.write_lerobot_v30(tmp_path / "ds", episodes, fps=30, codec=codec)
    result = convert_dataset(root, tmp_path / "out", idle_threshold=0, workers=1, progress=False)
    assert result.codebase_version == "v3.0" and result.cameras == {"observation.images.top": "top"}
    assert [r.task for r in result.episodes] == ["t0", "t1", "t0"]
    for i, (report, path) in enumerate(zip(result.episodes, result.hdf5_paths, strict=True)):
        assert report.frames_out == len(episodes[i].state)
        assert report.dropped_frames == {"top": 0} and report.duplicated_frames == {"top": 0}
        with h5py.File(path, "r") as f:
            codes = [read_frame_code(img) for img in f["observations/images/top"][:]]
            assert codes == [(t, i) for t in range(report.frames_out)]
            np.testing.assert_array_equal(f["observations/qpos"][:], episodes[i].state)
            np.testing.assert_array_equal(f["action"][:], episodes[i].action)
