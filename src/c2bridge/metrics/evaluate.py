"""Evaluate an adapter end to end: features -> adapter -> LTXPipeline sample -> metrics vs the targets.

``evaluate_adapter(adapter, bridge, data, ...)`` where ``data`` is a batch dict as ``collate_features`` makes it
(``vlm [B,T,vlm_dim]``, ``vlm_mask [B,T]``, ``dino [B,P,dino_dim]``, ``target [B,3,H,W]`` or ``[B,3,F,H,W]``,
optional ``mask [B,H,W]``), a list of cache items, or a ``FeatureCache``. Returns a JSON-able dict:

- ``distance`` (the name actually used: a fallback is reported as itself), ``distance_mean``/``distance_std`` and
  the same mean under the distance's own name (e.g. ``"lpips_alex": 0.21``), ``ssim``, ``psnr``;
- ``mask_iou`` / ``box_iou`` when the data has ground-truth masks and its dataset declares a spatial-IoU protocol
  (``c2bridge.datasets.DATASET_SPECS``; background colour: the ``background`` argument, else read off each
  target outside its mask). On a dataset without one (COCO photos, SSv2) both are ``None`` and ``iou_note`` says
  why. The dataset is the ``dataset`` argument, else the one a ``FeatureCache``'s key records; data of unknown
  origin with masks is scored;
- for clips (``F >= 2``): ``flicker``, ``warp_error`` and, with IoU, ``mask_iou_std`` / ``mask_iou_delta``
  (``c2bridge.metrics.temporal``);
- ``adapter_latency_ms`` (adapter alone, batch 1, warm-up excluded), ``param_bytes``, ``num_params``;
- ``per_sample`` lists (for confidence intervals) and the sampling settings;
- ``grid_png``: a side-by-side PNG (input | reconstruction per row) when ``out_png`` is given.

``evaluate_conditioning(cond_fn, bridge, data, ...)`` does the same for any conditioning (baselines: the zero
conditioning ``bridge.null_cond``, the mini decoder's own captions ``bridge.caption_cond``).
"""
from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import torch
from torch import nn

from c2bridge.metrics.distance import get_distance
from c2bridge.metrics.image import psnr, ssim
from c2bridge.metrics.perf import measure_latency, param_memory
from c2bridge.metrics.spatial import FOREGROUND_THRESHOLD, background_from_target, spatial_iou
from c2bridge.metrics.temporal import flicker, iou_stability, mask_iou_per_frame, warp_error

CondFn = Callable[[dict], "tuple[torch.Tensor, torch.Tensor | None]"]


def _collate(items: Sequence[dict]) -> dict:
    """``c2bridge.encoders.collate_features`` when available; else the same contract for the keys used here."""
    try:
        from c2bridge.encoders import collate_features  # type: ignore[attr-defined]
    except ImportError:
        collate_features = None
    if collate_features is not None:
        return collate_features(list(items))
    vlm = [it["vlm"] for it in items]
    t_max = max(v.shape[0] for v in vlm)
    batch = {
        "vlm": torch.stack([torch.nn.functional.pad(v, (0, 0, 0, t_max - v.shape[0])) for v in vlm]),
        "vlm_mask": torch.stack([torch.arange(t_max) < v.shape[0] for v in vlm]),
        "dino": torch.stack([it["dino"] for it in items]),
        "target": torch.stack([it["target"] for it in items]),
    }
    if all(it.get("mask") is not None for it in items):
        batch["mask"] = torch.stack([it["mask"] for it in items])
    if all("caption_ids" in it for it in items):
        ids = [torch.as_tensor(it["caption_ids"]) for it in items]
        if len({i.shape for i in ids}) == 1:
            batch["caption_ids"] = torch.stack(ids)
    return batch


def _batch_size_of(batch: dict) -> int:
    if "target" not in batch:
        raise ValueError(f"evaluation data needs 'target' pixels; got keys {sorted(batch)}")
    return int(batch["target"].shape[0])


def _slice(batch: dict, start: int, stop: int) -> dict:
    size = _batch_size_of(batch)
    return {k: (v[start:stop] if isinstance(v, torch.Tensor) and v.ndim > 0 and v.shape[0] == size else
                v[start:stop] if isinstance(v, list) and len(v) == size else v)
            for k, v in batch.items()}


