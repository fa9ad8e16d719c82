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
_sweep_run, _sweep_findings = run, findings  # noqa: F821 (defined by sweep_module)


def learned_vlm_weight(adapter_dir) -> float | None:
    """The VLM weight g a learned gate settled at (``sigmoid`` of its trained logit), from the saved adapter."""
    import math
    from pathlib import Path

    from safetensors.torch import load_file

    path = Path(adapter_dir) / "model.safetensors"
    if not path.is_file():
        return None
    gates = [v for k, v in load_file(str(path)).items() if k.endswith("weights.gate")]
    return 1 / (1 + math.exp(-float(gates[0]))) if gates else None


def run(ctx) -> dict:
    record = _sweep_run(ctx)
    gated = [v for v in (ctx.cfg.get("values") or {}).items() if v[1] == "learned"]
    weights = []
    for arm in record.get("arms") or []:
        if gated and arm.get("label") == gated[0][0]:
            for key in arm.get("keys") or []:
                adapter = ((ctx.results["trials"].get(key) or {}).get("artifacts") or {}).get("adapter")
                g = learned_vlm_weight(ctx.run_dir / adapter) if adapter else None
                if g is not None:
                    weights.append(g)
    if weights:
        record["summary"]["details"] = {"learned_vlm_weight": weights}
    return record


def findings(results: dict, exp: dict, figs: dict) -> str:
    d = (exp.get("summary") or {}).get("details") or {}
    weights = d.get("learned_vlm_weight")
    if not weights:
        return _sweep_findings(results, exp, figs)
    from c2bridge.experiments import _branches as branches

    text = ", ".join(f"{w:.3f}" for w in weights)
    extra = [f"- Learned gate: the VLM weight g settled at {text} (per seed; DINOv2 at 1 − g; the gate "
             "starts at g = 0.3).", ""]
    return branches.findings_section(results, exp, figs, EXPERIMENT.id, extra)
