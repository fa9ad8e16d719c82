"""``FINDINGS.md``, generated from ``results.yaml`` alone (plus the figure paths ``plots.render_all`` wrote).

Sections: what this run is (and, for a miniature, plainly that it is one); the headline answers and Gate 2; what
the preset can and cannot claim, including where its protocol is smaller than the full one; one section per
experiment (tables, verdicts, recommendation, figures); decisions; every trial.
"""
from __future__ import annotations

import math
from typing import Any

VERDICT_TEXT = {"target": "**target**", "acceptable": "acceptable", "fail": "**FAIL**", "missing": "not measured"}


# ----------------------------------------------------------------------------------------------------- formatting
def num(x: Any, digits: int = 4) -> str:
    if x is None:
        return "–"
    if isinstance(x, bool):
        return "yes" if x else "no"
    if isinstance(x, int):
        return f"{x:,}"
    if isinstance(x, float):
        if not math.isfinite(x):
            return str(x)
        if abs(x) >= 1000:
            return f"{x:,.0f}"
        if x != 0 and abs(x) < 10 ** -(digits - 1):
            return f"{x:.2e}"
        if abs(x) >= 100:
            return f"{x:.1f}"
        return f"{x:.{max(1, digits - 1)}f}" if abs(x) >= 1 else f"{x:.{digits}f}"
    return str(x)


def pm(node: Any, digits: int = 4) -> str:
    """``mean ± std (n=k)`` of a stats node."""
    if not isinstance(node, dict) or node.get("mean") is None:
        return "–"
    s = num(node["mean"], digits)
    if node.get("std") is not None:
        s += f" ± {num(node['std'], 2 if node['std'] < 1 else digits)}"
    if node.get("n", 1) != 1:
        s += f" (n={node['n']})"
    return s


def params(x: Any) -> str:
    if x is None:
        return "–"
    x = float(x)
    for div, unit in ((1e9, "B"), (1e6, "M"), (1e3, "k")):
        if x >= div:
            return f"{x / div:.3g}{unit}"
    return f"{x:.0f}"


def table(headers: list[str], rows: list[list[Any]]) -> str:
    def cell(v: Any) -> str:
        return (num(v) if not isinstance(v, str) else v).replace("|", "\\|").replace("\n", " ")

    out = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    out += ["| " + " | ".join(cell(v) for v in r) + " |" for r in rows]
    return "\n".join(out)


def verdict_text(v: dict) -> str:
    text = VERDICT_TEXT.get(v.get("verdict"), str(v.get("verdict")))
    if v.get("verdict") == "fail" and v.get("severity"):
        text += f" ({v['severity']})"
    if v.get("comparable") is False:
        text += " — indicative only"
    return text


def threshold_text(v: dict) -> str:
    sign = ">" if v.get("direction") == "higher" else "<"
    bad = "<" if v.get("direction") == "higher" else ">"
    parts = []
    if v.get("target") is not None:
        parts.append(f"target {sign} {v['target']:g}")
    if v.get("acceptable") is not None:
        parts.append(f"acceptable {sign} {v['acceptable']:g}")
    if v.get("failure") is not None:
        parts.append(f"failure {bad} {v['failure']:g}")
    return "; ".join(parts)


def verdict_table(verdicts: dict) -> str:
    if not verdicts:
        return "_No criteria for this experiment._"
    rows = []
    for name, v in verdicts.items():
        note = v.get("note") or ""
        if v.get("alternative"):
            alt = v["alternative"]
            note = (note + "; " if note else "") + (f"under {alt.get('source')} bands ({threshold_text({**alt, 'direction': v['direction']})}): "
                                                      f"{verdict_text(alt)}")
        rows.append([f"{v.get('plan_metric', name)} (`{name}`)", num(v.get("value")), threshold_text(v),
                     verdict_text(v), note])
    return table(["metric", "value", "plan's bands", "verdict", "note"], rows)


def figure(figs: dict, name: str, caption: str) -> str:
    return f"![{caption}]({figs[name]})\n" if name in figs else ""


# ----------------------------------------------------------------------------------------------------- sections
def render(results: dict, figs: dict | None = None) -> str:
    figs = figs or {}
    preset = results.get("preset") or {}
    dist = results.get("distance") or {}
    exps = results.get("experiments") or {}
    parts = [_header(results, preset, dist), _headline(results, exps), _claims(results, preset, dist, exps),
             _setup(results, preset, dist)]
    for name, fn in (("e2.1", _e2_1), ("e2.2", _e2_2), ("e2.3", _e2_3), ("e2.4", _e2_4)):
        if name in exps:
            parts.append(fn(results, exps[name], figs))
    parts.append(_decisions(results))
    parts.append(_trials(results))
    return "\n\n".join(p.strip() for p in parts if p and p.strip()) + "\n"


