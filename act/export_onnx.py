"""Export a run's inference graph to ONNX: raw qpos + camera images -> raw action chunk.

    export_onnx(run_dir, "policy.onnx")  # then, with onnxruntime:
    session.run(["actions"], {"qpos": qpos, "images": images})[0]   # (B, chunk, A)

Inputs and output (B is a dynamic axis; H, W are the run's frame size, fixed in the graph):
- qpos    (B, state_dim) float32, in the robot's units (not normalized);
- images  (B, N_cam, 3, H, W), cameras in the run's `camera_names` order (policy_config.json),
          RGB, uint8 0..255 (default) or float32 0..1 (`image_dtype="float32"`);
- actions (B, chunk_size, action_dim) float32, in the robot's units.
Everything ACTRunner.predict_chunk does is inside the graph, so a runtime feeds raw robot
values: qpos normalization with dataset_stats.pkl's mean/std, ImageNet normalization of the
images, z = 0, and the action de-normalization. Temporal ensembling / chunk execution stay
outside (they are a loop over queries, see act.policy).

The exporter is torch's TorchScript-based one (`dynamo=False`): it needs no onnxscript and
handles the data-independent control flow here. Checked with onnxruntime on CPU against
ACTRunner (tests/test_export_onnx.py and `check_onnx`).
"""

from __future__ import annotations

import json
import os
import tempfile
import warnings
from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn

from act.act_policy import ACTPolicy
from act.checkpoint import POLICY_CONFIG_NAME, load_checkpoint
from act.config import ACTConfig
from act.normalize import Normalizer, standardize, unstandardize
from act.stats import STATS_FILE_NAME, load_stats

OPSET = 18
INPUT_NAMES = ("qpos", "images")
OUTPUT_NAME = "actions"


class ExportError(ValueError):
    """The run cannot be exported as asked (the CLI exits 2)."""

    exit_code = 2


class InferenceGraph(nn.Module):
    """ACTRunner.predict_chunk as one module over a batch: raw qpos + images -> raw actions."""

    def __init__(self, policy: ACTPolicy, stats: dict[str, np.ndarray]):
        super().__init__()
        self.policy = policy.eval()

        normalizer = Normalizer.from_stats(stats)
        for name in Normalizer.FIELDS:  # buffers: they follow .to(device) and go into the graph
            self.register_buffer(name, torch.from_numpy(getattr(normalizer, name).copy()))

    def forward(self, qpos: Tensor, images: Tensor) -> Tensor:
        # qpos (B, D) raw; images (B, N_cam, 3, H, W) uint8 0..255 or float 0..1 -> (B, chunk, A) raw
        qpos_norm = standardize(qpos, self.qpos_mean, self.qpos_std)
        pred = self.policy(qpos_norm, images)  # ImageNet normalization and z = 0 inside
        return unstandardize(pred, self.action_mean, self.action_std)


def load_run(run_dir: str | Path, checkpoint: str = "policy_best.ckpt"
             ) -> tuple[ACTConfig, ACTPolicy, dict[str, np.ndarray]]:
    run_dir = Path(run_dir)
    ckpt_path = Path(checkpoint) if Path(checkpoint).is_absolute() else run_dir / checkpoint
    for need in (ckpt_path, run_dir / STATS_FILE_NAME, run_dir / POLICY_CONFIG_NAME):
        if not need.is_file():
            raise ExportError(f"{need}: missing; expected a training run directory with {checkpoint}, "
                              f"{STATS_FILE_NAME} and {POLICY_CONFIG_NAME}")
    cfg = ACTConfig.load_json(run_dir / POLICY_CONFIG_NAME)
    policy = ACTPolicy(cfg)
    policy.load_state_dict(load_checkpoint(ckpt_path), strict=True)
    return cfg, policy.eval(), load_stats(run_dir / STATS_FILE_NAME)


def image_size_from_manifest(run_dir: Path, cfg: ACTConfig) -> tuple[int, int] | None:
    """(H, W) the run trained on, from OUT/manifest.json's dataset.image_shapes, if recorded."""
    path = run_dir.absolute().parent.parent / "manifest.json"
    try:
        manifest = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return None
    if manifest.get("run_name") not in (None, run_dir.name):
        return None
    shapes = (manifest.get("dataset") or {}).get("image_shapes") or {}
    sizes = {tuple(shapes[c][:2]) for c in cfg.camera_names if c in shapes}
    return (int(next(iter(sizes))[0]), int(next(iter(sizes))[1])) if len(sizes) == 1 else None


