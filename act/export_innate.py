"""Export a trained run as an Innate skill policy: weights, stats, metadata.json.

Innate's robot runtime does not run upstream ACT. What it runs, read from the public code
(innate-inc/innate-os, ros2_ws/src/brain/manipulation/manipulation/, stored version
0d5d3624; a later snapshot of the same folder in the fork Hcoder10/innate-os a235d64 moves
the config to `act_config.py` and runs a TensorRT engine exported from the same eager model,
with the same facts below):

- `manipulation_server.py`, `_load_policy_for_behavior`: `torch.load`s `execution.checkpoint`
  (the later snapshot: `weights_only=True` first), unwraps `model_state_dict` / `state_dict`,
  strips `module.` / `_orig_mod.`, infers chunk_size from the rows of
  `model.decoder_pos_embed.weight`, loads `dataset_stats.pt` from the checkpoint's own folder
  (`os.path.dirname(checkpoint)`, not `execution.stats_file`), builds
  `ACTPolicy(config, dataset_stats)` and calls `load_state_dict(state_dict, strict=False)`.
- `create_act_config` (same file; `act_config.py` later): the architecture is fixed, not read
  from the checkpoint: inputs `observation.image_camera_1`, `observation.image_camera_2`
  [3, 224, 224] and `observation.state` [6]; resnet18, dim_model 512, 8 heads, FFN 3200,
  4 encoder layers, **4 decoder layers**, VAE (4 layers, latent 32), post-norm.
- `ACT.py` (a port of LeRobot's `lerobot/common/policies/act/modeling_act.py`): `ACTPolicy`
  holds `normalize_inputs` / `normalize_targets` / `unnormalize_outputs` whose buffers are
  `buffer_<key with dots as underscores>.mean|std` (images [3, 1, 1]) filled from
  `dataset_stats[key]["mean"|"std"]`; normalization is `(x - mean) / (std + 1e-8)` for the
  state and for every image (MEAN_STD for VISUAL too); `ACT` runs every decoder layer then
  `decoder.norm`, with camera tokens concatenated camera after camera.
- `_run_inference_once`: frames arrive as OpenCV BGR (`imgmsg_to_cv2(..., "bgr8")`), are
  resized to 224x224 with `cv2.INTER_AREA`, scaled to [0, 1] and passed **in BGR order**;
  state = the 6 joint positions; the action is read as [0:6] arm joints, [6] linear.x,
  [7] angular.z, [8] progress (early stop above `execution.progress_threshold`, if
  action_dim >= 10).
- `config_validation.py`, `LearnedExecCfg`: `execution` needs `checkpoint` (relative to the
  skill dir, must exist), `action_dim` (1..64), `duration` (> 0 s), optional 6-float
  `start_pose` / `end_pose`; unknown keys (`model_type`, `stats_file`) are ignored.
- Innate's own trainer (innate-inc/ACT `act_test/data_utils.py`,
  `EpisodicHDF5DatasetRAM`): action = the H5 `action` as recorded (10 columns, progress and
  termination included), qpos 6, cameras camera_1/camera_2, BGR; its `dataset_stats.pt`
  holds for each image key the per-channel mean/std of its own BGR frames in [0, 1]
  ([3, 1, 1]) and std clamped to 1e-6 for state/action.

How our upstream-ACT checkpoint becomes that, exactly (tested against a re-creation of that
runtime model, `tests/test_innate_export.py`):

- Keys are renamed one to one (`_RENAMES`); upstream's CVAE encoder is `model.encoder` and
  its main transformer `model.transformer.*`, LeRobot's are `model.vae_encoder` and
  `model.encoder` / `model.decoder`. `model.is_pad_head.*` has no counterpart and is dropped.
- Decoder: upstream (our default) takes decoder layer 0 + the decoder norm; Innate runs 4
  layers + the norm. Layers beyond the ones our model uses are written as *neutral* layers
  (zero attention and FFN output projections, identity LayerNorms): such a layer maps x to
  LayerNorm(x) without affine, and the final decoder LayerNorm is invariant to that up to
  its 1e-5 epsilon, so the actions are the same (measured difference ~1e-6). A run that
  uses more than 4 decoder layers cannot be exported.
- Colour: the runtime feeds BGR, our model was trained on RGB, so the first convolution's
  input channels are reversed and the image mean/std are given in BGR order: BGR input
  then computes exactly what RGB input computed in our model.
- Stats: `dataset_stats.pt` = {"observation.state": {mean, std}, "action": {mean, std},
  "observation.image_camera_1|2": {mean, std} ([3, 1, 1])}, float32 tensors. The image
  entries are ImageNet's mean/std in BGR order (not dataset statistics as Innate's trainer
  writes): that is the normalization our backbone was trained with. The same values are
  also written into the checkpoint's normalization buffers, so either loading path gives
  the same model.

Not verifiable here (the README says so): the TensorRT engine, the robot itself, and that
our area resize equals OpenCV's INTER_AREA byte for byte (train at 224x224 to match).
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import math
import shutil
import sys
from pathlib import Path

import h5py
import numpy as np
import torch
from torch import Tensor

from act.checkpoint import atomic_torch_save
from act.config import ACTConfig
from act.manifest import sha256_file
from lerobot_bridge.atomic_io import atomic_write_text
from lerobot_bridge.errors import DatasetError

IMAGENET_MEAN_RGB = (0.485, 0.456, 0.406)
IMAGENET_STD_RGB = (0.229, 0.224, 0.225)
INNATE_CAMERA_KEYS = ("observation.image_camera_1", "observation.image_camera_2")
INNATE_DECODER_LAYERS = 4
# What `create_act_config` (innate-os manipulation/act_config.py) builds, whatever the file says.
INNATE_RUNTIME = {
    "hidden_dim": 512,
    "nheads": 8,
    "dim_feedforward": 3200,
    "enc_layers": 4,
    "latent_dim": 32,
    "pre_norm": False,
    "backbone": "resnet18",
    "state_dim": 6,
    "num_cameras": 2,
}
INNATE_IMAGE_SIZE = (224, 224)
MIN_ACTION_DIM = 8  # the runtime reads action[6] and action[7] (base velocity) every step

# upstream ACT (tonyzhaozh/act detr_vae.py) prefix -> Innate / LeRobot ACT prefix
_RENAMES = (
    ("model.transformer.encoder.", "model.encoder."),
    ("model.transformer.decoder.norm.", "model.decoder.norm."),
    ("model.encoder.", "model.vae_encoder."),  # upstream's CVAE encoder
    ("model.backbones.0.0.body.", "model.backbone."),
    ("model.input_proj_robot_state.", "model.encoder_robot_state_input_proj."),
    ("model.input_proj.", "model.encoder_img_feat_input_proj."),
    ("model.latent_out_proj.", "model.encoder_latent_input_proj."),
    ("model.latent_proj.", "model.vae_encoder_latent_output_proj."),
    ("model.additional_pos_embed.", "model.encoder_1d_feature_pos_embed."),
    ("model.query_embed.", "model.decoder_pos_embed."),
    ("model.action_head.", "model.action_head."),
    ("model.cls_embed.", "model.vae_encoder_cls_embed."),
    ("model.encoder_action_proj.", "model.vae_encoder_action_input_proj."),
    ("model.encoder_joint_proj.", "model.vae_encoder_robot_state_input_proj."),
    ("model.pos_table", "model.vae_encoder_pos_enc"),
)
_DROPPED = ("model.is_pad_head.",)
_DECODER_LAYER = "model.transformer.decoder.layers."
_FIRST_CONV = "model.backbone.conv1.weight"


class ExportError(ValueError):
    """The run cannot be exported as asked (the CLI exits 2)."""

    exit_code = 2


def used_decoder_layers(cfg: ACTConfig) -> int:
    """Decoder layers that shape the actions: upstream mode uses layer 0 only."""
    return cfg.dec_layers if cfg.use_all_decoder_layers else 1


def runtime_mismatches(cfg: ACTConfig) -> list[str]:
    """Why Innate's runtime (fixed architecture) could not load this config; empty if it can."""
    problems = []
    for key, want in INNATE_RUNTIME.items():
        have = len(cfg.camera_names) if key == "num_cameras" else getattr(cfg, key)
        if have != want:
            problems.append(f"{key} is {have}, the runtime builds {want}")
    if cfg.action_dim < MIN_ACTION_DIM:
        problems.append(
            f"action_dim is {cfg.action_dim}; the runtime reads action[6:8] as base velocity every step, "
            f"so it needs >= {MIN_ACTION_DIM} (10 with the progress/termination columns)"
        )
    if used_decoder_layers(cfg) > INNATE_DECODER_LAYERS:
        problems.append(
            f"{used_decoder_layers(cfg)} decoder layers in use, the runtime runs {INNATE_DECODER_LAYERS}"
        )
    return problems


