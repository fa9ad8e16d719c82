"""Run logging: ``metrics.jsonl`` always; TensorBoard / W&B only when asked for (imported lazily); a tqdm bar;
the learning-curve PNG.

``metrics.jsonl`` holds one JSON object per line with ``kind`` = ``train`` (step, loss, loss parts, lr, grad_norm,
samples_per_s, steps_per_s, peak_memory_mb) or ``val`` (step, val_loss, val parts).
``step`` is the number of optimizer steps done when the record was written (1 after the first update).
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from c2bridge._io import append_jsonl, atomic_path, atomic_write_text
from c2bridge.train.config import LogSection

METRICS_FILE = "metrics.jsonl"


def check_integrations(log: LogSection) -> None:
    """Fail before any step if an enabled integration's package is missing."""
    import importlib.util

    if log.tensorboard and importlib.util.find_spec("tensorboard") is None:  # torch.utils.tensorboard imports it
        raise ValueError("log.tensorboard=true needs the `tensorboard` package; install it with "
                         "`pip install 'c2bridge[tensorboard]'`")
    if log.wandb and importlib.util.find_spec("wandb") is None:
        raise ValueError("log.wandb=true needs the `wandb` package; install it with `pip install 'c2bridge[wandb]'`")


def read_metrics(run_dir: str | os.PathLike) -> list[dict]:
    path = Path(run_dir) / METRICS_FILE
    if not path.is_file():
        return []
    records = []
    with open(path, encoding="utf-8") as fh:
        for line in fh:
            line = line.strip()
            if line:
                try:
                    records.append(json.loads(line))
                except json.JSONDecodeError:  # a line cut by a kill: drop it
                    pass
    return records


def truncate_metrics(run_dir: str | os.PathLike, keep_through_step: int) -> None:
    """On resume: drop records written after the checkpoint we resume from (they will be written again)."""
    path = Path(run_dir) / METRICS_FILE
    if not path.exists():
        return
    kept = [r for r in read_metrics(run_dir) if int(r.get("step", 0)) <= keep_through_step]
    atomic_write_text(path, "".join(json.dumps(r, sort_keys=True) + "\n" for r in kept))


class RunLogger:
    def __init__(self, run_dir: Path, log: LogSection, total_steps: int, start_step: int, config: dict):
        self.run_dir = Path(run_dir)
        self.log = log
        self.path = self.run_dir / METRICS_FILE
        self._tb = None
        self._wandb = None
        self._bar = None
        if log.tensorboard:
            from torch.utils.tensorboard import SummaryWriter

            self._tb = SummaryWriter(log_dir=str(self.run_dir / "tensorboard"), purge_step=start_step + 1)
        if log.wandb:
            import wandb

            self._wandb = wandb.init(
                project=log.wandb_project, dir=str(self.run_dir), config=config, name=self.run_dir.name,
                resume="allow", id=_wandb_id(self.run_dir),
            )
        if log.progress_bar:
            from tqdm.auto import tqdm

            self._bar = tqdm(total=total_steps, initial=start_step, desc="train", unit="step", dynamic_ncols=True)

    def train(self, record: dict) -> None:
        if self._bar is not None:
            self._bar.update(1)
            self._bar.set_postfix(loss=f"{record['loss']:.4g}", lr=f"{record['lr']:.2e}", refresh=False)
        if record["step"] % self.log.every_steps:
            return
        self._write({"kind": "train", **record})

    def val(self, record: dict) -> None:
        self._write({"kind": "val", **record})
        if self._bar is not None:
            self._bar.write(f"step {record['step']}: val_loss {record['val_loss']:.5g}")

    def _write(self, record: dict) -> None:
        append_jsonl(self.path, record)
        step = record["step"]
        scalars = {f"{record['kind']}/{k}": v for k, v in record.items()
                   if k not in ("kind", "step") and isinstance(v, (int, float)) and not isinstance(v, bool)}
        if self._tb is not None:
            for k, v in scalars.items():
                self._tb.add_scalar(k, v, step)
        if self._wandb is not None:
            self._wandb.log(scalars, step=step)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
        if self._tb is not None:
            self._tb.close()
        if self._wandb is not None:
            self._wandb.finish()


def _wandb_id(run_dir: Path) -> str:
    from c2bridge._io import stable_hash

    return stable_hash(str(run_dir.resolve()))


def plot_learning_curve(run_dir: str | os.PathLike, title: str = "") -> Path | None:
    """learning_curve.png: train loss (raw + smoothed) and val loss vs step, lr on a second axis."""
    records = read_metrics(run_dir)
    train = [r for r in records if r.get("kind") == "train"]
    val = [r for r in records if r.get("kind") == "val"]
    if not train and not val:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4), dpi=110)
    if train:
        steps = [r["step"] for r in train]
        losses = [r["loss"] for r in train]
        ax.plot(steps, losses, color="tab:blue", alpha=0.3, lw=0.8, label="train loss")
        ax.plot(steps, _ema(losses), color="tab:blue", lw=1.5, label="train loss (EMA 0.9)")
    if val:
        ax.plot([r["step"] for r in val], [r["val_loss"] for r in val], "o-", color="tab:orange", label="val loss")
    finite = [v for r in train for v in [r["loss"]] if _finite(v)] + [r["val_loss"] for r in val if _finite(r["val_loss"])]
    if finite and min(finite) > 0 and max(finite) / min(finite) > 20:
        ax.set_yscale("log")
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("loss")
    ax.grid(alpha=0.3)
    if train:
        ax2 = ax.twinx()
        ax2.plot([r["step"] for r in train], [r["lr"] for r in train], color="tab:gray", ls="--", lw=0.8, label="lr")
        ax2.set_ylabel("learning rate")
        lines = ax.get_legend_handles_labels()[0] + ax2.get_legend_handles_labels()[0]
        labels = ax.get_legend_handles_labels()[1] + ax2.get_legend_handles_labels()[1]
        ax.legend(lines, labels, loc="upper right", fontsize=8)
    else:
        ax.legend(loc="upper right", fontsize=8)
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    out = Path(run_dir) / "learning_curve.png"
    with atomic_path(out) as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)
    return out


def _ema(values: list[float], beta: float = 0.9) -> list[float]:
    out, avg = [], None
    for v in values:
        if not _finite(v):
            out.append(float("nan"))
            continue
        avg = v if avg is None else beta * avg + (1 - beta) * v
        out.append(avg)
    return out


def _finite(v: Any) -> bool:
    import math

    return isinstance(v, (int, float)) and math.isfinite(v)
