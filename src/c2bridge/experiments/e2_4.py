"""E2.4: final efficiency validation (plan §5 E2.4).

The final adapter (E2.2's architecture, E2.3's recipe, the 10M budget, several seeds) and the 100M reference
trained with the same recipe, evaluated on the held-out split: param_efficiency, distance, spatial IoU, adapter
latency, memory reduction 100M vs 10M, training-time ratio, generalization gap. Reference rows: the plan's quoted
baselines (P2 fusion 0.162 @ 78M, C1 VLM-only 0.264: quotes, never measured here) and, where the decoder has its
own captions (mini), the decoder's caption conditioning (a reference, not a cap), an untrained adapter and zero
conditioning. Exports the best seed to ``checkpoints/adapter_final/``.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping

from c2bridge.experiments import analysis as an
from c2bridge.experiments.e2_2 import E22Summary
from c2bridge.experiments.e2_3 import E23Summary, describe, split_patch
from c2bridge.experiments.protocol import recipe_summary
from c2bridge.experiments.registry import ExperimentInfo
from c2bridge.experiments.trials import TrialSpec
from c2bridge.report import markdown as md
from c2bridge.report import plots

EXPERIMENT = ExperimentInfo(id="e2.4", order=4, title="E2.4: Final efficiency validation",
                            requires=("e2.1", "e2.2", "e2.3"), gate="param_efficiency")
TITLE = EXPERIMENT.title
# what this module reads from its config (besides the engine's keys)
CONFIG_KEYS = ('arch', 'recipe_patch', 'fallback_arch', 'small_budget', 'reference_budget', 'seeds', 'reference_seeds',
               'eval_split', 'extra_eval_splits', 'references')


@dataclass
class E24Summary(an.Summary):
    """E2.4's summary (results.yaml: experiments.e2.4.summary); ``*_10m`` / ``*_100m`` are the final (small) and
    reference budgets, whatever they are called in the config."""

    distance_name: str | None = None
    arch: str = "query"
    recipe: dict = field(default_factory=dict)  # the recipe patch (dotted TrainConfig keys + train_cache)
    recipe_change: str = ""
    recipe_source: str = ""
    eval_split: str = "heldout"
    params_10m: int | None = None
    params_100m: int | None = None
    param_efficiency: float | None = None  # on eval_split: the Gate 2 criterion
    param_efficiency_per_seed: dict = field(default_factory=dict)
    distance_10m: float | None = None
    distance_10m_std: float | None = None
    distance_100m: float | None = None
    val_distance_10m: float | None = None
    spatial_iou: float | None = None
    spatial_iou_std: float | None = None
    latency_ms: float | None = None
    latency_ms_100m: float | None = None
    memory_10m_gb: float | None = None
    memory_reduction: float | None = None  # weights, reference / final
    forward_memory_reduction: float | None = None
    training_time_ratio: float | None = None
    wall_time_ratio: float | None = None
    train_time_s_10m: float | None = None
    generalization_gap: float | None = None  # eval_split distance - train-split distance
    references: dict = field(default_factory=dict)  # reference -> {distance, spatial_iou, status}
    quoted_baselines: list = field(default_factory=list)  # the plan's quotes, never measured
    miniature_checks: dict | None = None  # miniature presets only
    phase3_configuration: dict = field(default_factory=dict)

    OPTIONAL = ("miniature_checks",)


REFERENCE_LABELS = {"caption": "decoder's own caption conditioning (reference, not a cap)",
                    "zero": "zero conditioning", "untrained": "untrained {kind} {budget} adapter"}


def protocol(cfg: dict, preset) -> dict:
    return {
        "architecture": cfg.get("arch") or "from E2.2",
        "recipe": "from E2.3" if cfg.get("recipe_patch") is None else describe(cfg.get("recipe_patch")),
        "budgets": f"{cfg.get('small_budget', '10m')} vs {cfg.get('reference_budget', '100m')}",
        "seeds (final / reference)": f"{len(cfg.get('seeds') or [0])} / {len(cfg.get('reference_seeds') or cfg.get('seeds') or [0])}",
        "evaluated on": cfg.get("eval_split", "heldout"),
        "extra evaluation splits": ", ".join((cfg.get("extra_eval_splits") or {}).keys()) or None,
        "references": ", ".join(cfg.get("references") or []) or None,
        **recipe_summary(cfg, preset.name),
    }


def design(cfg: dict, upstream: Mapping[str, dict]) -> dict:
    """The final configuration: architecture (config, else E2.2's recommendation, else ``fallback_arch``) and
    recipe (config ``recipe_patch``, else E2.3's best recipe, else the base recipe), with what was assumed for
    upstream summaries that are not there yet."""
    e22 = E22Summary.from_dict(upstream["e2.2"]) if "e2.2" in upstream else None
    e23 = E23Summary.from_dict(upstream["e2.3"]) if "e2.3" in upstream else None
    assumed = []
    kind = cfg.get("arch") or (e22.recommended_kind if e22 else None)
    if not kind:
        kind = cfg.get("fallback_arch", "query")
        if e22 is None:
            assumed.append(f"E2.2 has not run: assumes fallback_arch {kind}")
    if cfg.get("recipe_patch") is not None:
        recipe, recipe_source = dict(cfg["recipe_patch"]), "config"
    elif e23 is not None and (e23.best_recipe or {}).get("patch") is not None:
        recipe, recipe_source = dict(e23.best_recipe["patch"]), f"E2.3 ({e23.best_recipe['label']})"
    else:
        recipe, recipe_source = {}, "base recipe (E2.3 found none)"
        if e23 is None:
            assumed.append("E2.3 has not run: assumes the base recipe")
    seeds = [int(s) for s in (cfg.get("seeds") or [0])]
    extra = dict(cfg.get("extra_eval_splits") or {})  # split -> cache, beyond the eval.splits every trial gets
    all_splits = {**((cfg.get("eval") or {}).get("splits") or {"val": "val"}), **extra}
    split = cfg.get("eval_split", "heldout")
    if split not in all_splits:
        raise ValueError(f"e2.4: eval_split {split!r} is not one of the evaluated splits {list(all_splits)} "
                         "(eval.splits + extra_eval_splits)")
    return {"kind": kind, "recipe": recipe, "recipe_source": recipe_source,
            "small": cfg.get("small_budget", "10m"), "ref": cfg.get("reference_budget", "100m"),
            "seeds": seeds, "ref_seeds": [int(s) for s in (cfg.get("reference_seeds") or seeds)],
            "split": split, "extra": extra, "all_splits": all_splits,
            "references": list(cfg.get("references") or []), "assumption": "; ".join(assumed) or None}


def _final_label(d: dict, seed: int) -> str:
    return f"final-{d['kind']}-{d['small']}-s{seed}"


def _reference_label(d: dict, seed: int) -> str:
    return f"reference-{d['kind']}-{d['ref']}-s{seed}"


def trials(cfg: dict, preset, upstream: Mapping[str, dict] | None = None) -> list[TrialSpec]:
    """The final adapter (small budget) and the reference budget with the same recipe, every seed; the measured
    references (evaluation only); then each trained adapter evaluated on ``extra_eval_splits``."""
    d = design(cfg, upstream or {})
    patch, cache = split_patch(d["recipe"])
    common = dict(adapter=d["kind"], patch=patch, train_cache=cache, assumption=d["assumption"])
    specs = [TrialSpec(_final_label(d, s), budget=d["small"], seed=s, **common) for s in d["seeds"]]
    specs += [TrialSpec(_reference_label(d, s), budget=d["ref"], seed=s, **common) for s in d["ref_seeds"]]
    specs += [TrialSpec(f"ref:{r}", kind="reference", reference=r, adapter=d["kind"], budget=d["small"],
                        seed=d["seeds"][0], splits=d["all_splits"], assumption=d["assumption"])
              for r in d["references"]]
    if d["extra"]:  # the held-out / train-split evaluations, as evaluation-only trials of the trained adapters
        trained = [t.label for t in specs if t.kind == "train"]
        specs += [TrialSpec(f"eval:{lbl}", kind="evaluate", of=lbl, splits=d["extra"], assumption=d["assumption"])
                  for lbl in trained]
    return specs


def run(ctx) -> dict:
    cfg = ctx.cfg
    d = design(cfg, ctx.upstream())
    kind, recipe, recipe_source = d["kind"], d["recipe"], d["recipe_source"]
    small, ref, seeds, ref_seeds = d["small"], d["ref"], d["seeds"], d["ref_seeds"]
    split, extra, references = d["split"], d["extra"], d["references"]
    splits = list(d["all_splits"])

    records = ctx.run_trials(trials(cfg, ctx.preset, ctx.upstream()))
    trained = [_final_label(d, s) for s in seeds] + [_reference_label(d, s) for s in ref_seeds]
    if extra:  # fold each evaluation into its training trial's record
        for lbl in trained:
            ev = records.get(f"eval:{lbl}")
            if ev is None:
                continue
            records[lbl] = records[lbl].with_evaluation(ev)

    final_recs = [records[f"final-{kind}-{small}-s{s}"] for s in seeds]
    ref_recs = [records[f"reference-{kind}-{ref}-s{s}"] for s in ref_seeds]
    g_final, g_ref = an.group(final_recs, splits), an.group(ref_recs, splits)
    g_final.update({"label": f"final {kind} {small}", "budget": small, "budget_params": ctx.budget(small), "role": "final"})
    g_ref.update({"label": f"{kind} {ref} (same recipe)", "budget": ref, "budget_params": ctx.budget(ref),
                  "role": "reference"})
    ref_rows = []
    for r in references:
        rec = records[f"ref:{r}"]
        row = an.group([rec], splits)
        row.update({"label": REFERENCE_LABELS[r].format(kind=kind, budget=small),
                    "reference": r, "role": "measured reference"})
        ref_rows.append(row)

    d_small, d_ref = an.mean(g_final, split, "distance"), an.mean(g_ref, split, "distance")
    iou_small = an.mean(g_final, split, "spatial_iou")
    weights_small, weights_ref = an.mean(g_final, "perf", "weights_mb"), an.mean(g_ref, "perf", "weights_mb")
    train_d = an.mean(g_final, "train", "distance") if "train" in splits else None
    summary = {
        "distance_name": ctx.study.distance["name"],
        "arch": kind,
        "recipe": recipe,
        "recipe_change": describe(recipe),
        "recipe_source": recipe_source,
        "eval_split": split,
        "params_10m": g_final.get("params"),
        "params_100m": g_ref.get("params"),
        "param_efficiency": an.efficiency(d_small, d_ref),
        "param_efficiency_per_seed": an.paired_efficiencies(final_recs, ref_recs, split),
        "distance_10m": d_small,
        "distance_10m_std": an.spread(g_final, split, "distance"),
        "distance_100m": d_ref,
        "val_distance_10m": an.mean(g_final, "val", "distance"),
        "spatial_iou": iou_small,
        "spatial_iou_std": an.spread(g_final, split, "spatial_iou"),
        "latency_ms": an.mean(g_final, "perf", "latency_ms"),
        "latency_ms_100m": an.mean(g_ref, "perf", "latency_ms"),
        "memory_10m_gb": weights_small / 1024 if weights_small is not None else None,
        "memory_reduction": an.ratio(weights_ref, weights_small),
        "forward_memory_reduction": an.ratio(an.mean(g_ref, "perf", "forward_peak_memory_mb"),
                                             an.mean(g_final, "perf", "forward_peak_memory_mb")),
        "training_time_ratio": an.ratio(an.mean(g_final, "training", "steps_to_plateau"),
                                        an.mean(g_ref, "training", "steps_to_plateau")),
        "wall_time_ratio": an.ratio(an.mean(g_final, "training", "time_s"), an.mean(g_ref, "training", "time_s")),
        "train_time_s_10m": an.mean(g_final, "training", "time_s"),
        "generalization_gap": (d_small - train_d) if d_small is not None and train_d is not None else None,
        "references": {row["reference"]: {"distance": an.mean(row, split, "distance"),
                                          "spatial_iou": an.mean(row, split, "spatial_iou"),
                                          "status": row["statuses"][0]} for row in ref_rows},
        "quoted_baselines": [{**b, "quoted": True} for b in (ctx.criteria.get("quoted_baselines") or [])],
    }
    refs = summary["references"]
    if ctx.preset.is_miniature and iou_small is not None:
        ceiling = (refs.get("caption") or {}).get("spatial_iou")
        checks = {"iou_fraction_of_ceiling": iou_small / ceiling if ceiling else None}
        for name in ("untrained", "zero"):
            other = (refs.get(name) or {}).get("spatial_iou")
            checks[f"margin_over_{name}_iou"] = iou_small - other if other is not None else None
        summary["miniature_checks"] = checks

    best = an.best_record(final_recs, split)
    checkpoints, grids = {}, {}
    if best is not None:
        path = ctx.export_dir(best.adapter, "checkpoints/adapter_final")
        if path:
            checkpoints["final"] = {"path": path, "trial": best.key, f"{split}_distance": best.metric("distance", split)}
        for sp in (split, "val"):
            grid = ctx.export_file(best.grid(sp), f"figures/grids/e2_4_final_{sp}.png")
            if grid:
                grids[f"final {kind} {small} ({sp})"] = grid
    for row, r in zip(ref_rows, references):
        grid = ctx.export_file(records[f"ref:{r}"].grid(split), f"figures/grids/e2_4_ref_{r}_{split}.png")
        if grid:
            grids[row["label"]] = grid
    summary["phase3_configuration"] = {
        "kind": kind, "budget": small, "params": g_final.get("params"), "recipe": describe(recipe),
        "checkpoint": (checkpoints.get("final") or {}).get("path"),
    }
    summary = E24Summary(**summary).to_dict()
    eff = summary["param_efficiency"]
    text = (f"{kind} at {small} ({g_final.get('params') or ctx.budget(small):,.0f} params) with {describe(recipe)}: "
            + (f"param_efficiency {eff:.3f} vs {ref} on {split}" if eff is not None else "param_efficiency not measured"))
    return {
        "status": an.experiment_status([g_final, g_ref] + ref_rows),
        "arms": [g_final, g_ref] + ref_rows,
        "summary": summary,
        "checkpoints": checkpoints,
        "grids": grids,
        "recommendation": text,
    }


# ----------------------------------------------------------------------------------------------------- report
def headline(results: dict, exp: dict) -> str | None:
    """The answer line of FINDINGS.md's "Answers"."""
    s4 = exp.get("summary")
    if not s4:
        return None
    v = ((exp.get("verdicts") or {}).get("param_efficiency") or {})
    return (f"- **Final adapter (E2.4):** {exp.get('recommendation')} "
            f"({md.verdict_text(v) if v else 'no verdict'}); {s4.get('eval_split')} distance "
            f"{md.num(s4.get('distance_10m'))}, spatial IoU {md.num(s4.get('spatial_iou'))}.")


def findings(results: dict, exp: dict, figs: dict) -> str:
    """This experiment's FINDINGS.md section."""
    s = exp.get("summary") or {}
    split = s.get("eval_split", "heldout")
    rows = []
    for a in exp.get("arms") or []:
        perf = a.get("perf") or {}
        rows.append([a.get("label"), a.get("role"), md.params(a.get("params")),
                     md.pm((a.get(split) or {}).get("distance")), md.pm((a.get(split) or {}).get("spatial_iou"), 3),
                     md.pm((a.get("val") or {}).get("distance")), md.pm((a.get("train") or {}).get("distance")),
                     md.pm(perf.get("latency_ms"), 3), md.pm(perf.get("weights_mb"), 3)])
    for b in s.get("quoted_baselines") or []:
        rows.append([f"{b.get('name')} — quoted from the plan ({b.get('source')})", "quote, not measured",
                     md.params(b.get("params")), f"LPIPS {md.num(b.get('lpips'))} (quote)",
                     f"{md.num(b.get('spatial_iou'))} (quote)" if b.get("spatial_iou") is not None else "–",
                     "–", "–", "–", "–"])
    lines = [f"## {exp.get('title', 'E2.4')}", "", md.status_line(exp), "",
             f"Final adapter: **{s.get('arch')}**, recipe {s.get('recipe_change')} (from {s.get('recipe_source')}); "
             f"headline split: **{split}**.", "", md.protocol_table(exp), "",
             md.table(["row", "role", "params", f"{split} distance ({s.get('distance_name')})", f"{split} spatial IoU",
                    "val distance", "train-split distance", "adapter latency (ms)", "weights (MB)"], rows), "",
             f"- param_efficiency (final recipe, {split}): **{md.num(s.get('param_efficiency'))}**; per seed pair "
             f"{md.pm(s.get('param_efficiency_per_seed'))}.",
             f"- Memory reduction 100M vs 10M (weights): {md.num(s.get('memory_reduction'))}x; forward peak memory "
             f"ratio {md.num(s.get('forward_memory_reduction'))}x; 10M weights {md.num(s.get('memory_10m_gb'))} GB.",
             f"- Training-time ratio (steps to plateau, 10M / 100M): {md.num(s.get('training_time_ratio'))}; wall-time "
             f"ratio {md.num(s.get('wall_time_ratio'))}.",
             f"- Generalization gap ({split} − train distance): {md.num(s.get('generalization_gap'))}.",
             f"- Recommended configuration for Phase 3: {s.get('phase3_configuration')}.", "",
             "Verdicts:", "", md.verdict_table(exp.get("verdicts") or {}), "",
             md.figure(figs, "learning_curves_e2_4", "E2.4 learning curves"), md.grids(figs, EXPERIMENT.id, exp)]
    checks = results.get("miniature_checks") or {}
    if checks:
        lines += ["", "Checks of the miniature itself (not plan criteria — they say whether the mini "
                  "world's numbers respond to what the study varies):", "", md.verdict_table(checks)]
    ck = (exp.get("checkpoints") or {}).get("final")
    if ck:
        lines.append(f"\nFinal adapter checkpoint: `{ck['path']}/` (trial `{ck['trial']}`).")
    return "\n".join(lines)


def figures(results: dict, run_dir) -> dict[str, str]:
    return plots.experiment_figures(results, run_dir, EXPERIMENT.id)
