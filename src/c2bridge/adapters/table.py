"""The adapter table behind `c2bridge adapters`: every kind x budget of a preset with its exact trainable params,
the dims the budget solver chose, forward FLOPs per sample (torch's FlopCounterMode) and the forward latency."""
from __future__ import annotations

import statistics
import time

import torch
from torch.utils.flop_counter import FlopCounterMode, sdpa_flop_count

from c2bridge.adapters.budget import TOLERANCE, build_adapter_for_preset
from c2bridge.adapters.registry import ADAPTERS
from c2bridge.config import resolve_budget
from c2bridge.presets import get_preset


def dims_summary(adapter) -> dict:
    """The solver-chosen shape of an adapter, by the kind's own option names."""
    spec, cfg = adapter.budget_spec, adapter.config
    keys = [spec.width, spec.depth, spec.free]
    keys += [k for k in (spec.fine, "n_heads", "n_experts", "top_k", "self_per_cross") if k and k in cfg]
    return {k: cfg[k] for k in keys}


def measure_flops(adapter, inputs) -> int:
    """Forward FLOPs (multiply-add = 2) counted by torch's FlopCounterMode, including CPU fused attention."""
    def cpu_sdpa_flops(query, key, value, *args, out_shape=None, **kwargs):
        return sdpa_flop_count(query, key, value)

    mapping = {torch.ops.aten._scaled_dot_product_flash_attention_for_cpu: cpu_sdpa_flops}
    # grad mode stays on: FlopCounterMode's module tracker registers autograd hooks (it fails under no_grad)
    with FlopCounterMode(display=False, custom_mapping=mapping) as counter:
        adapter(*inputs)
    return int(counter.get_total_flops())


def measure_latency_ms(adapter, inputs, repeats: int = 3, warmup: int = 1) -> float:
    times = []
    with torch.inference_mode():
        for i in range(warmup + repeats):
            start = time.perf_counter()
            adapter(*inputs)
            if i >= warmup:
                times.append((time.perf_counter() - start) * 1e3)
    return statistics.median(times)


def adapter_table(preset="full", kinds=None, budgets=None, latency=True, vlm_tokens=None, repeats=3) -> list[dict]:
    """One row per kind x budget of ``preset``: exact and active params, the solved dims, FLOPs, latency."""
    preset = get_preset(preset)
    kinds = list(kinds or ADAPTERS)
    for kind in kinds:
        if kind not in ADAPTERS:
            raise ValueError(f"unknown adapter kind {kind!r}; expected one of {sorted(ADAPTERS)}")
    names = [b.strip().lower() for b in budgets] if budgets else list(preset.budgets)
    targets = {name: resolve_budget(name, preset) for name in names}  # names lowercased: scale names match
    T = vlm_tokens if vlm_tokens is not None else preset.n_patches
    if T < 0:
        raise ValueError(f"--vlm-tokens must be >= 0, got {T}")
    gen = torch.Generator().manual_seed(0)
    inputs = (
        torch.randn(1, T, preset.vlm_dim, generator=gen),  # [1, T, vlm_dim]
        torch.randn(1, preset.n_patches, preset.dino_dim, generator=gen),  # [1, P, dino_dim]
        torch.ones(1, T, dtype=torch.bool),  # [1, T]
    )
    meta_inputs = tuple(x.to("meta") for x in inputs)
    rows = []
    for kind in kinds:
        for name in names:
            target = targets[name]
            # shape-only build first: exact counts and (for most kinds) FLOPs without allocating or initializing
            adapter = build_adapter_for_preset(kind, target, preset, device="meta")
            try:
                flops = measure_flops(adapter, meta_inputs)
            except (NotImplementedError, RuntimeError):  # data-dependent ops (MoE routing) need real tensors
                flops = None
            real = None
            if latency or flops is None:
                real = build_adapter_for_preset(kind, target, preset, seed=0).eval()
                flops = measure_flops(real, inputs) if flops is None else flops
            rows.append({
                "preset": preset.name,
                "kind": kind,
                "budget": name,
                "target": target,
                "params": adapter.num_params,
                "active_params": adapter.active_params,
                "error_pct": round(100.0 * (adapter.num_params - target) / target, 4),
                "within_tolerance": abs(adapter.num_params - target) <= TOLERANCE * target,
                "dims": dims_summary(adapter),
                "vlm_tokens": T,
                "flops_per_sample": flops,
                # the process's first timed model also pays one-off costs (kernel/allocator setup): warm it longer
                "latency_ms": round(measure_latency_ms(real, inputs, repeats, warmup=3 if not rows else 1), 3)
                if latency else None,
            })
    return rows


def format_table(rows: list[dict]) -> str:
    if not rows:
        return "(no rows)"
    first = rows[0]
    head = (f"preset {first['preset']}: scale -> target params: "
            + ", ".join(dict.fromkeys(f"{r['budget']}->{r['target']:,.0f}" for r in rows))
            + f"   (FLOPs/latency: batch 1, T={first['vlm_tokens']} VLM tokens)")
    note = get_preset(first["preset"]).budget_scale_note()
    if note:
        head += "\n  " + note
    cols = ["kind", "budget", "target", "params", "active", "err%", "dims", "GFLOP/sample", "latency ms"]
    body = []
    for r in rows:
        dims = " ".join(f"{k}={v}" for k, v in r["dims"].items())
        body.append([
            r["kind"], r["budget"], f"{r['target']:,.0f}", f"{r['params']:,}", f"{r['active_params']:,}",
            f"{r['error_pct']:+.3f}", dims, f"{r['flops_per_sample'] / 1e9:.4g}",
            "-" if r["latency_ms"] is None else f"{r['latency_ms']:.1f}",
        ])
    widths = [max(len(c), *(len(row[i]) for row in body)) for i, c in enumerate(cols)]
    lines = [head, "  ".join(c.ljust(w) for c, w in zip(cols, widths))]
    lines += ["  ".join(v.ljust(w) for v, w in zip(row, widths)) for row in body]
    return "\n".join(lines)
