"""Export a trained run as a LeRobot ACT policy folder (what `ACTPolicy.from_pretrained` loads).

    export_lerobot(run_dir, out_dir)  ->  out_dir/
        config.json                                                   LeRobot's ACTConfig (type "act")
        model.safetensors                                             our weights under LeRobot's names
        policy_preprocessor.json + ..._step_3_normalizer_processor.safetensors
        policy_postprocessor.json + ..._step_0_unnormalizer_processor.safetensors
        train_act_export.json                                         where it came from (ignored by LeRobot)

The layout and names are LeRobot 0.4.4's (`lerobot/policies/act/modeling_act.py`,
`configuration_act.py`, `processor/normalize_processor.py`, `processor/pipeline.py`), checked
against that release itself: `scripts/check_lerobot_export.py` loads an export with LeRobot's
own `from_pretrained` (strict) and processors and records its actions, and
`tests/test_export_lerobot.py` asserts our `ACTRunner` computes the same ones.

How upstream ACT (ours) maps onto LeRobot's ACT, and why each step is exact:
- Names: upstream's CVAE encoder `model.encoder` is LeRobot's `model.vae_encoder`; the main
  transformer `model.transformer.encoder/decoder` is `model.encoder/decoder`; the ResNet trunk
  `model.backbones.0.0.body` is `model.backbone` (both torchvision's names, frozen BatchNorm
  with the same four buffers); the rest is `_RENAMES`. `model.is_pad_head` has no counterpart
  (upstream never uses its output) and is dropped.
- Decoder: LeRobot runs all of its `n_decoder_layers` and then `decoder.norm`. Upstream mode
  (our default) uses decoder layer 0 + the norm, so it is written as n_decoder_layers = 1 with
  layer 0 (layers 1..N-1 never affect the actions and are dropped). A run trained with
  --use_all_decoder_layers runs all N layers + the norm, which is LeRobot's computation with
  n_decoder_layers = N: written as such.
- Tokens: both encode [latent, state, image tokens]; `additional_pos_embed` rows are
  [latent, state] like `encoder_1d_feature_pos_embed`. We lay cameras side by side and
  flatten row-major, LeRobot appends camera after camera; every token keeps its own feature
  and its own position embedding (the same 2-D sine map per camera), and the encoder (no mask)
  and the decoder's cross-attention do not depend on token order, so only float summation
  order differs. The latent z = 0 at inference in both.
- Normalization: our model ImageNet-normalizes images inside; LeRobot's preprocessor does it
  from the VISUAL stats, so each camera gets ImageNet's mean/std (3, 1, 1) there. State and
  action use dataset_stats.pkl; LeRobot divides by (std + 1e-8) where upstream divides by std
  (std >= 1e-2 here, so < 1e-6 relative).
Refused, writing nothing (ExportError, exit 2): a backbone other than resnet18, a checkpoint
key that is not upstream ACT's, a missing or wrongly shaped tensor, cameras of different sizes,
unknown image sizes, an output folder that is not empty.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from act.act_policy import IMAGENET_MEAN, IMAGENET_STD
from act.checkpoint import POLICY_CONFIG_NAME, load_checkpoint
from act.config import ACTConfig
from act.stats import STATS_FILE_NAME, load_stats

LEROBOT_VERSION_CHECKED = "0.4.4"
STATE_KEY = "observation.state"
ACTION_KEY = "action"
IMAGE_PREFIX = "observation.images."
PREPROCESSOR_NAME = "policy_preprocessor"
POSTPROCESSOR_NAME = "policy_postprocessor"
NORMALIZER_STATE_FILE = f"{PREPROCESSOR_NAME}_step_3_normalizer_processor.safetensors"
UNNORMALIZER_STATE_FILE = f"{POSTPROCESSOR_NAME}_step_0_unnormalizer_processor.safetensors"
NORMALIZER_EPS = 1e-8  # LeRobot's default; the processor config must carry it
EXPORT_INFO_NAME = "train_act_export.json"

# upstream ACT prefix -> LeRobot ACT prefix. Order matters: the main transformer's encoder is
# renamed before upstream's CVAE encoder (`model.encoder.`) takes LeRobot's `model.vae_encoder.`.
_RENAMES = (
    ("model.transformer.encoder.", "model.encoder."),
    ("model.transformer.decoder.norm.", "model.decoder.norm."),
    ("model.encoder.", "model.vae_encoder."),
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


class ExportError(ValueError):
    """The run cannot be expressed as a LeRobot ACT policy (the CLI exits 2, nothing written)."""

    exit_code = 2


def lerobot_decoder_layers(cfg: ACTConfig) -> int:
    """LeRobot's n_decoder_layers computing what our model computes."""
    return cfg.dec_layers if cfg.use_all_decoder_layers else 1


