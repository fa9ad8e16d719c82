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

from torch import nn

from c2bridge.adapters.base import Adapter, BudgetSpec, compact, per_block, register_to_config, seeded
from c2bridge.adapters.layers import MLP, PreNormResidual, StreamPooling, init_linear
from c2bridge.adapters.registry import register


@register
class LoRAAdapter(StreamPooling, Adapter):
    """Low-rank per-stream bridge. Budget: rank/depth by rule, hidden_dim (rank-space MLP) solved."""

    kind = "lora"
    budget_spec = BudgetSpec(width="rank", depth="depth", free="hidden_dim", free_ratio=8.0, heads=False,
                             width_factor=0.5)

    @register_to_config
    def __init__(
        self,
        rank: int = 256,  # rank r of each stream's down projection (rank space is 2r wide after concat)
        depth: int = 2,  # residual MLP blocks in rank space
        hidden_dim: int | list[int] | None = None,  # rank-space MLP hidden width, or one per block (None: 4 * 2r)
        spatial: bool = True,  # per-output-token attention pooling (False: the plan's mean pooling)
        **options,  # the options every kind takes (dims, dropout, stream_weights, seed, ...): see Adapter
    ):
        super().__init__(**options)
        if rank < 1 or depth < 1:
            raise ValueError(f"rank and depth must be >= 1; got rank={rank}, depth={depth}")
        hidden_dims = per_block(8 * rank if hidden_dim is None else hidden_dim, depth, "hidden_dim")
        self.register_to_config(hidden_dim=compact(hidden_dims))
        cfg = self.config
        width, dropout = 2 * rank, cfg["dropout"]
        gain = depth ** -0.5
        with seeded(cfg["seed"]):
            self.vlm_norm = nn.LayerNorm(cfg["vlm_dim"], elementwise_affine=False)
            self.dino_norm = nn.LayerNorm(cfg["dino_dim"], elementwise_affine=False)
            self.vlm_down = nn.Linear(cfg["vlm_dim"], rank, bias=False)
            self.dino_down = nn.Linear(cfg["dino_dim"], rank, bias=False)
            init_linear(self.vlm_down)
            init_linear(self.dino_down)
            self.add_stream_pooling(cfg["n_tokens"], cfg["n_patches"], rank, spatial, cfg["pos_emb"],
                                    cfg["stream_weights"])
            self.blocks = nn.ModuleList(
                PreNormResidual(width, MLP(width, hidden_dims[i], dropout, out_gain=gain), dropout)
                for i in range(depth)
            )
            self.norm = nn.LayerNorm(width)
            self.up = nn.Linear(width, cfg["out_dim"])
            init_linear(self.up, gain=cfg["out_init_scale"])

    def _forward(self, vlm, dino, vlm_mask):
        v = self.vlm_down(self.vlm_norm(vlm))  # [B, T, r]
        d = self.dino_down(self.dino_norm(dino))  # [B, P, r]
        x = self.pool_streams(v, d, vlm_mask)  # [B, N, 2r]
        for block in self.blocks:
            x = block(x)
        return self.up(self.norm(x))  # [B, N, out_dim]