def iter_batches(data: Any, n: int | None, batch_size: int) -> Iterator[dict]:
    """Batch dicts of at most ``batch_size`` from a batch dict, a list of items, or an indexable cache."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1; got {batch_size}")
    if isinstance(data, dict):
        total = _batch_size_of(data) if n is None else min(n, _batch_size_of(data))
        for start in range(0, total, batch_size):
            yield _slice(data, start, min(start + batch_size, total))
        return
    if not (hasattr(data, "__len__") and hasattr(data, "__getitem__")):
        raise ValueError(f"evaluation data must be a batch dict, a list of items or a FeatureCache; got {type(data)}")
    total = len(data) if n is None else min(n, len(data))
    for start in range(0, total, batch_size):
        yield _collate([data[i] for i in range(start, min(start + batch_size, total))])


def _module_device(module: nn.Module, default: torch.device) -> torch.device:
    for p in module.parameters():
        return p.device
    return default


def adapter_cond_fn(adapter: nn.Module, device: torch.device | None = None) -> CondFn:
    """batch -> (adapter(vlm, dino, vlm_mask=...) [B, L, cond_dim], all-ones mask)."""

    def cond_fn(batch: dict):
        dev = device or _module_device(adapter, torch.device("cpu"))
        vlm_mask = batch.get("vlm_mask")
        cond = adapter(batch["vlm"].to(dev), batch["dino"].to(dev),
                       vlm_mask=vlm_mask.to(dev) if vlm_mask is not None else None)
        return cond, None  # the adapter emits n_tokens real tokens

    return cond_fn


def save_side_by_side(inputs: torch.Tensor, recons: torch.Tensor, path: str | os.PathLike, max_rows: int = 8) -> Path:
    """PNG grid, one row per sample: input | reconstruction (clips: their middle frame). Written atomically."""
    if inputs.shape != recons.shape:
        raise ValueError(f"inputs {tuple(inputs.shape)} and reconstructions {tuple(recons.shape)} differ in shape")
    if inputs.ndim == 5:  # [B, 3, F, H, W] -> middle frame
        mid = inputs.shape[2] // 2
        inputs, recons = inputs[:, :, mid], recons[:, :, mid]
    rows = min(max_rows, inputs.shape[0])
    return save_image_grid([torch.stack([inputs[i], recons[i]]) for i in range(rows)], path)


def save_image_grid(rows: Sequence[torch.Tensor], path: str | os.PathLike, scale: int = 1) -> Path:
    """PNG of image rows (``rows[i]``: ``[n_i, 3, H, W]`` in [0, 1]; short rows padded white), each image scaled
    ``scale``x (nearest), 2 px white gaps. Written atomically."""
    from torchvision.utils import make_grid, save_image

    from c2bridge._io import atomic_path

    n = max(len(r) for r in rows)
    tiles = torch.cat([torch.cat([r.float().clamp(0, 1).cpu(), torch.ones(n - len(r), *r.shape[1:])])
                       for r in rows])  # [len(rows) * n, 3, H, W]
    if scale != 1:
        tiles = torch.nn.functional.interpolate(tiles, scale_factor=scale, mode="nearest")
    grid = make_grid(tiles, nrow=n, padding=2, pad_value=1.0)
    path = Path(path)
    with atomic_path(path) as tmp:
        save_image(grid, tmp, format="png")
    return path


def _dataset_name(data: Any) -> str | None:
    """The dataset a FeatureCache's key spec records (None for batch dicts, item lists and unkeyed stand-ins)."""
    manifest = getattr(data, "manifest", None)
    if not isinstance(manifest, dict):
        return None
    name = ((manifest.get("spec") or {}).get("dataset") or {}).get("name")
    return name if isinstance(name, str) else None


def _iou_applies(dataset: str | None) -> tuple[bool, str | None]:
    """(score spatial IoU?, why not) for the dataset the data comes from."""
    if dataset is None:
        return True, None
    from c2bridge.datasets import dataset_spec

    spec = dataset_spec(dataset)
    return spec.iou_protocol is not None, (None if spec.iou_protocol else f"{dataset}: {spec.iou_note}")


def _mean(values: list[float]) -> float:
    return float(sum(values) / len(values)) if values else float("nan")


def _std(values: list[float]) -> float:
    if len(values) < 2:
        return 0.0
    m = _mean(values)
    return float(math.sqrt(sum((v - m) ** 2 for v in values) / (len(values) - 1)))