def _header(results: dict, preset: dict, dist: dict) -> str:
    study = results.get("study") or {}
    lines = [f"# C2 adapter bridging — findings ({preset.get('name')} preset)", ""]
    if preset.get("name") == "tiny":
        lines.append("> **Plumbing run on the `tiny` preset: random test-sized models. Every number below is "
                     "meaningless; this file only shows that the pipeline runs end to end.**")
    elif preset.get("is_miniature"):
        lines.append(f"> **This is the miniature.** The `{preset.get('name')}` preset runs the study with the real "
                     "model classes at small configs (an LTX-Video-class decoder and a DINOv2 trained by c2bridge on "
                     "synthetic shapes, a seeded-random tiny Qwen2.5-VL) on a CPU. Its numbers show that the "
                     "pipeline works and which way the effects go; they are not measurements of DINOv2-ViT-L, "
                     "Qwen2.5-VL-7B or LTX-Video, and the plan's absolute thresholds do not apply to them.")
    lines.append("")
    lines.append(f"Distance used for every \"LPIPS\" of the plan: **{dist.get('name', '?')}** — {dist.get('reason', '')}.")
    lines.append("")
    last = study.get("last_run") or {}
    if last:
        lines.append(f"Last run: {', '.join(e.upper() for e in last.get('experiments') or [])} in "
                     f"{last.get('wall_s', 0) / 60:.1f} min wall; {last.get('trials_run')} trial(s) run, "
                     f"{last.get('trials_reused')} found done.")
        lines.append("")
    lines.append(f"Generated from `results.yaml` (schema `{results.get('schema')}`, updated {study.get('updated_at')})"
                 f"{'; command: `' + study['command'] + '`' if study.get('command') else ''}. "
                 "Re-render with `c2bridge report RUN_DIR`.")
    return "\n".join(lines)


def _headline(results: dict, exps: dict) -> str:
    lines = ["## Answers", ""]
    s1 = (exps.get("e2.1") or {}).get("summary")
    if s1:
        v = ((exps["e2.1"].get("verdicts") or {}).get("param_efficiency") or {})
        lines.append(f"- **Scaling (E2.1):** param_efficiency {s1.get('small_budget')} vs {s1.get('reference_budget')} = "
                     f"{num(s1.get('param_efficiency'))} ({verdict_text(v) if v else 'no verdict'}); "
                     f"recommended size: {s1.get('recommendation')}.")
    s2 = (exps.get("e2.2") or {}).get("summary")
    if s2:
        lines.append(f"- **Architecture (E2.2):** {s2.get('recommendation')}.")
    s3 = (exps.get("e2.3") or {}).get("summary")
    if s3:
        lines.append(f"- **Training recipe (E2.3, on {s3.get('arch')}):** {s3.get('recommendation')}.")
    s4 = (exps.get("e2.4") or {}).get("summary")
    if s4:
        v = ((exps["e2.4"].get("verdicts") or {}).get("param_efficiency") or {})
        lines.append(f"- **Final adapter (E2.4):** {exps['e2.4'].get('recommendation')} "
                     f"({verdict_text(v) if v else 'no verdict'}); {s4.get('eval_split')} distance "
                     f"{num(s4.get('distance_10m'))}, spatial IoU {num(s4.get('spatial_iou'))}.")
    checks = results.get("miniature_checks") or {}
    if checks:
        bad = [k for k, v in checks.items() if v.get("verdict") == "fail"]
        lines.append(f"- **Miniature checks (issue 7):** {len(checks) - len(bad)} of {len(checks)} pass"
                     + (f"; failing: {', '.join(bad)} (see E2.4)." if bad else "."))
    g = results.get("gate2") or {}
    if g:
        lines.append(f"- **{g.get('name', 'Gate 2')} — C2's part: {g.get('c2', '?').upper()}** ({g.get('reason')})"
                     + (f" — **{g['caveat']}**" if g.get("caveat") else "") + f". Overall: {g.get('overall')}.")
        if g.get("miniature"):
            lines.append(f"  - Note: {g['miniature']}.")
    if len(lines) == 2:
        lines.append("_No experiment has finished yet._")
    return "\n".join(lines)


