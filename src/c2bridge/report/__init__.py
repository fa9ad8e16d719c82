"""Reports rendered from ``results.yaml`` alone: ``render(run_dir)`` writes the figures and ``FINDINGS.md``.

``c2bridge report RUN_DIR`` calls it; so does ``c2bridge run`` at the end of every run.
"""
from __future__ import annotations

from pathlib import Path

from c2bridge._io import atomic_write_text
from c2bridge.report import findings, plots
from c2bridge.report.results import load_results

FINDINGS_FILE = "FINDINGS.md"


def render(run_dir: str | Path) -> dict:
    """Load and validate ``RUN_DIR/results.yaml``, draw every figure, write ``FINDINGS.md`` (atomically).

    Returns ``{"findings": path, "figures": {name: relative path}}``.
    """
    run_dir = Path(run_dir)
    results = load_results(run_dir)
    figs = plots.render_all(results, run_dir)
    path = run_dir / FINDINGS_FILE
    atomic_write_text(path, findings.render(results, figs))
    return {"findings": str(path), "figures": figs}


__all__ = ["render", "FINDINGS_FILE"]
