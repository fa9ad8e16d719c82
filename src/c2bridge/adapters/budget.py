"""Budget solver: size any adapter kind to an exact trainable-parameter budget.

Rule (documented in docs/adapters.md), with D = vlm_dim + dino_dim + out_dim (the per-width cost of the input
and output projections) and B the budget:

1. head_dim = largest power of two <= D / 128, clamped to [8, 64] (64 at the real dims, as in the plan; 8 for
   the miniature). The width grid is head_dim/2 (one half-width head: keeps tiny budgets reachable), then the
   multiples of head_dim; n_heads = width // head_dim (at least 1). For lora the grid is over its rank-space
   width 2*rank.
2. Depth: d* = clamp(2 + log3(16 B / D²), 1, 12) and depth = floor(d*): two blocks at the plan's 5M/10M, three at
   20M, four at 50M/100M (the plan's table); a budget three times larger buys one more block.
3. Width: the grid width whose parameter count -- at the nominal free dim (free_ratio x width) and the fractional
   depth d* (linear interpolation between floor(d*) and floor(d*)+1 blocks) -- is closest to B. Using d* rather
   than floor(d*) makes the width grow smoothly with B, so neither width nor depth ever decreases as B grows.
4. The free dimension (ffn_dim; expert_dim for moe; the rank-space hidden_dim for lora) is solved exactly at the
   integer depth: the count is linear in the total number of hidden units, so two counts give the cost of one
   unit and the rounded total lands within half a unit of B; the units are spread over the blocks (they differ
   by at most one). moe, whose unit is a whole column of all n_experts experts, puts the remainder into a small
   always-active shared expert (`shared_dim`).
If the solved free dim leaves [nominal/4, 4 x nominal], the next-nearest width is tried (then a smaller depth).
Counts come from building the module on the meta device (no memory, no init), so they are exact by construction.
"""
from __future__ import annotations

import inspect
import json
import math
from functools import lru_cache

import torch

from c2bridge.adapters.base import Adapter, compact
from c2bridge.adapters.registry import ADAPTERS, adapter_class
from c2bridge.config import parse_size, resolve_budget
from c2bridge.presets import Preset, get_preset

TOLERANCE = 0.02  # |count - budget| / budget allowed (the solver lands within ~0.5%, 0.01% at the real dims)
MAX_DEPTH = 12
DEFAULT_DIMS = dict(vlm_dim=3584, dino_dim=1024, out_dim=4096, n_tokens=77, n_patches=256)

def parse_budget(budget) -> float | None:
    """10e6, 10_000_000, "10M", "10m", "5k", "2.5e4" -> float (``c2bridge.config.parse_size``); None -> None."""
    return None if budget is None else parse_size(budget)


def io_width(dims: dict) -> int:
    """D: parameters per unit of width spent by the input and output projections."""
    return dims["vlm_dim"] + dims["dino_dim"] + dims["out_dim"]


def head_dim_for(dims: dict) -> int:
    d = io_width(dims)
    return int(min(64, max(8, 2 ** math.floor(math.log2(max(d / 128, 1.0))))))


def fractional_depth(budget: float, dims: dict) -> float:
    """d* = clamp(2 + log3(16 B / D²), 1, MAX_DEPTH); the rule's depth is floor(d*)."""
    rho = 16.0 * budget / io_width(dims) ** 2
    return min(float(MAX_DEPTH), max(1.0, 2.0 + math.log(rho, 3) + 1e-9))


def depth_for(budget: float, dims: dict) -> int:
    return int(math.floor(fractional_depth(budget, dims)))