def evaluate_conditioning(
    cond_fn: CondFn,
    bridge,
    data: Any,
    *,
    distance: str = "one_minus_ssim",
    distance_fallback: str | None = None,
    n: int | None = None,
    batch_size: int = 8,
    steps: int | None = None,
    guidance_scale: float = 1.0,
    seed: int = 0,
    background: Sequence[float] | torch.Tensor | None = None,
    iou_threshold: float = FOREGROUND_THRESHOLD,
    out_png: str | os.PathLike | None = None,
    dataset: str | None = None,
) -> dict[str, Any]:
    """Sample from ``cond_fn(batch)`` conditioning with ``bridge.sample`` and score against ``batch["target"]``.

    Sample ``i`` (in data order) uses seed ``seed + i``, so results do not depend on ``batch_size``.
    """
    dist = get_distance(distance, fallback=distance_fallback)
    with_iou, iou_note = _iou_applies(dataset or _dataset_name(data))
    per: dict[str, list[float]] = {"distance": [], "ssim": [], "psnr": []}
    iou: dict[str, list[float]] = {"mask_iou": [], "box_iou": []}
    temporal: dict[str, list[float]] = {"flicker": [], "warp_error": [], "mask_iou_std": [], "mask_iou_delta": []}
    grid_inputs, grid_recons = [], []
    index = 0
    for batch in iter_batches(data, n, batch_size):
        b = batch["target"].shape[0]
        with torch.no_grad():
            cond, mask = cond_fn(batch)
            recon = bridge.sample(
                cond, mask,
                num_frames=batch["target"].shape[2] if batch["target"].ndim == 5 else 1,
                height=batch["target"].shape[-2], width=batch["target"].shape[-1],
                steps=steps, guidance_scale=guidance_scale, seed=[seed + index + i for i in range(b)],
            )
            target = batch["target"].to(recon.device).float()  # score on the decoder's device
            per["distance"] += dist(recon, target).tolist()
            per["ssim"] += ssim(recon, target).tolist()
            per["psnr"] += psnr(recon, target).tolist()
            gt_mask = batch.get("mask") if with_iou else None
            if gt_mask is not None:
                gt_mask = gt_mask.to(recon.device).bool()
                bg = background if background is not None else background_from_target(target, gt_mask)
                scores = spatial_iou(recon, gt_mask, bg, threshold=iou_threshold)
                for k in iou:
                    iou[k] += scores[k].tolist()
            if target.ndim == 5 and target.shape[2] > 1:  # clips: how the reconstruction changes over time
                temporal["flicker"] += flicker(recon, target).tolist()
                temporal["warp_error"] += warp_error(recon, target).tolist()
                if gt_mask is not None:
                    stability = iou_stability(mask_iou_per_frame(recon, gt_mask, bg, iou_threshold))
                    for k, v in stability.items():
                        temporal[k] += v.tolist()
        if len(grid_inputs) * batch_size < 8:
            grid_inputs.append(target.cpu())
            grid_recons.append(recon.cpu())
        index += b
    if index == 0:
        raise ValueError("evaluation data is empty (n=0 or an empty cache/batch)")

    result: dict[str, Any] = {
        "n": index,
        "distance": dist.name,
        "distance_mean": _mean(per["distance"]),
        "distance_std": _std(per["distance"]),
        dist.name: _mean(per["distance"]),
        "ssim": _mean(per["ssim"]),
        "psnr": _mean(per["psnr"]),
        "steps": int(steps or bridge.default_steps),
        "guidance_scale": float(guidance_scale),
        "seed": int(seed),
        "per_sample": dict(per),
    }
    if iou["mask_iou"]:
        result.update(mask_iou=_mean(iou["mask_iou"]), box_iou=_mean(iou["box_iou"]), iou_threshold=iou_threshold)
        result["per_sample"].update(iou)
    elif iou_note is not None:
        result.update(mask_iou=None, box_iou=None, iou_note=iou_note)
    for k, values in temporal.items():
        if values:
            result[k] = _mean(values)
            result["per_sample"][k] = values
    if out_png is not None:
        result["grid_png"] = str(save_side_by_side(torch.cat(grid_inputs), torch.cat(grid_recons), out_png))
    return result


def evaluate_adapter(
    adapter: nn.Module,
    bridge,
    batch_or_cache: Any,
    *,
    distance: str = "one_minus_ssim",
    latency_iters: int = 20,
    **kwargs: Any,
) -> dict[str, Any]:
    """Reconstruction metrics of ``adapter`` through ``bridge`` (see the module docstring) + adapter latency and
    parameter memory. kwargs: those of :func:`evaluate_conditioning` (n, steps, guidance_scale, seed, background,
    out_png, batch_size, distance_fallback, iou_threshold, dataset)."""
    was_training = adapter.training
    adapter.eval()
    try:
        result = evaluate_conditioning(adapter_cond_fn(adapter), bridge, batch_or_cache, distance=distance, **kwargs)
        first = next(iter_batches(batch_or_cache, 1, 1))  # latency of the adapter alone, one sample
        device = _module_device(adapter, torch.device("cpu"))
        vlm_mask = first.get("vlm_mask")
        latency = measure_latency(
            adapter, first["vlm"].to(device), first["dino"].to(device),
            vlm_mask=vlm_mask.to(device) if vlm_mask is not None else None, iters=latency_iters,
        )
    finally:
        adapter.train(was_training)
    num_params = getattr(adapter, "num_params", None)
    if num_params is None:
        num_params = sum(p.numel() for p in adapter.parameters() if p.requires_grad)
    result.update(
        adapter_latency_ms=latency["median_ms"],
        adapter_latency=latency,
        param_bytes=param_memory(adapter),
        num_params=int(num_params),
    )
    return result


__all__ = ["adapter_cond_fn", "evaluate_adapter", "evaluate_conditioning", "iter_batches", "save_image_grid",
           "save_side_by_side"]
