"""Bootstrap intervals that respect the study's design: seeds × evaluation samples, paired where paired.

The design. An arm (one adapter config) is trained with S seeds; every trained adapter is evaluated on the same M
samples (sample ``i`` is item ``i`` of the eval cache, sampled with noise seed ``eval.seed + i``). So a metric of
one arm is an ``[S, M]`` table whose rows (seeds) and columns (samples) are *crossed*, not nested: column ``i``
is the same image under every seed and in every arm. Two arms evaluated on the same split share the columns
(paired samples); arms trained with the same seed list share the rows (paired seeds).

The interval (``method="t"``, the default). The statistic is a function of the arms' grand means. Its variance
has one component per *factor* -- the seeds (one factor when paired, one per arm otherwise) and the samples
(likewise) -- and each component is estimated by ``scipy.stats.bootstrap`` resampling that factor alone (the
others held fixed), ``n_resamples`` times. A bootstrap variance of a mean is ``(n-1)/n`` of the unbiased one,
so each component is scaled by ``n/(n-1)``. (The seed × sample residual enters both the seeds' and the samples'
component: slightly conservative.) Then::

    se² = Σ_f v_f,     df = se⁴ / Σ_f v_f² / (n_f − 1)    (Welch–Satterthwaite)
    interval = estimate ± t_{df}((1 + level)/2) · se

With 2-5 seeds this matters: a plain percentile bootstrap over 3 seeds covers the true value 70-80% of the time
at a nominal 95% when the seed spread dominates; the t quantile with the seeds' few degrees of freedom restores
the coverage (tests/stats checks it on simulated studies). The components also say how the interval shrinks
with more seeds or samples (:meth:`Interval.half_width_at`), which the verdicts and the sequential design use.

``method="percentile"``: one joint resampling of every factor at once (rows and columns drawn independently,
Owen's "pigeonhole" bootstrap for crossed designs; scipy has no two-factor resampling, so this is numpy), and the
percentile interval of the replicates. Shown for comparison; it under-covers with few seeds.

Inputs: per-arm arrays ``[S]`` (one value per seed: a trial-level metric such as latency, or a per-seed mean
when per-sample values were not stored -- then the samples are not resampled, and the record says so) or
``[S, M]`` (per-sample values, the full design). Only finite values; drop failed trials before.
"""
from __future__ import annotations

import inspect
import math
from dataclasses import asdict, dataclass, field
from typing import Any, Callable, Sequence

import numpy as np

METHODS = ("t", "percentile")
# what an Interval's ``method`` says (docs/statistics.md explains both)
METHOD_NAMES = {"t": "bootstrap-t (seeds x samples variance components, Welch-Satterthwaite df)",
                "percentile": "bootstrap percentile (seeds x samples resampled jointly)"}
DEFAULT_RESAMPLES = 2000

# statistic(list of per-arm grand means, each shaped like the resample batch) -> statistic, same shape
Statistic = Callable[[Sequence[np.ndarray]], np.ndarray]


@dataclass(frozen=True)
class Component:
    """One variance component of an interval: the variance the factor adds to the estimate at ``n`` levels
    (None when it cannot be estimated: a single seed). Without per-sample values there is no samples component."""

    factor: str            # "seeds", "samples", "seeds[1]" (arm 1's seeds when seeds are not paired), ...
    kind: str              # "seeds" | "samples"
    n: int
    variance: float | None