def _claims(results: dict, preset: dict, dist: dict, exps: dict) -> str:
    lines = ["## What this run can and cannot claim", ""]
    if preset.get("name") == "tiny":
        lines += ["Nothing about adapters: the `tiny` preset's models are random. It shows that every stage runs "
                  "(features → adapter → frozen decoder → sampled metrics → verdicts → report) and that the "
                  "bookkeeping (trial keys, re-runs, failures) works."]
    elif preset.get("is_miniature"):
        lines += [
            "It **can** claim, within this miniature: the shape of the scaling curve and whether the small budget "
            "keeps most of the large one's quality (param_efficiency is a ratio of two measurements with the same "
            "distance), the ranking of the architectures and training strategies under an identical protocol, "
            "training stability, and that every stage of the pipeline (features → adapter → frozen decoder → "
            "sampled metrics → verdicts → report) works end to end.",
            "",
            "It **cannot** claim: any absolute number for the real models; LPIPS values comparable to the plan's "
            f"thresholds (this run's distance is `{dist.get('name')}` at {preset.get('image_size')} px); GPU latency "
            "or memory (measured here on a CPU at miniature widths); temporal coherence (single frames); "
            "Gate 2 (which also needs Q3). The plan's quoted baselines (P2, C1) are quotes, not measurements.",
        ]
    else:
        lines += ["This run uses the full models: the plan's thresholds apply where the distance is the plan's "
                  f"(`{dist.get('name')}`). Gate 2 also needs Q3 (out of scope here)."]
    merged: dict[tuple, list[str]] = {}  # (knob, this, full) -> experiments: shared recipe rows appear once
    for name, exp in exps.items():
        for r in exp.get("protocol") or []:
            if r.get("differs"):
                this = "–" if r.get("this") is None else str(r.get("this"))
                full = "–" if r.get("full") is None else str(r.get("full"))
                merged.setdefault((r["knob"], this, full), []).append(name.upper())
    rows = [[", ".join(exps_), knob, this, full] for (knob, this, full), exps_ in merged.items()]
    if rows:
        lines += ["", f"Where this run's protocol is smaller than (or differs from) the full preset's:", "",
                  table(["experiment", "knob", f"this run ({preset.get('name')})", "full preset"], rows)]
    notes = [(n.upper(), note) for n, e in exps.items() for note in e.get("protocol_notes") or []]
    if notes:
        lines += [""] + [f"- {n}: {note}" for n, note in notes]
    return "\n".join(lines)


def _setup(results: dict, preset: dict, dist: dict) -> str:
    env = results.get("environment") or {}
    pk = env.get("packages") or {}
    models = results.get("models") or {}
    lines = ["## Setup", ""]
    lines.append(f"- Preset `{preset.get('name')}`: {preset.get('description', '')} Features: DINOv2 "
                 f"[{preset.get('n_patches')}, {preset.get('dino_dim')}], VLM [T, {preset.get('vlm_dim')}] -> "
                 f"conditioning [{preset.get('n_tokens')}, {preset.get('cond_dim')}]; images "
                 f"{preset.get('image_size')} px.")
    budgets = preset.get("budgets") or {}
    if budgets:
        lines.append("- Budgets (the plan's scale -> trainable params here): "
                     + ", ".join(f"{k} -> {params(v)}" for k, v in budgets.items()) + ".")
    for role in ("decoder", "dino", "vlm"):
        m = models.get(role)
        if m:
            ident = m.get("model_id") or m.get("model") or m.get("id") or ""
            extra = {k: v for k, v in m.items() if k in ("revision", "weights_sha256", "dtype", "seed")}
            lines.append(f"- {role}: {ident} {extra if extra else ''}".rstrip())
    caches = results.get("caches") or {}
    if caches:
        lines.append("- Caches: " + "; ".join(
            f"{name} = {c.get('dataset')}/{c.get('split')}{'+' + c['augment'] if c.get('augment') else ''} "
            f"({c.get('n', '?')} samples)" for name, c in caches.items()) + ".")
    lines.append(f"- Environment: Python {env.get('python')}, " + ", ".join(f"{k} {v}" for k, v in pk.items() if v)
                 + f"; {env.get('platform')}.")
    return "\n".join(lines)


def _status_line(exp: dict) -> str:
    return (f"Status: **{exp.get('status')}** · config `{exp.get('config_file')}` · wall {exp.get('wall_s') or 0:.0f} s "
            "(trials reused from earlier runs cost nothing)")


