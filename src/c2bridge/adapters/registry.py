"""The adapter kinds by name. A leaf module: it imports no kind, so the base class and every kind can import it.

``ADAPTERS`` is filled by ``@register`` as each kind's module is imported; ``c2bridge.adapters`` imports them all
(query, bottleneck, lora, perceiver, moe: the registry keeps that order).
"""
from __future__ import annotations

ADAPTERS: dict[str, type] = {}  # kind name -> Adapter subclass


def register(cls: type) -> type:
    """Class decorator: make an ``Adapter`` subclass buildable by its ``kind`` name."""
    if not getattr(cls, "kind", ""):
        raise ValueError(f"{cls.__name__} has no kind name to register under")
    known = ADAPTERS.get(cls.kind)
    if known is not None and known.__qualname__ != cls.__qualname__:
        raise ValueError(f"adapter kind {cls.kind!r} is taken by {known.__qualname__}")
    ADAPTERS[cls.kind] = cls
    return cls


def adapter_class(kind: str) -> type:
    """The class registered as ``kind``; one clear error naming the known kinds otherwise."""
    if kind not in ADAPTERS:
        raise ValueError(f"unknown adapter kind {kind!r}; expected one of {sorted(ADAPTERS)}")
    return ADAPTERS[kind]