def export_onnx(run_dir: str | Path, out: str | Path, checkpoint: str = "policy_best.ckpt", *,
                image_size: tuple[int, int] | None = None, image_dtype: str = "uint8",
                opset: int = OPSET) -> dict:
    """Write the ONNX file `out` (atomically) and return a description of its interface."""
    import onnx

    run_dir, out = Path(run_dir), Path(out)
    if image_dtype not in ("uint8", "float32"):
        raise ExportError(f"image_dtype must be uint8 or float32, got {image_dtype!r}")
    cfg, policy, stats = load_run(run_dir, checkpoint)
    # the trained frame size: policy_config.json (runs since --image_size), else the manifest
    image_size = image_size or (tuple(cfg.image_size) if cfg.image_size else None) or \
        image_size_from_manifest(run_dir, cfg)
    if image_size is None:
        manifest = run_dir.absolute().parent.parent / "manifest.json"
        raise ExportError(f"image size unknown: {manifest} does not record dataset.image_shapes; pass "
                          "--image_size HxW (the frames the run trained on)")
    graph = InferenceGraph(policy, stats).eval()
    h, w = image_size
    n_cam = len(cfg.camera_names)
    qpos = torch.zeros(2, cfg.state_dim)
    images = (torch.zeros(2, n_cam, 3, h, w, dtype=torch.uint8) if image_dtype == "uint8"
              else torch.zeros(2, n_cam, 3, h, w))
    out.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{out.name}.tmp-", dir=out.parent)
    os.close(fd)
    try:
        with torch.no_grad(), warnings.catch_warnings():
            # The tracer flags F.multi_head_attention_forward's shape assertions (constant for one
            # model; the dynamic batch is tested) and the exporter's own deprecation notice.
            warnings.simplefilter("ignore", torch.jit.TracerWarning)
            warnings.filterwarnings("ignore", category=DeprecationWarning, module=r"torch\.onnx")
            warnings.filterwarnings("ignore", message=".*legacy TorchScript-based ONNX export.*")
            torch.onnx.export(
                graph, (qpos, images), tmp_name, dynamo=False, opset_version=opset,
                input_names=list(INPUT_NAMES), output_names=[OUTPUT_NAME],
                dynamic_axes={"qpos": {0: "batch"}, "images": {0: "batch"}, OUTPUT_NAME: {0: "batch"}},
                do_constant_folding=True,
            )
        model = onnx.load(tmp_name)
        onnx.checker.check_model(model)
        interface = {
            "inputs": {"qpos": {"shape": ["batch", cfg.state_dim], "dtype": "float32", "units": "raw robot"},
                       "images": {"shape": ["batch", n_cam, 3, h, w], "dtype": image_dtype,
                                  "range": "0..255" if image_dtype == "uint8" else "0..1",
                                  "cameras": list(cfg.camera_names), "color": "RGB"}},
            "output": {OUTPUT_NAME: {"shape": ["batch", cfg.chunk_size, cfg.action_dim], "dtype": "float32",
                                     "units": "raw robot"}},
            "latent": "z = 0", "opset": opset,
            "normalization": "in the graph: qpos/action mean-std (dataset_stats.pkl), ImageNet images",
        }
        entry = model.metadata_props.add()  # the interface travels with the file
        entry.key, entry.value = "train_act", json.dumps(interface)
        onnx.save(model, tmp_name)
        os.replace(tmp_name, out)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise
    return {"out": str(out), **interface}


def check_onnx(onnx_path: str | Path, run_dir: str | Path, checkpoint: str = "policy_best.ckpt",
               batch: int = 2, seed: int = 0) -> float:
    """Max |onnxruntime - ACTRunner| over random raw inputs (CPU): the export's own check."""
    import onnxruntime as ort

    from act.policy import ACTRunner

    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    images_input = next(i for i in session.get_inputs() if i.name == "images")
    _, n_cam, _, h, w = images_input.shape
    runner = ACTRunner.from_run_dir(run_dir, checkpoint=checkpoint)
    rng = np.random.default_rng(seed)
    norm = runner.normalizer
    qpos = unstandardize(rng.normal(0, 1, (batch, runner.cfg.state_dim)), norm.qpos_mean, norm.qpos_std)
    qpos = qpos.astype(np.float32)
    frames = rng.integers(0, 256, (batch, n_cam, h, w, 3), dtype=np.uint8)  # HWC, as a camera gives them
    images = frames.transpose(0, 1, 4, 2, 3)  # (B, N_cam, 3, H, W)
    if images_input.type == "tensor(float)":
        images = images.astype(np.float32) / 255.0
    got = session.run([OUTPUT_NAME], {"qpos": qpos, "images": np.ascontiguousarray(images)})[0]
    want = np.stack([runner.predict_chunk(qpos[b], dict(zip(runner.cfg.camera_names, frames[b], strict=True)))
                     for b in range(batch)])
    return float(np.abs(got - want).max())
