"""Mixture-of-experts adapter (the plan's pivot 8.4).

The query adapter's backbone with every block's MLP replaced by `n_experts` expert MLPs and a top-k router
(default 8 experts, top-2). Routing is per output token by default (`routing="token"`); `routing="sample"` routes
all tokens of a sample to the same k experts, from the mean router logits (the plan's "top-2 per sample").
Gates are the softmax router probabilities of the chosen experts, renormalized over the k (Mixtral-style).
No capacity limit: no token is ever dropped, so outputs do not depend on the rest of the batch.

`aux_loss` is the Switch Transformer load-balancing loss, averaged over the MoE layers:
``n_experts * sum_e f_e * P_e`` with f_e the fraction of routing assignments that went to expert e and P_e its
mean router probability (1.0 when perfectly balanced). Add it to the training loss with a small weight (~0.01).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from c2bridge.adapters.base import Adapter, BudgetSpec, compact, default_heads, per_block, register_to_config, seeded
from c2bridge.adapters.layers import MLP, init_linear, normal_param
from c2bridge.adapters.query import QueryBackbone
from c2bridge.adapters.registry import register


class MoEMLP(nn.Module):
    """Top-k routed expert MLPs (Linear -> GELU -> Linear per expert) over the tokens of [B, N, W]."""

    def __init__(self, width: int, expert_dim: int, n_experts: int, top_k: int, dropout: float, routing: str,
                 out_gain: float = 1.0, shared_dim: int = 0):
        super().__init__()
        # optional always-active dense expert (DeepSeekMoE-style); the budget solver sizes it to absorb the
        # remainder that whole expert units leave (< n_experts hidden units per block)
        self.shared = MLP(width, shared_dim, dropout, out_gain=out_gain) if shared_dim > 0 else None
        self.n_experts, self.top_k, self.routing = n_experts, top_k, routing
        self.router = nn.Linear(width, n_experts, bias=False)
        init_linear(self.router)  # random router: tokens spread over experts from the first step
        self.w1 = normal_param(n_experts, width, expert_dim, std=width ** -0.5)  # [E, W, F]
        self.b1 = nn.Parameter(torch.zeros(n_experts, expert_dim))  # [E, F]
        self.w2 = normal_param(n_experts, expert_dim, width, std=out_gain * expert_dim ** -0.5)
        self.b2 = nn.Parameter(torch.zeros(n_experts, width))  # [E, W]
        self.drop = nn.Dropout(dropout)
        self.last_aux: torch.Tensor | None = None

    @property
    def params_per_expert(self) -> int:
        return self.w1[0].numel() + self.b1[0].numel() + self.w2[0].numel() + self.b2[0].numel()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, N, W = x.shape
        E, k = self.n_experts, self.top_k
        logits = self.router(x).float()  # [B, N, E]
        if self.routing == "sample":
            logits = logits.mean(dim=1, keepdim=True)  # [B, 1, E]: one routing decision per sample
        probs = logits.softmax(dim=-1)
        top_p, top_i = probs.topk(k, dim=-1)  # [B, N|1, k]
        gates = top_p / top_p.sum(dim=-1, keepdim=True)

        # Switch load-balancing loss over the routing units (tokens or samples)
        assigned = F.one_hot(top_i.reshape(-1, k), E).sum(dim=1).float()  # [units, E]
        frac = assigned.mean(dim=0) / k  # f_e, sums to 1
        mean_prob = probs.reshape(-1, E).mean(dim=0)  # P_e
        self.last_aux = E * (frac * mean_prob).sum()

        top_i = top_i.expand(B, N, k).reshape(-1)  # [B*N*k] expert of each (token, slot)
        gates = gates.expand(B, N, k).reshape(-1).to(x.dtype)
        flat = x.reshape(B * N, W)
        order = torch.argsort(top_i, stable=True)  # group (token, slot) pairs by expert
        if top_i.is_meta:  # shape-only run (FLOP counting): every (token, slot) pair still meets exactly one
            counts = [len(range(e, top_i.numel(), E)) for e in range(E)]  # expert, so any split gives the same cost
        else:
            counts = torch.bincount(top_i, minlength=E).tolist()  # one host sync per layer
        token_of = order // k
        out = torch.zeros_like(flat)
        start = 0
        for e, count in enumerate(counts):
            if count == 0:
                continue
            sel = order[start:start + count]
            tok = token_of[start:start + count]
            start += count
            h = self.drop(F.gelu(flat[tok] @ self.w1[e] + self.b1[e]))  # [count, F]
            y = (h @ self.w2[e] + self.b2[e]) * gates[sel, None]  # [count, W]
            out.index_add_(0, tok, y)
        out = out.view(B, N, W)
        return out if self.shared is None else out + self.shared(x)


@register
class MoEAdapter(Adapter):
    """Query backbone with top-k expert MLPs. Budget: width/depth by rule, expert_dim solved (total params)."""

    kind = "moe"
    budget_spec = BudgetSpec(width="width", depth="depth", free="expert_dim", fine="shared_dim", free_ratio=2.0,
                             heads=True)

    @register_to_config
    def __init__(
        self,
        width: int = 320,  # model width
        depth: int = 2,  # decoder blocks (each with an MoE MLP)
        expert_dim: int | list[int] | None = None,  # hidden width of each expert, or one per block
        # (None: 2 * width, so top-2 computes like one 4x FFN)
        shared_dim: int | list[int] = 0,  # hidden width of an always-active shared expert per block (0: none)
        n_experts: int = 8,  # experts per MoE layer
        top_k: int = 2,  # experts used per routing unit
        routing: str = "token",  # "token" (each output token routed) or "sample" (one decision per sample)
        n_heads: int | None = None,  # attention heads (None: width // 64, at least 1)
        type_emb: bool = True,  # learned stream-type embedding (vlm / dino)
        **options,  # the options every kind takes (dims, dropout, stream_weights, seed, ...): see Adapter
    ):
        super().__init__(**options)
        expert_dims = per_block(2 * width if expert_dim is None else expert_dim, depth, "expert_dim")
        shared_dims = list(shared_dim) if isinstance(shared_dim, (list, tuple)) else [shared_dim] * depth
        if len(shared_dims) != depth or not all(isinstance(d, int) and d >= 0 for d in shared_dims):
            raise ValueError(f"shared_dim must be an int >= 0 or a list of {depth} of them, got {shared_dim!r}")
        if routing not in ("token", "sample"):
            raise ValueError(f"routing must be 'token' or 'sample', got {routing!r}")
        if not 1 <= top_k <= n_experts:
            raise ValueError(f"top_k must be in [1, n_experts={n_experts}], got {top_k}")
        self.register_to_config(expert_dim=compact(expert_dims), shared_dim=compact(shared_dims),
                                n_heads=default_heads(width, n_heads))
        cfg = self.config
        with seeded(cfg["seed"]):
            self.backbone = QueryBackbone(
                cfg, lambda i, gain: MoEMLP(width, expert_dims[i], n_experts, top_k, cfg["dropout"], routing, gain,
                                            shared_dims[i])
            )
        self._moe_layers = [m for m in self.modules() if isinstance(m, MoEMLP)]

    @property
    def active_params(self) -> int:
        """Trainable params used per routing unit: everything except the (n_experts - top_k) unchosen experts."""
        unused = sum((m.n_experts - m.top_k) * m.params_per_expert for m in self._moe_layers)
        return self.num_params - unused

    def _forward(self, vlm, dino, vlm_mask):
        cond = self.backbone(vlm, dino, vlm_mask)
        self._aux_loss = torch.stack([m.last_aux for m in self._moe_layers]).mean()
        return cond
