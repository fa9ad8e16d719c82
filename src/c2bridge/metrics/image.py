"""SSIM and PSNR per sample, for images ``[B, 3, H, W]`` or clips ``[B, 3, F, H, W]`` in [0, 1].

Inputs are clamped to [0, 1]; clips are scored frame by frame and averaged per sample.

SSIM follows Wang et al. (2004) exactly as scikit-image computes it with ``structural_similarity(x, y,
gaussian_weights=True, sigma=1.5, use_sample_covariance=False, data_range=1, channel_axis=0)``: local statistics
under an 11×11 Gaussian window (sigma 1.5, truncated at 3.5 sigma), K1 = 0.01, K2 = 0.03, population (not sample)
covariances, and the SSIM map averaged over the *valid* region only (the 5-px border where the window would leave
the image is dropped), then over the three channels. Implemented here in torch (batched, differentiable, any
device) so the number does not depend on which torchmetrics version pip installed: torchmetrics' own SSIM averages
a mirror-padded map over the whole image, which at 32 px (where the border is half the pixels) differs by up to
0.06. ``tests/metrics`` checks this against scikit-image on real photos and at 32 px.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

SSIM_SIGMA = 1.5
SSIM_TRUNCATE = 3.5  # scipy.ndimage.gaussian_filter's default: radius = int(3.5 * 1.5 + 0.5) = 5 -> 11 taps
SSIM_K1, SSIM_K2 = 0.01, 0.03
SSIM_WINDOW = 2 * int(SSIM_TRUNCATE * SSIM_SIGMA + 0.5) + 1  # 11


def as_frames(pred: torch.Tensor, target: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, int]:
    """Check shapes and fold clips into frames: -> ([B*F, 3, H, W], [B*F, 3, H, W], F)."""
    if pred.shape != target.shape:
        raise ValueError(f"distance inputs differ in shape: pred {tuple(pred.shape)} vs target {tuple(target.shape)}")
    if pred.ndim == 4 and pred.shape[1] == 3:
        return pred, target, 1
    if pred.ndim == 5 and pred.shape[1] == 3:
        b, c, f, h, w = pred.shape
        fold = lambda x: x.permute(0, 2, 1, 3, 4).reshape(b * f, c, h, w)  # noqa: E731
        return fold(pred), fold(target), f
    raise ValueError(f"expected images [B, 3, H, W] or clips [B, 3, F, H, W]; got {tuple(pred.shape)}")


def _gaussian_taps(dtype: torch.dtype, device) -> torch.Tensor:
    radius = SSIM_WINDOW // 2
    x = torch.arange(-radius, radius + 1, dtype=torch.float64)
    taps = torch.exp(-0.5 * (x / SSIM_SIGMA) ** 2)
    return (taps / taps.sum()).to(dtype=dtype, device=device)  # [11], sums to 1 (scipy's normalization)


def _valid_blur(x: torch.Tensor, taps: torch.Tensor) -> torch.Tensor:
    """Separable Gaussian over the valid region: ``[N, C, H, W] -> [N, C, H-10, W-10]`` (no padding)."""
    c = x.shape[1]
    k = taps.numel()
    x = F.conv2d(x, taps.view(1, 1, k, 1).expand(c, 1, k, 1), groups=c)
    return F.conv2d(x, taps.view(1, 1, 1, k).expand(c, 1, 1, k), groups=c)


def ssim_frames(pred: torch.Tensor, target: torch.Tensor, data_range: float = 1.0) -> torch.Tensor:
    """SSIM of frames ``[N, C, H, W]`` (H, W >= 11) -> ``[N]`` (scikit-image's convention; see the module doc).

    No clamping here (callers clamp); differentiable in both arguments.
    """
    if pred.shape != target.shape or pred.ndim != 4:
        raise ValueError(f"ssim_frames expects two [N, C, H, W] tensors of one shape; got {tuple(pred.shape)} and "
                         f"{tuple(target.shape)}")
    if min(pred.shape[-2:]) < SSIM_WINDOW:
        raise ValueError(f"SSIM needs frames of at least {SSIM_WINDOW}x{SSIM_WINDOW} pixels (its Gaussian window); "
                         f"got {tuple(pred.shape[-2:])}")
    n, c = pred.shape[:2]
    taps = _gaussian_taps(pred.dtype, pred.device)
    # one blur over the five moments, stacked along channels: [N, 5C, H, W] -> [N, 5C, H-10, W-10]
    moments = _valid_blur(torch.cat([pred, target, pred * pred, target * target, pred * target], dim=1), taps)
    mu_x, mu_y, e_xx, e_yy, e_xy = moments.split(c, dim=1)
    var_x = e_xx - mu_x * mu_x
    var_y = e_yy - mu_y * mu_y
    cov_xy = e_xy - mu_x * mu_y
    c1 = (SSIM_K1 * data_range) ** 2
    c2 = (SSIM_K2 * data_range) ** 2
    numerator = (2 * mu_x * mu_y + c1) * (2 * cov_xy + c2)
    denominator = (mu_x * mu_x + mu_y * mu_y + c1) * (var_x + var_y + c2)
    return (numerator / denominator).flatten(1).mean(dim=1)  # mean over channels and valid pixels -> [N]


def _per_sample(fn, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    frames_pred, frames_target, num_frames = as_frames(pred, target)
    values = fn(frames_pred.float().clamp(0, 1), frames_target.float().clamp(0, 1))  # [B*F]
    return values.view(-1, num_frames).mean(dim=1)  # [B]


def ssim(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Structural similarity (Wang et al. as scikit-image computes it; data range 1) -> [B]; 1 = identical."""
    return _per_sample(ssim_frames, pred, target)


def psnr(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Peak signal-to-noise ratio in dB (data range 1) -> [B]; +inf for identical frames."""
    from torchmetrics.functional.image import peak_signal_noise_ratio

    return _per_sample(
        lambda p, t: peak_signal_noise_ratio(p, t, data_range=1.0, reduction="none", dim=(1, 2, 3)).view(-1),
        pred,
        target,
    )


__all__ = ["SSIM_WINDOW", "psnr", "ssim", "ssim_frames"]
