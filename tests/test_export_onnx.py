"""ONNX export (act/export_onnx.py): onnxruntime's actions equal ACTRunner's on the same raw inputs.

Runs are the deterministic tiny runs of scripts/check_lerobot_export.py (upstream decoder mode,
--use_all_decoder_layers, pre-norm; 2 cameras, 48x64 frames). Tolerance: max abs difference
<= ATOL in action units; measured ~3.3e-6 on actions up to ~6.4 (float32 kernel differences).
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from act.export_onnx import ExportError, check_onnx, export_onnx
from act.policy import ACTRunner

REPO = Path(__file__).resolve().parents[1]
ATOL = 2e-5


def _load(name: str, path: Path):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


check = _load("check_lerobot_export", REPO / "scripts" / "check_lerobot_export.py")


@pytest.mark.parametrize("case", list(check.CASES))
def test_onnxruntime_equals_act_runner(tmp_path, case):
    run = check.make_reference_run(tmp_path / "out", case)
    path = tmp_path / "policy.onnx"
    info = export_onnx(run, path)
    assert info["inputs"]["images"]["shape"] == ["batch", 2, 3, 48, 64]
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    runner = ACTRunner.from_run_dir(run)
    qpos, frames = check.reference_inputs(case)  # raw qpos (B, D); frames (B, N_cam, H, W, 3) uint8
    for batch in (1, len(qpos)):  # the batch axis is dynamic
        images = np.ascontiguousarray(frames[:batch].transpose(0, 1, 4, 2, 3))  # (B, N_cam, 3, H, W)
        got = session.run(["actions"], {"qpos": qpos[:batch], "images": images})[0]
        want = np.stack([runner.predict_chunk(qpos[b], {"top": frames[b, 0], "wrist": frames[b, 1]})
                         for b in range(batch)])
        assert got.shape == (batch, 5, 2)
        assert np.abs(got - want).max() <= ATOL, np.abs(got - want).max()
    # and the graph is not constant: other raw inputs move the actions far beyond ATOL
    other = session.run(["actions"], {"qpos": qpos + 1.0,
                                      "images": np.ascontiguousarray(frames.transpose(0, 1, 4, 2, 3))})[0]
    assert np.abs(other[:1] - got[:1]).max() > 1000 * ATOL


def test_float_images_and_metadata(tmp_path):
    run = check.make_reference_run(tmp_path / "out", "upstream_decoder")
    path = tmp_path / "policy_f32.onnx"
    export_onnx(run, path, image_dtype="float32")
    model = onnx.load(str(path))
    inputs = {i.name: i for i in model.graph.input}
    assert inputs["images"].type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    assert inputs["qpos"].type.tensor_type.shape.dim[0].dim_param == "batch"
    meta = json.loads({p.key: p.value for p in model.metadata_props}["train_act"])
    assert meta["inputs"]["images"]["cameras"] == ["top", "wrist"]
    assert check_onnx(path, run, batch=2) <= ATOL


def test_refusals(tmp_path):
    run = check.make_reference_run(tmp_path / "out", "upstream_decoder")
    with pytest.raises(ExportError, match="image_dtype"):
        export_onnx(run, tmp_path / "a.onnx", image_dtype="float16")
    (tmp_path / "out" / "manifest.json").unlink()
    with pytest.raises(ExportError, match="image size unknown"):
        export_onnx(run, tmp_path / "b.onnx")
    assert not list(tmp_path.glob("*.onnx")) and not list(tmp_path.glob(".*tmp-*"))
    with pytest.raises(ExportError, match="missing"):
        export_onnx(tmp_path / "nowhere", tmp_path / "c.onnx")


def test_cli(tmp_path, capsys):
    cli = _load("export_onnx_cli", REPO / "scripts" / "export_onnx.py")
    run = check.make_reference_run(tmp_path / "out", "pre_norm")
    assert cli.main(["--run_dir", str(run), "--out", str(tmp_path / "p.onnx")]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["check"]["max_abs_diff_onnxruntime_vs_act_runner"] <= ATOL
    assert cli.main(["--run_dir", str(run), "--out", str(tmp_path / "q.onnx"), "--image_size", "4x"]) == 2
