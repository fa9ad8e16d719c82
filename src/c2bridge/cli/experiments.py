"""`c2bridge run e2.1|e2.2|e2.3|e2.4|all ...` and `c2bridge report RUN_DIR` (argparse only at top level)."""
from __future__ import annotations

import argparse



def register(subparsers) -> None:
    p = subparsers.add_parser(
        "run",
        help="run experiments E2.1-E2.4 (all), the plan's branches (p8.1-p8.4, q1-q4: branches) and write "
             "results.yaml, FINDINGS.md and the figures",
        description="Run the C2 experiments. Each trial is keyed by the hash of its resolved config, so re-running "
        "skips finished trials and resumes unfinished ones; failed/diverged trials are recorded and the rest go on. "
        "key=value pairs override the experiment YAMLs (configs/experiments/<exp>.<preset>.yaml): e.g. "
        "recipe.optim.max_steps=100 (every experiment) or e2_1.seeds=[0,1] (one experiment).",
    )
    p.add_argument("experiment", nargs="+", metavar="EXPERIMENT",
                   help="one or more experiment ids (e2.1, e2.2, ..., p8.2, q4; the registered experiments) or a "
                        "group: all (E2.1-E2.4), branches (pivots 8.1-8.4, open questions 1-4)")
    p.add_argument("--preset", default="mini", help="full | mini | tiny (default: mini)")
    p.add_argument("--out", metavar="RUN_DIR", help="study directory (default: runs/<preset>)")
    p.add_argument("--resume", action="store_true",
                   help="also retry trials recorded as failed (resuming from their last checkpoint); finished "
                   "trials are always skipped and interrupted ones always resumed")
    p.add_argument("--executor", default="local",
                   help="where trials run: local (serial, default) | pool (one process per CPU core, or per GPU) | "
                   "ray | modal")
    p.add_argument("--executor-opt", action="append", default=[], metavar="KEY=VALUE",
                   help="executor option, repeatable: pool workers=N gpus=0,1; ray address=auto num_gpus=1 "
                   "max_retries=3 storage=/mnt/shared")
    p.add_argument("--schedule", default="graph", choices=("graph", "staged"),
                   help="graph (default): with the pool, ray or modal executor a trial starts as soon as what it "
                   "needs exists (caches, the upstream results it reads), caches are extracted as executor tasks "
                   "alongside trials, all experiments at once; staged: one experiment after the other, caches "
                   "extracted in this process (the same results; the local executor always runs staged)")
    p.add_argument("--no-report", action="store_true", help="skip FINDINGS.md and the figures (c2bridge report later)")
    p.add_argument("--dry-run", action="store_true",
                   help="list every trial the run would train (label, key, done already in --out, the planner's "
                   "GPU-hours) and exit; nothing is run or written")
    p.add_argument("--gpu", default="a100-80", help="GPU the --dry-run costs are planned for (default: a100-80)")
    p.set_defaults(func=_run)
    p.__class__ = _IntermixedParser  # `run e2.1 --out DIR key=value`: positionals after options too

    r = subparsers.add_parser(
        "report",
        help="re-render FINDINGS.md and the figures of a study from its results.yaml alone",
        description="Re-render RUN_DIR/FINDINGS.md and the figures from RUN_DIR/results.yaml (nothing is re-run).",
    )
    r.add_argument("run_dir", metavar="RUN_DIR")
    r.set_defaults(func=_report)


class _IntermixedParser(argparse.ArgumentParser):
    """Accepts positionals (experiments, key=value overrides) before and after options."""

    _inside = False

    def parse_known_args(self, args=None, namespace=None):
        if self._inside:  # parse_known_intermixed_args calls back into parse_known_args
            return super().parse_known_args(args, namespace)
        self._inside = True
        try:
            return self.parse_known_intermixed_args(args, namespace)
        finally:
            self._inside = False


def _split_args(args: argparse.Namespace) -> tuple[list[str], list[str]]:
    """argparse gives experiments and key=value overrides in one list: separate them."""
    experiments, overrides = [], []
    for item in args.experiment:
        (overrides if "=" in item else experiments).append(item)
    if not experiments:
        from c2bridge.experiments.registry import ids

        raise ValueError(f"name an experiment: one or more of {', '.join(ids())} or all")
    return experiments, overrides


def _run(args: argparse.Namespace) -> int:
    import os
    import shlex
    import sys
    import time
    from pathlib import Path

    # before torch loads: idle OpenMP threads sleep instead of spinning (spinning threads of one process slowed the
    # others many times over on a shared CPU); a user's own setting wins
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

    from c2bridge.experiments.registry import normalize_names
    from c2bridge.experiments.runner import Study, format_dry_run
    from c2bridge.experiments.trials import StudyInterrupted

    experiments, overrides = _split_args(args)
    names = normalize_names(experiments)
    run_dir = Path(args.out or f"runs/{args.preset}")
    from c2bridge.experiments.executors import parse_executor_options

    if args.dry_run:  # the executor decides the trials' thread count, part of their keys
        study = Study(run_dir, preset=args.preset, overrides=overrides, dry=True, log=lambda line: None,
                      executor=args.executor, executor_options=parse_executor_options(args.executor_opt))
        print(format_dry_run(study.dry_run(names, gpu=args.gpu), run_dir))
        return 0
    command = "c2bridge " + " ".join(shlex.quote(a) for a in sys.argv[1:]) if sys.argv[1:] else None
    t0 = time.perf_counter()
    from c2bridge import _signals
    from c2bridge._lock import DirectoryLock

    executor_options = parse_executor_options(args.executor_opt)
    with DirectoryLock(run_dir, "c2bridge run"):  # one study per directory, taken before anything is written
        study = Study(run_dir, preset=args.preset, overrides=overrides, executor=args.executor,
                      executor_options=executor_options, retry_failed=args.resume, command=command,
                      schedule=args.schedule,
                      render=not args.no_report, log=lambda line: print(line, flush=True))
        try:
            results = study.run(names)
        except (StudyInterrupted, _signals.Terminated) as exc:  # one line; the trials checkpointed themselves
            detail = str(exc) if isinstance(exc, StudyInterrupted) else \
                "the running trials were checkpointed; run the same command again to resume"
            print(f"c2bridge run: stopped by {_signals.signal_name(_signals.noted() or 15)}: {detail}",
                  file=sys.stderr)
            return _signals.exit_code()
    wall = time.perf_counter() - t0
    statuses: dict[str, int] = {}
    from c2bridge.report.results import current_trials

    for t in current_trials(results).values():  # this world's trials only
        statuses[t["status"]] = statuses.get(t["status"], 0) + 1
    gate = results.get("gate2") or {}
    print(f"done in {wall:.0f}s: {study.n_run} trial(s) run, {study.n_reused} found done "
          f"({', '.join(f'{v} {k}' for k, v in statuses.items())}); Gate 2 (C2 part): "
          f"{gate.get('c2', 'not assessed')}{' (not meaningful: see FINDINGS.md)' if gate.get('caveat') else ''}")
    print(f"results: {run_dir / 'results.yaml'}" + ("" if args.no_report else f"\nfindings: {run_dir / 'FINDINGS.md'}"))
    if statuses.get("failed"):
        print(f"note: {statuses['failed']} trial(s) failed (recorded in results.yaml); `--resume` retries them",
              file=sys.stderr)
    return 0


def _report(args: argparse.Namespace) -> int:
    from c2bridge.report import render

    out = render(args.run_dir)
    print(f"wrote {out['findings']} and {len(out['figures'])} figure(s)")
    return 0
