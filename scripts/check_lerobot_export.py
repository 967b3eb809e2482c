"""Check our LeRobot export with LeRobot itself; record its actions as test fixtures.

Run in a SEPARATE environment that has lerobot (not the project's), from the repository root:

    python3 -m venv /tmp/lerobot_env
    /tmp/lerobot_env/bin/pip install torch==2.13.0          # the local CPU build first
    /tmp/lerobot_env/bin/pip install --no-deps lerobot==0.4.4 torchvision==0.28.0
    /tmp/lerobot_env/bin/pip install "draccus==0.10.0" "huggingface-hub<0.36,>=0.34.2" safetensors \
        "einops>=0.8,<0.9" "datasets>=4,<5" "diffusers>=0.27.2,<0.36" "accelerate>=1.10,<2" \
        "jsonlines>=4,<5" "opencv-python-headless>=4.9,<4.13" "av>=15,<16" "gymnasium>=1.1.1,<2" \
        "imageio[ffmpeg]>=2.34,<3" "setuptools>=71,<81" "deepdiff>=7.0.1,<9" "termcolor>=2.4,<4" \
        "pyserial>=3.5,<4" "pynput>=1.7.7,<1.9" packaging pillow
    /tmp/lerobot_env/bin/python scripts/check_lerobot_export.py   # writes tests/data/lerobot_export/

Why --no-deps: lerobot 0.4.4 (the newest release for Python 3.11; 0.5+ need 3.12) pins
torch < 2.11, and an open torch requirement pulls GBs of CUDA wheels. LeRobot's ACT only
needs torchvision's pure-Python parts (resnet18, IntermediateLayerGetter, FrozenBatchNorm2d),
but PyPI's torchvision cannot load its compiled detection ops (nms, roi_align) against the CPU
torch; `_allow_torchvision_without_ops` declares the two op schemas torchvision registers fake
kernels for at import, so importing it succeeds. ACT calls none of those ops.

For each case in CASES it builds a tiny run whose weights come from numpy's seeded generator
(so the test rebuilds the identical run with any torch), exports it with act.export_lerobot,
loads it with LeRobot's `ACTPolicy.from_pretrained(..., strict=True)` and
`make_pre_post_processors(config, pretrained_path=...)` (how lerobot's own record/eval load a
policy), and records preprocessor -> predict_action_chunk -> postprocessor on fixed raw inputs.
It also has LeRobot save what it loaded and checks the files equal ours (config, processors,
every tensor), and stores what LeRobot itself writes for a fresh policy of the same config
(config.json, processor JSON, state_dict names and shapes) for the key/format test.
The top level imports only the standard library, numpy and torch: the test imports
`make_reference_run` and `reference_inputs` from this file.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import platform
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # runnable from a checkout, in an environment without the project installed

FIXTURE_DIR = REPO / "tests" / "data" / "lerobot_export"
CAMERAS = {"observation.images.top": "top", "observation.images.wrist": "wrist"}  # dataset key -> name
IMAGE_HW = (48, 64)  # not square, so a swapped H/W shows
BATCH = 3
BASE = dict(state_dim=3, action_dim=2, camera_names=["top", "wrist"], chunk_size=5, hidden_dim=32,
            dim_feedforward=64, nheads=2, enc_layers=2, dec_layers=3, latent_dim=4)
CASES = {
    "upstream_decoder": {},  # upstream mode: decoder layer 0 of 3 + the norm
    "all_decoder_layers": {"use_all_decoder_layers": True},  # LeRobot n_decoder_layers = 3
    "pre_norm": {"pre_norm": True, "dec_layers": 1},
}
STATS_SEED = 7


def make_reference_run(root: Path, case: str) -> Path:
    """A run directory OUT/checkpoints/<case> with random but reproducible weights and stats.

    Weights from numpy's PCG64 (stable across numpy and torch versions), scaled like a
    trained model so activations stay in range; frozen-BatchNorm buffers near identity.
    """
    from act.act_policy import ACTPolicy
    from act.checkpoint import POLICY_CONFIG_NAME, save_checkpoint
    from act.config import ACTConfig
    from act.stats import STATS_FILE_NAME, save_stats

    cfg = ACTConfig(**{**BASE, **CASES[case]})
    policy = ACTPolicy(cfg)
    rng = np.random.default_rng(list(CASES).index(case) + 1)
    state = policy.state_dict()
    for key, value in state.items():
        if key.endswith("pos_table"):
            continue  # a fixed sinusoid, computed
        shape = tuple(value.shape)
        if key.endswith("running_var"):
            new = rng.uniform(0.5, 1.5, shape)
        elif key.endswith("running_mean") or (".bn" in key or "downsample.1" in key) and key.endswith("bias"):
            new = rng.normal(0.0, 0.1, shape)
        elif (".bn" in key or "downsample.1" in key or ".norm" in key) and key.endswith("weight"):
            new = 1.0 + rng.normal(0.0, 0.1, shape)
        elif value.dim() > 1:
            fan_in = int(np.prod(shape[1:]))
            new = rng.uniform(-1.0, 1.0, shape) * np.sqrt(3.0 / fan_in)
        else:
            new = rng.normal(0.0, 0.1, shape)
        state[key] = torch.from_numpy(np.asarray(new, dtype=np.float32))
    policy.load_state_dict(state, strict=True)

    srng = np.random.default_rng(STATS_SEED)
    stats = {
        "qpos_mean": srng.normal(0, 1, cfg.state_dim).astype(np.float32),
        "qpos_std": srng.uniform(0.05, 2.0, cfg.state_dim).astype(np.float32),
        "action_mean": srng.normal(0, 5, cfg.action_dim).astype(np.float32),
        "action_std": srng.uniform(0.05, 3.0, cfg.action_dim).astype(np.float32),
        "example_qpos": np.zeros((2, cfg.state_dim), np.float32),
    }
    run = root / "checkpoints" / case
    run.mkdir(parents=True)
    save_checkpoint(policy, run / "policy_best.ckpt")
    save_stats(stats, run / STATS_FILE_NAME)
    cfg.save_json(run / POLICY_CONFIG_NAME)
    manifest = {
        "run_name": case,
        "cameras": CAMERAS,
        "dataset": {"path": "/data/so100_fixture",
                    "image_shapes": {name: [*IMAGE_HW, 3] for name in CAMERAS.values()}},
        "state_names": [f"joint_{i}" for i in range(cfg.state_dim)],
        "action_names": [f"joint_{i}" for i in range(cfg.action_dim)],
    }
    (root / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    return run


def reference_inputs(case: str) -> tuple[np.ndarray, np.ndarray]:
    """Fixed raw inputs: qpos (B, D) in robot units, images (B, N_cam, H, W, 3) uint8 RGB."""
    cfg = {**BASE, **CASES[case]}
    rng = np.random.default_rng(1000 + list(CASES).index(case))
    qpos = rng.normal(0, 1.5, (BATCH, cfg["state_dim"])).astype(np.float32)
    images = rng.integers(0, 256, (BATCH, len(CAMERAS), *IMAGE_HW, 3), dtype=np.uint8)
    return qpos, images


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _allow_torchvision_without_ops() -> None:
    """Declare torchvision::nms/qnms when its compiled ops cannot load (see the module doc)."""
    import importlib.util

    spec = importlib.util.find_spec("torchvision")
    so = next(Path(spec.origin).parent.glob("_C*.so"), None) if spec and spec.origin else None
    try:
        if so is not None:
            torch.ops.load_library(str(so))
            return
    except OSError:
        pass
    lib = torch.library.Library("torchvision", "DEF")  # noqa: F841 - kept alive by torch's registry
    for op in ("nms", "qnms"):
        lib.define(f"{op}(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
    _allow_torchvision_without_ops.lib = lib  # type: ignore[attr-defined]


def lerobot_actions(export_dir: Path, qpos: np.ndarray, images: np.ndarray
                    ) -> tuple[np.ndarray, object, tuple]:
    """LeRobot's own loading and inference on raw inputs -> actions (B, chunk, A) in robot units."""
    from lerobot.policies.act.modeling_act import ACTPolicy
    from lerobot.policies.factory import make_pre_post_processors

    policy = ACTPolicy.from_pretrained(str(export_dir), strict=True)
    pre, post = make_pre_post_processors(policy.config, pretrained_path=str(export_dir))
    keys = list(policy.config.image_features)
    batch = {"observation.state": torch.from_numpy(qpos)}
    for i, key in enumerate(keys):  # the export's camera order is CAMERAS' order
        batch[key] = torch.from_numpy(images[:, i]).permute(0, 3, 1, 2).float() / 255.0  # (B, 3, H, W)
    with torch.no_grad():
        actions = post(policy.predict_action_chunk(pre(batch)))
    return actions.numpy().astype(np.float32), policy, (pre, post)


