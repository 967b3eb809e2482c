"""The image backbone: ResNet18 with frozen BatchNorm, returning `layer4` (DETR / upstream ACT).

Written here (no torchvision at runtime) with torchvision's parameter names, so torchvision's
ImageNet file `resnet18-f37072fd.pth` loads into it unchanged and the checkpoint keys are
upstream's: `model.backbones.0.0.body.<torchvision name>`. The module nesting reproduces
upstream's `Joiner(Backbone(body=IntermediateLayerGetter(resnet)), PositionEmbeddingSine)`:

    backbones[0]          Joiner (nn.Sequential)
    backbones[0][0]       Backbone       -> .body = ResNet18 trunk (conv1 .. layer4; no avgpool/fc)
    backbones[0][1]       PositionEmbeddingSine (no parameters)

Upstream ACT trains every conv weight of the backbone (DETR's freezing of conv1/layer1 is
commented out there); only BatchNorm is frozen, as buffers.
"""

from __future__ import annotations

import logging
import os
import warnings
from pathlib import Path

import torch
from torch import Tensor, nn

from act.position_encoding import PositionEmbeddingSine

log = logging.getLogger(__name__)

TORCHVISION_RESNET18_FILE = "resnet18-f37072fd.pth"
BACKBONE_WEIGHTS_ENV = "ACT_BACKBONE_WEIGHTS"


class FrozenBatchNorm2d(nn.Module):
    """BatchNorm2d with fixed statistics and affine parameters (all four are buffers).

    DETR's version: eps 1e-5, and `num_batches_tracked` from torchvision files is dropped, so
    the state_dict has exactly weight, bias, running_mean, running_var.
    """

    def __init__(self, num_features: int, eps: float = 1e-5):
        super().__init__()
        self.eps = eps
        self.register_buffer("weight", torch.ones(num_features))
        self.register_buffer("bias", torch.zeros(num_features))
        self.register_buffer("running_mean", torch.zeros(num_features))
        self.register_buffer("running_var", torch.ones(num_features))

    def _load_from_state_dict(self, state_dict, prefix, local_metadata, strict, missing_keys,
                              unexpected_keys, error_msgs):
        state_dict.pop(prefix + "num_batches_tracked", None)
        super()._load_from_state_dict(state_dict, prefix, local_metadata, strict, missing_keys,
                                      unexpected_keys, error_msgs)

    def forward(self, x: Tensor) -> Tensor:
        # x: (B, C, H, W). Fold the four vectors into one scale and one shift: (1, C, 1, 1).
        scale = self.weight * (self.running_var + self.eps).rsqrt()
        shift = self.bias - self.running_mean * scale
        return x * scale[None, :, None, None] + shift[None, :, None, None]


def conv3x3(in_ch: int, out_ch: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(in_ch, out_ch, kernel_size=3, stride=stride, padding=1, bias=False)


class BasicBlock(nn.Module):
    """torchvision's ResNet BasicBlock: two 3x3 convs and a residual (1x1 conv when shape changes)."""

    def __init__(self, in_ch: int, out_ch: int, stride: int = 1):
        super().__init__()
        self.conv1 = conv3x3(in_ch, out_ch, stride)
        self.bn1 = FrozenBatchNorm2d(out_ch)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = conv3x3(out_ch, out_ch)
        self.bn2 = FrozenBatchNorm2d(out_ch)
        self.downsample: nn.Sequential | None = None
        if stride != 1 or in_ch != out_ch:
            self.downsample = nn.Sequential(
                nn.Conv2d(in_ch, out_ch, kernel_size=1, stride=stride, bias=False),
                FrozenBatchNorm2d(out_ch),
            )

    def forward(self, x: Tensor) -> Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + identity)


class ResNet18Trunk(nn.Module):
    """ResNet18 up to `layer4` (what upstream's IntermediateLayerGetter keeps; avgpool/fc dropped).

    (B, 3, H, W) -> (B, 512, ceil(H/32), ceil(W/32)); 480x640 -> 15x20.
    """

    num_channels = 512

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 64, kernel_size=7, stride=2, padding=3, bias=False)
        self.bn1 = FrozenBatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        self.layer1 = nn.Sequential(BasicBlock(64, 64), BasicBlock(64, 64))
        self.layer2 = nn.Sequential(BasicBlock(64, 128, stride=2), BasicBlock(128, 128))
        self.layer3 = nn.Sequential(BasicBlock(128, 256, stride=2), BasicBlock(256, 256))
        self.layer4 = nn.Sequential(BasicBlock(256, 512, stride=2), BasicBlock(512, 512))
        # torchvision's random init (used only when no pretrained file is found).
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, x: Tensor) -> Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))  # (B, 64, H/4, W/4)
        x = self.layer1(x)  # (B, 64, H/4, W/4)
        x = self.layer2(x)  # (B, 128, H/8, W/8)
        x = self.layer3(x)  # (B, 256, H/16, W/16)
        return self.layer4(x)  # (B, 512, H/32, W/32)