def _protocol_table(exp: dict) -> str:
    rows = [[r["knob"], str(r.get("this")), str(r.get("full")) if r.get("full") is not None else "–"]
            for r in exp.get("protocol") or []]
    return table(["protocol", "this run", "full preset"], rows) if rows else ""


def _grids(figs: dict, exp_name: str, exp: dict) -> str:
    stem = exp_name.replace(".", "_")
    out = figure(figs, f"reconstructions_{stem}", f"{exp_name.upper()} reconstructions")
    grids = exp.get("grids") or {}
    if grids:
        out += "\nReconstruction grids (input | reconstruction): " + ", ".join(f"[{k}]({v})" for k, v in grids.items())
    return out


def _e2_1(results: dict, exp: dict, figs: dict) -> str:
    s = exp.get("summary") or {}
    eff = s.get("efficiency_by_budget") or {}
    rows = []
    for a in exp.get("arms") or []:
        rows.append([a.get("budget"), params(a.get("params") or a.get("budget_params")),
                     pm((a.get("val") or {}).get("distance")), pm((a.get("val") or {}).get("spatial_iou"), 3),
                     num(eff.get(a.get("budget"))), pm((a.get("training") or {}).get("time_s"), 3),
                     pm((a.get("training") or {}).get("steps_to_plateau"), 3),
                     f"{a.get('n_completed')}/{a.get('n')}"])
    lines = [f"## {exp.get('title', 'E2.1')}", "", _status_line(exp), "", _protocol_table(exp), "",
             table(["budget", "params", f"val distance ({s.get('distance_name')})", "val spatial IoU",
                    f"param_efficiency vs {s.get('reference_budget')}", "train time (s)", "steps to plateau",
                    "completed"], rows), "",
             f"- param_efficiency ({s.get('small_budget')} vs {s.get('reference_budget')}, from the seed means): "
             f"**{num(s.get('param_efficiency'))}**; per seed pair: {pm(s.get('param_efficiency_per_seed'))}.",
             f"- Training-time ratio (steps to plateau, {s.get('small_budget')} / {s.get('reference_budget')}): "
             f"{num(s.get('training_time_ratio'))}; wall-time ratio {num(s.get('wall_time_ratio'))}.",
             f"- **Recommended size:** {s.get('recommendation')}.", "", "Verdicts:", "",
             verdict_table(exp.get("verdicts") or {}), "",
             figure(figs, "scaling_curve", "E2.1 scaling curve"),
             figure(figs, "learning_curves_e2_1", "E2.1 learning curves")]
    ck = exp.get("checkpoints") or {}
    if ck:
        lines.append("Checkpoints (best seed per budget): " + ", ".join(f"`{c['path']}/`" for c in ck.values()))
    lines.append(_grids(figs, "e2.1", exp))
    return "\n".join(lines)


def _e2_2(results: dict, exp: dict, figs: dict) -> str:
    s = exp.get("summary") or {}
    rows = []
    for a in exp.get("arms") or []:
        perf, tr = a.get("perf") or {}, a.get("training") or {}
        rows.append([a.get("kind"), params(a.get("params")),
                     params(a.get("active_params")) if a.get("active_params") != a.get("params") else "same",
                     pm((a.get("val") or {}).get("distance")), pm((a.get("val") or {}).get("spatial_iou"), 3),
                     pm(perf.get("latency_ms"), 3), pm(tr.get("loss_variance"), 3),
                     pm(perf.get("forward_peak_memory_mb"), 3), pm(perf.get("weights_mb"), 3),
                     f"{a.get('n_completed')}/{a.get('n')}"])
    lines = [f"## {exp.get('title', 'E2.2')}", "", _status_line(exp), "", _protocol_table(exp), "",
             table(["architecture", "params", "active", f"val distance ({s.get('distance_name')})", "val spatial IoU",
                    "adapter latency (ms, batch 1)", "loss variance (2nd half)", "forward peak memory (MB)",
                    "weights (MB)", "completed"], rows), "",
             f"- Ranking by distance: {', '.join(s.get('ranking') or []) or '–'}; tied with the best within the seed "
             f"spread: {', '.join(s.get('tied_with_best') or []) or '–'}.",
             f"- **Recommendation:** {s.get('recommendation')}.", "",
             "Peak memory is the process's resident-set growth during one adapter forward on CPU (coarse) or CUDA "
             "allocator peak on GPU; weights are exact.", "", "Verdicts:", "",
             verdict_table(exp.get("verdicts") or {}), "",
             figure(figs, "ablation_e2_2", "E2.2 architectures"),
             figure(figs, "learning_curves_e2_2", "E2.2 learning curves"), _grids(figs, "e2.2", exp)]
    errors = [(a.get("kind"), e) for a in exp.get("arms") or [] for e in a.get("errors") or []]
    if errors:
        lines += ["", "Failed / diverged trials:", ""] + [f"- {k}: {e}" for k, e in errors]
    return "\n".join(lines)


