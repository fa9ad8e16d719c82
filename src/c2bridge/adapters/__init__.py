"""Adapters: DINOv2 patch tokens + Qwen2.5-VL hidden states -> LTX-Video conditioning, at exact budgets.

    from c2bridge.adapters import build_adapter, load_adapter, ADAPTERS
    adapter = build_adapter("query", budget=10e6)          # kinds: query, bottleneck, lora, perceiver, moe
    cond = adapter(vlm, dino, vlm_mask=None)               # [B,T,3584], [B,256,1024] -> [B,77,4096]

See docs/adapters.md. Names are loaded lazily so that `c2bridge --help` (which imports
`c2bridge.adapters.commands`) does not import torch.
"""
from __future__ import annotations

import importlib

_EXPORTS = {
    "ADAPTERS": ".base",
    "Adapter": ".base",
    "BudgetSpec": ".base",
    "load_adapter": ".base",
    "build_adapter": ".budget",
    "build_adapter_for_preset": ".budget",
    "count_params": ".budget",
    "minimum_params": ".budget",
    "parse_budget": ".budget",
    "solve_config": ".budget",
    "QueryAdapter": ".query",
    "BottleneckAdapter": ".bottleneck",
    "LoRAAdapter": ".lora",
    "PerceiverAdapter": ".perceiver",
    "MoEAdapter": ".moe",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    from .base import ensure_registered

    ensure_registered()  # every kind in ADAPTERS before anyone looks at it
    value = getattr(importlib.import_module(_EXPORTS[name], __name__), name)
    globals()[name] = value
    return value


def __dir__():
    return sorted(set(globals()) | set(_EXPORTS))
