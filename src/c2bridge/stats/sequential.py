"""The sequential design's next round: which arms get which new seeds / how many evaluation samples, or why to stop.

A pure function of the current verdicts, the arms that decide them and the caps; the runner trains / evaluates
what it returns, recomputes the intervals and verdicts with every finished trial, and asks again.

Per undetermined deciding verdict, from its :class:`~c2bridge.stats.verdicts.Settle` projection:

- the cheaper of "more evaluation samples" (every trained adapter re-evaluated: ``n_trials × extra samples ×
  cost.eval_sample``) and "more seeds" (``arms × extra seeds × (cost.train_trial + samples × cost.eval_sample)``)
  among those that settle it within the caps; if neither alone does but both at their caps would, both;
- growth per round is limited (``max_growth``: at most ×2 seeds / samples by default), because the projection
  rests on variance components estimated from few seeds and is re-checked after every round;
- new seeds are the next unused integers, the same for every arm of the round (paired seeds stay paired), and
  all arms of a verdict get the same number of evaluation samples (paired samples stay paired).

Stop reasons: ``cleared the line`` (every deciding verdict is certain), ``cap reached`` (the remaining ones are at
their caps), ``cannot settle within cap`` (projected not to settle even at the caps; set ``exhaust_caps`` to run
to the caps anyway), ``not deciding`` (no deciding verdict given), ``max rounds``, ``no value to decide on``
(a deciding verdict is missing: its arms failed).
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any, Mapping, Sequence

from c2bridge.stats.verdicts import ConfidentVerdict

CLEARED, CAP_REACHED, UNSETTLEABLE, NOT_DECIDING, MAX_ROUNDS, MISSING = (
    "cleared the line", "cap reached", "cannot settle within cap", "not deciding", "max rounds",
    "no value to decide on")


@dataclass(frozen=True)
class ArmState:
    """An arm as it stands: the seeds trained (completed) and the evaluation samples per trial."""

    seeds: tuple[int, ...]
    n_eval_samples: int


@dataclass(frozen=True)
class Costs:
    """Relative cost of training one trial and of evaluating one sample of one trial (e.g. measured seconds)."""

    train_trial: float = 1.0
    eval_sample: float = 0.01


@dataclass(frozen=True)
class RoundPlan:
    stop: bool
    reason: str | None                                     # why it stops (None when it goes on)
    add_seeds: dict[str, tuple[int, ...]] = field(default_factory=dict)   # arm -> new seeds to train
    eval_samples: dict[str, int] = field(default_factory=dict)            # arm -> evaluation samples per trial
    notes: dict[str, str] = field(default_factory=dict)                   # verdict -> what was decided and why

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["add_seeds"] = {k: list(v) for k, v in self.add_seeds.items()}
        return d


def _grow(now: int, needed: int, cap: int, max_growth: float) -> int:
    return max(now + 1, min(needed, cap, int(math.ceil(now * max_growth))))


def next_round(
    verdicts: Mapping[str, ConfidentVerdict],
    deciding: Mapping[str, Sequence[str]],
    arms: Mapping[str, ArmState],
    *,
    max_seeds: int,
    max_eval_samples: int,
    costs: Costs = Costs(),
    max_growth: float = 2.0,
    exhaust_caps: bool = False,
    rounds_done: int = 0,
    max_rounds: int | None = None,
) -> RoundPlan:
    """The next round's additions for the undetermined verdicts among ``deciding`` (verdict name -> the arms that
    decide it), or a stop reason. ``verdicts`` should be computed with the same caps (their ``settle``)."""
    if max_seeds < 1 or max_eval_samples < 1:
        raise ValueError(f"caps must be >= 1; got max_seeds={max_seeds}, max_eval_samples={max_eval_samples}")
    if max_growth <= 1:
        raise ValueError(f"max_growth must be > 1; got {max_growth}")
    names = [n for n in deciding if n in verdicts]
    if not names:
        return RoundPlan(True, NOT_DECIDING)
    for n in names:
        missing = [a for a in deciding[n] if a not in arms]
        if missing:
            raise ValueError(f"verdict {n!r} is decided by arm(s) {missing} that are not in arms {sorted(arms)}")
    pending = [n for n in names if not verdicts[n].certain and verdicts[n].verdict != "missing"]
    if not pending:
        missing = any(verdicts[n].verdict == "missing" for n in names)
        return RoundPlan(True, MISSING if missing else CLEARED, notes={n: verdicts[n].text for n in names})
    if max_rounds is not None and rounds_done >= max_rounds:
        return RoundPlan(True, MAX_ROUNDS, notes={n: verdicts[n].text for n in pending})

    want_seeds: dict[str, int] = {}     # arm -> seeds per arm after this round
    want_samples: dict[str, int] = {}   # arm -> evaluation samples after this round
    notes, stops = {}, []
    for n in pending:
        arm_names = list(deciding[n])
        s_now = min(len(arms[a].seeds) for a in arm_names)
        m_now = max(arms[a].n_eval_samples for a in arm_names)
        at_cap = s_now >= max_seeds and m_now >= max_eval_samples
        st = verdicts[n].settle
        if at_cap:
            notes[n] = f"at the caps ({max_seeds} seeds, {max_eval_samples} samples): {verdicts[n].text}"
            stops.append(CAP_REACHED)
            continue
        options = []  # (cost, seeds after, samples after)
        if st is not None and st.samples_needed is not None and m_now < max_eval_samples:
            m = _grow(m_now, st.samples_needed, max_eval_samples, max_growth)
            options.append(((m - m_now) * s_now * len(arm_names) * costs.eval_sample, s_now, m))
        if st is not None and st.seeds_needed is not None and s_now < max_seeds:
            s = _grow(s_now, st.seeds_needed, max_seeds, max_growth)
            options.append(((s - s_now) * len(arm_names) * (costs.train_trial + m_now * costs.eval_sample), s, m_now))
        if not options and (exhaust_caps or (st is not None and st.both_at_cap)):
            s = _grow(s_now, max_seeds, max_seeds, max_growth) if s_now < max_seeds else s_now
            m = _grow(m_now, max_eval_samples, max_eval_samples, max_growth) if m_now < max_eval_samples else m_now
            options.append((0.0, s, m))
        if not options:
            notes[n] = f"projected not to settle within the caps: {verdicts[n].text}"
            stops.append(UNSETTLEABLE)
            continue
        _, s, m = min(options)
        for a in arm_names:
            want_seeds[a] = max(want_seeds.get(a, 0), s)
            want_samples[a] = max(want_samples.get(a, 0), m)
        notes[n] = f"-> {s} seeds per arm, {m} evaluation samples ({', '.join(arm_names)}): {verdicts[n].text}"

    add_seeds, eval_samples = {}, {}
    next_seed = max((s for a in arms.values() for s in a.seeds), default=-1) + 1
    new_total = max((want_seeds[a] - len(arms[a].seeds) for a in want_seeds), default=0)
    fresh = tuple(range(next_seed, next_seed + max(new_total, 0)))
    for a, s in want_seeds.items():
        k = s - len(arms[a].seeds)
        if k > 0:
            add_seeds[a] = fresh[:k]
    for a, m in want_samples.items():
        if m > arms[a].n_eval_samples:
            eval_samples[a] = m
    if not add_seeds and not eval_samples:
        return RoundPlan(True, UNSETTLEABLE if UNSETTLEABLE in stops else CAP_REACHED, notes=notes)
    return RoundPlan(False, None, add_seeds, eval_samples, notes)


__all__ = ["ArmState", "CAP_REACHED", "CLEARED", "Costs", "MAX_ROUNDS", "MISSING", "NOT_DECIDING", "RoundPlan",
           "UNSETTLEABLE", "next_round"]
