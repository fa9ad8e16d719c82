"""Pivot 8.3 (plan §8.3): distillation 100M -> 10M -- a 10M query adapter trained with E2.1's best 100M adapter as
a frozen teacher (token regression, ``distill`` in the recipe, on top of the reconstruction objective), against a
10M trained from scratch with the same steps (E2.1's 10M trial, reused).

The teacher is E2.1's export ``checkpoints/adapter_100m_best`` (or ``teacher``: any adapter directory), loaded
read-only (frozen, never written). The report states the teacher's size and the extra training cost: the
teacher's own training plus the student's, against the student alone (the plan's "2x training time" con).
"""
from __future__ import annotations

from pathlib import Path

from c2bridge.experiments import _branches as br
from c2bridge.experiments.registry import ExperimentInfo

EXPERIMENT = ExperimentInfo(id="p8.3", order=13, title="Pivot 8.3: Distillation 100M -> 10M", requires=("e2.1",),
                            group=br.GROUP)


def teacher_path(cfg: dict) -> str:
    """The teacher directory as the trial names it: relative = inside RUN_DIR (E2.1's export by default)."""
    return str(cfg.get("teacher") or f"checkpoints/adapter_{cfg.get('teacher_budget', '100m')}_best")


def arms(cfg: dict, preset, upstream=None) -> list[br.Arm]:
    kind, budget = cfg.get("kind", "query"), str(cfg.get("budget", "10m"))
    teacher = teacher_path(cfg)
    if cfg.get("teacher") and Path(teacher).is_absolute():  # a user-named teacher: checked before anything runs
        from c2bridge.train.loop import check_teacher_dir

        try:
            check_teacher_dir(teacher)
        except (FileNotFoundError, ValueError) as exc:
            raise ValueError(f"p8.3.teacher: {exc}") from None
    patch = {"distill.teacher": teacher, "distill.weight": float(cfg.get("distill_weight", 1.0)),
             "distill.metric": cfg.get("distill_metric", "mse")}
    return [br.sweep("from scratch", kind, budget, cfg, note="same steps, no teacher"),
            br.sweep(f"distilled from {cfg.get('teacher_budget', '100m')}", kind, budget, cfg, patch=patch,
                     label=f"{kind}-{budget}-distilled", note=f"teacher {teacher}")]


def trials(cfg: dict, preset, upstream=None):
    """The two arms; without E2.1's summary the distilled trial rests on E2.1's export being there."""
    import dataclasses

    a = arms(cfg, preset, upstream)
    if cfg.get("teacher") or (upstream or {}).get("e2.1") is not None:
        return br.flat(a)
    distilled = {s.label for s in a[1].specs}
    note = "teacher = E2.1's best 100M export (E2.1 runs first)"
    return [dataclasses.replace(s, assumption=note) if s.label in distilled else s for s in br.flat(a)]


def protocol(cfg: dict, preset) -> dict:
    return br.protocol({**cfg, "baseline": "from scratch"}, preset, arms(cfg, preset),
                       **{"teacher": teacher_path(cfg), "distillation": f"{cfg.get('distill_metric', 'mse')} "
                                                                        f"x {cfg.get('distill_weight', 1.0)}"})


def run(ctx) -> dict:
    cfg = ctx.cfg
    teacher = teacher_path(cfg)
    where = Path(teacher) if Path(teacher).is_absolute() else ctx.run_dir / teacher
    from c2bridge.train.loop import check_teacher_dir

    check_teacher_dir(where)  # E2.1 ran first; its export must be there (one clear error otherwise)
    a = arms(cfg, ctx.preset, ctx.upstream())
    record = br.run_branch(ctx, a, "from scratch")
    trials = ctx.results["trials"]
    groups = {g["label"]: g for g in record["arms"]}

    def mean_of(label: str, section: str, name: str):
        vals = [((trials.get(k) or {}).get(section) or {}).get(name) for k in groups[label]["keys"]]
        vals = [float(v) for v in vals if isinstance(v, (int, float))]
        return sum(vals) / len(vals) if vals else None

    teacher_trial = (((ctx.results["experiments"].get("e2.1") or {}).get("checkpoints") or {})
                     .get(cfg.get("teacher_budget", "100m")) or {}).get("trial")
    teacher_time = ((trials.get(teacher_trial) or {}).get("train") or {}).get("time_s") if not cfg.get("teacher") else None
    student, scratch = mean_of(a[1].name, "train", "time_s"), mean_of(a[0].name, "train", "time_s")
    cost = (teacher_time or 0.0) + student if student is not None else None
    record["summary"]["details"] = {
        "teacher": teacher, "teacher_trial": teacher_trial,
        "teacher_params": mean_of(a[1].name, "params", "teacher"),
        "teacher_train_time_s": teacher_time, "student_train_time_s": student, "scratch_train_time_s": scratch,
        "extra_cost_ratio": cost / scratch if cost is not None and scratch else None,
    }
    return record


def headline(results: dict, exp: dict) -> str | None:
    return br.headline(exp, "Distillation")


def findings(results: dict, exp: dict, figs: dict) -> str:
    from c2bridge.report import markdown as md

    d = (exp.get("summary") or {}).get("details") or {}
    extra = [f"- Teacher: `{d.get('teacher')}`, {md.params(d.get('teacher_params'))} parameters (frozen, read-only).",
             f"- Training cost: teacher {md.num(d.get('teacher_train_time_s'))} s + student "
             f"{md.num(d.get('student_train_time_s'))} s against {md.num(d.get('scratch_train_time_s'))} s from "
             f"scratch: **{md.num(d.get('extra_cost_ratio'), 3)}x** the training time (the plan's \"2x training "
             "time\" con; the student also runs the teacher's forward every step).", ""]
    return br.findings_section(results, exp, figs, EXPERIMENT.id, extra)


def figures(results: dict, run_dir) -> dict[str, str]:
    return br.figures(results, run_dir, EXPERIMENT.id)