def _neutral_decoder_layer(layer0: dict[str, Tensor]) -> dict[str, Tensor]:
    """A decoder layer that only re-normalizes: zero attention/FFN outputs, identity norms."""
    out = {}
    for suffix, t in layer0.items():
        if suffix.startswith("norm") and suffix.endswith(".weight"):
            out[suffix] = torch.ones_like(t)
        else:
            out[suffix] = torch.zeros_like(t)
    return out


def image_norm_stats(color_order: str = "bgr") -> dict[str, Tensor]:
    """ImageNet mean/std [3, 1, 1] in the channel order the runtime feeds."""
    order = [2, 1, 0] if color_order == "bgr" else [0, 1, 2]
    mean = torch.tensor(IMAGENET_MEAN_RGB, dtype=torch.float32)[order].view(3, 1, 1)
    std = torch.tensor(IMAGENET_STD_RGB, dtype=torch.float32)[order].view(3, 1, 1)
    return {"mean": mean, "std": std}


def innate_dataset_stats(
    stats: dict[str, np.ndarray], num_cameras: int = 2, color_order: str = "bgr"
) -> dict[str, dict[str, Tensor]]:
    """Our dataset_stats.pkl -> Innate's dataset_stats.pt structure (float32 tensors)."""

    def t(x) -> Tensor:
        return torch.as_tensor(np.asarray(x, dtype=np.float32)).clone()

    out = {
        "observation.state": {"mean": t(stats["qpos_mean"]), "std": t(stats["qpos_std"])},
        "action": {"mean": t(stats["action_mean"]), "std": t(stats["action_std"])},
    }
    for key in _camera_keys(num_cameras):
        out[key] = {k: v.clone() for k, v in image_norm_stats(color_order).items()}
    return out


