"""Perceiver adapter (the plan's E2.2 D, with the norms and MLPs its sketch lacks).

A latent array (n_tokens x width) is refined over `depth` iterations; each iteration reads the context by
cross-attention (+ MLP) and then runs `self_per_cross` latent self-attention blocks (+ MLP), all pre-norm
residual. The latents become the output tokens (final LayerNorm + projection to out_dim). Unlike the query
adapter, each read of the inputs is followed by a latent-only processing tower.
"""
from __future__ import annotations

from torch import nn

from c2bridge.adapters.base import Adapter, BudgetSpec, compact, default_heads, per_block, register_to_config, seeded
from c2bridge.adapters.layers import (
    MLP,
    Attention,
    PreNormResidual,
    SelfAttention,
    StreamEncoder,
    init_linear,
    normal_param,
)
from c2bridge.adapters.registry import register


class PerceiverIteration(nn.Module):
    def __init__(self, width: int, n_heads: int, ffn_dim: int, self_per_cross: int, dropout: float, gain: float):
        super().__init__()
        self.cross_attn = PreNormResidual(width, Attention(width, n_heads, dropout, gain), dropout)
        self.cross_mlp = PreNormResidual(width, MLP(width, ffn_dim, dropout, out_gain=gain), dropout)
        self.self_blocks = nn.ModuleList(
            nn.Sequential(
                PreNormResidual(width, SelfAttention(width, n_heads, dropout, gain), dropout),
                PreNormResidual(width, MLP(width, ffn_dim, dropout, out_gain=gain), dropout),
            )
            for _ in range(self_per_cross)
        )

    def forward(self, x, context, key_mask):  # x [B, N, W], context [B, S, W]
        x = self.cross_mlp(self.cross_attn(x, context, key_mask))
        for block in self.self_blocks:
            x = block(x)
        return x


@register
class PerceiverAdapter(Adapter):
    """Latents refined by iterated cross-attention + self-attention. Budget: width/depth by rule, ffn_dim solved."""

    kind = "perceiver"
    budget_spec = BudgetSpec()  # the defaults: width and depth by rule, n_heads = width // head_dim, ffn_dim solved

    @register_to_config
    def __init__(
        self,
        width: int = 384,  # latent width
        depth: int = 2,  # iterations (cross-attention reads of the inputs)
        ffn_dim: int | list[int] | None = None,  # MLP hidden width, or one per iteration (None: 4 * width)
        self_per_cross: int = 1,  # latent self-attention blocks after each cross-attention
        n_heads: int | None = None,  # attention heads (None: width // 64, at least 1)
        type_emb: bool = True,  # learned stream-type embedding (vlm / dino)
        **options,  # the options every kind takes (dims, dropout, stream_weights, seed, ...): see Adapter
    ):
        super().__init__(**options)
        if depth < 1 or self_per_cross < 0:
            raise ValueError(f"depth must be >= 1 and self_per_cross >= 0, got {depth}, {self_per_cross}")
        ffn_dims = per_block(4 * width if ffn_dim is None else ffn_dim, depth, "ffn_dim")
        self.register_to_config(ffn_dim=compact(ffn_dims), n_heads=default_heads(width, n_heads))
        cfg = self.config
        gain = (2 * depth * (1 + self_per_cross)) ** -0.5  # residual branch scale (GPT-2 style)
        with seeded(cfg["seed"]):
            self.streams = StreamEncoder(cfg["vlm_dim"], cfg["dino_dim"], width, cfg["n_patches"],
                                         cfg["stream_weights"], cfg["pos_emb"], type_emb)
            self.latents = normal_param(cfg["n_tokens"], width, std=1.0)  # [N, W]
            self.iterations = nn.ModuleList(
                PerceiverIteration(width, cfg["n_heads"], ffn_dims[i], self_per_cross, cfg["dropout"], gain)
                for i in range(depth)
            )
            self.norm = nn.LayerNorm(width)
            self.out_proj = nn.Linear(width, cfg["out_dim"])
            init_linear(self.out_proj, gain=cfg["out_init_scale"])

    def _forward(self, vlm, dino, vlm_mask):
        context, key_mask = self.streams(vlm, dino, vlm_mask)  # [B, T+P, W]
        x = self.latents.expand(vlm.shape[0], -1, -1)  # [B, N, W]
        for iteration in self.iterations:
            x = iteration(x, context, key_mask)
        return self.out_proj(self.norm(x))  # [B, N, out_dim]
