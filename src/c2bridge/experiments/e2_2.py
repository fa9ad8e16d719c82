"""E2.2: architecture comparison at a fixed budget (plan §5 E2.2).

query / bottleneck / lora / perceiver / moe at the 10M budget (the miniature's equivalent on mini), the E2.1
recipe, several seeds; the query arm is E2.1's own trials when the config is the same (same trial key). Table:
distance, spatial IoU, adapter latency, loss variance, peak memory; a recommendation with the trade-off.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from c2bridge.config import resolve_budget
from c2bridge.experiments import analysis as an
from c2bridge.experiments import uncertainty as unc
from c2bridge.experiments.e2_1 import seed_spread
from c2bridge.experiments.protocol import human, recipe_summary
from c2bridge.experiments.registry import ExperimentInfo
from c2bridge.experiments.trials import TrialSpec
from c2bridge.names import ADAPTER_KINDS
from c2bridge.report import markdown as md
from c2bridge.report import plots

EXPERIMENT = ExperimentInfo(id="e2.2", order=2, title="E2.2: Architecture comparison")
TITLE = EXPERIMENT.title
# what this module reads from its config (besides the engine's keys)
CONFIG_KEYS = ('kinds', 'budget', 'seeds', 'adapter_overrides', 'tie_tolerance')


@dataclass
class E22Summary(an.Summary):
    """E2.2's summary (results.yaml: experiments.e2.2.summary)."""

    distance_name: str | None = None
    budget: str = "10m"
    kinds: list = field(default_factory=list)
    seed_spread_e2_1: float | None = None  # E2.1's seed spread at this budget: also bounds a tie
    best_kind: str | None = None  # lowest mean distance
    best_distance_10m: float | None = None
    best_arch_identified: bool = False
    clear_winner: bool = False  # best by more than the seed spread
    tied_with_best: list = field(default_factory=list)
    recommended_kind: str | None = None  # among the tied, the lowest adapter latency (read by E2.3 / E2.4)
    ranking: list | None = None
    recommendation: str = ""
    intervals: dict = field(default_factory=dict)  # summary key -> Interval.to_dict() (95% bootstrap)
    differences_vs_best: dict = field(default_factory=dict)  # kind -> interval of D(kind) - D(best kind), paired

    OPTIONAL = ("ranking",)


def protocol(cfg: dict, preset) -> dict:
    return {
        "architectures": list(cfg.get("kinds") or []),
        "budget": f"{cfg.get('budget', '10m')} ({human(resolve_budget(cfg.get('budget', '10m'), preset))} params)",
        "seeds per architecture": len(cfg.get("seeds") or [0]),
        **recipe_summary(cfg, preset.name),
    }


def _design(cfg: dict) -> tuple[list[str], str, list[int]]:
    kinds = list(cfg.get("kinds") or ADAPTER_KINDS)
    return kinds, cfg.get("budget", "10m"), [int(s) for s in (cfg.get("seeds") or [0])]


def trials(cfg: dict, preset, upstream=None) -> list[TrialSpec]:
    """Every kind x every seed at one budget (per-kind build kwargs from ``adapter_overrides``)."""
    kinds, budget, seeds = _design(cfg)
    per_kind = cfg.get("adapter_overrides") or {}
    return [TrialSpec(f"{k}-{budget}-s{s}", adapter=k, budget=budget, seed=s,
                      patch={"adapter.overrides": per_kind[k]} if per_kind.get(k) else {},
                      group="kinds", arm=k)  # the kinds compete under successive halving (``halving:``)
            for k in kinds for s in seeds]