@dataclass(frozen=True)
class Interval:
    """A confidence interval with what it took: ``to_dict()`` is what results.yaml stores."""

    estimate: float | None
    low: float
    high: float
    level: float
    method: str
    n_resamples: int
    n_seeds: int           # seeds per arm (the smallest arm's, when arms differ)
    n_samples: int         # evaluation samples per trial (1 = per-sample values not available)
    se: float | None = None
    df: float | None = None
    components: tuple[Component, ...] = ()
    note: str | None = None
    scale: str = "linear"  # "log": se, df, components and half_width_at are on the log of the statistic

    @property
    def half_width(self) -> float:
        return (self.high - self.low) / 2

    @property
    def complete(self) -> bool:
        """Every variance component of the design was estimated (not so with one seed). Per-seed values without
        per-sample ones are complete for what they are (``note`` says the samples were not resampled)."""
        return bool(self.components) and all(c.variance is not None for c in self.components)

    def contains(self, value: float) -> bool:
        return self.low <= value <= self.high

    def half_width_at(self, seeds: int | None = None, samples: int | None = None) -> float | None:
        """Projected half-width with ``seeds`` seeds per arm and ``samples`` evaluation samples (None = as now),
        assuming each component shrinks as 1/n (variance components as observed). None when a component the
        projection needs was not estimated."""
        return _half_width(self.components, self.level, seeds, samples, min_df=self.df)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["components"] = {c.factor: {"n": c.n, "variance": c.variance} for c in self.components}
        return d

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "Interval":
        """Back from :meth:`to_dict` (results.yaml): ``None`` ends read as NaN (low) / +inf (high, an open upper
        end such as a censored lower bound)."""
        comps = tuple(Component(name, "samples" if name.startswith("samples") else "seeds", int(c["n"]),
                                None if c.get("variance") is None else float(c["variance"]))
                      for name, c in (data.get("components") or {}).items())
        low, high = data.get("low"), data.get("high")
        return cls(
            estimate=None if data.get("estimate") is None else float(data["estimate"]),
            low=math.nan if low is None else float(low), high=math.inf if high is None else float(high),
            level=float(data.get("level", 0.95)), method=str(data.get("method", "")),
            n_resamples=int(data.get("n_resamples") or 0), n_seeds=int(data.get("n_seeds") or 0),
            n_samples=int(data.get("n_samples") or 1), se=data.get("se"), df=data.get("df"), components=comps,
            note=data.get("note"), scale=str(data.get("scale", "linear")),
        )

    def __str__(self) -> str:
        est = "n/a" if self.estimate is None else f"{self.estimate:.3f}"
        return f"{est} [{self.low:.3f}, {self.high:.3f}] ({self.level:.0%}, {self.method})"


def _half_width(components: Sequence[Component], level: float, seeds: int | None, samples: int | None,
                min_df: float | None = None) -> float | None:
    # more data never removes degrees of freedom: the Satterthwaite df of the projection falls when the larger
    # component gains weight, which would widen the interval with more samples; hold it at least at today's
    if seeds is not None and seeds < 2 or samples is not None and samples < 2:
        raise ValueError(f"a projection needs at least 2 seeds and 2 samples; got seeds={seeds}, samples={samples}")
    var, denom = 0.0, 0.0
    for c in components:
        if c.variance is None:
            return None
        new_n = {"seeds": seeds, "samples": samples}[c.kind] or c.n
        v = c.variance * c.n / new_n
        var += v
        denom += v * v / (new_n - 1)
    if var <= 0:
        return 0.0
    from scipy.stats import t

    df = max(var * var / denom if denom > 0 else math.inf, min_df or 0.0)
    return float(t.ppf((1 + level) / 2, df) * math.sqrt(var))


# -- the machinery -------------------------------------------------------------------------------------------------


def _as_table(values: Any, what: str) -> np.ndarray:
    arr = np.asarray(values, dtype=np.float64)
    if arr.ndim == 1:
        arr = arr[:, None]  # one value per seed: a [S, 1] table whose single "sample" is never resampled
    if arr.ndim != 2 or arr.shape[0] < 1 or arr.shape[1] < 1:
        raise ValueError(f"{what}: expected values [seeds] or [seeds, samples], got shape {np.shape(values)}")
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{what}: {int(np.sum(~np.isfinite(arr)))} non-finite value(s); drop failed trials first")
    return arr


def _weights(idx: np.ndarray, n: int) -> np.ndarray:
    """Index arrays [..., k] (a resample of range(n)) -> weights [..., n] summing to 1 (counts / k)."""
    idx = np.asarray(idx)
    lead, k = idx.shape[:-1], idx.shape[-1]
    rows = np.repeat(np.arange(int(np.prod(lead, dtype=np.int64))), k)
    counts = np.bincount(rows * n + idx.reshape(-1), minlength=int(np.prod(lead, dtype=np.int64)) * n)
    return counts.reshape(*lead, n) / k