def _camera_keys(num_cameras: int) -> list[str]:
    return [f"observation.image_camera_{i + 1}" for i in range(num_cameras)]


def to_innate_state_dict(
    state_dict: dict[str, Tensor],
    cfg: ACTConfig,
    stats: dict[str, np.ndarray],
    *,
    n_decoder_layers: int = INNATE_DECODER_LAYERS,
    color_order: str = "bgr",
) -> tuple[dict[str, Tensor], dict]:
    """Our upstream-ACT state_dict -> the state_dict Innate's `ACTPolicy` loads, plus notes.

    Any config works here (tests use tiny ones); `export_innate` checks the runtime's fixed
    sizes. Every source key is either renamed, folded into the decoder, or listed as dropped.
    """
    used = used_decoder_layers(cfg)
    if used > n_decoder_layers:
        raise ExportError(f"the model uses {used} decoder layers; the target runs only {n_decoder_layers}")
    out: dict[str, Tensor] = {}
    dropped: list[str] = []
    layers: dict[int, dict[str, Tensor]] = {}
    for key, value in state_dict.items():
        value = value.detach().to("cpu", torch.float32).clone()
        if key.startswith(_DECODER_LAYER):
            idx, suffix = key[len(_DECODER_LAYER) :].split(".", 1)
            layers.setdefault(int(idx), {})[suffix] = value
            continue
        if key.startswith(_DROPPED):
            dropped.append(key)
            continue
        for old, new in _RENAMES:
            if key.startswith(old):
                out[new + key[len(old) :]] = value
                break
        else:
            raise ExportError(
                f"checkpoint key {key!r} is not part of upstream ACT's state_dict; cannot map it"
            )
    if not layers:
        raise ExportError("checkpoint has no decoder layers (model.transformer.decoder.layers.*)")
    dropped += [f"{_DECODER_LAYER}{i}.*" for i in sorted(layers) if i >= used]
    for i in range(n_decoder_layers):
        layer = layers[i] if i < used else _neutral_decoder_layer(layers[0])
        for suffix, value in layer.items():
            out[f"model.decoder.layers.{i}.{suffix}"] = value
    if color_order == "bgr":  # the runtime feeds BGR; our first conv was trained on RGB
        out[_FIRST_CONV] = out[_FIRST_CONV][:, [2, 1, 0]].contiguous()
    # Normalization buffers, so the checkpoint alone defines the model (LeRobot checkpoints do too).
    for key, entry in innate_dataset_stats(stats, len(cfg.camera_names), color_order).items():
        modules = ("normalize_targets", "unnormalize_outputs") if key == "action" else ("normalize_inputs",)
        for module in modules:
            for stat, value in entry.items():
                out[f"{module}.buffer_{key.replace('.', '_')}.{stat}"] = value.clone()
    notes = {
        "decoder_layers_used": used,
        "decoder_layers_neutral": n_decoder_layers - used,
        "dropped_keys": dropped,
        "first_conv_channels": "reversed (RGB-trained weights, BGR input)"
        if color_order == "bgr"
        else "unchanged",
        "camera_order": "irrelevant: cameras share the backbone and position embeddings",
    }
    return out, notes


