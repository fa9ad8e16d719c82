"""The frozen LTX-Video decoder bridge (``LTXBridge``) and the adapter's training objective (``LossSpec``).

Names are imported lazily (PEP 562) so that ``c2bridge --help`` (which imports ``decoder.commands``) does not pull
in torch/diffusers.
"""
from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "LTXBridge": "c2bridge.decoder.ltx",
    "FULL_MODEL_ID": "c2bridge.decoder.ltx",
    "LossSpec": "c2bridge.decoder.objective",
    "NAMED_LOSSES": "c2bridge.decoder.objective",
    "TERMS": "c2bridge.decoder.objective",
    "SIGMA_DISTRIBUTIONS": "c2bridge.decoder.objective",
    "sample_sigmas": "c2bridge.decoder.objective",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'c2bridge.decoder' has no attribute {name!r}")
