"""Run logging: ``metrics.jsonl`` always; TensorBoard / W&B only when asked for (imported lazily); a tqdm bar;
the learning-curve PNG. For a study: one tracked run per trial (``TrialTracker``: training curves, then the
sampled metrics and reconstruction grids), named and grouped by study / experiment / arm (``log.labels``), and a
study-level summary run (``log_study_summary``).

``metrics.jsonl`` holds one JSON object per line with ``kind`` = ``train`` (step, loss, loss parts, lr, grad_norm,
samples_per_s, steps_per_s, peak_memory_mb), ``val`` (step, val_loss, val parts) or ``eval`` (step,
``eval/<split>/<metric>``: the sampled metrics of a study trial).
``step`` is the number of optimizer steps done when the record was written (1 after the first update).
"""
from __future__ import annotations

import dataclasses
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


def tracker_names(run_dir: str | os.PathLike, log: LogSection) -> dict:
    """W&B / TensorBoard names of a run from ``log.labels``: name "experiment/arm" (else the run dir's name),
    group = the study, job type = the experiment, tags ``study:…``, ``experiment:…``, ``arm:…``."""
    labels = dict(getattr(log, "labels", None) or {})
    experiment, arm = labels.get("experiment"), labels.get("arm")
    name = labels.get("name") or "/".join(str(x) for x in (experiment, arm) if x) or Path(run_dir).name
    tags = [f"{k}:{labels[k]}"[:64] for k in ("study", "experiment", "arm") if labels.get(k)]  # W&B: <= 64 chars
    return {"name": str(name), "group": labels.get("group") or labels.get("study"),
            "job_type": str(experiment or "train"), "tags": tags}


def tensorboard_dir(run_dir: str | os.PathLike, log: LogSection) -> Path:
    """Where a run's TensorBoard events go: ``ROOT/tensorboard/<experiment>/<arm>`` for a study trial (labels
    with ``root``, the study dir: one ``tensorboard --logdir ROOT/tensorboard`` shows every trial by name), else
    ``RUN_DIR/tensorboard``."""
    labels = dict(getattr(log, "labels", None) or {})
    if labels.get("root") and labels.get("experiment") and labels.get("arm"):
        return Path(labels["root"]) / "tensorboard" / _safe(labels["experiment"]) / _safe(labels["arm"])
    return Path(run_dir) / "tensorboard"


def _safe(part: Any) -> str:
    return "".join(c if c.isalnum() or c in "._-=" else "_" for c in str(part)) or "_"


def open_wandb_run(run_dir: str | os.PathLike, log: LogSection, config: dict, files_dir=None):
    """The W&B run of ``run_dir`` -> (run, owned). A run already open with this run's id (opened by a
    ``TrialTracker``) is joined, and its config updated; else a new one is started (``resume="allow"``: a resumed
    training continues the same run). W&B's own files go to ``files_dir``/wandb (default: the study dir of a
    trial, ``labels.root``, so ``wandb sync STUDY/wandb/offline-run-*`` uploads a whole offline study; else
    ``run_dir``)."""
    import wandb

    run_id = _wandb_id(Path(run_dir))
    if wandb.run is not None and wandb.run.id == run_id:
        wandb.run.config.update(to_plain_config(config), allow_val_change=True)
        return wandb.run, False
    names = tracker_names(run_dir, log)
    files_dir = Path(files_dir or (getattr(log, "labels", None) or {}).get("root") or run_dir)
    files_dir.mkdir(parents=True, exist_ok=True)
    run = wandb.init(project=log.wandb_project, dir=str(files_dir), config=to_plain_config(config), id=run_id,
                     resume="allow", name=names["name"], group=names["group"], job_type=names["job_type"],
                     tags=names["tags"])
    return run, True


def to_plain_config(config: dict) -> dict:
    from c2bridge._io import to_plain

    return to_plain(config or {})


class RunLogger:
    def __init__(self, run_dir: Path, log: LogSection, total_steps: int, start_step: int, config: dict):
        self.run_dir = Path(run_dir)
        self.log = log
        self.path = self.run_dir / METRICS_FILE
        self._tb = None
        self._wandb = None
        self._owns_wandb = False
        self._bar = None
        if log.tensorboard:
            from torch.utils.tensorboard import SummaryWriter

            self._tb = SummaryWriter(log_dir=str(tensorboard_dir(self.run_dir, log)), purge_step=start_step + 1)
            if start_step == 0:
                import yaml

                self._tb.add_text("config", "```\n" + yaml.safe_dump(to_plain_config(config), sort_keys=False)
                                  + "```", 0)
                self._tb.add_text("labels", json.dumps(tracker_names(self.run_dir, log)), 0)
        if log.wandb:
            self._wandb, self._owns_wandb = open_wandb_run(self.run_dir, log, config)
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
        if self._wandb is not None and self._owns_wandb:
            self._wandb.finish()


