"""Open question 5 (plan §15): how should the adapter handle video? The adapter's ``temporal`` option at the 10M
budget, trained and evaluated on clips (the clip split: ``train_cache`` / ``val_cache`` / ``eval.splits`` of the
config name clip caches):

- ``frame``: one conditioning per frame (each frame reconstructed with its own, all from the clip's noise);
- ``pool``: the mean of the frames' DINOv2 tokens -> one conditioning for the clip (the default: the baseline);
- ``spacetime``: every frame's tokens in one context with a temporal position embedding -> one conditioning.

The VLM reads each clip as one video in every arm; the options add no parameters, so every arm has the same count.

Each arm is scored on the clip split by the frame-averaged distance and the temporal metrics of
``c2bridge.metrics.temporal`` (flicker, warp error, per-frame mask-IoU stability), with 95% intervals; zero
conditioning is measured on the same clips (does a trained adapter beat it on temporal coherence too?).

Recommendation rule: an arm replaces the baseline only when its distance is lower with 95% confidence and its warp
error is not higher with 95% confidence (the lower end of its difference interval is <= 0); among such arms the
lowest distance wins. Otherwise the baseline stays.
"""
from __future__ import annotations

from c2bridge.experiments import _branches as br
from c2bridge.experiments import _sweeps
from c2bridge.experiments import analysis as an
from c2bridge.experiments import uncertainty as unc
from c2bridge.experiments.registry import ExperimentInfo
from c2bridge.experiments.trials import TrialSpec
from c2bridge.report import markdown as md
from c2bridge.report import plots

EXPERIMENT = ExperimentInfo(id="q5", order=19, title="Q5: Temporal handling of clips", group=br.GROUP)
OPTION = "temporal"
QUESTION = "Temporal handling of clips"
CONFIG_KEYS = ("kind", "budget", "values", "baseline", "seeds", "references", "adapter_overrides")
# (record metric, column name, lower is better)
METRICS = (("distance", "per-frame distance"), ("flicker", "flicker"), ("warp_error", "warp error"),
           ("mask_iou_delta", "IoU change / frame"), ("mask_iou_std", "IoU std over frames"),
           ("spatial_iou", "mean spatial IoU"))
TEMPORAL = ("flicker", "warp_error", "mask_iou_delta", "mask_iou_std")
SPLIT = "val"  # the split every trial is evaluated on (eval.splits.val: the clip cache)


def arms(cfg: dict, preset, upstream=None) -> list[br.Arm]:
    return _sweeps.arms(cfg, preset, OPTION, EXPERIMENT.id)


def _references(cfg: dict) -> list[TrialSpec]:
    return [TrialSpec(f"ref:{r}", kind="reference", reference=r, adapter=cfg.get("kind", "query"),
                      budget=str(cfg.get("budget", "10m"))) for r in (cfg.get("references") or [])]


def trials(cfg: dict, preset, upstream=None) -> list[TrialSpec]:
    a = arms(cfg, preset, upstream)
    if cfg.get("baseline") not in [x.name for x in a]:
        raise ValueError(f"q5.baseline={cfg.get('baseline')!r}: expected one of {[x.name for x in a]}")
    return br.flat(a) + _references(cfg)


def protocol(cfg: dict, preset) -> dict:
    return br.protocol(cfg, preset, arms(cfg, preset), **{
        "adapter": f"{cfg.get('kind', 'query')} at {br.budget_text(str(cfg.get('budget', '10m')), preset)}",
        "swept option": f"adapter.{OPTION}", "trained on": cfg.get("train_cache"),
        "evaluated on": ((cfg.get("eval") or {}).get("splits") or {}).get(SPLIT),
        "references": ", ".join(cfg.get("references") or []) or None})


def decide(groups: list[dict], comparisons: dict, baseline: str) -> tuple[str | None, str]:
    """The module docstring's rule (distance better with 95% confidence, warp error not worse)."""
    done = [g for g in groups if an.mean(g, SPLIT, "distance") is not None]
    if not done:
        return None, "no arm completed: nothing to recommend"
    ok = []
    for g in done:
        c = comparisons.get(g["label"]) or {}
        warp = (c.get("temporal") or {}).get("warp_error") or {}
        if c.get("better") and (warp.get("low") is None or warp["low"] <= 0):
            ok.append(g)
    if not ok:
        best = min(done, key=lambda g: an.mean(g, SPLIT, "distance"))["label"]
        if best == baseline:
            return baseline, f"keep {baseline}: no arm has a lower mean per-frame distance"
        diff = br.interval_text((comparisons.get(best) or {}).get("difference"))
        return baseline, (f"keep {baseline}: the lowest-distance arm, {best}, differs by {diff} (95% interval "
                          "includes 0 or above it, or its warp error is higher with 95% confidence)")
    pick = min(ok, key=lambda g: an.mean(g, SPLIT, "distance"))["label"]
    c = comparisons[pick]
    return pick, (f"{pick}: lower per-frame distance than {baseline} with 95% confidence (difference "
                  f"{br.interval_text(c.get('difference'))}) and warp error not higher (difference "
                  f"{br.interval_text((c.get('temporal') or {}).get('warp_error'))})")


def _intervals(records: list, opts: dict) -> dict:
    out = {}
    for metric, _ in METRICS:
        iv = unc.arm_interval(records, metric, SPLIT, **opts)
        if iv is not None:
            out[metric] = unc.to_record(iv)
    return out


def _differences(a: list, b: list, opts: dict) -> dict:
    out = {}
    for metric in ("distance",) + TEMPORAL:
        try:
            iv = unc.difference(a, b, metric, SPLIT, **opts)
        except ValueError:
            iv = None
        if iv is not None:
            out[metric] = unc.to_record(iv)
    return out


