"""Markdown pieces every report section uses: number formatting, tables, verdict tables, figure links."""
from __future__ import annotations

import math
from typing import Any

VERDICT_TEXT = {"target": "**target**", "acceptable": "acceptable", "fail": "**FAIL**", "missing": "not measured",
                "undetermined": "**undetermined**"}


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


def ci(iv: Any, digits: int = 3, method: bool = False) -> str:
    """`` [low, high]`` of an interval record (``Interval.to_dict()``), with its method and resamples when
    ``method``; "" when there is none. An open upper end (a lower bound) reads ``[low, ∞)``."""
    if not isinstance(iv, dict) or iv.get("low") is None:
        return ""
    high = "∞)" if iv.get("high") is None else f"{iv['high']:.{digits}g}]"
    text = f" [{iv['low']:.{digits}g}, {high}"
    if method:
        how = f"{iv.get('level', 0.95):.0%} CI, {iv.get('method')}"
        if iv.get("n_resamples"):
            how += f", {iv['n_resamples']} resamples"
        how += f", {iv.get('n_seeds')} seed(s) x {iv.get('n_samples')} sample(s)"
        if iv.get("note"):
            how += f"; {iv['note']}"
        text += f" ({how})"
    return text


def ci_pair(pair: Any, digits: int = 3) -> str:
    """`` [low, high]`` of a ``[low, high]`` list (the scaling fit's parameter intervals)."""
    if not isinstance(pair, (list, tuple)) or len(pair) != 2 or None in pair:
        return ""
    return f" [{pair[0]:.{digits}g}, {pair[1]:.{digits}g}]"


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
    if v.get("verdict") == "undetermined" and len(v.get("between") or []) > 1:
        text += " (" + " / ".join(v["between"]) + ")"
    elif v.get("verdict") == "undetermined" and v.get("between"):
        text += f" ({v['between'][0]} on an incomplete interval)"
    elif v.get("certain"):
        text += f", certain at {(v.get('interval') or {}).get('level', 0.95):.0%}"
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
        if v.get("verdict") == "undetermined" and v.get("settle"):
            note = (note + "; " if note else "") + v["settle"]
        if (v.get("interval") or {}).get("note"):
            note = (note + "; " if note else "") + v["interval"]["note"]
        rows.append([f"{v.get('plan_metric', name)} (`{name}`)", num(v.get("value")),
                     ci(v.get("interval")).strip() or "–", threshold_text(v), verdict_text(v), note])
    return table(["metric", "value", "95% CI", "plan's bands", "verdict", "note"], rows)


def figure(figs: dict, name: str, caption: str) -> str:
    return f"![{caption}]({figs[name]})\n" if name in figs else ""


def status_line(exp: dict) -> str:
    line = (f"Status: **{exp.get('status')}** · config `{exp.get('config_file')}` · wall {exp.get('wall_s') or 0:.0f} s "
            "(trials reused from earlier runs cost nothing)")
    return line + halving_line(exp)


def halving_line(exp: dict) -> str:
    """The arms successive halving stopped (``halving:`` on): they are left out of every pick."""
    h = exp.get("halving") or {}
    if not h.get("enabled"):
        return ""
    pruned = h.get("pruned") or []
    policy = next((d.get("policy") for d in h.get("decisions") or []), None)
    text = (f"\n\nSuccessive halving (eta {h.get('eta')}, first rung at {h.get('min_fraction'):g} of the steps"
            f"{f', {policy}' if policy else ''}): ")
    if not pruned:
        return text + "no arm was pruned."
    return text + f"{len(pruned)} trial(s) pruned and left out of the picks: " + ", ".join(
        f"{p.get('label')} at step {p.get('step')} (val loss {num(p.get('rung_value'))})" for p in pruned) + "."


def protocol_table(exp: dict) -> str:
    rows = [[r["knob"], str(r.get("this")), str(r.get("full")) if r.get("full") is not None else "–"]
            for r in exp.get("protocol") or []]
    return table(["protocol", "this run", "full preset"], rows) if rows else ""


def grids(figs: dict, exp_name: str, exp: dict) -> str:
    stem = exp_name.replace(".", "_")
    out = figure(figs, f"reconstructions_{stem}", f"{exp_name.upper()} reconstructions")
    grids = exp.get("grids") or {}
    if grids:
        out += "\nReconstruction grids (input | reconstruction): " + ", ".join(f"[{k}]({v})" for k, v in grids.items())
    return out
