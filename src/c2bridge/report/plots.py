"""Figures rendered from ``results.yaml`` alone: the scaling curve (log x), learning curves, ablation bars, and a
montage of the per-adapter reconstruction grids (those PNGs are written by the trials; the montage only lays
them out). Every writer is atomic and returns the path it wrote, or None when there was nothing to draw."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from c2bridge._io import atomic_path

FIG_DIR = "figures"


def _plt():
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path: Path) -> Path:
    plt = _plt()
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=100, bbox_inches="tight")
    plt.close(fig)
    return path


def _mean(node: Any) -> float | None:
    return node.get("mean") if isinstance(node, dict) else None


def _std(node: Any) -> float | None:
    return node.get("std") if isinstance(node, dict) else None


def _subtitle(results: dict) -> str:
    preset = results.get("preset") or {}
    dist = (results.get("distance") or {}).get("name", "?")
    tag = " (miniature)" if preset.get("is_miniature") else ""
    return f"preset {preset.get('name')}{tag}, distance {dist}"


def scaling_curve(results: dict, out: Path) -> Path | None:
    """Distance (mean ± seed spread) vs trainable params, log x; spatial IoU on the right axis."""
    exp = (results.get("experiments") or {}).get("e2.1") or {}
    arms = [a for a in exp.get("arms") or [] if _mean((a.get("val") or {}).get("distance")) is not None]
    if not arms:
        return None
    plt = _plt()
    xs = [a.get("params") or a.get("budget_params") for a in arms]
    ds = [_mean(a["val"]["distance"]) for a in arms]
    es = [_std(a["val"]["distance"]) or 0.0 for a in arms]
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    ax.errorbar(xs, ds, yerr=es, marker="o", capsize=4, color="C0", label=f"distance ({(results.get('distance') or {}).get('name')})")
    for x, d, a in zip(xs, ds, arms):
        ax.annotate(a.get("budget", ""), (x, d), textcoords="offset points", xytext=(4, 6), fontsize=8)
    summary = exp.get("summary") or {}
    d_ref = summary.get("distance_100m")
    target = (((results.get("criteria") or {}).get("experiments") or {}).get("e2.1") or {}).get("param_efficiency", {}).get("target")
    if d_ref is not None and target is not None:
        ax.axhline(d_ref * (2 - target), ls="--", color="C0", alpha=0.5, lw=1,
                   label=f"param_efficiency {target:g} line vs {summary.get('reference_budget', '100m')}")
    ax.set_xscale("log")
    ax.set_xlabel("trainable adapter parameters (log)")
    ax.set_ylabel("distance on val (lower is better)")
    ious = [_mean((a.get("val") or {}).get("spatial_iou")) for a in arms]
    if any(v is not None for v in ious):
        ax2 = ax.twinx()
        pts = [(x, v, _std(a["val"]["spatial_iou"]) or 0.0) for x, v, a in zip(xs, ious, arms) if v is not None]
        ax2.errorbar([p[0] for p in pts], [p[1] for p in pts], yerr=[p[2] for p in pts], marker="s", capsize=3,
                     color="C1", alpha=0.8, label="spatial IoU")
        ax2.set_ylabel("spatial IoU on val (higher is better)", color="C1")
        h1, l1 = ax.get_legend_handles_labels()
        h2, l2 = ax2.get_legend_handles_labels()
        ax.legend(h1 + h2, l1 + l2, fontsize=8, loc="best")
    else:
        ax.legend(fontsize=8)
    ax.set_title(f"E2.1 scaling curve ({summary.get('kind', 'query')})\n{_subtitle(results)}", fontsize=10)
    ax.grid(True, which="both", alpha=0.3)
    return _save(fig, out)


def learning_curves(results: dict, experiment: str, out: Path) -> Path | None:
    """Train loss (solid) and validation loss (dashed) per arm; E2.3: one panel per grid (+ the combination)."""
    exp = (results.get("experiments") or {}).get(experiment) or {}
    trials = results.get("trials") or {}
    arms = exp.get("arms") or []
    panels: dict[str, list[dict]] = {}
    for a in arms:
        panels.setdefault(a.get("grid") or "", []).append(a)
    panels = {k: v for k, v in panels.items() if any(_has_curve(trials.get(key)) for a in v for key in a.get("keys") or [])}
    if not panels:
        return None
    plt = _plt()
    n = len(panels)
    cols = min(n, 3)
    rows = -(-n // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(5.2 * cols, 3.6 * rows), squeeze=False, layout="constrained")
    for ax, (name, group) in zip(axes.flat, panels.items()):
        for i, a in enumerate(group):
            color = f"C{i % 10}"
            for j, key in enumerate(a.get("keys") or []):
                curve = (trials.get(key) or {}).get("curve") or {}
                if not curve.get("step"):
                    continue
                lbl = a.get("arm") or a.get("label") if j == 0 else None
                ax.plot(curve["step"], _smooth(curve["loss"]), color=color, alpha=0.9 if j == 0 else 0.35, lw=1.2,
                        label=lbl)
                if curve.get("val_step"):
                    ax.plot(curve["val_step"], curve["val_loss"], color=color, ls="--", marker=".", alpha=0.6 if j == 0 else 0.25, lw=1)
        ax.set_title(name or experiment.upper(), fontsize=9)
        ax.set_xlabel("step")
        ax.set_ylabel("loss (solid: train, smoothed; dashed: val)")
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=7)
    for ax in list(axes.flat)[n:]:
        ax.axis("off")
    fig.suptitle(f"{experiment.upper()} learning curves — {_subtitle(results)}", fontsize=10)
    return _save(fig, out)


def _smooth(values: list[float]) -> list[float]:
    """Trailing moving average over ~10% of the points (the flow-matching loss is noisy: random σ per step)."""
    w = max(1, len(values) // 10)
    out, acc = [], 0.0
    for i, v in enumerate(values):
        acc += v
        if i >= w:
            acc -= values[i - w]
        out.append(acc / min(i + 1, w))
    return out


def _has_curve(trial: dict | None) -> bool:
    return bool(((trial or {}).get("curve") or {}).get("step"))


def ablation_bars(results: dict, experiment: str, out: Path) -> Path | None:
    """Mean distance ± seed spread per arm (E2.2 architectures, E2.3 grid arms)."""
    exp = (results.get("experiments") or {}).get(experiment) or {}
    arms = [a for a in exp.get("arms") or [] if _mean((a.get("val") or {}).get("distance")) is not None]
    if not arms:
        return None
    plt = _plt()
    labels = [a.get("label") for a in arms]
    means = [_mean(a["val"]["distance"]) for a in arms]
    errs = [_std(a["val"]["distance"]) or 0.0 for a in arms]
    groups = list(dict.fromkeys(a.get("grid") or "" for a in arms))  # one colour per grid, in order
    colors = [f"C{groups.index(a.get('grid') or '') % 10}" for a in arms]
    fig, ax = plt.subplots(figsize=(max(5.0, 0.55 * len(arms) + 2), 3.8))
    ax.bar(range(len(arms)), means, yerr=errs, capsize=3, color=colors, alpha=0.85)
    ax.set_xticks(range(len(arms)))
    ax.set_xticklabels(labels, rotation=35, ha="right", fontsize=8)
    ax.set_ylabel("distance on val (lower is better)")
    lo = min(m - e for m, e in zip(means, errs))
    hi = max(m + e for m, e in zip(means, errs))
    pad = (hi - lo) * 0.3 or abs(hi) * 0.1 or 0.01
    ax.set_ylim(max(0.0, lo - pad), hi + pad)
    ax.grid(True, axis="y", alpha=0.3)
    ax.set_title(f"{experiment.upper()} — {_subtitle(results)}", fontsize=10)
    return _save(fig, out)


def grid_montage(run_dir: Path, grids: dict[str, str], title: str, out: Path) -> Path | None:
    """Lay out existing reconstruction-grid PNGs (input | reconstruction per row) side by side with labels."""
    present = {label: run_dir / rel for label, rel in (grids or {}).items() if (run_dir / rel).is_file()}
    if not present:
        return None
    plt = _plt()
    import matplotlib.image as mpimg

    n = len(present)
    fig, axes = plt.subplots(1, n, figsize=(1.9 * n + 0.5, 4.6), squeeze=False)
    for ax, (label, path) in zip(axes.flat, present.items()):
        ax.imshow(mpimg.imread(str(path)))
        ax.set_title(label, fontsize=7)
        ax.axis("off")
    fig.suptitle(title + "\n(each panel: input | reconstruction, one sample per row)", fontsize=9)
    return _save(fig, out)


def render_all(results: dict, run_dir: Path) -> dict[str, str]:
    """Every figure the report embeds -> {name: path relative to run_dir}."""
    run_dir = Path(run_dir)
    figs: dict[str, str] = {}

    def put(name: str, path: Path | None) -> None:
        if path is not None:
            figs[name] = str(path.relative_to(run_dir))

    put("scaling_curve", scaling_curve(results, run_dir / "scaling_curve.png"))
    for exp in ("e2.1", "e2.2", "e2.3", "e2.4"):
        stem = exp.replace(".", "_")
        put(f"learning_curves_{stem}", learning_curves(results, exp, run_dir / FIG_DIR / f"learning_curves_{stem}.png"))
        if exp in ("e2.2", "e2.3"):
            put(f"ablation_{stem}", ablation_bars(results, exp, run_dir / FIG_DIR / f"ablation_{stem}.png"))
        grids = ((results.get("experiments") or {}).get(exp) or {}).get("grids") or {}
        put(f"reconstructions_{stem}", grid_montage(run_dir, grids, f"{exp.upper()} reconstructions — {_subtitle(results)}",
                                                    run_dir / FIG_DIR / f"reconstructions_{stem}.png"))
    return figs
