"""Training harness: ``TrainConfig`` (YAML + dotted overrides) -> ``train(config, out_dir)`` -> result dict.

``from c2bridge.train import TrainConfig, load_config, train``. The config module imports no torch; ``train`` is
imported on first use.
"""
from c2bridge.train.config import TrainConfig, config_hash, load_config, validate_config

__all__ = ["TrainConfig", "load_config", "validate_config", "config_hash", "train", "build_adapter_from_config"]


def __getattr__(name):  # lazy: the loop pulls in torch, the adapters and the decoder
    if name in ("train", "build_adapter_from_config"):
        from c2bridge.train import loop

        return getattr(loop, name)
    raise AttributeError(f"module 'c2bridge.train' has no attribute {name!r}")
