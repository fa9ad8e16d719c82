"""Uncertainty for the study's numbers: bootstrap intervals that respect the design (seeds × evaluation samples,
paired where paired), verdicts that know their own uncertainty, the sequential design's next round, and the
scaling-law fit. numpy + scipy only (no torch). See docs/statistics.md.
"""
from c2bridge.stats.bootstrap import (
    Component,
    Interval,
    bootstrap_interval,
    difference_interval,
    efficiency_interval,
    mean_interval,
    plateau_ratio,
    ratio_interval,
    relative_gain_interval,
)

__all__ = [
    "Component", "Interval", "bootstrap_interval", "difference_interval", "efficiency_interval", "mean_interval",
    "plateau_ratio", "ratio_interval", "relative_gain_interval",
]
