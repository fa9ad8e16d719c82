"""Training harness: ``TrainConfig`` (YAML + dotted overrides) -> ``train(config, out_dir)`` -> result dict.

``from c2bridge.train import TrainConfig, load_config, train``.
"""
from c2bridge.train.config import TrainConfig, config_hash, load_config, validate_config
from c2bridge.train.loop import build_adapter_from_config, train

__all__ = ["TrainConfig", "load_config", "validate_config", "config_hash", "train", "build_adapter_from_config"]
