"""Query adapter (the plan's E2.1 baseline, a Q-Former/DETR-style decoder).

n_tokens learned queries read the concatenated, projected streams through `depth` pre-norm decoder blocks
(self-attention over the queries, cross-attention to the context with a key-padding mask, MLP), then a final
LayerNorm and a projection to out_dim. The first block has no self-attention: over the input-independent learned
queries it would compute a constant, which the queries themselves already are.
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


class DecoderBlock(nn.Module):
    """[self-attention] -> cross-attention(context, key mask) -> MLP, each pre-norm residual."""

    def __init__(self, width: int, n_heads: int, mlp: nn.Module, dropout: float, self_attn: bool, out_gain: float):
        super().__init__()
        self.self_attn = (
            PreNormResidual(width, SelfAttention(width, n_heads, dropout, out_gain), dropout) if self_attn else None
        )
        self.cross_attn = PreNormResidual(width, Attention(width, n_heads, dropout, out_gain), dropout)
        self.mlp = PreNormResidual(width, mlp, dropout)

    def forward(self, x, context, key_mask):  # x [B, N, W], context [B, S, W], key_mask [B, S] or None
        if self.self_attn is not None:
            x = self.self_attn(x)
        x = self.cross_attn(x, context, key_mask)
        return self.mlp(x)


class QueryBackbone(nn.Module):
    """Streams -> learned queries -> decoder blocks -> LayerNorm -> out projection. Shared by query and moe."""

    def __init__(self, cfg: dict, mlp_factory):
        super().__init__()
        width, depth, n_heads = cfg["width"], cfg["depth"], cfg["n_heads"]
        if depth < 1 or width < 1:
            raise ValueError(f"width and depth must be >= 1, got width={width}, depth={depth}")
        out_gain = (2 * depth) ** -0.5  # residual branches scaled down with depth (GPT-2 style) for stability
        self.streams = StreamEncoder(
            cfg["vlm_dim"], cfg["dino_dim"], width, cfg["n_patches"], cfg["stream_weights"], cfg["pos_emb"],
            cfg["type_emb"],
        )
        self.queries = normal_param(cfg["n_tokens"], width, std=1.0)  # [N, W]
        self.blocks = nn.ModuleList(
            DecoderBlock(width, n_heads, mlp_factory(i, out_gain), cfg["dropout"], self_attn=i > 0, out_gain=out_gain)
            for i in range(depth)
        )
        self.norm = nn.LayerNorm(width)
        self.out_proj = nn.Linear(width, cfg["out_dim"])
        init_linear(self.out_proj, gain=cfg["out_init_scale"])

    def forward(self, vlm, dino, vlm_mask):
        context, key_mask = self.streams(vlm, dino, vlm_mask)  # [B, T+P, W], [B, T+P]
        x = self.queries.expand(vlm.shape[0], -1, -1)  # [B, N, W]
        for block in self.blocks:
            x = block(x, context, key_mask)
        return self.out_proj(self.norm(x))  # [B, N, out_dim]


@register
class QueryAdapter(Adapter):
    """Learned queries cross-attending to both streams. Budget: width/depth by rule, ffn_dim solved."""

    kind = "query"
    budget_spec = BudgetSpec()  # the defaults: width and depth by rule, n_heads = width // head_dim, ffn_dim solved

    @register_to_config
    def __init__(
        self,
        width: int = 384,  # model width
        depth: int = 2,  # decoder blocks
        ffn_dim: int | list[int] | None = None,  # MLP hidden width, or one per block (None: 4 * width)
        n_heads: int | None = None,  # attention heads (None: width // 64, at least 1)
        type_emb: bool = True,  # learned stream-type embedding (vlm / dino)
        **options,  # the options every kind takes (dims, dropout, stream_weights, seed, ...): see Adapter
    ):
        super().__init__(**options)
        ffn_dims = per_block(4 * width if ffn_dim is None else ffn_dim, depth, "ffn_dim")
        self.register_to_config(ffn_dim=compact(ffn_dims), n_heads=default_heads(width, n_heads))
        cfg = self.config
        with seeded(cfg["seed"]):
            self.backbone = QueryBackbone(
                cfg, lambda i, gain: MLP(width, ffn_dims[i], cfg["dropout"], out_gain=gain)
            )

    def _forward(self, vlm, dino, vlm_mask):
        return self.backbone(vlm, dino, vlm_mask)
