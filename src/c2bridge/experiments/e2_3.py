"""E2.3: training strategy optimization (plan §5 E2.3).

On the architecture E2.2 recommends (or ``arch`` in the config), one grid at a time over losses, learning-rate
schedules, augmentations and regularization (each arm = the base recipe + a patch of dotted TrainConfig keys;
``train_cache`` in a patch names the augmented train cache), then the combination of each grid's best arm.
The recipe handed to E2.4 is the best of all arms and the combination, except that a change has to beat the
simpler alternative by more than E2.1's seed spread at this budget: among arms within that spread of the lowest
distance the one with the fewest changed keys wins (per grid too, so the combination holds only real gains; it is
trained only when two or more grids found one). Ablation table + learning curves.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping

from c2bridge.experiments import analysis as an
from c2bridge.experiments import uncertainty as unc
from c2bridge.experiments.e2_1 import seed_spread
from c2bridge.experiments.e2_2 import E22Summary
from c2bridge.experiments.protocol import recipe_summary
from c2bridge.experiments.registry import ExperimentInfo
from c2bridge.experiments.trials import TrialSpec
from c2bridge.report import markdown as md
from c2bridge.report import plots

EXPERIMENT = ExperimentInfo(id="e2.3", order=3, title="E2.3: Training strategy optimization", requires=("e2.2",))
TITLE = EXPERIMENT.title
# what this module reads from its config (besides the engine's keys)
CONFIG_KEYS = ('arch', 'fallback_arch', 'budget', 'seeds', 'combine', 'grids')
CACHE_KEY = "train_cache"  # in an arm's patch: the name of the train cache (augmentation arms)


@dataclass
class E23Summary(an.Summary):
    """E2.3's summary (results.yaml: experiments.e2.3.summary)."""

    distance_name: str | None = None
    arch: str | None = None
    arch_source: str = ""
    budget: str = "10m"
    baseline_distance: float | None = None
    combined_distance: float | None = None
    combined_patch: dict = field(default_factory=dict)
    combination_conflicts: list = field(default_factory=list)
    best_per_grid: dict = field(default_factory=dict)  # grid -> {arm, patch, distance}
    recipe_gain: float | None = None  # relative distance gain of the chosen recipe over the baseline
    recipe_found: bool = False
    all_unstable: bool = False
    n_diverged: int = 0
    best_recipe: dict | None = None  # {label, patch, change, distance}: read by E2.4
    seed_spread_e2_1: float | None = None
    gain_exceeds_seed_spread: bool | None = None
    kept_baseline: bool = False
    recommendation: str = ""
    intervals: dict = field(default_factory=dict)  # summary key -> Interval.to_dict() (95% bootstrap)


def protocol(cfg: dict, preset) -> dict:
    grids = cfg.get("grids") or {}
    return {
        "architecture": cfg.get("arch") or "from E2.2",
        "budget": cfg.get("budget", "10m"),
        **{f"grid: {name}": list((g or {}).get("arms") or {}) for name, g in grids.items()},
        "seeds per arm": len(cfg.get("seeds") or [0]),
        "combination of the best": bool(cfg.get("combine", True)),
        **recipe_summary(cfg, preset.name),
    }


def split_patch(arm: Mapping | None) -> tuple[dict, str | None]:
    """An arm (dotted TrainConfig keys, plus ``train_cache``: a cache name) -> (recipe patch, train cache name)."""
    patch = dict(arm or {})
    return patch, patch.pop(CACHE_KEY, None)


def describe(arm: Mapping | None) -> str:
    patch, cache = split_patch(arm)
    parts = [f"{k}={v}" for k, v in patch.items()] + ([f"train cache {cache}"] if cache else [])
    return ", ".join(parts) or "base recipe"


def architecture(cfg: dict, upstream: Mapping[str, dict]) -> tuple[str, str, str | None]:
    """(kind, where it came from, the assumption made when E2.2's summary is not there yet)."""
    if cfg.get("arch"):
        return cfg["arch"], "config", None
    e22 = E22Summary.from_dict(upstream["e2.2"]) if "e2.2" in upstream else None
    if e22 is not None and e22.recommended_kind:
        return e22.recommended_kind, "E2.2", None
    fallback = cfg.get("fallback_arch", "query")
    if e22 is not None:
        return fallback, "fallback (E2.2 recommended nothing)", None
    return fallback, "fallback (E2.2 recommended nothing)", f"E2.2 has not run: assumes fallback_arch {fallback}"


