"""E2.4: final efficiency validation (plan §5 E2.4).

The final adapter (E2.2's architecture, E2.3's recipe, the 10M budget, several seeds) and the 100M reference
trained with the same recipe, evaluated on the held-out split: param_efficiency, distance, spatial IoU, adapter
latency, memory reduction 100M vs 10M, training-time ratio, generalization gap. Reference rows: the plan's quoted
baselines (P2 fusion 0.162 @ 78M, C1 VLM-only 0.264: quotes, never measured here) and, where the decoder has its
own captions (mini), the decoder's caption conditioning (a reference, not a cap), an untrained adapter and zero
conditioning. Exports the best seed to ``checkpoints/adapter_final/``.

Every headline number carries a 95% bootstrap interval (``summary.intervals``; the final and reference adapters are
evaluated on the same samples with the same seeds: paired). When param_efficiency's verdict is undetermined, the
sequential design (``decide:``) adds seeds / held-out samples to both arms. When E2.1 acted on pivot §8.1, the final
adapter is trained at the size it found (``follow_pivot: false`` keeps ``small_budget``).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping

from c2bridge.experiments import analysis as an
from c2bridge.experiments import uncertainty as unc
from c2bridge.experiments.e2_2 import E22Summary
from c2bridge.experiments.e2_3 import E23Summary, describe, split_patch
from c2bridge.experiments.protocol import recipe_summary
from c2bridge.experiments.registry import ExperimentInfo
from c2bridge.experiments.trials import TrialSpec
from c2bridge.report import markdown as md
from c2bridge.report import plots
from c2bridge.stats import confident_verdict, efficiency_interval, pair_intervals

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
    budget_source: str = "config"  # where the final budget came from (config, or E2.1's pivot §8.1 size)
    training_time_ratio_note: str | None = None
    intervals: dict = field(default_factory=dict)  # summary key -> Interval.to_dict() (95% bootstrap)
    decide: dict = field(default_factory=dict)  # the sequential design: rounds, why it stopped, caps
    # evaluated split -> {dataset, kind (image|clip), n, distance, spatial_iou (None where IoU means nothing:
    # iou_note says why), flicker, warp_error (clip splits), intervals}: the final adapter on each dataset
    per_dataset: dict = field(default_factory=dict)

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
    from c2bridge.experiments.e2_1 import E21Summary

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
    small, budget_source = cfg.get("small_budget", "10m"), "config"
    pivot = E21Summary.from_dict(upstream["e2.1"]).pivot_budget if "e2.1" in upstream else None
    if pivot and cfg.get("follow_pivot", True):
        small, budget_source = pivot, "E2.1 pivot §8.1 (the predicted smallest passing size)"
    return {"kind": kind, "recipe": recipe, "recipe_source": recipe_source, "budget_source": budget_source,
            "small": small, "ref": cfg.get("reference_budget", "100m"),
            "seeds": seeds, "ref_seeds": [int(s) for s in (cfg.get("reference_seeds") or seeds)],
            "split": split, "extra": extra, "all_splits": all_splits,
            "references": list(cfg.get("references") or []), "assumption": "; ".join(assumed) or None}


def _final_label(d: dict, seed: int) -> str:
    return f"final-{d['kind']}-{d['small']}-s{seed}"


def _reference_label(d: dict, seed: int) -> str:
    return f"reference-{d['kind']}-{d['ref']}-s{seed}"


SEQUENTIAL_ASSUMPTION = ("sequential design: run only while param_efficiency's verdict is undetermined; listed up to "
                         "decide.max_seeds seeds / decide.max_eval_samples samples (the worst case)")


def _base_samples(cfg: dict) -> int:
    return int((cfg.get("eval") or {}).get("n_samples") or 0)


def decide_settings(cfg: dict, d: dict) -> unc.DecideSettings:
    return unc.decide_settings(cfg, eval_caches=[d["all_splits"][d["split"]]])


def _arm_specs(cfg: dict, d: dict, design: unc.Design) -> list[TrialSpec]:
    """The final and reference adapters at ``design`` (seeds per arm, samples per arm), each evaluated on the extra
    splits, and on more samples of the headline split where the design grew them."""
    patch, cache = split_patch(d["recipe"])
    common = dict(adapter=d["kind"], patch=patch, train_cache=cache, assumption=d["assumption"])
    base, specs, evals = _base_samples(cfg), [], []
    for arm, budget, label in (("final", d["small"], _final_label), ("reference", d["ref"], _reference_label)):
        m = design.samples[arm]
        for s in design.seeds[arm]:
            lbl = label(d, s)
            specs.append(TrialSpec(lbl, budget=budget, seed=s, **common))
            if d["extra"]:  # the held-out / train-split evaluations, as evaluation-only trials of the adapters
                evals.append(TrialSpec(f"eval:{lbl}", kind="evaluate", of=lbl, splits=d["extra"],
                                       assumption=d["assumption"]))
            if m > base:
                evals.append(TrialSpec(f"eval{m}:{lbl}", kind="evaluate", of=lbl,
                                       splits={d["split"]: d["all_splits"][d["split"]]}, eval_samples=m,
                                       assumption=d["assumption"]))
    return specs + evals


def _start(cfg: dict, d: dict) -> unc.Design:
    base = _base_samples(cfg)
    return unc.Design({"final": list(d["seeds"]), "reference": list(d["ref_seeds"])}, {"final": base, "reference": base})


def trials(cfg: dict, preset, upstream: Mapping[str, dict] | None = None) -> list[TrialSpec]:
    """The final adapter (small budget) and the reference budget with the same recipe, every seed; the measured
    references (evaluation only); each trained adapter evaluated on ``extra_eval_splits``; then, decided at run
    time (stage 2), the sequential design's extra trials up to its caps."""
    d = design(cfg, upstream or {})
    start = _start(cfg, d)
    arms = _arm_specs(cfg, d, start)
    train = [t for t in arms if t.kind == "train"]
    specs = train + [TrialSpec(f"ref:{r}", kind="reference", reference=r, adapter=d["kind"], budget=d["small"],
                               seed=d["seeds"][0], splits=_reference_splits(cfg, r, d["all_splits"]),
                               assumption=d["assumption"])
                     for r in d["references"]]
    specs += [t for t in arms if t.kind != "train"]
    settings = decide_settings(cfg, d)
    if settings.enabled:
        specs += unc.worst_case(specs, _arm_specs(cfg, d, start.at_caps(settings)), SEQUENTIAL_ASSUMPTION)
    return specs


