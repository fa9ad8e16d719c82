"""E2.1: baseline adapter scaling study (plan §5 E2.1).

The same adapter kind at every budget of the preset (5/10/20/50/100M, or the miniature's equivalents), identical
recipe, several seeds each. Reports the scaling curve (distance vs params, log x), param_efficiency of the small
budget vs the reference (``1 − (D(10M) − D(100M)) / D(100M)``), the training-time ratio, a recommended size, and
exports the best seed of every budget to ``checkpoints/adapter_<budget>_best/``.

Every headline number carries a 95% bootstrap interval (``summary.intervals``; ``c2bridge.stats``). The scaling law
``D(N) = D∞ + a·N^(−α)`` is fitted over every budget and seed (on each budget's actual trainable parameter count)
and gives the predicted smallest size with param_efficiency ≥ 0.90 and ≥ 0.85. When param_efficiency's verdict is
undetermined, the sequential design (``decide:``) adds seeds / evaluation samples to the small and reference
budgets. When the §6.4 decision is certainly "increase min size" (pivot §8.1), the predicted smallest passing size is
trained and checked (``pivot: false`` opts out); E2.4 then validates that size.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

from c2bridge.config import resolve_budget
from c2bridge.experiments import analysis as an
from c2bridge.experiments import criteria as crit_rules
from c2bridge.experiments import uncertainty as unc
from c2bridge.experiments.protocol import human, recipe_summary
from c2bridge.experiments.registry import ExperimentInfo
from c2bridge.experiments.trials import TrialSpec
from c2bridge.report import markdown as md
from c2bridge.report import plots
from c2bridge.stats import (confident_verdict, efficiency_interval, fit_scaling, pair_intervals, scaling_band,
                            smallest_passing_size)
from c2bridge.stats.records import arm_table

EXPERIMENT = ExperimentInfo(id="e2.1", order=1, title="E2.1: Baseline adapter scaling study")
TITLE = EXPERIMENT.title
# what this module reads from its config (besides the engine's keys)
CONFIG_KEYS = ('kind', 'budgets', 'seeds', 'budget_seeds', 'small_budget', 'reference_budget')


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
    training_time_ratio_note: str | None = None  # why it is n/a or a lower bound (a run did not plateau)
    intervals: dict = field(default_factory=dict)  # summary key -> Interval.to_dict() (95% bootstrap)
    efficiency_intervals: dict = field(default_factory=dict)  # budget -> interval of its param_efficiency
    scaling_fit: dict | None = None  # D(N) = D_inf + a N^-alpha over every budget and seed (or its error)
    scaling_band: dict | None = None  # the fitted curve and its band on a grid of N (for the plot)
    smallest_passing: dict = field(default_factory=dict)  # "0.9" / "0.85" -> the predicted smallest N
    budget_seeds: dict = field(default_factory=dict)  # budget -> seeds trained, where ``budget_seeds:`` sets fewer
    decide: dict = field(default_factory=dict)  # the sequential design: rounds, why it stopped, caps
    pivot: dict = field(default_factory=dict)  # pivot §8.1: acted on or why not
    pivot_budget: str | None = None  # the trained pivot size (E2.4 validates it)
    miniature_checks: dict | None = None  # miniature presets only

    OPTIONAL = ("miniature_checks", "pivot_budget")


def protocol(cfg: dict, preset) -> dict:
    return {
        "adapter kind": cfg.get("kind", "query"),
        "budgets": {b: human(resolve_budget(b, preset)) for b in (cfg.get("budgets") or preset.budgets)},
        "seeds per budget": _seeds_text(cfg, preset),
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


def budget_seeds(cfg: dict, preset) -> dict[str, list[int]]:
    """Seeds per budget: ``seeds`` for every budget, except those ``budget_seeds: {5m: [0]}`` names. The small and
    reference budgets (param_efficiency's, grown by the sequential design) always train ``seeds``."""
    _, budgets, seeds, small, ref = _design(cfg, preset)
    own = cfg.get("budget_seeds") or {}
    if not isinstance(own, dict):
        raise ValueError(f"e2.1.budget_seeds={own!r}: expected a mapping budget -> [seeds], e.g. {{5m: [0]}}")
    for b, ss in own.items():
        if b not in budgets:
            raise ValueError(f"e2.1.budget_seeds: {b!r} is not one of the budgets {budgets}")
        if b in (small, ref):
            raise ValueError(f"e2.1.budget_seeds: {b!r} is the small or reference budget (param_efficiency's); "
                             f"it trains `seeds` {seeds}, grown by the sequential design (decide:)")
        if not isinstance(ss, list) or not ss or not all(isinstance(x, int) and x >= 0 for x in ss):
            raise ValueError(f"e2.1.budget_seeds.{b}={ss!r}: expected a non-empty list of seeds, e.g. [0]")
    return {b: [int(x) for x in own.get(b, seeds)] for b in budgets}


def _seeds_text(cfg: dict, preset) -> str:
    per = budget_seeds(cfg, preset)
    counts = {len(v) for v in per.values()}
    if len(counts) == 1:
        return str(counts.pop())
    return ", ".join(f"{b}: {len(v)}" for b, v in per.items())


def _label(kind: str, budget: str, seed: int) -> str:
    return f"{kind}-{budget}-s{seed}"


EFFICIENCY_LINES = (0.90, 0.85)  # the smallest passing size is predicted for these param_efficiency lines
SEQUENTIAL_ASSUMPTION = ("sequential design: run only while param_efficiency's verdict is undetermined; listed up to "
                         "decide.max_seeds seeds / decide.max_eval_samples samples (the worst case)")
PIVOT_ASSUMPTION = ("pivot §8.1: trained only when the decision is 'increase min size', at the predicted smallest "
                    "passing size; costed at the reference budget (the largest it can be)")


def _base_samples(cfg: dict) -> int:
    return int((cfg.get("eval") or {}).get("n_samples") or 0)


def _val_cache(cfg: dict) -> str:
    return ((cfg.get("eval") or {}).get("splits") or {"val": "val"}).get("val", "val")


def decide_settings(cfg: dict) -> unc.DecideSettings:
    return unc.decide_settings(cfg, eval_caches=[_val_cache(cfg)])


def _round_specs(cfg: dict, kind: str, design: unc.Design) -> list[TrialSpec]:
    """Every trial of the deciding arms at ``design``: a training trial per seed, and an evaluation on more val
    samples where the design grew them."""
    base, specs = _base_samples(cfg), []
    for budget, seeds in design.seeds.items():
        m = design.samples[budget]
        for s in seeds:
            label = _label(kind, budget, s)
            specs.append(TrialSpec(label, adapter=kind, budget=budget, seed=s))
            if m > base:
                specs.append(TrialSpec(f"eval{m}:{label}", kind="evaluate", of=label,
                                       splits={"val": _val_cache(cfg)}, eval_samples=m))
    return specs


def _start(cfg: dict, seeds: list[int], small: str, ref: str) -> unc.Design:
    arms = dict.fromkeys([small, ref])
    return unc.Design({b: list(seeds) for b in arms}, {b: _base_samples(cfg) for b in arms})


def trials(cfg: dict, preset, upstream=None) -> list[TrialSpec]:
    """Every budget (smallest first) x every seed, the same kind and recipe; then, decided at run time (stage 2),
    the sequential design's extra trials up to its caps and the pivot size's trials."""
    kind, budgets, seeds, small, ref = _design(cfg, preset)
    per_budget = budget_seeds(cfg, preset)
    specs = [TrialSpec(_label(kind, b, s), adapter=kind, budget=b, seed=s) for b in budgets for s in per_budget[b]]
    settings = decide_settings(cfg)
    pivot_seeds = list(seeds)
    if settings.enabled:
        capped = _start(cfg, seeds, small, ref).at_caps(settings)
        specs += unc.worst_case(specs, _round_specs(cfg, kind, capped), SEQUENTIAL_ASSUMPTION)
        pivot_seeds = capped.seeds[small]
    if _pivot_enabled(cfg):
        specs += [TrialSpec(f"pivot-{kind}-s{s}", adapter=kind, budget=ref, seed=s, stage=2,
                            assumption=PIVOT_ASSUMPTION) for s in pivot_seeds]
    return specs


def _pivot_enabled(cfg: dict) -> bool:
    p = cfg.get("pivot", True)
    return bool(p.get("enabled", True) if isinstance(p, dict) else p)


def seed_spread(upstream, budget: str) -> float | None:
    """E2.1's seed spread (sd of the val distance over its seeds) at ``budget``: what a difference between two
    single-seed arms at that budget must exceed to count (None when E2.1 did not train that budget)."""
    return E21Summary.from_dict(upstream.get(EXPERIMENT.id)).distance_std_by_budget.get(budget)


def _arm_records(records: dict, kind: str, budget: str, seeds: list[int], samples: int, base: int) -> list:
    """One budget's records, each with its evaluation on more samples folded in when the design grew them."""
    out = []
    for s in seeds:
        label = _label(kind, budget, s)
        rec = records[label]
        extra = records.get(f"eval{samples}:{label}") if samples > base else None
        out.append(rec.with_evaluation(extra) if extra is not None else rec)
    return out


def run(ctx) -> dict:
    cfg = ctx.cfg
    kind, budgets, seeds, small, ref = _design(cfg, ctx.preset)
    per_budget = budget_seeds(cfg, ctx.preset)
    opts = unc.interval_options(cfg)
    records = ctx.run_trials([t for t in trials(cfg, ctx.preset, ctx.upstream()) if t.stage == 1])
    splits = list(ctx.eval_spec()["splits"])
    base = _base_samples(cfg)

    # the sequential design: more seeds / samples for the small and reference budgets while undetermined
    criterion = ctx.criterion("param_efficiency")
    settings = decide_settings(cfg)
    design = _start(cfg, seeds, small, ref)

    def recs_of(b: str) -> list:
        return _arm_records(records, kind, b, design.seeds.get(b, per_budget[b]), design.samples.get(b, base), base)

    def verdicts(_records) -> dict:
        iv = unc.paired(efficiency_interval, recs_of(small), recs_of(ref), **opts)
        if iv is None or not criterion:
            return {}
        return {"param_efficiency": confident_verdict(iv, criterion, max_seeds=settings.max_seeds,
                                                      max_eval_samples=settings.max_eval_samples)}

    decide = unc.run_rounds(ctx, settings, design, specs=lambda d: _round_specs(cfg, kind, d), verdicts=verdicts,
                            deciding={"param_efficiency": list(dict.fromkeys([small, ref]))}, records=records)

    arms, by_budget = [], {}
    for b in budgets:
        recs = recs_of(b)
        g = an.group(recs, splits)
        g.update({"label": f"{kind}-{b}", "budget": b, "budget_params": ctx.budget(b),
                  "intervals": unc.arm_intervals(recs, splits, **opts)})
        arms.append(g)
        by_budget[b] = (g, recs)

    d = {b: an.mean(g, "val", "distance") for b, (g, _) in by_budget.items()}
    eff_by_budget = {b: an.efficiency(d[b], d[ref]) for b in budgets}
    eff_iv = {b: unc.paired(efficiency_interval, by_budget[b][1], by_budget[ref][1], **opts) for b in budgets if b != ref}
    g_small, g_ref = by_budget[small][0], by_budget[ref][0]
    pair = pair_intervals(unc.as_dicts(by_budget[small][1]), unc.as_dicts(by_budget[ref][1]), "val", **opts)
    ttr = pair.get("training_time_ratio")
    intervals = {"param_efficiency": pair.get("param_efficiency"), "distance_10m": pair.get("distance_small"),
                 "distance_100m": pair.get("distance_ref"), "spatial_iou_10m": pair.get("spatial_iou_small"),
                 "training_time_ratio": ttr, "latency_ratio": pair.get("latency_ratio")}
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
        # steps to plateau on the validation loss: n/a when the reference did not plateau, a lower bound when
        # small-budget runs did not (c2bridge.stats.plateau_ratio)
        "training_time_ratio": ttr.estimate if ttr is not None else None,
        "training_time_ratio_note": ttr.note if ttr is not None else "no completed trials",
        "wall_time_ratio": an.ratio(an.mean(g_small, "training", "time_s"), an.mean(g_ref, "training", "time_s")),
        "time_to_plateau_ratio": an.ratio(an.mean(g_small, "training", "time_to_plateau_s"),
                                          an.mean(g_ref, "training", "time_to_plateau_s")),
        "efficiency_by_budget": eff_by_budget,
        "distance_std_by_budget": {b: an.spread(g, "val", "distance") for b, (g, _) in by_budget.items()},
        "intervals": {k: unc.to_record(v) for k, v in intervals.items() if v is not None},
        "efficiency_intervals": {b: unc.to_record(v) for b, v in eff_iv.items() if v is not None},
        "decide": decide,
        "budget_seeds": {b: len(v) for b, v in per_budget.items() if v != seeds},
    }
    summary.update(_scaling(ctx, budgets, by_budget, ref, opts))
    summary.update(_recommend(ctx, budgets, eff_by_budget, eff_iv))
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

    # pivot §8.1: the decision is certainly "increase min size" -> train the predicted smallest passing size
    pivot, pivot_arm = _pivot(ctx, kind, summary, design.seeds.get(small, seeds), by_budget[ref][1], splits, opts)
    summary["pivot"] = pivot
    if pivot_arm is not None:
        arms.append(pivot_arm[0])
        by_budget[pivot["budget"]] = pivot_arm
        summary["pivot_budget"] = pivot["budget"]
        if pivot.get("passes"):
            summary["recommended_size"] = pivot["budget"]
            summary["recommendation"] = (f"{pivot['budget']} ({pivot['params']:,} params; pivot §8.1): "
                                         f"{pivot['text']}")
        else:
            summary["recommendation"] += f"; pivot §8.1 trained the predicted size {pivot['budget']}: {pivot['text']}"
    summary = E21Summary(**summary).to_dict()

    checkpoints, grids = {}, {}
    for b, (_, recs) in by_budget.items():
        best = an.best_record(recs)
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


