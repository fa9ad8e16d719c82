"""What the plan's branches (§8 pivots 8.1-8.4, §15 open questions 1-4) share: each is a set of arms (one trial
per seed) compared with a baseline arm at the same recipe, with intervals from ``c2bridge.stats``.

A branch module lists its arms (``arms(cfg, preset, upstream) -> [Arm]``); ``trials`` is the flat list,
``run_branch`` runs them (a baseline that another experiment trained already -- E2.1's 10M, E2.2's arms -- has the
same resolved config, hence the same trial key, and is reused), ``findings_section`` writes the FINDINGS.md
section: a table (params, active params, distance, spatial IoU, latency, the difference to the baseline with its
95% interval), the recommendation and its interval, a figure.

Recommendation rule (the default): the arm with the lowest mean distance is recommended over the baseline only
when the upper end of the 95% interval of (its distance − the baseline's) is below 0; otherwise the baseline stays.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

from c2bridge.experiments import analysis as an
from c2bridge.experiments.protocol import human, recipe_summary
from c2bridge.experiments.trials import TrialRecord, TrialSpec
from c2bridge.report import markdown as md
from c2bridge.report import plots

GROUP = "branches"


@dataclass(frozen=True)
class Arm:
    name: str  # "20m", "w=0.3", "8 tokens": the arm's row in the table
    specs: tuple[TrialSpec, ...]  # one per seed
    note: str = ""  # what the arm is, in words


def seeds(cfg: dict) -> list[int]:
    return [int(s) for s in (cfg.get("seeds") or [0])]


def sweep(name: str, kind: str, budget: str, cfg: dict, patch: dict | None = None, label: str | None = None,
          note: str = "", group: str | None = None, protected: bool = False) -> Arm:
    """An arm: ``kind`` at ``budget`` with the recipe ``patch`` for every seed of the config. Labels follow E2.1's
    (``query-10m-s0``) for an unpatched arm, so the trial lists read the same. ``group``: the successive-halving
    group the arm competes in (``halving:``; ``protected``: the baseline, always trained to full length)."""
    stem = label or f"{kind}-{budget}"
    return Arm(name, tuple(TrialSpec(f"{stem}-s{s}", adapter=kind, budget=budget, seed=s, patch=dict(patch or {}),
                                     group=group, arm=name if group else None, protected=protected)
                           for s in seeds(cfg)), note)


def flat(arms: list[Arm]) -> list[TrialSpec]:
    """The trials of every arm (a label listed twice -- the baseline also being a sweep value -- once)."""
    out, seen = [], set()
    for arm in arms:
        for spec in arm.specs:
            if spec.label not in seen:
                seen.add(spec.label)
                out.append(spec)
    return out


def protocol(cfg: dict, preset, arms: list[Arm], **extra) -> dict:
    return {
        "arms": ", ".join(a.name for a in arms),
        "baseline": cfg.get("baseline"),
        "seeds per arm": len(seeds(cfg)),
        **extra,
        **recipe_summary(cfg, preset.name),
    }


@dataclass
class BranchSummary(an.Summary):
    """A branch's summary (results.yaml: experiments.<id>.summary)."""

    distance_name: str | None = None
    baseline: str | None = None
    arms: list = field(default_factory=list)
    best_arm: str | None = None  # lowest mean val distance
    recommended_arm: str | None = None
    recommendation: str = ""
    # arm -> {"difference": Interval dict (distance arm − baseline; < 0: the arm is better), "better": bool,
    #         "efficiency": Interval dict (param_efficiency vs ``reference``, when the branch has one)}
    comparisons: dict = field(default_factory=dict)
    reference: str | None = None
    note: str | None = None  # what this preset cannot answer (e.g. stream weighting with a random VLM)
    details: dict = field(default_factory=dict)  # what the branch adds (teacher size, extra cost, ...)

    OPTIONAL = ("reference", "note")


def _interval(fn, a, b, paired: bool) -> dict | None:
    import numpy as np

    if np.asarray(a).size == 0 or np.asarray(b).size == 0:
        return None
    try:
        iv = fn(a, b, paired_seeds=paired, paired_samples=True)
    except ValueError:
        iv = fn(a, b, paired_seeds=False, paired_samples=False)
    return iv.to_dict()