def to_lerobot_state_dict(state_dict: dict[str, Tensor], cfg: ACTConfig
                          ) -> tuple[dict[str, Tensor], list[str]]:
    """Our upstream-ACT state_dict -> LeRobot ACTPolicy's state_dict, plus the dropped keys.

    Every source key is renamed, dropped on purpose (listed) or refused.
    """
    keep_layers = lerobot_decoder_layers(cfg)
    out: dict[str, Tensor] = {}
    dropped: list[str] = []
    for key, value in state_dict.items():
        # clone: safetensors refuses tensors that share memory
        value = value.detach().to("cpu", torch.float32).clone().contiguous()
        if key.startswith(_DECODER_LAYER):
            index, suffix = key[len(_DECODER_LAYER):].split(".", 1)
            if int(index) < keep_layers:
                out[f"model.decoder.layers.{index}.{suffix}"] = value
            else:
                dropped.append(key)
            continue
        if key.startswith(_DROPPED):
            dropped.append(key)
            continue
        for old, new in _RENAMES:
            if key.startswith(old):
                out[new + key[len(old):]] = value
                break
        else:
            raise ExportError(f"checkpoint key {key!r} is not part of upstream ACT's state_dict; LeRobot's "
                              "ACT has no place for it")
    return out, dropped


def expected_lerobot_shapes(cfg: ACTConfig) -> dict[str, tuple[int, ...]]:
    """The state_dict shapes LeRobot's ACT builds for this config, from our own module tree.

    Built by renaming the shapes of a freshly constructed policy of the same config, so a
    checkpoint with a missing key or a different shape is caught before anything is written.
    """
    from act.act_policy import ACTPolicy

    with torch.device("meta"):  # shapes only, no memory and no init work
        reference = ACTPolicy(cfg).state_dict()
    renamed, _ = to_lerobot_state_dict({k: torch.empty(v.shape) for k, v in reference.items()}, cfg)
    return {k: tuple(v.shape) for k, v in renamed.items()}


def run_features(run_dir: Path, cfg: ACTConfig, image_size: tuple[int, int] | None = None
                 ) -> tuple[dict[str, str], tuple[int, int], dict]:
    """Camera feature keys {our camera name: LeRobot key}, the image (H, W), and the names found.

    From OUT/manifest.json (the run's source dataset): a LeRobot camera keeps its dataset key
    (`observation.images.front`), so the robot's observation dict feeds the policy as it
    fed the recorder; other sources become `observation.images.<camera name>`.
    """
    manifest: dict = {}
    path = run_dir.absolute().parent.parent / "manifest.json"
    if path.is_file():
        try:
            manifest = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError) as e:
            raise ExportError(f"{path}: unreadable ({e})") from e
        if manifest.get("run_name") not in (None, run_dir.name):
            manifest = {}  # the manifest describes another run of that output folder
    by_name = {name: key for key, name in (manifest.get("cameras") or {}).items()}
    keys = {}
    for name in cfg.camera_names:
        key = by_name.get(name, "")
        keys[name] = key if key.startswith(IMAGE_PREFIX) else IMAGE_PREFIX + name
    if len(set(keys.values())) != len(keys):
        raise ExportError(f"camera feature keys collide: {keys}")
    if image_size is None and cfg.image_size:  # the trained frame size (policy_config.json)
        image_size = tuple(cfg.image_size)
    if image_size is None:
        shapes = (manifest.get("dataset") or {}).get("image_shapes") or {}
        sizes = {tuple(shapes[c][:2]) for c in cfg.camera_names if c in shapes}
        if len(sizes) > 1:
            raise ExportError(f"cameras have different sizes {shapes}; our model needs one size")
        if not sizes or any(c not in shapes for c in cfg.camera_names):
            raise ExportError(f"image size unknown: {path} has no dataset.image_shapes for cameras "
                              f"{cfg.camera_names}; pass --image_size HxW (the frames the run trained on)")
        image_size = sizes.pop()
    names = {"state_names": manifest.get("state_names"), "action_names": manifest.get("action_names"),
             "dataset": (manifest.get("dataset") or {}).get("path")}
    return keys, (int(image_size[0]), int(image_size[1])), names


