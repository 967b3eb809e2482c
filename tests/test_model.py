"""The ACT model: checkpoint contract (keys, shapes, parameter count), backbone weights, upstream
semantics (loss, decoder layer 0, cameras along width, sinusoid tables) and gradient flow."""

from __future__ import annotations

import math
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from act.act_policy import ACTPolicy, build_policy
from act.backbone import FrozenBatchNorm2d, find_backbone_weights, load_torchvision_resnet18
from act.config import ACTConfig
from act.detr_vae import get_sinusoid_encoding_table
from act.position_encoding import PositionEmbeddingSine

REFERENCE = Path("/work/shared/reference")
if not REFERENCE.is_dir():  # the repo copy, when the shared folder is not mounted
    REFERENCE = Path(__file__).parent / "data" / "reference"


def tiny_config(**overrides) -> ACTConfig:
    base = dict(state_dim=3, action_dim=2, camera_names=["top"], chunk_size=4, hidden_dim=64,
                dim_feedforward=128, nheads=4, enc_layers=1, dec_layers=2, latent_dim=8)
    base.update(overrides)
    return ACTConfig(**base)


def read_reference(name: str) -> list[tuple[str, str, str]]:
    path = REFERENCE / name
    if not path.is_file():
        pytest.skip(f"reference key list {path} not available")
    rows = []
    for line in path.read_text().splitlines():
        if line and not line.startswith("#"):
            key, shape, dtype = line.split("\t")
            rows.append((key, shape, dtype))
    return rows


def state_rows(policy: ACTPolicy) -> list[tuple[str, str, str]]:
    return [(k, str(tuple(v.shape)), str(v.dtype)) for k, v in policy.state_dict().items()]


# --------------------------------------------------------------------------- checkpoint contract

@pytest.mark.parametrize("tsv, overrides", [
    ("act_state_dict_d14_c100.tsv", {}),
    ("act_state_dict_d6_c30.tsv", {"state_dim": 6, "action_dim": 6, "chunk_size": 30}),
])
def test_state_dict_equals_reference_keys_shapes_and_order(tsv, overrides):
    policy = ACTPolicy(ACTConfig(**overrides))
    assert state_rows(policy) == read_reference(tsv)


def test_parameter_count_matches_upstream():
    policy = ACTPolicy(ACTConfig())  # dim 14, chunk 100, one camera
    assert sum(p.numel() for p in policy.parameters()) == 83_923_087


def test_camera_count_and_decoder_mode_do_not_change_keys():
    one = state_rows(ACTPolicy(tiny_config()))
    assert state_rows(ACTPolicy(tiny_config(camera_names=["a", "b", "c"]))) == one
    assert state_rows(ACTPolicy(tiny_config(use_all_decoder_layers=True))) == one


# --------------------------------------------------------------------------- backbone weights

def torchvision_resnet18_state_dict(seed: int = 0) -> dict[str, torch.Tensor]:
    """What torchvision's resnet18().state_dict() holds, built from the architecture by hand."""
    g = torch.Generator().manual_seed(seed)
    sd: dict[str, torch.Tensor] = {}

    def bn(prefix: str, c: int) -> None:
        sd[f"{prefix}.weight"] = torch.rand(c, generator=g) + 0.5
        sd[f"{prefix}.bias"] = torch.randn(c, generator=g)
        sd[f"{prefix}.running_mean"] = torch.randn(c, generator=g)
        sd[f"{prefix}.running_var"] = torch.rand(c, generator=g) + 0.5
        sd[f"{prefix}.num_batches_tracked"] = torch.tensor(0)

    sd["conv1.weight"] = torch.randn(64, 3, 7, 7, generator=g) * 0.05
    bn("bn1", 64)
    in_c = 64
    for i, c in enumerate([64, 128, 256, 512], start=1):
        for b in range(2):
            p = f"layer{i}.{b}"
            sd[f"{p}.conv1.weight"] = torch.randn(c, in_c if b == 0 else c, 3, 3, generator=g) * 0.05
            bn(f"{p}.bn1", c)
            sd[f"{p}.conv2.weight"] = torch.randn(c, c, 3, 3, generator=g) * 0.05
            bn(f"{p}.bn2", c)
            if b == 0 and i > 1:
                sd[f"{p}.downsample.0.weight"] = torch.randn(c, in_c, 1, 1, generator=g) * 0.05
                bn(f"{p}.downsample.1", c)
        in_c = c
    sd["fc.weight"] = torch.randn(1000, 512, generator=g)
    sd["fc.bias"] = torch.randn(1000, generator=g)
    return sd


