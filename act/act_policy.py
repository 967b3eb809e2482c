"""ACTPolicy: image normalization, the DETR-VAE, and upstream ACT's loss.

`policy.state_dict()` is upstream's checkpoint (keys `model.*`), because the DETR-VAE lives
in `self.model` exactly as in upstream's `ACTPolicy`.
"""

from __future__ import annotations

import logging

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from act.backbone import find_backbone_weights, load_torchvision_resnet18
from act.config import ACTConfig
from act.detr_vae import DETRVAE, build_detr_vae

log = logging.getLogger(__name__)

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def kl_divergence(mu: Tensor, logvar: Tensor) -> Tensor:
    """KL(q(z|x) || N(0, I)) summed over latent dims, averaged over the batch -> scalar."""
    klds = -0.5 * (1 + logvar - mu.pow(2) - logvar.exp())  # (B, latent)
    return klds.sum(1).mean(0)


class ACTPolicy(nn.Module):
    def __init__(self, cfg: ACTConfig):
        super().__init__()
        self.cfg = cfg
        self.model: DETRVAE = build_detr_vae(cfg)
        self.kl_weight = cfg.kl_weight
        # Not persistent: the checkpoint must hold exactly upstream's keys.
        self.register_buffer("image_mean", torch.tensor(IMAGENET_MEAN).view(1, 1, 3, 1, 1), persistent=False)
        self.register_buffer("image_std", torch.tensor(IMAGENET_STD).view(1, 1, 3, 1, 1), persistent=False)

    def normalize_images(self, images: Tensor) -> Tensor:
        """(B, N_cam, 3, H, W) uint8 0..255 or float 0..1 -> ImageNet-normalized float."""
        if images.dtype == torch.uint8:
            images = images.float().div_(255.0)
        return (images - self.image_mean.to(images.dtype)) / self.image_std.to(images.dtype)

    def forward(self, qpos: Tensor, images: Tensor, actions: Tensor | None = None,
                is_pad: Tensor | None = None) -> dict[str, Tensor] | Tensor:
        """
        qpos (B, D) normalized; images (B, N_cam, 3, H, W); actions (B, >=chunk, A) normalized and
        is_pad (B, >=chunk) bool -> {"l1", "kl", "loss"}. Without actions -> actions (B, chunk, A), z = 0.
        """
        images = self.normalize_images(images)
        if actions is None:
            a_hat, _, _ = self.model(qpos, images)
            return a_hat

        chunk = self.model.num_queries
        actions, is_pad = actions[:, :chunk], is_pad[:, :chunk].bool()
        a_hat, _, (mu, logvar) = self.model(qpos, images, actions, is_pad)
        # Upstream: padded steps contribute 0 but still count in the mean's denominator.
        all_l1 = F.l1_loss(actions, a_hat, reduction="none")  # (B, chunk, A)
        l1 = (all_l1 * ~is_pad.unsqueeze(-1)).mean()
        kl = kl_divergence(mu, logvar)
        return {"l1": l1, "kl": kl, "loss": l1 + kl * self.kl_weight}

    def unused_parameter_names(self) -> list[str]:
        """Parameters that cannot receive a gradient: is_pad_head always (upstream never uses its
        output in the loss), and decoder layers 1..N-1 in upstream's decoder mode."""
        names = [n for n, _ in self.named_parameters() if n.startswith("model.is_pad_head.")]
        if not self.cfg.use_all_decoder_layers:
            prefix = "model.transformer.decoder.layers."
            names += [n for n, _ in self.named_parameters()
                      if n.startswith(prefix) and int(n[len(prefix):].split(".")[0]) > 0]
        return names

    def freeze_unused_parameters(self) -> list[str]:
        """requires_grad=False on parameters that get no gradient (DDP would otherwise wait for
        them). They keep their init values and stay in the checkpoint. Returns their names."""
        names = set(self.unused_parameter_names())
        for n, p in self.named_parameters():
            if n in names:
                p.requires_grad_(False)
        return sorted(names)

    def optimizer_param_groups(self, lr: float, lr_backbone: float, weight_decay: float = 1e-4) -> list[dict]:
        """Upstream's two AdamW groups: names containing "backbone" at lr_backbone, the rest at lr."""
        trainable = [(n, p) for n, p in self.named_parameters() if p.requires_grad]
        return [
            {"params": [p for n, p in trainable if "backbone" not in n], "lr": lr,
             "weight_decay": weight_decay},
            {"params": [p for n, p in trainable if "backbone" in n], "lr": lr_backbone,
             "weight_decay": weight_decay},
        ]


def build_policy(cfg: ACTConfig, backbone_weights: str | None) -> tuple[ACTPolicy, bool]:
    """Build the policy and load ImageNet weights into the backbone when a file is found.

    backbone_weights: a path, "none" (random init on purpose) or None (search the env var
    ACT_BACKBONE_WEIGHTS, then torchvision's cache). Returns (policy, backbone_pretrained).
    """
    policy = ACTPolicy(cfg)
    path = find_backbone_weights(backbone_weights)
    if path is None:
        return policy, False
    load_torchvision_resnet18(policy.model.backbones[0][0].body, path)
    log.info("backbone: ImageNet ResNet18 weights from %s", path)
    return policy, True
