"""The study runner: experiment configs, caches, trials through an executor, results.yaml, verdicts, reports.

``Study(run_dir, preset).run(["e2.1", ...])`` runs each registered experiment (``c2bridge.experiments.registry``)
in study order, pulling in what it requires. Modules list their trials (``trials(cfg, preset, upstream)``:
``TrialSpec``s) and turn the records into a summary; the engine does the rest: resolving specs into configs
(``context.StudyContext``), hashing, skipping what is done, resuming what is not, recording failures and going on,
writing ``results.yaml`` (``store.ResultsStore``) after every trial, then verdicts, the §6.4 decisions and Gate 2
(``criteria.assess_study``) and the reports.

``Study.dry_run(names)`` lists the same trials without running anything: label, key (when the caches and models
are recorded in RUN_DIR already), whether it is done, and the planner's cost.

The heavy parts (feature extraction, training, evaluation) sit behind a ``Backend`` so the runner is testable with a
fake one: ``backend.trial_fn`` (pure: trial dict in, result dict out), ``backend.prepare_cache``,
``backend.models()``, ``backend.resolve_distance()``.
"""
from __future__ import annotations

import contextlib
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Iterator, Mapping, Protocol

from c2bridge._io import stable_hash
from c2bridge.experiments import criteria as crit
from c2bridge.experiments import registry
from c2bridge.experiments.context import StudyContext
from c2bridge.experiments.halving import Halving, decide, policy_for, rung_value, rungs
from c2bridge.experiments.registry import experiment_overrides, load_experiment_config, normalize_names
from c2bridge.experiments.store import ResultsStore
from c2bridge.experiments.trials import (Competitor, StudyInterrupted, TrialRecord, TrialSpec, make_trial, needs_run,
                                         normalize_result, read_record, write_record)

__all__ = ["Study", "StudyContext", "Backend", "DryRunRow", "load_experiment_config", "normalize_names",
           "parse_overrides"]

CACHE_DIR = "cache"
SCHEDULES = ("graph", "staged")  # graph: trials start when their inputs exist; staged: experiment by experiment
SAVE_EVERY_S = 15.0  # results.yaml is rewritten at most this often while trials run (and after every batch)


def parse_overrides(items: Iterable[str]) -> tuple[dict, dict]:
    """``key=value`` items -> (for every experiment, per experiment id); see ``registry.experiment_overrides``."""
    return experiment_overrides(items)


# ----------------------------------------------------------------------------------------------------- backend
class Backend(Protocol):
    """The heavy side of a study (the real one is ``c2bridge.experiments.backend.TorchBackend``)."""

    trial_fn: Callable[[dict], dict]

    def models(self, preset: str) -> dict: ...  # ids / revisions / fingerprints of the frozen models

    def resolve_distance(self, requested: str) -> dict: ...  # {"name", "reason"}

    def prepare_cache(self, preset: str, spec: dict, out: Path) -> dict: ...  # -> {"key", "n", ...}


class _RecordedBackend:
    """What a dry run knows without models or extraction: the models, distance and caches RUN_DIR recorded."""

    def __init__(self, results: dict, run_dir: Path):
        self.results, self.run_dir = results, run_dir

    def trial_fn(self, trial: dict) -> dict:  # pragma: no cover - a dry run dispatches nothing
        raise RuntimeError("a dry run runs no trial")

    def models(self, preset: str) -> dict:
        return self.results.get("models") or {}

    def resolve_distance(self, requested: str) -> dict:
        return self.results.get("distance") or {"name": requested if requested not in (None, "auto") else None,
                                                 "reason": "not resolved yet (dry run)"}

    def prepare_cache(self, preset: str, spec: dict, out: Path) -> dict:
        rel = str(out.relative_to(self.run_dir))
        for entry in (self.results.get("caches") or {}).values():
            if entry.get("path") == rel:
                return {"key": entry.get("key"), "n": entry.get("n")}
        return {"key": None, "n": None}


@dataclass
class DryRunRow:
    experiment: str
    label: str
    kind: str
    key: str | None  # None: not computable yet (caches not extracted, or decided at run time)
    done: bool
    gpu_hours: float | None  # the planner's estimate (None when it has no estimate for the trial)
    note: str | None = None
    train_data: str | None = None  # what it trains on (planner.describe_training_set), e.g. the plan's mix