def _e2_3(results: dict, exp: dict, figs: dict) -> str:
    s = exp.get("summary") or {}
    rows = []
    for a in exp.get("arms") or []:
        tr = a.get("training") or {}
        rows.append([a.get("grid"), a.get("arm") + (" (baseline)" if a.get("is_baseline") else ""), a.get("change"),
                     pm((a.get("val") or {}).get("distance")),
                     num(a.get("delta_vs_baseline")) if a.get("delta_vs_baseline") is not None else "–",
                     pm((a.get("val") or {}).get("spatial_iou"), 3), pm(tr.get("loss_variance"), 3),
                     pm(tr.get("steps_to_plateau"), 3), ", ".join(sorted(set(a.get("statuses") or [])))])
    best = s.get("best_per_grid") or {}
    lines = [f"## {exp.get('title', 'E2.3')}", "", _status_line(exp), "",
             f"Architecture: **{s.get('arch')}** (from {s.get('arch_source')}), budget {s.get('budget')}.", "",
             _protocol_table(exp), "",
             table(["grid", "arm", "change vs base recipe", f"val distance ({s.get('distance_name')})",
                    "Δ vs baseline", "val spatial IoU", "loss variance", "steps to plateau", "status"], rows), "",
             "- Best arm per grid: " + (", ".join(f"{g}: {b['arm']} ({num(b['distance'])})" for g, b in best.items()) or "–") + ".",
             f"- Combination of the best arms: {num(s.get('combined_distance'))} "
             f"({', '.join(f'{k}={v}' for k, v in (s.get('combined_patch') or {}).items()) or 'base recipe'}).",
             f"- **Recipe handed to E2.4:** {s.get('recommendation')}.",
             f"- Diverged trials: {s.get('n_diverged', 0)}; all strategies unstable: {num(s.get('all_unstable'))}.", "",
             "Verdicts:", "", verdict_table(exp.get("verdicts") or {}), "",
             figure(figs, "ablation_e2_3", "E2.3 ablation"),
             figure(figs, "learning_curves_e2_3", "E2.3 learning curves")]
    if s.get("combination_conflicts"):
        lines.append("Combination conflicts: " + "; ".join(s["combination_conflicts"]))
    return "\n".join(lines)


def _e2_4(results: dict, exp: dict, figs: dict) -> str:
    s = exp.get("summary") or {}
    split = s.get("eval_split", "heldout")
    rows = []
    for a in exp.get("arms") or []:
        perf = a.get("perf") or {}
        rows.append([a.get("label"), a.get("role"), params(a.get("params")),
                     pm((a.get(split) or {}).get("distance")), pm((a.get(split) or {}).get("spatial_iou"), 3),
                     pm((a.get("val") or {}).get("distance")), pm((a.get("train") or {}).get("distance")),
                     pm(perf.get("latency_ms"), 3), pm(perf.get("weights_mb"), 3)])
    for b in s.get("quoted_baselines") or []:
        rows.append([f"{b.get('name')} — quoted from the plan ({b.get('source')})", "quote, not measured",
                     params(b.get("params")), f"LPIPS {num(b.get('lpips'))} (quote)",
                     f"{num(b.get('spatial_iou'))} (quote)" if b.get("spatial_iou") is not None else "–",
                     "–", "–", "–", "–"])
    lines = [f"## {exp.get('title', 'E2.4')}", "", _status_line(exp), "",
             f"Final adapter: **{s.get('arch')}**, recipe {s.get('recipe_change')} (from {s.get('recipe_source')}); "
             f"headline split: **{split}**.", "", _protocol_table(exp), "",
             table(["row", "role", "params", f"{split} distance ({s.get('distance_name')})", f"{split} spatial IoU",
                    "val distance", "train-split distance", "adapter latency (ms)", "weights (MB)"], rows), "",
             f"- param_efficiency (final recipe, {split}): **{num(s.get('param_efficiency'))}**; per seed pair "
             f"{pm(s.get('param_efficiency_per_seed'))}.",
             f"- Memory reduction 100M vs 10M (weights): {num(s.get('memory_reduction'))}x; forward peak memory "
             f"ratio {num(s.get('forward_memory_reduction'))}x; 10M weights {num(s.get('memory_10m_gb'))} GB.",
             f"- Training-time ratio (steps to plateau, 10M / 100M): {num(s.get('training_time_ratio'))}; wall-time "
             f"ratio {num(s.get('wall_time_ratio'))}.",
             f"- Generalization gap ({split} − train distance): {num(s.get('generalization_gap'))}.",
             f"- Recommended configuration for Phase 3: {s.get('phase3_configuration')}.", "",
             "Verdicts:", "", verdict_table(exp.get("verdicts") or {}), "",
             figure(figs, "learning_curves_e2_4", "E2.4 learning curves"), _grids(figs, "e2.4", exp)]
    checks = results.get("miniature_checks") or {}
    if checks:
        lines += ["", "Checks of the miniature itself (issue 7; not plan criteria — they say whether the mini "
                  "world's numbers respond to what the study varies):", "", verdict_table(checks)]
    ck = (exp.get("checkpoints") or {}).get("final")
    if ck:
        lines.append(f"\nFinal adapter checkpoint: `{ck['path']}/` (trial `{ck['trial']}`).")
    return "\n".join(lines)


