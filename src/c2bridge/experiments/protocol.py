"""The protocol knobs an experiment ran with, side by side with the full preset's (so a miniature report can say
where its protocol is smaller than the plan's)."""
from __future__ import annotations

from typing import Any


def recipe_summary(cfg: dict, preset: str) -> dict:
    """Human-sized description of the resolved training recipe of an experiment config."""
    from c2bridge.recipe import load_config, schedule_warmup_steps

    try:
        tc = load_config({**(cfg.get("recipe") or {}), "preset": preset})
    except (ValueError, FileNotFoundError) as exc:
        return {"recipe": f"unresolvable ({exc})"}
    o = tc.optim
    length = f"{o.max_steps} steps" if o.max_steps is not None else f"{o.epochs:g} epochs"
    ev = cfg.get("eval") or {}
    warmup = schedule_warmup_steps(tc)
    lo = tc.loss
    sigma = f", σ {lo.sigma}" + (f"({lo.logit_mean:g}, {lo.logit_std:g})" if "logit" in lo.sigma else "")
    return {
        "training length": length,
        "batch (x accumulation)": f"{o.batch_size} x {o.grad_accum}",
        "optimizer": f"AdamW lr {o.lr:g}, wd {o.weight_decay:g}",
        "schedule": tc.schedule.name + (f" after {warmup} warmup steps" if warmup else ""),
        "loss": tc.loss.name + (f" ({tc.loss.perceptual})" if "lpips" in tc.loss.name else "") + sigma,
        "eval samples per split": ev.get("n_samples"),
        "eval sampling steps": ev.get("sample_steps"),
        "eval splits": ", ".join((ev.get("splits") or {}).keys()) or None,
    }


def human(n: float) -> str:
    """1e4 -> '10k', 2.5e7 -> '25M'."""
    for div, unit in ((1e9, "B"), (1e6, "M"), (1e3, "k")):
        if n >= div:
            return f"{n / div:.3g}{unit}"
    return f"{n:.0f}"


def compare(this: dict, full: dict | None) -> list[dict]:
    """Rows ``{knob, this, full, differs}`` for the report."""
    rows = []
    for knob in list(this) + [k for k in (full or {}) if k not in this]:
        a, b = this.get(knob), (full or {}).get(knob)
        rows.append({"knob": knob, "this": _plain(a), "full": _plain(b), "differs": full is not None and a != b})
    return rows


def _plain(x: Any) -> Any:
    if isinstance(x, dict):
        return ", ".join(f"{k}: {v:g}" if isinstance(v, float) else f"{k}: {v}" for k, v in x.items())
    if isinstance(x, (list, tuple)):
        return ", ".join(str(v) for v in x)
    return x