@pytest.fixture
def resnet_file(tmp_path) -> Path:
    path = tmp_path / "resnet18-f37072fd.pth"
    torch.save(torchvision_resnet18_state_dict(), path)
    return path


def test_torchvision_state_dict_loads_strictly(resnet_file):
    policy = ACTPolicy(tiny_config())
    trunk = policy.model.backbones[0][0].body
    load_torchvision_resnet18(trunk, resnet_file)  # strict=True inside: raises on missing/unexpected
    expected = torchvision_resnet18_state_dict()
    loaded = trunk.state_dict()
    assert set(loaded) == {k for k in expected if not k.startswith("fc.") and "num_batches" not in k}
    for key, value in loaded.items():
        assert torch.equal(value, expected[key]), key
    # and it lands under upstream's key names in the checkpoint
    sd = policy.state_dict()
    assert torch.equal(sd["model.backbones.0.0.body.layer3.0.downsample.1.running_var"],
                       expected["layer3.0.downsample.1.running_var"])


def test_backbone_weight_search_order(resnet_file, tmp_path, monkeypatch):
    monkeypatch.delenv("ACT_BACKBONE_WEIGHTS", raising=False)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "empty_torch_home"))
    with pytest.warns(UserWarning, match="RANDOM init"):
        assert find_backbone_weights(None) is None
    _, pretrained = build_policy(tiny_config(), "none")
    assert pretrained is False
    policy, pretrained = build_policy(tiny_config(), str(resnet_file))
    assert pretrained is True
    assert torch.equal(policy.model.backbones[0][0].body.conv1.weight,
                       torchvision_resnet18_state_dict()["conv1.weight"])
    with pytest.raises(FileNotFoundError):
        find_backbone_weights(str(tmp_path / "missing.pth"))

    cache = tmp_path / "th" / "hub" / "checkpoints"
    cache.mkdir(parents=True)
    (cache / "resnet18-f37072fd.pth").write_bytes(resnet_file.read_bytes())
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "th"))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert find_backbone_weights(None) == cache / "resnet18-f37072fd.pth"
    monkeypatch.setenv("ACT_BACKBONE_WEIGHTS", str(resnet_file))  # the image's path wins over the cache
    assert find_backbone_weights(None) == resnet_file


def test_frozen_batchnorm_equals_eval_batchnorm():
    torch.manual_seed(0)
    bn = FrozenBatchNorm2d(5)
    bn.weight.uniform_(0.5, 2)
    bn.bias.normal_()
    bn.running_mean.normal_()
    bn.running_var.uniform_(0.5, 2)
    x = torch.randn(2, 5, 3, 4)
    expected = F.batch_norm(x, bn.running_mean, bn.running_var, bn.weight, bn.bias, training=False, eps=1e-5)
    torch.testing.assert_close(bn(x), expected)
    assert not list(bn.parameters())  # all buffers: never trained


# --------------------------------------------------------------------------- position tables

def test_sine_position_embedding_values():
    pos = PositionEmbeddingSine(num_pos_feats=4, normalize=True)(torch.zeros(1, 7, 2, 3))
    assert pos.shape == (1, 8, 2, 3)
    y, x = 1, 2  # row 1 of 2, column 2 of 3
    y_embed = (y + 1) / (2 + 1e-6) * 2 * math.pi
    x_embed = (x + 1) / (3 + 1e-6) * 2 * math.pi
    # features: [y sin f0, y cos f0, y sin f1, y cos f1, x ...], f_i = 10000 ** (2 * i / 4)
    expected = [math.sin(y_embed), math.cos(y_embed), math.sin(y_embed / 100), math.cos(y_embed / 100),
                math.sin(x_embed), math.cos(x_embed), math.sin(x_embed / 100), math.cos(x_embed / 100)]
    torch.testing.assert_close(pos[0, :, y, x], torch.tensor(expected), rtol=1e-5, atol=1e-6)