def _reference_splits(cfg: dict, reference: str, splits: Mapping[str, str]) -> dict:
    """The splits a reference is evaluated on: every split, except that the decoder's own captions (the mini
    world's) describe still images, so the caption reference skips clip splits."""
    if reference != "caption":
        return dict(splits)
    from c2bridge.datasets import DATASET_SPECS

    caches = cfg.get("caches") or {}

    def is_clip(cache: str) -> bool:
        spec = DATASET_SPECS.get((caches.get(cache) or {}).get("dataset"))
        return spec is not None and spec.kind == "clip"

    return {split: cache for split, cache in splits.items() if not is_clip(cache)}


def run(ctx) -> dict:
    cfg = ctx.cfg
    d = design(cfg, ctx.upstream())
    kind, recipe, recipe_source = d["kind"], d["recipe"], d["recipe_source"]
    small, ref, seeds, ref_seeds = d["small"], d["ref"], d["seeds"], d["ref_seeds"]
    split, extra, references = d["split"], d["extra"], d["references"]
    splits = list(d["all_splits"])

    opts = unc.interval_options(cfg)
    records = ctx.run_trials([t for t in trials(cfg, ctx.preset, ctx.upstream()) if t.stage == 1])
    base = _base_samples(cfg)
    start = _start(cfg, d)

    def arm_records(arm: str, design_: unc.Design) -> list:
        """One arm's records with its evaluations (extra splits, more samples) folded in."""
        label = _final_label if arm == "final" else _reference_label
        m, out = design_.samples[arm], []
        for s in design_.seeds[arm]:
            lbl = label(d, s)
            rec = records[lbl]
            for ev in (records.get(f"eval:{lbl}") if extra else None,
                       records.get(f"eval{m}:{lbl}") if m > base else None):
                if ev is not None:
                    rec = rec.with_evaluation(ev)
            out.append(rec)
        return out

    # the sequential design: more seeds / held-out samples for both arms while param_efficiency is undetermined
    criterion = ctx.criterion("param_efficiency")
    settings = decide_settings(cfg, d)

    def verdicts(_records) -> dict:
        iv = unc.paired(efficiency_interval, arm_records("final", start), arm_records("reference", start), "distance",
                        split, **opts)
        if iv is None or not criterion:
            return {}
        return {"param_efficiency": confident_verdict(iv, criterion, max_seeds=settings.max_seeds,
                                                      max_eval_samples=settings.max_eval_samples)}

    decide = unc.run_rounds(ctx, settings, start, specs=lambda g: _arm_specs(cfg, d, g), verdicts=verdicts,
                            deciding={"param_efficiency": ["final", "reference"]}, records=records)
    final_recs, ref_recs = arm_records("final", start), arm_records("reference", start)
    g_final, g_ref = an.group(final_recs, splits), an.group(ref_recs, splits)
    g_final["intervals"] = unc.arm_intervals(final_recs, splits, **opts)
    g_ref["intervals"] = unc.arm_intervals(ref_recs, splits, **opts)
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
    pair = pair_intervals(unc.as_dicts(final_recs), unc.as_dicts(ref_recs), split, **opts)
    ttr = pair.get("training_time_ratio")
    intervals = {
        "param_efficiency": pair.get("param_efficiency"), "distance_10m": pair.get("distance_small"),
        "distance_100m": pair.get("distance_ref"), "spatial_iou": pair.get("spatial_iou_small"),
        "latency_ms": unc.arm_interval(final_recs, "latency_ms", section="perf", **opts),
        "latency_ratio": pair.get("latency_ratio"), "training_time_ratio": ttr,
        "val_distance_10m": unc.arm_interval(final_recs, "distance", "val", **opts),
        "generalization_gap": unc.split_gap(final_recs, split, "train", **opts) if "train" in splits else None,
    }
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
        # steps to plateau on the validation loss: n/a when the reference did not plateau, a lower bound when
        # final-budget runs did not (c2bridge.stats.plateau_ratio)
        "training_time_ratio": ttr.estimate if ttr is not None else None,
        "training_time_ratio_note": ttr.note if ttr is not None else "no completed trials",
        "budget_source": d["budget_source"],
        "intervals": {k: unc.to_record(v) for k, v in intervals.items() if v is not None},
        "decide": decide,
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
        "kind": kind, "budget": small, "budget_source": d["budget_source"], "params": g_final.get("params"),
        "recipe": describe(recipe), "checkpoint": (checkpoints.get("final") or {}).get("path"),
    }
    summary["per_dataset"] = _per_dataset(cfg, d["all_splits"], final_recs, g_final["intervals"], opts)
    summary = E24Summary(**summary).to_dict()
    eff = summary["param_efficiency"]
    text = (f"{kind} at {small} ({g_final.get('params') or ctx.budget(small):,.0f} params) with {describe(recipe)}: "
            + (f"param_efficiency {eff:.3f}{md.ci(summary['intervals'].get('param_efficiency'))} vs {ref} on {split}"
               if eff is not None else "param_efficiency not measured")
            + (f" (the size E2.1's pivot §8.1 found)" if d["budget_source"] != "config" else ""))
    return {
        "status": an.experiment_status([g_final, g_ref] + ref_rows),
        "arms": [g_final, g_ref] + ref_rows,
        "summary": summary,
        "checkpoints": checkpoints,
        "grids": grids,
        "recommendation": text,
    }


