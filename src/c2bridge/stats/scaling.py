"""The scaling law ``distance(N) = D∞ + a·N^(−α)``, its bootstrap band, and the smallest N that passes.

Fit. ``scipy.optimize.curve_fit`` on the per-budget mean distances, weighted by the number of seeds (the same
least-squares solution as fitting every seed's point), in ``x = N / N0`` with ``N0`` the geometric mean of the
budgets so ``a`` and ``α`` are well scaled; ``a`` is reported in the plain form ``D∞ + a·N^(−α)``. Bounds:
``0 ≤ D∞ ≤ max(D)``, ``a ≥ 0`` (distance does not grow with size), ``0.01 ≤ α ≤ 4``; several starting ``α`` and the
best fit kept, so 3 budgets (an exact fit) up to 5 (two degrees of freedom) work.

Band. The fit is bootstrapped by resampling seeds within each budget (and, given per-sample values ``[S, M]``,
the evaluation samples too, the same indices for every budget: they are the same images). Resampled seed
deviations are scaled by ``sqrt(S/(S−1))`` (Davison & Hinkley's modified residuals: with 2-3 seeds a plain
resample has only ``(S−1)/S`` of the seed variance). Replicates whose fit fails are dropped and counted.

The smallest passing size. ``param_efficiency(N) = 1 − (D(N) − D_ref)/D_ref ≥ e`` ⟺ ``D(N) ≤ (2 − e)·D_ref`` ⟺
``N ≥ (a / ((2 − e)·D_ref − D∞))^(1/α)``. ``D_ref`` is by default the *fitted* distance at the reference budget
(``reference="fitted"``): both sides then come from one model that pools every budget's seeds, so the reference's
own seed noise is not charged to the prediction alone, and each bootstrap replicate refits both. The measured
reference (``reference="measured"``: the mean of the reference budget's seeds) is what a single
``param_efficiency`` uses and is offered for that comparison; with it, a reference below the curve can make every
size fail. The interval is the percentile interval of the replicates' N (a replicate that never reaches the line
counts as infinitely large).
"""
from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np

ALPHA_STARTS = (0.25, 0.5, 1.0, 2.0)
ALPHA_BOUNDS = (0.01, 4.0)


def power_law(n: Any, d_inf: float, a: float, alpha: float) -> np.ndarray:
    """``D∞ + a·N^(−α)``."""
    return d_inf + a * np.asarray(n, dtype=np.float64) ** (-alpha)