# ----------------------------------------------------------------------------------------------------- study
class Study:
    def __init__(self, run_dir: str | Path, preset: str = "mini", overrides: Iterable[str] = (),
                 executor: str = "local", retry_failed: bool = False, backend: Backend | None = None,
                 executor_options: dict | None = None,
                 config_directory: str | Path | None = None, criteria_path: str | Path | None = None,
                 log: Callable[[str], None] = print, command: str | None = None, render: bool = True,
                 dry: bool = False, schedule: str = "graph"):
        from c2bridge.presets import get_preset

        if schedule not in SCHEDULES:
            raise ValueError(f"schedule {schedule!r}: expected one of {', '.join(SCHEDULES)}")
        self.preset = get_preset(preset)
        self.run_dir = Path(run_dir)
        self.overrides = list(overrides or ())
        registry.check_overrides(self.overrides, self.preset.name, config_directory)  # before anything is written
        self.retry_failed = retry_failed
        self.config_directory = config_directory
        self.log = log
        self.render = render
        self.criteria = crit.load_criteria(criteria_path)
        self.store = ResultsStore(self.run_dir, self.preset, command=command, log=log)
        self.results = self.store.results
        self.dry = dry
        from c2bridge.experiments.executors import executor_threads, get_executor

        if dry:
            backend = _RecordedBackend(self.results, self.run_dir)
            self.executor = None
        else:
            self.executor = get_executor(executor, **(executor_options or {}))
        # torch threads each trial gets (None: torch's default): resolved into the trial configs, so a dry run
        # names the keys the run would use
        self.trial_threads = executor_threads(executor, executor_options or {}, self.executor)
        if backend is None:
            from c2bridge.experiments.backend import TorchBackend

            backend = TorchBackend()
        self.backend = backend
        self._cache_jobs: dict[str, _CacheJob] = {}  # cache identity -> its extraction (and its ref once done)
        self._graph: _Graph | None = None  # the graph schedule's shared state while it runs
        self._in_flight: dict[str, threading.Event] = {}  # trial key -> set when the experiment running it is done
        self.schedule = schedule
        self._done_count: dict[str, int] = {}  # trials finished per experiment in this invocation (log lines)
        self.halving_log: dict[str, list[dict]] = {}  # experiment -> its rung decisions in this invocation
        self.n_run = self.n_reused = 0  # trials dispatched / found done in this invocation
        self.distance: dict = {}
        self.models_fingerprint: str | None = None

    def save(self) -> None:
        self.store.save()

    # --- study-wide setup ---------------------------------------------------------------------------------
    def _setup(self, cfg: dict) -> None:
        if self.models_fingerprint is not None:
            return
        configure = getattr(self.backend, "configure", None)
        if configure is not None:
            configure(cfg)  # e.g. CPU threads for extraction and evaluation in this process
        models = self.backend.models(self.preset.name)
        requested = (cfg.get("eval") or {}).get("distance", "auto")
        if self.dry:
            self.models_fingerprint = stable_hash(models) if models else None
            self.distance = self.backend.resolve_distance(requested)
            return
        self.results["models"] = models
        self.models_fingerprint = stable_hash(models)
        self.distance = self.backend.resolve_distance(requested)
        previous = self.results.get("distance")
        if previous and previous.get("name") != self.distance["name"]:
            self.log(f"note: distance changed from {previous['name']} to {self.distance['name']}; "
                     "trials are keyed by it, so earlier ones are not reused")
        self.results["distance"] = self.distance
        self.results["criteria"] = self.criteria
        self.run_dir.mkdir(parents=True, exist_ok=True)

    def _cache_job(self, name: str, cfg: dict) -> "_CacheJob":
        specs = cfg.get("caches") or {}
        if name not in specs:
            raise ValueError(f"cache {name!r} is not defined under 'caches' in {cfg.get('_source')}; have {sorted(specs)}")
        spec = {k: v for k, v in specs[name].items() if v is not None}
        ident = stable_hash({"preset": self.preset.name, "models": self.models_fingerprint, **spec})
        if ident not in self._cache_jobs:
            parts = [spec.get("dataset", "data"), spec.get("split", name)] + ([str(spec["augment"])] if spec.get("augment") else [])
            self._cache_jobs[ident] = _CacheJob(ident, name, spec, f"{CACHE_DIR}/{'-'.join(parts)}-{ident}")
        return self._cache_jobs[ident]

    def cache(self, name: str, cfg: dict) -> dict:
        """``{"key", "path"}`` of cache ``name`` of ``cfg``, extracted on first use (under the graph schedule
        possibly by an executor task started ahead of time: then this waits for it)."""
        job = self._cache_job(name, cfg)
        if job.ref is not None:
            return job.ref
        rel = job.rel
        t0 = time.perf_counter()
        if job.started:  # an extraction task runs on the executor: wait for it
            with self._unlocked():
                job.wait()
            if job.ref is not None:  # another experiment registered it meanwhile
                return job.ref
            raw = job.result or {}
            if raw.get("status") != "completed":
                raise ValueError(f"cache {name}: extraction failed: {raw.get('error') or 'no result'}")
            info, dt = dict(raw["info"]), float(raw.get("seconds") or 0.0)
        else:
            job.started = True
            info = self.backend.prepare_cache(self.preset.name, job.spec, self.run_dir / rel)
            dt = time.perf_counter() - t0
        ref = {"key": None if info["key"] is None else str(info["key"]), "path": rel}
        if not self.dry:
            previous = self.results["caches"].get(name)
            entry_name = name if previous is None or previous.get("path") == rel else f"{name}@{job.ident}"
            self.results["caches"][entry_name] = {**job.spec, **{k: v for k, v in info.items() if k != "key"}, **ref,
                                                  "seconds": round(dt, 1)}  # extraction (or finding it done) this run
            if dt > 1.0:
                self.log(f"cache {name}: {info.get('n', '?')} items in {dt:.1f}s -> {rel}")
        job.ref = ref
        return ref

    # --- trials -------------------------------------------------------------------------------------------
    def run_trials(self, experiment: str, specs: list[tuple[str, dict]],
                   competing: dict[str, Competitor] | None = None, halving: Halving | None = None) -> dict[str, dict]:
        """Run (or find done) every ``(label, config)``; label -> its record (with ``key``).

        ``competing`` (label -> group, arm, protected) with ``halving`` on: those trials are successive-halving
        arms (``c2bridge.experiments.halving``): they pause at each rung, and the arms the policy drops are
        recorded as ``pruned`` instead of being trained on."""
        halving = halving if halving is not None and halving.enabled else None
        by_label: dict[str, dict] = {}
        pending: dict[str, dict] = {}
        for label, config in specs:
            trial = make_trial(config, self.run_dir)
            # for trackers (W&B / TensorBoard run names); not part of the config, so not of the key
            trial["labels"] = {"study": self.run_dir.name, "experiment": experiment, "arm": label}
            by_label[label] = trial
            if trial["key"] in pending:
                continue
            record = read_record(trial)
            if needs_run(record, self.retry_failed, halving=halving is not None):
                pending[trial["key"]] = trial
            else:
                self.store.store_trial(trial, record, experiment, label)
        skipped = len({t["key"] for t in by_label.values()}) - len(pending)
        self.n_run += len(pending)
        self.n_reused += skipped
        if skipped:
            self.log(f"[{experiment}] {skipped} trial(s) already done, skipped")
        labels = {t["key"]: lbl for lbl, t in by_label.items()}
        self._done_count[experiment] = 0
        halved = halving is not None and bool(competing)
        # the graph schedule: a trial another experiment is running right now is waited for, never run twice
        theirs = [k for k in pending if k in self._in_flight]
        claimed = [k for k in pending if k not in self._in_flight]  # this call runs them
        for key in claimed:
            self._in_flight[key] = threading.Event()
        try:
            if halved:  # its rung values are needed for the decisions: first
                self._wait_for_theirs(experiment, theirs, pending, by_label, labels, claimed)
                _Halver(self, experiment, by_label, pending, labels, competing, halving).run()
            else:
                self._dispatch_all(experiment, [pending[k] for k in claimed], labels, len(pending))
                self._wait_for_theirs(experiment, theirs, pending, by_label, labels, claimed)
        finally:  # whatever happened, nobody waits for this call's trials any longer
            for key in claimed:
                event = self._in_flight.pop(key, None)
                if event is not None:
                    event.set()
        if pending:
            self.save()
        return {label: {**self.results["trials"][t["key"]], "key": t["key"]} for label, t in by_label.items()}

    def _wait_for_theirs(self, experiment: str, theirs: list[str], pending: dict, by_label: dict,
                         labels: dict, claimed: list[str]) -> None:
        """Trials another experiment runs at this moment: wait for each; a finished one is this experiment's too
        (stored under its label), one that still needs running (pruned there, or failed) runs here."""
        again = []
        for key in theirs:
            event = self._in_flight.get(key)
            if event is not None:
                with self._unlocked():
                    event.wait()
            trial = pending[key]
            record = read_record(trial)
            if needs_run(record, self.retry_failed, halving=False):
                self._in_flight[key] = threading.Event()
                claimed.append(key)
                again.append(trial)
            else:
                self.n_run -= 1
                self.n_reused += 1
                for label, t in by_label.items():
                    if t["key"] == key:
                        self.store.store_trial(t, record, experiment, label)
                pending.pop(key)
        if again:
            self._dispatch_all(experiment, again, labels, len(again))

    def _dispatch_all(self, experiment: str, trials: list[dict], labels: dict, total: int,
                      on_paused: Callable[[dict, dict], None] | None = None) -> None:
        """Every trial through the executor; each outcome written (trial.json) and stored as it comes back; a
        ``paused`` one (a halving rung) goes to ``on_paused``; an interrupted one stops the study."""
        for raw in self._results_of(trials):
            trial = next((t for t in trials if t["key"] == raw.get("key")), None)
            if trial is None:  # an executor must echo the key; anything else is a bug there
                raise RuntimeError(f"executor returned a result for unknown trial {raw.get('key')!r}")
            record = normalize_result(raw, trial)
            if record["status"] == "interrupted":  # SIGTERM: not an outcome; stop here, a re-run resumes it
                self.save()
                self.log(f"[{experiment}] {labels[trial['key']]}: interrupted ({record.get('reason') or 'SIGTERM'})")
                raise StudyInterrupted(f"{labels[trial['key']]} was interrupted and checkpointed; run the same "
                                       "command again to resume")
            if record["status"] == "paused":
                on_paused(trial, record)
                continue
            self._record(experiment, trial, record, labels)
            event = self._in_flight.pop(trial["key"], None)
            if event is not None:  # an experiment waiting for this trial goes on
                event.set()
            self._done_count[experiment] = self._done_count.get(experiment, 0) + 1
            self.log(f"[{experiment}] {self._done_count[experiment]}/{total} {labels[trial['key']]}: "
                     f"{_one_line(record)}")

    def _record(self, experiment: str, trial: dict, record: dict, labels: dict) -> None:
        write_record(trial, record)
        self.store.store_trial(trial, record, experiment, labels[trial["key"]])
        if time.monotonic() - self.store.last_save > SAVE_EVERY_S:  # trial.json is the durable record
            self.save()

    def _results_of(self, trials: list[dict]) -> Iterator[dict]:
        """The executor's results for ``trials`` (any order); under the graph schedule the other experiments'
        engine code runs while this one waits."""
        results = iter(self.executor.run(self.backend.trial_fn, trials))
        while True:
            with self._unlocked():
                raw = next(results, None)
            if raw is None:
                return
            yield raw

    def export(self, src_rel: str | None, dest_rel: str) -> str | None:
        return self.store.export(src_rel, dest_rel)

    # --- experiments --------------------------------------------------------------------------------------
    def experiment_config(self, name: str) -> dict:
        return load_experiment_config(name, self.preset.name, self.overrides, self.config_directory)

    def _have_summary(self) -> list[str]:
        return [n for n, e in self.results["experiments"].items() if (e or {}).get("summary")]

    def run(self, names: Iterable[str]) -> dict:
        if self.dry:
            raise RuntimeError("a dry-run Study lists trials (dry_run); it does not run them")
        wanted = normalize_names(names)
        todo = registry.with_requirements(wanted, self._have_summary())
        for name in todo:
            if name not in wanted:
                needed_by = next(w for w in wanted if name in registry.get(w).EXPERIMENT.requires)
                self.log(f"{needed_by} needs {name}'s result: running {name} first")
        self.preflight(todo)  # every trial's config checked before a cache is extracted or a file written
        try:
            if self.schedule == "graph" and getattr(self.executor, "concurrent", False) and len(todo) > 1:
                self._run_graph(todo)
            else:  # staged: one experiment after the other (the local executor runs one trial at a time anyway)
                t_start = time.perf_counter()
                for name in todo:
                    self._run_experiment(name, todo, t_start)
        finally:  # the persistent pool's workers (one pool for every experiment of this run)
            close = getattr(self.executor, "close", None)
            if close is not None:
                close()
        return self._finish(todo)

    def _run_experiment(self, name: str, todo: list[str], t_start: float) -> None:
        cfg = self.experiment_config(name)
        self._setup(cfg)
        module = registry.get(name)
        ctx = StudyContext(self, name, cfg)
        t0 = time.perf_counter()
        self.log(f"== {name}: {module.EXPERIMENT.title}")
        protocol = self._protocol(name, module, cfg)  # before the trials: the recipe they are resolved from
        record = module.run(ctx)
        record["title"] = module.EXPERIMENT.title
        record["config_file"] = Path(cfg["_source"]).name
        record["protocol"] = protocol
        record["protocol_notes"] = list(cfg.get("protocol_notes") or [])
        record["wall_s"] = round(time.perf_counter() - t0, 1)
        record.update(self._halving_record(name, cfg))
        self.results["experiments"][name] = record
        self.assess()
        self.results["study"]["last_run"] = {
            "experiments": todo, "wall_s": round(time.perf_counter() - t_start, 1),
            "trials_run": self.n_run, "trials_reused": self.n_reused, "schedule": self.schedule,
        }
        self.save()

    # --- the graph schedule -------------------------------------------------------------------------------
    def _run_graph(self, todo: list[str]) -> None:
        """Every experiment at once, each in its own thread: a trial goes to the executor as soon as what it
        needs exists (the caches, the upstream summaries it reads), not at experiment barriers, and the caches
        are extracted as executor tasks alongside trials. The engine's own code runs one experiment at a time
        (one lock, released while a thread waits for trials, caches or an upstream summary), and every upstream
        read sees what the staged order would show it, so the results are the staged ones."""
        t_start = time.perf_counter()
        opener = getattr(self.executor, "open", None)
        if opener is not None:
            opener()  # in the main thread: stop signals are forwarded to the workers
        self._setup(self.experiment_config(todo[0]))
        self._graph = _Graph(self, todo)
        try:
            self._prefetch_caches(todo)
            threads = [threading.Thread(target=self._graph.body, args=(name, t_start), name=f"c2bridge-{name}",
                                        daemon=True) for name in todo]
            for t in threads:
                t.start()
            while any(t.is_alive() for t in threads):
                for t in threads:
                    t.join(0.2)  # short joins: the main thread stays free to handle stop signals
        finally:
            graph, self._graph = self._graph, None
        if graph.errors:
            raise graph.errors[0]
        exps = self.results["experiments"]  # study order, as the staged schedule writes them
        self.results["experiments"] = {**{k: v for k, v in exps.items() if k not in todo},
                                       **{k: exps[k] for k in todo if k in exps}}
        self.assess()
        self.save()

    def _unlocked(self):
        """While waiting (trials, a cache, an upstream summary) under the graph schedule: let the other
        experiments' engine code run. A no-op when staged."""
        return self._graph.unlocked() if self._graph is not None else contextlib.nullcontext()

    def upstream_for(self, name: str) -> Mapping[str, dict]:
        """What ``name``'s ``trials(cfg, preset, upstream)`` reads: every summarized experiment's summary -- under
        the graph schedule a mapping that waits, per key read, for the experiments before ``name`` in study order
        (and shows later ones as they were before this run), exactly what the staged order shows."""
        if self._graph is not None:
            return _Upstream(self._graph, name)
        return {n: exp["summary"] for n, exp in self.results["experiments"].items()
                if (exp or {}).get("summary") is not None}

    def _prefetch_caches(self, todo: list[str]) -> None:
        """Start extracting every cache the experiments' listed trials name (as executor tasks, in parallel)."""
        fn = getattr(self.backend, "cache_fn", None)
        if fn is None:
            return
        upstream = {n: e["summary"] for n, e in self.results["experiments"].items() if (e or {}).get("summary")}
        wanted: list[tuple[str, dict]] = []
        for name in todo:
            cfg = self.experiment_config(name)
            try:
                specs = registry.get(name).trials(cfg, self.preset, upstream)
            except (ValueError, KeyError, TypeError):
                continue  # listed again (and its error raised) when the experiment runs
            for cache_name in _caches_named(cfg, specs):
                wanted.append((cache_name, cfg))
        jobs = []
        for cache_name, cfg in wanted:
            job = self._cache_job(cache_name, cfg)
            if job is not None and job not in jobs and not job.started:
                job.started = True
                jobs.append(job)
        if jobs:
            threading.Thread(target=self._extract, args=(jobs,), daemon=True, name="c2bridge-caches").start()

    def _extract(self, jobs: list["_CacheJob"]) -> None:
        """Extraction tasks through the executor (any order); each job's waiters are woken as it finishes."""
        tasks = [{"key": f"cache-{j.ident}", "run_dir": str(self.run_dir / j.rel), "preset": self.preset.name,
                  "spec": j.spec, "out": str(self.run_dir / j.rel),
                  "threads": getattr(self.backend, "extract_threads", None)} for j in jobs]
        by_key = {t["key"]: j for t, j in zip(tasks, jobs)}
        try:
            for raw in self.executor.run(self.backend.cache_fn, tasks):
                job = by_key[raw["key"]]
                job.finish(raw)
        except BaseException as exc:  # the study is stopping: every waiter learns it
            for job in jobs:
                job.finish({"status": "failed", "error": f"{type(exc).__name__}: {exc}"}, exc)
        for job in jobs:
            job.finish({"status": "failed", "error": "the executor returned no result for this cache"})

    def _finish(self, todo: list[str]) -> dict:
        figures: list = []
        if self.render:
            from c2bridge.report import render

            figures = [self.run_dir / f for f in render(self.run_dir)["figures"].values() if isinstance(f, str)]
        if todo:  # the study-level W&B / TensorBoard run, when the recipe turns tracking on
            from c2bridge.train.logging import log_study_summary

            log = (self.experiment_config(todo[-1]).get("recipe") or {}).get("log") or {}
            log_study_summary(self.run_dir, self.results, log, figures=figures)
        return self.results

    def _halving_record(self, name: str, cfg: dict) -> dict:
        """``halving`` of an experiment record: the setting, the policy, every rung decision and the pruned
        trials (from the records: a re-run that found them pruned lists them too)."""
        halving = Halving.from_config(cfg, name)
        if not halving.enabled:
            return {}
        pruned = [{"label": (t.get("labels") or {}).get(name), "key": key, "step": t.get("pruned_at_step"),
                   "rung_value": t.get("rung_value")}
                  for key, t in self.results["trials"].items()
                  if t.get("status") == "pruned" and name in (t.get("labels") or {})]
        return {"halving": {**halving.to_dict(), "decisions": self.halving_log.get(name, []),
                            "pruned": sorted(pruned, key=lambda p: str(p["label"]))}}

    def preflight(self, names: Iterable[str]) -> None:
        """One ValueError listing what is wrong with the experiments' configs, before anything is extracted or
        written: malformed ``seeds`` / ``budgets`` (bounded: see ``c2bridge.config.parse_size``), an unknown
        ``eval.distance``, cache and split names that would become paths outside the study (``/``, ``..``), and
        every trial's TrainConfig values and adapter (``StudyContext.check``)."""
        from c2bridge._io import check_plain_name
        from c2bridge.config import resolve_budget
        from c2bridge.names import DISTANCES

        errors: list[str] = []
        upstream = {n: e["summary"] for n, e in self.results["experiments"].items() if (e or {}).get("summary")}
        built: set = set()
        for name in names:
            cfg = self.experiment_config(name)
            before = len(errors)
            for key in ("seeds", "reference_seeds"):
                seeds = cfg.get(key)
                if seeds is not None and (not isinstance(seeds, list) or not seeds or any(
                        isinstance(s, bool) or not isinstance(s, int) or s < 0 for s in seeds)):
                    errors.append(f"{name}.{key}={seeds!r}: expected a non-empty list of integers >= 0, e.g. [0, 1, 2]")
            budgets = cfg.get("budgets")
            if budgets is not None and (not isinstance(budgets, list) or not budgets):
                errors.append(f"{name}.budgets={budgets!r}: expected a non-empty list of budgets, e.g. [5m, 10m]")
                budgets = None
            for key, value in [*((f"budgets[{i}]", b) for i, b in enumerate(budgets or [])),
                               *((k, cfg[k]) for k in ("budget", "small_budget", "reference_budget") if k in cfg)]:
                try:
                    resolve_budget(value, self.preset)
                except ValueError as exc:
                    errors.append(f"{name}.{key}: {exc}")
            for cache_name, spec in (cfg.get("caches") or {}).items():  # cache dirs are named by these
                for field, value in [("", cache_name), *(((f".{k}", (spec or {}).get(k))
                                                          for k in ("dataset", "split", "augment")))]:
                    if value is not None:
                        try:
                            check_plain_name(str(value), f"{name}.caches.{cache_name}{field}")
                        except ValueError as exc:
                            errors.append(str(exc))
            for split in ((cfg.get("eval") or {}).get("splits") or {}):  # eval/<split>.png in each trial dir
                try:
                    check_plain_name(str(split), f"{name}.eval.splits name")
                except ValueError as exc:
                    errors.append(str(exc))
            try:
                if Halving.from_config(cfg, name).enabled and not self.dry:  # its policy's engine is importable
                    policy_for(getattr(self.executor, "name", "local"), Halving.from_config(cfg, name).eta)
            except ValueError as exc:
                errors.append(str(exc))
            distance = (cfg.get("eval") or {}).get("distance", "auto")
            if distance not in ("auto", *DISTANCES):
                errors.append(f"{name}.eval.distance={distance!r}: expected auto or one of {', '.join(DISTANCES)}")
            if len(errors) > before:
                continue
            module = registry.get(name)
            ctx = StudyContext(self, name, cfg)
            try:
                module.protocol(cfg, self.preset)
                specs = module.trials(cfg, self.preset, upstream)
                for spec in specs:
                    ctx.check(spec, built)
            except ValueError as exc:
                errors.append(str(exc))
            except (KeyError, TypeError) as exc:  # a config value of the wrong shape reached the experiment's code
                errors.append(f"{name}: malformed config ({type(exc).__name__}: {exc}) in {cfg.get('_source')} or "
                              "its overrides")
        if errors:
            raise ValueError(f"bad study config ({len(errors)} problem(s)): " + "; ".join(errors))

    def _protocol(self, name: str, module, cfg: dict) -> list[dict]:
        """This run's protocol knobs next to the full preset's (from ``<exp>.full.yaml``, no overrides)."""
        from c2bridge.experiments.protocol import compare
        from c2bridge.presets import get_preset

        this = module.protocol(cfg, self.preset)
        full = None
        if self.preset.name != "full":
            try:
                full = module.protocol(load_experiment_config(name, "full", (), self.config_directory), get_preset("full"))
            except (ValueError, FileNotFoundError):
                full = None
        return compare(this, full)

    def assess(self) -> None:
        """Verdicts for every summarized experiment, the §6.4 decisions, failure rules, Gate 2, mini checks."""
        crit.assess_study(self.results, self.criteria, registry.gate_metric())

    # --- dry run ------------------------------------------------------------------------------------------
    def trial_lists(self, names: Iterable[str]) -> dict[str, list[TrialSpec]]:
        """Every wanted experiment's trials (``trials(cfg, preset, upstream)``), upstream = the summaries RUN_DIR
        holds (an experiment without one: its documented assumption)."""
        upstream = {n: e["summary"] for n, e in self.results["experiments"].items() if (e or {}).get("summary")}
        return {name: registry.get(name).trials(self.experiment_config(name), self.preset, upstream)
                for name in normalize_names(names)}

    def dry_run(self, names: Iterable[str], gpu: str = "a100-80") -> list[DryRunRow]:
        """The trials ``run(names)`` would train, with their keys where RUN_DIR's recorded caches and models fix
        them, whether each is done already, and the planner's GPU-hours (nothing is run or written)."""
        from c2bridge import planner

        lists = self.trial_lists(names)
        estimates = planner.estimate_trial_lists({n: (self.experiment_config(n), specs) for n, specs in lists.items()},
                                                 preset=self.preset.name, gpu=gpu)
        rows: list[DryRunRow] = []
        for name, specs in lists.items():
            cfg = self.experiment_config(name)
            self._setup(cfg)
            ctx = StudyContext(self, name, cfg)
            resolved: dict[str, dict] = {}
            for spec, est in zip(specs, estimates[name]):
                key, done, note = None, False, spec.assumption
                if spec.stage > 1:
                    note = "decided after stage 1" + (f"; {note}" if note else "")
                elif self.models_fingerprint is not None:
                    key, done, record = self._dry_key(ctx, spec, resolved)
                    if record is not None:
                        resolved[spec.label] = record
                data = planner.describe_training_set(est.train_data) if est is not None and est.train_data else None
                rows.append(DryRunRow(name, spec.label, spec.kind, key, done, est.hours if est else None, note,
                                      data))
        return rows

    def _dry_key(self, ctx: StudyContext, spec: TrialSpec, resolved: dict) -> tuple[str | None, bool, dict | None]:
        config = ctx.resolve(spec, resolved) if spec.kind != "evaluate" or spec.of in resolved else None
        if config is None or _has_unknown_cache(config):
            return None, False, None
        trial = make_trial(config, self.run_dir)
        record = read_record(trial) or self.results["trials"].get(trial["key"])
        halved = spec.competitor is not None and ctx.halving().enabled  # a pruned arm is done while halving is on
        done = record is not None and not needs_run(record, self.retry_failed, halving=halved)
        return trial["key"], done, (TrialRecord.from_dict({**record, "key": trial["key"]}) if record else None)


