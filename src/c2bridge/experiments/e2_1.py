"""E2.1: baseline adapter scaling study (plan §5 E2.1).

The same adapter kind at every budget of the preset (5/10/20/50/100M, or the miniature's equivalents), identical
recipe, several seeds each. Reports the scaling curve (distance vs params, log x), param_efficiency of the small
budget vs the reference (``1 − (D(10M) − D(100M)) / D(100M)``), the training-time ratio, a recommended size, and
exports the best seed of every budget to ``checkpoints/adapter_<budget>_best/``.
"""
from __future__ import annotations

from c2bridge.config import resolve_budget
from c2bridge.experiments import analysis as an
from c2bridge.experiments.protocol import human, recipe_summary
from c2bridge.experiments.registry import ExperimentInfo
from c2bridge.experiments.trials import TrialSpec

EXPERIMENT = ExperimentInfo(id="e2.1", order=1, title="E2.1: Baseline adapter scaling study")
TITLE = EXPERIMENT.title


def protocol(cfg: dict, preset) -> dict:
    return {
        "adapter kind": cfg.get("kind", "query"),
        "budgets": {b: human(preset.budgets[b]) for b in (cfg.get("budgets") or preset.budgets)},
        "seeds per budget": len(cfg.get("seeds") or [0]),
        **recipe_summary(cfg, preset.name),
    }


def _design(cfg: dict, preset) -> tuple[str, list[str], list[int], str, str]:
    kind = cfg.get("kind", "query")
    budgets = list(cfg.get("budgets") or preset.budgets)
    seeds = [int(s) for s in (cfg.get("seeds") or [0])]
    small, ref = cfg.get("small_budget", "10m"), cfg.get("reference_budget", "100m")
    for b in (small, ref):
        if b not in budgets:
            raise ValueError(f"e2.1: {b!r} must be one of the budgets {budgets} (small_budget / reference_budget)")
    budgets.sort(key=lambda b: resolve_budget(b, preset))
    return kind, budgets, seeds, small, ref


def _label(kind: str, budget: str, seed: int) -> str:
    return f"{kind}-{budget}-s{seed}"


def trials(cfg: dict, preset, upstream=None) -> list[TrialSpec]:
    """Every budget (smallest first) x every seed, the same kind and recipe."""
    kind, budgets, seeds, _, _ = _design(cfg, preset)
    return [TrialSpec(_label(kind, b, s), adapter=kind, budget=b, seed=s) for b in budgets for s in seeds]


def seed_spread(upstream, budget: str) -> float | None:
    """E2.1's seed spread (sd of the val distance over its seeds) at ``budget``: what a difference between two
    single-seed arms at that budget must exceed to count (None when E2.1 did not train that budget)."""
    return ((upstream.get(EXPERIMENT.id) or {}).get("distance_std_by_budget") or {}).get(budget)


