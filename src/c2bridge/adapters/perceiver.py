"""Perceiver adapter (the plan's E2.2 D, with the norms and MLPs its sketch lacks).

A latent array (n_tokens x width) is refined over `depth` iterations; each iteration reads the context by
cross-attention (+ MLP) and then runs `self_per_cross` latent self-attention blocks (+ MLP), all pre-norm
residual. The latents become the output tokens (final LayerNorm + projection to out_dim). Unlike the query
adapter, each read of the inputs is followed by a latent-only processing tower.
"""
from __future__ import annotations

from torch import nn

from .base import Adapter, BudgetSpec, compact, per_block, register_adapter, seeded
from .layers import Attention, MLP, PreNormResidual, StreamEncoder, init_linear, normal_param
from .query import _SelfAttention


class PerceiverIteration(nn.Module):
    def __init__(self, width: int, n_heads: int, ffn_dim: int, self_per_cross: int, dropout: float, gain: float):
        super().__init__()
        self.cross_attn = PreNormResidual(width, Attention(width, n_heads, dropout, gain), dropout)
        self.cross_mlp = PreNormResidual(width, MLP(width, ffn_dim, dropout, out_gain=gain), dropout)
        self.self_blocks = nn.ModuleList(
            nn.Sequential(
                PreNormResidual(width, _SelfAttention(width, n_heads, dropout, gain), dropout),
                PreNormResidual(width, MLP(width, ffn_dim, dropout, out_gain=gain), dropout),
            )
            for _ in range(self_per_cross)
        )

    def forward(self, x, context, key_mask):  # x [B, N, W], context [B, S, W]
        x = self.cross_mlp(self.cross_attn(x, context, key_mask))
        for block in self.self_blocks:
            x = block(x)
        return x


@register_adapter
class PerceiverAdapter(Adapter):
    """Latents refined by iterated cross-attention + self-attention. Budget: width/depth by rule, ffn_dim solved."""

    kind = "perceiver"
    budget_spec = BudgetSpec(width="width", depth="depth", free="ffn_dim", free_ratio=4.0, heads=True)

    def __init__(
        self,
        vlm_dim: int = 3584,  # Qwen2.5-VL hidden width
        dino_dim: int = 1024,  # DINOv2 patch-token width
        out_dim: int = 4096,  # LTX caption_channels
        n_tokens: int = 77,  # output tokens (= latents)
        n_patches: int = 256,  # DINOv2 patches (square grid for the 2-D position embedding)
        width: int = 384,  # latent width
        depth: int = 2,  # iterations (cross-attention reads of the inputs)
        ffn_dim: int | list[int] | None = None,  # MLP hidden width, or one per iteration (None: 4 * width)
        self_per_cross: int = 1,  # latent self-attention blocks after each cross-attention
        n_heads: int | None = None,  # attention heads (None: width // 64, at least 1)
        dropout: float = 0.0,  # attention + residual + MLP dropout
        stream_weights: tuple[float, float] | list[float] = (0.3, 0.7),  # scale on projected (vlm, dino) tokens
        pos_emb: bool = True,  # learned 2-D (row + col) position embedding on DINOv2 patches
        type_emb: bool = True,  # learned stream-type embedding (vlm / dino)
        out_init_scale: float = 0.1,  # out projection ~ N(0, scale²/width)
        seed: int | None = None,  # init under this seed without touching the global RNG
        budget: float | None = None,  # the budget this was sized for (informational)
    ):
        if depth < 1 or self_per_cross < 0:
            raise ValueError(f"depth must be >= 1 and self_per_cross >= 0, got {depth}, {self_per_cross}")
        ffn_dims = per_block(4 * width if ffn_dim is None else ffn_dim, depth, "ffn_dim")
        n_heads = max(1, width // 64) if n_heads is None else n_heads
        cfg = dict(
            vlm_dim=vlm_dim, dino_dim=dino_dim, out_dim=out_dim, n_tokens=n_tokens, n_patches=n_patches,
            width=width, depth=depth, ffn_dim=compact(ffn_dims), self_per_cross=self_per_cross, n_heads=n_heads,
            dropout=float(dropout), stream_weights=[float(w) for w in stream_weights], pos_emb=bool(pos_emb),
            type_emb=bool(type_emb), out_init_scale=float(out_init_scale), seed=seed, budget=budget,
        )
        super().__init__(cfg)
        gain = (2 * depth * (1 + self_per_cross)) ** -0.5  # residual branch scale (GPT-2 style)
        with seeded(seed):
            self.streams = StreamEncoder(vlm_dim, dino_dim, width, n_patches, stream_weights, pos_emb, type_emb)
            self.latents = normal_param(n_tokens, width, std=1.0)  # [N, W]
            self.iterations = nn.ModuleList(
                PerceiverIteration(width, n_heads, ffn_dims[i], self_per_cross, cfg["dropout"], gain)
                for i in range(depth)
            )
            self.norm = nn.LayerNorm(width)
            self.out_proj = nn.Linear(width, out_dim)
            init_linear(self.out_proj, gain=out_init_scale)

    def _forward(self, vlm, dino, vlm_mask):
        context, key_mask = self.streams(vlm, dino, vlm_mask)  # [B, T+P, W]
        x = self.latents.expand(vlm.shape[0], -1, -1)  # [B, N, W]
        for iteration in self.iterations:
            x = iteration(x, context, key_mask)
        return self.out_proj(self.norm(x))  # [B, N, out_dim]
