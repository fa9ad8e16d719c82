"""Building blocks shared by the adapter kinds: stream encoders, pre-norm attention/MLP blocks, pooling.

Conventions: B batch, T VLM tokens (padded), P DINOv2 patches, N output tokens, W width.
Key masks are bool ``[B, S]`` with True = a real token that may be attended to.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


def lecun_normal_(weight: torch.Tensor, gain: float = 1.0) -> None:
    """N(0, gain²/fan_in): unit-variance inputs give ~gain-variance outputs whatever the dims (scale-free init)."""
    if weight.is_meta:  # shape-only build: nothing to initialize
        return
    fan_in = weight.shape[-1]
    nn.init.normal_(weight, 0.0, gain / math.sqrt(fan_in))


def normal_param(*shape: int, std: float) -> nn.Parameter:
    """A parameter drawn from N(0, std²); left uninitialized on the meta device (counting/loading builds,
    where random init would only cost time)."""
    param = nn.Parameter(torch.empty(*shape))
    if not param.is_meta:
        nn.init.normal_(param, 0.0, std)
    return param


def init_linear(layer: nn.Linear, gain: float = 1.0) -> None:
    lecun_normal_(layer.weight, gain)
    if layer.bias is not None and not layer.bias.is_meta:
        nn.init.zeros_(layer.bias)


def key_mask_to_sdpa(key_mask: torch.Tensor | None) -> torch.Tensor | None:
    """[B, S] bool (True = attend) -> [B, 1, 1, S] bool, broadcast over heads and queries by SDPA."""
    if key_mask is None:
        return None
    return key_mask[:, None, None, :]


class Attention(nn.Module):
    """Multi-head attention with separate query and key/value inputs, via ``scaled_dot_product_attention``.

    Self-attention is ``attn(x, x)``. Inputs are expected to be normalized by the caller (pre-norm blocks).
    """

    def __init__(self, width: int, n_heads: int, dropout: float = 0.0, out_gain: float = 1.0):
        super().__init__()
        if width % n_heads:
            raise ValueError(f"width {width} must be divisible by n_heads {n_heads}")
        self.n_heads = n_heads
        self.dropout = dropout
        self.q = nn.Linear(width, width)
        self.kv = nn.Linear(width, 2 * width)
        self.out = nn.Linear(width, width)
        init_linear(self.q)
        init_linear(self.kv)
        init_linear(self.out, out_gain)

    def forward(self, x: torch.Tensor, context: torch.Tensor, key_mask: torch.Tensor | None = None) -> torch.Tensor:
        B, N, W = x.shape  # [B, N, W]
        S = context.shape[1]  # [B, S, W]
        h = self.n_heads
        q = self.q(x).view(B, N, h, W // h).transpose(1, 2)  # [B, h, N, W/h]
        k, v = self.kv(context).view(B, S, 2, h, W // h).permute(2, 0, 3, 1, 4)  # 2 x [B, h, S, W/h]
        out = F.scaled_dot_product_attention(
            q, k, v, attn_mask=key_mask_to_sdpa(key_mask), dropout_p=self.dropout if self.training else 0.0
        )  # [B, h, N, W/h]
        return self.out(out.transpose(1, 2).reshape(B, N, W))


class SelfAttention(nn.Module):
    """Attention of the (normalized) tokens to themselves: ``attn(x, x)``, for pre-norm residual blocks."""

    def __init__(self, width: int, n_heads: int, dropout: float = 0.0, out_gain: float = 1.0):
        super().__init__()
        self.attn = Attention(width, n_heads, dropout, out_gain)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.attn(x, x)


class MLP(nn.Module):
    """Linear -> GELU -> dropout -> Linear (the transformer FFN)."""

    def __init__(self, width: int, hidden: int, dropout: float = 0.0, out_width: int | None = None,
                 out_gain: float = 1.0):
        super().__init__()
        self.fc1 = nn.Linear(width, hidden)
        self.fc2 = nn.Linear(hidden, out_width or width)
        self.drop = nn.Dropout(dropout)
        init_linear(self.fc1)
        init_linear(self.fc2, out_gain)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.drop(F.gelu(self.fc1(x))))


class PreNormResidual(nn.Module):
    """x + dropout(fn(LayerNorm(x), ...)): the pre-norm residual wrapper used by every block."""

    def __init__(self, width: int, fn: nn.Module, dropout: float = 0.0):
        super().__init__()
        self.norm = nn.LayerNorm(width)
        self.fn = fn
        self.drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, *args, **kwargs) -> torch.Tensor:
        return x + self.drop(self.fn(self.norm(x), *args, **kwargs))


class StreamEncoder(nn.Module):
    """Projects both feature streams to a shared width and concatenates them into one context.

    VLM:  LayerNorm(no affine) -> Linear(vlm_dim, W) -> x vlm_weight (+ type embedding)        # [B, T, W]
    DINO: LayerNorm(no affine) -> Linear(dino_dim, W) -> x dino_weight (+ type + 2-D position)  # [B, P, W]

    The input LayerNorm tames Qwen's large-magnitude hidden states (its affine would be absorbed by the Linear,
    so it has none). The stream weights (plan §3.4: VLM 0.3 / DINOv2 0.7) scale the projected tokens *after*
    the only normalization, so they survive: they shrink both the keys (flatter attention to that stream) and the
    values (smaller contribution) of the down-weighted stream. Position embeddings are factorized (row + column,
    sqrt(P) each) over the DINOv2 patch grid.
    """

    def __init__(self, vlm_dim: int, dino_dim: int, width: int, n_patches: int, stream_weights=(0.3, 0.7),
                 pos_emb: bool = True, type_emb: bool = True):
        super().__init__()
        self.vlm_norm = nn.LayerNorm(vlm_dim, elementwise_affine=False)
        self.dino_norm = nn.LayerNorm(dino_dim, elementwise_affine=False)
        self.vlm_proj = nn.Linear(vlm_dim, width)
        self.dino_proj = nn.Linear(dino_dim, width)
        init_linear(self.vlm_proj)
        init_linear(self.dino_proj)
        self.weights = StreamWeights(stream_weights)
        self.type_emb = normal_param(2, width, std=0.02) if type_emb else None  # [2, W]: vlm, dino
        self.pos = position_embedding(pos_emb, n_patches, width)
        self.n_patches = n_patches

    def forward(self, vlm: torch.Tensor, dino: torch.Tensor, vlm_mask: torch.Tensor | None):
        w_vlm, w_dino = self.weights()
        v = self.vlm_proj(self.vlm_norm(vlm)) * w_vlm  # [B, T, W]
        d = self.dino_proj(self.dino_norm(dino)) * w_dino  # [B, P, W]
        if self.type_emb is not None:
            v = v + self.type_emb[0]
            d = d + self.type_emb[1]
        positions = patch_positions(self.pos, d.shape[1], self.n_patches, d)
        if positions is not None:
            d = d + positions
        context = torch.cat([v, d], dim=1)  # [B, T+P, W] (P -> F*P for space-time clips)
        if vlm_mask is None:
            return context, None
        # DINOv2 keys are always real, so every row of the key mask has a True: attention never sees an
        # all-masked row (which would give NaN) even when a sample has no VLM tokens at all.
        dino_mask = torch.ones(dino.shape[:2], dtype=torch.bool, device=vlm_mask.device)
        return context, torch.cat([vlm_mask, dino_mask], dim=1)  # [B, T+P]


class StreamWeights(nn.Module):
    """The (vlm, dino) stream scales: fixed numbers, or ``"learned"``: one trained gate g = sigmoid(a), vlm g and
    dino 1 - g, starting at g = 0.3 (the fixed default)."""

    def __init__(self, stream_weights):
        super().__init__()
        self.learned = stream_weights == "learned"
        if self.learned:
            self.gate = nn.Parameter(torch.full((), math.log(0.3 / 0.7)))  # logit of the initial vlm weight
        else:
            self.fixed = tuple(float(w) for w in stream_weights)

    def forward(self):
        if not self.learned:
            return self.fixed
        g = torch.sigmoid(self.gate)
        return g, 1 - g

    def extra_repr(self) -> str:
        return "learned gate" if self.learned else f"fixed {self.fixed}"


def position_embedding(pos_emb, n_patches: int, width: int) -> "GridPositionEmbedding | None":
    """``pos_emb`` option -> the DINOv2 patch position embedding: True / "learned" (trained), "sincos" (fixed),
    False / "none" (no position information)."""
    if pos_emb in (False, "none", None):
        return None
    return GridPositionEmbedding(n_patches, width, learned=pos_emb != "sincos")


def patch_positions(pos: "GridPositionEmbedding | None", n_tokens: int, n_patches: int,
                    like: torch.Tensor) -> torch.Tensor | None:
    """Position embeddings ``[n_tokens, W]`` of a DINOv2 token set: one image's P patches, or (space-time clips)
    F frames of P patches, frame-major. Each patch gets its 2-D grid embedding (``pos``, if any); with F > 1 each
    frame's tokens also get a fixed 1-D sin-cos embedding of the frame index (rms ``SINCOS_RMS``, no parameters,
    any F), so the adapter can tell the frames apart. None: nothing to add."""
    if n_tokens % n_patches:
        raise ValueError(f"{n_tokens} DINOv2 tokens are not whole frames of {n_patches} patches")
    frames, width = n_tokens // n_patches, like.shape[-1]
    grid = pos().repeat(frames, 1) if pos is not None else None  # [F*P, W]
    if frames == 1:
        return grid
    time = sincos_table(frames, width, scale=SINCOS_RMS).to(like.device, like.dtype)  # [F, W]
    time = time.repeat_interleave(n_patches, 0)  # [F*P, W]
    return time if grid is None else grid + time


SINCOS_RMS = 0.5  # rms of the initial position table per token (projected DINOv2 tokens: ~0.7 at stream weight 0.7)


def sincos_table(n: int, dim: int, scale: float = 1.0) -> torch.Tensor:
    """[n, dim] sin/cos features of positions 0..n-1 (MAE-style frequencies), rms ``scale`` per row."""
    if dim < 2:
        return torch.zeros(n, dim)
    half = dim // 2
    freqs = 1.0 / (max(n, 2) ** (torch.arange(half, dtype=torch.float32) / max(half, 1)))  # slowest ~ 1/n
    angles = torch.arange(n, dtype=torch.float32)[:, None] * freqs[None, :] * math.pi / 2  # [n, half]
    table = torch.zeros(n, dim)
    table[:, :half], table[:, half : 2 * half] = angles.sin(), angles.cos()
    return table * scale * math.sqrt(2.0)  # sin² + cos² = 1 per pair -> per-row rms = scale·sqrt(2·half/dim)


class GridPositionEmbedding(nn.Module):
    """Learned 2-D position embedding for a square patch grid, factorized as row + column: 2*sqrt(P)*W params.

    Initialized as a 2-D sin-cos table (rows in the first half of the channels, columns in the second) rather than
    near zero, so the adapter can tell patches apart from its first step (tiny adapters otherwise spend most of a
    short run discovering position)."""

    def __init__(self, n_patches: int, width: int, learned: bool = True):
        super().__init__()
        side = math.isqrt(n_patches)
        if side * side != n_patches:
            raise ValueError(
                f"2-D position embeddings need a square DINOv2 patch grid; n_patches={n_patches} is not a square "
                "(pass pos_emb=False)"
            )
        self.side = side
        if not learned:  # "sincos": the 2-D sin-cos table below, fixed (a buffer saved with the weights, not trained)
            rows, cols = torch.zeros(side, width), torch.zeros(side, width)
            if not rows.is_meta:
                table = sincos_table(side, width // 2, scale=SINCOS_RMS)
                rows[:, : width // 2], cols[:, width // 2 : 2 * (width // 2)] = table, table
            self.register_buffer("rows", rows)  # [sqrt(P), W]
            self.register_buffer("cols", cols)  # [sqrt(P), W]
            return
        self.rows = normal_param(side, width, std=0.02)  # [sqrt(P), W]
        self.cols = normal_param(side, width, std=0.02)  # [sqrt(P), W]
        if not self.rows.is_meta:
            with torch.no_grad():  # start from a 2-D sin-cos table: position is readable from step 0
                table = sincos_table(side, width // 2, scale=SINCOS_RMS)  # [sqrt(P), W//2]
                self.rows[:, : width // 2] = table
                self.cols[:, width // 2 : 2 * (width // 2)] = table

    def forward(self) -> torch.Tensor:
        # patch p = row * side + col (row-major, as DINOv2 orders its patch tokens)
        return (self.rows[:, None, :] + self.cols[None, :, :]).reshape(self.side * self.side, -1)  # [P, W]


class AttentionPool(nn.Module):
    """N learned queries pool a token set by single-head dot-product attention (no projections), with a learned
    null token that is always attendable, so a set whose tokens are all masked pools to the null token (finite).

    Keeps per-token information that a mean would destroy: each output token can select different patches.
    """

    def __init__(self, n_queries: int, width: int):
        super().__init__()
        self.queries = normal_param(n_queries, width, std=width ** -0.5)  # [N, W]
        self.null = nn.Parameter(torch.zeros(1, width))  # [1, W]

    def forward(self, tokens: torch.Tensor, key_mask: torch.Tensor | None = None) -> torch.Tensor:
        B = tokens.shape[0]
        keys = torch.cat([self.null.expand(B, 1, -1).to(tokens.dtype), tokens], dim=1)  # [B, 1+S, W]
        if key_mask is not None:
            key_mask = torch.cat([torch.ones(B, 1, dtype=torch.bool, device=key_mask.device), key_mask], dim=1)
        q = self.queries.to(tokens.dtype).expand(B, -1, -1)[:, None]  # [B, 1, N, W]
        out = F.scaled_dot_product_attention(q, keys[:, None], keys[:, None], attn_mask=key_mask_to_sdpa(key_mask))
        return out[:, 0]  # [B, N, W]


def masked_mean(tokens: torch.Tensor, key_mask: torch.Tensor | None) -> torch.Tensor:
    """Mean over real tokens -> [B, 1, W]; a set with no real tokens gives zeros (not NaN)."""
    if key_mask is None:
        return tokens.mean(dim=1, keepdim=True)
    weights = key_mask.to(tokens.dtype)[..., None]  # [B, S, 1]
    return (tokens * weights).sum(1, keepdim=True) / weights.sum(1, keepdim=True).clamp(min=1.0)


class StreamPooling:
    """Mixin for the kinds that pool each stream down to the N output tokens before fusing them (bottleneck, lora).

    ``spatial=True``: every output token has its own attention pool over each stream (keeps per-patch information);
    ``spatial=False``: the plan's mean pooling of both streams plus learned token embeddings (an ablation).
    The parts are registered on the adapter itself (state-dict names ``pos``, ``vlm_pool``, ``dino_pool``,
    ``token_emb``).
    """

    def add_stream_pooling(self, n_tokens: int, n_patches: int, stream_width: int, spatial: bool, pos_emb: bool,
                           stream_weights) -> None:
        self.stream_weights = StreamWeights(stream_weights)
        self.pos = position_embedding(pos_emb, n_patches, stream_width)
        self.n_patches = n_patches
        if spatial:
            self.vlm_pool = AttentionPool(n_tokens, stream_width)
            self.dino_pool = AttentionPool(n_tokens, stream_width)
            self.token_emb = None
        else:
            self.token_emb = normal_param(n_tokens, 2 * stream_width, std=0.02)  # [N, 2s]

    def pool_streams(self, v: torch.Tensor, d: torch.Tensor, vlm_mask: torch.Tensor | None) -> torch.Tensor:
        """v [B, T, s], d [B, P, s] -> the weighted streams side by side per output token [B, N, 2s]."""
        positions = patch_positions(self.pos, d.shape[1], self.n_patches, d)
        if positions is not None:
            d = d + positions
        w_vlm, w_dino = self.stream_weights()
        if self.token_emb is None:
            v, d = self.vlm_pool(v, vlm_mask), self.dino_pool(d)  # [B, N, s] each
            return torch.cat([v * w_vlm, d * w_dino], dim=-1)
        v, d = masked_mean(v, vlm_mask), d.mean(dim=1, keepdim=True)  # [B, 1, s] each
        return torch.cat([v * w_vlm, d * w_dino], dim=-1) + self.token_emb
