"""Export to an Innate skill: the exported weights, loaded into the model Innate's runtime
builds, compute the same actions as our policy.

`InnateACTPolicy` below re-creates, from the public innate-os code, the model the robot runs
(ros2_ws/src/brain/manipulation/manipulation/ACT.py, a port of LeRobot's ACT; built by
act_config.py `create_act_config`, fed by manipulation_server.py `_run_inference_once`):
parameter names, LeRobot-style transformer wiring (every decoder layer runs, then the decoder
norm; camera tokens camera after camera), normalization `(x - mean) / (std + 1e-8)` with
buffers `normalize_inputs.buffer_observation_state.mean`..., and BGR frames in [0, 1]. It is
written here independently of our model code (own ResNet18, own attention layers), sized
down (hidden 64) so it runs on a CPU; the runtime's fixed sizes are checked separately.
"""

from __future__ import annotations

import functools
import importlib.util
import json
import math
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from act.act_policy import ACTPolicy
from act.checkpoint import save_checkpoint
from act.config import ACTConfig
from act.export_innate import (
    ExportError,
    export_innate,
    innate_dataset_stats,
    runtime_mismatches,
    to_innate_state_dict,
)
from act.stats import save_stats

REPO = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location("export_innate_cli", REPO / "scripts" / "export_innate.py")
export_cli = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(export_cli)

# ---------------------------------------------------------------------------------------
# Innate's runtime model, re-created from its public description.
# ---------------------------------------------------------------------------------------


class FrozenBN(nn.Module):  # torchvision.ops.misc.FrozenBatchNorm2d (eps 1e-5)
    def __init__(self, n: int):
        super().__init__()
        for name, init in (("weight", torch.ones), ("bias", torch.zeros), ("running_mean", torch.zeros)):
            self.register_buffer(name, init(n))
        self.register_buffer("running_var", torch.ones(n))

    def forward(self, x: Tensor) -> Tensor:
        scale = self.weight * (self.running_var + 1e-5).rsqrt()
        return x * scale.view(1, -1, 1, 1) + (self.bias - self.running_mean * scale).view(1, -1, 1, 1)


class Block(nn.Module):  # torchvision BasicBlock
    def __init__(self, cin: int, cout: int, stride: int):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = FrozenBN(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = FrozenBN(cout)
        self.downsample = (
            nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), FrozenBN(cout))
            if stride != 1 or cin != cout
            else None
        )

    def forward(self, x):
        idt = x if self.downsample is None else self.downsample(x)
        return F.relu(self.bn2(self.conv2(F.relu(self.bn1(self.conv1(x))))) + idt)


class ResNet18Layer4(nn.Module):  # IntermediateLayerGetter(resnet18, {"layer4": "feature_map"})
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 64, 7, 2, 3, bias=False)
        self.bn1 = FrozenBN(64)
        self.layer1 = nn.Sequential(Block(64, 64, 1), Block(64, 64, 1))
        self.layer2 = nn.Sequential(Block(64, 128, 2), Block(128, 128, 1))
        self.layer3 = nn.Sequential(Block(128, 256, 2), Block(256, 256, 1))
        self.layer4 = nn.Sequential(Block(256, 512, 2), Block(512, 512, 1))

    def forward(self, x):
        x = F.max_pool2d(F.relu(self.bn1(self.conv1(x))), 3, 2, 1)
        return {"feature_map": self.layer4(self.layer3(self.layer2(self.layer1(x))))}


class EncoderLayer(nn.Module):  # ACTEncoderLayer, post-norm
    def __init__(self, d: int, heads: int, ffn: int):
        super().__init__()
        self.self_attn = nn.MultiheadAttention(d, heads, dropout=0.1)
        self.linear1, self.linear2 = nn.Linear(d, ffn), nn.Linear(ffn, d)
        self.norm1, self.norm2 = nn.LayerNorm(d), nn.LayerNorm(d)

    def forward(self, x, pos=None):
        q = k = x if pos is None else x + pos
        x = self.norm1(x + self.self_attn(q, k, value=x)[0])
        return self.norm2(x + self.linear2(F.relu(self.linear1(x))))