def _has_unknown_cache(config: dict) -> bool:
    caches = list((config.get("caches") or {}).values())
    caches += [ref.get("key") for ref in ((config.get("eval") or {}).get("splits") or {}).values()]
    return any(c is None for c in caches) or config.get("models") is None


def format_dry_run(rows: list[DryRunRow], run_dir: Path) -> str:
    """The table ``c2bridge run ... --dry-run`` prints."""
    head = f"{'experiment':<10} {'trial':<36} {'kind':<9} {'key':<16} {'done':<4} {'GPU-h':>7}  note"
    lines = [head, "-" * len(head)]
    for r in rows:
        hours = f"{r.gpu_hours:>7.3g}" if r.gpu_hours is not None else f"{'-':>7}"
        lines.append(f"{r.experiment:<10} {r.label[:36]:<36} {r.kind:<9} {r.key or '-':<16} "
                     f"{'yes' if r.done else 'no':<4} {hours}  {r.note or ''}".rstrip())
    n_done = sum(r.done for r in rows)
    hours = sum(r.gpu_hours or 0.0 for r in rows if not r.done)
    lines.append("")
    lines.append(f"{len(rows)} trial(s), {n_done} done in {run_dir}; the rest ~{hours:.3g} GPU-h by the planner "
                 f"(trials sharing a key are costed once; '-' key: its caches are not extracted yet or it is decided "
                 f"at run time)")
    sets: dict[str, list[str]] = {}
    for r in rows:
        if r.train_data and r.experiment not in sets.setdefault(r.train_data, []):
            sets[r.train_data].append(r.experiment)
    if sets:
        lines.append("training data (one dataset per micro-batch, picked by its share):")
        lines += [f"  {', '.join(names)}: {text}" for text, names in sets.items()]
    return "\n".join(lines)