def test_cvae_sinusoid_table_matches_upstream_formula():
    n, d = 6, 8
    table = np.array([[p / np.power(10000, 2 * (j // 2) / d) for j in range(d)] for p in range(n)])
    table[:, 0::2] = np.sin(table[:, 0::2])
    table[:, 1::2] = np.cos(table[:, 1::2])
    assert torch.equal(get_sinusoid_encoding_table(n, d), torch.FloatTensor(table).unsqueeze(0))


# --------------------------------------------------------------------------- forward semantics

def test_cameras_concatenated_along_width_like_upstream_loop():
    torch.manual_seed(0)
    policy = ACTPolicy(tiny_config(camera_names=["a", "b"])).eval()
    images = torch.rand(2, 2, 3, 64, 96)
    src, pos = policy.model.image_features(images)
    per_cam = [policy.model.backbones[0](images[:, i]) for i in range(2)]  # upstream's loop
    expected_src = torch.cat([policy.model.input_proj(f) for f, _ in per_cam], dim=3)
    expected_pos = torch.cat([p for _, p in per_cam], dim=3)
    assert src.shape == (2, 64, 2, 6)
    torch.testing.assert_close(src, expected_src)
    assert torch.equal(pos, expected_pos)


def test_uint8_and_float_images_are_the_same_input():
    torch.manual_seed(0)
    policy = ACTPolicy(tiny_config()).eval()
    qpos = torch.randn(2, 3)
    images = torch.randint(0, 256, (2, 1, 3, 64, 64), dtype=torch.uint8)
    with torch.no_grad():
        torch.testing.assert_close(policy(qpos, images), policy(qpos, images.float() / 255))


def test_loss_masking_by_hand():
    policy = ACTPolicy(tiny_config(chunk_size=3, kl_weight=10.0)).eval()  # eval: no dropout
    with torch.no_grad():
        # a_hat = action_head.bias = [0, 1] everywhere; mu = 1, logvar = 0 in all 8 latent dims.
        policy.model.action_head.weight.zero_()
        policy.model.action_head.bias.copy_(torch.tensor([0.0, 1.0]))
        policy.model.latent_proj.weight.zero_()
        policy.model.latent_proj.bias.copy_(torch.cat([torch.ones(8), torch.zeros(8)]))
    actions = torch.tensor([[[2.0, 3.0], [2.0, 3.0], [2.0, 3.0]],
                            [[2.0, 3.0], [2.0, 3.0], [100.0, -100.0]],  # padded step: must not count
                            ])
    actions = torch.cat([actions, torch.full((2, 1, 2), 50.0)], dim=1)  # beyond the chunk: sliced off
    is_pad = torch.tensor([[False, False, False, True], [False, False, True, True]])
    out = policy(torch.zeros(2, 3), torch.zeros(2, 1, 3, 64, 64), actions, is_pad)
    # 10 unpadded elements with |error| 2, 2 padded ones count as 0 in a mean over B*chunk*A = 12.
    assert out["l1"].item() == pytest.approx(20 / 12)
    # KL per dim = -0.5 * (1 + 0 - 1 - e^0) = 0.5; summed over 8 dims = 4; mean over batch = 4.
    assert out["kl"].item() == pytest.approx(4.0)
    assert out["loss"].item() == pytest.approx(20 / 12 + 10 * 4.0)


def reference_decoder_stack(decoder, tgt, memory, pos, query_pos):
    """Upstream's TransformerDecoder(return_intermediate=True), written out: (N, B, Q, C)."""
    out, intermediate = tgt, []
    for layer in decoder.layers:
        out = layer(out, memory, pos=pos, query_pos=query_pos)
        intermediate.append(decoder.norm(out))
    intermediate[-1] = decoder.norm(out)
    return torch.stack(intermediate)


@pytest.mark.parametrize("use_all", [False, True])
def test_decoder_output_equals_upstream_computation(use_all, monkeypatch):
    torch.manual_seed(0)
    policy = ACTPolicy(tiny_config(dec_layers=3, use_all_decoder_layers=use_all)).eval()
    qpos, images = torch.randn(2, 3), torch.rand(2, 1, 3, 64, 64)
    with torch.no_grad():
        fast = policy(qpos, images)
        decoder = policy.model.transformer.decoder
        calls = []
        original = type(decoder.layers[0]).forward

        def counting_forward(self, *args, **kwargs):
            calls.append(self)
            return original(self, *args, **kwargs)

        monkeypatch.setattr(type(decoder.layers[0]), "forward", counting_forward)
        policy(qpos, images)
        assert len(calls) == (3 if use_all else 1)  # layers 1..N-1 are not computed by default
        monkeypatch.undo()

        def upstream_forward(tgt, memory, pos, query_pos, memory_key_padding_mask=None):
            stack = reference_decoder_stack(decoder, tgt, memory, pos, query_pos)
            return stack[-1] if use_all else stack[0]

        monkeypatch.setattr(decoder, "forward", upstream_forward)
        reference = policy(qpos, images)
    torch.testing.assert_close(fast, reference, rtol=0, atol=1e-6)
    if not use_all:
        decoder.skip_unused_layers = False  # the benchmark's baseline: computes all, keeps layer 0
        with torch.no_grad():
            torch.testing.assert_close(policy(qpos, images), fast, rtol=0, atol=1e-6)


@pytest.mark.parametrize("use_all", [False, True])
def test_gradients_reach_backbone_and_only_used_decoder_layers(use_all):
    torch.manual_seed(0)
    policy = ACTPolicy(tiny_config(dec_layers=2, use_all_decoder_layers=use_all)).train()
    actions, is_pad = torch.randn(2, 4, 2), torch.zeros(2, 4, dtype=torch.bool)
    policy(torch.randn(2, 3), torch.rand(2, 1, 3, 64, 64), actions, is_pad)["loss"].backward()
    grads = {n: p.grad for n, p in policy.named_parameters()}
    for name in ("model.backbones.0.0.body.conv1.weight", "model.backbones.0.0.body.layer4.1.conv2.weight",
                 "model.transformer.decoder.layers.0.linear2.weight", "model.encoder.layers.0.linear1.weight",
                 "model.cls_embed.weight", "model.input_proj.weight"):
        assert grads[name] is not None and grads[name].abs().sum() > 0, name
    layer1 = [n for n in grads if n.startswith("model.transformer.decoder.layers.1.")]
    if use_all:
        assert all(grads[n] is not None and grads[n].abs().sum() > 0 for n in layer1)
    else:
        assert all(grads[n] is None for n in layer1)
    assert grads["model.is_pad_head.weight"] is None
    # exactly those parameters are what freeze_unused_parameters freezes
    no_grad = sorted(n for n, g in grads.items() if g is None)
    assert policy.freeze_unused_parameters() == no_grad


def test_optimizer_groups_split_on_backbone_and_skip_frozen():
    policy = ACTPolicy(tiny_config())
    policy.freeze_unused_parameters()
    groups = policy.optimizer_param_groups(lr=1e-5, lr_backbone=2e-6)
    names = {id(p): n for n, p in policy.named_parameters()}
    main, backbone = groups
    assert main["lr"] == 1e-5 and backbone["lr"] == 2e-6 and main["weight_decay"] == 1e-4
    assert all("backbone" not in names[id(p)] for p in main["params"])
    assert all("backbone" in names[id(p)] for p in backbone["params"])
    trainable = sum(p.requires_grad for p in policy.parameters())
    assert len(main["params"]) + len(backbone["params"]) == trainable
    assert all(p.requires_grad for g in groups for p in g["params"])
    torch.optim.AdamW(groups)  # accepted as-is