class DecoderLayer(nn.Module):  # ACTDecoderLayer, post-norm
    def __init__(self, d: int, heads: int, ffn: int):
        super().__init__()
        self.self_attn = nn.MultiheadAttention(d, heads, dropout=0.1)
        self.multihead_attn = nn.MultiheadAttention(d, heads, dropout=0.1)
        self.linear1, self.linear2 = nn.Linear(d, ffn), nn.Linear(ffn, d)
        self.norm1, self.norm2, self.norm3 = nn.LayerNorm(d), nn.LayerNorm(d), nn.LayerNorm(d)

    def forward(self, x, memory, query_pos, memory_pos):
        q = k = x + query_pos
        x = self.norm1(x + self.self_attn(q, k, value=x)[0])
        x = self.norm2(x + self.multihead_attn(query=x + query_pos, key=memory + memory_pos, value=memory)[0])
        return self.norm3(x + self.linear2(F.relu(self.linear1(x))))


class Stack(nn.Module):  # ACTEncoder (norm = Identity when post-norm) / ACTDecoder (norm = LayerNorm)
    def __init__(self, layers: list[nn.Module], norm: nn.Module | None = None):
        super().__init__()
        self.layers = nn.ModuleList(layers)
        if norm is not None:
            self.norm = norm


def sine_2d(d_half: int, h: int, w: int) -> Tensor:  # ACTSinusoidalPositionEmbedding2d -> (d, h, w)
    y = torch.arange(1, h + 1, dtype=torch.float32)[:, None].expand(h, w)
    x = torch.arange(1, w + 1, dtype=torch.float32)[None, :].expand(h, w)
    y, x = y / (h + 1e-6) * 2 * math.pi, x / (w + 1e-6) * 2 * math.pi
    freq = 10000 ** (2 * (torch.arange(d_half) // 2) / d_half)
    px, py = x[..., None] / freq, y[..., None] / freq
    px = torch.stack((px[..., 0::2].sin(), px[..., 1::2].cos()), dim=-1).flatten(2)
    py = torch.stack((py[..., 0::2].sin(), py[..., 1::2].cos()), dim=-1).flatten(2)
    return torch.cat((py, px), dim=2).permute(2, 0, 1)


class InnateACT(nn.Module):  # `ACT` in innate-os ACT.py (the attribute names are the checkpoint's keys)
    def __init__(
        self, state_dim, action_dim, chunk, d=512, heads=8, ffn=3200, enc=4, dec=4, vae=4, latent=32
    ):
        super().__init__()
        self.latent = latent
        self.vae_encoder = Stack([EncoderLayer(d, heads, ffn) for _ in range(vae)])
        self.vae_encoder_cls_embed = nn.Embedding(1, d)
        self.vae_encoder_robot_state_input_proj = nn.Linear(state_dim, d)
        self.vae_encoder_action_input_proj = nn.Linear(action_dim, d)
        self.vae_encoder_latent_output_proj = nn.Linear(d, 2 * latent)
        self.register_buffer("vae_encoder_pos_enc", torch.zeros(1, 2 + chunk, d))
        self.backbone = ResNet18Layer4()
        self.encoder_img_feat_input_proj = nn.Conv2d(512, d, 1)
        self.encoder = Stack([EncoderLayer(d, heads, ffn) for _ in range(enc)])
        self.decoder = Stack([DecoderLayer(d, heads, ffn) for _ in range(dec)], nn.LayerNorm(d))
        self.encoder_robot_state_input_proj = nn.Linear(state_dim, d)
        self.encoder_latent_input_proj = nn.Linear(latent, d)
        self.encoder_1d_feature_pos_embed = nn.Embedding(2, d)
        self.decoder_pos_embed = nn.Embedding(chunk, d)
        self.action_head = nn.Linear(d, action_dim)

    def forward(self, state: Tensor, images: list[Tensor]) -> Tensor:  # eval path: latent = 0
        b = state.shape[0]
        tokens = [
            self.encoder_latent_input_proj(torch.zeros(b, self.latent)),
            self.encoder_robot_state_input_proj(state),
        ]
        x = torch.stack(tokens)  # (2, B, d)
        pos = self.encoder_1d_feature_pos_embed.weight[:, None].expand(2, b, -1)
        for img in images:  # camera after camera, (h w) tokens each
            f = self.encoder_img_feat_input_proj(self.backbone(img)["feature_map"])  # (B, d, h, w)
            p = sine_2d(f.shape[1] // 2, f.shape[2], f.shape[3])[None].expand(b, -1, -1, -1)
            x = torch.cat([x, f.flatten(2).permute(2, 0, 1)])
            pos = torch.cat([pos, p.flatten(2).permute(2, 0, 1)])
        for layer in self.encoder.layers:
            x = layer(x, pos)
        query = self.decoder_pos_embed.weight[:, None].expand(-1, b, -1)
        y = torch.zeros_like(query)
        for layer in self.decoder.layers:
            y = layer(y, x, query, pos)
        return self.action_head(self.decoder.norm(y).permute(1, 0, 2))  # (B, chunk, A)


def _buffers(keys_shapes: dict[str, tuple], stats) -> nn.Module:  # Normalize / Unnormalize buffers
    m = nn.Module()
    for key, shape in keys_shapes.items():
        pd = nn.ParameterDict(
            {s: nn.Parameter(torch.full(shape, float("inf")), requires_grad=False) for s in ("mean", "std")}
        )
        if stats and key in stats:
            for s in ("mean", "std"):
                pd[s].data = stats[key][s].clone().float().view(shape)
        m.add_module("buffer_" + key.replace(".", "_"), pd)
    return m


class InnateACTPolicy(nn.Module):  # `ACTPolicy` in innate-os ACT.py, eval path of select_action
    def __init__(self, state_dim, action_dim, chunk, dataset_stats=None, **sizes):
        super().__init__()
        inputs = {f"observation.image_camera_{i}": (3, 1, 1) for i in (1, 2)} | {
            "observation.state": (state_dim,)
        }
        self.normalize_inputs = _buffers(inputs, dataset_stats)
        self.normalize_targets = _buffers({"action": (action_dim,)}, dataset_stats)
        self.unnormalize_outputs = _buffers({"action": (action_dim,)}, dataset_stats)
        self.model = InnateACT(state_dim, action_dim, chunk, **sizes)

    @torch.no_grad()
    def chunk(self, batch: dict[str, Tensor]) -> Tensor:
        def norm(key, x):
            buf = getattr(self.normalize_inputs, "buffer_" + key.replace(".", "_"))
            return (x - buf["mean"]) / (buf["std"] + 1e-8)

        state = norm("observation.state", batch["observation.state"])
        keys = sorted(k for k in batch if k.startswith("observation.image"))
        out = self.model(state, [norm(k, batch[k]) for k in keys])
        return (
            out * self.unnormalize_outputs.buffer_action["std"]
            + self.unnormalize_outputs.buffer_action["mean"]
        )


# ---------------------------------------------------------------------------------------
# Fixtures: a tiny trained-looking policy and its stats.
# ---------------------------------------------------------------------------------------

TINY = dict(hidden_dim=64, dim_feedforward=128, nheads=8, enc_layers=2, chunk_size=5)
SIZES = dict(d=64, heads=8, ffn=128, enc=2, vae=2)


@functools.cache
def make_policy(use_all: bool, dec_layers: int, seed: int = 0) -> tuple[ACTPolicy, ACTConfig, dict]:
    """Cached: building ResNet18 twice per test is most of this file's runtime. Read-only."""
    torch.manual_seed(seed)
    cfg = ACTConfig(
        state_dim=6,
        action_dim=10,
        camera_names=["camera_1", "camera_2"],
        dec_layers=dec_layers,
        use_all_decoder_layers=use_all,
        **TINY,
    )
    policy = ACTPolicy(cfg).eval()
    with torch.no_grad():  # every weight away from its init, so nothing passes by being 0 or 1
        for name, t in policy.state_dict().items():
            if name.endswith("running_var"):
                t.copy_(torch.rand_like(t) + 0.5)
            elif t.is_floating_point() and not name.endswith("pos_table"):
                t.add_(torch.randn_like(t) * 0.05)
    rng = np.random.default_rng(seed)
    stats = {
        "qpos_mean": rng.normal(size=6).astype(np.float32),
        "qpos_std": (rng.random(6) + 0.1).astype(np.float32),
        "action_mean": rng.normal(size=10).astype(np.float32),
        "action_std": (rng.random(10) + 0.1).astype(np.float32),
        "example_qpos": rng.normal(size=(40, 6)).astype(np.float32),
    }
    return policy, cfg, stats


def inputs(seed: int = 1, b: int = 2, h: int = 64, w: int = 64):
    g = torch.Generator().manual_seed(seed)
    qpos = torch.randn(b, 6, generator=g)
    images = torch.randint(0, 256, (b, 2, 3, h, w), generator=g, dtype=torch.uint8)  # RGB
    return qpos, images


def our_actions(policy: ACTPolicy, stats: dict, qpos: Tensor, images: Tensor) -> Tensor:
    with torch.no_grad():
        q = (qpos - torch.from_numpy(stats["qpos_mean"])) / torch.from_numpy(stats["qpos_std"])
        a = policy(q, images)  # (B, chunk, A) normalized
    return a * torch.from_numpy(stats["action_std"]) + torch.from_numpy(stats["action_mean"])


def innate_batch(qpos: Tensor, images: Tensor, bgr: bool = True) -> dict[str, Tensor]:
    """What `_run_inference_once` hands the policy: BGR frames scaled to [0, 1], raw joints."""
    frames = images.flip(2) if bgr else images  # (B, N, 3, H, W), channel axis 2
    batch = {"observation.state": qpos}
    for i in range(images.shape[1]):
        batch[f"observation.image_camera_{i + 1}"] = frames[:, i].float() / 255.0
    return batch


# ---------------------------------------------------------------------------------------
# Tests.
# ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(("use_all", "dec_layers"), [(False, 2), (True, 2)])
def test_converted_weights_give_our_actions_in_innate_runtime_model(use_all, dec_layers):
    policy, cfg, stats = make_policy(use_all, dec_layers)
    weights, notes = to_innate_state_dict(policy.state_dict(), cfg, stats)
    assert notes["decoder_layers_used"] == (dec_layers if use_all else 1)
    assert notes["decoder_layers_neutral"] == 4 - notes["decoder_layers_used"]
    assert "model.is_pad_head.weight" in notes["dropped_keys"]

    innate = InnateACTPolicy(6, 10, cfg.chunk_size, **SIZES).eval()
    innate.load_state_dict(weights, strict=True)  # every key the runtime model has, nothing else

    qpos, images = inputs()
    ours = our_actions(policy, stats, qpos, images)
    theirs = innate.chunk(innate_batch(qpos, images))
    assert ours.shape == theirs.shape == (2, cfg.chunk_size, 10)
    torch.testing.assert_close(theirs, ours, atol=1e-4, rtol=1e-4)
    assert (theirs - ours).abs().max() < 1e-4 < ours.abs().mean()

    # The test can tell: RGB frames (no colour fold) or real layers instead of neutral ones differ.
    assert (innate.chunk(innate_batch(qpos, images, bgr=False)) - ours).abs().max() > 1e-2
    if not use_all:
        raw = dict(weights)
        for k, v in policy.state_dict().items():
            if k.startswith("model.transformer.decoder.layers.1."):
                raw["model.decoder.layers.1." + k.split("layers.1.", 1)[1]] = v
        innate.load_state_dict(raw, strict=True)
        assert (innate.chunk(innate_batch(qpos, images)) - ours).abs().max() > 1e-2


def test_runtime_path_with_dataset_stats_and_missing_buffers():
    """The runtime builds ACTPolicy(config, dataset_stats) then load_state_dict(strict=False):
    the stats file alone must define the normalization even if the buffers were absent."""
    policy, cfg, stats = make_policy(False, 2)
    weights, _ = to_innate_state_dict(policy.state_dict(), cfg, stats)
    model_only = {k: v for k, v in weights.items() if k.startswith("model.")}
    innate = InnateACTPolicy(6, 10, cfg.chunk_size, dataset_stats=innate_dataset_stats(stats), **SIZES).eval()
    result = innate.load_state_dict(model_only, strict=False, assign=True)
    assert not result.unexpected_keys and all(
        k.startswith(("normalize", "unnormalize")) for k in result.missing_keys
    )
    qpos, images = inputs(seed=7)
    torch.testing.assert_close(
        innate.chunk(innate_batch(qpos, images)),
        our_actions(policy, stats, qpos, images),
        atol=1e-4,
        rtol=1e-4,
    )


def write_skill(root: Path, lengths: list[int], failed: set[int]) -> list[np.ndarray]:
    """A recorder-layout skill directory; returns each episode's qpos."""
    rng = np.random.default_rng(11)
    (root / "data").mkdir(parents=True)
    qposes, entries = [], []
    for i, t in enumerate(lengths):
        qpos = rng.normal(size=(t, 6))
        with h5py.File(root / "data" / f"episode_{i}.h5", "w") as f:
            f["observations/qpos"] = qpos
            f["action"] = rng.normal(size=(t, 10))
            f["observations/images/camera_1"] = np.zeros((t, 8, 8, 3), np.uint8)
        entries.append(
            {"episode_id": i, "file_name": f"episode_{i}.h5", "outcome": "failure" if i in failed else "ok"}
        )
        qposes.append(qpos)
    meta = {
        "data_frequency": 30,
        "dataset_type": "h5",
        "number_of_episodes": len(lengths),
        "episodes": entries,
    }
    (root / "data" / "dataset_metadata.json").write_text(json.dumps(meta))
    return qposes


def make_run(tmp_path: Path, seed: int = 0) -> tuple[Path, ACTPolicy, ACTConfig, dict]:
    policy, cfg, stats = make_policy(False, 2, seed=seed)
    run = tmp_path / "out" / "checkpoints" / "run_a"
    run.mkdir(parents=True)
    save_checkpoint(policy, run / "policy_best.ckpt")
    save_stats(stats, run / "dataset_stats.pkl")
    cfg.save_json(run / "policy_config.json")
    return run, policy, cfg, stats


def test_export_writes_a_skill_the_runtime_can_load(tmp_path):
    run, policy, cfg, stats = make_run(tmp_path)
    skill = tmp_path / "skills" / "pick_sock"
    qposes = write_skill(skill, [61, 95, 40], failed={1})
    original = {
        "name": "pick_sock",
        "type": "learned",
        "guidelines": "Pick up the sock",
        "custom": {"keep": [1, 2]},
        "execution": {"progress_threshold": 0.9, "end_pose": [0, 0, 0, 0, 0, 1.5], "checkpoint": "old/x.pth"},
    }
    (skill / "metadata.json").write_text(json.dumps(original))

    written = export_innate(run, skill, step=1234, run_id="r1", check_runtime=False)

    meta = json.loads((skill / "metadata.json").read_text())
    for key in ("name", "type", "guidelines", "custom"):
        assert meta[key] == original[key]  # untouched
    ex = meta["execution"]
    assert ex["progress_threshold"] == 0.9 and ex["end_pose"] == [0, 0, 0, 0, 0, 1.5]  # kept
    assert ex["model_type"] == "act_policy"
    assert ex["checkpoint"] == "r1/act_policy_step_1234.pth" and ex["stats_file"] == "r1/dataset_stats.pt"
    assert ex["action_dim"] == 10
    assert ex["duration"] == math.ceil(61 / 30)  # longest successful episode (95 frames one failed)
    np.testing.assert_allclose(ex["start_pose"], (qposes[0][0] + qposes[2][0]) / 2, rtol=1e-12)
    assert json.loads(Path(written["metadata_backup"]).read_text()) == original

    for rel in (ex["checkpoint"], ex["stats_file"]):
        assert (skill / rel).is_file()
    weights = torch.load(skill / ex["checkpoint"], map_location="cpu", weights_only=True)
    ds = torch.load(skill / ex["stats_file"], map_location="cpu", weights_only=True)
    assert set(ds) == {
        "observation.state",
        "action",
        "observation.image_camera_1",
        "observation.image_camera_2",
    }
    np.testing.assert_array_equal(ds["observation.state"]["std"].numpy(), stats["qpos_std"])
    np.testing.assert_array_equal(ds["action"]["mean"].numpy(), stats["action_mean"])
    np.testing.assert_allclose(
        ds["observation.image_camera_1"]["mean"].flatten().numpy(), [0.406, 0.456, 0.485]
    )
    assert weights["model.decoder_pos_embed.weight"].shape[0] == cfg.chunk_size  # infer_chunk_size
    assert weights["model.action_head.weight"].shape[0] == ex["action_dim"]  # validate_action_dim

    # Loaded the way the runtime loads it: stats from the checkpoint's folder, strict=False, assign.
    stats_pt = torch.load((skill / ex["checkpoint"]).parent / "dataset_stats.pt", weights_only=True)
    innate = InnateACTPolicy(6, 10, cfg.chunk_size, dataset_stats=stats_pt, **SIZES).eval()
    result = innate.load_state_dict(weights, strict=False, assign=True)
    assert not result.missing_keys and not result.unexpected_keys
    qpos, images = inputs(seed=5)
    torch.testing.assert_close(
        innate.chunk(innate_batch(qpos, images)),
        our_actions(policy, stats, qpos, images),
        atol=1e-4,
        rtol=1e-4,
    )

    assert written["warnings"] == []  # no manifest: training frame size unknown
    info = json.loads(Path(written["export_info"]).read_text())
    assert info["step"] == 1234 and info["conversion"]["decoder_layers_neutral"] == 3

    # A second export keeps the first backup and adds another; the first export's files stay.
    manifest = {"conversion": {"extra": {"image_size": [12, 16], "source_image_size": [480, 640]}}}
    (run.parent.parent / "manifest.json").write_text(json.dumps(manifest))
    again = export_innate(run, skill, step=2000, run_id="r2", check_runtime=False, duration=7.5)
    assert "trained on 12x16 frames" in again["warnings"][0]
    assert again["metadata_backup"] != written["metadata_backup"]
    assert json.loads((skill / "metadata.json").read_text())["execution"]["duration"] == 7.5
    assert (skill / "r1" / "act_policy_step_1234.pth").is_file()


def test_export_refuses_what_the_runtime_cannot_load(tmp_path):
    run, *_ = make_run(tmp_path)
    with pytest.raises(ExportError, match=r"hidden_dim is 64, the runtime builds 512.*enc_layers is 2"):
        export_innate(run, tmp_path / "skill", step=1)
    assert not (tmp_path / "skill").exists()  # nothing written
    full = ACTConfig(state_dim=6, action_dim=10, camera_names=["a", "b"], chunk_size=30)
    assert runtime_mismatches(full) == []
    assert any("action_dim is 6" in p for p in runtime_mismatches(ACTConfig(6, 6, ["a", "b"])))
    assert any("num_cameras is 1" in p for p in runtime_mismatches(ACTConfig(6, 10, ["a"])))
    allwired = ACTConfig(6, 10, ["a", "b"], use_all_decoder_layers=True)  # 7 layers in use
    assert any("7 decoder layers" in p for p in runtime_mismatches(allwired))
    with pytest.raises(ExportError, match="missing"):
        export_innate(tmp_path / "nope", tmp_path / "skill")
    with pytest.raises(ExportError, match=r"execution.duration must be > 0 seconds, got -1.0"):
        export_innate(run, tmp_path / "skill", step=1, duration=-1, check_runtime=False)
    assert not (tmp_path / "skill").exists()  # checked before anything was written


def test_cli_script(tmp_path, capsys):
    run, *_ = make_run(tmp_path)
    skill = tmp_path / "skill"
    skill.mkdir()
    args = ["--run_dir", str(run), "--skill_dir", str(skill)]
    assert export_cli.main([*args, "--step", "7", "--skip_runtime_check"]) == 0
    assert json.loads(capsys.readouterr().out)["weights"].endswith("run_a/act_policy_step_7.pth")
    meta = json.loads((skill / "metadata.json").read_text())  # created: the skill had none
    assert meta["type"] == "learned" and meta["execution"]["duration"] == math.ceil(40 / 30)  # example_qpos
    assert export_cli.main(args) == 2  # the tiny model is not what the robot runs
    assert "hidden_dim is 64" in capsys.readouterr().err


def test_skill_to_export_round_trip_on_raw_recorder_frames(tmp_path):
    """Skill dir -> our importer -> a run dir -> export -> the runtime re-creation fed the raw
    BGR recorder frames gives what `ACTRunner` gives on the converted RGB frames."""
    from act.policy import ACTRunner
    from act.stats import compute_stats
    from lerobot_bridge.innate import convert_innate

    skill = tmp_path / "skill"
    rng = np.random.default_rng(2)
    (skill / "data").mkdir(parents=True)
    for i, t in enumerate((14, 11)):
        with h5py.File(skill / "data" / f"episode_{i}.h5", "w") as f:
            f["observations/qpos"] = rng.normal(size=(t, 6))
            commands = rng.normal(size=(t, 8))
            ramp, term = np.arange(t) / (t - 1), (np.arange(t) >= t - 10).astype(float)
            f["action"] = np.concatenate([commands, ramp[:, None], term[:, None]], axis=1)
            for cam in ("camera_1", "camera_2"):
                f[f"observations/images/{cam}"] = rng.integers(0, 256, (t, 64, 64, 3), dtype=np.uint8)
    conv = convert_innate(skill, tmp_path / "hdf5", idle_threshold=0)
    qposes, actions = [], []
    for path in conv.hdf5_paths:
        with h5py.File(path) as f:
            qposes.append(f["observations/qpos"][:])
            actions.append(f["action"][:])
    policy, cfg, _ = make_policy(False, 2)
    stats = compute_stats(qposes, actions)
    run = tmp_path / "run"
    run.mkdir()
    save_checkpoint(policy, run / "policy_best.ckpt")
    save_stats(stats, run / "dataset_stats.pkl")
    cfg.save_json(run / "policy_config.json")
    ex = export_innate(run, skill, step=1, check_runtime=False)

    runner = ACTRunner.from_run_dir(run)
    innate = InnateACTPolicy(
        6, 10, cfg.chunk_size, dataset_stats=torch.load(ex["stats"], weights_only=True), **SIZES
    )
    innate.load_state_dict(torch.load(ex["weights"], weights_only=True), strict=False, assign=True)
    innate.eval()
    with h5py.File(skill / "data" / "episode_1.h5") as f:
        for t in (0, 7):
            qpos = f["observations/qpos"][t].astype(np.float32)
            bgr = [f[f"observations/images/camera_{c}"][t] for c in (1, 2)]
            runner.reset()
            ours = runner.act(
                qpos, {"camera_1": bgr[0][..., ::-1].copy(), "camera_2": bgr[1][..., ::-1].copy()}
            )
            batch = {"observation.state": torch.from_numpy(qpos)[None]}
            for c, frame in enumerate(bgr, start=1):  # what _run_inference_once builds: BGR, CHW, [0, 1]
                batch[f"observation.image_camera_{c}"] = (
                    torch.from_numpy(frame).permute(2, 0, 1)[None].float() / 255
                )
            np.testing.assert_allclose(innate.chunk(batch)[0, 0].numpy(), ours, atol=1e-4, rtol=1e-4)


@pytest.mark.slow
def test_full_size_export_passes_the_runtime_check_and_matches(tmp_path):
    """The real thing: upstream-default sizes, 6 joints, 10 actions, 2 cameras, chunk 30, exported
    with the runtime check on, loaded into the runtime's own 512/3200/4+4 layer model."""
    torch.manual_seed(0)
    cfg = ACTConfig(state_dim=6, action_dim=10, camera_names=["camera_1", "camera_2"], chunk_size=30)
    policy = ACTPolicy(cfg).eval()
    rng = np.random.default_rng(0)
    stats = {
        "qpos_mean": rng.normal(size=6).astype(np.float32),
        "qpos_std": (rng.random(6) + 0.1).astype(np.float32),
        "action_mean": rng.normal(size=10).astype(np.float32),
        "action_std": (rng.random(10) + 0.1).astype(np.float32),
        "example_qpos": rng.normal(size=(90, 6)).astype(np.float32),
    }
    run = tmp_path / "run"
    run.mkdir()
    save_checkpoint(policy, run / "policy_best.ckpt")
    save_stats(stats, run / "dataset_stats.pkl")
    cfg.save_json(run / "policy_config.json")
    ex = export_innate(run, tmp_path / "skill", step=100)  # runtime check on
    meta = json.loads((tmp_path / "skill" / "metadata.json").read_text())["execution"]
    assert meta["duration"] == 3.0 and meta["action_dim"] == 10 and len(meta["start_pose"]) == 6

    innate = InnateACTPolicy(6, 10, 30, dataset_stats=torch.load(ex["stats"], weights_only=True)).eval()
    result = innate.load_state_dict(torch.load(ex["weights"], weights_only=True), strict=False)
    assert not result.missing_keys and not result.unexpected_keys
    qpos, images = inputs(seed=3, b=1, h=96, w=128)
    torch.testing.assert_close(
        innate.chunk(innate_batch(qpos, images)),
        our_actions(policy, stats, qpos, images),
        atol=1e-4,
        rtol=1e-4,
    )