def _scaling(ctx, budgets: list[str], by_budget: dict, ref: str, opts: dict) -> dict:
    """The scaling law over every budget and seed, on each budget's actual trainable parameter count, and the
    predicted smallest N with param_efficiency >= 0.90 / 0.85 (``c2bridge.stats.fit_scaling``)."""
    n_params, tables = [], []
    for b in budgets:
        g, recs = by_budget[b]
        table, _ = arm_table(unc.as_dicts(recs), "distance", "val")
        if table.size:
            n_params.append(float(g.get("params") or ctx.budget(b)))
            tables.append(table)
    if len(tables) < 3:
        return {"scaling_fit": {"error": f"the fit needs >= 3 budgets with results; have {len(tables)}"}}
    if len({t.shape[1] if t.ndim == 2 else 1 for t in tables}) > 1:  # grown samples on some budgets: per-seed means
        tables = [t.mean(axis=1) if t.ndim == 2 else t for t in tables]
    ref_params = float(by_budget[ref][0].get("params") or ctx.budget(ref))
    try:
        fit = fit_scaling(n_params, tables, level=opts["level"], n_resamples=unc.fit_resamples(ctx.cfg),
                          seed=opts["seed"], reference_params=ref_params)
    except (ValueError, RuntimeError) as exc:
        return {"scaling_fit": {"error": str(exc)}}
    return {"scaling_fit": fit.to_dict(), "scaling_band": scaling_band(fit, num=60),
            "smallest_passing": {f"{e:g}": smallest_passing_size(fit, e).to_dict() for e in EFFICIENCY_LINES}}