def run(ctx) -> dict:
    cfg = ctx.cfg
    kind, budgets, seeds, small, ref = _design(cfg, ctx.preset)
    label = lambda b, s: _label(kind, b, s)  # noqa: E731
    records = ctx.run_trials(trials(cfg, ctx.preset, ctx.upstream()))
    splits = list(ctx.eval_spec()["splits"])

    arms, by_budget = [], {}
    for b in budgets:
        recs = [records[label(b, s)] for s in seeds]
        g = an.group(recs, splits)
        g.update({"label": f"{kind}-{b}", "budget": b, "budget_params": ctx.budget(b)})
        arms.append(g)
        by_budget[b] = (g, recs)

    d = {b: an.mean(g, "val", "distance") for b, (g, _) in by_budget.items()}
    eff_by_budget = {b: an.efficiency(d[b], d[ref]) for b in budgets}
    g_small, g_ref = by_budget[small][0], by_budget[ref][0]
    summary = {
        "distance_name": ctx.study.distance["name"],
        "kind": kind,
        "small_budget": small,
        "reference_budget": ref,
        "param_efficiency": eff_by_budget[small],
        "param_efficiency_per_seed": an.paired_efficiencies(by_budget[small][1], by_budget[ref][1]),
        "distance_10m": d[small],
        "distance_10m_std": an.spread(g_small, "val", "distance"),
        "distance_100m": d[ref],
        "spatial_iou_10m": an.mean(g_small, "val", "spatial_iou"),
        "training_time_ratio": an.ratio(an.mean(g_small, "training", "steps_to_plateau"),
                                        an.mean(g_ref, "training", "steps_to_plateau")),
        "wall_time_ratio": an.ratio(an.mean(g_small, "training", "time_s"), an.mean(g_ref, "training", "time_s")),
        "time_to_plateau_ratio": an.ratio(an.mean(g_small, "training", "time_to_plateau_s"),
                                          an.mean(g_ref, "training", "time_to_plateau_s")),
        "efficiency_by_budget": eff_by_budget,
        "distance_std_by_budget": {b: an.spread(g, "val", "distance") for b, (g, _) in by_budget.items()},
    }
    summary.update(_recommend(ctx, budgets, eff_by_budget))
    # how far the smallest and largest budgets are apart, in seed spreads (a flat curve says little about size)
    lo, hi = by_budget[budgets[0]][0], by_budget[budgets[-1]][0]
    spreads = [x for x in (an.spread(lo, "val", "distance"), an.spread(hi, "val", "distance")) if x is not None]
    gap = abs(d[budgets[0]] - d[budgets[-1]]) if d[budgets[0]] is not None and d[budgets[-1]] is not None else None
    separation = (gap / max(spreads)) if gap is not None and spreads and max(spreads) > 0 else None
    summary["scaling_separation"] = separation
    if separation is not None and separation < 3:
        summary["recommendation"] += (f" (caution: the smallest and largest budgets differ by only {separation:.1f}x "
                                      "the seed spread, so the curve is nearly flat here)")
    if ctx.preset.is_miniature:
        summary["miniature_checks"] = {"scaling_separation": separation}

    checkpoints, grids = {}, {}
    for b in budgets:
        best = an.best_record(by_budget[b][1])
        if best is None:
            continue
        art = best.get("artifacts") or {}
        path = ctx.export_dir(art.get("adapter"), f"checkpoints/adapter_{b}_best")
        if path:
            checkpoints[b] = {"path": path, "trial": best["key"], "val_distance": an.split_metric(best, "distance")}
        grid = ctx.export_file((art.get("grids") or {}).get("val"), f"figures/grids/e2_1_{kind}_{b}.png")
        if grid:
            grids[f"{kind} {b}"] = grid
    return {
        "status": an.experiment_status(g for g, _ in by_budget.values()),
        "arms": arms,
        "summary": summary,
        "checkpoints": checkpoints,
        "grids": grids,
        "recommendation": summary["recommendation"],
    }


def _recommend(ctx, budgets: list[str], eff: dict) -> dict:
    """Smallest budget whose efficiency vs the reference beats the target; else the acceptable line; else the
    reference itself (plan §6.4 E2.1 no-go: increase min size)."""
    crit = ctx.criterion("param_efficiency")
    for level in ("target", "acceptable"):
        line = crit.get(level)
        if line is None:
            continue
        for b in budgets:
            if eff.get(b) is not None and eff[b] > line:
                return {
                    "recommended_size": b,
                    "recommendation": (f"{b} ({ctx.budget(b):,.0f} params): the smallest budget whose "
                                       f"param_efficiency vs {ctx.cfg.get('reference_budget', '100m')} is above the "
                                       f"{level} line ({eff[b]:.3f} > {line})"),
                }
    ref = ctx.cfg.get("reference_budget", "100m")
    if all(v is None for v in eff.values()):
        return {"recommended_size": None, "recommendation": "no recommendation: no budget completed"}
    return {"recommended_size": ref,
            "recommendation": f"{ref}: no smaller budget reaches the acceptable efficiency line (pivot §8.1)"}
