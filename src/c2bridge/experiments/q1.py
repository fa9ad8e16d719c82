"""Open question 1 (plan §15): the optimal bottleneck dimension -- the bottleneck adapter's fusion width swept at
the 10M budget (the budget solver re-solves the MLP width, so every arm has the same parameter count); the
default-width arm is E2.2's bottleneck trial."""
from c2bridge.experiments import _branches as br
from c2bridge.experiments._sweeps import sweep_module
from c2bridge.experiments.registry import ExperimentInfo

EXPERIMENT = ExperimentInfo(id="q1", order=15, title="Q1: Bottleneck width", group=br.GROUP)
OPTION = "width"
QUESTION = "Bottleneck width"
sweep_module(globals())
