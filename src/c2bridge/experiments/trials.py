"""Trials: one training run (or one evaluation-only reference) keyed by the hash of its resolved config.

A trial dict is ``{"key", "run_dir", "config", "workspace"}``: ``config`` is everything that decides the result
(and nothing else: cache paths are relative to ``workspace`` and named by their content key), so two experiments
that need the same run share it, and a re-run finds it done. ``run_dir`` is ``workspace/trials/<key>``.

The study's record of a trial is ``run_dir/trial.json`` (written by the runner, atomically, when the result comes
back); a trial dir without it is unfinished and is resumed. Statuses: completed / diverged (outcomes: never
repeated), failed (recorded; retried only with ``--resume``), pruned (successive halving stopped it at a rung: done while
halving is on, continued from its checkpoint when asked for without); interrupted (SIGTERM) is not recorded: the
study stops and the next run resumes the trial from its checkpoint.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from c2bridge._io import atomic_write_json, read_json, stable_hash

TRIAL_RECORD = "trial.json"
TRIALS_DIR = "trials"
KEY_LENGTH = 16


TRIAL_KINDS = ("train", "reference", "evaluate")


@dataclass(frozen=True)
class TrialSpec:
    """One trial as an experiment describes it, before the engine resolves it (caches, models, the trainer's full
    config) into the config its key hashes. An experiment's ``trials(cfg, preset, upstream)`` returns a list of
    these: the runner trains them, ``c2bridge run --dry-run`` lists them and the planner costs them.

    - ``train``: train adapter ``adapter`` at ``budget`` with ``seed`` and the recipe ``patch`` (dotted TrainConfig
      keys) on the train cache ``train_cache`` (a cache name; None = the experiment's ``train_cache``).
    - ``reference``: an evaluation-only reference conditioning (``caption`` / ``zero`` / ``untrained``) on
      ``splits`` (split -> cache name; None = the experiment's ``eval.splits``).
    - ``evaluate``: the adapter trained by the trial labelled ``of`` (same experiment), on more ``splits``.

    ``eval_samples`` (``evaluate`` only): evaluation samples per split (None: the config's ``eval.n_samples``); the
    sequential design re-evaluates adapters on more samples this way, leaving their training trials alone.

    ``stage`` 2 trials are decided from this experiment's stage-1 results (E2.3's combination, the sequential
    design's extra seeds and samples, E2.1's pivot size): the listed spec is the documented assumption. ``assumption`` says what a spec assumes about upstream results it could not see.
    """

    label: str
    kind: str = "train"
    adapter: str | None = None
    budget: str | None = None
    seed: int = 0
    patch: Mapping[str, Any] = field(default_factory=dict)
    train_cache: str | None = None
    reference: str | None = None
    splits: Mapping[str, str] | None = None
    of: str | None = None
    eval_samples: int | None = None
    stage: int = 1
    assumption: str | None = None
    group: str | None = None  # successive halving (``halving:``): the group of arms this trial competes in
    arm: str | None = None  # its arm in the group (the seeds of one arm are decided together); None = label
    protected: bool = False  # the group's baseline: ranks, but always trains to full length

    @property
    def competitor(self) -> "Competitor | None":
        return Competitor(self.group, self.arm or self.label, self.protected) if self.group else None

    def __post_init__(self) -> None:
        if self.kind not in TRIAL_KINDS:
            raise ValueError(f"trial {self.label!r}: kind {self.kind!r}; expected one of {list(TRIAL_KINDS)}")
        if self.kind == "evaluate" and not self.of:
            raise ValueError(f"trial {self.label!r}: an evaluate trial names the trial it evaluates (of=LABEL)")

    @property
    def decided_at_run_time(self) -> bool:
        """True when what the run trains depends on results this list could not see."""
        return self.stage > 1 or self.assumption is not None


@dataclass(frozen=True)
class Competitor:
    """A trial's place in successive halving: its group, its arm, whether it is the protected baseline."""

    group: str
    arm: str
    protected: bool = False


SECTIONS = ("config", "params", "train", "metrics", "perf", "curve", "artifacts")  # mappings (None on disk -> {})


@dataclass
class TrialRecord:
    """A trial's record as the experiments read it (``results.yaml: trials.<key>`` plus its key), typed: every
    section is a mapping (never None), metric lookups return a finite float or None. ``extra`` keeps every other
    field (labels, run_dir, wall_s, ...) so ``to_dict`` gives back the on-disk shape."""

    key: str | None = None
    status: str = "failed"
    config: dict = field(default_factory=dict)
    params: dict = field(default_factory=dict)  # trainable, active, budget
    train: dict = field(default_factory=dict)  # time_s, steps, steps_to_plateau, loss_variance, ...
    metrics: dict = field(default_factory=dict)  # split -> {distance, spatial_iou, ssim, psnr, n, ...}
    perf: dict = field(default_factory=dict)  # latency_ms, forward_peak_memory_mb, weights_mb
    curve: dict = field(default_factory=dict)
    artifacts: dict = field(default_factory=dict)  # adapter: dir, grids: {split: png} (relative to RUN_DIR)
    error: str | None = None
    reason: str | None = None
    extra: dict = field(default_factory=dict)

    @classmethod
    def from_dict(cls, data: "Mapping[str, Any] | TrialRecord | None") -> "TrialRecord":
        if isinstance(data, TrialRecord):
            return data
        data = dict(data or {})
        sections = {name: dict(data.pop(name, None) or {}) for name in SECTIONS}
        return cls(key=data.pop("key", None), status=str(data.pop("status", "failed")), error=data.pop("error", None),
                   reason=data.pop("reason", None), extra=data, **sections)

    def to_dict(self) -> dict:
        out: dict[str, Any] = {"key": self.key, "status": self.status, **self.extra}
        out.update({name: getattr(self, name) for name in SECTIONS if getattr(self, name)})
        out.update({k: v for k, v in (("error", self.error), ("reason", self.reason)) if v is not None})
        return out

    @property
    def completed(self) -> bool:
        return self.status == "completed"

    @property
    def pruned_at_step(self) -> int | None:
        """The rung at which successive halving stopped this trial (status ``pruned``), else None."""
        step = self.extra.get("pruned_at_step")
        return int(step) if self.status == "pruned" and step is not None else None

    @property
    def seed(self) -> int | None:
        return (self.config.get("train") or {}).get("seed")

    @property
    def adapter(self) -> str | None:
        """The trained adapter's directory (relative to RUN_DIR), if the trial has one."""
        return self.artifacts.get("adapter")

    def grid(self, split: str) -> str | None:
        """The reconstruction grid of ``split`` (relative to RUN_DIR), if the trial wrote one."""
        return (self.artifacts.get("grids") or {}).get(split)

    def metric(self, name: str, split: str = "val") -> float | None:
        return _finite((self.metrics.get(split) or {}).get(name))

    def value(self, section: str, name: str) -> float | None:
        """A number from ``params`` / ``train`` / ``perf`` (None when missing or not finite)."""
        return _finite(getattr(self, section).get(name))

    def with_evaluation(self, evaluation: "TrialRecord") -> "TrialRecord":
        """This training trial plus an evaluation-only trial of its adapter: the splits and grids added, or the
        evaluation's error kept (``eval_error``) when it did not complete."""
        import dataclasses

        if not evaluation.completed:
            return dataclasses.replace(self, extra={**self.extra, "eval_error": evaluation.error})
        grids = {**(self.artifacts.get("grids") or {}), **(evaluation.artifacts.get("grids") or {})}
        return dataclasses.replace(self, metrics={**self.metrics, **evaluation.metrics},
                                   artifacts={**self.artifacts, "grids": grids})


def _finite(x: Any) -> float | None:
    import math

    ok = isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)
    return float(x) if ok else None


def trial_key(config: dict) -> str:
    """Hash of the resolved config (key order does not matter). The recipe's ``log`` section (trackers, run names)
    cannot change a number, so it is left out: turning W&B or TensorBoard on reuses every finished trial. The CPU
    thread counts (``train.threads``, ``eval.threads``: the executor's choice unless the config names one) stay in:
    a different split of the work over cores changes the last digits (measured: weights 1e-8 apart after 3 tiny
    steps on 1 vs 2 threads), so a pool run (1 thread per worker) and a local run (every core) are different
    trials unless the local one is given ``--executor-opt threads=1``."""
    train = config.get("train")
    if isinstance(train, dict) and "log" in train:
        config = {**config, "train": {k: v for k, v in train.items() if k != "log"}}
    return stable_hash(config, length=KEY_LENGTH)


def make_trial(config: dict, workspace: str | Path) -> dict:
    key = trial_key(config)
    workspace = Path(workspace)
    return {"key": key, "run_dir": str(workspace / TRIALS_DIR / key), "config": config, "workspace": str(workspace)}


def read_record(trial: dict) -> dict | None:
    """The stored result of a trial, or None if it never finished (or its record is unreadable)."""
    path = Path(trial["run_dir"]) / TRIAL_RECORD
    if not path.is_file():
        return None
    try:
        record = read_json(path)
    except ValueError:  # a truncated record cannot happen with atomic writes, but never trust it blindly
        return None
    return record if isinstance(record, dict) and record.get("key") == trial["key"] else None


def write_record(trial: dict, result: dict) -> None:
    atomic_write_json(Path(trial["run_dir"]) / TRIAL_RECORD, result)


def needs_run(record: dict | None, retry_failed: bool, halving: bool = False) -> bool:
    """Whether a trial with this stored record runs (again): never for an outcome (completed / diverged); a failed
    one with ``retry_failed``; a ``pruned`` one (successive halving stopped it at a rung) only when it is asked for
    without halving -- it then continues from its rung checkpoint to full length."""
    if record is None:
        return True
    status = record.get("status")
    if status in ("completed", "diverged"):
        return False
    if status == "pruned":
        return not halving
    return status != "failed" or retry_failed


class StudyInterrupted(Exception):
    """A trial was stopped by SIGTERM (the trainer checkpointed it): stop the study; a re-run resumes it."""


def normalize_result(result: dict, trial: dict) -> dict:
    """Whatever a trial function or executor returned -> the stored record (status checked, key set).

    ``interrupted`` (SIGTERM: the trainer checkpointed and stopped) and ``paused`` (at a halving rung, checkpointed)
    are passed through: never stored as outcomes.
    """
    out: dict[str, Any] = dict(result or {})
    out["key"] = trial["key"]
    status = out.get("status")
    if status not in ("completed", "diverged", "failed", "interrupted", "paused"):
        out["status"] = "failed"
        out.setdefault("error", f"trial function returned status {status!r}; expected completed/diverged/failed")
    return out
