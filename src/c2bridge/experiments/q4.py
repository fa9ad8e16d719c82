"""Open question 4 (plan §15): stream weighting -- the VLM stream at weight w and DINOv2 at 1 − w
(w = 0, 0.3 (the default: E2.1's 10M trial), 0.5, 0.7, 1.0) and a learned gate, at the 10M budget.

In the miniature the VLM is a tiny Qwen2.5-VL trained on the shapes world's captions (``c2bridge mini build``; it
names colours, kinds and places), so the sweep asks the question in miniature there. On ``tiny`` both encoders are
random: the preset's note (``Preset.report_note("stream_weighting")``) says the sweep cannot answer there."""
from c2bridge.experiments import _branches as br
from c2bridge.experiments._sweeps import sweep_module
from c2bridge.experiments.registry import ExperimentInfo

EXPERIMENT = ExperimentInfo(id="q4", order=18, title="Q4: Stream weighting (VLM vs DINOv2)", group=br.GROUP)
OPTION = "stream_weights"
QUESTION = "Stream weighting"


def preset_note(preset) -> str | None:
    return preset.report_note("stream_weighting")


sweep_module(globals())
