"""Adapters: DINOv2 patch tokens + Qwen2.5-VL hidden states -> LTX-Video conditioning, at exact budgets.

    from c2bridge.adapters import build_adapter, load_adapter, ADAPTERS
    adapter = build_adapter("query", budget=10e6)          # kinds: query, bottleneck, lora, perceiver, moe
    cond = adapter(vlm, dino, vlm_mask=None)               # [B,T,3584], [B,256,1024] -> [B,77,4096]

See docs/adapters.md.
"""
from .base import ADAPTERS, Adapter, BudgetSpec, load_adapter
from .budget import (
    build_adapter,
    build_adapter_for_preset,
    count_params,
    minimum_params,
    parse_budget,
    solve_config,
)

# importing the kinds registers them in ADAPTERS (in this order)
from .query import QueryAdapter  # noqa: E402
from .bottleneck import BottleneckAdapter  # noqa: E402
from .lora import LoRAAdapter  # noqa: E402
from .perceiver import PerceiverAdapter  # noqa: E402
from .moe import MoEAdapter  # noqa: E402

__all__ = [
    "ADAPTERS",
    "Adapter",
    "BudgetSpec",
    "build_adapter",
    "build_adapter_for_preset",
    "count_params",
    "load_adapter",
    "minimum_params",
    "parse_budget",
    "solve_config",
    "QueryAdapter",
    "BottleneckAdapter",
    "LoRAAdapter",
    "PerceiverAdapter",
    "MoEAdapter",
]