def compare(arm_recs: list[TrialRecord], base_recs: list[TrialRecord], ref_recs: list[TrialRecord] | None) -> dict:
    """The intervals of one arm against the baseline (difference of distances) and the reference (efficiency)."""
    from c2bridge.stats import difference_interval, efficiency_interval
    from c2bridge.stats.records import paired_tables

    out: dict[str, Any] = {}
    a, b, paired = paired_tables([r.to_dict() for r in arm_recs], [r.to_dict() for r in base_recs], "distance")
    out["difference"] = _interval(difference_interval, a, b, paired)
    if ref_recs is not None:
        a, b, paired = paired_tables([r.to_dict() for r in arm_recs], [r.to_dict() for r in ref_recs], "distance")
        out["efficiency"] = _interval(efficiency_interval, a, b, paired)
    d = out["difference"]
    out["better"] = bool(d and d.get("high") is not None and d["high"] < 0)
    return out


def run_branch(ctx, arms: list[Arm], baseline: str, reference: str | None = None,
               decide: Callable[[list[dict], dict, str], tuple[str | None, str]] | None = None,
               details: dict | None = None, note: str | None = None) -> dict:
    """Run every arm's trials, group them, compare each arm with ``baseline`` (and ``reference``), recommend."""
    names = [a.name for a in arms]
    if baseline not in names:
        raise ValueError(f"{ctx.name}: baseline {baseline!r} is not one of the arms {names}")
    records = ctx.run_trials(flat(arms))
    splits = list(ctx.eval_spec()["splits"])
    by_arm = {a.name: [records[s.label] for s in a.specs] for a in arms}
    groups = []
    for arm in arms:
        g = an.group(by_arm[arm.name], splits)
        spec = arm.specs[0]
        g.update({"label": arm.name, "kind": spec.adapter, "budget": spec.budget,
                  "budget_params": ctx.budget(spec.budget or "10m"), "note": arm.note})
        groups.append(g)
    comparisons = {}
    for arm in arms:
        if arm.name != baseline:
            comparisons[arm.name] = compare(by_arm[arm.name], by_arm[baseline],
                                            by_arm[reference] if reference and arm.name != reference else None)
        elif reference and reference != baseline:
            comparisons[arm.name] = {"efficiency": compare(by_arm[arm.name], by_arm[baseline],
                                                           by_arm[reference])["efficiency"]}
    ranked = sorted((g for g in groups if an.mean(g, "val", "distance") is not None),
                    key=lambda g: an.mean(g, "val", "distance"))
    best = ranked[0]["label"] if ranked else None
    pick, text = (decide or default_decision)(groups, comparisons, baseline)
    summary = BranchSummary(distance_name=ctx.study.distance["name"], baseline=baseline, arms=names, best_arm=best,
                            recommended_arm=pick, recommendation=text, comparisons=comparisons, reference=reference,
                            note=note, details=details or {}).to_dict()
    grids = {}
    for arm in arms:
        rec = an.best_record(by_arm[arm.name])
        if rec is not None:
            grid = ctx.export_file(rec.grid("val"), f"figures/grids/{ctx.name.replace('.', '_')}_{_slug(arm.name)}.png")
            if grid:
                grids[arm.name] = grid
    return {"status": an.experiment_status(groups), "arms": groups, "summary": summary, "grids": grids,
            "recommendation": text}


def _slug(name: str) -> str:
    return "".join(c if c.isalnum() else "_" for c in name).strip("_")


def interval_text(iv: dict | None, digits: int = 4) -> str:
    if not iv or iv.get("estimate") is None:
        return "–"
    return f"{iv['estimate']:+.{digits}f} [{iv['low']:+.{digits}f}, {iv['high']:+.{digits}f}]"