def _one_line(record: dict) -> str:
    status = record.get("status")
    if status == "failed":
        return f"FAILED ({str(record.get('error', '')).splitlines()[0][:160] if record.get('error') else 'no error text'})"
    parts = [status]
    val = ((record.get("metrics") or {}).get("val")) or {}
    for k in ("distance", "spatial_iou"):
        if isinstance(val.get(k), (int, float)):
            parts.append(f"{k}={val[k]:.4f}")
    t = (record.get("train") or {}).get("time_s")
    if isinstance(t, (int, float)):
        parts.append(f"train {t:.1f}s")
    w = record.get("wall_s")
    if isinstance(w, (int, float)):
        parts.append(f"total {w:.1f}s")
    return " ".join(parts)


# ----------------------------------------------------------------------------------------------------- halving
class _Halver:
    """Successive halving over one ``run_trials`` call (see ``c2bridge.experiments.halving``).

    Rung by rung: every live competing trial not yet finished trains to the rung (``pause_at_step``) -- in one
    batch with the plain trials at the first rung -- then each group's arms are ranked on their mean validation
    loss at the rung and the policy's losers are recorded as pruned. The survivors train to the end in the last
    batch. A trial trained to full length already is never pruned (its rung value comes from its curve)."""

    def __init__(self, study: Study, experiment: str, by_label: dict, pending: dict, labels: dict,
                 competing: dict[str, Competitor], halving: Halving):
        self.study, self.experiment, self.pending, self.labels, self.halving = study, experiment, pending, labels, halving
        self.policy = policy_for(getattr(study.executor, "name", "local"), halving.eta)
        key_of = {label: t["key"] for label, t in by_label.items()}
        self.trial_of = {t["key"]: t for t in by_label.values()}
        # group -> arm -> keys, in config order; a key is prunable when every label it has competes unprotected
        self.groups: dict[str, dict[str, list[str]]] = {}
        self.protected: dict[str, set[str]] = {}
        prunable: dict[str, bool] = {}
        for label, key in key_of.items():
            c = competing.get(label)
            prunable[key] = prunable.get(key, True) and c is not None and not c.protected
            if c is None:
                continue
            arm = c.arm or label
            keys = self.groups.setdefault(c.group, {}).setdefault(arm, [])
            if key not in keys:
                keys.append(key)
            if c.protected:
                self.protected.setdefault(c.group, set()).add(arm)
        self.rungs: dict[str, list[int]] = {}
        for group, arms in list(self.groups.items()):
            schedule = {tuple(self._rungs(k)) for keys in arms.values() for k in keys}
            if len(arms) < 2 or len(schedule) != 1 or not next(iter(schedule)):
                why = ("fewer than 2 arms" if len(arms) < 2 else "its arms differ in steps or validation steps"
                       if len(schedule) != 1 else "no rung below its steps (eval.every_steps)")
                study.log(f"[{experiment}] halving: group {group!r} runs to full length ({why})")
                del self.groups[group]
                continue
            self.rungs[group] = list(next(iter(schedule)))
        in_groups = {k for arms in self.groups.values() for keys in arms.values() for k in keys}
        self.prunable = {k for k in in_groups if prunable.get(k)}
        self.plain = [t for k, t in pending.items() if k not in in_groups]
        self.values: dict[str, dict[int, float | None]] = {}  # key -> rung step -> value
        self.paused: dict[str, dict] = {}  # key -> its latest paused result
        self.dead: dict[str, set[str]] = {g: set() for g in self.groups}  # group -> pruned arms
        self.decisions: list[dict] = study.halving_log.setdefault(experiment, [])

    def _rungs(self, key: str) -> list[int]:
        train = self.trial_of[key]["config"].get("train") or {}
        max_steps = (train.get("optim") or {}).get("max_steps")
        every = (train.get("eval") or {}).get("every_steps")
        return rungs(int(max_steps), every, self.halving) if max_steps else []

    def run(self) -> None:
        total = len(self.pending)
        self.done_now: set[str] = set()  # pending keys that got their record in this call
        n_rungs = max((len(r) for r in self.rungs.values()), default=0)
        first = True
        for k in range(n_rungs):
            batch = [] if not first else list(self.plain)
            first = False
            for group, arms in self.groups.items():
                if k >= len(self.rungs[group]):
                    continue
                step = self.rungs[group][k]
                for arm, keys in arms.items():
                    if arm in self.dead[group]:
                        continue
                    for key in keys:
                        if key in self.pending and key not in self.done_now and key not in [t["key"] for t in batch]:
                            batch.append({**self.pending[key], "pause_at_step": step})
            self._run(batch, total)
            for group, arms in self.groups.items():
                if k < len(self.rungs[group]):
                    self._decide(group, k)
        rest = [] if not first else list(self.plain)
        for key, trial in self.pending.items():
            if key not in self.done_now and key not in self.pruned_keys() and key not in [t["key"] for t in rest]:
                rest.append(trial)
        self._run(rest, total)

    def _run(self, batch: list[dict], total: int) -> None:
        paused_now: set[str] = set()

        def on_paused(trial: dict, record: dict) -> None:
            paused_now.add(trial["key"])
            self.paused[trial["key"]] = record
            self.values.setdefault(trial["key"], {})[int(record.get("step") or 0)] = record.get("rung_value")

        if batch:
            self.study._dispatch_all(self.experiment, batch, self.labels, total, on_paused=on_paused)
        for t in batch:  # the others came back with an outcome (completed / diverged / failed), recorded
            if t["key"] not in paused_now:
                self.done_now.add(t["key"])
                self.paused.pop(t["key"], None)

    def _value(self, key: str, step: int) -> float | None:
        if step in self.values.get(key, {}):
            return self.values[key][step]
        record = self.study.results["trials"].get(key) if (key not in self.pending or key in self.done_now) else None
        if record is None:
            return None
        if record.get("status") not in ("completed", "pruned"):
            return None  # failed / diverged: out of the competition (its own outcome)
        return rung_value(record.get("curve"), step)

    def pruned_keys(self) -> set[str]:
        out = set()
        for key in self.prunable:
            memberships = [(g, a) for g, arms in self.groups.items() for a, keys in arms.items() if key in keys]
            if memberships and all(a in self.dead[g] for g, a in memberships):
                out.add(key)
        return out

    def _decide(self, group: str, k: int) -> None:
        step = self.rungs[group][k]
        live = [(arm, keys) for arm, keys in self.groups[group].items() if arm not in self.dead[group]]
        arm_values = []
        for arm, keys in live:
            vals = [self._value(key, step) for key in keys]
            arm_values.append((arm, sum(vals) / len(vals) if vals and all(v is not None for v in vals) else None))
        finished = {arm for arm, keys in live
                    if all(k_ not in self.pending or k_ in self.done_now or k_ not in self.prunable for k_ in keys)}
        kept, pruned = decide(self.policy, arm_values, step, protected=self.protected.get(group, set()) | finished)
        self.dead[group].update(pruned)
        self.decisions.append({"group": group, "rung": k, "step": step, "policy": self.policy.name,
                               "values": {a: v for a, v in arm_values}, "kept": kept, "pruned": pruned})
        if pruned:
            self.study.log(f"[{self.experiment}] halving at step {step} ({group}): keep {', '.join(kept)}; "
                           f"prune {', '.join(pruned)}")
        newly = self.pruned_keys() - self.done_now
        for key in newly:
            paused = self.paused.get(key)
            if paused is None:
                continue
            trial = self.trial_of[key]
            record = {"key": key, "status": "pruned", "pruned_at_step": int(paused.get("step") or step),
                      "rung_value": paused.get("rung_value"), "halving": self.halving.to_dict(),
                      "reason": f"successive halving ({self.policy.name}, eta {self.halving.eta}): behind at step "
                                f"{paused.get('step') or step}",
                      **{f: paused[f] for f in ("params", "train", "curve") if paused.get(f) is not None}}
            self.study._record(self.experiment, trial, record, self.labels)
            self.done_now.add(key)
            self.study.log(f"[{self.experiment}] {self.labels[key]}: pruned at step {record['pruned_at_step']} "
                           f"(val loss {record['rung_value']})")


