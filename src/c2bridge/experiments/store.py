"""The study's results store: ``RUN_DIR/results.yaml`` (opened or created, rewritten atomically) and the exports of
trial artifacts (best adapters, grids) under RUN_DIR. The on-disk shape is ``c2bridge.report.results``'s schema."""
from __future__ import annotations

import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Callable

from c2bridge._io import atomic_write_bytes, inside, to_plain
from c2bridge.report import results as res


class ResultsStore:
    def __init__(self, run_dir: str | Path, preset, command: str | None = None,
                 log: Callable[[str], None] = print):
        self.run_dir = Path(run_dir)
        self.log = log
        self.results = self._open(preset, command)
        self.last_save = time.monotonic()

    def _open(self, preset, command: str | None) -> dict:
        path = res.results_path(self.run_dir)
        if not path.is_file():
            return res.new_results(to_plain(preset), command=command)
        results = res.load_results(self.run_dir)
        have = (results.get("preset") or {}).get("name")
        if have != preset.name:
            raise ValueError(f"{self.run_dir} holds a {have!r} study; this run is {preset.name!r}: use another --out")
        results["study"]["command"] = command or results["study"].get("command")
        results["preset"] = to_plain(preset)  # this code's view of the preset and packages
        results["environment"] = res.environment()
        return results

    def save(self) -> None:
        from c2bridge.report.plan_schema import plan_block

        self.results.update(plan_block(self.results))  # the research plan's entry for this claim, kept current
        res.write_results(self.run_dir, self.results)
        self.last_save = time.monotonic()

    def store_trial(self, trial: dict, record: dict, experiment: str, label: str) -> None:
        """The trial's record under ``trials.<key>``, with every experiment label it is known by."""
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

    def export(self, src_rel: str | None, dest_rel: str) -> str | None:
        """Copy ``RUN_DIR/src_rel`` (file or dir) to ``RUN_DIR/dest_rel``: build a temp copy, then rename over."""
        if not src_rel:
            return None
        src = inside(self.run_dir, src_rel, "export source")  # both ends stay inside the study directory
        dest = inside(self.run_dir, dest_rel, "export name")
        if not src.exists():
            self.log(f"note: {src_rel} not found; {dest_rel} not written")
            return None
        dest.parent.mkdir(parents=True, exist_ok=True)
        if src.is_file():
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