def lerobot_config(cfg: ACTConfig, camera_keys: dict[str, str], image_size: tuple[int, int], *,
                   n_action_steps: int | None = None, temporal_ensemble_coeff: float | None = None,
                   device: str = "cpu") -> dict:
    """config.json: LeRobot 0.4.4's ACTConfig fields, in the order LeRobot writes them."""
    h, w = image_size
    input_features = {STATE_KEY: {"type": "STATE", "shape": [cfg.state_dim]}}
    for name in cfg.camera_names:
        input_features[camera_keys[name]] = {"type": "VISUAL", "shape": [3, h, w]}
    if temporal_ensemble_coeff is not None:
        n_action_steps = 1  # LeRobot requires it: the policy is queried every step
    n_action_steps = cfg.chunk_size if n_action_steps is None else int(n_action_steps)
    if not 1 <= n_action_steps <= cfg.chunk_size:
        raise ExportError(f"n_action_steps must be in 1..{cfg.chunk_size}, got {n_action_steps}")
    return {
        "type": "act",
        "n_obs_steps": 1,
        "input_features": input_features,
        "output_features": {ACTION_KEY: {"type": "ACTION", "shape": [cfg.action_dim]}},
        "device": device,
        "use_amp": False,
        "use_peft": False,
        "push_to_hub": False,
        "repo_id": None,
        "private": None,
        "tags": None,
        "license": None,
        "pretrained_path": None,
        "chunk_size": cfg.chunk_size,
        "n_action_steps": n_action_steps,
        "normalization_mapping": {"VISUAL": "MEAN_STD", "STATE": "MEAN_STD", "ACTION": "MEAN_STD"},
        "vision_backbone": "resnet18",
        # null: LeRobot would otherwise fetch ImageNet weights at load time, then overwrite them
        "pretrained_backbone_weights": None,
        "replace_final_stride_with_dilation": False,
        "pre_norm": cfg.pre_norm,
        "dim_model": cfg.hidden_dim,
        "n_heads": cfg.nheads,
        "dim_feedforward": cfg.dim_feedforward,
        "feedforward_activation": "relu",
        "n_encoder_layers": cfg.enc_layers,
        "n_decoder_layers": lerobot_decoder_layers(cfg),
        "use_vae": True,
        "latent_dim": cfg.latent_dim,
        "n_vae_encoder_layers": cfg.enc_layers,  # upstream builds its CVAE encoder with enc_layers
        "temporal_ensemble_coeff": temporal_ensemble_coeff,
        "dropout": cfg.dropout,
        "kl_weight": cfg.kl_weight,
        "optimizer_lr": 1e-05,
        "optimizer_weight_decay": 0.0001,
        "optimizer_lr_backbone": 1e-05,
    }


def normalizer_stats(stats: dict[str, np.ndarray], camera_keys: list[str]) -> dict[str, Tensor]:
    """The normalizer steps' state: `<feature>.mean|std`, images (3, 1, 1) ImageNet."""

    def t(x) -> Tensor:
        return torch.as_tensor(np.asarray(x, dtype=np.float32)).clone().contiguous()

    out = {f"{ACTION_KEY}.mean": t(stats["action_mean"]), f"{ACTION_KEY}.std": t(stats["action_std"]),
           f"{STATE_KEY}.mean": t(stats["qpos_mean"]), f"{STATE_KEY}.std": t(stats["qpos_std"])}
    for key in camera_keys:
        out[f"{key}.mean"] = t(IMAGENET_MEAN).view(3, 1, 1).clone()
        out[f"{key}.std"] = t(IMAGENET_STD).view(3, 1, 1).clone()
    return dict(sorted(out.items()))


def processor_configs(config: dict, device: str = "cpu") -> tuple[dict, dict]:
    """policy_preprocessor.json and policy_postprocessor.json, as LeRobot's ACT factory writes them:
    rename -> batch -> device -> normalize; unnormalize -> device(cpu)."""
    features = {**config["input_features"], **config["output_features"]}
    norm_map = config["normalization_mapping"]
    pre = {"name": PREPROCESSOR_NAME, "steps": [
        {"registry_name": "rename_observations_processor", "config": {"rename_map": {}}},
        {"registry_name": "to_batch_processor", "config": {}},
        {"registry_name": "device_processor", "config": {"device": device, "float_dtype": None}},
        {"registry_name": "normalizer_processor",
         "config": {"eps": NORMALIZER_EPS, "features": features, "norm_map": norm_map},
         "state_file": NORMALIZER_STATE_FILE},
    ]}
    post = {"name": POSTPROCESSOR_NAME, "steps": [
        {"registry_name": "unnormalizer_processor",
         "config": {"eps": NORMALIZER_EPS, "features": dict(config["output_features"]), "norm_map": norm_map},
         "state_file": UNNORMALIZER_STATE_FILE},
        {"registry_name": "device_processor", "config": {"device": "cpu", "float_dtype": None}},
    ]}
    return pre, post