# ----------------------------------------------------------------------------------------------- graph schedule
class _Aborted(Exception):
    """Another experiment of the graph failed or was interrupted: this one stops where it waits."""


class _Graph:
    """The shared state of one graph-scheduled run: the engine lock, which experiments are done, their errors,
    and the summaries as they were before this run (what the staged order shows of a later experiment)."""

    def __init__(self, study: Study, todo: list[str]):
        self.study, self.todo = study, list(todo)
        self.lock = threading.Lock()
        self.local = threading.local()
        self.done = {name: threading.Event() for name in todo}
        self.errors: list[BaseException] = []
        self.before = {n: e.get("summary") for n, e in study.results["experiments"].items() if e}

    def body(self, name: str, t_start: float) -> None:
        for dep in registry.get(name).EXPERIMENT.requires:  # what it declares it reads starts it
            if dep in self.done:
                self.done[dep].wait()
        self.lock.acquire()
        self.local.holding = True
        try:
            if not self.errors:
                self.study._run_experiment(name, self.todo, t_start)
        except _Aborted:
            pass
        except BaseException as exc:  # the main thread raises the first one once every thread is back
            self.errors.append(exc)
        finally:
            self.done[name].set()
            self.local.holding = False
            self.lock.release()

    @contextlib.contextmanager
    def unlocked(self):
        if not getattr(self.local, "holding", False):  # the main thread, or a helper thread
            yield
            return
        self.local.holding = False
        self.lock.release()
        try:
            yield
        finally:
            self.lock.acquire()
            self.local.holding = True
        if self.errors:
            raise _Aborted()

    def wait_for(self, name: str) -> None:
        if not self.done[name].is_set():
            with self.unlocked():
                self.done[name].wait()


