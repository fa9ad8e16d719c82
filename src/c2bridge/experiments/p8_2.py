"""Pivot 8.2 (plan §8.2): joint adapter + decoder LoRA -- a 10M query adapter trained together with a peft LoRA
on the LTX transformer's attention projections (``to_q``/``to_k``/``to_v``/``to_out.0``; rank 8 = 7.3M params on
LTX-Video, the plan's 4-8M; rank 2 = 8,192 on the miniature, the full count / 800 like the adapter budgets),
against the same adapter trained alone on the frozen decoder (E2.1's 10M trial, reused).

The LoRA is saved with peft's ``PeftModel.save_pretrained`` inside the trained adapter's directory
(``decoder_lora/``) and loaded for the evaluation only (``c2bridge.decoder.lora``). Every other experiment's
decoder stays frozen and bit-identical. The con the plan names: the adapter is no longer a pure add-on.
"""
from __future__ import annotations

import json
from pathlib import Path

from c2bridge.experiments import _branches as br
from c2bridge.experiments.registry import ExperimentInfo

EXPERIMENT = ExperimentInfo(id="p8.2", order=12, title="Pivot 8.2: Joint adapter + decoder LoRA", group=br.GROUP)

# the narrowest attention projection of each preset's decoder (the largest rank that fits): LTX-Video has 32
# heads x 64 = 2048 everywhere (cross-attention inputs projected to 2048 too); the others read their config
FULL_PROJECTION_WIDTH = 2048


def projection_width(preset) -> int:
    """min(in, out) over the decoder's attention projections, from its config (no weights loaded)."""
    if preset.name == "full":
        return FULL_PROJECTION_WIDTH
    assets = getattr(preset, "assets_dir", None)
    if assets is not None and (Path(assets) / "transformer" / "config.json").is_file():
        cfg = json.loads((Path(assets) / "transformer" / "config.json").read_text())
    else:  # a random test decoder: build it (small) and read its config
        transformer = preset.load_decoder()[0]
        cfg = dict(transformer.config)
    inner = int(cfg["num_attention_heads"]) * int(cfg["attention_head_dim"])
    return min(inner, int(cfg.get("cross_attention_dim") or inner))


def _rank(cfg: dict, preset) -> int:
    rank = cfg.get("lora_rank")
    if isinstance(rank, bool) or not isinstance(rank, int) or rank < 1:
        raise ValueError(f"p8.2.lora_rank={rank!r}: expected an integer >= 1")
    width = projection_width(preset)
    if rank > width:
        raise ValueError(f"p8.2.lora_rank={rank}: larger than the {preset.name} decoder's attention projections "
                         f"({width}); expected 1 <= rank <= {width}")
    return rank


def arms(cfg: dict, preset, upstream=None) -> list[br.Arm]:
    rank = _rank(cfg, preset)
    kind, budget = cfg.get("kind", "query"), str(cfg.get("budget", "10m"))
    patch = {"decoder_lora.rank": rank, **({"decoder_lora.alpha": cfg["lora_alpha"]} if cfg.get("lora_alpha") else {})}
    return [br.sweep("adapter alone", kind, budget, cfg, note="frozen decoder"),
            br.sweep(f"adapter + decoder LoRA r{rank}", kind, budget, cfg, patch=patch,
                     label=f"{kind}-{budget}-declora{rank}", note=f"peft LoRA rank {rank} on to_q/to_k/to_v/to_out.0")]


def trials(cfg: dict, preset, upstream=None):
    return br.flat(arms(cfg, preset, upstream))


def protocol(cfg: dict, preset) -> dict:
    return br.protocol({**cfg, "baseline": "adapter alone"}, preset, arms(cfg, preset),
                       **{"adapter": f"{cfg.get('kind', 'query')} at {br.budget_text(str(cfg.get('budget', '10m')), preset)}",
                          "decoder LoRA rank": cfg.get("lora_rank")})


def run(ctx) -> dict:
    a = arms(ctx.cfg, ctx.preset, ctx.upstream())
    record = br.run_branch(ctx, a, "adapter alone")
    lora_counts = [((ctx.results["trials"].get(k) or {}).get("params") or {}).get("decoder_lora")
                   for k in next(g for g in record["arms"] if g["label"] == a[1].name)["keys"]]
    record["summary"]["details"] = {"decoder_lora_rank": _rank(ctx.cfg, ctx.preset),
                                    "decoder_lora_params": next((n for n in lora_counts if n), None)}
    return record


def headline(results: dict, exp: dict) -> str | None:
    return br.headline(exp, "Decoder LoRA")


def findings(results: dict, exp: dict, figs: dict) -> str:
    from c2bridge.report import markdown as md

    d = (exp.get("summary") or {}).get("details") or {}
    extra = [f"- Decoder LoRA: rank {d.get('decoder_lora_rank')}, {md.params(d.get('decoder_lora_params'))} trainable "
             "parameters on top of the adapter's (the 'params' column counts the adapter only). The adapter then "
             "works only with this LoRA: the pivot gives up the frozen-decoder modularity.", ""]
    return br.findings_section(results, exp, figs, EXPERIMENT.id, extra)


def figures(results: dict, run_dir) -> dict[str, str]:
    return br.figures(results, run_dir, EXPERIMENT.id)
