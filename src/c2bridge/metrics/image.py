"""SSIM and PSNR per sample (torchmetrics), for images ``[B, 3, H, W]`` or clips ``[B, 3, F, H, W]`` in [0, 1].

Inputs are clamped to [0, 1]; clips are scored frame by frame and averaged per sample.
"""
from __future__ import annotations

import torch

from c2bridge.metrics.distance import _as_frames


def _per_sample(fn, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    frames_pred, frames_target, num_frames = _as_frames(pred, target)
    values = fn(frames_pred.float().clamp(0, 1), frames_target.float().clamp(0, 1))  # [B*F]
    return values.view(-1, num_frames).mean(dim=1)  # [B]


def ssim(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Structural similarity (Gaussian 11×11 window, data range 1) -> [B]; 1 = identical."""
    from torchmetrics.functional.image import structural_similarity_index_measure

    return _per_sample(
        lambda p, t: structural_similarity_index_measure(p, t, data_range=1.0, reduction="none").view(-1),
        pred,
        target,
    )


def psnr(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Peak signal-to-noise ratio in dB (data range 1) -> [B]; +inf for identical frames."""
    from torchmetrics.functional.image import peak_signal_noise_ratio

    return _per_sample(
        lambda p, t: peak_signal_noise_ratio(p, t, data_range=1.0, reduction="none", dim=(1, 2, 3)).view(-1),
        pred,
        target,
    )


__all__ = ["psnr", "ssim"]