class Backbone(nn.Module):
    """Holds the trunk as `.body` so keys read `...0.body.conv1.weight` like upstream's."""

    def __init__(self):
        super().__init__()
        self.body = ResNet18Trunk()
        self.num_channels = ResNet18Trunk.num_channels

    def forward(self, images: Tensor) -> Tensor:
        return self.body(images)


class Joiner(nn.Sequential):
    """(backbone, position embedding): images -> (features, position embedding).

    images (B, 3, H, W) -> features (B, 512, h, w), pos (1, hidden, h, w) in the features' dtype.
    """

    def __init__(self, backbone: Backbone, position_embedding: PositionEmbeddingSine):
        super().__init__(backbone, position_embedding)
        self.num_channels = backbone.num_channels

    def forward(self, images: Tensor) -> tuple[Tensor, Tensor]:
        features = self[0](images)
        pos = self[1](features).to(features.dtype)
        return features, pos


def build_backbone(hidden_dim: int) -> Joiner:
    return Joiner(Backbone(), PositionEmbeddingSine(hidden_dim // 2, normalize=True))


# --------------------------------------------------------------------------- pretrained weights

def default_torchvision_cache_file() -> Path:
    """Where torchvision caches the file: $TORCH_HOME/hub/checkpoints (torch.hub's rule)."""
    torch_home = os.getenv("TORCH_HOME", os.path.join(os.getenv("XDG_CACHE_HOME", "~/.cache"), "torch"))
    return Path(os.path.expanduser(torch_home)) / "hub" / "checkpoints" / TORCHVISION_RESNET18_FILE


def find_backbone_weights(backbone_weights: str | None) -> Path | None:
    """Resolve the ImageNet ResNet18 file to load, or None for random init.

    Order: explicit path (must exist); "none" = random init on purpose; env
    ACT_BACKBONE_WEIGHTS (the path baked into the image); torchvision's cache file.
    """
    if backbone_weights is not None and backbone_weights.lower() == "none":
        return None
    if backbone_weights:
        path = Path(backbone_weights).expanduser()
        if not path.is_file():
            raise FileNotFoundError(f"--backbone_weights {backbone_weights}: no such file "
                                    f"(expected torchvision's {TORCHVISION_RESNET18_FILE})")
        return path
    candidates: list[Path] = []
    env_path = os.getenv(BACKBONE_WEIGHTS_ENV)
    if env_path:
        candidates.append(Path(env_path).expanduser())
    candidates.append(default_torchvision_cache_file())
    for path in candidates:
        if path.is_file():
            return path
    tried = ", ".join(str(p) for p in candidates)
    message = (f"NO PRETRAINED RESNET18 WEIGHTS FOUND (tried {tried}). The backbone starts from "
               f"RANDOM init; policies train much worse. Pass --backbone_weights PATH to "
               f"{TORCHVISION_RESNET18_FILE}, or set {BACKBONE_WEIGHTS_ENV}.")
    warnings.warn(message, stacklevel=2)
    log.warning(message)
    return None


def torchvision_to_trunk_state_dict(state_dict: dict[str, Tensor]) -> dict[str, Tensor]:
    """Drop what the trunk does not have: the classifier (fc.*) and BN's num_batches_tracked."""
    return {k: v for k, v in state_dict.items()
            if not k.startswith("fc.") and not k.endswith("num_batches_tracked")}


def load_torchvision_resnet18(trunk: ResNet18Trunk, path: str | Path) -> None:
    """Load a torchvision-format ResNet18 state dict strictly (no missing/unexpected keys)."""
    state_dict = torch.load(path, map_location="cpu", weights_only=True)
    trunk.load_state_dict(torchvision_to_trunk_state_dict(state_dict), strict=True)