class TrialTracker:
    """One tracked run per study trial, around training and evaluation::

        with TrialTracker(train_dir, log, config) as tracker:
            result = train(...)                    # its RunLogger joins the same W&B run
            tracker.log_evaluation(metrics, images, step=result["step"])

    The sampled metrics go to ``metrics.jsonl`` (``kind: eval``, always), W&B (``eval/<split>/<metric>`` + the
    run summary, the reconstruction grids as ``wandb.Image``) and TensorBoard (scalars + images), each when
    enabled in ``log``. ``log``: a ``LogSection`` or its dict.
    """

    def __init__(self, run_dir: str | os.PathLike, log: LogSection | dict, config: dict | None = None):
        self.run_dir = Path(run_dir)
        self.log = _log_section(log)
        self.config = config or {}
        self._wandb = None
        self._owns = False

    def __enter__(self) -> "TrialTracker":
        check_integrations(self.log)
        if self.log.wandb:  # W&B files outside run_dir: the trainer wants an empty run dir for a fresh run
            files_dir = (self.log.labels or {}).get("root") or self.run_dir.parent
            self._wandb, self._owns = open_wandb_run(self.run_dir, self.log, self.config, files_dir=files_dir)
        return self

    def log_evaluation(self, metrics: dict, images: dict | None = None, step: int | None = None,
                       extra: dict | None = None) -> None:
        """``metrics``: ``{split: {name: number}}``; ``images``: ``{split: PNG path}``; ``extra``: flat numbers
        (e.g. latency) logged under ``eval/``."""
        step = int(step or 0)
        scalars = {f"eval/{split}/{k}": float(v) for split, m in (metrics or {}).items() for k, v in (m or {}).items()
                   if _number(v)}
        scalars.update({f"eval/{k}": float(v) for k, v in (extra or {}).items() if _number(v)})
        append_jsonl(self.run_dir / METRICS_FILE, {"kind": "eval", "step": step, **scalars})
        images = {split: Path(p) for split, p in (images or {}).items() if p and Path(p).is_file()}
        if self.log.tensorboard:
            import numpy as np
            from PIL import Image
            from torch.utils.tensorboard import SummaryWriter

            with SummaryWriter(log_dir=str(tensorboard_dir(self.run_dir, self.log))) as tb:
                for k, v in scalars.items():
                    tb.add_scalar(k, v, step)
                for split, path in images.items():
                    with Image.open(path) as img:
                        tb.add_image(f"eval/{split}/reconstructions", np.asarray(img.convert("RGB")), step,
                                     dataformats="HWC")
        if self._wandb is not None:
            import wandb

            payload: dict[str, Any] = dict(scalars)
            payload.update({f"eval/{split}/reconstructions": wandb.Image(str(path), caption=f"{split}: input | "
                            "reconstruction") for split, path in images.items()})
            self._wandb.log(payload, step=step)
            self._wandb.summary.update(scalars)

    def __exit__(self, *exc) -> None:
        if self._wandb is not None and self._owns:
            self._wandb.finish(exit_code=1 if exc and exc[0] is not None else 0)
        self._wandb = None


def log_study_summary(study_dir: str | os.PathLike, results: dict, log: LogSection | dict,
                      figures: list | None = None) -> None:
    """A study-level run (W&B run "<study>/summary" in the study's group, TensorBoard ``STUDY/tensorboard/summary``)
    with every experiment's numeric summary, the verdicts and the figures, when W&B / TensorBoard are enabled."""
    log = _log_section(log)
    if not (log.wandb or log.tensorboard):
        return
    check_integrations(log)
    study_dir = Path(study_dir)
    study = study_dir.resolve().name
    scalars: dict[str, float] = {}
    verdicts: list[list] = []
    for name, exp in (results.get("experiments") or {}).items():
        for k, v in (exp.get("summary") or {}).items():
            if _number(v):
                scalars[f"{name}/{k}"] = float(v)
        for metric, v in (exp.get("verdicts") or {}).items():
            if isinstance(v, dict):
                verdicts.append([name, metric, v.get("value"), v.get("verdict"), v.get("severity")])
    gate = results.get("gate2") or {}
    figures = [Path(f) for f in (figures or []) if Path(f).is_file()]
    if log.tensorboard:
        import numpy as np
        from PIL import Image
        from torch.utils.tensorboard import SummaryWriter

        with SummaryWriter(log_dir=str(study_dir / "tensorboard" / "summary")) as tb:
            for k, v in scalars.items():
                tb.add_scalar(k, v, 0)
            rows = "\n".join(f"| {e} | {m} | {_fmt(v)} | {d} | {s or ''} |" for e, m, v, d, s in verdicts)
            tb.add_text("verdicts", "| experiment | metric | value | verdict | severity |\n|---|---|---|---|---|\n"
                        + rows, 0)
            tb.add_text("gate2", json.dumps(gate, default=str), 0)
            for path in figures:
                with Image.open(path) as img:
                    tb.add_image(f"figures/{path.stem}", np.asarray(img.convert("RGB")), 0, dataformats="HWC")
    if log.wandb:
        import wandb

        from c2bridge._io import stable_hash

        config = {"preset": results.get("preset"), "distance": results.get("distance"),
                  "study": results.get("study"), "models": results.get("models")}
        run = wandb.init(project=log.wandb_project, dir=str(study_dir), config=to_plain_config(config),
                         id=stable_hash(str(study_dir.resolve()) + "/summary"), resume="allow",
                         name=f"{study}/summary", group=study, job_type="summary", tags=[f"study:{study}"[:64]])
        try:
            payload: dict[str, Any] = dict(scalars)
            payload["verdicts"] = wandb.Table(columns=["experiment", "metric", "value", "verdict", "severity"],
                                              data=[[e, m, v if _number(v) else None, d, s]
                                                    for e, m, v, d, s in verdicts])
            payload.update({f"figures/{p.stem}": wandb.Image(str(p)) for p in figures})
            run.log(payload)  # no fixed step: a re-run of the study appends to its resumed summary run
            run.summary.update({**scalars, "gate2/c2": gate.get("c2"), "gate2/overall": gate.get("overall")})
        finally:
            run.finish()


def _log_section(log: LogSection | dict) -> LogSection:
    if isinstance(log, LogSection):
        return log
    known = {f.name for f in dataclasses.fields(LogSection)}
    return LogSection(**{k: v for k, v in dict(log or {}).items() if k in known})


def _number(v: Any) -> bool:
    import math

    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _fmt(v: Any) -> str:
    return f"{v:.4g}" if _number(v) else str(v)


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
