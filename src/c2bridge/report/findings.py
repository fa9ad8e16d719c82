"""``FINDINGS.md``, generated from ``results.yaml`` alone (plus the figure paths ``plots.render_all`` wrote).

Sections: what this run is (and, for a miniature, plainly that it is one); the headline answers and Gate 2; what
the preset can and cannot claim, including where its protocol is smaller than the full one; one section per
experiment (tables, verdicts, recommendation, figures); decisions; every trial.
"""
from __future__ import annotations

from c2bridge.presets import get_preset
from c2bridge.report.markdown import (VERDICT_TEXT, figure, num, params, pm, table,  # noqa: F401 (re-exported)
                                      threshold_text, verdict_table, verdict_text)


# ----------------------------------------------------------------------------------------------------- sections
def render(results: dict, figs: dict | None = None) -> str:
    from c2bridge.experiments.registry import experiments

    figs = figs or {}
    preset = results.get("preset") or {}
    dist = results.get("distance") or {}
    exps = results.get("experiments") or {}
    parts = [_header(results, preset, dist), _headline(results, exps), _claims(results, preset, dist, exps),
             _setup(results, preset, dist)]
    for name, module in experiments().items():  # each registered experiment renders its own section
        if name in exps:
            parts.append(module.findings(results, exps[name], figs))
    parts.append(_decisions(results))
    parts.append(_trials(results))
    return "\n\n".join(p.strip() for p in parts if p and p.strip()) + "\n"


def _header(results: dict, preset: dict, dist: dict) -> str:
    study = results.get("study") or {}
    lines = [f"# C2 adapter bridging — findings ({preset.get('name')} preset)", ""]
    note = get_preset(preset.get("name")).report_note("header")  # what this world is, when not the real one
    if note:
        lines.append(note)
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
    from c2bridge.experiments.registry import experiments

    lines = ["## Answers", ""]
    for name, module in experiments().items():
        line = module.headline(results, exps[name]) if name in exps else None
        if line:
            lines.append(line)
    checks = results.get("miniature_checks") or {}
    if checks:
        bad = [k for k, v in checks.items() if v.get("verdict") == "fail"]
        lines.append(f"- **Miniature checks:** {len(checks) - len(bad)} of {len(checks)} pass"
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
    lines += [get_preset(preset.get("name")).report_note("claims", distance=dist.get("name"))]
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


def _decisions(results: dict) -> str:
    d = results.get("decisions") or {}
    lines = ["## Decisions (plan §6.4) and Gate 2", ""]
    rows = [[p.get("checkpoint"), p.get("criterion"), num(p.get("value")), num(p.get("met")),
             p.get("decision") + (f" ({' or '.join(p['between'])})" if p.get("between") else ""),
             p.get("confidence") or "–"]
            for p in d.get("decision_points") or []]
    if rows:
        lines.append(table(["checkpoint", "criterion", "value", "met", "decision", "on the 95% interval"], rows))
    fired = [f for f in d.get("failures") or [] if f.get("fired")]
    lines += ["", "Failure rules (plan §7) that fired: " + ("none." if not fired else "")]
    for f in fired:
        lines.append(f"- {f['kind']}: {f['description']} (value {num(f.get('value'))}"
                     + (f"; {f['confidence']}" if f.get("confidence") else "") + ")"
                     + (" — indicative only: " + f["note"] if not f.get("comparable") else "") + f". Action: {f.get('action')}")
    open_rules = [f for f in d.get("failures") or []
                  if f.get("fired") is None and f.get("confidence")]
    if open_rules:
        lines += ["", "Failure rules whose 95% interval straddles their line (undetermined):"]
        lines += [f"- {f['kind']}: {f['description']} ({f['confidence']})" for f in open_rules]
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
