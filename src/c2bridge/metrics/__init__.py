"""The study's metrics: perceptual distances (LPIPS + the named fallback), SSIM/PSNR, spatial IoU, latency and
memory, temporal coherence of clips, the plan's param_efficiency and the training-curve summaries, and
``evaluate_adapter``."""
from c2bridge.metrics.distance import (
    BASE_DISTANCES,
    LPIPS_BACKBONES,
    Distance,
    LPIPSDistance,
    MultiScaleDistance,
    SSIMDistance,
    check_lpips_backbone,
    get_distance,
    lpips_available,
    lpips_backbone_path,
    resolve_distance_name,
)
from c2bridge.metrics.efficiency import (
    Plateau,
    detect_plateau,
    distance_for_efficiency,
    generalization_gap,
    loss_variance,
    param_efficiency,
    steps_to_plateau,
)
from c2bridge.metrics.evaluate import evaluate_adapter, evaluate_conditioning, iter_batches, save_side_by_side
from c2bridge.metrics.image import psnr, ssim
from c2bridge.metrics.perf import measure_latency, param_memory, peak_memory
from c2bridge.metrics.spatial import (
    background_from_target,
    box_iou,
    foreground_mask,
    mask_iou,
    mask_to_box,
    spatial_iou,
)
from c2bridge.metrics.temporal import (
    flicker,
    iou_stability,
    mask_iou_per_frame,
    temporal_coherence,
    warp_error,
)

__all__ = [
    "Distance", "LPIPSDistance", "MultiScaleDistance", "SSIMDistance", "get_distance", "lpips_available",
    "lpips_backbone_path", "check_lpips_backbone", "resolve_distance_name", "LPIPS_BACKBONES", "BASE_DISTANCES",
    "ssim", "psnr", "spatial_iou", "foreground_mask", "mask_iou", "box_iou", "mask_to_box", "background_from_target",
    "param_efficiency", "distance_for_efficiency", "loss_variance", "steps_to_plateau", "detect_plateau", "Plateau",
    "generalization_gap", "measure_latency", "peak_memory", "param_memory", "evaluate_adapter",
    "evaluate_conditioning", "save_side_by_side", "iter_batches", "temporal_coherence", "flicker", "warp_error",
    "mask_iou_per_frame", "iou_stability",
]
