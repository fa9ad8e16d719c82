"""Pivot 8.4 (plan §8.4): a mixture-of-experts adapter, 8 experts of ~2M, top-2 routing (16M total, ~4M active),
against dense query adapters of 10M (E2.1's trial, reused) and 16M. The table reports active parameters and the
adapter's latency next to the distance: the pivot's point is capacity at sparse compute.
"""
from __future__ import annotations

from c2bridge.experiments import _branches as br
from c2bridge.experiments.registry import ExperimentInfo

EXPERIMENT = ExperimentInfo(id="p8.4", order=14, title="Pivot 8.4: Mixture-of-experts adapter", group=br.GROUP)


def arms(cfg: dict, preset, upstream=None) -> list[br.Arm]:
    moe = cfg.get("moe") or {}
    budget = str(moe.get("budget", "16m"))
    options = {"n_experts": int(moe.get("n_experts", 8)), "top_k": int(moe.get("top_k", 2))}
    dense = cfg.get("dense") or {"dense 10M": "10m", "dense 16M": "16m"}
    out = [br.sweep(name, "query", str(b), cfg, note=br.budget_text(str(b), preset)) for name, b in dense.items()]
    out.append(br.sweep(cfg.get("moe_arm", "MoE 8x2M top-2"), "moe", budget, cfg,
                        patch={"adapter.overrides": options},
                        label=f"moe-{budget}-e{options['n_experts']}k{options['top_k']}",
                        note=f"{options['n_experts']} experts, top-{options['top_k']}, "
                             f"{br.budget_text(budget, preset)} in total"))
    return out


def trials(cfg: dict, preset, upstream=None):
    a = arms(cfg, preset, upstream)
    if cfg.get("baseline") not in [x.name for x in a]:
        raise ValueError(f"p8.4.baseline={cfg.get('baseline')!r}: expected one of {[x.name for x in a]}")
    return br.flat(a)


def protocol(cfg: dict, preset) -> dict:
    return br.protocol(cfg, preset, arms(cfg, preset))


def run(ctx) -> dict:
    record = br.run_branch(ctx, arms(ctx.cfg, ctx.preset, ctx.upstream()), ctx.cfg.get("baseline", "dense 10M"))
    moe = next((g for g in record["arms"] if g.get("kind") == "moe"), None)
    if moe is not None:
        record["summary"]["details"] = {"moe_params": moe.get("params"), "moe_active_params": moe.get("active_params"),
                                        "moe_latency_ms": (moe.get("perf") or {}).get("latency_ms")}
    return record


def headline(results: dict, exp: dict) -> str | None:
    return br.headline(exp, "Mixture of experts")


def findings(results: dict, exp: dict, figs: dict) -> str:
    d = (exp.get("summary") or {}).get("details") or {}
    from c2bridge.report import markdown as md

    extra = [f"- MoE: {md.params(d.get('moe_params'))} parameters in total, {md.params(d.get('moe_active_params'))} "
             f"active per output token; adapter latency {md.pm(d.get('moe_latency_ms'), 3)} ms (batch 1).", ""]
    return br.findings_section(results, exp, figs, EXPERIMENT.id, extra)


def figures(results: dict, run_dir) -> dict[str, str]:
    return br.figures(results, run_dir, EXPERIMENT.id)
