"""Learning-rate schedules (E2.3 B) as pure functions of the optimizer step.

The lr at step ``s`` (0-based, the lr used *for* the update at step ``s``) depends only on ``s`` and the config, so
the "scheduler state" in a checkpoint is just the step and resume is exact.

- constant:       lr
- cosine:         lr -> min_lr along a half cosine over the steps after warmup (plan: 1e-4 -> 1e-6)
- warmup_cosine:  linear warmup 0 -> lr over warmup_steps (default 1000), then cosine (plan: "1k warmup + decay")
- cyclic:         triangle between cyclic_low and cyclic_high (default optim.lr), period cyclic_period steps,
                  starting at the low end (plan: 1e-5 <-> 1e-4)

Every schedule takes the optional linear warmup first (``schedule.warmup_steps``).
"""
from __future__ import annotations

import math

from c2bridge.train.config import TrainConfig, schedule_warmup_steps


def lr_at(step: int, cfg: TrainConfig, total_steps: int) -> float:
    """Learning rate for optimizer step ``step`` of ``total_steps``."""
    s = cfg.schedule
    base = cfg.optim.lr
    warmup = schedule_warmup_steps(cfg)
    if s.name in ("cosine", "warmup_cosine"):
        return warmup_cosine_lr(step, total_steps, base, warmup, min_lr=s.min_lr)
    if step < warmup:
        return linear_warmup_lr(step, base, warmup)
    t = step - warmup  # steps since warmup ended
    if s.name == "constant":
        return base
    if s.name == "cyclic":
        high = s.cyclic_high if s.cyclic_high is not None else base
        phase = (t % s.cyclic_period) / s.cyclic_period  # 0 -> 1 over one period
        tri = 1.0 - abs(2.0 * phase - 1.0)  # 0 at the ends, 1 in the middle
        return s.cyclic_low + (high - s.cyclic_low) * tri
    raise ValueError(f"unknown schedule {s.name!r}; expected constant, cosine, warmup_cosine or cyclic")


def linear_warmup_lr(step: int, base: float, warmup: int) -> float:
    """Linear from base/warmup at step 0 up to base at step warmup-1 (never exactly 0: step 0 must learn)."""
    return base * (step + 1) / warmup


def warmup_cosine_lr(step: int, total_steps: int, base: float, warmup: int = 0, *, min_lr: float = 0.0,
                     min_fraction: float | None = None, land_on_last_step: bool = True) -> float:
    """Linear warmup over ``warmup`` steps, then a half cosine from ``base`` down to the floor.

    The floor is ``min_lr``, or ``min_fraction * base`` when ``min_fraction`` is given. ``land_on_last_step``: the
    last step (``total_steps - 1``) gets exactly the floor; otherwise the cosine spans ``total_steps - warmup``
    steps and ends one step short of it (the mini build's schedule).
    """
    if step < warmup:
        return linear_warmup_lr(step, base, warmup)
    span = max(1, total_steps - warmup - (1 if land_on_last_step else 0))
    progress = min(1.0, (step - warmup) / span)
    cosine = 0.5 * (1.0 + math.cos(math.pi * progress))  # 1 -> 0
    if min_fraction is not None:
        return base * (min_fraction + (1.0 - min_fraction) * cosine)
    return min_lr + (base - min_lr) * cosine


def set_lr(optimizer, lr: float) -> None:
    """Use ``lr`` for the next ``optimizer.step()`` (every param group)."""
    for group in optimizer.param_groups:
        group["lr"] = lr


def lr_curve(cfg: TrainConfig, total_steps: int) -> list[float]:
    return [lr_at(step, cfg, total_steps) for step in range(total_steps)]


def check_schedule(cfg: TrainConfig, total_steps: int) -> None:
    """Errors that need the run length (known once the dataset is loaded): raised before any step."""
    warmup = schedule_warmup_steps(cfg)
    if warmup and warmup >= total_steps:
        raise ValueError(
            f"schedule.warmup_steps={warmup} is not shorter than the run ({total_steps} steps); expected "
            f"warmup_steps < total steps (set schedule.warmup_steps, optim.max_steps or optim.epochs)"
        )
