"""The study's summary numbers: parameter efficiency, stability, convergence, generalization.

``param_efficiency`` is the plan's formula, exactly (§5 E2.4, §6.1)::

    param_efficiency = 1 − (D(small) − D(ref)) / D(ref)

with D = LPIPS (or the named fallback distance; lower is better), small = the 10M adapter, ref = the 100M one.
Note: with D(ref) = 0.16 the 0.90 target is met at D(small) ≤ 0.176 (= D(ref)·(2 − 0.90)); the plan's prose says
0.178, which this formula scores 0.8875. We keep the formula.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass
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


@dataclass(frozen=True)
class Plateau:
    """Where a validation-loss curve stopped improving: ``step`` (None when it did not) and, then, ``reason``."""

    step: int | None
    reason: str | None
    patience: int
    min_rel_improvement: float

    def to_dict(self) -> dict:
        return asdict(self)


PLATEAU_MODES = ("first", "current")


def detect_plateau(
    val_losses: Sequence[float],
    val_steps: Sequence[int] | None = None,
    *,
    patience: int = 2,
    min_rel_improvement: float = 0.01,
    total_steps: int | None = None,
    mode: str = "first",
) -> Plateau:
    """The step at which the validation loss plateaued, early-stopping style (the ``threshold_mode="rel"`` rule
    of torch's ReduceLROnPlateau): an evaluation *improves* when its loss is below ``best · (1 −
    min_rel_improvement)``; the curve has plateaued once ``patience`` evaluations in a row did not improve, and
    the plateau step is that of the last improving evaluation. A curve that still improves within its last
    ``patience`` evaluations did not plateau: ``Plateau(step=None, reason="did not plateau within N steps ...")``
    (N = ``total_steps``, else the last evaluated step), so ratios of steps to plateau become n/a instead of
    "the run length" by construction.

    ``mode``: ``"first"`` (a finished run's convergence speed) reports the first plateau anywhere in the curve;
    ``"current"`` (early stopping while the run goes on: call it after every evaluation) reports a plateau only
    when the curve *ends* on one, i.e. its last ``patience`` evaluations did not improve on the best before them.
    Called after each new evaluation, both modes first report a plateau at the same evaluation; they differ once
    a curve improves again after a plateau (then ``"current"`` waits for the next one)."""
    if mode not in PLATEAU_MODES:
        raise ValueError(f"detect_plateau: mode={mode!r}; expected one of {list(PLATEAU_MODES)}")
    arr = _as_curve(val_losses, "detect_plateau")
    steps = list(range(arr.size)) if val_steps is None else [int(s) for s in val_steps]
    if len(steps) != arr.size:
        raise ValueError(f"detect_plateau: {len(steps)} step numbers for {arr.size} validation losses")
    if patience < 1:
        raise ValueError(f"patience must be >= 1 evaluation; got {patience}")
    if not 0 <= min_rel_improvement < 1:
        raise ValueError(f"min_rel_improvement must be in [0, 1); got {min_rel_improvement}")
    horizon = int(total_steps) if total_steps is not None else steps[-1]
    best, best_i, since = float(arr[0]), 0, 0
    for i in range(1, arr.size):
        if arr[i] < best - min_rel_improvement * abs(best):
            best, best_i, since = float(arr[i]), i, 0
        else:
            since += 1
            if since >= patience and mode == "first":
                return Plateau(steps[best_i], None, patience, min_rel_improvement)
    if since >= patience:  # mode "current": the curve ends on a plateau
        return Plateau(steps[best_i], None, patience, min_rel_improvement)
    if arr.size <= patience:
        why = f"{arr.size} validation evaluation(s) are too few to see {patience} without improvement"
    else:
        why = f"the validation loss improved by > {min_rel_improvement:.0%} within the last {patience} evaluations"
    return Plateau(None, f"did not plateau within {horizon} steps ({why})", patience, min_rel_improvement)


def steps_to_plateau(
    losses: Sequence[float],
    steps: Sequence[int] | None = None,
    *,
    patience: int = 2,
    min_rel_improvement: float = 0.01,
    total_steps: int | None = None,
) -> int | None:
    """Convergence speed: :func:`detect_plateau`'s step on a validation-loss curve, None when it did not plateau
    within the run (see ``detect_plateau(...).reason`` for why)."""
    return detect_plateau(losses, steps, patience=patience, min_rel_improvement=min_rel_improvement,
                          total_steps=total_steps).step


def generalization_gap(train_value: float | Sequence[float], val_value: float | Sequence[float]) -> float:
    """``mean(val) − mean(train)`` of a distance (LPIPS etc.): > 0 means the adapter does worse on unseen data."""
    train = float(np.mean(np.asarray(train_value, dtype=np.float64)))
    val = float(np.mean(np.asarray(val_value, dtype=np.float64)))
    if not (math.isfinite(train) and math.isfinite(val)):
        raise ValueError(f"generalization_gap needs finite values; got train={train}, val={val}")
    return val - train


__all__ = [
    "PLATEAU_MODES",
    "Plateau",
    "detect_plateau",
    "distance_for_efficiency",
    "generalization_gap",
    "loss_variance",
    "param_efficiency",
    "steps_to_plateau",
]