def _grids(cfg: dict) -> dict:
    grids = cfg.get("grids") or {}
    if not grids:
        raise ValueError(f"e2.3: no grids in {cfg.get('_source')}; expected grids: {{name: {{arms: {{arm: patch}}}}}}")
    return grids


def _arm_spec(label: str, kind: str, budget: str, arm: Mapping | None, seed: int, stage: int = 1,
              assumption: str | None = None, group: str | None = None, protected: bool = False) -> TrialSpec:
    patch, cache = split_patch(arm)
    return TrialSpec(f"{label}-s{seed}", adapter=kind, budget=budget, seed=seed, patch=patch, train_cache=cache,
                     stage=stage, assumption=assumption, group=group, arm=label if group else None,
                     protected=protected)


def baseline_arm(arms: Mapping) -> str | None:
    """A grid's baseline: its arm with an empty patch (else its first arm)."""
    return next((a for a, p in arms.items() if not p), next(iter(arms), None))


def trials(cfg: dict, preset, upstream: Mapping[str, dict] | None = None,
           combined_patch: Mapping | None = None) -> list[TrialSpec]:
    """Stage 1: every arm of every grid x every seed, on E2.2's architecture. Stage 2: the combination of each
    grid's best arm (``combined_patch``, known only after stage 1; listed as the base recipe until then, and run
    only when two or more grids found a gain)."""
    kind, _, assumption = architecture(cfg, upstream or {})
    budget = cfg.get("budget", "10m")
    seeds = [int(s) for s in (cfg.get("seeds") or [0])]
    # each grid is a successive-halving group (``halving:``), its baseline always trained to full length
    specs = [_arm_spec(f"{gname}/{aname}", kind, budget, arm, s, assumption=assumption, group=gname,
                       protected=aname == baseline_arm(g.get("arms") or {}))
             for gname, g in _grids(cfg).items() for aname, arm in (g.get("arms") or {}).items() for s in seeds]
    if cfg.get("combine", True):
        specs += [_arm_spec("combined", kind, budget, combined_patch, s, stage=2, assumption=assumption)
                  for s in seeds]
    return specs


