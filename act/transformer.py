"""DETR's encoder-decoder transformer, as upstream ACT uses it (post-norm by default).

Tensors are batch-first here, (B, S, C); upstream is sequence-first, which changes nothing in
the math or the parameter names (`self_attn.in_proj_weight`, `linear1`, `norm1`, ...).

The decoder and upstream's bug: upstream's decoder returns every layer's (normalized) output
and the model takes index 0, so actions come from decoder layer 0 plus the decoder's final
LayerNorm; layers 1..N-1 never affect the output. By default we compute exactly that and skip
layers 1..N-1 (their parameters stay in the state_dict, so checkpoints keep upstream's keys).
`use_all_layers=True` wires the decoder properly: the last layer's output plus the norm.
"""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def with_pos(x: Tensor, pos: Tensor | None) -> Tensor:
    return x if pos is None else x + pos


class TransformerEncoderLayer(nn.Module):
    def __init__(self, d_model: int, nhead: int, dim_feedforward: int, dropout: float, pre_norm: bool):
        super().__init__()
        self.self_attn = nn.MultiheadAttention(d_model, nhead, dropout=dropout, batch_first=True)
        self.linear1 = nn.Linear(d_model, dim_feedforward)
        self.dropout = nn.Dropout(dropout)
        self.linear2 = nn.Linear(dim_feedforward, d_model)
        self.norm1 = nn.LayerNorm(d_model)
        self.norm2 = nn.LayerNorm(d_model)
        self.dropout1 = nn.Dropout(dropout)
        self.dropout2 = nn.Dropout(dropout)
        self.pre_norm = pre_norm

    def _attend(self, x: Tensor, pos: Tensor | None, key_padding_mask: Tensor | None) -> Tensor:
        q = k = with_pos(x, pos)
        return self.self_attn(q, k, value=x, key_padding_mask=key_padding_mask, need_weights=False)[0]

    def _ffn(self, x: Tensor) -> Tensor:
        return self.linear2(self.dropout(F.relu(self.linear1(x))))

    def forward(self, src: Tensor, pos: Tensor | None = None,
                key_padding_mask: Tensor | None = None) -> Tensor:
        # src (B, S, C); pos (B or 1, S, C); key_padding_mask (B, S) bool, True = ignore.
        if self.pre_norm:
            src = src + self.dropout1(self._attend(self.norm1(src), pos, key_padding_mask))
            return src + self.dropout2(self._ffn(self.norm2(src)))
        src = self.norm1(src + self.dropout1(self._attend(src, pos, key_padding_mask)))
        return self.norm2(src + self.dropout2(self._ffn(src)))


class TransformerDecoderLayer(nn.Module):
    def __init__(self, d_model: int, nhead: int, dim_feedforward: int, dropout: float, pre_norm: bool):
        super().__init__()
        self.self_attn = nn.MultiheadAttention(d_model, nhead, dropout=dropout, batch_first=True)
        self.multihead_attn = nn.MultiheadAttention(d_model, nhead, dropout=dropout, batch_first=True)
        self.linear1 = nn.Linear(d_model, dim_feedforward)
        self.dropout = nn.Dropout(dropout)
        self.linear2 = nn.Linear(dim_feedforward, d_model)
        self.norm1 = nn.LayerNorm(d_model)
        self.norm2 = nn.LayerNorm(d_model)
        self.norm3 = nn.LayerNorm(d_model)
        self.dropout1 = nn.Dropout(dropout)
        self.dropout2 = nn.Dropout(dropout)
        self.dropout3 = nn.Dropout(dropout)
        self.pre_norm = pre_norm

    def _self_attend(self, x: Tensor, query_pos: Tensor) -> Tensor:
        q = k = with_pos(x, query_pos)
        return self.self_attn(q, k, value=x, need_weights=False)[0]

    def _cross_attend(self, x: Tensor, memory: Tensor, pos: Tensor, query_pos: Tensor,
                      memory_key_padding_mask: Tensor | None) -> Tensor:
        return self.multihead_attn(query=with_pos(x, query_pos), key=with_pos(memory, pos), value=memory,
                                   key_padding_mask=memory_key_padding_mask, need_weights=False)[0]

    def _ffn(self, x: Tensor) -> Tensor:
        return self.linear2(self.dropout(F.relu(self.linear1(x))))

    def forward(self, tgt: Tensor, memory: Tensor, pos: Tensor, query_pos: Tensor,
                memory_key_padding_mask: Tensor | None = None) -> Tensor:
        # tgt (B, Q, C) queries; memory (B, S, C) encoder output;
        # pos (B or 1, S, C); query_pos (B or 1, Q, C).
        if self.pre_norm:
            tgt = tgt + self.dropout1(self._self_attend(self.norm1(tgt), query_pos))
            tgt = tgt + self.dropout2(self._cross_attend(self.norm2(tgt), memory, pos, query_pos,
                                                         memory_key_padding_mask))
            return tgt + self.dropout3(self._ffn(self.norm3(tgt)))
        tgt = self.norm1(tgt + self.dropout1(self._self_attend(tgt, query_pos)))
        tgt = self.norm2(tgt + self.dropout2(self._cross_attend(tgt, memory, pos, query_pos,
                                                                memory_key_padding_mask)))
        return self.norm3(tgt + self.dropout3(self._ffn(tgt)))