# ---------------------------------------------------------------------------------------
# The skill directory: files and metadata.json.
# ---------------------------------------------------------------------------------------


def pose_and_duration_from_data(skill_dir: Path, stats: dict) -> tuple[list[float], float, str]:
    """start_pose (first 6 joints) and duration (s) from the skill's own recordings.

    start_pose = mean first qpos over the skill's successful episodes; duration = the longest
    episode at the recorded frequency, rounded up to a second. Without recordings: the first
    row and length of the run's example_qpos at 30 Hz (Innate's documented rate).
    """
    from lerobot_bridge.innate import recorded_episodes  # local: act/ must not need the bridge to import

    episodes, meta = recorded_episodes(skill_dir)  # either layout; a malformed file is named in the error
    fps = float(meta.get("data_frequency") or 0) or 30.0
    firsts, lengths = [], []
    for ep in episodes:
        with h5py.File(ep.path, "r") as f:
            firsts.append(np.asarray(f[ep.qpos_key][0], np.float64))
        lengths.append(ep.length)
    if firsts:
        pose = np.mean(firsts, axis=0)[:6]
        return (
            [float(x) for x in pose],
            float(math.ceil(max(lengths) / fps)),
            f"{len(firsts)} episodes in {skill_dir}",
        )
    example = np.asarray(stats["example_qpos"], np.float64)
    return (
        [float(x) for x in example[0][:6]],
        float(math.ceil(len(example) / 30.0)),
        "run's example_qpos at 30 Hz",
    )


def _infer_step(run_dir: Path, checkpoint: str) -> int:
    """Training step of `checkpoint`: the manifest's best step for policy_best, else the last logged."""
    if checkpoint == "policy_best.ckpt":
        for manifest in (run_dir / "manifest.json", run_dir.parent.parent / "manifest.json"):
            try:
                data = json.loads(manifest.read_text())
            except (OSError, json.JSONDecodeError):
                continue
            for best in (data.get("best"), (data.get("training") or {}).get("best")):
                if isinstance(best, dict) and isinstance(best.get("step"), int):
                    return best["step"]
    steps = []
    try:
        for line in (run_dir / "metrics.jsonl").read_text().splitlines():
            try:
                steps.append(int(json.loads(line).get("step", 0)))
            except (json.JSONDecodeError, TypeError, ValueError, AttributeError):
                continue
    except OSError:
        pass
    return max(steps, default=0)


def _training_image_size(run_dir: Path) -> list[int] | None:
    """The frame size the run trained on, if its manifest recorded an Innate conversion."""

    def find(node):
        if isinstance(node, dict):
            if "source_image_size" in node and isinstance(node.get("image_size"), list):
                return node["image_size"]
            return next((r for v in node.values() if (r := find(v)) is not None), None)
        if isinstance(node, list):
            return next((r for v in node if (r := find(v)) is not None), None)
        return None

    for manifest in (run_dir / "manifest.json", run_dir.parent.parent / "manifest.json"):
        try:
            return find(json.loads(manifest.read_text()))
        except (OSError, json.JSONDecodeError):
            continue
    return None