def run(ctx) -> dict:
    cfg = ctx.cfg
    kind, source, _ = architecture(cfg, ctx.upstream())
    budget = cfg.get("budget", "10m")
    seeds = [int(s) for s in (cfg.get("seeds") or [0])]
    grids = _grids(cfg)

    # stage 1: every arm of every grid
    records = ctx.run_trials([t for t in trials(cfg, ctx.preset, ctx.upstream()) if t.stage == 1])
    splits = list(ctx.eval_spec()["splits"])
    opts = unc.interval_options(cfg)
    recs_of: dict[str, list] = {}  # row label -> its records (for the intervals)

    # the seed spread of E2.1 at this budget (3 seeds): a change must beat its alternative by more to count
    noise = seed_spread(ctx.upstream(), budget)
    tol = float(noise or 0.0)

    def dist(row):
        return an.mean(row, "val", "distance")

    def simplest_near_best(rows: list[dict]) -> dict:
        """The row with the fewest changed keys among those within the seed spread of the lowest distance
        (then the lower distance): a difference inside the noise does not justify a change (or its cost)."""
        best = min(dist(r) for r in rows)
        return min((r for r in rows if dist(r) <= best + tol), key=lambda r: (len(r["patch"]), dist(r)))

    table, best_per_grid, candidates = [], {}, []
    for gname, g in grids.items():
        arms = g.get("arms") or {}
        baseline = baseline_arm(arms)
        rows = []
        for aname, arm in arms.items():
            recs = [records[f"{gname}/{aname}-s{s}"] for s in seeds]
            row = an.group(recs, splits)
            row.update({"grid": gname, "arm": aname, "label": f"{gname}/{aname}", "patch": dict(arm or {}),
                        "change": describe(arm), "is_baseline": aname == baseline,
                        "intervals": unc.arm_intervals(recs, splits, **opts)})
            recs_of[row["label"]] = recs
            rows.append(row)
        base_d = next((dist(r) for r in rows if r["is_baseline"]), None)
        base_label = next((r["label"] for r in rows if r["is_baseline"]), None)
        for r in rows:
            d = dist(r)
            r["delta_vs_baseline"] = d - base_d if d is not None and base_d is not None else None
            if d is not None and base_d is not None and not r["is_baseline"]:  # same seeds, same val samples
                r["delta_interval"] = unc.to_record(unc.difference(recs_of[r["label"]], recs_of[base_label], **opts))
        complete = [r for r in rows if r["n_completed"] == r["n"] and dist(r) is not None]
        if complete:
            best = simplest_near_best(complete)
            best_per_grid[gname] = {"arm": best["arm"], "patch": best["patch"], "distance": dist(best)}
            candidates += complete
        table += rows

    # stage 2: the combination of the best arms
    combined_patch, conflicts = {}, []
    for gname, best in best_per_grid.items():
        for k, v in best["patch"].items():
            if k in combined_patch and combined_patch[k] != v:
                conflicts.append(f"{k}: {combined_patch[k]} ({gname} wins with {v})")
            combined_patch[k] = v
    combined = None
    if cfg.get("combine", True) and combined_patch and sum(bool(b["patch"]) for b in best_per_grid.values()) > 1:
        crecs = ctx.run_trials([t for t in trials(cfg, ctx.preset, ctx.upstream(), combined_patch) if t.stage == 2])
        recs_of["combined"] = [crecs[f"combined-s{s}"] for s in seeds]
        combined = an.group(recs_of["combined"], splits)
        combined["intervals"] = unc.arm_intervals(recs_of["combined"], splits, **opts)
        combined.update({"grid": "combined", "arm": "combined", "label": "combined", "patch": combined_patch,
                         "change": describe(combined_patch), "is_baseline": False,
                         "delta_vs_baseline": None})
        if combined["n_completed"] == combined["n"] and dist(combined) is not None:
            candidates.append(combined)

    baseline_rows = [r for r in table if r["is_baseline"]]
    base_d = dist(baseline_rows[0]) if baseline_rows else None
    comb_d = dist(combined) if combined else None
    if comb_d is not None and base_d is not None:
        combined["delta_vs_baseline"] = comb_d - base_d
        combined["delta_interval"] = unc.to_record(unc.difference(recs_of["combined"], recs_of[baseline_rows[0]["label"]],
                                                                  **opts))
    lowest = min(candidates, key=dist) if candidates else None
    chosen = simplest_near_best(candidates) if candidates else None
    best_d = dist(lowest) if lowest is not None else None
    significant = None
    if noise and base_d is not None and best_d is not None:
        significant = base_d - best_d > noise
    kept_baseline = bool(chosen is not None and chosen.get("is_baseline") and lowest is not chosen)
    all_rows = table + ([combined] if combined else [])
    summary = {
        "distance_name": ctx.study.distance["name"],
        "arch": kind,
        "arch_source": source,
        "budget": budget,
        "baseline_distance": base_d,
        "combined_distance": comb_d,
        "combined_patch": combined_patch,
        "combination_conflicts": conflicts,
        "best_per_grid": best_per_grid,
        "recipe_gain": ((base_d - dist(chosen)) / base_d
                        if chosen is not None and base_d else None),
        "recipe_found": chosen is not None,
        "all_unstable": not any(r["n_completed"] for r in all_rows),
        "n_diverged": sum(s == "diverged" for r in all_rows for s in r["statuses"]),
        "best_recipe": ({"label": chosen["label"], "patch": chosen["patch"], "change": chosen["change"],
                         "distance": dist(chosen)} if chosen else None),
        "seed_spread_e2_1": noise,
        "gain_exceeds_seed_spread": significant,
        "kept_baseline": kept_baseline,
    }
    if chosen is None:
        text = "no arm completed: no recipe found (plan §6.4 E2.3: extend)"
    elif kept_baseline:
        text = (f"the base recipe ({base_d:.4f}): the best change, {lowest['label']} ({lowest['change']}, "
                f"{best_d:.4f}), beats it by less than the seed spread measured in E2.1 ({tol:.4f}) with "
                f"{len(seeds)} seed(s) per arm, so it is not adopted")
    elif chosen.get("is_baseline"):  # the lowest distance is the base recipe's own
        pruned = sum(s == "pruned" for r in all_rows for s in r["statuses"])
        text = (f"the base recipe ({base_d:.4f}): no change beats it"
                + (f" ({pruned} arm(s) stopped early by successive halving)" if pruned else ""))
    else:
        text = f"{chosen['label']} ({chosen['change']}): mean distance {dist(chosen):.4f}"
        if chosen is not lowest:
            text += (f" (the lowest, {lowest['label']} at {best_d:.4f}, is within the E2.1 seed spread {tol:.4f} "
                     "and changes more, so the simpler recipe is kept)")
        if chosen is not combined and combined is not None and comb_d is not None:
            text += f"; the combination of the best arms scored {comb_d:.4f}, so it is not used"
        if base_d:
            text += f"; baseline {base_d:.4f} ({summary['recipe_gain']:+.1%} gain"
            text += f", more than the E2.1 seed spread {noise:.4f})" if significant else ")"
    intervals = {}
    if baseline_rows and base_d is not None:
        iv = unc.arm_interval(recs_of[baseline_rows[0]["label"]], "distance", "val", **opts)
        intervals["baseline_distance"] = unc.to_record(iv)
        if chosen is not None and not chosen.get("is_baseline"):  # the baseline itself gains exactly 0
            gain = unc.relative_gain(recs_of[baseline_rows[0]["label"]], recs_of[chosen["label"]], **opts)
            intervals["recipe_gain"] = unc.to_record(gain)
            if gain is not None:
                text += f" (gain 95% CI{md.ci(gain.to_dict())})"
    summary["intervals"] = {k: v for k, v in intervals.items() if v is not None}
    summary["recommendation"] = text
    summary = E23Summary(**summary).to_dict()
    return {
        "status": an.experiment_status(all_rows),
        "arms": all_rows,
        "summary": summary,
        "recommendation": text,
    }


