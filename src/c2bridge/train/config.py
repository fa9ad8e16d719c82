"""The training recipe's config tree lives in ``c2bridge.recipe`` (importable without torch); this module keeps the
``c2bridge.train.config`` import path."""
from c2bridge.recipe import (AMP_MODES, BEST_METRICS, DEVICES, DISTILL_METRICS, PRESET_CONFIG_DIR,  # noqa: F401
                             AdapterSection, CheckpointSection, DataSection, DebugSection, DistillSection, EvalSection,
                             LogSection, LossSection, OptimSection, ScheduleSection, TrainConfig, config_hash,
                             config_to_dict, load_config, resolve_budget, schedule_warmup_steps, validate_config)

__all__ = ["TrainConfig", "load_config", "validate_config", "config_hash", "config_to_dict", "resolve_budget",
           "schedule_warmup_steps"]