@dataclass
class _Design:
    tables: list[np.ndarray]
    seed_factor: list[int]    # arm -> index of its seed factor
    sample_factor: list[int | None]  # arm -> index of its sample factor (None: samples not stored)
    factors: list[tuple[str, str, int]] = field(default_factory=list)  # (name, kind, n)

    def means(self, weights: dict[int, np.ndarray]) -> list[np.ndarray]:
        """Per-arm grand means under factor weights (missing factor = uniform)."""
        out = []
        for arm, table in enumerate(self.tables):
            s_f, m_f = self.seed_factor[arm], self.sample_factor[arm]
            ws = weights.get(s_f)
            wm = weights.get(m_f) if m_f is not None else None
            row = table @ wm[..., :, None] if wm is not None else table.mean(axis=1, keepdims=True)  # [.., S, 1]
            row = row[..., 0]  # [..., S]
            out.append((row * ws).sum(-1) if ws is not None else row.mean(-1))
        return out


def _design(arms: Sequence[Any], paired_seeds: bool, paired_samples: bool) -> _Design:
    tables = [_as_table(a, f"arm {i}") for i, a in enumerate(arms)]
    if not tables:
        raise ValueError("bootstrap needs at least one arm")
    factors: list[tuple[str, str, int]] = []
    if paired_seeds:
        ns = {t.shape[0] for t in tables}
        if len(ns) != 1:
            raise ValueError(f"paired seeds need the same number of seeds in every arm; got "
                             f"{[t.shape[0] for t in tables]}"
                             " (pass paired_seeds=False when the arms were trained with different seeds)")
        factors.append(("seeds", "seeds", ns.pop()))
        seed_factor = [0] * len(tables)
    else:
        seed_factor = []
        for i, t in enumerate(tables):
            seed_factor.append(len(factors))
            factors.append((f"seeds[{i}]", "seeds", t.shape[0]))
    has_samples = [t.shape[1] > 1 for t in tables]
    if any(has_samples) and not all(has_samples):
        raise ValueError("some arms have per-sample values and others only per-seed values; give all or none")
    sample_factor: list[int | None] = [None] * len(tables)
    if all(has_samples):
        if paired_samples:
            ms = {t.shape[1] for t in tables}
            if len(ms) != 1:
                raise ValueError(f"paired samples need the same evaluation samples in every arm; got "
                                 f"{[t.shape[1] for t in tables]} (pass paired_samples=False for different splits)")
            sample_factor = [len(factors)] * len(tables)
            factors.append(("samples", "samples", ms.pop()))
        else:
            for i, t in enumerate(tables):
                sample_factor[i] = len(factors)
                factors.append((f"samples[{i}]", "samples", t.shape[1]))
    return _Design(tables, seed_factor, sample_factor, factors)


def _scipy_bootstrap(data: tuple, statistic, n_resamples: int, rng: np.random.Generator, paired: bool):
    from scipy.stats import bootstrap

    kwargs = {"rng": rng} if "rng" in inspect.signature(bootstrap).parameters else {"random_state": rng}
    return bootstrap(data, statistic, n_resamples=n_resamples, vectorized=True, paired=paired,
                     method="percentile", **kwargs)


def _component_variance(design: _Design, statistic: Statistic, factor: int, n_resamples: int,
                        rng: np.random.Generator) -> float | None:
    """Bootstrap variance of the statistic resampling one factor (scipy.stats.bootstrap over its level indices)."""
    _, _, n = design.factors[factor]
    if n < 2:
        return None

    def stat(idx, axis=-1):
        return np.asarray(statistic(design.means({factor: _weights(idx, n)})), dtype=np.float64)

    res = _scipy_bootstrap((np.arange(n),), stat, n_resamples, rng, paired=False)
    se = float(res.standard_error)
    return se * se * n / (n - 1) if math.isfinite(se) else None


