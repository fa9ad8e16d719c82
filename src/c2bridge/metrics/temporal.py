"""Temporal coherence of reconstructed clips: does the reconstruction change over time the way the target does?

Clips are ``[B, 3, F, H, W]`` in [0, 1] (clamped), ``F >= 2``. Every score is per sample (``[B]``); lower is
better except the IoU mean. All are 0 (IoU mean 1) for a perfect reconstruction.

- ``flicker``: the temporal-difference error, mean over frame pairs and pixels of
  ``|Δ_t recon − Δ_t target|`` with ``Δ_t x = x[t+1] − x[t]`` (mean over RGB, [0, 1] units). It compares the
  reconstruction's frame-to-frame change with the target's own: a still target reconstructed with jitter, a
  moving target reconstructed frozen, and shuffled frames all score high; an error that is the same in every
  frame (a colour offset, a fixed stain) scores 0, because it is not a temporal error (the frame distance sees it).
- ``warp_error``: the same along the target's motion (a warping error after Lai et al., 2018): frame ``t+1`` is
  warped back onto frame ``t`` with the target's optical flow, and ``|(r_t − W r_{t+1}) − (x_t − W x_{t+1})|`` is
  averaged over the pixels where that flow explains the target (``|x_t − W x_{t+1}| <= occlusion_threshold``:
  occluded and disoccluded pixels are left out). Where things move, this separates temporal instability of the
  reconstruction from the motion itself. The flow is SAD block matching (integer displacements within
  ``±radius`` px, 5x5 windows, ties to the smallest motion) on luma downsampled to at most ``flow_size`` px:
  deterministic, torch-only, no model weights, exact for the translating shapes of the synthetic world; a learned
  flow (RAFT) would be needed for fine motion in photos.
- ``mask_iou_mean`` / ``mask_iou_std`` / ``mask_iou_delta`` (where ground-truth masks and a background colour are
  given: the shapes world): spatial IoU (``c2bridge.metrics.spatial.spatial_iou``) frame by frame, then its mean,
  its standard deviation over frames and its mean absolute change between consecutive frames (a reconstruction
  whose shapes pop in and out scores a high delta even at a fair mean).
- ``distance``: the frame-averaged perceptual distance (``c2bridge.metrics.distance.get_distance``).
"""
from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F

from c2bridge.metrics.distance import Distance, get_distance
from c2bridge.metrics.spatial import FOREGROUND_THRESHOLD, spatial_iou

FLOW_SIZE = 64  # flow is estimated on frames downsampled to at most this many pixels per side
FLOW_RADIUS = 4  # px at the flow resolution: ±6% of the side per frame
FLOW_WINDOW = 5  # SAD aggregation window (px at the flow resolution)
OCCLUSION_THRESHOLD = 0.05  # max-channel residual of the warped target above which a pixel counts as occluded
_LUMA = (0.299, 0.587, 0.114)  # ITU-R BT.601


def _check_clips(recon: torch.Tensor, target: torch.Tensor) -> None:
    if recon.shape != target.shape:
        raise ValueError(f"recon {tuple(recon.shape)} and target {tuple(target.shape)} differ in shape")
    if recon.ndim != 5 or recon.shape[1] != 3 or recon.shape[2] < 2:
        raise ValueError(f"temporal metrics need clips [B, 3, F, H, W] with F >= 2; got {tuple(recon.shape)}")


def frame_differences(clips: torch.Tensor) -> torch.Tensor:
    """``[B, C, F, H, W] -> [B, C, F-1, H, W]``: ``x[t+1] − x[t]``."""
    return clips[:, :, 1:] - clips[:, :, :-1]


