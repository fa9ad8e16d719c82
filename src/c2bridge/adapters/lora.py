"""LoRA-style adapter (the plan's E2.2 C, with a budget-feasible output head and spatial tokens kept).

Low-rank down projections per stream, rank-space processing, one up projection:

  VLM  -> LN -> down Linear(vlm_dim, r, no bias)            -> [B,T,r] -> attention pool (N learned queries) -> [B,N,r]
  DINO -> LN -> down Linear(dino_dim, r, no bias) (+2-D pos) -> [B,P,r] -> attention pool                   -> [B,N,r]
  concat (x stream weights) -> [B,N,2r] -> depth x residual MLP(2r -> hidden -> 2r) -> LN -> up Linear(2r, out_dim)

The plan's sketch mean-pooled both streams and generated all 77x4096 outputs with one Linear(128, 315392)
(41.5M parameters, its vlm_up/dino_up layers unused by its forward). Here the up projection is shared by the N
tokens (the concat's two halves make it exactly vlm_up + dino_up), and each output token pools its own patches
(`spatial=True`; `spatial=False` restores mean pooling plus learned token embeddings). Tokens are processed
independently after pooling (no token mixing), unlike the bottleneck adapter's Mixer fusion.
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


@register_adapter
class LoRAAdapter(Adapter):
    """Low-rank per-stream bridge. Budget: rank/depth by rule, hidden_dim (rank-space MLP) solved."""

    kind = "lora"
    budget_spec = BudgetSpec(width="rank", depth="depth", free="hidden_dim", free_ratio=8.0, heads=False,
                             width_factor=0.5)

    def __init__(
        self,
        vlm_dim: int = 3584,  # Qwen2.5-VL hidden width
        dino_dim: int = 1024,  # DINOv2 patch-token width
        out_dim: int = 4096,  # LTX caption_channels
        n_tokens: int = 77,  # output tokens
        n_patches: int = 256,  # DINOv2 patches (square grid for the 2-D position embedding)
        rank: int = 256,  # rank r of each stream's down projection (rank space is 2r wide after concat)
        depth: int = 2,  # residual MLP blocks in rank space
        hidden_dim: int | list[int] | None = None,  # rank-space MLP hidden width, or one per block (None: 4 * 2r)
        spatial: bool = True,  # per-output-token attention pooling (False: the plan's mean pooling)
        dropout: float = 0.0,  # residual + MLP dropout
        stream_weights: tuple[float, float] | list[float] = (0.3, 0.7),  # scale on pooled (vlm, dino) low-rank tokens
        pos_emb: bool = True,  # learned 2-D (row + col) position embedding on low-rank DINOv2 patches
        out_init_scale: float = 0.1,  # up projection ~ N(0, scale²/(2r))
        seed: int | None = None,  # init under this seed without touching the global RNG
        budget: float | None = None,  # the budget this was sized for (informational)
    ):
        if rank < 1 or depth < 1:
            raise ValueError(f"rank and depth must be >= 1; got rank={rank}, depth={depth}")
        hidden_dims = per_block(8 * rank if hidden_dim is None else hidden_dim, depth, "hidden_dim")
        cfg = dict(
            vlm_dim=vlm_dim, dino_dim=dino_dim, out_dim=out_dim, n_tokens=n_tokens, n_patches=n_patches,
            rank=rank, depth=depth, hidden_dim=compact(hidden_dims), spatial=bool(spatial), dropout=float(dropout),
            stream_weights=[float(w) for w in stream_weights], pos_emb=bool(pos_emb),
            out_init_scale=float(out_init_scale), seed=seed, budget=budget,
        )
        super().__init__(cfg)
        width = 2 * rank
        gain = depth ** -0.5
        self.vlm_weight, self.dino_weight = cfg["stream_weights"]
        with seeded(seed):
            self.vlm_norm = nn.LayerNorm(vlm_dim, elementwise_affine=False)
            self.dino_norm = nn.LayerNorm(dino_dim, elementwise_affine=False)
            self.vlm_down = nn.Linear(vlm_dim, rank, bias=False)
            self.dino_down = nn.Linear(dino_dim, rank, bias=False)
            init_linear(self.vlm_down)
            init_linear(self.dino_down)
            self.pos = GridPositionEmbedding(n_patches, rank) if pos_emb else None
            if spatial:
                self.vlm_pool = AttentionPool(n_tokens, rank)
                self.dino_pool = AttentionPool(n_tokens, rank)
                self.token_emb = None
            else:
                self.token_emb = normal_param(n_tokens, width, std=0.02)  # [N, 2r]
            self.blocks = nn.ModuleList(
                PreNormResidual(width, MLP(width, hidden_dims[i], dropout, out_gain=gain), dropout)
                for i in range(depth)
            )
            self.norm = nn.LayerNorm(width)
            self.up = nn.Linear(width, out_dim)
            init_linear(self.up, gain=out_init_scale)

    def _forward(self, vlm, dino, vlm_mask):
        v = self.vlm_down(self.vlm_norm(vlm))  # [B, T, r]
        d = self.dino_down(self.dino_norm(dino))  # [B, P, r]
        if self.pos is not None:
            d = d + self.pos()
        if self.token_emb is None:
            x = torch.cat([self.vlm_pool(v, vlm_mask) * self.vlm_weight, self.dino_pool(d) * self.dino_weight], -1)
        else:
            v, d = masked_mean(v, vlm_mask), d.mean(dim=1, keepdim=True)  # [B, 1, r] each
            x = torch.cat([v * self.vlm_weight, d * self.dino_weight], dim=-1) + self.token_emb  # [B, N, 2r]
        for block in self.blocks:
            x = block(x)
        return self.up(self.norm(x))  # [B, N, out_dim]