def default_decision(groups: list[dict], comparisons: dict, baseline: str) -> tuple[str | None, str]:
    """The lowest-distance arm when its difference to the baseline is below 0 with 95% confidence; else the
    baseline (a difference the interval cannot tell from 0 does not change the design)."""
    done = [g for g in groups if an.mean(g, "val", "distance") is not None]
    if not done:
        return None, "no arm completed: nothing to recommend"
    best = min(done, key=lambda g: an.mean(g, "val", "distance"))
    name = best["label"]
    if name == baseline:
        others = [g for g in done if g["label"] != baseline and (comparisons.get(g["label"]) or {}).get("difference")]
        if not others:
            return baseline, f"keep {baseline}: no arm has a lower mean distance"
        runner_up = min(others, key=lambda g: an.mean(g, "val", "distance"))["label"]
        return baseline, (f"keep {baseline}: no arm has a lower mean distance (the closest, {runner_up}, differs "
                          f"by {interval_text(comparisons[runner_up]['difference'])})")
    c = comparisons.get(name) or {}
    diff = interval_text(c.get("difference"))
    if c.get("better"):
        return name, (f"{name}: lower distance than {baseline} with 95% confidence (difference {diff})")
    return baseline, (f"keep {baseline}: the best arm, {name}, differs by {diff} (95% interval includes 0 or "
                      "above it), not a difference the design can tell from noise")


# ----------------------------------------------------------------------------------------------------- report
def headline(exp: dict, what: str) -> str | None:
    s = exp.get("summary")
    if not s:
        return None
    caveat = " Not an answer on this preset: see its section." if s.get("note") else ""
    return f"- **{what} ({exp.get('title', '').split(':')[0]}):** {s.get('recommendation')}.{caveat}"


def findings_section(results: dict, exp: dict, figs: dict, experiment: str,
                     extra_lines: list[str] | None = None) -> str:
    stem = experiment.replace(".", "_")
    s = exp.get("summary") or {}
    comps = s.get("comparisons") or {}
    has_eff = bool(s.get("reference"))
    rows = []
    for a in exp.get("arms") or []:
        name = a.get("label")
        c = comps.get(name) or {}
        perf = a.get("perf") or {}
        row = [name + (" (baseline)" if name == s.get("baseline") else ""), md.params(a.get("params")),
               md.params(a.get("active_params")) if a.get("active_params") not in (None, a.get("params")) else "same",
               md.pm((a.get("val") or {}).get("distance")), md.pm((a.get("val") or {}).get("spatial_iou"), 3),
               md.pm(perf.get("latency_ms"), 3), interval_text(c.get("difference"))]
        if has_eff:
            row.append(interval_text(c.get("efficiency"), 3))
        rows.append(row + [f"{a.get('n_completed')}/{a.get('n')}"])
    heads = ["arm", "params", "active", f"val distance ({s.get('distance_name')})", "val spatial IoU",
             "adapter latency (ms)", f"distance − {s.get('baseline')} (95% CI)"]
    if has_eff:
        heads.append(f"param_efficiency vs {s.get('reference')} (95% CI)")
    lines = [f"## {exp.get('title', stem)}", "", md.status_line(exp), ""]
    if s.get("note"):
        lines += [f"> {s['note']}", ""]
    lines += [md.protocol_table(exp), "", md.table(heads + ["completed"], rows), ""]
    lines += list(extra_lines or [])
    one_seed = any((a.get("n") or 0) <= 1 for a in exp.get("arms") or [])
    lines += [f"- **Recommendation:** {s.get('recommendation')}.", "",
              "Intervals: 95% bootstrap over seeds × evaluation samples (paired where the arms share them; "
              "c2bridge.stats)." + (" With one seed per arm the seed-to-seed variation is not in them."
                                    if one_seed else ""), "",
              md.figure(figs, f"ablation_{stem}", f"{exp.get('title', stem)}: distance per arm"),
              md.figure(figs, f"learning_curves_{stem}", f"{exp.get('title', stem)}: learning curves"),
              md.grids(figs, experiment, exp)]
    errors = [(a.get("label"), e) for a in exp.get("arms") or [] for e in a.get("errors") or []]
    if errors:
        lines += ["", "Failed / diverged trials:", ""] + [f"- {k}: {e}" for k, e in errors]
    return "\n".join(lines)


def figures(results: dict, run_dir, experiment: str) -> dict[str, str]:
    return plots.experiment_figures(results, run_dir, experiment, ablation=True)


def budget_text(budget: str, preset) -> str:
    from c2bridge.config import resolve_budget

    return f"{budget} ({human(resolve_budget(budget, preset))} params)"
