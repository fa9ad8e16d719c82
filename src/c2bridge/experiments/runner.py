"""The study runner: experiment configs, caches, trials through an executor, results.yaml, verdicts, reports.

``Study(run_dir, preset).run(["e2.1", ...])`` runs each experiment module's ``run(ctx)`` in plan order. Modules
describe trials (label + resolved config) and turn their results into a summary; the runner does the rest:
hashing, skipping what is done, resuming what is not, recording failures and going on, writing ``results.yaml``
after every trial, then verdicts (``criteria.yaml``), the §6.4 decisions, Gate 2 and the reports.

The heavy parts (feature extraction, training, evaluation) sit behind a ``Backend`` so the runner is testable with a
fake one: ``backend.trial_fn`` (pure: trial dict in, result dict out), ``backend.prepare_cache``,
``backend.models()``, ``backend.resolve_distance()``.
"""
from __future__ import annotations

import copy
import importlib
import time
from importlib import resources
from pathlib import Path
from typing import Any, Callable, Iterable, Protocol

from c2bridge._io import read_yaml, stable_hash
from c2bridge.experiments import criteria as crit
from c2bridge.experiments.trials import (StudyInterrupted, make_trial, needs_run, normalize_result, read_record,
                                         write_record)
from c2bridge.report import results as res

ORDER = ("e2.1", "e2.2", "e2.3", "e2.4")
MODULES = {name: f"c2bridge.experiments.{name.replace('.', '_')}" for name in ORDER}
# what each experiment reads from the ones before it (run first when their summary is missing)
REQUIRES = {"e2.1": (), "e2.2": (), "e2.3": ("e2.2",), "e2.4": ("e2.1", "e2.2", "e2.3")}
CACHE_DIR = "cache"
SAVE_EVERY_S = 15.0  # results.yaml is rewritten at most this often while trials run (and after every batch)


# ----------------------------------------------------------------------------------------------------- configs
def config_dir() -> Path:
    return Path(str(resources.files("c2bridge") / "configs" / "experiments"))


def normalize_names(names: Iterable[str]) -> list[str]:
    """``all`` / ``e2.1`` / ``e2_1`` / ``E2.1`` -> plan-ordered unique ids."""
    wanted = set()
    for raw in names:
        name = raw.strip().lower().replace("_", ".")
        if name == "all":
            wanted.update(ORDER)
        elif name in ORDER:
            wanted.add(name)
        else:
            raise ValueError(f"unknown experiment {raw!r}; expected one of {', '.join(ORDER)} or all")
    return [n for n in ORDER if n in wanted]


def deep_merge(base: dict, patch: dict) -> dict:
    out = copy.deepcopy(base)
    for k, v in (patch or {}).items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = deep_merge(out[k], v)
        else:
            out[k] = copy.deepcopy(v)
    return out


def set_dotted(d: dict, path: str, value: Any) -> None:
    parts = path.split(".")
    for p in parts[:-1]:
        if not isinstance(d.get(p), dict):
            d[p] = {}
        d = d[p]
    d[parts[-1]] = value


def parse_overrides(items: Iterable[str]) -> tuple[dict, dict]:
    """``key=value`` (value parsed as YAML) -> (for every experiment, per experiment).

    A key starting with an experiment id (``e2_1.seeds=[0]`` or ``e2.1.seeds=[0]``) applies to that one only.
    """
    import yaml

    common: dict = {}
    per: dict = {n: {} for n in ORDER}
    for item in items or ():
        key, sep, raw = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise ValueError(f"override {item!r} is not key=value (e.g. recipe.steps=50 or e2_1.seeds=[0])")
        try:
            value = yaml.safe_load(raw)
        except yaml.YAMLError as exc:
            raise ValueError(f"override {item!r}: value is not valid YAML ({exc.__class__.__name__})") from None
        target = common
        for name in ORDER:
            for prefix in (name + ".", name.replace(".", "_") + "."):
                if key.lower().startswith(prefix):
                    target, key = per[name], key[len(prefix):]
                    break
            if target is not common:
                break
        target[key] = value
    return common, per


