"""Successive halving for a sweep's arms: the experiment-config key ``halving: {enabled, eta, min_fraction}``.

An experiment marks which of its trials compete (``TrialSpec.group``: the arms of one grid or sweep; ``arm``: the
arm a seed belongs to; ``protected``: the group's baseline, always trained to full length). With halving on, each
competing trial first trains to the group's first rung and pauses there (a checkpoint: the trainer's own resume);
when every arm of the group has reached the rung, the arms are ranked by their validation loss at it (mean over
their seeds) and only the best ``max(1, n // eta)`` continue, to the next rung or to the end. Rungs lie at
``min_fraction * eta**k`` of the trial's steps (k = 0, 1, ... while below 1), each moved down to a validation step
(a multiple of ``eval.every_steps``: the value at a rung is a validation loss the uninterrupted run also logs, so a
trial continued past a rung is bit-identical to one that never paused).

The decisions are the policy of an existing engine, fed deterministically (every arm of a group at the rung, in
config order: same seed -> same pruned set): Optuna's ``SuccessiveHalvingPruner`` on the local and pool executors,
Ray Tune's ``ASHAScheduler`` on the Ray executor. An arm is pruned only where the policy says so and it is neither
protected nor already trained to full length (a finished trial costs nothing more: it still ranks).

A pruned trial keeps its record (``status: pruned``, ``pruned_at_step``, its learning curve to the rung) and its
checkpoint: it is excluded from the experiment's picks and listed in its FINDINGS section; a later run with halving
off (or another experiment that needs the same trial) continues it from the rung to full length.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

KEY = "halving"


@dataclass(frozen=True)
class Halving:
    enabled: bool = False
    eta: int = 3  # keep the top 1/eta of a group at each rung
    min_fraction: float = 0.25  # the first rung, as a fraction of the trial's steps

    @classmethod
    def from_config(cls, cfg: Mapping[str, Any] | None, where: str = "") -> "Halving":
        """``cfg["halving"]`` -> Halving; one ValueError naming every bad field."""
        raw = (cfg or {}).get(KEY)
        if raw is None:
            return cls()
        name = f"{where}.{KEY}" if where else KEY
        if not isinstance(raw, Mapping):
            raise ValueError(f"{name}={raw!r}: expected a mapping {{enabled: true|false, eta: 3, min_fraction: 0.25}}")
        unknown = sorted(set(raw) - {"enabled", "eta", "min_fraction"})
        errors = [f"{name}.{k}: unknown key (expected enabled, eta, min_fraction)" for k in unknown]
        enabled, eta, frac = raw.get("enabled", False), raw.get("eta", 3), raw.get("min_fraction", 0.25)
        if not isinstance(enabled, bool):
            errors.append(f"{name}.enabled={enabled!r}: expected true or false")
        if isinstance(eta, bool) or not isinstance(eta, int) or eta < 2:
            errors.append(f"{name}.eta={eta!r}: expected an integer >= 2 (keep the top 1/eta at each rung)")
        if isinstance(frac, bool) or not isinstance(frac, (int, float)) or not 0 < frac < 1:
            errors.append(f"{name}.min_fraction={frac!r}: expected a number in (0, 1) (the first rung's share of "
                          "the steps)")
        if errors:
            raise ValueError("; ".join(errors))
        return cls(enabled=enabled, eta=int(eta), min_fraction=float(frac))

    def to_dict(self) -> dict:
        return {"enabled": self.enabled, "eta": self.eta, "min_fraction": self.min_fraction}


def rungs(max_steps: int, every_steps: int | None, halving: Halving) -> list[int]:
    """The pause steps of a trial of ``max_steps`` validated every ``every_steps``: ``min_fraction * eta**k`` of
    the steps, each moved down to a validation step (at least the first one), below ``max_steps``, no repeats."""
    if not every_steps or every_steps < 1:
        return []
    out: list[int] = []
    k = 0
    while True:
        at = halving.min_fraction * halving.eta ** k * max_steps
        if at >= max_steps:
            return out
        step = max(every_steps, int(math.floor(round(at, 9) / every_steps)) * every_steps)
        if step < max_steps and step not in out:
            out.append(step)
        k += 1


def rung_value(curve: Mapping[str, Any] | None, step: int) -> float | None:
    """The validation loss logged at ``step`` (a trial's ``curve``: ``val_step`` / ``val_loss``), else None."""
    curve = curve or {}
    for s, v in zip(curve.get("val_step") or [], curve.get("val_loss") or []):
        if int(s) == int(step) and isinstance(v, (int, float)) and math.isfinite(v):
            return float(v)
    return None


# ------------------------------------------------------------------------------------------------------ policies
class OptunaHalving:
    """Optuna's ``SuccessiveHalvingPruner`` as the rung decision. Optuna decides asynchronously (a trial is
    compared with those that reached the rung before it); to decide with the whole group at the rung, each arm is
    asked in a fresh in-memory study after every other arm of the group reported, in config order."""

    name = "optuna SuccessiveHalvingPruner"

    def __init__(self, eta: int):
        try:
            import optuna
        except ImportError:
            raise ValueError("halving.enabled=true uses Optuna's SuccessiveHalvingPruner: pip install optuna "
                             "(or 'c2bridge[halving]')") from None
        optuna.logging.set_verbosity(optuna.logging.WARNING)
        self.optuna, self.eta = optuna, int(eta)

    def promoted(self, values: Sequence[tuple[str, float]], step: int) -> list[str]:
        optuna = self.optuna
        keep = []
        for i, (arm, value) in enumerate(values):
            pruner = optuna.pruners.SuccessiveHalvingPruner(min_resource=int(step), reduction_factor=self.eta,
                                                            min_early_stopping_rate=0, bootstrap_count=0)
            study = optuna.create_study(direction="minimize", pruner=pruner,
                                        sampler=optuna.samplers.RandomSampler(seed=0))
            for j, (_, other) in enumerate(values):
                if j != i:
                    t = study.ask()
                    t.report(other, int(step))
                    t.should_prune()  # records the rung value it is compared against
            t = study.ask()
            t.report(value, int(step))
            if not t.should_prune():
                keep.append(arm)
        return keep


class AshaHalving:
    """Ray Tune's ``ASHAScheduler`` as the rung decision (the Ray executor), fed the same way: each arm decided
    by a scheduler that saw every other arm of the group at the rung first."""

    name = "Ray Tune ASHAScheduler"

    def __init__(self, eta: int):
        try:
            from ray.tune.schedulers import ASHAScheduler
        except ImportError as exc:
            raise ValueError(f"halving on the ray executor uses Ray Tune's ASHAScheduler, which cannot be imported "
                             f"({exc}): pip install 'ray[tune]'") from None
        self.scheduler_cls, self.eta = ASHAScheduler, int(eta)

    def promoted(self, values: Sequence[tuple[str, float]], step: int) -> list[str]:
        keep = []
        for i, (arm, value) in enumerate(values):
            sched = self.scheduler_cls(time_attr="step", metric="val_loss", mode="min", max_t=int(step) + 1,
                                       grace_period=int(step), reduction_factor=self.eta, brackets=1)
            order = [(j, v) for j, (_, v) in enumerate(values) if j != i] + [(i, value)]
            action = None
            for j, v in order:
                trial = _TuneTrial(f"arm{j}")
                sched.on_trial_add(None, trial)
                action = sched.on_trial_result(None, trial, {"step": int(step), "val_loss": float(v)})
            if str(action).upper().endswith("CONTINUE"):
                keep.append(arm)
        return keep


@dataclass
class _TuneTrial:  # what the scheduler reads of a trial: its id
    trial_id: str


POLICIES = {"optuna": OptunaHalving, "asha": AshaHalving}


def policy_for(executor_name: str, eta: int):
    """Ray executor -> Ray Tune's ASHA; every other executor -> Optuna's successive halving."""
    return (AshaHalving if executor_name == "ray" else OptunaHalving)(eta)


def decide(policy, arms: Sequence[tuple[str, float | None]], step: int, protected: set[str] = frozenset()) -> \
        tuple[list[str], list[str]]:
    """(kept, pruned) arm names at one rung. ``arms``: (arm, value) in config order; an arm without a finite value
    (failed, diverged) is out of the competition and not "pruned" (it has its own outcome)."""
    ranked = [(a, v) for a, v in arms if v is not None and math.isfinite(v)]
    keep = set(policy.promoted(ranked, step)) if ranked else set()
    kept = [a for a, _ in ranked if a in keep or a in protected]
    pruned = [a for a, _ in ranked if a not in keep and a not in protected]
    return kept, pruned


# ------------------------------------------------------------------------------------------------------ planning
def rung_steps(max_steps: int, eval_every: int | None, eta: int, min_fraction: float) -> list[int]:
    """``rungs`` for plain numbers (the planner's entry point)."""
    return rungs(int(max_steps), eval_every, Halving(True, int(eta), float(min_fraction)))


def plan_groups(cfg: Mapping[str, Any], specs: Sequence[Any], where: str = "") -> list[dict]:
    """The halving groups of an experiment's trial list (what the runner will compete), for the planner:
    ``[{group, arms: {arm: [labels]}, protected: {arm, ...}, eta, min_fraction}]``; [] with halving off. A group
    of fewer than 2 arms trains to full length. (Which trials are already trained -- never pruned -- is known at
    run time only.)"""
    h = Halving.from_config(cfg, where)
    if not h.enabled:
        return []
    groups: dict[str, dict] = {}
    for spec in specs:
        c = getattr(spec, "competitor", None)
        if c is None or getattr(spec, "kind", "train") != "train":
            continue
        g = groups.setdefault(c.group, {"group": c.group, "arms": {}, "protected": set(), "eta": h.eta,
                                        "min_fraction": h.min_fraction})
        g["arms"].setdefault(c.arm, []).append(spec.label)
        if c.protected:
            g["protected"].add(c.arm)
    return [g for g in groups.values() if len(g["arms"]) >= 2]
