"""Spatial IoU on synthetic shapes: where did the reconstruction put the foreground?

The synthetic world draws shapes on a known, uniform background colour. The foreground of a reconstruction is
every pixel whose colour is farther than ``threshold`` (max over RGB channels, in [0, 1] units) from that
background colour. The default threshold is the one the shapes world defines its ground-truth masks with
(``c2bridge.data.shapes.FOREGROUND_THRESHOLD``), so a perfect reconstruction scores exactly 1. We compare it with
the ground-truth mask (union of shapes):

- mask IoU: |pred ∩ gt| / |pred ∪ gt| over pixels;
- box IoU: IoU of the tight boxes around the predicted and ground-truth foregrounds.

Conventions: both empty -> 1.0 (nothing to find, nothing found); exactly one empty -> 0.0.
"""
from __future__ import annotations

from typing import Sequence

import torch

from c2bridge.data.shapes import FOREGROUND_THRESHOLD


def _background_tensor(background, batch: int, device) -> torch.Tensor:  # -> [B, 3]
    bg = torch.as_tensor(background, dtype=torch.float32, device=device)
    if bg.shape == (3,):
        return bg.expand(batch, 3)
    if bg.shape == (batch, 3):
        return bg
    raise ValueError(f"background must be an RGB triple in [0, 1] or [B, 3]; got shape {tuple(bg.shape)}")


def foreground_mask(image: torch.Tensor, background: Sequence[float] | torch.Tensor,
                    threshold: float = FOREGROUND_THRESHOLD):
    """``image [B, 3, H, W]`` in [0, 1] -> ``[B, H, W]`` bool: pixels differing from ``background`` by > threshold."""
    if image.ndim != 4 or image.shape[1] != 3:
        raise ValueError(f"foreground_mask expects images [B, 3, H, W]; got {tuple(image.shape)}")
    bg = _background_tensor(background, image.shape[0], image.device)  # [B, 3]
    diff = (image.float().clamp(0, 1) - bg[:, :, None, None]).abs().amax(dim=1)  # [B, H, W]
    return diff > threshold


def mask_iou(pred: torch.Tensor, gt: torch.Tensor) -> torch.Tensor:
    """``[B, H, W]`` bool masks -> ``[B]`` IoU (both empty -> 1)."""
    if pred.shape != gt.shape or pred.ndim != 3:
        raise ValueError(f"mask_iou expects two [B, H, W] masks; got {tuple(pred.shape)} and {tuple(gt.shape)}")
    pred, gt = pred.bool(), gt.bool()
    inter = (pred & gt).flatten(1).sum(1).float()
    union = (pred | gt).flatten(1).sum(1).float()
    return torch.where(union > 0, inter / union.clamp(min=1), torch.ones_like(union))


def mask_to_box(mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``[B, H, W]`` bool -> (boxes ``[B, 4]`` xyxy in pixels, end-exclusive; nonempty ``[B]`` bool)."""
    rows = mask.any(dim=2)  # [B, H]
    cols = mask.any(dim=1)  # [B, W]
    nonempty = rows.any(dim=1)
    h_idx = torch.arange(mask.shape[1], device=mask.device)
    w_idx = torch.arange(mask.shape[2], device=mask.device)
    big = max(mask.shape[1], mask.shape[2]) + 1
    y0 = torch.where(rows, h_idx, big).amin(dim=1)
    y1 = torch.where(rows, h_idx, -1).amax(dim=1) + 1
    x0 = torch.where(cols, w_idx, big).amin(dim=1)
    x1 = torch.where(cols, w_idx, -1).amax(dim=1) + 1
    boxes = torch.stack([x0, y0, x1, y1], dim=1).float()
    return torch.where(nonempty[:, None], boxes, torch.zeros_like(boxes)), nonempty


def box_iou(pred: torch.Tensor, gt: torch.Tensor) -> torch.Tensor:
    """IoU of the tight boxes around two ``[B, H, W]`` masks -> ``[B]`` (both empty -> 1, one empty -> 0)."""
    if pred.shape != gt.shape or pred.ndim != 3:
        raise ValueError(f"box_iou expects two [B, H, W] masks; got {tuple(pred.shape)} and {tuple(gt.shape)}")
    from torchvision.ops import box_iou as tv_box_iou

    pred_box, pred_ok = mask_to_box(pred.bool())
    gt_box, gt_ok = mask_to_box(gt.bool())
    iou = tv_box_iou(pred_box, gt_box).diagonal().nan_to_num(0.0)  # [B]
    iou = torch.where(pred_ok & gt_ok, iou, torch.zeros_like(iou))
    return torch.where(~pred_ok & ~gt_ok, torch.ones_like(iou), iou)


def spatial_iou(
    recon: torch.Tensor,
    gt_mask: torch.Tensor,
    background: Sequence[float] | torch.Tensor,
    threshold: float = FOREGROUND_THRESHOLD,
) -> dict[str, torch.Tensor]:
    """Localise the foreground of ``recon`` against ``background`` and compare with ``gt_mask``.

    ``recon [B, 3, H, W]`` with ``gt_mask [B, H, W]``, or clips ``[B, 3, F, H, W]`` with ``gt_mask [B, F, H, W]``
    (per-frame IoU averaged per sample). Returns ``{"mask_iou": [B], "box_iou": [B]}``.
    """
    if recon.ndim == 5:
        b, c, f, h, w = recon.shape
        if gt_mask.shape != (b, f, h, w):
            raise ValueError(f"clip recon {tuple(recon.shape)} needs gt_mask [B, F, H, W]; got {tuple(gt_mask.shape)}")
        bg = _background_tensor(background, b, recon.device).repeat_interleave(f, dim=0)
        out = spatial_iou(recon.permute(0, 2, 1, 3, 4).reshape(b * f, c, h, w), gt_mask.reshape(b * f, h, w), bg,
                          threshold)
        return {k: v.view(b, f).mean(dim=1) for k, v in out.items()}
    if recon.ndim != 4 or gt_mask.shape != (recon.shape[0], *recon.shape[2:]):
        raise ValueError(
            f"spatial_iou expects recon [B, 3, H, W] with gt_mask [B, H, W]; got {tuple(recon.shape)} and "
            f"{tuple(gt_mask.shape)}"
        )
    pred = foreground_mask(recon, background, threshold)
    gt = gt_mask.to(pred.device).bool()
    return {"mask_iou": mask_iou(pred, gt), "box_iou": box_iou(pred, gt)}


def background_from_target(target: torch.Tensor, gt_mask: torch.Tensor) -> torch.Tensor:
    """The known background colour read off the ground truth: per-sample median RGB outside the mask -> [B, 3].

    For worlds whose background constant is not passed explicitly (a sample that is all foreground gets the
    median of all its pixels).
    """
    if target.ndim == 5:  # clips: the first frame carries the same background
        target, gt_mask = target[:, :, 0], gt_mask[:, 0]
    colours = []
    for image, mask in zip(target.float(), gt_mask.bool()):
        pixels = image.flatten(1)[:, ~mask.flatten()] if (~mask).any() else image.flatten(1)  # [3, N]
        colours.append(pixels.median(dim=1).values)
    return torch.stack(colours)


__all__ = ["FOREGROUND_THRESHOLD", "background_from_target", "box_iou", "foreground_mask", "mask_iou", "mask_to_box",
           "spatial_iou"]