def run(ctx) -> dict:
    cfg = ctx.cfg
    kinds, budget, seeds = _design(cfg)
    label = lambda k, s: f"{k}-{budget}-s{s}"  # noqa: E731
    records = ctx.run_trials(trials(cfg, ctx.preset, ctx.upstream()))
    splits = list(ctx.eval_spec()["splits"])
    opts = unc.interval_options(cfg)

    arms, recs_by_kind = [], {}
    for k in kinds:
        recs = [records[label(k, s)] for s in seeds]
        g = an.group(recs, splits)
        g.update({"label": k, "kind": k, "budget": budget, "budget_params": ctx.budget(budget),
                  "intervals": unc.arm_intervals(recs, splits, **opts)})
        arms.append(g)
        recs_by_kind[k] = recs

    summary = {"distance_name": ctx.study.distance["name"], "budget": budget, "kinds": kinds}
    # the seed spread of the same budget in E2.1 (3 seeds) also bounds what counts as a tie here
    e21_spread = seed_spread(ctx.upstream(), budget)
    summary["seed_spread_e2_1"] = e21_spread
    summary.update(_recommend(arms, tolerance=max(float(cfg.get("tie_tolerance", 0.0)), e21_spread or 0.0)))
    best = summary.get("best_kind")
    if best is not None:  # the same seeds and val samples for every kind: paired differences
        best_iv = unc.arm_interval(recs_by_kind[best], "distance", "val", **opts)
        summary["intervals"] = {"best_distance_10m": unc.to_record(best_iv)} if best_iv is not None else {}
        summary["differences_vs_best"] = {
            k: unc.to_record(unc.difference(recs_by_kind[k], recs_by_kind[best], **opts))
            for k in kinds if k != best and an.mean(arms[kinds.index(k)], "val", "distance") is not None}
    summary = E22Summary(**summary).to_dict()

    grids = {}
    for k in kinds:
        best = an.best_record(recs_by_kind[k])
        if best is not None:
            grid = ctx.export_file(best.grid("val"),
                                   f"figures/grids/e2_2_{k}.png")
            if grid:
                grids[k] = grid
    return {
        "status": an.experiment_status(arms),
        "arms": arms,
        "summary": summary,
        "grids": grids,
        "recommendation": summary["recommendation"],
    }


def _recommend(arms: list[dict], tolerance: float = 0.0) -> dict:
    """Best = lowest mean distance. Kinds within the seed spread (or ``tolerance``: the configured tie tolerance or
    E2.1's seed spread at this budget) of the best are tied on quality; among those the lowest adapter latency is
    recommended (then fewest active params)."""
    ranked = sorted((a for a in arms if an.mean(a, "val", "distance") is not None),
                    key=lambda a: an.mean(a, "val", "distance"))
    if not ranked:
        return {"best_kind": None, "best_distance_10m": None, "best_arch_identified": False, "clear_winner": False,
                "recommended_kind": None, "tied_with_best": [],
                "recommendation": "no architecture completed: nothing to recommend (plan §6.4 E2.2: iterate)"}
    best = ranked[0]
    d_best = an.mean(best, "val", "distance")

    def band(a: dict) -> float:
        spreads = [x for x in (an.spread(best, "val", "distance"), an.spread(a, "val", "distance")) if x is not None]
        return max(spreads + [tolerance])

    tied = [a for a in ranked if an.mean(a, "val", "distance") - d_best <= band(a)]
    clear = len(tied) == 1
    latency = lambda a: an.mean(a, "perf", "latency_ms")  # noqa: E731
    active = lambda a: a.get("active_params") or a.get("params") or 0  # noqa: E731

    def timing_noise(a: dict) -> float:
        """How much a measured latency moves: its seed spread, else the spread of its timing iterations."""
        return max(an.spread(a, "perf", "latency_ms") or 0.0, an.mean(a, "perf", "latency_std_ms") or 0.0)

    # Latency decides only where it differs by more than its timing noise: otherwise the pick (and E2.3's and
    # E2.4's trials after it) would follow the machine's timing jitter. As fast: fewest active params, then order.
    timed = [a for a in tied if latency(a) is not None]
    fastest = min(timed, key=latency) if timed else None
    as_fast = [a for a in timed if latency(a) - latency(fastest) <= timing_noise(a) + timing_noise(fastest)] or tied
    order = {id(a): i for i, a in enumerate(arms)}
    pick = min(as_fast, key=lambda a: (active(a), order[id(a)]))
    runner_up = ranked[1] if len(ranked) > 1 else None
    text = f"{pick['kind']}: "
    if clear:
        margin = an.mean(runner_up, "val", "distance") - d_best if runner_up else None
        text += ("best distance by more than the seed spread"
                 + (f" ({d_best:.4f}; runner-up {runner_up['kind']} +{margin:.4f})" if runner_up else f" ({d_best:.4f})"))
    else:
        others = ", ".join(a["kind"] for a in tied if a is not pick)
        text += (f"within the seed spread of the best distance ({best['kind']} {d_best:.4f}; tied: "
                 f"{', '.join(a['kind'] for a in tied)}); chosen among them for the lowest adapter latency"
                 + (f" (vs {others})" if others else "")
                 + (f"; {', '.join(a['kind'] for a in as_fast)} are within their timing noise of each other, so the "
                    "fewest active parameters decide" if len(as_fast) > 1 else ""))
    if pick is not best:
        delta = an.mean(pick, "val", "distance") - d_best
        lat_best, lat_pick = latency(best), latency(pick)
        speed = (f"{lat_best / lat_pick:.2f}x lower adapter latency" if lat_best and lat_pick and pick is fastest
                 else "as low a latency with fewer active parameters")
        text += f". Trade-off: {pick['kind']} gives up {delta:.4f} distance vs {best['kind']} for {speed}"
    return {
        "best_kind": best["kind"],
        "best_distance_10m": d_best,
        "best_arch_identified": True,
        "clear_winner": clear,
        "tied_with_best": [a["kind"] for a in tied],
        "recommended_kind": pick["kind"],
        "ranking": [a["kind"] for a in ranked],
        "recommendation": text,
    }


