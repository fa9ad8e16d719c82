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

from torch import nn

from c2bridge.adapters.base import Adapter, BudgetSpec, compact, per_block, register_to_config, seeded
from c2bridge.adapters.layers import MLP, PreNormResidual, StreamPooling, init_linear
from c2bridge.adapters.registry import register


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


@register
class BottleneckAdapter(StreamPooling, Adapter):
    """Compress each stream, pool per output token, fuse with Mixer blocks, expand. ffn_dim solved by budget."""

    kind = "bottleneck"
    budget_spec = BudgetSpec(width="width", depth="depth", free="ffn_dim", free_ratio=4.0, heads=False)

    @register_to_config
    def __init__(
        self,
        width: int = 512,  # fusion width W; each stream is compressed to W // 2
        depth: int = 2,  # Mixer fusion blocks
        ffn_dim: int | list[int] | None = None,  # channel-MLP hidden width (or one per block; None: 4 * width)
        spatial: bool = True,  # per-output-token attention pooling (False: the plan's mean pooling)
        **options,  # the options every kind takes (dims, dropout, stream_weights, seed, ...): see Adapter
    ):
        super().__init__(**options)
        if width < 2 or width % 2 or depth < 1:
            raise ValueError(f"width must be even and >= 2, depth >= 1; got width={width}, depth={depth}")
        ffn_dims = per_block(4 * width if ffn_dim is None else ffn_dim, depth, "ffn_dim")
        self.register_to_config(ffn_dim=compact(ffn_dims))
        cfg = self.config
        b, dropout = width // 2, cfg["dropout"]
        gain = (2 * depth) ** -0.5
        with seeded(cfg["seed"]):
            self.vlm_compress = Compressor(cfg["vlm_dim"], b)
            self.dino_compress = Compressor(cfg["dino_dim"], b)
            self.add_stream_pooling(cfg["n_tokens"], cfg["n_patches"], b, spatial, cfg["pos_emb"],
                                    cfg["stream_weights"])
            self.blocks = nn.ModuleList(
                nn.Sequential(
                    PreNormResidual(width, TokenMix(cfg["n_tokens"], gain), dropout),
                    PreNormResidual(width, MLP(width, ffn_dims[i], dropout, out_gain=gain), dropout),
                )
                for i in range(depth)
            )
            self.norm = nn.LayerNorm(width)
            self.expand = nn.Linear(width, cfg["out_dim"])
            init_linear(self.expand, gain=cfg["out_init_scale"])

    def _forward(self, vlm, dino, vlm_mask):
        x = self.pool_streams(self.vlm_compress(vlm), self.dino_compress(dino), vlm_mask)  # [B, N, W]
        for block in self.blocks:
            x = block(x)
        return self.expand(self.norm(x))  # [B, N, out_dim]
