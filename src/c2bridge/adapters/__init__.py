"""Adapters: DINOv2 patch tokens + Qwen2.5-VL hidden states -> LTX-Video conditioning, at exact budgets.

    from c2bridge.adapters import build_adapter, load_adapter, ADAPTERS
    adapter = build_adapter("query", budget=10e6)          # kinds: query, bottleneck, lora, perceiver, moe
    cond = adapter(vlm, dino, vlm_mask=None)               # [B,T,3584], [B,256,1024] -> [B,77,4096]

See docs/adapters.md. A new kind is a module with an ``Adapter`` subclass under ``@register``, imported here.
"""
from c2bridge.adapters.base import Adapter, BudgetSpec, load_adapter
from c2bridge.adapters.registry import ADAPTERS, adapter_class, register

# every kind registers itself on import, in this order (the order of ADAPTERS)
from c2bridge.adapters.query import QueryAdapter  # isort: skip
from c2bridge.adapters.bottleneck import BottleneckAdapter  # isort: skip
from c2bridge.adapters.lora import LoRAAdapter  # isort: skip
from c2bridge.adapters.perceiver import PerceiverAdapter  # isort: skip
from c2bridge.adapters.moe import MoEAdapter  # isort: skip
from c2bridge.adapters.budget import (  # isort: skip
    build_adapter,
    build_adapter_for_preset,
    count_params,
    minimum_params,
    parse_budget,
    solve_config,
)

__all__ = [
    "ADAPTERS", "Adapter", "BudgetSpec", "load_adapter", "adapter_class", "register", "build_adapter",
    "build_adapter_for_preset", "count_params", "minimum_params", "parse_budget", "solve_config", "QueryAdapter",
    "BottleneckAdapter", "LoRAAdapter", "PerceiverAdapter", "MoEAdapter",
]
