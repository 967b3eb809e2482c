"""2-D sine position embedding for image feature maps (DETR's PositionEmbeddingSine, as in ACT).

Each of the two axes gets `num_pos_feats` = hidden/2 features: sin/cos of the normalized
coordinate (1/h .. 1, times 2*pi) at geometric frequencies temperature^(2*(i//2)/num_pos_feats).
The y features come first, then x: (1, hidden, h, w). It depends only on the feature map's
size, never its values, so one map serves the whole batch (upstream repeats it per sample).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn


class PositionEmbeddingSine(nn.Module):
    def __init__(self, num_pos_feats: int = 64, temperature: int = 10000, normalize: bool = True,
                 scale: float | None = None):
        super().__init__()
        if scale is not None and not normalize:
            raise ValueError("normalize should be True if scale is passed")
        self.num_pos_feats = num_pos_feats
        self.temperature = temperature
        self.normalize = normalize
        self.scale = 2 * math.pi if scale is None else scale

    def forward(self, features: Tensor) -> Tensor:
        """features (B, C, h, w) -> pos (1, 2*num_pos_feats, h, w), float32."""
        h, w = features.shape[-2:]
        not_mask = torch.ones(1, h, w, device=features.device)
        y_embed = not_mask.cumsum(1, dtype=torch.float32)  # (1, h, w): 1..h down the rows
        x_embed = not_mask.cumsum(2, dtype=torch.float32)  # (1, h, w): 1..w along the columns
        if self.normalize:
            eps = 1e-6
            y_embed = y_embed / (y_embed[:, -1:, :] + eps) * self.scale
            x_embed = x_embed / (x_embed[:, :, -1:] + eps) * self.scale

        dim_t = torch.arange(self.num_pos_feats, dtype=torch.float32, device=features.device)
        dim_t = self.temperature ** (2 * (dim_t // 2) / self.num_pos_feats)  # (F,)

        pos_x = x_embed[:, :, :, None] / dim_t  # (1, h, w, F)
        pos_y = y_embed[:, :, :, None] / dim_t
        # Interleave sin (even features) and cos (odd features), exactly DETR's layout.
        pos_x = torch.stack((pos_x[:, :, :, 0::2].sin(), pos_x[:, :, :, 1::2].cos()), dim=4).flatten(3)
        pos_y = torch.stack((pos_y[:, :, :, 0::2].sin(), pos_y[:, :, :, 1::2].cos()), dim=4).flatten(3)
        return torch.cat((pos_y, pos_x), dim=3).permute(0, 3, 1, 2)  # (1, 2F, h, w)
