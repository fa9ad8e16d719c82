"""Q4's learned gate: the VLM weight it settled at is read back from the saved adapter for the FINDINGS section."""
import math

import torch

from c2bridge.adapters import build_adapter_for_preset
from c2bridge.experiments.q4 import learned_vlm_weight


def test_learned_gate_is_read_from_the_saved_adapter(tmp_path):
    adapter = build_adapter_for_preset("query", "5m", "tiny", stream_weights="learned")
    with torch.no_grad():
        gate = next(p for n, p in adapter.named_parameters() if n.endswith("weights.gate"))
        gate.fill_(math.log(0.8 / 0.2))  # as if training had moved the VLM weight to 0.8
    adapter.save_pretrained(tmp_path / "learned")
    assert abs(learned_vlm_weight(tmp_path / "learned") - 0.8) < 1e-6
    build_adapter_for_preset("query", "5m", "tiny").save_pretrained(tmp_path / "fixed")
    assert learned_vlm_weight(tmp_path / "fixed") is None  # fixed weights: no gate
    assert learned_vlm_weight(tmp_path / "nowhere") is None