def load_experiment_config(name: str, preset: str, overrides: Iterable[str] = (), directory: str | Path | None = None) -> dict:
    """``<exp>.<preset>.yaml`` merged over its ``base`` (``common.<preset>.yaml``), then the overrides."""
    directory = Path(directory) if directory else config_dir()
    stem = name.replace(".", "_")
    path = directory / f"{stem}.{preset}.yaml"
    if not path.is_file():
        have = sorted(p.name for p in directory.glob(f"{stem}.*.yaml"))
        raise ValueError(f"no {name} config for preset {preset!r}: expected {path} (found: {', '.join(have) or 'none'})")
    cfg = read_yaml(path) or {}
    base = cfg.pop("base", None)
    if base:
        base_path = directory / f"{base}.{preset}.yaml"
        if not base_path.is_file():
            raise FileNotFoundError(f"{path} names base {base!r} but {base_path} does not exist")
        cfg = deep_merge(read_yaml(base_path) or {}, cfg)
    common, per = parse_overrides(overrides)
    for key, value in list(common.items()) + list(per[name].items()):
        set_dotted(cfg, key, value)
    cfg["_source"] = str(path)
    return cfg


# ----------------------------------------------------------------------------------------------------- backend
class Backend(Protocol):
    """The heavy side of a study (the real one is ``c2bridge.experiments.backend.TorchBackend``)."""

    trial_fn: Callable[[dict], dict]

    def models(self, preset: str) -> dict: ...  # ids / revisions / fingerprints of the frozen models

    def resolve_distance(self, requested: str) -> dict: ...  # {"name", "reason"}

    def prepare_cache(self, preset: str, spec: dict, out: Path) -> dict: ...  # -> {"key", "n", ...}


