"""Open question 2 (plan §15): how many output tokens -- the query adapter with 77, 32, 16 and 8 learned queries
(the miniature: its 16 and the same ratios) at the 10M budget. The decoder takes a mask, so any count is legal; the
default count is E2.1's 10M trial."""
from c2bridge.experiments import _branches as br
from c2bridge.experiments._sweeps import sweep_module
from c2bridge.experiments.registry import ExperimentInfo

EXPERIMENT = ExperimentInfo(id="q2", order=16, title="Q2: Query count (output tokens)", group=br.GROUP)
OPTION = "n_tokens"
QUESTION = "Query count"
sweep_module(globals())