# ----------------------------------------------------------------------------------------------------- report
def headline(results: dict, exp: dict) -> str | None:
    """The answer line of FINDINGS.md's "Answers"."""
    s2 = exp.get("summary")
    return f"- **Architecture (E2.2):** {s2.get('recommendation')}." if s2 else None


def findings(results: dict, exp: dict, figs: dict) -> str:
    """This experiment's FINDINGS.md section."""
    s = exp.get("summary") or {}
    diffs = s.get("differences_vs_best") or {}
    rows = []
    for a in exp.get("arms") or []:
        perf, tr = a.get("perf") or {}, a.get("training") or {}
        ivs = a.get("intervals") or {}
        diff = diffs.get(a.get("kind"))
        rows.append([a.get("kind"), md.params(a.get("params")),
                     md.params(a.get("active_params")) if a.get("active_params") != a.get("params") else "same",
                     md.pm((a.get("val") or {}).get("distance")) + md.ci((ivs.get("val") or {}).get("distance")),
                     (md.num((diff or {}).get("estimate")) + md.ci(diff)) if diff else
                     ("best" if a.get("kind") == s.get("best_kind") else "–"),
                     md.pm((a.get("val") or {}).get("spatial_iou"), 3) + md.ci((ivs.get("val") or {}).get("spatial_iou")),
                     md.pm(perf.get("latency_ms"), 3) + md.ci((ivs.get("perf") or {}).get("latency_ms")),
                     md.pm(tr.get("loss_variance"), 3),
                     md.pm(perf.get("forward_peak_memory_mb"), 3), md.pm(perf.get("weights_mb"), 3),
                     f"{a.get('n_completed')}/{a.get('n')}"])
    lines = [f"## {exp.get('title', 'E2.2')}", "", md.status_line(exp), "", md.protocol_table(exp), "",
             md.table(["architecture", "params", "active", f"val distance ({s.get('distance_name')}), 95% CI",
                       "Δ vs best, 95% CI (paired)", "val spatial IoU",
                    "adapter latency (ms, batch 1)", "loss variance (2nd half)", "forward peak memory (MB)",
                    "weights (MB)", "completed"], rows), "",
             f"- Ranking by distance: {', '.join(s.get('ranking') or []) or '–'}; tied with the best within the seed "
             f"spread: {', '.join(s.get('tied_with_best') or []) or '–'}.",
             f"- **Recommendation:** {s.get('recommendation')}.", "",
             "Peak memory is the process's resident-set growth during one adapter forward on CPU (coarse) or CUDA "
             "allocator peak on GPU; weights are exact.", "", "Verdicts:", "",
             md.verdict_table(exp.get("verdicts") or {}), "",
             md.figure(figs, "ablation_e2_2", "E2.2 architectures"),
             md.figure(figs, "learning_curves_e2_2", "E2.2 learning curves"), md.grids(figs, EXPERIMENT.id, exp)]
    errors = [(a.get("kind"), e) for a in exp.get("arms") or [] for e in a.get("errors") or []]
    if errors:
        lines += ["", "Failed / diverged trials:", ""] + [f"- {k}: {e}" for k, e in errors]
    return "\n".join(lines)


def figures(results: dict, run_dir) -> dict[str, str]:
    return plots.experiment_figures(results, run_dir, EXPERIMENT.id, ablation=True)
