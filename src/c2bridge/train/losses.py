"""How one step's loss is put together (thin: the reconstruction terms live in ``c2bridge.decoder``).

    total = distill.recon_weight · reconstruction        (the decoder's LossSpec: flow / l2 / lpips / ssim / ...)
          + distill.weight       · distillation          (teacher tokens as a regression target, plan 8.3)
          + loss.moe_aux_weight  · adapter.aux_loss      (MoE load balancing; 0 for other adapters)

A term whose weight is 0 is not computed at all (pure distillation never runs the decoder). The reconstruction's
pixel terms run only on the steps ``loss.pixel_start`` / ``loss.pixel_every`` schedule (``pixel_terms_on``); the
other steps train on its flow term alone.
"""
from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F

from c2bridge.train.config import TrainConfig


def make_loss_spec(cfg: TrainConfig):
    """The decoder's LossSpec for ``cfg.loss``, resolved: a missing LPIPS backbone without a fallback raises
    FileNotFoundError here, before any step."""
    from c2bridge.decoder.objective import LossSpec

    spec = LossSpec.named(
        cfg.loss.name, weights=dict(cfg.loss.weights) or None, perceptual=cfg.loss.perceptual,
        perceptual_fallback=cfg.loss.perceptual_fallback, sigma=cfg.loss.sigma, logit_mean=cfg.loss.logit_mean,
        logit_std=cfg.loss.logit_std, x0_weighting=cfg.loss.x0_weighting,
    )
    return spec.resolve()


def pixel_start_step(cfg: TrainConfig, total_steps: int) -> int:
    """The first optimizer step (0-based) with pixel terms: ``ceil(loss.pixel_start · total_steps)``."""
    return math.ceil(round(cfg.loss.pixel_start * total_steps, 9))


def pixel_terms_on(cfg: TrainConfig, step: int, start: int) -> bool:
    """Whether optimizer step ``step`` (0-based) trains the pixel terms: from ``start`` on, every
    ``loss.pixel_every``-th step (``start`` itself included)."""
    return step >= start and (step - start) % cfg.loss.pixel_every == 0


def distillation_loss(student: torch.Tensor, teacher: torch.Tensor, metric: str = "mse") -> torch.Tensor:
    """Token regression: student and teacher conditioning tokens, both ``[B, n_tokens, cond_dim]``."""
    if student.shape != teacher.shape:
        raise ValueError(f"distillation needs equal token shapes; student {tuple(student.shape)} vs teacher "
                         f"{tuple(teacher.shape)}")
    student, teacher = student.float(), teacher.float()
    if metric == "mse":
        return F.mse_loss(student, teacher)
    if metric == "cosine":
        return (1.0 - F.cosine_similarity(student, teacher, dim=-1)).mean()
    raise ValueError(f"unknown distill.metric {metric!r}; expected mse or cosine")


def combine_losses(
    cfg: TrainConfig,
    recon: torch.Tensor | None = None,
    recon_parts: dict | None = None,
    aux: torch.Tensor | None = None,
    distill: torch.Tensor | None = None,
) -> tuple[torch.Tensor, dict[str, float]]:
    """-> (total loss tensor to backprop, {term: float} for the log)."""
    total = None
    parts: dict[str, float] = {}

    def add(term: torch.Tensor, weight: float) -> None:
        nonlocal total
        term = term.float() * weight
        total = term if total is None else total + term

    if recon is not None:
        add(recon, cfg.distill.recon_weight)
        parts["recon"] = float(recon.detach())
        for name, value in (recon_parts or {}).items():
            if name == "total":  # = recon
                continue
            parts[f"recon_{name}"] = float(value.detach()) if torch.is_tensor(value) else float(value)
    if distill is not None:
        add(distill, cfg.distill.weight)
        parts["distill"] = float(distill.detach())
    if aux is not None and cfg.loss.moe_aux_weight > 0:
        aux = torch.as_tensor(aux)
        if aux.requires_grad or float(aux.detach()) != 0.0:
            add(aux, cfg.loss.moe_aux_weight)
        parts["moe_aux"] = float(aux.detach())
    if total is None:
        raise ValueError("no loss term to train on (distill.recon_weight = 0 and no distill.teacher)")
    return total, parts