def size_name(n: float) -> str:
    """A parameter count as a budget anyone can pass to ``resolve_budget``: 3 significant digits, rounded up
    (251_234 -> "252k", 1.234e7 -> "12.4m")."""
    mag = 10 ** (math.floor(math.log10(n)) - 2)
    n = math.ceil(n / mag - 1e-9) * mag
    for div, unit in ((1e9, "b"), (1e6, "m"), (1e3, "k")):
        if n >= div:
            return f"{n / div:g}{unit}"
    return f"{n:g}"


def _decision_point(ctx) -> dict | None:
    return next((p for p in ctx.criteria.get("decision_points") or []
                 if p.get("experiment") == EXPERIMENT.id and p.get("metric") == f"{EXPERIMENT.id}.param_efficiency"),
                None)


def _pivot(ctx, kind: str, summary: dict, seeds: list[int], ref_recs: list, splits: list, opts: dict):
    """Pivot §8.1 acted on: when the E2.1 decision is certainly no-go ("increase min size"), train the predicted
    smallest size with param_efficiency >= 0.90 (else >= 0.85), with the small budget's seeds, and check it."""
    from c2bridge.presets import PLAN_BUDGETS
    from c2bridge.stats import Interval

    if not _pivot_enabled(ctx.cfg):
        return {"acted": False, "why": "opted out (pivot: false)"}, None
    dp = _decision_point(ctx)
    iv = (summary.get("intervals") or {}).get("param_efficiency")
    if dp is None or iv is None:
        return {"acted": False, "why": "no E2.1 decision point or no param_efficiency interval"}, None
    caps = (summary.get("decide") or {}).get("caps")
    decision = crit_rules.line_decision(Interval.from_dict(iv), dp["op"], dp["threshold"], caps)
    if decision is None or decision["met"] is not False:
        why = ("the decision is 'continue'" if decision and decision["met"] else
               f"the decision is undetermined ({decision['text']})" if decision else "no interval to decide on")
        return {"acted": False, "why": why}, None
    small_params = float(ctx.budget(summary["small_budget"]))
    pred = None
    for e in EFFICIENCY_LINES:
        p = (summary.get("smallest_passing") or {}).get(f"{e:g}") or {}
        if p.get("n_params") and p["n_params"] > small_params:
            pred = p
            break
    if pred is None:
        return {"acted": False, "why": "decision 'increase min size', but the scaling fit predicts no size above the "
                                       f"small budget that passes ({(summary.get('scaling_fit') or {}).get('error') or 'see smallest_passing'})"}, None
    budget = size_name(pred["n_params"])
    specs = [TrialSpec(f"pivot-{kind}-{budget}-s{s}", adapter=kind, budget=budget, seed=s) for s in seeds]
    ctx.log(f"[{EXPERIMENT.id}] pivot §8.1: {decision['text']}; training the predicted smallest passing size {budget}")
    records = ctx.run_trials(specs)
    recs = [records[s.label] for s in specs]
    g = an.group(recs, splits)
    g.update({"label": f"{kind}-{budget} (pivot §8.1)", "budget": budget, "budget_params": ctx.budget(budget),
              "role": "pivot", "intervals": unc.arm_intervals(recs, splits, **opts)})
    eff = unc.paired(efficiency_interval, recs, ref_recs, **opts)
    criterion = ctx.criterion("param_efficiency")
    cv = confident_verdict(eff, criterion) if eff is not None and criterion else None
    plan_scale = None
    ten = ctx.preset.budgets.get("10m")
    if ten and PLAN_BUDGETS["10m"] != ten:
        plan_scale = size_name(float(g.get("params") or ctx.budget(budget)) * PLAN_BUDGETS["10m"] / ten)
    text = (f"param_efficiency {eff.estimate:.3f} vs {summary['reference_budget']} ({cv.text})" if cv is not None
            else "param_efficiency not measured (its trials did not complete)")
    return {
        "acted": True, "why": f"E2.1 decision 'increase min size': {decision['text']}",
        "budget": budget, "params": g.get("params"), "plan_scale": plan_scale,
        "predicted_for": pred.get("efficiency"), "prediction": pred.get("text"),
        "param_efficiency": eff.estimate if eff is not None else None, "interval": unc.to_record(eff),
        "verdict": cv.verdict if cv else "missing", "passes": bool(cv and cv.certain and cv.verdict in ("target", "acceptable")),
        "text": text, "trials": [r.key for r in recs],
    }, (g, recs)