def _log_of(statistic: Statistic) -> Statistic:
    def log_statistic(means):
        with np.errstate(divide="ignore", invalid="ignore"):  # a non-positive ratio -> NaN, reported
            return np.log(statistic(means))

    return log_statistic


def bootstrap_interval(
    arms: Sequence[Any],
    statistic: Statistic,
    *,
    paired_seeds: bool = True,
    paired_samples: bool = True,
    level: float = 0.95,
    n_resamples: int = DEFAULT_RESAMPLES,
    seed: int = 0,
    method: str = "t",
    log_scale: bool = False,
    trial_metric: bool = False,
) -> Interval:
    """Interval of ``statistic(arm means)`` over the arms' ``[S]`` / ``[S, M]`` tables (see the module doc).

    ``paired_seeds``: row ``s`` of every arm is the same seed (resampled together); ``paired_samples``: column
    ``i`` of every arm is the same evaluation sample. ``log_scale``: the interval is built on ``log(statistic)``
    and mapped back (positive statistics such as ratios: never below 0, asymmetric as ratios are).
    ``trial_metric``: one value per trial by nature (latency, steps to plateau), so ``[S]`` tables are the whole
    design (no "per-sample values not available" note). Same ``seed`` -> the same interval.
    """
    if log_scale:
        statistic = _log_of(statistic)
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}; got {method!r}")
    if not 0 < level < 1:
        raise ValueError(f"level must be in (0, 1); got {level}")
    if n_resamples < 10:
        raise ValueError(f"n_resamples must be >= 10; got {n_resamples}")
    design = _design(arms, paired_seeds, paired_samples)
    with np.errstate(divide="ignore", invalid="ignore"):  # a zero denominator -> a non-finite estimate, reported
        estimate = float(np.asarray(statistic(design.means({}))))
    n_seeds = min(t.shape[0] for t in design.tables)
    n_samples = min(t.shape[1] for t in design.tables)
    if not math.isfinite(estimate):
        return Interval(None, math.nan, math.nan, level, method, 0, n_seeds, n_samples,
                        note="the statistic is not finite on these data (e.g. a zero reference)")
    rng = np.random.default_rng(seed)
    components = tuple(
        Component(name, kind, n, _component_variance(design, statistic, f, n_resamples, rng))
        for f, (name, kind, n) in enumerate(design.factors)
    )
    notes = []
    if any(c.variance is None for c in components):
        notes.append("one seed: the seed-to-seed variation is not in this interval")
    if n_samples == 1 and not trial_metric:
        notes.append("per-sample values not available: evaluation samples not resampled "
                     "(the interval holds for this evaluation set only)")
    known = [c for c in components if c.variance is not None]
    var = sum(c.variance for c in known)
    se = math.sqrt(var)
    denom = sum(c.variance ** 2 / (c.n - 1) for c in known)
    df = var * var / denom if denom > 0 else math.inf
    if method == "t":
        from scipy.stats import t

        half = float(t.ppf((1 + level) / 2, df)) * se if var > 0 else 0.0
        low, high = estimate - half, estimate + half
    else:
        reps = np.asarray(statistic(design.means({
            f: _weights(rng.integers(0, n, size=(n_resamples, n)), n) for f, (_, _, n) in enumerate(design.factors)
        })), dtype=np.float64)
        reps = reps[np.isfinite(reps)]
        alpha = (1 - level) / 2
        low, high = (float(q) for q in np.quantile(reps, [alpha, 1 - alpha])) if reps.size else (math.nan, math.nan)
    if log_scale:
        estimate, low, high = math.exp(estimate), math.exp(low), math.exp(high)
    name = METHOD_NAMES[method] + (" on the log scale" if log_scale else "")
    return Interval(estimate, float(low), float(high), level, name, n_resamples, n_seeds, n_samples,
                    se=se, df=df if math.isfinite(df) else None,
                    components=components, note="; ".join(notes) or None, scale="log" if log_scale else "linear")


