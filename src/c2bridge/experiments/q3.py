"""Open question 3 (plan §15): spatial positional information -- no position embedding on the DINOv2 patches,
the learned 2-D embedding (the default: E2.1's 10M trial) and a fixed 2-D sin-cos table, at the 10M budget."""
from c2bridge.experiments import _branches as br
from c2bridge.experiments._sweeps import sweep_module
from c2bridge.experiments.registry import ExperimentInfo

EXPERIMENT = ExperimentInfo(id="q3", order=17, title="Q3: Positional encoding", group=br.GROUP)
OPTION = "pos_emb"
QUESTION = "Positional encoding"
sweep_module(globals())
