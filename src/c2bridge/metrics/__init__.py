"""The study's metrics: perceptual distances (LPIPS + the named fallback), SSIM/PSNR, spatial IoU, latency and
memory, the plan's param_efficiency and the training-curve summaries, and ``evaluate_adapter``.

Names are imported lazily (PEP 562): importing ``c2bridge.metrics`` alone does not import torch.
"""
from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    **dict.fromkeys(
        ["Distance", "LPIPSDistance", "MultiScaleDistance", "SSIMDistance", "get_distance", "lpips_available",
         "lpips_backbone_path", "check_lpips_backbone", "resolve_distance_name", "LPIPS_BACKBONES", "BASE_DISTANCES"],
        "c2bridge.metrics.distance"),
    **dict.fromkeys(["ssim", "psnr"], "c2bridge.metrics.image"),
    **dict.fromkeys(["spatial_iou", "foreground_mask", "mask_iou", "box_iou", "mask_to_box",
                     "background_from_target"], "c2bridge.metrics.spatial"),
    **dict.fromkeys(["param_efficiency", "distance_for_efficiency", "loss_variance", "steps_to_plateau",
                     "detect_plateau", "Plateau", "generalization_gap"], "c2bridge.metrics.efficiency"),
    **dict.fromkeys(["measure_latency", "peak_memory", "param_memory"], "c2bridge.metrics.perf"),
    **dict.fromkeys(["evaluate_adapter", "evaluate_conditioning", "save_side_by_side", "iter_batches"],
                    "c2bridge.metrics.evaluate"),
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'c2bridge.metrics' has no attribute {name!r}")