PER_DATASET_METRICS = ("distance", "spatial_iou", "flicker", "warp_error", "mask_iou_delta")


def _per_dataset(cfg: dict, all_splits: Mapping[str, str], records: list, intervals: dict,
                 options: dict | None = None) -> dict:
    """The final adapter on each evaluated split, named by its dataset: mean over seeds of each metric the split
    reports (spatial IoU only where the dataset's IoU protocol makes it meaningful; the temporal metrics on clips:
    flicker, warp error and, with masks, the per-frame IoU's mean change between frames), with the 95% intervals
    over seeds x samples (``intervals``; the IoU change's computed here with ``options``)."""
    from c2bridge.datasets import DATASET_SPECS

    caches = cfg.get("caches") or {}
    done = [r for r in records if r.completed]
    out = {}
    for split, cache_name in all_splits.items():
        dataset = (caches.get(cache_name) or {}).get("dataset", cache_name)
        spec = DATASET_SPECS.get(dataset)
        row: dict = {"dataset": dataset, "kind": spec.kind if spec else None,
                     "n": next((r.metrics.get(split, {}).get("n") for r in done if r.metrics.get(split)), None)}
        for metric in PER_DATASET_METRICS:
            values = [v for v in (r.metric(metric, split) for r in done) if v is not None]
            row[metric] = sum(values) / len(values) if values else None
        note = next((r.metrics.get(split, {}).get("iou_note") for r in done if r.metrics.get(split, {}).get("iou_note")),
                    None)
        if note is None and spec is not None and spec.iou_protocol is None:
            note = spec.iou_note
        row["iou_note"] = note
        row["intervals"] = dict(intervals.get(split) or {})
        if row["mask_iou_delta"] is not None and "mask_iou_delta" not in row["intervals"]:
            iv = unc.arm_interval(done, "mask_iou_delta", split, **(options or {}))
            if iv is not None:
                row["intervals"]["mask_iou_delta"] = unc.to_record(iv)
        out[split] = row
    return out