def _decisions(results: dict) -> str:
    d = results.get("decisions") or {}
    lines = ["## Decisions (plan §6.4) and Gate 2", ""]
    rows = [[p.get("checkpoint"), p.get("criterion"), num(p.get("value")), num(p.get("met")), p.get("decision")]
            for p in d.get("decision_points") or []]
    if rows:
        lines.append(table(["checkpoint", "criterion", "value", "met", "decision"], rows))
    fired = [f for f in d.get("failures") or [] if f.get("fired")]
    lines += ["", "Failure rules (plan §7) that fired: " + ("none." if not fired else "")]
    for f in fired:
        lines.append(f"- {f['kind']}: {f['description']} (value {num(f.get('value'))})"
                     + (" — indicative only: " + f["note"] if not f.get("comparable") else "") + f". Action: {f.get('action')}")
    g = results.get("gate2") or {}
    if g:
        lines += ["", f"**{g.get('name')}** — C2's part: **{g.get('c2')}** ({g.get('reason')})"
                  + (f" — **{g['caveat']}**" if g.get("caveat") else "") + f". {g.get('overall')}."]
        for r in g.get("also_requires") or []:
            lines.append(f"- {r.get('name')}: {r.get('status')}")
        if g.get("miniature"):
            lines.append(f"- {g['miniature']}.")
    return "\n".join(lines)


def _trials(results: dict) -> str:
    from c2bridge.report.results import current_trials

    trials = current_trials(results)
    stale = len(results.get("trials") or {}) - len(trials)
    rows = []
    for key, t in trials.items():
        labels = ", ".join(f"{e}:{l}" for e, l in (t.get("labels") or {}).items())
        val = ((t.get("metrics") or {}).get("val")) or {}
        err = (t.get("error") or "")
        rows.append([f"`{key}`", labels, t.get("status"), params(((t.get("params") or {}) or {}).get("trainable")),
                     num(val.get("distance")), num(val.get("spatial_iou")), num((t.get("train") or {}).get("time_s")),
                     num(t.get("wall_s")),
                     str(err).splitlines()[0][:120] if err else ""])
    counts: dict[str, int] = {}
    for t in trials.values():
        counts[t.get("status")] = counts.get(t.get("status"), 0) + 1
    head = f"## Trials ({len(trials)}: " + ", ".join(f"{v} {k}" for k, v in counts.items()) + ")"
    total = sum(t.get("wall_s") or 0 for t in trials.values())
    if total:
        head += f"\n\nSum of the trials' own wall times: {total / 60:.1f} min."
    if stale:
        head += (f" ({stale} older trial(s) run with other frozen models are kept in results.yaml and not shown.)")
    return "\n".join([head, "", "Each trial is keyed by the hash of its resolved config (`trials/<key>/`); "
                      "experiments that need the same run share it.", "",
                      table(["key", "used as", "status", "params", "val distance", "val IoU", "train s", "total s", "error"], rows)])
