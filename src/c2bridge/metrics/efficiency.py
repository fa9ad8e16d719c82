"""The study's summary numbers: parameter efficiency, stability, convergence, generalization.

``param_efficiency`` is the plan's formula, exactly (§5 E2.4, §6.1)::

    param_efficiency = 1 − (D(small) − D(ref)) / D(ref)

with D = LPIPS (or the named fallback distance; lower is better), small = the 10M adapter, ref = the 100M one.
Note: with D(ref) = 0.16 the 0.90 target is met at D(small) ≤ 0.176 (= D(ref)·(2 − 0.90)); the plan's prose says
0.178, which this formula scores 0.8875. We keep the formula.
"""
from __future__ import annotations

import math
from typing import Sequence

import numpy as np


def param_efficiency(d_small: float, d_ref: float) -> float:
    """``1 − (d_small − d_ref) / d_ref`` (1 = the small adapter matches the reference; > 1 = it beats it)."""
    d_small, d_ref = float(d_small), float(d_ref)
    if not (math.isfinite(d_ref) and d_ref > 0):
        raise ValueError(f"param_efficiency needs a positive, finite reference distance; got d_ref={d_ref}")
    if not math.isfinite(d_small):
        raise ValueError(f"param_efficiency needs a finite distance for the small adapter; got d_small={d_small}")
    return 1.0 - (d_small - d_ref) / d_ref


def distance_for_efficiency(d_ref: float, target: float = 0.9) -> float:
    """Largest D(small) that still reaches ``target`` efficiency: ``d_ref · (2 − target)`` (0.16 -> 0.176 at 0.9)."""
    if not d_ref > 0:
        raise ValueError(f"distance_for_efficiency needs a positive reference distance; got {d_ref}")
    return float(d_ref) * (2.0 - float(target))


def _as_curve(values: Sequence[float], what: str) -> np.ndarray:
    arr = np.asarray([float(v) for v in values], dtype=np.float64)
    if arr.ndim != 1 or arr.size == 0:
        raise ValueError(f"{what} needs a non-empty 1-D sequence of losses; got {arr.shape}")
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{what}: the loss curve contains NaN/inf (a diverged run); got {arr.size} values")
    return arr


def loss_variance(losses: Sequence[float], tail_fraction: float = 0.5) -> float:
    """Training stability: population variance (ddof 0) of the logged loss over the last ``tail_fraction`` of
    the run (the first half is the descent, whose spread says nothing about stability)."""
    if not 0 < tail_fraction <= 1:
        raise ValueError(f"tail_fraction must be in (0, 1]; got {tail_fraction}")
    arr = _as_curve(losses, "loss_variance")
    tail = arr[-max(1, int(math.ceil(arr.size * tail_fraction))):]
    return float(np.var(tail))


def _moving_average(arr: np.ndarray, window: int) -> np.ndarray:
    window = max(1, min(int(window), arr.size))
    kernel = np.ones(window) / window
    # 'valid' then left-pad with the running mean so index i averages losses[max(0,i-window+1) : i+1]
    valid = np.convolve(arr, kernel, mode="valid")
    head = np.cumsum(arr[: window - 1]) / np.arange(1, window)
    return np.concatenate([head, valid])


def steps_to_plateau(
    losses: Sequence[float],
    steps: Sequence[int] | None = None,
    window: int = 10,
    fraction: float = 0.05,
) -> int:
    """Convergence speed: the first step at which the smoothed loss (trailing moving average over ``window``
    logged points) is within ``fraction`` of the run's total improvement from its best smoothed value, i.e.
    ``smooth[i] − min(smooth) ≤ fraction · (smooth[0] − min(smooth))``. ``steps`` gives the step number of each
    logged loss (default 0, 1, 2, ...). A flat curve plateaus at its first step."""
    arr = _as_curve(losses, "steps_to_plateau")
    if steps is None:
        steps = list(range(arr.size))
    if len(steps) != arr.size:
        raise ValueError(f"steps_to_plateau: {len(steps)} step numbers for {arr.size} losses")
    if not 0 <= fraction < 1:
        raise ValueError(f"fraction must be in [0, 1); got {fraction}")
    smooth = _moving_average(arr, window)
    best = smooth.min()
    gap = max(smooth[0] - best, 0.0)
    reached = np.nonzero(smooth - best <= fraction * gap + 1e-12)[0]
    return int(steps[int(reached[0])])


def generalization_gap(train_value: float | Sequence[float], val_value: float | Sequence[float]) -> float:
    """``mean(val) − mean(train)`` of a distance (LPIPS etc.): > 0 means the adapter does worse on unseen data."""
    train = float(np.mean(np.asarray(train_value, dtype=np.float64)))
    val = float(np.mean(np.asarray(val_value, dtype=np.float64)))
    if not (math.isfinite(train) and math.isfinite(val)):
        raise ValueError(f"generalization_gap needs finite values; got train={train}, val={val}")
    return val - train


__all__ = [
    "distance_for_efficiency",
    "generalization_gap",
    "loss_variance",
    "param_efficiency",
    "steps_to_plateau",
]
