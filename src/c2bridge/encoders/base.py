"""What the two frozen encoders (DINOv2, Qwen2.5-VL) share: a frozen transformers model on a device, its seeded
random build (tiny/mini presets), its real-weights loading (``hub.py``: local-first, one clear error) and the
identity the feature-cache key records."""
from __future__ import annotations

from dataclasses import asdict
from typing import Any, Callable

import torch

from c2bridge._io import stable_hash
from c2bridge.encoders.hub import load_pretrained, resolved_revision

# config.to_dict() entries that do not change the architecture (paths, versions, the load dtype)
UNKEYED_CONFIG = ("_name_or_path", "transformers_version", "_commit_hash", "torch_dtype", "dtype", "architectures")


def config_digest(config) -> str:
    """A short hash of a model's architecture (so a changed config never reads as the old one)."""
    d = config.to_dict()
    for k in UNKEYED_CONFIG:
        d.pop(k, None)
    return stable_hash(d, 12)


def seeded_model(model_class: Callable[[Any], Any], config, seed: int):
    """``model_class(config)`` initialized under ``torch.manual_seed(seed)``; the global RNG is left untouched."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return model_class(config)


def pretrained_model(loader: Callable[..., Any], model_id: str, revision: str | None, dtype=None):
    """Real weights via ``loader`` (a ``from_pretrained``) -> ``(model, the revision the cache key records)``."""
    model = load_pretrained(loader, model_id, revision, dtype=dtype)
    return model, resolved_revision(model, revision)


class FrozenEncoder:
    """A frozen (eval, no grad) transformers model with its preprocessing (a dataclass, ``self.preprocess``)."""

    kind = ""  # the encoder's name in the cache key

    def __init__(self, model, model_id: str, revision: str, device=None):
        self.model = model.eval().requires_grad_(False)
        if device is not None:
            self.model.to(device)
        self.model_id = model_id
        self.revision = revision

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @property
    def dtype(self) -> torch.dtype:
        return next(self.model.parameters()).dtype

    def encoder_key(self) -> dict:
        """Everything that changes the features: used in the feature-cache key."""
        return {"kind": self.kind, "model_id": self.model_id, "revision": self.revision,
                "dtype": str(self.dtype).replace("torch.", ""), "class": type(self.model).__name__,
                "config": config_digest(self.model.config), "preprocessing": asdict(self.preprocess),
                **self.key_extras()}

    def key_extras(self) -> dict:
        """What else this encoder's features depend on (its output selection, its processor)."""
        return {}
