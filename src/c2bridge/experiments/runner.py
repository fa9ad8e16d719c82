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

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Protocol

from c2bridge._io import stable_hash
from c2bridge.experiments import criteria as crit
from c2bridge.experiments import registry
from c2bridge.experiments.context import StudyContext
from c2bridge.experiments.registry import experiment_overrides, load_experiment_config, normalize_names
from c2bridge.experiments.store import ResultsStore
from c2bridge.experiments.trials import (StudyInterrupted, TrialRecord, TrialSpec, make_trial, needs_run, normalize_result,
                                         read_record, write_record)

__all__ = ["Study", "StudyContext", "Backend", "DryRunRow", "load_experiment_config", "normalize_names",
           "parse_overrides"]

CACHE_DIR = "cache"
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
                 dry: bool = False):
        from c2bridge.presets import get_preset

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
        if dry:
            backend = _RecordedBackend(self.results, self.run_dir)
            self.executor = None
        else:
            from c2bridge.experiments.executors import get_executor

            self.executor = get_executor(executor, **(executor_options or {}))
        if backend is None:
            from c2bridge.experiments.backend import TorchBackend

            backend = TorchBackend()
        self.backend = backend
        self._caches: dict[str, dict] = {}
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

    def cache(self, name: str, cfg: dict) -> dict:
        specs = cfg.get("caches") or {}
        if name not in specs:
            raise ValueError(f"cache {name!r} is not defined under 'caches' in {cfg.get('_source')}; have {sorted(specs)}")
        spec = {k: v for k, v in specs[name].items() if v is not None}
        ident = stable_hash({"preset": self.preset.name, "models": self.models_fingerprint, **spec})
        if ident in self._caches:
            return self._caches[ident]
        parts = [spec.get("dataset", "data"), spec.get("split", name)] + ([str(spec["augment"])] if spec.get("augment") else [])
        rel = f"{CACHE_DIR}/{'-'.join(parts)}-{ident}"
        t0 = time.perf_counter()
        info = self.backend.prepare_cache(self.preset.name, spec, self.run_dir / rel)
        ref = {"key": None if info["key"] is None else str(info["key"]), "path": rel}
        if not self.dry:
            previous = self.results["caches"].get(name)
            entry_name = name if previous is None or previous.get("path") == rel else f"{name}@{ident}"
            dt = time.perf_counter() - t0
            self.results["caches"][entry_name] = {**spec, **{k: v for k, v in info.items() if k != "key"}, **ref,
                                                  "seconds": round(dt, 1)}  # extraction (or finding it done) this run
            if dt > 1.0:
                self.log(f"cache {name}: {info.get('n', '?')} items in {dt:.1f}s -> {rel}")
        self._caches[ident] = ref
        return ref

    # --- trials -------------------------------------------------------------------------------------------
    def run_trials(self, experiment: str, specs: list[tuple[str, dict]]) -> dict[str, dict]:
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
            if needs_run(record, self.retry_failed):
                pending[trial["key"]] = trial
            else:
                self.store.store_trial(trial, record, experiment, label)
        skipped = len({t["key"] for t in by_label.values()}) - len(pending)
        self.n_run += len(pending)
        self.n_reused += skipped
        if skipped:
            self.log(f"[{experiment}] {skipped} trial(s) already done, skipped")
        labels = {t["key"]: lbl for lbl, t in by_label.items()}
        done = 0
        for raw in self.executor.run(self.backend.trial_fn, list(pending.values())):
            trial = pending.get(raw.get("key"))
            if trial is None:  # an executor must echo the key; anything else is a bug there
                raise RuntimeError(f"executor returned a result for unknown trial {raw.get('key')!r}")
            record = normalize_result(raw, trial)
            if record["status"] == "interrupted":  # SIGTERM: not an outcome; stop here, a re-run resumes it
                self.save()
                self.log(f"[{experiment}] {labels[trial['key']]}: interrupted ({record.get('reason') or 'SIGTERM'})")
                raise StudyInterrupted(f"{labels[trial['key']]} was interrupted and checkpointed; run the same "
                                       "command again to resume")
            write_record(trial, record)
            self.store.store_trial(trial, record, experiment, labels[trial["key"]])
            if time.monotonic() - self.store.last_save > SAVE_EVERY_S:  # trial.json is the durable record
                self.save()
            done += 1
            self.log(f"[{experiment}] {done}/{len(pending)} {labels[trial['key']]}: {_one_line(record)}")
        if pending:
            self.save()
        return {label: {**self.results["trials"][t["key"]], "key": t["key"]} for label, t in by_label.items()}

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
        t_start = time.perf_counter()
        for name in todo:
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
            self.results["experiments"][name] = record
            self.assess()
            self.results["study"]["last_run"] = {
                "experiments": todo, "wall_s": round(time.perf_counter() - t_start, 1),
                "trials_run": self.n_run, "trials_reused": self.n_reused,
            }
            self.save()
        figures: list = []
        if self.render:
            from c2bridge.report import render

            figures = [self.run_dir / f for f in render(self.run_dir)["figures"].values() if isinstance(f, str)]
        if todo:  # the study-level W&B / TensorBoard run, when the recipe turns tracking on
            from c2bridge.train.logging import log_study_summary

            log = (self.experiment_config(todo[-1]).get("recipe") or {}).get("log") or {}
            log_study_summary(self.run_dir, self.results, log, figures=figures)
        return self.results

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
        done = record is not None and not needs_run(record, self.retry_failed)
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
