"""Pivot 8.1 (plan §8.1): increase the minimum adapter size -- 20M and 30M against 10M and 100M.

The query adapter at each size (any size: ``c2bridge.config.resolve_budget``), E2.1's recipe; the 10M and 100M
arms are E2.1's own trials (same resolved config -> same key -> reused). Each size's param_efficiency against
100M has a 95% interval; the recommendation is the smallest size whose interval clears the E2.1 criterion's line.
"""
from __future__ import annotations

from c2bridge.experiments import _branches as br
from c2bridge.experiments.registry import ExperimentInfo

EXPERIMENT = ExperimentInfo(id="p8.1", order=11, title="Pivot 8.1: Increase minimum adapter size",
                            group=br.GROUP)


def _sizes(cfg: dict) -> dict[str, str]:
    sizes = cfg.get("sizes") or {"10M": "10m", "20M": "20m", "30M": "30m", "100M": "100m"}
    if not isinstance(sizes, dict) or not sizes:
        raise ValueError(f"p8.1.sizes={sizes!r}: expected a mapping arm name -> budget, e.g. {{20M: 20m}}")
    return {str(k): str(v) for k, v in sizes.items()}


def arms(cfg: dict, preset, upstream=None) -> list[br.Arm]:
    kind = cfg.get("kind", "query")
    return [br.sweep(name, kind, budget, cfg, note=br.budget_text(budget, preset))
            for name, budget in _sizes(cfg).items()]


def trials(cfg: dict, preset, upstream=None):
    names = list(_sizes(cfg))
    for key in ("baseline", "reference"):
        if cfg.get(key) not in names:
            raise ValueError(f"p8.1.{key}={cfg.get(key)!r}: expected one of the sizes {names}")
    return br.flat(arms(cfg, preset, upstream))


def protocol(cfg: dict, preset) -> dict:
    return br.protocol(cfg, preset, arms(cfg, preset), **{"reference (param_efficiency)": cfg.get("reference")})


def _decide(ctx, arms_: list[br.Arm]):
    crit = (ctx.criteria.get("experiments") or {}).get("e2.1", {}).get("param_efficiency") or {}
    reference = ctx.cfg.get("reference")

    def decide(groups, comparisons, baseline):
        order = sorted((g for g in groups if g["label"] != reference), key=lambda g: g.get("budget_params") or 0)
        for level in ("target", "acceptable"):
            line = crit.get(level)
            if line is None:
                continue
            for g in order:
                eff = (comparisons.get(g["label"]) or {}).get("efficiency") or {}
                if eff.get("low") is not None and eff["low"] > line:
                    return g["label"], (f"{g['label']}: the smallest size whose param_efficiency vs {reference} is "
                                        f"above the {level} line {line} with 95% confidence "
                                        f"({br.interval_text(eff, 3)})")
        best = max(order, key=lambda g: ((comparisons.get(g["label"]) or {}).get("efficiency") or {}).get("estimate")
                   or float("-inf"), default=None)
        eff = ((comparisons.get(best["label"]) or {}).get("efficiency") or {}) if best else {}
        return reference, (f"{reference}: no smaller size clears the acceptable line {crit.get('acceptable')} with "
                           f"95% confidence (best: {best['label'] if best else '–'}, param_efficiency "
                           f"{br.interval_text(eff, 3)})")

    return decide


def run(ctx) -> dict:
    a = arms(ctx.cfg, ctx.preset, ctx.upstream())
    return br.run_branch(ctx, a, ctx.cfg.get("baseline", "10M"), reference=ctx.cfg.get("reference", "100M"),
                         decide=_decide(ctx, a))


def headline(results: dict, exp: dict) -> str | None:
    return br.headline(exp, "Larger minimum size")


def findings(results: dict, exp: dict, figs: dict) -> str:
    return br.findings_section(results, exp, figs, EXPERIMENT.id)


def figures(results: dict, run_dir) -> dict[str, str]:
    return br.figures(results, run_dir, EXPERIMENT.id)