class TransformerEncoder(nn.Module):
    def __init__(self, layer: TransformerEncoderLayer, num_layers: int, norm: nn.LayerNorm | None):
        super().__init__()
        self.layers = nn.ModuleList([copy.deepcopy(layer) for _ in range(num_layers)])
        self.norm = norm  # only with pre_norm (upstream), so post-norm has no `encoder.norm.*` keys

    def forward(self, src: Tensor, pos: Tensor | None = None,
                key_padding_mask: Tensor | None = None) -> Tensor:
        for layer in self.layers:
            src = layer(src, pos=pos, key_padding_mask=key_padding_mask)
        return src if self.norm is None else self.norm(src)


class TransformerDecoder(nn.Module):
    """Upstream's decoder (return_intermediate=True, output index 0) without its wasted work.

    use_all_layers=False (upstream): norm(layer_0(tgt)). Layers 1..N-1 are skipped unless
    `skip_unused_layers` is set to False, which computes them like upstream and discards them
    (kept only to measure and to prove that skipping them is exact).
    use_all_layers=True: norm(layer_{N-1}(... layer_0(tgt))).
    """

    def __init__(self, layer: TransformerDecoderLayer, num_layers: int, norm: nn.LayerNorm,
                 use_all_layers: bool = False):
        super().__init__()
        self.layers = nn.ModuleList([copy.deepcopy(layer) for _ in range(num_layers)])
        self.norm = norm
        self.use_all_layers = use_all_layers
        self.skip_unused_layers = True

    def forward(self, tgt: Tensor, memory: Tensor, pos: Tensor, query_pos: Tensor,
                memory_key_padding_mask: Tensor | None = None) -> Tensor:
        """-> (B, Q, C): the decoder output the action head reads."""
        if not self.use_all_layers and not self.skip_unused_layers:
            return self.forward_intermediate(tgt, memory, pos, query_pos, memory_key_padding_mask)[0]
        layers = self.layers if self.use_all_layers else self.layers[:1]
        for layer in layers:
            tgt = layer(tgt, memory, pos=pos, query_pos=query_pos,
                        memory_key_padding_mask=memory_key_padding_mask)
        return self.norm(tgt)

    def forward_intermediate(self, tgt: Tensor, memory: Tensor, pos: Tensor, query_pos: Tensor,
                             memory_key_padding_mask: Tensor | None = None) -> Tensor:
        """Upstream's computation: every layer's normalized output, stacked -> (N, B, Q, C)."""
        intermediate = []
        for layer in self.layers:
            tgt = layer(tgt, memory, pos=pos, query_pos=query_pos,
                        memory_key_padding_mask=memory_key_padding_mask)
            intermediate.append(self.norm(tgt))
        return torch.stack(intermediate)


class Transformer(nn.Module):
    """Encoder over [latent, proprio, image tokens...], decoder with learned queries.

    Xavier-uniform init of every matrix, as DETR/upstream (`_reset_parameters`).
    """

    def __init__(self, d_model: int = 512, nhead: int = 8, num_encoder_layers: int = 4,
                 num_decoder_layers: int = 7, dim_feedforward: int = 3200, dropout: float = 0.1,
                 pre_norm: bool = False, use_all_decoder_layers: bool = False):
        super().__init__()
        enc_layer = TransformerEncoderLayer(d_model, nhead, dim_feedforward, dropout, pre_norm)
        encoder_norm = nn.LayerNorm(d_model) if pre_norm else None
        self.encoder = TransformerEncoder(enc_layer, num_encoder_layers, encoder_norm)
        dec_layer = TransformerDecoderLayer(d_model, nhead, dim_feedforward, dropout, pre_norm)
        self.decoder = TransformerDecoder(dec_layer, num_decoder_layers, nn.LayerNorm(d_model),
                                          use_all_layers=use_all_decoder_layers)
        self.d_model = d_model
        self.nhead = nhead
        for p in self.parameters():
            if p.dim() > 1:
                nn.init.xavier_uniform_(p)

    def forward(self, src: Tensor, pos_embed: Tensor, query_embed: Tensor, latent_input: Tensor,
                proprio_input: Tensor, additional_pos_embed: Tensor) -> Tensor:
        """
        src (B, C, h, W) image features (cameras side by side along W); pos_embed (1, C, h, W);
        query_embed (Q, C); latent_input, proprio_input (B, C); additional_pos_embed (2, C).
        Returns the decoder output (B, Q, C).
        """
        bs = src.shape[0]
        src = src.flatten(2).transpose(1, 2)  # (B, h*W, C), row-major like upstream
        pos_embed = pos_embed.flatten(2).transpose(1, 2)  # (1, h*W, C)
        pos_embed = torch.cat([additional_pos_embed.unsqueeze(0), pos_embed], dim=1)  # (1, 2+h*W, C)
        src = torch.cat([torch.stack([latent_input, proprio_input], dim=1), src], dim=1)  # (B, 2+h*W, C)
        query_pos = query_embed.unsqueeze(0)  # (1, Q, C)
        tgt = torch.zeros(bs, *query_embed.shape, dtype=src.dtype, device=src.device)  # (B, Q, C)

        memory = self.encoder(src, pos=pos_embed)  # (B, 2+h*W, C)
        return self.decoder(tgt, memory, pos=pos_embed, query_pos=query_pos)  # (B, Q, C)


def build_cvae_encoder(d_model: int, nhead: int, num_layers: int, dim_feedforward: int, dropout: float,
                       pre_norm: bool) -> TransformerEncoder:
    """The CVAE's own encoder (upstream `build_encoder`): default init, no Xavier pass."""
    layer = TransformerEncoderLayer(d_model, nhead, dim_feedforward, dropout, pre_norm)
    return TransformerEncoder(layer, num_layers, nn.LayerNorm(d_model) if pre_norm else None)