def flicker(recon: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Temporal-difference error ``mean |Δ_t recon − Δ_t target|`` per sample -> ``[B]``."""
    _check_clips(recon, target)
    r, x = recon.float().clamp(0, 1), target.float().clamp(0, 1)
    return (frame_differences(r) - frame_differences(x)).abs().flatten(1).mean(1)


def block_matching_flow(a: torch.Tensor, b: torch.Tensor, radius: int = FLOW_RADIUS,
                        window: int = FLOW_WINDOW) -> torch.Tensor:
    """Integer flow ``d`` with ``a(p) ≈ b(p + d)`` for grey frames ``[N, 1, h, w]`` -> ``[N, 2, h, w]`` (dy, dx).

    Sum of absolute differences over ``window`` x ``window`` blocks, every displacement within ``±radius``; ties
    (flat regions) go to the smallest displacement, so a still or textureless region gets zero flow.
    """
    n, _, h, w = a.shape
    padded = F.pad(b, (radius, radius, radius, radius), mode="replicate")
    shifts = [(dy, dx) for dy in range(-radius, radius + 1) for dx in range(-radius, radius + 1)]
    costs = []
    for dy, dx in shifts:
        moved = padded[:, :, radius + dy:radius + dy + h, radius + dx:radius + dx + w]  # b(p + d)
        costs.append(F.avg_pool2d((a - moved).abs(), window, stride=1, padding=window // 2,
                                  count_include_pad=False))
    cost = torch.cat(costs, 1)  # [N, D, h, w]
    disp = torch.tensor(shifts, dtype=cost.dtype, device=cost.device)  # [D, 2]
    cost = cost + 1e-6 * (disp ** 2).sum(1).view(1, -1, 1, 1)  # tie-break towards small motion
    best = cost.argmin(1)  # [N, h, w]
    return disp.long()[best].permute(0, 3, 1, 2)  # [N, 2, h, w]


def _warp(frames: torch.Tensor, flow: torch.Tensor) -> torch.Tensor:
    """``frames [N, C, H, W]`` sampled at ``p + flow(p)`` (integer flow ``[N, 2, H, W]``, borders clamped)."""
    n, c, h, w = frames.shape
    ys = (torch.arange(h, device=frames.device).view(1, h, 1) + flow[:, 0]).clamp(0, h - 1)
    xs = (torch.arange(w, device=frames.device).view(1, 1, w) + flow[:, 1]).clamp(0, w - 1)
    index = (ys * w + xs).flatten(1)  # [N, H*W]
    return frames.flatten(2).gather(2, index[:, None].expand(n, c, h * w)).view(n, c, h, w)


def target_flow(target: torch.Tensor, flow_size: int = FLOW_SIZE, radius: int = FLOW_RADIUS) -> torch.Tensor:
    """Flow from each target frame to the next, at full resolution: ``[B, 3, F, H, W] -> [B*(F-1), 2, H, W]``
    (integer px; estimated at ``<= flow_size`` px and scaled up)."""
    b, _, f, h, w = target.shape
    luma = torch.tensor(_LUMA, dtype=torch.float32, device=target.device).view(1, 3, 1, 1, 1)
    grey = (target.float().clamp(0, 1) * luma).sum(1, keepdim=True).transpose(1, 2)  # [B, F, 1, H, W]
    scale = max(1, -(-max(h, w) // flow_size))
    small = grey.flatten(0, 1)  # [B*F, 1, H, W]
    if scale > 1:
        small = F.avg_pool2d(small, scale, ceil_mode=True)
    small = small.view(b, f, 1, *small.shape[-2:])
    a, nxt = small[:, :-1].flatten(0, 1), small[:, 1:].flatten(0, 1)  # [B*(F-1), 1, h', w']
    flow = block_matching_flow(a, nxt, radius)  # [N, 2, h', w'] at the flow resolution
    if scale > 1:
        flow = F.interpolate(flow.float(), scale_factor=scale, mode="nearest")[..., :h, :w].long() * scale
    return flow


def warp_error(recon: torch.Tensor, target: torch.Tensor, *, flow_size: int = FLOW_SIZE, radius: int = FLOW_RADIUS,
               occlusion_threshold: float = OCCLUSION_THRESHOLD) -> torch.Tensor:
    """Motion-compensated temporal-difference error along the target's flow (see the module docstring) -> ``[B]``."""
    _check_clips(recon, target)
    b, c, f, h, w = target.shape
    r, x = recon.float().clamp(0, 1), target.float().clamp(0, 1)
    flow = target_flow(x, flow_size, radius)  # [B*(F-1), 2, H, W]
    pairs = lambda v: (v[:, :, :-1].transpose(1, 2).reshape(-1, c, h, w),  # noqa: E731
                       v[:, :, 1:].transpose(1, 2).reshape(-1, c, h, w))
    (r0, r1), (x0, x1) = pairs(r), pairs(x)
    target_residual = x0 - _warp(x1, flow)  # [N, 3, H, W]
    valid = (target_residual.abs().amax(1) <= occlusion_threshold).float()  # [N, H, W]
    err = ((r0 - _warp(r1, flow)) - target_residual).abs().mean(1)  # [N, H, W]
    per_pair = (err * valid).flatten(1).sum(1) / valid.flatten(1).sum(1).clamp(min=1)
    return per_pair.view(b, f - 1).mean(1)


def mask_iou_per_frame(recon: torch.Tensor, gt_mask: torch.Tensor, background: Sequence[float] | torch.Tensor,
                       threshold: float = FOREGROUND_THRESHOLD) -> torch.Tensor:
    """Spatial mask IoU of every frame: ``recon [B, 3, F, H, W]``, ``gt_mask [B, F, H, W]`` -> ``[B, F]``."""
    b, c, f, h, w = recon.shape
    if gt_mask.shape != (b, f, h, w):
        raise ValueError(f"clip recon {tuple(recon.shape)} needs gt_mask [B, F, H, W]; got {tuple(gt_mask.shape)}")
    bg = torch.as_tensor(background, dtype=torch.float32, device=recon.device)
    bg = bg.expand(b, 3) if bg.shape == (3,) else bg
    frames = recon.transpose(1, 2).reshape(b * f, c, h, w)
    scores = spatial_iou(frames, gt_mask.reshape(b * f, h, w), bg.repeat_interleave(f, 0), threshold)
    return scores["mask_iou"].view(b, f)


def iou_stability(frame_iou: torch.Tensor) -> dict[str, torch.Tensor]:
    """Per-frame IoU ``[B, F]`` -> ``mask_iou_std`` (over frames) and ``mask_iou_delta`` (mean absolute change
    between consecutive frames), each ``[B]``."""
    return {"mask_iou_std": frame_iou.std(1, unbiased=False),
            "mask_iou_delta": (frame_iou[:, 1:] - frame_iou[:, :-1]).abs().mean(1)}


def temporal_coherence(recon: torch.Tensor, target: torch.Tensor, *, distance: str | Distance = "one_minus_ssim",
                       gt_mask: torch.Tensor | None = None, background: Sequence[float] | torch.Tensor | None = None,
                       threshold: float = FOREGROUND_THRESHOLD, flow_size: int = FLOW_SIZE,
                       radius: int = FLOW_RADIUS) -> dict[str, torch.Tensor]:
    """Every temporal score of ``recon`` vs ``target`` (clips ``[B, 3, F, H, W]``) -> ``{name: [B]}``: ``flicker``,
    ``warp_error``, ``distance`` and, with ``gt_mask [B, F, H, W]`` and ``background``, ``mask_iou_mean``,
    ``mask_iou_std`` and ``mask_iou_delta``."""
    _check_clips(recon, target)
    dist = get_distance(distance) if isinstance(distance, str) else distance
    target = target.to(recon.device)
    out = {"flicker": flicker(recon, target),
           "warp_error": warp_error(recon, target, flow_size=flow_size, radius=radius),
           "distance": dist(recon, target)}
    if gt_mask is not None:
        if background is None:
            raise ValueError("per-frame mask IoU needs the background colour the masks are read against")
        iou = mask_iou_per_frame(recon, gt_mask.to(recon.device), background, threshold)  # [B, F]
        out.update(mask_iou_mean=iou.mean(1), **iou_stability(iou))
    return out


__all__ = ["block_matching_flow", "flicker", "frame_differences", "iou_stability", "mask_iou_per_frame",
           "target_flow", "temporal_coherence", "warp_error"]
