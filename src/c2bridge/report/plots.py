"""Figures rendered from ``results.yaml`` alone: the helpers every experiment's ``figures()`` uses (learning curves,
ablation bars, a montage of the per-adapter reconstruction grids -- those PNGs are written by the trials; the montage
only lays them out) and ``render_all``, which asks each registered experiment for its figures. Every writer is
atomic and returns the path it wrote, or None when there was nothing to draw."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from c2bridge._io import atomic_path

FIG_DIR = "figures"


def pyplot():
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    return plt


def save_figure(fig, path: Path) -> Path:
    plt = pyplot()
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=100, bbox_inches="tight")
    plt.close(fig)
    return path


def mean_of(node: Any) -> float | None:
    return node.get("mean") if isinstance(node, dict) else None


def std_of(node: Any) -> float | None:
    return node.get("std") if isinstance(node, dict) else None


def subtitle(results: dict) -> str:
    preset = results.get("preset") or {}
    dist = (results.get("distance") or {}).get("name", "?")
    tag = " (miniature)" if preset.get("is_miniature") else ""
    return f"preset {preset.get('name')}{tag}, distance {dist}"




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
    plt = pyplot()
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
    fig.suptitle(f"{experiment.upper()} learning curves — {subtitle(results)}", fontsize=10)
    return save_figure(fig, out)


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
    """Mean distance per arm with its 95% interval as the error bar (the seed spread where an arm has no interval;
    E2.2 architectures, E2.3 grid arms)."""
    exp = (results.get("experiments") or {}).get(experiment) or {}
    arms = [a for a in exp.get("arms") or [] if mean_of((a.get("val") or {}).get("distance")) is not None]
    if not arms:
        return None
    plt = pyplot()
    labels = [a.get("label") for a in arms]
    means = [mean_of(a["val"]["distance"]) for a in arms]
    errs = [interval_err(a, m) for a, m in zip(arms, means)]  # [(below, above)]
    groups = list(dict.fromkeys(a.get("grid") or "" for a in arms))  # one colour per grid, in order
    colors = [f"C{groups.index(a.get('grid') or '') % 10}" for a in arms]
    fig, ax = plt.subplots(figsize=(max(5.0, 0.55 * len(arms) + 2), 3.8))
    ax.bar(range(len(arms)), means, yerr=[[e[0] for e in errs], [e[1] for e in errs]], capsize=3, color=colors,
           alpha=0.85)
    ax.set_xticks(range(len(arms)))
    ax.set_xticklabels(labels, rotation=35, ha="right", fontsize=8)
    ax.set_ylabel("distance on val (lower is better), 95% CI")
    lo = min(m - e[0] for m, e in zip(means, errs))
    hi = max(m + e[1] for m, e in zip(means, errs))
    pad = (hi - lo) * 0.3 or abs(hi) * 0.1 or 0.01
    ax.set_ylim(max(0.0, lo - pad), hi + pad)
    ax.grid(True, axis="y", alpha=0.3)
    ax.set_title(f"{experiment.upper()} — {subtitle(results)}", fontsize=10)
    return save_figure(fig, out)


def interval_err(arm: dict, value: float, split: str = "val", metric: str = "distance") -> tuple[float, float]:
    """(below, above) error-bar lengths from the arm's 95% interval; the seed spread when it has none."""
    iv = ((arm.get("intervals") or {}).get(split) or {}).get(metric) or {}
    if iv.get("low") is not None and iv.get("high") is not None:
        return max(0.0, value - iv["low"]), max(0.0, iv["high"] - value)
    e = std_of((arm.get(split) or {}).get(metric)) or 0.0
    return e, e


def grid_montage(run_dir: Path, grids: dict[str, str], title: str, out: Path) -> Path | None:
    """Lay out existing reconstruction-grid PNGs (input | reconstruction per row) side by side with labels."""
    present = {label: run_dir / rel for label, rel in (grids or {}).items() if (run_dir / rel).is_file()}
    if not present:
        return None
    plt = pyplot()
    import matplotlib.image as mpimg

    n = len(present)
    fig, axes = plt.subplots(1, n, figsize=(1.9 * n + 0.5, 4.6), squeeze=False)
    for ax, (label, path) in zip(axes.flat, present.items()):
        ax.imshow(mpimg.imread(str(path)))
        ax.set_title(label, fontsize=7)
        ax.axis("off")
    fig.suptitle(title + "\n(each panel: input | reconstruction, one sample per row)", fontsize=9)
    return save_figure(fig, out)


def experiment_figures(results: dict, run_dir: Path, experiment: str, ablation: bool = False) -> dict[str, str]:
    """The figures most experiments have: learning curves, ablation bars (``ablation``), the montage of their
    reconstruction grids -> {name: path relative to run_dir}."""
    run_dir = Path(run_dir)
    stem = experiment.replace(".", "_")
    figs: dict[str, str] = {}

    def put(name: str, path: Path | None) -> None:
        if path is not None:
            figs[name] = str(path.relative_to(run_dir))

    put(f"learning_curves_{stem}", learning_curves(results, experiment, run_dir / FIG_DIR / f"learning_curves_{stem}.png"))
    if ablation:
        put(f"ablation_{stem}", ablation_bars(results, experiment, run_dir / FIG_DIR / f"ablation_{stem}.png"))
    grids = ((results.get("experiments") or {}).get(experiment) or {}).get("grids") or {}
    put(f"reconstructions_{stem}", grid_montage(run_dir, grids, f"{experiment.upper()} reconstructions — {subtitle(results)}",
                                                run_dir / FIG_DIR / f"reconstructions_{stem}.png"))
    return figs


def render_all(results: dict, run_dir: Path) -> dict[str, str]:
    """Every figure the report embeds (each registered experiment draws its own) -> {name: path rel. to run_dir}."""
    from c2bridge.experiments.registry import experiments

    figs: dict[str, str] = {}
    for module in experiments().values():
        figs.update(module.figures(results, Path(run_dir)))
    return figs
