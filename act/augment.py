"""Opt-in image augmentation on the device: random resized crop and colour jitter.

The kinds LeRobot offers for ACT (its `ImageTransformsConfig`: brightness, contrast, saturation
and a random crop/resize), done on the batch after it reaches the device so the loader workers
stay as cheap as they are. Off by default, as in upstream ACT and LeRobot.

Randomness comes from a generator seeded by (seed, rank, step): every draw is a function of the
step, so a resumed run augments exactly as the uninterrupted one would, with no state to save.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import Tensor


@dataclass(frozen=True)
class AugmentConfig:
    crop_scale: float = 0.9  # the crop keeps at least this fraction of the image area, aspect kept
    brightness: float = 0.2  # factor drawn from [1 - b, 1 + b]
    contrast: float = 0.2
    saturation: float = 0.5

    def to_dict(self) -> dict[str, float]:
        return asdict(self)


def step_generator(device: torch.device, seed: int, rank: int, step: int) -> torch.Generator:
    gen = torch.Generator(device=device)
    gen.manual_seed((seed * 1_000_003 + rank * 7919 + step) % (2**63))
    return gen


def _uniform(shape: tuple[int, ...], low: float, high: float, gen: torch.Generator, device) -> Tensor:
    return low + (high - low) * torch.rand(shape, generator=gen, device=device)


def augment_images(images: Tensor, cfg: AugmentConfig, gen: torch.Generator) -> Tensor:
    """images (B, N_cam, 3, H, W) uint8 0..255 or float 0..1 -> float 0..1, same shape.

    Each camera image of each sample draws its own crop and colour factors.
    """
    b, n, c, h, w = images.shape
    x = images.reshape(b * n, c, h, w)
    x = x.float().div(255.0) if images.dtype == torch.uint8 else x.float()
    m, dev = b * n, x.device

    # Random resized crop: an affine grid that samples a window of side sqrt(scale) (in [-1, 1]
    # coordinates) at a random position inside the image, back at H x W.
    side = _uniform((m,), cfg.crop_scale, 1.0, gen, dev).sqrt()  # (M,)
    max_shift = 1.0 - side
    tx = _uniform((m,), -1.0, 1.0, gen, dev) * max_shift
    ty = _uniform((m,), -1.0, 1.0, gen, dev) * max_shift
    theta = torch.zeros(m, 2, 3, device=dev)
    theta[:, 0, 0], theta[:, 1, 1], theta[:, 0, 2], theta[:, 1, 2] = side, side, tx, ty
    grid = F.affine_grid(theta, [m, c, h, w], align_corners=False)  # (M, H, W, 2)
    x = F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)

    # Colour jitter, torchvision's definitions: brightness scales, contrast blends with the mean
    # grey level, saturation blends with the per-pixel grey.
    def factor(strength: float) -> Tensor:
        return _uniform((m, 1, 1, 1), 1.0 - strength, 1.0 + strength, gen, dev)

    weights = torch.tensor([0.299, 0.587, 0.114], device=dev).view(1, 3, 1, 1)
    x = (x * factor(cfg.brightness)).clamp(0, 1)
    grey_mean = (x * weights).sum(1, keepdim=True).mean(dim=(2, 3), keepdim=True)  # (M, 1, 1, 1)
    x = ((x - grey_mean) * factor(cfg.contrast) + grey_mean).clamp(0, 1)
    grey = (x * weights).sum(1, keepdim=True)  # (M, 1, H, W)
    x = ((x - grey) * factor(cfg.saturation) + grey).clamp(0, 1)
    return x.reshape(b, n, c, h, w)
