"""The open questions' sweeps (plan §15, questions 1-4): one adapter option swept at the 10M budget, each value an
arm, the default value the baseline (a trial E2.1 or E2.2 trained already when its config is the same).

A sweep module sets ``OPTION`` (the adapter option, e.g. ``n_tokens``), its ``EXPERIMENT`` and what the question
asks (``QUESTION``), and calls ``sweep_module(globals())``; the YAML lists ``values`` (arm name -> option value,
``null`` = the adapter's default: the baseline arm's trial is the unpatched one).
"""
from __future__ import annotations

from c2bridge.experiments import _branches as br


def values(cfg: dict, name: str) -> dict:
    vals = cfg.get("values")
    if not isinstance(vals, dict) or not vals:
        raise ValueError(f"{name}.values={vals!r}: expected a mapping arm name -> option value (null = default)")
    return {str(k): v for k, v in vals.items()}


def arms(cfg: dict, preset, option: str, name: str) -> list[br.Arm]:
    kind, budget = cfg.get("kind", "query"), str(cfg.get("budget", "10m"))
    out = []
    for arm, value in values(cfg, name).items():  # the values compete under successive halving (``halving:``)
        group = {"group": option, "protected": arm == cfg.get("baseline")}
        if value is None:  # the default: exactly the trial E2.1 / E2.2 keys, so it is reused
            out.append(br.sweep(arm, kind, budget, cfg, note="default", **group))
        else:
            overrides = {**(cfg.get("adapter_overrides") or {}), option: value}
            out.append(br.sweep(arm, kind, budget, cfg, patch={"adapter.overrides": overrides},
                                label=f"{kind}-{budget}-{option}={_short(value)}", note=f"{option}={value!r}",
                                **group))
    return out


def _short(value) -> str:
    if isinstance(value, (list, tuple)):
        return "/".join(f"{v:g}" if isinstance(v, float) else str(v) for v in value)
    return str(value)


def sweep_module(ns: dict) -> None:
    """Fill a sweep module's namespace with the Experiment functions."""
    info, option, question = ns["EXPERIMENT"], ns["OPTION"], ns["QUESTION"]
    name = info.id

    def _arms(cfg, preset, upstream=None):
        return arms(cfg, preset, option, name)

    def trials(cfg, preset, upstream=None):
        a = _arms(cfg, preset, upstream)
        if cfg.get("baseline") not in [x.name for x in a]:
            raise ValueError(f"{name}.baseline={cfg.get('baseline')!r}: expected one of {[x.name for x in a]}")
        return br.flat(a)

    def protocol(cfg, preset):
        return br.protocol(cfg, preset, _arms(cfg, preset), **{
            "adapter": f"{cfg.get('kind', 'query')} at {br.budget_text(str(cfg.get('budget', '10m')), preset)}",
            "swept option": option})

    def run(ctx):
        note = ns.get("preset_note", lambda preset: None)(ctx.preset)
        return br.run_branch(ctx, _arms(ctx.cfg, ctx.preset, ctx.upstream()), ctx.cfg.get("baseline"), note=note)

    def headline(results, exp):
        return br.headline(exp, question)

    def findings(results, exp, figs):
        return br.findings_section(results, exp, figs, name)

    def figures(results, run_dir):
        return br.figures(results, run_dir, name)

    ns.update(arms=_arms, trials=trials, protocol=protocol, run=run, headline=headline, findings=findings,
              figures=figures)