def per_dataset_table(per_dataset: Mapping) -> str:
    """FINDINGS' per-dataset table of the final adapter (n/a where a metric does not apply, with the reason)."""
    if not per_dataset:
        return ""
    rows, notes = [], []
    for split, row in per_dataset.items():
        ivs = row.get("intervals") or {}

        def cell(metric, digits=3):
            if row.get(metric) is None:
                return "n/a"
            return md.num(row[metric], digits) + md.ci(ivs.get(metric))

        iou = cell("spatial_iou")
        if row.get("spatial_iou") is None and row.get("iou_note"):
            iou = f"n/a ({len(notes) + 1})"
            notes.append(f"({len(notes) + 1}) {split}: {row['iou_note']}")
        is_clip = row.get("kind") == "clip"
        rows.append([split, row.get("dataset"), row.get("kind") or "–", row.get("n") or "–", cell("distance"), iou,
                     cell("flicker") if is_clip else "–", cell("warp_error") if is_clip else "–",
                     cell("mask_iou_delta") if is_clip else "–"])
    table = md.table(["split", "dataset", "items", "n", "distance", "spatial IoU", "flicker", "warp error",
                      "IoU change / frame"], rows)
    return "\n".join([table] + ([""] + notes if notes else []))


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
    ivs = s.get("intervals") or {}
    rows = []
    for a in exp.get("arms") or []:
        perf = a.get("perf") or {}
        aiv = (a.get("intervals") or {}).get(split) or {}
        rows.append([a.get("label"), a.get("role"), md.params(a.get("params")),
                     md.pm((a.get(split) or {}).get("distance")) + md.ci(aiv.get("distance")),
                     md.pm((a.get(split) or {}).get("spatial_iou"), 3) + md.ci(aiv.get("spatial_iou")),
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
             "Final adapter per dataset (mean over seeds, 95% interval over seeds x samples; spatial IoU only "
             "where a reconstruction's mask can honestly be read; flicker / warp error on clips, relative to the "
             "target's own, `c2bridge.metrics.temporal`):", "", per_dataset_table(s.get("per_dataset") or {}), "",
             f"- param_efficiency (final recipe, {split}): **{md.num(s.get('param_efficiency'))}**"
             f"{md.ci(ivs.get('param_efficiency'), method=True)}; per seed pair "
             f"{md.pm(s.get('param_efficiency_per_seed'))}.",
             f"- {split} distance {md.num(s.get('distance_10m'))}{md.ci(ivs.get('distance_10m'))} (reference "
             f"{md.num(s.get('distance_100m'))}{md.ci(ivs.get('distance_100m'))}); spatial IoU "
             f"{md.num(s.get('spatial_iou'))}{md.ci(ivs.get('spatial_iou'))}; adapter latency "
             f"{md.num(s.get('latency_ms'))}{md.ci(ivs.get('latency_ms'))} ms (ratio to the reference "
             f"{md.ci(ivs.get('latency_ratio')).strip() or '–'}).",
             f"- Memory reduction 100M vs 10M (weights): {md.num(s.get('memory_reduction'))}x; forward peak memory "
             f"ratio {md.num(s.get('forward_memory_reduction'))}x; 10M weights {md.num(s.get('memory_10m_gb'))} GB.",
             f"- Training-time ratio (steps to plateau on the validation loss, 10M / 100M): "
             + (md.num(s.get('training_time_ratio')) + md.ci(ivs.get('training_time_ratio'))
                if s.get('training_time_ratio') is not None else f"n/a ({s.get('training_time_ratio_note')})")
             + f"; wall-time ratio {md.num(s.get('wall_time_ratio'))}.",
             f"- Generalization gap ({split} − train distance): {md.num(s.get('generalization_gap'))}"
             f"{md.ci(ivs.get('generalization_gap'))}.",
             f"- {unc.rounds_text(s.get('decide'))}",
             f"- Final budget from: {s.get('budget_source', 'config')}.",
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