def _grid_width(index: int, head_dim: int) -> int:
    """Width grid: index 0 -> head_dim / 2, index m >= 1 -> m * head_dim."""
    return max(1, head_dim // 2) if index == 0 else index * head_dim


def _heads_for(width: int, head_dim: int) -> int:
    heads = max(1, width // head_dim)
    while width % heads:
        heads -= 1
    return heads


@lru_cache(maxsize=4096)
def _count_cached(kind: str, cfg_json: str) -> int:
    cfg = json.loads(cfg_json)
    with torch.device("meta"):
        return ADAPTERS[kind](**cfg).num_params


# options that never change the parameter count: left out of the count cache key (and of the counting build)
COUNT_NEUTRAL = ("seed", "budget", "dropout", "stream_weights", "out_init_scale", "routing", "temporal")


def count_params(kind: str, cfg: dict) -> int:
    """Exact trainable-parameter count of ADAPTERS[kind](**cfg), from a meta-device build."""
    cfg = {k: v for k, v in cfg.items() if k not in COUNT_NEUTRAL}
    return _count_cached(kind, json.dumps(cfg, sort_keys=True))


def check_options(kind: str, options: dict) -> None:
    params = inspect.signature(adapter_class(kind).__init__).parameters
    unknown = sorted(set(options) - set(params) - {"self"})
    if unknown:
        allowed = sorted(set(params) - {"self"})
        raise ValueError(f"unknown option(s) {unknown} for adapter kind {kind!r}; expected some of {allowed}")


def minimum_params(kind: str, dims: dict, overrides: dict | None = None) -> int:
    """Smallest model the solver builds: depth 1, the smallest grid width, free dim nominal / 4 (or as overridden)."""
    spec = adapter_class(kind).budget_spec
    overrides = dict(overrides or {})
    head_dim = int(overrides.pop("head_dim", None) or head_dim_for(dims))
    width = overrides.get(spec.width, _config_width(spec, _grid_width(0, head_dim)))
    free = None if spec.free in overrides else _free_bounds(spec, width)[0]
    return count_params(kind, _shape(kind, dims, overrides, width, overrides.get(spec.depth, 1), free, head_dim))


def _config_width(spec, grid_width: int) -> int:
    """Grid (working) width -> the value of the kind's width option (lora: rank = working width / 2)."""
    return max(1, int(grid_width * spec.width_factor))


def _free_bounds(spec, width: int) -> tuple[int, int]:
    nominal = spec.free_ratio * width
    return max(1, math.ceil(nominal / 4)), max(1, int(nominal * 4))


def _spread(total: int, depth: int) -> list[int]:
    """`total` hidden units over `depth` blocks as evenly as possible (earlier blocks get the extra units)."""
    base, extra = divmod(int(total), depth)
    return [base + 1] * extra + [base] * (depth - extra)


def _shape(kind, dims, overrides, width, depth, free, head_dim, fine=None) -> dict:
    spec = adapter_class(kind).budget_spec
    cfg = {**dims, **overrides, spec.width: int(width), spec.depth: int(depth)}
    if spec.free not in overrides:
        cfg[spec.free] = free if free is not None else int(round(spec.free_ratio * width))
    if spec.fine and fine is not None and spec.fine not in overrides:
        cfg[spec.fine] = fine
    if spec.heads and "n_heads" not in overrides:
        cfg["n_heads"] = _heads_for(int(width), head_dim)
    return cfg


def _solve_free(kind, budget, dims, overrides, width, depth, head_dim):
    """Solve the per-block free dim (and the fine dim) at a fixed width/depth -> (cfg, count, band_distance)."""
    spec = adapter_class(kind).budget_spec

    def count(free=None, fine=None):
        return count_params(kind, _shape(kind, dims, overrides, width, depth, free, head_dim, fine))

    distance = 0.0  # how far (in log2 of the ratio) the free dim lies outside [nominal/4, 4 x nominal]
    free = None
    if spec.free not in overrides:
        f_lo, f_hi = _free_bounds(spec, width)
        c_lo = count(f_lo)
        unit = count(compact([f_lo + 1] + [f_lo] * (depth - 1))) - c_lo  # one hidden unit in one block
        if unit <= 0:
            return None
        units = (budget - c_lo) / unit
        units = math.floor(units) if spec.fine and spec.fine not in overrides else round(units)
        total = depth * f_lo + units
        if total < depth:  # every block needs at least one hidden unit
            return None
        free = compact(_spread(total, depth))
        mean = total / depth
        distance = max(0.0, math.log2(f_lo / mean), math.log2(mean / f_hi))
    fine = None
    if spec.fine and spec.fine not in overrides:
        c0 = count(free, compact([0] * depth))
        marginal = count(free, compact([2] + [0] * (depth - 1))) - count(free, compact([1] + [0] * (depth - 1)))
        guess = max(0, round((budget - c0) / marginal))
        # a block's first shared unit also brings the shared MLP's output bias: search around the guess
        fine = min(
            (compact(_spread(g, depth)) for g in range(max(0, guess - depth - 2), guess + 3)),
            key=lambda f: abs(count(free, f) - budget),
        )
    cfg = _shape(kind, dims, overrides, width, depth, free, head_dim, fine)
    return cfg, count_params(kind, cfg), distance


def solve_config(kind: str, budget: float, dims: dict | None = None, overrides: dict | None = None) -> dict:
    """Constructor kwargs for `kind` whose trainable count is within TOLERANCE of `budget` (see module doc)."""
    spec = adapter_class(kind).budget_spec
    dims = {**DEFAULT_DIMS, **(dims or {})}
    overrides = dict(overrides or {})
    check_options(kind, {k: v for k, v in overrides.items() if k != "head_dim"})
    head_dim = int(overrides.pop("head_dim", None) or head_dim_for(dims))
    minimum = minimum_params(kind, dims, overrides)
    if budget < minimum * (1 - TOLERANCE):
        raise ValueError(
            f"budget {budget:,.0f} is below the minimum of {minimum:,} trainable params for adapter kind {kind!r} "
            f"at these dims (vlm_dim={dims['vlm_dim']}, dino_dim={dims['dino_dim']}, out_dim={dims['out_dim']}, "
            f"n_tokens={dims['n_tokens']}, n_patches={dims['n_patches']})"
        )

    def nominal_count(width, depth):
        return count_params(kind, _shape(kind, dims, overrides, width, depth, None, head_dim))

    if spec.depth in overrides:
        depth_star = float(overrides[spec.depth])
    else:
        depth_star = fractional_depth(budget, dims)
    base_depth = int(math.floor(depth_star))
    depths = [base_depth] if spec.depth in overrides else range(base_depth, 0, -1)
    closest = None  # closest count seen, for the error message
    for depth in depths:
        frac = depth_star - depth if depth == base_depth else 0.0

        def target_count(index):  # count at the nominal free dim and the fractional depth
            width = _config_width(spec, _grid_width(index, head_dim))
            c = nominal_count(width, depth)
            return c + frac * (nominal_count(width, depth + 1) - c) if frac > 0 else c

        if spec.width in overrides:
            widths = [overrides[spec.width]]
        else:
            # target_count grows with width: bracket B on the grid, then order the neighbours by closeness
            hi = 1
            while target_count(hi) < budget and hi < 1 << 16:
                hi *= 2
            lo = -1
            while hi - lo > 1:  # invariant: target_count(lo) < B <= target_count(hi) (lo = -1: none)
                mid = (lo + hi) // 2
                lo, hi = (mid, hi) if target_count(mid) < budget else (lo, mid)
            indices = [m for m in (lo, hi, lo - 1, hi + 1) if m >= 0]
            indices = sorted(dict.fromkeys(indices), key=lambda m: abs(target_count(m) - budget))
            widths = [_config_width(spec, _grid_width(m, head_dim)) for m in indices]
        hits = []
        for width in widths:
            solved = _solve_free(kind, budget, dims, overrides, width, depth, head_dim)
            if solved is None:
                continue
            cfg, n, distance = solved
            if closest is None or abs(n - budget) < abs(closest - budget):
                closest = n
            if abs(n - budget) <= TOLERANCE * budget:
                if distance == 0.0:
                    return cfg  # nearest width whose free dim is in band
                hits.append((distance, cfg))
        if hits:  # keep the rule's depth even if the free dim leaves its band (gaps between widths)
            return min(hits, key=lambda hit: hit[0])[1]
    raise ValueError(
        f"cannot size adapter kind {kind!r} to {budget:,.0f} params within ±{TOLERANCE:.0%} with the fixed options "
        f"{ {k: overrides[k] for k in overrides if k in (spec.width, spec.depth, spec.free)} } "
        f"(closest: {closest if closest is not None else 'none'})"
    )


def build_adapter(
    kind: str,
    budget=None,
    vlm_dim: int = 3584,
    dino_dim: int = 1024,
    out_dim: int = 4096,
    n_tokens: int = 77,
    n_patches: int = 256,
    device: str | torch.device | None = None,
    **overrides,
) -> Adapter:
    """Build an adapter of `kind` sized to `budget` trainable params (±2%; None: the kind's defaults).

    `budget` may be a number or a string ("10M", "5k"). `overrides` are constructor kwargs (dropout, n_tokens,
    stream_weights, ...); fixing width/depth/free dim constrains the solver. `head_dim` sets the width grid.
    `seed` makes the init reproducible without touching the global RNG. `device="meta"` builds without memory.
    """
    cls = adapter_class(kind)
    dims = dict(vlm_dim=vlm_dim, dino_dim=dino_dim, out_dim=out_dim, n_tokens=n_tokens, n_patches=n_patches)
    value = parse_budget(budget)
    if value is None:
        head_dim = overrides.pop("head_dim", None)
        check_options(kind, overrides)
        cfg = {**dims, **overrides}
        if head_dim is not None and cls.budget_spec.heads and "n_heads" not in overrides:
            key = cls.budget_spec.width
            width = cfg.get(key, inspect.signature(cls.__init__).parameters[key].default)
            cfg["n_heads"] = _heads_for(int(width), int(head_dim))
    else:
        cfg = solve_config(kind, value, dims, overrides)
        cfg["budget"] = value
    if device is not None:
        with torch.device(device):
            return cls(**cfg)
    return cls(**cfg)


def build_adapter_for_preset(kind: str, budget, preset, **overrides) -> Adapter:
    """build_adapter with dims from `c2bridge.presets` (dino_dim, n_patches, vlm_dim, cond_dim -> out_dim,
    n_tokens). The budget goes through ``c2bridge.config.resolve_budget``: one of the preset's scale names
    ("5m".."100m") means that scale's budget in this preset (e.g. "10m" is 1.25e4 in `mini`); any other size is a
    literal parameter count; None: the kind's defaults."""
    preset = preset if isinstance(preset, Preset) else get_preset(preset)
    dims = dict(vlm_dim=preset.vlm_dim, dino_dim=preset.dino_dim, out_dim=preset.cond_dim,
                n_tokens=preset.n_tokens, n_patches=preset.n_patches)
    dims.update({k: overrides.pop(k) for k in list(overrides) if k in dims})
    return build_adapter(kind, None if budget is None else resolve_budget(budget, preset), **dims, **overrides)
