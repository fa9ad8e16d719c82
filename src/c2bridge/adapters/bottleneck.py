"""Bottleneck adapter (the plan's E2.2 B, redesigned to fit a budget and keep spatial information).

Per-stream compression to a narrow bottleneck, fusion, expansion:

  VLM  [B,T,vlm_dim] -> LN -> Linear -> GELU -> Linear -> [B,T,b] -> attention pool (N learned queries)  -> [B,N,b]
  DINO [B,P,dino_dim] -> LN -> Linear -> GELU -> Linear -> [B,P,b] (+2-D pos) -> attention pool           -> [B,N,b]
  concat (x vlm/dino stream weights) -> [B,N,W=2b] -> depth x Mixer block (token-mixing Linear(N,N) +
  channel MLP, pre-norm residual) -> LN -> expand Linear(W, out_dim) -> [B,N,out_dim]

The plan's sketch mean-pooled both streams to one vector and expanded it with Linear(512, 77*4096/4) and
Linear(78848, 315392): 24.9 billion parameters and no spatial information. Here the expansion is factorized
(one shared Linear(W, out_dim) over N per-token embeddings), and each output token pools its own patches
(`spatial=True`); `spatial=False` restores the plan's mean pooling (plus learned token embeddings) as an ablation.
There is no attention over the fused tokens: fusion is MLP-Mixer style.
"""
from __future__ import annotations

import torch
from torch import nn

from .base import Adapter, BudgetSpec, compact, per_block, register_adapter, seeded
from .layers import (
    MLP,
    AttentionPool,
    GridPositionEmbedding,
    PreNormResidual,
    init_linear,
    masked_mean,
    normal_param,
)


class Compressor(nn.Module):
    """LayerNorm(no affine) -> Linear(in, b) -> GELU -> Linear(b, b): per-token compression of one stream."""

    def __init__(self, in_dim: int, bottleneck: int):
        super().__init__()
        self.norm = nn.LayerNorm(in_dim, elementwise_affine=False)
        self.mlp = MLP(in_dim, bottleneck, out_width=bottleneck)

    def forward(self, x):
        return self.mlp(self.norm(x))


class TokenMix(nn.Module):
    """Linear map over the token axis: [B, N, W] -> [B, N, W], mixing information between output tokens."""

    def __init__(self, n_tokens: int, gain: float):
        super().__init__()
        self.mix = nn.Linear(n_tokens, n_tokens)
        init_linear(self.mix, gain)

    def forward(self, x):
        return self.mix(x.transpose(1, 2)).transpose(1, 2)


@register_adapter
class BottleneckAdapter(Adapter):
    """Compress each stream, pool per output token, fuse with Mixer blocks, expand. ffn_dim solved by budget."""

    kind = "bottleneck"
    budget_spec = BudgetSpec(width="width", depth="depth", free="ffn_dim", free_ratio=4.0, heads=False)

    def __init__(
        self,
        vlm_dim: int = 3584,  # Qwen2.5-VL hidden width
        dino_dim: int = 1024,  # DINOv2 patch-token width
        out_dim: int = 4096,  # LTX caption_channels
        n_tokens: int = 77,  # output tokens
        n_patches: int = 256,  # DINOv2 patches (square grid for the 2-D position embedding)
        width: int = 512,  # fusion width W; each stream is compressed to W // 2
        depth: int = 2,  # Mixer fusion blocks
        ffn_dim: int | list[int] | None = None,  # channel-MLP hidden width (or one per block; None: 4 * width)
        spatial: bool = True,  # per-output-token attention pooling (False: the plan's mean pooling)
        dropout: float = 0.0,  # residual + MLP dropout
        stream_weights: tuple[float, float] | list[float] = (0.3, 0.7),  # scale on pooled (vlm, dino) bottlenecks
        pos_emb: bool = True,  # learned 2-D (row + col) position embedding on compressed DINOv2 patches
        out_init_scale: float = 0.1,  # expand projection ~ N(0, scale²/width)
        seed: int | None = None,  # init under this seed without touching the global RNG
        budget: float | None = None,  # the budget this was sized for (informational)
    ):
        if width < 2 or width % 2 or depth < 1:
            raise ValueError(f"width must be even and >= 2, depth >= 1; got width={width}, depth={depth}")
        ffn_dims = per_block(4 * width if ffn_dim is None else ffn_dim, depth, "ffn_dim")
        cfg = dict(
            vlm_dim=vlm_dim, dino_dim=dino_dim, out_dim=out_dim, n_tokens=n_tokens, n_patches=n_patches,
            width=width, depth=depth, ffn_dim=compact(ffn_dims), spatial=bool(spatial), dropout=float(dropout),
            stream_weights=[float(w) for w in stream_weights], pos_emb=bool(pos_emb),
            out_init_scale=float(out_init_scale), seed=seed, budget=budget,
        )
        super().__init__(cfg)
        b = width // 2
        gain = (2 * depth) ** -0.5
        self.vlm_weight, self.dino_weight = cfg["stream_weights"]
        with seeded(seed):
            self.vlm_compress = Compressor(vlm_dim, b)
            self.dino_compress = Compressor(dino_dim, b)
            self.pos = GridPositionEmbedding(n_patches, b) if pos_emb else None
            if spatial:
                self.vlm_pool = AttentionPool(n_tokens, b)
                self.dino_pool = AttentionPool(n_tokens, b)
                self.token_emb = None
            else:
                self.token_emb = normal_param(n_tokens, width, std=0.02)  # [N, W]
            self.blocks = nn.ModuleList(
                nn.Sequential(
                    PreNormResidual(width, TokenMix(n_tokens, gain), dropout),
                    PreNormResidual(width, MLP(width, ffn_dims[i], dropout, out_gain=gain), dropout),
                )
                for i in range(depth)
            )
            self.norm = nn.LayerNorm(width)
            self.expand = nn.Linear(width, out_dim)
            init_linear(self.expand, gain=out_init_scale)

    def _forward(self, vlm, dino, vlm_mask):
        v = self.vlm_compress(vlm)  # [B, T, b]
        d = self.dino_compress(dino)  # [B, P, b]
        if self.pos is not None:
            d = d + self.pos()
        if self.token_emb is None:
            v = self.vlm_pool(v, vlm_mask)  # [B, N, b]
            d = self.dino_pool(d)  # [B, N, b]
            x = torch.cat([v * self.vlm_weight, d * self.dino_weight], dim=-1)  # [B, N, W]
        else:
            v, d = masked_mean(v, vlm_mask), d.mean(dim=1, keepdim=True)  # [B, 1, b] each
            x = torch.cat([v * self.vlm_weight, d * self.dino_weight], dim=-1) + self.token_emb  # [B, N, W]
        for block in self.blocks:
            x = block(x)
        return self.expand(self.norm(x))  # [B, N, out_dim]