# ----------------------------------------------------------------------------------------------------- context
class StudyContext:
    """What an experiment module sees: its config, the preset, caches, trials, and earlier summaries."""

    def __init__(self, study: "Study", name: str, cfg: dict):
        self.study = study
        self.name = name
        self.cfg = cfg
        self.preset = study.preset
        self.results = study.results
        self.criteria = study.criteria
        self.run_dir = study.run_dir
        self.log = study.log

    # --- caches -------------------------------------------------------------------------------------------
    def cache(self, name: str) -> dict:
        """``{"key", "path"}`` of a named cache (``caches.<name>`` in the config), extracting it on first use."""
        return self.study.cache(name, self.cfg)

    # --- trial configs ------------------------------------------------------------------------------------
    def budget(self, name: str) -> float:
        budgets = self.preset.budgets
        if name not in budgets:
            raise ValueError(f"unknown budget {name!r} for preset {self.preset.name}; expected one of {list(budgets)}")
        return float(budgets[name])

    def eval_spec(self, splits: dict | None = None) -> dict:
        """The evaluation every trained trial gets (identical across experiments, so trials are shared);
        ``splits`` (split name -> cache name) replaces ``eval.splits`` for evaluation-only trials."""
        ev = dict(self.cfg.get("eval") or {})
        default = ev.pop("splits", {"val": "val"})
        splits = default if splits is None else splits
        if self.cfg.get("threads") is not None:
            ev.setdefault("threads", int(self.cfg["threads"]))
        return {
            **ev,
            "distance": self.study.distance["name"],
            "splits": {split: self.cache(cache_name) for split, cache_name in splits.items()},
        }

    def train_config(self, kind: str, budget: str, seed: int, patch: dict | None = None,
                     train_cache: str | None = None) -> dict:
        """The resolved config of one training trial.

        ``train`` is the trainer's fully resolved ``TrainConfig`` (preset recipe defaults <- the experiment's
        ``recipe`` <- adapter/seed/data <- ``patch``, dotted TrainConfig keys), so a change anywhere in the recipe
        changes the trial key; cache paths are relative to RUN_DIR.
        """
        from c2bridge.train.config import config_to_dict, load_config

        train_ref = self.cache(train_cache or self.cfg.get("train_cache", "train"))
        val_ref = self.cache(self.cfg.get("val_cache", "val"))
        user = deep_merge(self.cfg.get("recipe") or {}, {
            "preset": self.preset.name,
            "seed": int(seed),
            "adapter": {"kind": kind, "budget": budget},
            "data": {"train_cache": train_ref["path"], "val_cache": val_ref["path"]},
            "log": {"progress_bar": False},
        })
        for key, value in (patch or {}).items():
            set_dotted(user, key, value)
        resolved = config_to_dict(load_config(user))
        return {
            "kind": "train",
            "preset": self.preset.name,
            "models": self.study.models_fingerprint,
            "budget_params": self.budget(budget),
            "caches": {"train": train_ref["key"], "val": val_ref["key"]},
            "train": resolved,
            "eval": self.eval_spec(),
        }

    def reference_config(self, reference: str, kind: str | None = None, budget: str | None = None,
                         seed: int = 0, splits: dict | None = None) -> dict:
        """An evaluation-only trial: ``caption`` (the decoder's own caption conditioning, the mini world's
        "ceiling"), ``zero`` (zero conditioning) or ``untrained`` (an adapter at init, never trained)."""
        if reference not in ("caption", "zero", "untrained"):
            raise ValueError(f"unknown reference {reference!r}; expected caption, zero or untrained")
        config = {
            "kind": "reference",
            "reference": reference,
            "preset": self.preset.name,
            "models": self.study.models_fingerprint,
            "eval": self.eval_spec(splits),
        }
        if reference == "untrained":
            config["train"] = self.train_config(kind or "query", budget or "10m", seed)["train"]
            config["budget_params"] = self.budget(budget or "10m")
        return config

    def evaluate_config(self, record: dict, splits: dict) -> dict | None:
        """An evaluation-only trial of a finished training trial's adapter on more splits (e.g. E2.4's held-out
        and train-split evaluations), so the training trial stays shared with the experiments that skip them."""
        adapter = (record.get("artifacts") or {}).get("adapter")
        if record.get("status") != "completed" or not adapter:
            return None
        return {
            "kind": "evaluate",
            "preset": self.preset.name,
            "models": self.study.models_fingerprint,
            "of": record["key"],
            "adapter": adapter,
            "eval": self.eval_spec(splits),
        }

    # --- exports ------------------------------------------------------------------------------------------
    def export_dir(self, src_rel: str | None, dest_rel: str) -> str | None:
        """Copy a trial's directory (e.g. its best adapter) to ``RUN_DIR/dest_rel``, replacing it atomically."""
        return self.study.export(src_rel, dest_rel)

    def export_file(self, src_rel: str | None, dest_rel: str) -> str | None:
        return self.study.export(src_rel, dest_rel)

    # --- running ------------------------------------------------------------------------------------------
    def run_trials(self, specs: list[tuple[str, dict]]) -> dict[str, dict]:
        """Run (or find done) each ``(label, config)``; returns label -> trial record (status, metrics, ...)."""
        return self.study.run_trials(self.name, specs)

    def summary_of(self, experiment: str) -> dict | None:
        exp = self.results["experiments"].get(experiment) or {}
        return exp.get("summary")

    def seed_spread(self, budget: str) -> float | None:
        """E2.1's seed spread (sd of the val distance over its seeds) at ``budget``: what a difference between two
        single-seed arms at that budget must exceed to count (None when E2.1 did not train that budget)."""
        return ((self.summary_of("e2.1") or {}).get("distance_std_by_budget") or {}).get(budget)

    def criterion(self, name: str) -> dict:
        return ((self.criteria.get("experiments") or {}).get(self.name) or {}).get(name) or {}