class _Upstream(Mapping):
    """The upstream summaries one experiment of a graph run reads: an experiment before it in study order is
    waited for (per key read); a later one (or itself) is shown as it was before this run."""

    def __init__(self, graph: _Graph, name: str):
        self.graph, self.name = graph, name
        self.earlier = graph.todo[:graph.todo.index(name)]

    def _summary(self, key: str):
        if key in self.earlier:
            self.graph.wait_for(key)
        elif key in self.graph.todo:
            return self.graph.before.get(key)
        return (self.graph.study.results["experiments"].get(key) or {}).get("summary")

    def _all(self) -> dict:
        names = list(dict.fromkeys([*self.graph.study.results["experiments"], *self.graph.before]))
        return {k: v for k in names if (v := self._summary(k)) is not None}

    def __getitem__(self, key: str):
        value = self._summary(key)
        if value is None:
            raise KeyError(key)
        return value

    def __contains__(self, key) -> bool:
        return self._summary(key) is not None

    def __iter__(self):
        return iter(self._all())

    def __len__(self) -> int:
        return len(self._all())


class _CacheJob:
    """One cache's extraction: who started it, its result (an executor task's), its ref once registered."""

    def __init__(self, ident: str, name: str, spec: dict, rel: str):
        self.ident, self.name, self.spec, self.rel = ident, name, spec, rel
        self.started = False
        self.ref: dict | None = None
        self.result: dict | None = None
        self._event = threading.Event()

    def finish(self, raw: dict, exc: BaseException | None = None) -> None:
        if not self._event.is_set():
            self.result = raw
            self._event.set()

    def wait(self) -> None:
        self._event.wait()


def _caches_named(cfg: dict, specs: list[TrialSpec]) -> list[str]:
    """The cache names an experiment's listed trials read: training (its train cache or mix), validation and
    evaluation splits, in the order the first trials need them."""
    val_mix = [e.get("cache") for e in cfg.get("val_mix") or [] if isinstance(e, dict)]
    names = val_mix or [cfg.get("val_cache", "val")]
    mix = [e.get("cache") for e in cfg.get("train_mix") or [] if isinstance(e, dict)]
    default_splits = list(((cfg.get("eval") or {}).get("splits") or {"val": "val"}).values())
    for spec in specs:
        if spec.kind == "train":
            names += [spec.train_cache] if spec.train_cache else (mix or [cfg.get("train_cache", "train")])
        names += list((spec.splits or {}).values()) if spec.splits is not None else default_splits
    known = cfg.get("caches") or {}
    return [n for n in dict.fromkeys(names) if n in known]