def compare_resave(export_dir: Path, policy, processors, out: Path) -> dict:
    """Have LeRobot save what it loaded; every file must equal ours."""
    from safetensors.torch import load_file

    policy.save_pretrained(str(out))
    for p in processors:
        p.save_pretrained(str(out))
    result = {}
    for name in ("config.json", "policy_preprocessor.json", "policy_postprocessor.json"):
        result[name] = json.loads((out / name).read_text()) == json.loads((export_dir / name).read_text())
    for name in [p.name for p in export_dir.glob("*.safetensors")]:
        ours, theirs = load_file(str(export_dir / name)), load_file(str(out / name))
        result[name] = set(ours) == set(theirs) and all(torch.equal(ours[k], theirs[k]) for k in ours)
    return result


def lerobot_written_reference(policy, processors, out: Path) -> None:
    """What LeRobot writes for a FRESH policy and processors of the exported config and stats."""
    from lerobot.policies.act.modeling_act import ACTPolicy
    from lerobot.policies.factory import make_pre_post_processors

    fresh = ACTPolicy(policy.config)
    normalizer = next(step for step in processors[0].steps if hasattr(step, "stats") and step.stats)
    fresh_pre, fresh_post = make_pre_post_processors(policy.config, dataset_stats=normalizer.stats)
    with tempfile.TemporaryDirectory() as tmp:
        fresh.save_pretrained(tmp)
        fresh_pre.save_pretrained(tmp)
        fresh_post.save_pretrained(tmp)
        out.mkdir(parents=True, exist_ok=True)
        for name in ("config.json", "policy_preprocessor.json", "policy_postprocessor.json"):
            (out / name).write_text((Path(tmp) / name).read_text())
    shapes = {k: list(v.shape) for k, v in fresh.state_dict().items()}
    (out / "state_dict_shapes.json").write_text(json.dumps(shapes, indent=1) + "\n")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", default=str(FIXTURE_DIR), help="where the fixtures go")
    args = p.parse_args(argv)
    _allow_torchvision_without_ops()
    import lerobot

    from act.export_lerobot import export_lerobot
    from act.policy import ACTRunner

    version = getattr(lerobot, "__version__", None)
    if version is None:
        from importlib.metadata import version as dist_version

        version = dist_version("lerobot")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    record = {"lerobot_version": version, "torch_version": torch.__version__,
              "python": platform.python_version(),
              "how": "ACTPolicy.from_pretrained(strict=True) + make_pre_post_processors(pretrained_path); "
                     "preprocessor -> predict_action_chunk -> postprocessor", "cases": {}}
    for case in CASES:
        with tempfile.TemporaryDirectory() as tmp:
            run = make_reference_run(Path(tmp) / "out", case)
            export_dir = Path(tmp) / "lerobot_policy"
            export_lerobot(run, export_dir)
            qpos, images = reference_inputs(case)
            actions, policy, processors = lerobot_actions(export_dir, qpos, images)
            resaved = compare_resave(export_dir, policy, processors, Path(tmp) / "resaved")
            runner = ACTRunner.from_run_dir(run)
            names = list(CAMERAS.values())
            ours = np.stack([runner.predict_chunk(qpos[b], {n: images[b, i] for i, n in enumerate(names)})
                             for b in range(BATCH)])
            if case == "upstream_decoder":
                lerobot_written_reference(policy, processors, out / "lerobot_written")
            np.savez_compressed(out / f"{case}.npz", qpos=qpos, images=images, actions=actions)
            record["cases"][case] = {
                "model_safetensors_sha256": sha256(export_dir / "model.safetensors"),
                "actions_shape": list(actions.shape),
                "lerobot_resave_identical": resaved,
                "max_abs_diff_vs_act_runner": float(np.abs(actions - ours).max()),
                "max_abs_action": float(np.abs(actions).max()),
            }
            print(f"{case}: actions {actions.shape}, max |lerobot - ACTRunner| = "
                  f"{record['cases'][case]['max_abs_diff_vs_act_runner']:.3g}, resave identical: "
                  f"{all(resaved.values())}")
    (out / "lerobot_check.json").write_text(json.dumps(record, indent=2) + "\n")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