def run(ctx) -> dict:
    cfg = ctx.cfg
    a = arms(cfg, ctx.preset, ctx.upstream())
    baseline = cfg.get("baseline")
    opts = unc.interval_options(cfg)
    refs = _references(cfg)
    records = ctx.run_trials(br.flat(a) + refs)  # the arms and the references (run_branch then finds them done)
    by_arm = {arm.name: [records[s.label] for s in arm.specs] for arm in a}
    temporal_vs_baseline = {arm.name: _differences(by_arm[arm.name], by_arm[baseline], opts)
                            for arm in a if arm.name != baseline}

    def rule(groups, comparisons, base):
        for name, diffs in temporal_vs_baseline.items():
            comparisons.setdefault(name, {})["temporal"] = diffs
        return decide(groups, comparisons, base)

    out = br.run_branch(ctx, a, baseline, decide=rule)
    rows = {arm.name: _intervals(by_arm[arm.name], opts) for arm in a}
    vs_ref: dict = {}
    for spec in refs:
        rec = records[spec.label]
        rows[spec.reference] = _intervals([rec], opts)
        vs_ref[spec.reference] = {arm.name: _differences(by_arm[arm.name], [rec], opts) for arm in a}
    summary = out["summary"]
    summary["details"] = {**summary.get("details", {}), "split": SPLIT, "rows": rows, "vs_reference": vs_ref,
                          "temporal_vs_baseline": temporal_vs_baseline,
                          "clip_cache": ((cfg.get("eval") or {}).get("splits") or {}).get(SPLIT)}
    return out


def headline(results: dict, exp: dict) -> str | None:
    return br.headline(exp, QUESTION)


def _cell(iv: dict | None, digits: int = 4) -> str:
    if not iv or iv.get("estimate") is None:
        return "n/a"
    return md.num(iv["estimate"], digits) + md.ci(iv)


def temporal_lines(exp: dict) -> list[str]:
    """The clip table: each arm and reference, every metric with its 95% interval; then each arm vs zero
    conditioning on the temporal metrics."""
    s = exp.get("summary") or {}
    d = s.get("details") or {}
    rows = d.get("rows") or {}
    if not rows:
        return []
    table = [[name + (" (baseline)" if name == s.get("baseline") else "")] + [_cell(ivs.get(m)) for m, _ in METRICS]
             for name, ivs in rows.items()]
    lines = [f"Clip split `{d.get('clip_cache')}` (mean, 95% interval over seeds x clips; lower is better except "
             "mean spatial IoU; flicker and warp error are relative to the target's own frame-to-frame change, "
             "`c2bridge.metrics.temporal`):", "",
             md.table(["arm / reference"] + [label for _, label in METRICS], table), ""]
    for ref, per_arm in (d.get("vs_reference") or {}).items():
        diff_rows = [[arm] + [br.interval_text(diffs.get(m)) for m in ("distance",) + TEMPORAL]
                     for arm, diffs in per_arm.items()]
        lines += [f"Each arm minus {ref} conditioning (95% interval; below 0: the adapter is better):", "",
                  md.table(["arm"] + [f"Δ {label}" for m, label in METRICS if m in ("distance",) + TEMPORAL],
                           diff_rows), ""]
    return lines


def findings(results: dict, exp: dict, figs: dict) -> str:
    extra = temporal_lines(exp) + [md.figure(figs, "temporal_q5", "Q5: temporal metrics per arm (95% CI)")]
    return br.findings_section(results, exp, figs, EXPERIMENT.id, extra_lines=extra)


def temporal_bars(results: dict, out) -> "object | None":
    """Flicker and warp error per arm with their 95% intervals; the references as dashed lines."""
    exp = (results.get("experiments") or {}).get(EXPERIMENT.id) or {}
    s = exp.get("summary") or {}
    rows = (s.get("details") or {}).get("rows") or {}
    arm_names = [n for n in s.get("arms") or [] if n in rows]
    if not arm_names:
        return None
    plt = plots.pyplot()
    fig, axes = plt.subplots(1, 3, figsize=(10.5, 3.4))
    for ax, metric in zip(axes, ("distance", "flicker", "warp_error")):
        ivs = [rows[n].get(metric) or {} for n in arm_names]
        est = [iv.get("estimate") or 0.0 for iv in ivs]
        err = [[max(0.0, e - (iv.get("low") if iv.get("low") is not None else e)) for e, iv in zip(est, ivs)],
               [max(0.0, (iv.get("high") if iv.get("high") is not None else e) - e) for e, iv in zip(est, ivs)]]
        ax.bar(range(len(arm_names)), est, yerr=err, capsize=3, color=[f"C{i}" for i in range(len(arm_names))])
        for j, ref in enumerate(n for n in rows if n not in arm_names):
            value = (rows[ref].get(metric) or {}).get("estimate")
            if value is not None:
                ax.axhline(value, ls="--", color="k", alpha=0.6 - 0.2 * j, label=f"{ref} conditioning")
        ax.set_xticks(range(len(arm_names)))
        ax.set_xticklabels(arm_names, fontsize=8)
        ax.set_title(metric.replace("_", " ") + " (lower is better)", fontsize=9)
        ax.grid(True, axis="y", alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=7)
    fig.suptitle(f"Q5 temporal handling — {plots.subtitle(results)}", fontsize=10)
    return plots.save_figure(fig, out)


def figures(results: dict, run_dir) -> dict[str, str]:
    from pathlib import Path

    figs = br.figures(results, run_dir, EXPERIMENT.id)
    path = temporal_bars(results, Path(run_dir) / plots.FIG_DIR / "temporal_q5.png")
    if path is not None:
        figs["temporal_q5"] = str(Path(path).relative_to(Path(run_dir)))
    return figs