@dataclass(frozen=True)
class ScalingFit:
    d_inf: float
    a: float                  # D(N) = d_inf + a * N**-alpha (N in parameters)
    alpha: float
    n_params: tuple[float, ...]        # the budgets' parameter counts
    mean_distance: tuple[float, ...]   # their measured mean distances
    n_seeds: tuple[int, ...]
    n_samples: int
    level: float
    n_resamples: int
    n_failed: int                      # bootstrap replicates whose fit failed (dropped)
    rmse: float                        # of the budget means around the fitted curve
    replicates: np.ndarray = field(repr=False, compare=False)   # [B, 3] (d_inf, a, alpha)
    ref_replicates: np.ndarray = field(repr=False, compare=False)  # [B] measured mean at reference_params
    reference_params: float = 0.0      # the budget whose measured mean ref_replicates records
    method: str = "scipy.optimize.curve_fit; bootstrap of seeds within budgets"

    def predict(self, n: Any) -> np.ndarray:
        return power_law(n, self.d_inf, self.a, self.alpha)

    def band(self, n: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(low, mid, high) at the parameter counts ``n``: the fit and the replicates' percentile band."""
        n = np.asarray(n, dtype=np.float64)
        mid = self.predict(n)
        if not len(self.replicates):
            return mid, mid, mid
        r = self.replicates
        curves = power_law(n[None, :], r[:, :1], r[:, 1:2], r[:, 2:3])  # [B, G]
        alpha = (1 - self.level) / 2
        return np.quantile(curves, alpha, axis=0), mid, np.quantile(curves, 1 - alpha, axis=0)

    def to_dict(self) -> dict[str, Any]:
        def q(i):
            if not len(self.replicates):
                return None
            alpha = (1 - self.level) / 2
            return [float(v) for v in np.quantile(self.replicates[:, i], [alpha, 1 - alpha])]

        return {
            "form": "D(N) = d_inf + a * N^-alpha",
            "d_inf": self.d_inf, "a": self.a, "alpha": self.alpha,
            "d_inf_interval": q(0), "alpha_interval": q(2),
            "n_params": list(self.n_params), "mean_distance": list(self.mean_distance),
            "n_seeds": list(self.n_seeds), "n_samples": self.n_samples, "rmse": self.rmse,
            "level": self.level, "n_resamples": self.n_resamples, "n_failed": self.n_failed, "method": self.method,
        }


@dataclass(frozen=True)
class SizePrediction:
    """The smallest N whose predicted param_efficiency vs the reference reaches ``efficiency``."""

    efficiency: float
    n_params: float | None        # None: not reached within the searched range
    low: float | None
    high: float | None            # None: the upper end is not reached within the range
    level: float
    reference: str                # "fitted" | "measured"
    reference_params: float
    reference_distance: float
    distance_line: float          # (2 − e)·D_ref: the distance N must reach
    search_range: tuple[float, float]
    extrapolated: bool            # the prediction lies outside the budgets actually trained
    text: str
    status: str = "predicted"     # predicted | below / beyond the trained budgets | not reached | flat

    def to_dict(self) -> dict[str, Any]:
        from dataclasses import asdict

        d = asdict(self)
        d["search_range"] = list(self.search_range)
        return d


def _table(values: Any, what: str) -> np.ndarray:
    arr = np.asarray(values, dtype=np.float64)
    arr = arr[:, None] if arr.ndim == 1 else arr
    if arr.ndim != 2 or arr.shape[0] < 1 or not np.all(np.isfinite(arr)):
        raise ValueError(f"{what}: expected finite distances [seeds] or [seeds, samples]; got shape {np.shape(values)}")
    return arr


def _fit(x: np.ndarray, y: np.ndarray, w: np.ndarray, starts: Sequence[tuple[float, float, float]]):
    """Best (d_inf, a_at_x1, alpha) over the starts; None when every start fails."""
    from scipy.optimize import curve_fit

    hi_d = max(float(y.max()), 1e-12)
    lower, upper = [0.0, 0.0, ALPHA_BOUNDS[0]], [hi_d, np.inf, ALPHA_BOUNDS[1]]
    best, best_sse = None, math.inf
    for p0 in starts:
        p0 = [min(max(p0[0], 0.0), hi_d * (1 - 1e-9)), max(p0[1], 1e-12), min(max(p0[2], lower[2]), upper[2])]
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # OptimizeWarning: covariance not estimable with 3 points
                p, _ = curve_fit(power_law, x, y, p0=p0, sigma=1 / np.sqrt(w), bounds=(lower, upper), maxfev=5000)
        except (RuntimeError, ValueError):
            continue
        sse = float(np.sum(w * (power_law(x, *p) - y) ** 2))
        if sse < best_sse:
            best, best_sse = p, sse
    return best


def _starts(x: np.ndarray, y: np.ndarray) -> list[tuple[float, float, float]]:
    d0 = 0.5 * float(y.min())
    out = []
    for alpha in ALPHA_STARTS:
        a = max(float(y.max()) - d0, 1e-6) * float(x.min()) ** alpha
        out.append((d0, a, alpha))
    return out


def fit_scaling(
    n_params: Sequence[float],
    distances: Sequence[Any],
    *,
    level: float = 0.95,
    n_resamples: int = 400,
    seed: int = 0,
    reference_params: float | None = None,
) -> ScalingFit:
    """Fit ``D(N) = D∞ + a·N^(−α)`` to every budget's seeds (``distances[i]``: ``[S_i]`` per-seed distances or
    ``[S_i, M]`` per-sample ones) and bootstrap it (see the module doc). ``reference_params``: the budget whose
    measured mean each replicate also records (for ``smallest_passing_size(reference="measured")``; default the
    largest)."""
    n = np.asarray(n_params, dtype=np.float64)
    tables = [_table(d, f"budget {i}") for i, d in enumerate(distances)]
    if n.ndim != 1 or len(n) != len(tables):
        raise ValueError(f"fit_scaling: {len(n)} parameter counts for {len(tables)} budgets")
    if len(n) < 3 or len(set(n.tolist())) != len(n) or np.any(n <= 0):
        raise ValueError(f"fit_scaling needs >= 3 distinct positive budgets (3 parameters); got {n.tolist()}")
    ms = {t.shape[1] for t in tables}
    per_sample = len(ms) == 1 and ms != {1}
    if len(ms) != 1:
        raise ValueError(f"fit_scaling: every budget needs the same evaluation samples; got {sorted(ms)} per trial")
    order = np.argsort(n)
    n, tables = n[order], [tables[i] for i in order]
    n0 = float(np.exp(np.mean(np.log(n))))
    x = n / n0
    w = np.array([t.shape[0] for t in tables], dtype=np.float64)
    y = np.array([t.mean() for t in tables])
    p = _fit(x, y, w, _starts(x, y))
    if p is None:
        raise RuntimeError(f"scaling-law fit failed on budgets {n.tolist()} with mean distances {y.tolist()}")
    ref_i = int(np.argmin(np.abs(n - (reference_params if reference_params is not None else n.max()))))

    rng = np.random.default_rng(seed)
    m = tables[0].shape[1]
    reps, refs, failed = [], [], 0
    for _ in range(n_resamples):
        cols = rng.integers(0, m, size=m) if per_sample else slice(None)
        yb = np.empty(len(tables))
        for i, t in enumerate(tables):
            rows = t[:, cols].mean(axis=1)  # [S] per-seed means on the resampled samples
            s = len(rows)
            pick = rows[rng.integers(0, s, size=s)]
            scale = math.sqrt(s / (s - 1)) if s > 1 else 1.0
            yb[i] = rows.mean() + scale * (pick.mean() - rows.mean())
        pb = _fit(x, yb, w, [tuple(p)])
        if pb is None:
            failed += 1
            continue
        reps.append(pb)
        refs.append(yb[ref_i])
    reps_arr = np.array(reps).reshape(-1, 3)
    to_plain = lambda q: np.stack([q[..., 0], q[..., 1] * n0 ** q[..., 2], q[..., 2]], axis=-1)  # noqa: E731
    plain = to_plain(np.asarray(p))
    return ScalingFit(
        d_inf=float(plain[0]), a=float(plain[1]), alpha=float(plain[2]),
        n_params=tuple(float(v) for v in n), mean_distance=tuple(float(v) for v in y),
        n_seeds=tuple(int(v) for v in w), n_samples=int(m), level=level, n_resamples=n_resamples,
        n_failed=failed, rmse=float(np.sqrt(np.mean((power_law(x, *p) - y) ** 2))),
        replicates=to_plain(reps_arr) if len(reps_arr) else reps_arr, ref_replicates=np.array(refs),
        reference_params=float(n[ref_i]),
        method=("scipy.optimize.curve_fit; bootstrap of seeds within budgets"
                + (" and of evaluation samples (shared)" if per_sample else "")),
    )


def _n_star(d_inf, a, alpha, line):
    """N where D∞ + a·N^(−α) = line (inf when the line is at or below D∞; 0 when a = 0 and the line is above)."""
    d_inf, a, alpha, line = (np.asarray(v, dtype=np.float64) for v in (d_inf, a, alpha, line))
    gap = line - d_inf
    with np.errstate(divide="ignore", over="ignore", invalid="ignore"):
        n = np.where(gap > 0, np.where(a > 0, (a / np.where(gap > 0, gap, 1.0)) ** (1.0 / alpha), 0.0), np.inf)
    return n


def smallest_passing_size(
    fit: ScalingFit,
    efficiency: float = 0.90,
    *,
    reference_params: float | None = None,
    reference: str = "fitted",
    max_factor: float = 10.0,
) -> SizePrediction:
    """The smallest N with predicted ``param_efficiency ≥ efficiency`` vs the reference budget (default the
    reference given to ``fit_scaling``, by default the largest budget), with its bootstrap interval; "not reached
    within [N_min, N_max·max_factor]" when the line is beyond that range (or never reached)."""
    if reference not in ("fitted", "measured"):
        raise ValueError(f"reference must be 'fitted' or 'measured'; got {reference!r}")
    n_ref = float(reference_params if reference_params is not None else fit.reference_params)
    lo_n, hi_n = min(fit.n_params), max(fit.n_params) * max_factor
    if reference == "fitted":
        d_ref = float(fit.predict(n_ref))
        r = fit.replicates
        ref_reps = power_law(n_ref, r[:, 0], r[:, 1], r[:, 2]) if len(r) else np.array([])
    else:
        if not math.isclose(n_ref, fit.reference_params, rel_tol=1e-6):
            raise ValueError(f"reference='measured' needs the reference budget given to fit_scaling "
                             f"({fit.reference_params:g}); got {n_ref:g}")
        i = fit.n_params.index(fit.reference_params)
        d_ref, ref_reps = fit.mean_distance[i], fit.ref_replicates
    line = (2.0 - efficiency) * d_ref
    est = float(_n_star(fit.d_inf, fit.a, fit.alpha, line))
    if len(fit.replicates):
        r = fit.replicates
        reps = _n_star(r[:, 0], r[:, 1], r[:, 2], (2.0 - efficiency) * ref_reps)
        alpha = (1 - fit.level) / 2
        # no interpolation: replicates may be inf ("never reached")
        low, high = (float(v) for v in np.quantile(reps, [alpha, 1 - alpha], method="inverted_cdf"))
    else:
        low = high = est
    inside = lambda v: v is not None and math.isfinite(v) and v <= hi_n  # noqa: E731
    n_out = est if inside(est) else None
    low_out = low if inside(low) else None
    high_out = high if inside(high) else None
    rng = f"[{_human(lo_n)}, {_human(hi_n)}]"
    # the fitted curve's fall over the trained budgets, against the curve's own level: ~0 = flat
    fall = float(fit.predict(lo_n) - fit.predict(max(fit.n_params)))
    if fall <= 1e-6 * max(abs(float(fit.predict(lo_n))), 1e-12):
        status = "flat"
        n_out = low_out = high_out = None
        text = (f"no size predicted for param_efficiency >= {efficiency:g}: the fitted curve is flat over "
                f"[{_human(lo_n)}, {_human(max(fit.n_params))}] (distance does not fall with N here)")
    elif n_out is None:
        status = "not reached"
        text = (f"param_efficiency >= {efficiency:g} not reached within {rng} "
                f"(the fitted curve's floor D_inf = {fit.d_inf:.4g} vs the line {line:.4g})")
    else:
        status = "below the trained budgets" if n_out < lo_n else (
            "beyond the trained budgets" if n_out > max(fit.n_params) else "predicted")
        ci = f"{_human(low_out) if low_out is not None else '?'}–" + \
             (_human(high_out) if high_out is not None else f"not reached within {rng}")
        text = (f"smallest N with param_efficiency >= {efficiency:g}: {_human(n_out)} "
                f"({fit.level:.0%} CI {ci}; reference {_human(n_ref)}, {reference})"
                + (f" -- extrapolated: {status}" if status != "predicted" else ""))
    return SizePrediction(efficiency, n_out, low_out, high_out, fit.level, reference, n_ref, float(d_ref),
                          float(line), (float(lo_n), float(hi_n)), status != "predicted" and n_out is not None,
                          text, status)


def scaling_band(fit: ScalingFit, n_grid: Sequence[float] | None = None, num: int = 100,
                 extend: float = 2.0) -> dict[str, list[float]]:
    """The fitted curve and its band for plotting: ``{"n", "low", "mid", "high"}`` on ``n_grid`` (default
    ``num`` log-spaced points from N_min/extend to N_max·extend)."""
    if n_grid is None:
        n_grid = np.geomspace(min(fit.n_params) / extend, max(fit.n_params) * extend, num)
    n = np.asarray(n_grid, dtype=np.float64)
    low, mid, high = fit.band(n)
    return {"n": n.tolist(), "low": np.asarray(low).tolist(), "mid": np.asarray(mid).tolist(),
            "high": np.asarray(high).tolist()}


def _human(n: float) -> str:
    for div, unit in ((1e9, "B"), (1e6, "M"), (1e3, "k")):
        if abs(n) >= div:
            return f"{n / div:.3g}{unit}"
    return f"{n:.3g}"


__all__ = ["ScalingFit", "SizePrediction", "fit_scaling", "power_law", "scaling_band", "smallest_passing_size"]
