"""E2.1: baseline adapter scaling study (plan §5 E2.1).

The same adapter kind at every budget of the preset (5/10/20/50/100M, or the miniature's equivalents), identical
recipe, several seeds each. Reports the scaling curve (distance vs params, log x), param_efficiency of the small
budget vs the reference (``1 − (D(10M) − D(100M)) / D(100M)``), the training-time ratio, a recommended size, and
exports the best seed of every budget to ``checkpoints/adapter_<budget>_best/``.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from c2bridge.config import resolve_budget
from c2bridge.experiments import analysis as an
from c2bridge.experiments.protocol import human, recipe_summary
from c2bridge.experiments.registry import ExperimentInfo
from c2bridge.experiments.trials import TrialSpec
from c2bridge.report import markdown as md
from c2bridge.report import plots

EXPERIMENT = ExperimentInfo(id="e2.1", order=1, title="E2.1: Baseline adapter scaling study")
TITLE = EXPERIMENT.title
# what this module reads from its config (besides the engine's keys)
CONFIG_KEYS = ('kind', 'budgets', 'seeds', 'small_budget', 'reference_budget')


@dataclass
class E21Summary(an.Summary):
    """E2.1's summary (results.yaml: experiments.e2.1.summary)."""

    distance_name: str | None = None
    kind: str = "query"
    small_budget: str = "10m"
    reference_budget: str = "100m"
    param_efficiency: float | None = None  # small vs reference, from the seed means (the plan's formula)
    param_efficiency_per_seed: dict = field(default_factory=dict)  # stats over seed pairs
    distance_10m: float | None = None  # the small budget's mean val distance
    distance_10m_std: float | None = None
    distance_100m: float | None = None  # the reference budget's
    spatial_iou_10m: float | None = None
    training_time_ratio: float | None = None  # steps to plateau, small / reference
    wall_time_ratio: float | None = None
    time_to_plateau_ratio: float | None = None
    efficiency_by_budget: dict = field(default_factory=dict)  # budget -> param_efficiency vs the reference
    distance_std_by_budget: dict = field(default_factory=dict)  # budget -> seed spread (read by E2.2 / E2.3)
    recommended_size: str | None = None
    recommendation: str = ""
    scaling_separation: float | None = None  # |D(smallest) - D(largest)| / the larger seed spread
    miniature_checks: dict | None = None  # miniature presets only

    OPTIONAL = ("miniature_checks",)