def _validate_execution(execution: dict, skill_dir: Path, check_file: bool = True) -> None:
    """The checks innate-os `config_validation.LearnedExecCfg` makes, so the runtime accepts it."""
    a = execution["action_dim"]
    if not (isinstance(a, int) and 1 <= a <= 64):
        raise ExportError(f"execution.action_dim must be an int in 1..64, got {a!r}")
    d = execution["duration"]
    if not (isinstance(d, float | int) and math.isfinite(d) and d > 0):
        raise ExportError(f"execution.duration must be > 0 seconds, got {d!r}")
    for key in ("start_pose", "end_pose"):
        pose = execution.get(key)
        if pose not in (None, []) and not (
            isinstance(pose, list) and len(pose) == 6 and all(math.isfinite(float(x)) for x in pose)
        ):
            raise ExportError(f"execution.{key} must be 6 finite numbers or empty, got {pose!r}")
    if check_file and not (skill_dir / execution["checkpoint"]).is_file():
        raise ExportError(f"execution.checkpoint: {skill_dir / execution['checkpoint']} does not exist")


def export_innate(
    run_dir: str | Path,
    skill_dir: str | Path,
    checkpoint: str = "policy_best.ckpt",
    step: int | None = None,
    run_id: str | None = None,
    *,
    duration: float | None = None,
    start_pose: list[float] | None = None,
    check_runtime: bool = True,
) -> dict:
    """Write `<skill>/<run_id>/act_policy_step_<N>.pth` + `dataset_stats.pt`, update metadata.json.

    Returns the paths written and what was decided (step, run_id, duration and start_pose
    with their source, conversion notes, the metadata backup). `check_runtime=False` skips the
    runtime's fixed-architecture check (tests with tiny models); never for a real robot.
    """
    from act.checkpoint import load_checkpoint
    from act.stats import load_stats

    run_dir, skill_dir = Path(run_dir), Path(skill_dir)
    ckpt_path = Path(checkpoint) if Path(checkpoint).is_absolute() else run_dir / checkpoint
    for need in (ckpt_path, run_dir / "dataset_stats.pkl", run_dir / "policy_config.json"):
        if not need.is_file():
            raise ExportError(
                f"{need}: missing; expected a training run directory with {checkpoint}, "
                "dataset_stats.pkl and policy_config.json"
            )
    cfg = ACTConfig.load_json(run_dir / "policy_config.json")
    if check_runtime and (problems := runtime_mismatches(cfg)):
        raise ExportError(
            f"{run_dir}: Innate's runtime builds a fixed model (innate-os manipulation/act_config.py "
            "create_act_config) and could not load this one: " + "; ".join(problems)
        )
    stats = load_stats(run_dir / "dataset_stats.pkl")
    weights, notes = to_innate_state_dict(load_checkpoint(ckpt_path), cfg, stats)

    step = _infer_step(run_dir, ckpt_path.name) if step is None else int(step)
    run_id = run_id or run_dir.name
    if not run_id or "/" in run_id or run_id in (".", ".."):
        raise ExportError(f"run_id {run_id!r} must be a plain folder name")
    weights_rel, stats_rel = f"{run_id}/act_policy_step_{step}.pth", f"{run_id}/dataset_stats.pt"

    # Everything is decided and checked before the first file is written.
    pose, secs, source = pose_and_duration_from_data(skill_dir, stats)
    pose = [float(x) for x in start_pose] if start_pose is not None else pose
    secs = float(duration) if duration is not None else secs
    meta_path = skill_dir / "metadata.json"
    if meta_path.is_file():
        try:
            meta = json.loads(meta_path.read_text())
        except json.JSONDecodeError as e:
            raise ExportError(f"{meta_path}: not valid JSON ({e}); fix or remove it") from e
        if not isinstance(meta, dict):
            raise ExportError(f"{meta_path}: top level is {type(meta).__name__}; expected a JSON object")
    else:
        meta = {"name": skill_dir.name, "type": "learned", "guidelines": ""}
    previous_type = meta.get("type")
    meta["type"] = "learned"  # the runtime runs a policy only for learned skills
    execution = dict(meta.get("execution") or {})
    execution.update(
        model_type="act_policy",
        checkpoint=weights_rel,
        stats_file=stats_rel,
        action_dim=int(cfg.action_dim),
        duration=secs,
        start_pose=pose,
    )
    execution.setdefault("end_pose", [])
    _validate_execution(execution, skill_dir, check_file=False)

    out_dir = skill_dir / run_id
    out_dir.mkdir(parents=True, exist_ok=True)
    atomic_torch_save(weights, skill_dir / weights_rel)
    atomic_torch_save(innate_dataset_stats(stats, len(cfg.camera_names)), skill_dir / stats_rel)
    _validate_execution(execution, skill_dir)
    backup = None
    if meta_path.is_file():
        stamp = _dt.datetime.now(_dt.UTC).strftime("%Y%m%dT%H%M%SZ")
        backup = meta_path.with_name(f"metadata.json.bak-{stamp}")
        n = 1
        while backup.exists():
            backup, n = meta_path.with_name(f"metadata.json.bak-{stamp}-{n}"), n + 1
        shutil.copy2(meta_path, backup)
    meta["execution"] = execution
    atomic_write_text(meta_path, json.dumps(meta, indent=2) + "\n")

    warnings = []
    trained_size = _training_image_size(run_dir)
    if trained_size is not None and list(trained_size) != list(INNATE_IMAGE_SIZE):
        warnings.append(
            f"the run trained on {trained_size[0]}x{trained_size[1]} frames but Innate's runtime feeds "
            f"{INNATE_IMAGE_SIZE[0]}x{INNATE_IMAGE_SIZE[1]}; convert with image_size=(224, 224) to match"
        )
    info = {
        "source_run_dir": str(run_dir.resolve()),
        "source_checkpoint": str(ckpt_path.resolve()),
        "source_checkpoint_sha256": sha256_file(ckpt_path),
        "step": step,
        "run_id": run_id,
        "policy_config": cfg.to_dict(),
        "conversion": notes,
        "runtime_image_size": list(INNATE_IMAGE_SIZE),
        "start_pose_and_duration_from": source,
        "training_image_size": trained_size,
        "warnings": warnings,
    }
    atomic_write_text(out_dir / "export_info.json", json.dumps(info, indent=2) + "\n")
    return {
        "weights": str(skill_dir / weights_rel),
        "stats": str(skill_dir / stats_rel),
        "metadata": str(meta_path),
        "metadata_backup": str(backup) if backup else None,
        "export_info": str(out_dir / "export_info.json"),
        "step": step,
        "run_id": run_id,
        "duration": secs,
        "start_pose": pose,
        "start_pose_and_duration_from": source,
        "previous_type": previous_type,
        "conversion": notes,
        "warnings": warnings,
    }


