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
from c2bridge.stats.records import arm_table, pair_intervals, paired_tables
from c2bridge.stats.scaling import ScalingFit, SizePrediction, fit_scaling, scaling_band, smallest_passing_size
from c2bridge.stats.sequential import ArmState, Costs, RoundPlan, next_round
from c2bridge.stats.verdicts import ConfidentVerdict, Settle, confident_verdict, line_criterion, settle

__all__ = [
    "ArmState", "Component", "ConfidentVerdict", "Costs", "Interval", "RoundPlan", "ScalingFit", "Settle",
    "SizePrediction", "arm_table", "bootstrap_interval", "confident_verdict", "difference_interval",
    "efficiency_interval", "fit_scaling", "line_criterion", "mean_interval", "next_round", "pair_intervals",
    "paired_tables",
    "plateau_ratio", "ratio_interval", "relative_gain_interval", "scaling_band", "settle", "smallest_passing_size",
]