def _recommend(ctx, budgets: list[str], eff: dict, eff_iv: dict | None = None) -> dict:
    """Smallest budget whose efficiency vs the reference beats the target -- the whole interval above the line when
    there is one; else the acceptable line; else the reference itself (plan §6.4 E2.1 no-go: increase min size)."""
    crit = ctx.criterion("param_efficiency")
    eff_iv = eff_iv or {}
    for level in ("target", "acceptable"):
        line = crit.get(level)
        if line is None:
            continue
        for b in budgets:
            iv = eff_iv.get(b)
            above = iv.low > line if iv is not None and iv.estimate is not None else (eff.get(b) or -math.inf) > line
            if eff.get(b) is not None and above:
                ci = f", 95% CI [{iv.low:.3f}, {iv.high:.3f}]" if iv is not None else ""
                return {
                    "recommended_size": b,
                    "recommendation": (f"{b} ({ctx.budget(b):,.0f} params): the smallest budget whose "
                                       f"param_efficiency vs {ctx.cfg.get('reference_budget', '100m')} is above the "
                                       f"{level} line ({eff[b]:.3f}{ci} > {line})"),
                }
    ref = ctx.cfg.get("reference_budget", "100m")
    if all(v is None for v in eff.values()):
        return {"recommended_size": None, "recommendation": "no recommendation: no budget completed"}
    return {"recommended_size": ref,
            "recommendation": f"{ref}: no smaller budget is certainly above the acceptable efficiency line (pivot §8.1)"}


