"""DETR-VAE: upstream ACT's model (detr/models/detr_vae.py), parameter for parameter.

Training (actions given): a CVAE encoder reads [CLS, qpos, action_0..action_{chunk-1}] and
predicts mu/logvar of a 32-d latent; z is sampled (reparametrization). Inference: z = 0.
The main transformer encodes [latent token, proprio token, image tokens...] and its decoder
turns `chunk` learned queries into `chunk` actions.

Attribute order matters: it fixes the state_dict key order, which we keep equal to upstream's
(`act_state_dict_*.tsv`). Upstream hard-codes 14 for the qpos/action projections; we use
state_dim / action_dim (what forks do), which gives the same shapes for 14.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor, nn

from act.backbone import Joiner, build_backbone
from act.config import ACTConfig
from act.transformer import Transformer, TransformerEncoder, build_cvae_encoder


def get_sinusoid_encoding_table(n_position: int, d_hid: int) -> Tensor:
    """Fixed sinusoid table (1, n_position, d_hid), computed in float64 then cast, as upstream."""
    position = np.arange(n_position, dtype=np.float64)[:, None]
    hid = np.arange(d_hid)
    table = position / np.power(10000, 2 * (hid // 2) / d_hid)  # (n_position, d_hid)
    table[:, 0::2] = np.sin(table[:, 0::2])
    table[:, 1::2] = np.cos(table[:, 1::2])
    return torch.tensor(table, dtype=torch.float32).unsqueeze(0)  # honours a default-device context


def reparametrize(mu: Tensor, logvar: Tensor) -> Tensor:
    std = logvar.div(2).exp()
    return mu + std * torch.randn_like(std)


class DETRVAE(nn.Module):
    def __init__(self, backbone: Joiner, transformer: Transformer, encoder: TransformerEncoder,
                 state_dim: int, action_dim: int, num_queries: int, camera_names: list[str],
                 latent_dim: int = 32):
        super().__init__()
        self.num_queries = num_queries
        self.camera_names = list(camera_names)
        self.transformer = transformer
        self.encoder = encoder
        hidden_dim = transformer.d_model
        self.action_head = nn.Linear(hidden_dim, action_dim)
        self.is_pad_head = nn.Linear(hidden_dim, 1)  # computed by upstream, never in the loss
        self.query_embed = nn.Embedding(num_queries, hidden_dim)
        self.input_proj = nn.Conv2d(backbone.num_channels, hidden_dim, kernel_size=1)
        self.backbones = nn.ModuleList([backbone])  # one backbone shared by every camera
        self.input_proj_robot_state = nn.Linear(state_dim, hidden_dim)

        # CVAE encoder extras
        self.latent_dim = latent_dim
        self.cls_embed = nn.Embedding(1, hidden_dim)
        self.encoder_action_proj = nn.Linear(action_dim, hidden_dim)
        self.encoder_joint_proj = nn.Linear(state_dim, hidden_dim)
        self.latent_proj = nn.Linear(hidden_dim, latent_dim * 2)  # -> (mu, logvar)
        self.register_buffer("pos_table", get_sinusoid_encoding_table(1 + 1 + num_queries, hidden_dim))

        # decoder extras
        self.latent_out_proj = nn.Linear(latent_dim, hidden_dim)
        self.additional_pos_embed = nn.Embedding(2, hidden_dim)  # positions of [latent, proprio]

    def encode_latent(self, qpos: Tensor, actions: Tensor | None, is_pad: Tensor | None
                      ) -> tuple[Tensor, Tensor | None, Tensor | None]:
        """-> latent_input (B, hidden), mu, logvar (B, latent) or None at inference (z = 0)."""
        bs = qpos.shape[0]
        if actions is None:
            z = torch.zeros(bs, self.latent_dim, dtype=qpos.dtype, device=qpos.device)
            return self.latent_out_proj(z), None, None
        action_embed = self.encoder_action_proj(actions)  # (B, chunk, hidden)
        qpos_embed = self.encoder_joint_proj(qpos).unsqueeze(1)  # (B, 1, hidden)
        cls_embed = self.cls_embed.weight.unsqueeze(0).expand(bs, -1, -1)  # (B, 1, hidden)
        encoder_input = torch.cat([cls_embed, qpos_embed, action_embed], dim=1)  # (B, 2+chunk, hidden)
        # CLS and qpos are never padding; padded action steps are masked out of attention.
        cls_joint_is_pad = torch.zeros(bs, 2, dtype=torch.bool, device=qpos.device)
        key_padding_mask = torch.cat([cls_joint_is_pad, is_pad], dim=1)  # (B, 2+chunk)
        pos = self.pos_table[:, : encoder_input.shape[1]].to(encoder_input.dtype)  # (1, 2+chunk, hidden)
        encoder_output = self.encoder(encoder_input, pos=pos, key_padding_mask=key_padding_mask)
        latent_info = self.latent_proj(encoder_output[:, 0])  # CLS output -> (B, 2*latent)
        mu = latent_info[:, : self.latent_dim]
        logvar = latent_info[:, self.latent_dim:]
        z = reparametrize(mu, logvar)  # (B, latent)
        return self.latent_out_proj(z), mu, logvar

    def image_features(self, image: Tensor) -> tuple[Tensor, Tensor]:
        """image (B, N_cam, 3, H, W), normalized -> src (B, hidden, h, N_cam*w), pos (1, hidden, h, N_cam*w).

        All cameras go through the shared backbone in one batch (B*N_cam); upstream loops over
        cameras. Same result: FrozenBatchNorm has no batch statistics.
        """
        bs, n_cam = image.shape[:2]
        features, pos = self.backbones[0](image.flatten(0, 1))  # (B*N, 512, h, w), (1, hidden, h, w)
        features = self.input_proj(features)  # (B*N, hidden, h, w)
        _, c, h, w = features.shape
        # Cameras side by side along the width: (B, N, C, h, w) -> (B, C, h, N*w)
        src = features.view(bs, n_cam, c, h, w).permute(0, 2, 3, 1, 4).reshape(bs, c, h, n_cam * w)
        pos = pos.repeat(1, 1, 1, n_cam)  # each camera gets its own (identical) sine map
        return src, pos

    def forward(self, qpos: Tensor, image: Tensor, actions: Tensor | None = None, is_pad: Tensor | None = None
                ) -> tuple[Tensor, Tensor, tuple[Tensor | None, Tensor | None]]:
        """
        qpos (B, state_dim); image (B, N_cam, 3, H, W) ImageNet-normalized;
        actions (B, chunk, action_dim) and is_pad (B, chunk) bool for training, else None.
        Returns a_hat (B, chunk, action_dim), is_pad_hat (B, chunk, 1), (mu, logvar).
        """
        latent_input, mu, logvar = self.encode_latent(qpos, actions, is_pad)  # (B, hidden)
        src, pos = self.image_features(image)
        proprio_input = self.input_proj_robot_state(qpos)  # (B, hidden)
        hs = self.transformer(src, pos, self.query_embed.weight, latent_input, proprio_input,
                              self.additional_pos_embed.weight)  # (B, chunk, hidden)
        return self.action_head(hs), self.is_pad_head(hs), (mu, logvar)


def build_detr_vae(cfg: ACTConfig) -> DETRVAE:
    if cfg.backbone != "resnet18":
        raise ValueError(f"backbone {cfg.backbone!r} is not supported (only resnet18)")
    transformer = Transformer(d_model=cfg.hidden_dim, nhead=cfg.nheads, num_encoder_layers=cfg.enc_layers,
                              num_decoder_layers=cfg.dec_layers, dim_feedforward=cfg.dim_feedforward,
                              dropout=cfg.dropout, pre_norm=cfg.pre_norm,
                              use_all_decoder_layers=cfg.use_all_decoder_layers)
    encoder = build_cvae_encoder(cfg.hidden_dim, cfg.nheads, cfg.enc_layers, cfg.dim_feedforward,
                                 cfg.dropout, cfg.pre_norm)
    return DETRVAE(build_backbone(cfg.hidden_dim), transformer, encoder, state_dim=cfg.state_dim,
                   action_dim=cfg.action_dim, num_queries=cfg.chunk_size, camera_names=cfg.camera_names,
                   latent_dim=cfg.latent_dim)
