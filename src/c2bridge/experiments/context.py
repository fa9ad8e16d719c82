"""What an experiment module sees while it runs: its config, the preset, caches, earlier summaries, and
``run_trials`` (TrialSpecs in, trial records out). Resolving a ``TrialSpec`` into the config its key hashes
happens here, so every experiment's trials are built the same way.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Iterable, Mapping

from c2bridge.config import deep_merge, resolve_budget, set_dotted
from c2bridge.experiments.halving import Halving
from c2bridge.experiments.trials import TrialRecord, TrialSpec
from c2bridge.names import REFERENCES

if TYPE_CHECKING:  # pragma: no cover
    from c2bridge.experiments.runner import Study


class StudyContext:
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

    # --- resolving trials ---------------------------------------------------------------------------------
    def budget(self, name: str | float) -> float:
        return resolve_budget(name, self.preset)

    def eval_spec(self, splits: dict | None = None) -> dict:
        """The evaluation every trained trial gets (identical across experiments, so trials are shared);
        ``splits`` (split name -> cache name) replaces ``eval.splits`` for evaluation-only trials."""
        ev = dict(self.cfg.get("eval") or {})
        default = ev.pop("splits", {"val": "val"})
        splits = default if splits is None else splits
        threads = self.cfg.get("threads") if self.cfg.get("threads") is not None else self.study.trial_threads
        if threads is not None:  # the config's, else the executor's choice: the last digits depend on it
            ev.setdefault("threads", int(threads))
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
        from c2bridge.recipe import config_to_dict

        val_mix = self.val_mix()
        if val_mix:  # a validation mix (``val_mix``: cache names) -> data.val_mix
            val_refs = {entry["cache"]: self.cache(entry["cache"]) for entry in val_mix}
            data_val_mix = [{"cache": ref["path"], "name": name} for name, ref in val_refs.items()]
            val_caches, val_path = {f"val/{name}": ref["key"] for name, ref in val_refs.items()}, None
        else:
            val_ref = self.cache(self.cfg.get("val_cache", "val"))
            data_val_mix, val_caches, val_path = None, {"val": val_ref["key"]}, val_ref["path"]
        mix = self.train_mix(train_cache)
        if mix:  # a mixed training set (``train_mix``: cache names + weights) -> data.mix
            refs = {entry["cache"]: self.cache(entry["cache"]) for entry in mix}
            data_mix = [{"cache": refs[e["cache"]]["path"], "weight": float(e["weight"]), "name": e["cache"]}
                        for e in mix]
            caches = {**{f"train/{name}": ref["key"] for name, ref in refs.items()}, **val_caches}
            resolved = config_to_dict(self._recipe(kind, budget, int(seed), patch, None, val_path,
                                                   mix=data_mix, val_mix=data_val_mix))
        else:
            train_ref = self.cache(train_cache or self.cfg.get("train_cache", "train"))
            caches = {"train": train_ref["key"], **val_caches}
            resolved = config_to_dict(self._recipe(kind, budget, int(seed), patch, train_ref["path"], val_path,
                                                   val_mix=data_val_mix))
        return {
            "kind": "train",
            "preset": self.preset.name,
            "models": self.study.models_fingerprint,
            "budget_params": self.budget(budget),
            "caches": caches,
            "train": resolved,
            "eval": self.eval_spec(),
        }

    def train_mix(self, train_cache: str | None = None) -> list[dict]:
        """The experiment's mixed training set (``train_mix: [{cache: NAME, weight: W}, ...]``), unless a trial
        names its own ``train_cache`` (e.g. E2.3's augmented views) -> [] (train on that one cache)."""
        if train_cache is not None:
            return []
        mix = self.cfg.get("train_mix") or []
        for i, entry in enumerate(mix):
            if not isinstance(entry, dict) or "cache" not in entry or "weight" not in entry:
                raise ValueError(f"{self.name}: train_mix[{i}]={entry!r}: expected {{cache: NAME, weight: W}} "
                                 f"(NAME under 'caches', W > 0)")
        return list(mix)

    def val_mix(self) -> list[dict]:
        """The experiment's validation mix (``val_mix: [{cache: NAME}, ...]``; it replaces ``val_cache``) -> []
        (validate on ``val_cache``)."""
        mix = self.cfg.get("val_mix") or []
        names = [entry.get("cache") if isinstance(entry, dict) else None for entry in mix]
        for i, entry in enumerate(mix):
            if not isinstance(entry, dict) or set(entry) != {"cache"}:
                raise ValueError(f"{self.name}: val_mix[{i}]={entry!r}: expected {{cache: NAME}} (NAME under 'caches')")
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"{self.name}: val_mix names {dupes} more than once; expected each cache once")
        return list(mix)

    def _recipe(self, kind: str, budget, seed: int, patch: dict | None, train_path: str | None,
                val_path: str | None, mix: list | None = None, val_mix: list | None = None):
        """The trainer's TrainConfig of one trial: preset recipe defaults <- ``recipe`` <- adapter/seed/data <-
        ``patch`` (dotted keys); ValueError naming every bad key."""
        from c2bridge.recipe import load_config

        data = {"train_cache": train_path, "val_cache": val_path}
        if mix:
            data["mix"] = mix
        if val_mix:
            data["val_mix"] = val_mix
        user = deep_merge(self.cfg.get("recipe") or {}, {
            "preset": self.preset.name,
            "seed": seed,
            "adapter": {"kind": kind, "budget": budget},
            "data": data,
            "log": {"progress_bar": False},
        })
        for key, value in (patch or {}).items():
            set_dotted(user, key, value)
        cfg = load_config(user)
        if cfg.threads is None and self.study.trial_threads is not None:  # the executor's choice, in the key
            cfg.threads = int(self.study.trial_threads)
        return cfg

    def check(self, spec: TrialSpec, built: set | None = None) -> None:
        """Everything about a trial that can be wrong without caches or models: its seed, budget and TrainConfig
        values, and whether its adapter can be built (on the meta device: no memory, no weights). ValueError
        naming the trial; nothing is extracted or written. ``built``: adapter configs already checked."""
        if spec.kind == "evaluate":
            return
        where = f"{self.name} trial {spec.label!r}"
        if isinstance(spec.seed, bool) or not isinstance(spec.seed, int) or spec.seed < 0:
            raise ValueError(f"{where}: seed {spec.seed!r}: expected an integer >= 0")
        if spec.kind == "reference" and spec.reference not in REFERENCES:
            raise ValueError(f"{where}: unknown reference {spec.reference!r}; expected one of {', '.join(REFERENCES)}")
        if spec.kind == "reference" and spec.reference != "untrained":
            return
        kind, budget = spec.adapter or self.cfg.get("kind", "query"), spec.budget or "10m"
        try:
            mix = [{**e, "cache": f"<{e['cache']} cache>"} for e in self.train_mix(spec.train_cache)]
            val_mix = [{"cache": f"<{e['cache']} cache>", "name": e["cache"]} for e in self.val_mix()]
            cfg = self._recipe(kind, budget, spec.seed, dict(spec.patch) if spec.kind == "train" else None,
                               None if mix else "<train cache>", None if val_mix else "<val cache>", mix=mix,
                               val_mix=val_mix)
        except ValueError as exc:
            raise ValueError(f"{where}: {exc}") from None
        identity = repr((cfg.adapter, cfg.preset))
        if built is not None and identity in built:
            return
        import torch

        from c2bridge.train.loop import build_adapter_from_config

        try:
            with torch.device("meta"):
                build_adapter_from_config(cfg)
        except Exception as exc:  # the adapter's own check (or its arithmetic) on a user-chosen option
            raise ValueError(f"{where}: adapter {kind!r} at budget {budget!r} with options "
                             f"{cfg.adapter.overrides or {}} cannot be built ({type(exc).__name__}: {exc})") from None
        if built is not None:
            built.add(identity)

    def reference_config(self, reference: str, kind: str | None = None, budget: str | None = None,
                         seed: int = 0, splits: dict | None = None) -> dict:
        """An evaluation-only trial: ``caption`` (the decoder's own caption conditioning, the mini world's
        "ceiling"), ``zero`` (zero conditioning) or ``untrained`` (an adapter at init, never trained)."""
        if reference not in REFERENCES:
            raise ValueError(f"unknown reference {reference!r}; expected one of {', '.join(REFERENCES)}")
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

    def evaluate_config(self, record: "TrialRecord | dict", splits: dict, n_samples: int | None = None) -> dict | None:
        """An evaluation-only trial of a finished training trial's adapter on more splits (e.g. E2.4's held-out
        and train-split evaluations) or more samples (``n_samples``: the sequential design), so the training trial
        stays shared with the experiments that skip them."""
        record = TrialRecord.from_dict(record)
        if not record.completed or not record.adapter:
            return None
        ev = self.eval_spec(splits)
        if n_samples is not None:
            ev["n_samples"] = int(n_samples)
        return {
            "kind": "evaluate",
            "preset": self.preset.name,
            "models": self.study.models_fingerprint,
            "of": record.key,
            "adapter": record.adapter,
            "eval": ev,
        }

    def resolve(self, spec: TrialSpec, records: "dict[str, TrialRecord] | None" = None) -> dict | None:
        """A TrialSpec -> the trial config its key hashes (None: an ``evaluate`` of a trial that did not finish)."""
        if spec.kind == "train":
            return self.train_config(spec.adapter or self.cfg.get("kind", "query"), spec.budget or "10m", spec.seed,
                                     patch=dict(spec.patch), train_cache=spec.train_cache)
        if spec.kind == "reference":
            return self.reference_config(spec.reference, kind=spec.adapter, budget=spec.budget, seed=spec.seed,
                                         splits=dict(spec.splits) if spec.splits is not None else None)
        record = (records or {}).get(spec.of)
        if record is None:
            raise ValueError(f"{self.name}: trial {spec.label!r} evaluates {spec.of!r}, which is not listed before it")
        return self.evaluate_config(record, dict(spec.splits or {}), spec.eval_samples)

    # --- running ------------------------------------------------------------------------------------------
    def run_trials(self, specs: Iterable[TrialSpec]) -> dict[str, TrialRecord]:
        """Run (or find done) every spec; returns label -> its TrialRecord.

        Training and reference trials go first; ``evaluate`` trials then run on the adapters those trained (one
        whose trial did not finish is left out of the result). Specs with a ``group`` are successive-halving arms
        when the experiment's ``halving.enabled`` is true (``c2bridge.experiments.halving``)."""
        specs = list(specs)
        first = [s for s in specs if s.kind != "evaluate"]
        competing = {s.label: s.competitor for s in first if s.competitor is not None and s.kind == "train"}
        records = self._run([(s.label, self.resolve(s)) for s in first], competing) if first else {}
        later = [s for s in specs if s.kind == "evaluate"]
        if later:
            resolved = [(s.label, self.resolve(s, records)) for s in later]
            records.update(self._run([(lbl, c) for lbl, c in resolved if c is not None]))
        return records

    def halving(self) -> Halving:
        """This experiment's ``halving:`` setting (off unless its config turns it on)."""
        return Halving.from_config(self.cfg, self.name)

    def _run(self, configs: list[tuple[str, dict]], competing: dict | None = None) -> dict[str, TrialRecord]:
        records = self.study.run_trials(self.name, configs, competing=competing or None, halving=self.halving())
        return {label: TrialRecord.from_dict(rec) for label, rec in records.items()}

    def upstream(self) -> "Mapping[str, dict]":
        """Every summarized experiment's summary (what ``trials(cfg, preset, upstream)`` reads): the summaries
        the staged order shows this experiment, also under the graph schedule (``Study.upstream_for``)."""
        return self.study.upstream_for(self.name)

    def summary_of(self, experiment: str) -> dict | None:
        return self.upstream().get(experiment)

    def criterion(self, name: str) -> dict:
        return ((self.criteria.get("experiments") or {}).get(self.name) or {}).get(name) or {}

    # --- exports ------------------------------------------------------------------------------------------
    def export_dir(self, src_rel: str | None, dest_rel: str) -> str | None:
        """Copy a trial's directory (e.g. its best adapter) to ``RUN_DIR/dest_rel``, replacing it atomically."""
        return self.study.store.export(src_rel, dest_rel)

    def export_file(self, src_rel: str | None, dest_rel: str) -> str | None:
        return self.study.store.export(src_rel, dest_rel)