# -- the study's statistics ----------------------------------------------------------------------------------------


def mean_interval(values: Any, **kwargs: Any) -> Interval:
    """Mean of a metric over seeds × samples (``[S]`` or ``[S, M]``)."""
    return bootstrap_interval([values], lambda m: m[0], **kwargs)


def difference_interval(a: Any, b: Any, **kwargs: Any) -> Interval:
    """``mean(a) − mean(b)``; paired (same seeds, same samples) unless told otherwise."""
    return bootstrap_interval([a, b], lambda m: m[0] - m[1], **kwargs)


def ratio_interval(a: Any, b: Any, **kwargs: Any) -> Interval:
    """``mean(a) / mean(b)`` of positive values (latency ratio, training-time ratio, memory ratio); the interval
    is built on the log of the ratio (``log_scale=False`` for the plain scale)."""
    kwargs.setdefault("log_scale", True)
    return bootstrap_interval([a, b], lambda m: m[0] / m[1], **kwargs)


def efficiency_interval(d_small: Any, d_ref: Any, **kwargs: Any) -> Interval:
    """The plan's ``param_efficiency = 1 − (D_small − D_ref) / D_ref`` of the two arms' mean distances
    (``c2bridge.metrics.param_efficiency`` on the resampled means)."""
    return bootstrap_interval([d_small, d_ref], lambda m: 1.0 - (m[0] - m[1]) / m[1], **kwargs)


def relative_gain_interval(d_base: Any, d_other: Any, **kwargs: Any) -> Interval:
    """``(D_base − D_other) / D_base``: > 0 when ``other`` has the lower distance (E2.3's recipe gain)."""
    return bootstrap_interval([d_base, d_other], lambda m: (m[0] - m[1]) / m[0], **kwargs)


def plateau_ratio(small_steps: Sequence[int | None], ref_steps: Sequence[int | None], *,
                  total_steps: int | Sequence[int], **kwargs: Any) -> Interval:
    """Training-time ratio ``mean(steps to plateau, small) / mean(…, reference)`` with its interval.

    ``None`` = the trial did not plateau within its ``total_steps``. When every trial plateaued: the bootstrap
    interval. When some small-arm trials did not (and every reference trial did), their steps are at least
    ``total_steps``, so the ratio is at least ``mean(censored small) / mean(ref)``: an Interval with
    ``estimate=None`` and ``low`` = that bound, ``high=inf`` (enough to fail a "> 2x" criterion). Otherwise n/a:
    ``estimate=None`` and a NaN interval, with the reason in ``note``.
    """
    small, ref = list(small_steps), list(ref_steps)
    totals = [int(total_steps)] * len(small) if isinstance(total_steps, (int, np.integer)) else list(total_steps)
    level = kwargs.get("level", 0.95)
    n = min(len(small), len(ref))
    if not small or not ref:
        return Interval(None, math.nan, math.nan, level, "n/a", 0, n, 1, note="no completed trials")
    if all(s is not None for s in small) and all(r is not None for r in ref):
        kwargs.setdefault("trial_metric", True)
        return ratio_interval(np.asarray(small, float), np.asarray(ref, float), **kwargs)
    if all(r is not None for r in ref):
        bound = float(np.mean([s if s is not None else t for s, t in zip(small, totals)]) / np.mean(ref))
        missing = sum(s is None for s in small)
        return Interval(None, bound, math.inf, level, "lower bound (censored)", 0, n, 1,
                        note=f"{missing} of {len(small)} small-adapter trials did not plateau within their steps: "
                             f"the ratio is at least {bound:.2f}")
    missing = sum(r is None for r in ref)
    return Interval(None, math.nan, math.nan, level, "n/a", 0, n, 1,
                    note=f"{missing} of {len(ref)} reference trials did not plateau: no training-time ratio")


__all__ = [
    "Component", "Interval", "METHODS", "bootstrap_interval", "difference_interval", "efficiency_interval",
    "mean_interval", "plateau_ratio", "ratio_interval", "relative_gain_interval",
]