# ---------------------------------------------------------------------------------------
# The command line: python -m act.export_innate (scripts/export_innate.py is the same)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="Export a training run as an Innate skill policy.")
    p.add_argument(
        "--run_dir", required=True, help="run directory: policy_*.ckpt, dataset_stats.pkl, policy_config.json"
    )
    p.add_argument(
        "--skill_dir", required=True, help="the Innate skill directory (holds metadata.json, data/)"
    )
    p.add_argument(
        "--checkpoint", default="policy_best.ckpt", help="checkpoint file name in run_dir (or a path)"
    )
    p.add_argument(
        "--step", type=int, default=None, help="training step for the file name (default: from the run)"
    )
    p.add_argument(
        "--run_id", default=None, help="folder name inside the skill (default: the run directory's name)"
    )
    p.add_argument(
        "--duration", type=float, default=None, help="execution.duration in s (default: from the data)"
    )
    p.add_argument(
        "--skip_runtime_check",
        action="store_true",
        help="export even if Innate's fixed runtime architecture could not load the model (testing only)",
    )
    args = p.parse_args(argv)
    try:
        written = export_innate(
            args.run_dir,
            args.skill_dir,
            checkpoint=args.checkpoint,
            step=args.step,
            run_id=args.run_id,
            duration=args.duration,
            check_runtime=not args.skip_runtime_check,
        )
    except (ExportError, DatasetError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    for warning in written["warnings"]:
        print(f"warning: {warning}", file=sys.stderr)
    print(json.dumps(written, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
