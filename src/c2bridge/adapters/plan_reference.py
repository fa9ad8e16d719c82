"""The plan's adapter sketches (c2-adapter-bridging-plan.md §5, E2.1 and E2.2), written as described there.

Kept for two uses only: measuring what the plan's configurations really cost (`plan_param_counts`, checked in
tests/adapters/test_plan_reference.py and quoted in docs/adapters.md) and the side-by-side step benchmark
(benchmarks/adapter_step.py). Not registered as adapter kinds: they ignore the VLM padding mask, and the
bottleneck/LoRA sketches mean-pool away every spatial token.

The only addition is `ScalableQueryAdapter(dim_feedforward=...)` (the plan hard-codes 4 * hidden_dim), so the
benchmark can size the reference to exactly the parameter count of our 10M query adapter.
"""
from __future__ import annotations

import torch
from torch import nn


class ScalableQueryAdapter(nn.Module):
    """E2.1: learned queries + nn.TransformerDecoderLayer stack (post-norm, torch defaults)."""

    def __init__(self, vlm_dim=3584, dino_dim=1024, ltx_dim=4096, hidden_dim=512, n_layers=2, n_queries=77,
                 dim_feedforward: int | None = None):
        super().__init__()
        self.vlm_proj = nn.Linear(vlm_dim, hidden_dim)
        self.dino_proj = nn.Linear(dino_dim, hidden_dim)
        self.queries = nn.Parameter(torch.randn(n_queries, hidden_dim) * 0.02)
        self.layers = nn.ModuleList([
            nn.TransformerDecoderLayer(
                d_model=hidden_dim,
                nhead=max(1, hidden_dim // 64),
                dim_feedforward=dim_feedforward or hidden_dim * 4,
                batch_first=True,
            )
            for _ in range(n_layers)
        ])
        self.out_proj = nn.Linear(hidden_dim, ltx_dim)

    def forward(self, vlm_features, dino_features):
        B = vlm_features.size(0)
        vlm = self.vlm_proj(vlm_features)
        dino = self.dino_proj(dino_features)
        context = torch.cat([vlm, dino], dim=1)
        queries = self.queries.unsqueeze(0).expand(B, -1, -1)
        for layer in self.layers:
            queries = layer(queries, context)
        return self.out_proj(queries)


class BottleneckAdapter(nn.Module):
    """E2.2 B as sketched: mean-pooled streams, then Linear(512, 78848) and Linear(78848, 315392)."""

    def __init__(self, vlm_dim=3584, dino_dim=1024, ltx_dim=4096, bottleneck_dim=128, n_tokens=77):
        super().__init__()
        self.vlm_compress = nn.Sequential(nn.Linear(vlm_dim, 512), nn.GELU(), nn.Linear(512, bottleneck_dim))
        self.dino_compress = nn.Sequential(nn.Linear(dino_dim, 512), nn.GELU(), nn.Linear(512, bottleneck_dim))
        self.fusion = nn.Sequential(nn.Linear(bottleneck_dim * 2, 512), nn.GELU(), nn.Linear(512, 512))
        self.expand = nn.Sequential(
            nn.Linear(512, n_tokens * ltx_dim // 4),
            nn.GELU(),
            nn.Linear(n_tokens * ltx_dim // 4, n_tokens * ltx_dim),
        )

    def forward(self, vlm_features, dino_features):
        vlm = self.vlm_compress(vlm_features.mean(1))
        dino = self.dino_compress(dino_features.mean(1))
        fused = self.fusion(torch.cat([vlm, dino], dim=-1))
        out = self.expand(fused)
        return out.view(out.size(0), 77, -1)


class LoRAAdapter(nn.Module):
    """E2.2 C as sketched (vlm_up/dino_up are built but unused by its forward)."""

    def __init__(self, vlm_dim=3584, dino_dim=1024, ltx_dim=4096, rank=64, n_tokens=77):
        super().__init__()
        self.vlm_down = nn.Linear(vlm_dim, rank, bias=False)
        self.vlm_up = nn.Linear(rank, ltx_dim, bias=False)
        self.dino_down = nn.Linear(dino_dim, rank, bias=False)
        self.dino_up = nn.Linear(rank, ltx_dim, bias=False)
        self.query_gen = nn.Linear(rank * 2, n_tokens * ltx_dim)

    def forward(self, vlm_features, dino_features):
        vlm_low = self.vlm_down(vlm_features.mean(1))
        dino_low = self.dino_down(dino_features.mean(1))
        combined = torch.cat([vlm_low, dino_low], dim=-1)
        out = self.query_gen(combined)
        return out.view(out.size(0), 77, -1)


class PerceiverAdapter(nn.Module):
    """E2.2 D as sketched (no norms, no MLPs)."""

    def __init__(self, vlm_dim=3584, dino_dim=1024, ltx_dim=4096, latent_dim=256, n_latents=77, n_iterations=3):
        super().__init__()
        self.latents = nn.Parameter(torch.randn(n_latents, latent_dim) * 0.02)
        self.vlm_proj = nn.Linear(vlm_dim, latent_dim)
        self.dino_proj = nn.Linear(dino_dim, latent_dim)
        self.cross_attns = nn.ModuleList([nn.MultiheadAttention(latent_dim, 4, batch_first=True)
                                          for _ in range(n_iterations)])
        self.self_attns = nn.ModuleList([nn.MultiheadAttention(latent_dim, 4, batch_first=True)
                                         for _ in range(n_iterations)])
        self.out_proj = nn.Linear(latent_dim, ltx_dim)

    def forward(self, vlm_features, dino_features):
        B = vlm_features.size(0)
        context = torch.cat([self.vlm_proj(vlm_features), self.dino_proj(dino_features)], dim=1)
        x = self.latents.unsqueeze(0).expand(B, -1, -1)
        for cross_attn, self_attn in zip(self.cross_attns, self.self_attns):
            x = x + cross_attn(x, context, context)[0]
            x = x + self_attn(x, x, x)[0]
        return self.out_proj(x)


# The plan's E2.1 table: scale -> (hidden_dim, n_layers)
PLAN_QUERY_TABLE = {"5m": (256, 2), "10m": (384, 2), "20m": (512, 3), "50m": (768, 4), "100m": (1024, 4)}


def count(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters() if p.requires_grad)


def plan_param_counts() -> dict[str, int]:
    """Exact parameter counts of the plan's configurations, from meta-device builds (no memory used)."""
    counts = {}
    with torch.device("meta"):
        for scale, (hidden, layers) in PLAN_QUERY_TABLE.items():
            counts[f"query_{scale}"] = count(ScalableQueryAdapter(hidden_dim=hidden, n_layers=layers))
        counts["bottleneck"] = count(BottleneckAdapter())
        counts["lora"] = count(LoRAAdapter())
        counts["perceiver"] = count(PerceiverAdapter())
    return counts