# ----------------------------------------------------------------------------------------------------- report
def headline(results: dict, exp: dict) -> str | None:
    """The answer line of FINDINGS.md's "Answers"."""
    s1 = exp.get("summary")
    if not s1:
        return None
    v = ((exp.get("verdicts") or {}).get("param_efficiency") or {})
    iv = (s1.get("intervals") or {}).get("param_efficiency")
    passing = (s1.get("smallest_passing") or {}).get("0.9") or {}
    return (f"- **Scaling (E2.1):** param_efficiency {s1.get('small_budget')} vs {s1.get('reference_budget')} = "
            f"{md.num(s1.get('param_efficiency'))}{md.ci(iv)} ({md.verdict_text(v) if v else 'no verdict'}); "
            + (f"{passing['text']}; " if passing.get("text") else "")
            + f"recommended size: {s1.get('recommendation')}.")


def findings(results: dict, exp: dict, figs: dict) -> str:
    """This experiment's FINDINGS.md section."""
    s = exp.get("summary") or {}
    eff = s.get("efficiency_by_budget") or {}
    eff_iv = s.get("efficiency_intervals") or {}
    pivot = s.get("pivot") or {}
    rows = []
    for a in exp.get("arms") or []:
        b = a.get("budget")
        ivs = (a.get("intervals") or {}).get("val") or {}
        e = pivot.get("param_efficiency") if a.get("role") == "pivot" else eff.get(b)
        e_iv = pivot.get("interval") if a.get("role") == "pivot" else eff_iv.get(b)
        rows.append([b + (" (pivot §8.1)" if a.get("role") == "pivot" else ""),
                     md.params(a.get("params") or a.get("budget_params")),
                     md.pm((a.get("val") or {}).get("distance")) + md.ci(ivs.get("distance")),
                     md.pm((a.get("val") or {}).get("spatial_iou"), 3) + md.ci(ivs.get("spatial_iou")),
                     md.num(e) + md.ci(e_iv), md.pm((a.get("training") or {}).get("time_s"), 3),
                     md.pm((a.get("training") or {}).get("steps_to_plateau"), 3),
                     f"{a.get('n_completed')}/{a.get('n')}"])
    ivs = s.get("intervals") or {}
    ttr = ivs.get("training_time_ratio")
    ttr_text = (md.num(s.get("training_time_ratio")) + md.ci(ttr) if s.get("training_time_ratio") is not None
                else f"n/a ({s.get('training_time_ratio_note')})")
    fit = s.get("scaling_fit") or {}
    if fit.get("error"):
        fit_text = f"- Scaling law: not fitted ({fit['error']})."
    elif fit:
        fit_text = (f"- Scaling law D(N) = D∞ + a·N^(−α) over every budget and seed ({fit.get('method')}, "
                    f"{fit.get('n_resamples')} resamples): D∞ = {md.num(fit.get('d_inf'))}"
                    f"{md.ci_pair(fit.get('d_inf_interval'))}, α = {md.num(fit.get('alpha'))}"
                    f"{md.ci_pair(fit.get('alpha_interval'))}, a = {md.num(fit.get('a'))}; rmse of the budget means "
                    f"{md.num(fit.get('rmse'))}.")
        for e, p in (s.get("smallest_passing") or {}).items():
            fit_text += f"\n- Smallest passing size: {p.get('text')}."
    else:
        fit_text = ""
    if s.get("budget_seeds"):
        fewer = ", ".join(f"{b} ({n} seed{'s' if n != 1 else ''})" for b, n in s["budget_seeds"].items())
        fit_text += (f"\n- Fewer seeds on the budgets outside param_efficiency: {fewer}; they shape the curve and "
                     "the fit (weighted by their seeds), the small and reference budgets keep every seed.")
    pivot_text = ""
    if pivot:
        pivot_text = (f"- **Pivot §8.1:** trained the predicted smallest passing size **{pivot.get('budget')}** "
                      f"({md.params(pivot.get('params'))} params"
                      + (f"; the plan's ~{pivot['plan_scale']} at this preset's scale" if pivot.get("plan_scale") else "")
                      + f"): {pivot.get('text')}. Why: {pivot.get('why')}."
                      if pivot.get("acted") else f"- Pivot §8.1 not acted on: {pivot.get('why')}.")
    lines = [f"## {exp.get('title', 'E2.1')}", "", md.status_line(exp), "", md.protocol_table(exp), "",
             md.table(["budget", "params", f"val distance ({s.get('distance_name')})", "val spatial IoU",
                    f"param_efficiency vs {s.get('reference_budget')}", "train time (s)", "steps to plateau",
                    "completed"], rows), "",
             f"- param_efficiency ({s.get('small_budget')} vs {s.get('reference_budget')}, from the seed means): "
             f"**{md.num(s.get('param_efficiency'))}**{md.ci(ivs.get('param_efficiency'), method=True)}; per seed "
             f"pair: {md.pm(s.get('param_efficiency_per_seed'))}.",
             f"- Training-time ratio (steps to plateau on the validation loss, {s.get('small_budget')} / "
             f"{s.get('reference_budget')}): {ttr_text}; wall-time ratio {md.num(s.get('wall_time_ratio'))}.",
             fit_text, f"- {unc.rounds_text(s.get('decide'))}", pivot_text,
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


def _yerr(arms: list, values: list, metric: str) -> list[list[float]]:
    """Asymmetric error bars from each arm's 95% interval (the seed spread where an arm has none)."""
    lo, hi = [], []
    for a, v in zip(arms, values):
        iv = ((a.get("intervals") or {}).get("val") or {}).get(metric) or {}
        if iv.get("low") is not None and iv.get("high") is not None:
            lo.append(max(0.0, v - iv["low"]))
            hi.append(max(0.0, iv["high"] - v))
        else:
            e = plots.std_of((a.get("val") or {}).get(metric)) or 0.0
            lo.append(e)
            hi.append(e)
    return [lo, hi]


def scaling_curve(results: dict, out: Path) -> Path | None:
    """Distance (mean, 95% interval error bars) vs trainable params, log x, with the fitted scaling law and its
    band; spatial IoU on the right axis."""
    exp = (results.get("experiments") or {}).get(EXPERIMENT.id) or {}
    arms = [a for a in exp.get("arms") or [] if plots.mean_of((a.get("val") or {}).get("distance")) is not None]
    if not arms:
        return None
    plt = plots.pyplot()
    xs = [a.get("params") or a.get("budget_params") for a in arms]
    ds = [plots.mean_of(a["val"]["distance"]) for a in arms]
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    ax.errorbar(xs, ds, yerr=_yerr(arms, ds, "distance"), marker="o", ls="none", capsize=4, color="C0",
                label=f"distance ({(results.get('distance') or {}).get('name')}), 95% CI")
    for x, d, a in zip(xs, ds, arms):
        ax.annotate(a.get("budget", ""), (x, d), textcoords="offset points", xytext=(4, 6), fontsize=8)
    summary = exp.get("summary") or {}
    band = summary.get("scaling_band") or {}
    if band.get("n"):
        ax.plot(band["n"], band["mid"], color="C0", lw=1.2, alpha=0.8, label="fit D∞ + a·N^−α")
        ax.fill_between(band["n"], band["low"], band["high"], color="C0", alpha=0.15, lw=0, label="fit, 95% band")
    passing = (summary.get("smallest_passing") or {}).get("0.9") or {}
    if passing.get("n_params"):
        ax.axvline(passing["n_params"], ls=":", color="C2", lw=1.2, label="predicted smallest N, efficiency ≥ 0.90")
        if passing.get("low") and passing.get("high"):
            ax.axvspan(passing["low"], passing["high"], color="C2", alpha=0.08, lw=0)
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
        have = [(x, v, a) for x, v, a in zip(xs, ious, arms) if v is not None]
        ax2.errorbar([p[0] for p in have], [p[1] for p in have],
                     yerr=_yerr([p[2] for p in have], [p[1] for p in have], "spatial_iou"), marker="s", ls="none",
                     capsize=3, color="C1", alpha=0.8, label="spatial IoU, 95% CI")
        ax2.set_ylabel("spatial IoU on val (higher is better)", color="C1")
        h1, l1 = ax.get_legend_handles_labels()
        h2, l2 = ax2.get_legend_handles_labels()
        ax.legend(h1 + h2, l1 + l2, fontsize=8, loc="best")
    else:
        ax.legend(fontsize=8)
    ax.set_title(f"E2.1 scaling curve ({summary.get('kind', 'query')})\n{plots.subtitle(results)}", fontsize=10)
    ax.grid(True, which="both", alpha=0.3)
    return plots.save_figure(fig, out)