def protocol(cfg: dict, preset) -> dict:
    return {
        "adapter kind": cfg.get("kind", "query"),
        "budgets": {b: human(resolve_budget(b, preset)) for b in (cfg.get("budgets") or preset.budgets)},
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
    return E21Summary.from_dict(upstream.get(EXPERIMENT.id)).distance_std_by_budget.get(budget)


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
    summary = E21Summary(**summary).to_dict()

    checkpoints, grids = {}, {}
    for b in budgets:
        best = an.best_record(by_budget[b][1])
        if best is None:
            continue
        path = ctx.export_dir(best.adapter, f"checkpoints/adapter_{b}_best")
        if path:
            checkpoints[b] = {"path": path, "trial": best.key, "val_distance": best.metric("distance")}
        grid = ctx.export_file(best.grid("val"), f"figures/grids/e2_1_{kind}_{b}.png")
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


# ----------------------------------------------------------------------------------------------------- report
def headline(results: dict, exp: dict) -> str | None:
    """The answer line of FINDINGS.md's "Answers"."""
    s1 = exp.get("summary")
    if not s1:
        return None
    v = ((exp.get("verdicts") or {}).get("param_efficiency") or {})
    return (f"- **Scaling (E2.1):** param_efficiency {s1.get('small_budget')} vs {s1.get('reference_budget')} = "
            f"{md.num(s1.get('param_efficiency'))} ({md.verdict_text(v) if v else 'no verdict'}); "
            f"recommended size: {s1.get('recommendation')}.")


def findings(results: dict, exp: dict, figs: dict) -> str:
    """This experiment's FINDINGS.md section."""
    s = exp.get("summary") or {}
    eff = s.get("efficiency_by_budget") or {}
    rows = []
    for a in exp.get("arms") or []:
        rows.append([a.get("budget"), md.params(a.get("params") or a.get("budget_params")),
                     md.pm((a.get("val") or {}).get("distance")), md.pm((a.get("val") or {}).get("spatial_iou"), 3),
                     md.num(eff.get(a.get("budget"))), md.pm((a.get("training") or {}).get("time_s"), 3),
                     md.pm((a.get("training") or {}).get("steps_to_plateau"), 3),
                     f"{a.get('n_completed')}/{a.get('n')}"])
    lines = [f"## {exp.get('title', 'E2.1')}", "", md.status_line(exp), "", md.protocol_table(exp), "",
             md.table(["budget", "params", f"val distance ({s.get('distance_name')})", "val spatial IoU",
                    f"param_efficiency vs {s.get('reference_budget')}", "train time (s)", "steps to plateau",
                    "completed"], rows), "",
             f"- param_efficiency ({s.get('small_budget')} vs {s.get('reference_budget')}, from the seed means): "
             f"**{md.num(s.get('param_efficiency'))}**; per seed pair: {md.pm(s.get('param_efficiency_per_seed'))}.",
             f"- Training-time ratio (steps to plateau, {s.get('small_budget')} / {s.get('reference_budget')}): "
             f"{md.num(s.get('training_time_ratio'))}; wall-time ratio {md.num(s.get('wall_time_ratio'))}.",
             f"- **Recommended size:** {s.get('recommendation')}.", "", "Verdicts:", "",
             md.verdict_table(exp.get("verdicts") or {}), "",
             md.figure(figs, "scaling_curve", "E2.1 scaling curve"),
             md.figure(figs, "learning_curves_e2_1", "E2.1 learning curves")]
    ck = exp.get("checkpoints") or {}
    if ck:
        lines.append("Checkpoints (best seed per budget): " + ", ".join(f"`{c['path']}/`" for c in ck.values()))
    lines.append(md.grids(figs, EXPERIMENT.id, exp))
    return "\n".join(lines)


def figures(results: dict, run_dir) -> dict[str, str]:
    """The scaling curve (RUN_DIR/scaling_curve.png) plus the standard figures."""
    run_dir = Path(run_dir)
    out = {}
    path = scaling_curve(results, run_dir / "scaling_curve.png")
    if path is not None:
        out["scaling_curve"] = str(path.relative_to(run_dir))
    return {**out, **plots.experiment_figures(results, run_dir, EXPERIMENT.id)}


def scaling_curve(results: dict, out: Path) -> Path | None:
    """Distance (mean ± seed spread) vs trainable params, log x; spatial IoU on the right axis."""
    exp = (results.get("experiments") or {}).get(EXPERIMENT.id) or {}
    arms = [a for a in exp.get("arms") or [] if plots.mean_of((a.get("val") or {}).get("distance")) is not None]
    if not arms:
        return None
    plt = plots.pyplot()
    xs = [a.get("params") or a.get("budget_params") for a in arms]
    ds = [plots.mean_of(a["val"]["distance"]) for a in arms]
    es = [plots.std_of(a["val"]["distance"]) or 0.0 for a in arms]
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    ax.errorbar(xs, ds, yerr=es, marker="o", capsize=4, color="C0", label=f"distance ({(results.get('distance') or {}).get('name')})")
    for x, d, a in zip(xs, ds, arms):
        ax.annotate(a.get("budget", ""), (x, d), textcoords="offset points", xytext=(4, 6), fontsize=8)
    summary = exp.get("summary") or {}
    d_ref = summary.get("distance_100m")
    target = (((results.get("criteria") or {}).get("experiments") or {}).get(EXPERIMENT.id) or {}).get("param_efficiency", {}).get("target")
    if d_ref is not None and target is not None:
        ax.axhline(d_ref * (2 - target), ls="--", color="C0", alpha=0.5, lw=1,
                   label=f"param_efficiency {target:g} line vs {summary.get('reference_budget', '100m')}")
    ax.set_xscale("log")
    ax.set_xlabel("trainable adapter parameters (log)")
    ax.set_ylabel("distance on val (lower is better)")
    ious = [plots.mean_of((a.get("val") or {}).get("spatial_iou")) for a in arms]
    if any(v is not None for v in ious):
        ax2 = ax.twinx()
        pts = [(x, v, plots.std_of(a["val"]["spatial_iou"]) or 0.0) for x, v, a in zip(xs, ious, arms) if v is not None]
        ax2.errorbar([p[0] for p in pts], [p[1] for p in pts], yerr=[p[2] for p in pts], marker="s", capsize=3,
                     color="C1", alpha=0.8, label="spatial IoU")
        ax2.set_ylabel("spatial IoU on val (higher is better)", color="C1")
        h1, l1 = ax.get_legend_handles_labels()
        h2, l2 = ax2.get_legend_handles_labels()
        ax.legend(h1 + h2, l1 + l2, fontsize=8, loc="best")
    else:
        ax.legend(fontsize=8)
    ax.set_title(f"E2.1 scaling curve ({summary.get('kind', 'query')})\n{plots.subtitle(results)}", fontsize=10)
    ax.grid(True, which="both", alpha=0.3)
    return plots.save_figure(fig, out)