def export_lerobot(run_dir: str | Path, out_dir: str | Path, checkpoint: str = "policy_best.ckpt", *,
                   image_size: tuple[int, int] | None = None, n_action_steps: int | None = None,
                   temporal_ensemble_coeff: float | None = None, device: str = "cpu") -> dict:
    """Write the LeRobot policy folder `out_dir` (must not exist or be empty). Returns what was written.

    Everything is mapped and checked first; the files are written into a temporary sibling
    folder that is renamed to `out_dir` at the end, so a refusal or a crash leaves nothing.
    """
    from safetensors.torch import save_file

    from act.manifest import sha256_file

    run_dir, out_dir = Path(run_dir), Path(out_dir)
    ckpt_path = Path(checkpoint) if Path(checkpoint).is_absolute() else run_dir / checkpoint
    for need in (ckpt_path, run_dir / STATS_FILE_NAME, run_dir / POLICY_CONFIG_NAME):
        if not need.is_file():
            raise ExportError(f"{need}: missing; expected a training run directory with {checkpoint}, "
                              f"{STATS_FILE_NAME} and {POLICY_CONFIG_NAME}")
    if out_dir.exists() and (not out_dir.is_dir() or any(out_dir.iterdir())):
        raise ExportError(f"{out_dir}: exists and is not an empty folder; choose a new --out")
    cfg = ACTConfig.load_json(run_dir / POLICY_CONFIG_NAME)
    if cfg.backbone != "resnet18":
        raise ExportError(f"backbone {cfg.backbone!r}: only resnet18 is mapped")
    if not cfg.camera_names:
        raise ExportError("the run has no cameras; LeRobot's ACT export here needs image features")
    camera_keys, size, names = run_features(run_dir, cfg, image_size)
    stats = load_stats(run_dir / STATS_FILE_NAME)
    for key, dim in (("qpos_mean", cfg.state_dim), ("qpos_std", cfg.state_dim),
                     ("action_mean", cfg.action_dim), ("action_std", cfg.action_dim)):
        if np.asarray(stats[key]).shape != (dim,):
            raise ExportError(f"{STATS_FILE_NAME}: {key} has shape {np.asarray(stats[key]).shape}, the model "
                              f"needs ({dim},)")

    weights, dropped = to_lerobot_state_dict(load_checkpoint(ckpt_path), cfg)
    expected = expected_lerobot_shapes(cfg)
    missing = sorted(set(expected) - set(weights))
    extra = sorted(set(weights) - set(expected))
    wrong = [f"{k} {tuple(weights[k].shape)} != {expected[k]}" for k in expected
             if k in weights and tuple(weights[k].shape) != expected[k]]
    if missing or extra or wrong:
        raise ExportError(f"{ckpt_path} does not match its {POLICY_CONFIG_NAME}: missing {missing[:5]}, "
                          f"unexpected {extra[:5]}, shapes {wrong[:5]}")
    config = lerobot_config(cfg, camera_keys, size, n_action_steps=n_action_steps,
                            temporal_ensemble_coeff=temporal_ensemble_coeff, device=device)
    pre, post = processor_configs(config, device)
    norm_state = normalizer_stats(stats, [camera_keys[c] for c in cfg.camera_names])
    info = {
        "source_run_dir": str(run_dir.resolve()),
        "source_checkpoint": str(ckpt_path.resolve()),
        "source_checkpoint_sha256": sha256_file(ckpt_path),
        "lerobot_version_checked": LEROBOT_VERSION_CHECKED,
        "cameras": camera_keys,  # our camera name -> LeRobot feature key
        **names,
        "decoder": (f"all {cfg.dec_layers} layers (--use_all_decoder_layers)" if cfg.use_all_decoder_layers
                    else f"layer 0 of {cfg.dec_layers} (upstream ACT computes only that one)"),
        "dropped_keys": dropped,
        "images": "float (B, 3, H, W) in 0..1, RGB; ImageNet mean/std applied by the preprocessor",
    }

    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.tmp-", dir=out_dir.parent))
    try:
        save_file(weights, str(tmp / "model.safetensors"))
        save_file(norm_state, str(tmp / NORMALIZER_STATE_FILE))
        save_file(norm_state, str(tmp / UNNORMALIZER_STATE_FILE))  # LeRobot stores every feature in both
        for name, data in (("config.json", config), (f"{PREPROCESSOR_NAME}.json", pre),
                           (f"{POSTPROCESSOR_NAME}.json", post), (EXPORT_INFO_NAME, info)):
            (tmp / name).write_text(json.dumps(data, indent=4 if name == "config.json" else 2) + "\n")
        if out_dir.is_dir():
            out_dir.rmdir()  # checked empty above
        os.replace(tmp, out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return {"out_dir": str(out_dir), "files": sorted(p.name for p in out_dir.iterdir()), **info}