# ----------------------------------------------------------------------------------------------------- study
class Study:
    def __init__(self, run_dir: str | Path, preset: str = "mini", overrides: Iterable[str] = (),
                 executor: str = "local", retry_failed: bool = False, backend: Backend | None = None,
                 executor_options: dict | None = None,
                 config_directory: str | Path | None = None, criteria_path: str | Path | None = None,
                 log: Callable[[str], None] = print, command: str | None = None, render: bool = True):
        from c2bridge.presets import get_preset

        self.preset = get_preset(preset)
        self.run_dir = Path(run_dir)
        self.overrides = list(overrides or ())
        self.retry_failed = retry_failed
        self.config_directory = config_directory
        self.log = log
        self.render = render
        self.criteria = crit.load_criteria(criteria_path)
        from c2bridge.experiments.executors import get_executor

        self.executor = get_executor(executor, **(executor_options or {}))
        if backend is None:
            from c2bridge.experiments.backend import TorchBackend

            backend = TorchBackend()
        self.backend = backend
        self.results = self._open_results(command)
        self._caches: dict[str, dict] = {}
        self._last_save = time.monotonic()
        self.n_run = self.n_reused = 0  # trials dispatched / found done in this invocation
        self.distance: dict = {}
        self.models_fingerprint: str | None = None

    # --- results.yaml -------------------------------------------------------------------------------------
    def _open_results(self, command: str | None) -> dict:
        path = res.results_path(self.run_dir)
        if path.is_file():
            results = res.load_results(self.run_dir)
            have = (results.get("preset") or {}).get("name")
            if have != self.preset.name:
                raise ValueError(
                    f"{self.run_dir} holds a {have!r} study; this run is {self.preset.name!r}: use another --out"
                )
            results["study"]["command"] = command or results["study"].get("command")
            from c2bridge._io import to_plain

            results["preset"] = to_plain(self.preset)  # this code's view of the preset and packages
            results["environment"] = res.environment()
            return results
        from c2bridge._io import to_plain

        preset = to_plain(self.preset)
        return res.new_results(preset, command=command)

    def save(self) -> None:
        res.write_results(self.run_dir, self.results)
        self._last_save = time.monotonic()

    # --- study-wide setup ---------------------------------------------------------------------------------
    def _setup(self, cfg: dict) -> None:
        if self.models_fingerprint is not None:
            return
        configure = getattr(self.backend, "configure", None)
        if configure is not None:
            configure(cfg)  # e.g. CPU threads for extraction and evaluation in this process
        models = self.backend.models(self.preset.name)
        self.results["models"] = models
        self.models_fingerprint = stable_hash(models)
        requested = (cfg.get("eval") or {}).get("distance", "auto")
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
        ref = {"key": str(info["key"]), "path": rel}
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
            by_label[label] = trial
            if trial["key"] in pending:
                continue
            record = read_record(trial)
            if needs_run(record, self.retry_failed):
                pending[trial["key"]] = trial
            else:
                self._store(trial, record, experiment, label)
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
            self._store(trial, record, experiment, labels[trial["key"]])
            if time.monotonic() - self._last_save > SAVE_EVERY_S:  # trial.json is the durable record; this is progress
                self.save()
            done += 1
            self.log(f"[{experiment}] {done}/{len(pending)} {labels[trial['key']]}: {_one_line(record)}")
        if pending:
            self.save()
        return {label: {**self.results["trials"][t["key"]], "key": t["key"]} for label, t in by_label.items()}

    def export(self, src_rel: str | None, dest_rel: str) -> str | None:
        """Copy ``RUN_DIR/src_rel`` (file or dir) to ``RUN_DIR/dest_rel``: build a temp copy, then rename over."""
        import os
        import shutil
        import tempfile

        if not src_rel:
            return None
        src = self.run_dir / src_rel
        if not src.exists():
            self.log(f"note: {src_rel} not found; {dest_rel} not written")
            return None
        dest = self.run_dir / dest_rel
        dest.parent.mkdir(parents=True, exist_ok=True)
        if src.is_file():
            from c2bridge._io import atomic_write_bytes

            atomic_write_bytes(dest, src.read_bytes())
            return dest_rel
        tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", dir=dest.parent))
        try:
            shutil.copytree(src, tmp, dirs_exist_ok=True)
            if dest.exists():
                old = dest.with_name(f".{dest.name}.old")
                shutil.rmtree(old, ignore_errors=True)
                os.replace(dest, old)
                os.replace(tmp, dest)
                shutil.rmtree(old, ignore_errors=True)
            else:
                os.replace(tmp, dest)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        return dest_rel

    def _store(self, trial: dict, record: dict, experiment: str, label: str) -> None:
        previous = self.results["trials"].get(trial["key"]) or {}
        labels = dict(previous.get("labels") or {})
        labels[experiment] = label
        self.results["trials"][trial["key"]] = {
            **{k: v for k, v in record.items() if k not in ("key", "traceback")},
            "status": record["status"],
            "labels": labels,
            "run_dir": str(Path(trial["run_dir"]).relative_to(self.run_dir)),
            "config": trial["config"],
        }

    # --- experiments --------------------------------------------------------------------------------------
    def experiment_config(self, name: str) -> dict:
        return load_experiment_config(name, self.preset.name, self.overrides, self.config_directory)

    def run(self, names: Iterable[str]) -> dict:
        wanted = normalize_names(names)
        todo: list[str] = []
        for name in wanted:  # pull in what each needs, unless an earlier run already summarized it
            for dep in REQUIRES[name]:
                if dep not in todo and dep not in wanted and not (self.results["experiments"].get(dep) or {}).get("summary"):
                    self.log(f"{name} needs {dep}'s result: running {dep} first")
                    todo.append(dep)
            todo.append(name)
        todo = [n for n in ORDER if n in todo]
        t_start = time.perf_counter()
        for name in todo:
            cfg = self.experiment_config(name)
            self._setup(cfg)
            module = importlib.import_module(MODULES[name])
            ctx = StudyContext(self, name, cfg)
            t0 = time.perf_counter()
            self.log(f"== {name}: {module.TITLE}")
            protocol = self._protocol(name, module, cfg)  # before the trials: the recipe they are resolved from
            record = module.run(ctx)
            record["title"] = module.TITLE
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
        if self.render:
            from c2bridge.report import render

            render(self.run_dir)
        return self.results

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
        preset = self.results["preset"]
        distance = (self.results.get("distance") or {}).get("name")
        summaries = {n: e["summary"] for n, e in self.results["experiments"].items() if e.get("summary") is not None}
        verdicts = {}
        for name, summary in summaries.items():
            v = crit.assess(summary, (self.criteria.get("experiments") or {}).get(name) or {}, preset, distance)
            self.results["experiments"][name]["verdicts"] = v
            verdicts[name] = v
        decisions = crit.decisions(summaries, self.criteria, preset, distance)
        self.results["decisions"] = decisions
        self.results["gate2"] = crit.gate2(summaries, verdicts, decisions, self.criteria, preset)
        if preset.get("is_miniature"):
            values = {}
            for summary in summaries.values():
                values.update(summary.get("miniature_checks") or {})
            checks = {k: c for k, c in (self.criteria.get("miniature_checks") or {}).items() if k in values}
            self.results["miniature_checks"] = crit.assess(values, checks, preset, distance)
            failed = [k for k, v in self.results["miniature_checks"].items() if v["verdict"] == "fail"]
            if failed:  # ratios of numbers that do not respond to the adapter say nothing
                self.results["gate2"]["valid"] = False
                self.results["gate2"]["caveat"] = (
                    "not meaningful: the miniature's own checks failed (" + ", ".join(failed) + "), i.e. its "
                    "adapters do not clearly beat an untrained adapter / zero conditioning or its scaling curve is "
                    "flat, so param_efficiency compares numbers that barely respond to the adapter")


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