# ----------------------------------------------------------------------------------------------------- report
def headline(results: dict, exp: dict) -> str | None:
    """The answer line of FINDINGS.md's "Answers"."""
    s3 = exp.get("summary")
    return f"- **Training recipe (E2.3, on {s3.get('arch')}):** {s3.get('recommendation')}." if s3 else None


def findings(results: dict, exp: dict, figs: dict) -> str:
    """This experiment's FINDINGS.md section."""
    s = exp.get("summary") or {}
    rows = []
    for a in exp.get("arms") or []:
        tr = a.get("training") or {}
        rows.append([a.get("grid"), a.get("arm") + (" (baseline)" if a.get("is_baseline") else ""), a.get("change"),
                     md.pm((a.get("val") or {}).get("distance")) + md.ci(((a.get("intervals") or {}).get("val") or {})
                                                                         .get("distance")),
                     (md.num(a.get("delta_vs_baseline")) + md.ci(a.get("delta_interval")))
                     if a.get("delta_vs_baseline") is not None else "–",
                     md.pm((a.get("val") or {}).get("spatial_iou"), 3), md.pm(tr.get("loss_variance"), 3),
                     md.pm(tr.get("steps_to_plateau"), 3), ", ".join(sorted(set(a.get("statuses") or [])))])
    best = s.get("best_per_grid") or {}
    lines = [f"## {exp.get('title', 'E2.3')}", "", md.status_line(exp), "",
             f"Architecture: **{s.get('arch')}** (from {s.get('arch_source')}), budget {s.get('budget')}.", "",
             md.protocol_table(exp), "",
             md.table(["grid", "arm", "change vs base recipe", f"val distance ({s.get('distance_name')}), 95% CI",
                    "Δ vs baseline, 95% CI (paired)", "val spatial IoU", "loss variance", "steps to plateau", "status"], rows), "",
             "- Best arm per grid: " + (", ".join(f"{g}: {b['arm']} ({md.num(b['distance'])})" for g, b in best.items()) or "–") + ".",
             f"- Combination of the best arms: {md.num(s.get('combined_distance'))} "
             f"({', '.join(f'{k}={v}' for k, v in (s.get('combined_patch') or {}).items()) or 'base recipe'}).",
             f"- **Recipe handed to E2.4:** {s.get('recommendation')}.",
             f"- Diverged trials: {s.get('n_diverged', 0)}; all strategies unstable: {md.num(s.get('all_unstable'))}.", "",
             "Verdicts:", "", md.verdict_table(exp.get("verdicts") or {}), "",
             md.figure(figs, "ablation_e2_3", "E2.3 ablation"),
             md.figure(figs, "learning_curves_e2_3", "E2.3 learning curves")]
    if s.get("combination_conflicts"):
        lines.append("Combination conflicts: " + "; ".join(s["combination_conflicts"]))
    return "\n".join(lines)


def figures(results: dict, run_dir) -> dict[str, str]:
    return plots.experiment_figures(results, run_dir, EXPERIMENT.id, ablation=True)
