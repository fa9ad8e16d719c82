"""E2.4: final efficiency validation (plan §5 E2.4).

The final adapter (E2.2's architecture, E2.3's recipe, the 10M budget, several seeds) and the 100M reference
trained with the same recipe, evaluated on the held-out split: param_efficiency, distance, spatial IoU, adapter
latency, memory reduction 100M vs 10M, training-time ratio, generalization gap. Reference rows: the plan's quoted
baselines (P2 fusion 0.162 @ 78M, C1 VLM-only 0.264: quotes, never measured here) and, where the decoder has its
own captions (mini), the decoder's caption conditioning (a reference, not a cap), an untrained adapter and zero
conditioning. Exports the best seed to ``checkpoints/adapter_final/``.
"""
from __future__ import annotations

from c2bridge.experiments import analysis as an
from c2bridge.experiments.e2_3 import _split_patch, describe
from c2bridge.experiments.protocol import recipe_summary

TITLE = "E2.4: Final efficiency validation"


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


def run(ctx) -> dict:
    cfg = ctx.cfg
    e22, e23 = ctx.summary_of("e2.2") or {}, ctx.summary_of("e2.3") or {}
    kind = cfg.get("arch") or e22.get("recommended_kind") or cfg.get("fallback_arch", "query")
    if cfg.get("recipe_patch") is not None:
        recipe, recipe_source = dict(cfg["recipe_patch"]), "config"
    elif (e23.get("best_recipe") or {}).get("patch") is not None:
        recipe, recipe_source = dict(e23["best_recipe"]["patch"]), f"E2.3 ({e23['best_recipe']['label']})"
    else:
        recipe, recipe_source = {}, "base recipe (E2.3 found none)"
    patch, cache = _split_patch(recipe)
    small, ref = cfg.get("small_budget", "10m"), cfg.get("reference_budget", "100m")
    seeds = [int(s) for s in (cfg.get("seeds") or [0])]
    ref_seeds = [int(s) for s in (cfg.get("reference_seeds") or seeds)]
    split = cfg.get("eval_split", "heldout")
    extra = dict(cfg.get("extra_eval_splits") or {})  # split -> cache, beyond the eval.splits every trial gets
    all_splits = {**((cfg.get("eval") or {}).get("splits") or {"val": "val"}), **extra}
    splits = list(all_splits)
    if split not in splits:
        raise ValueError(f"e2.4: eval_split {split!r} is not one of the evaluated splits {splits} "
                         "(eval.splits + extra_eval_splits)")

    specs = [(f"final-{kind}-{small}-s{s}", ctx.train_config(kind, small, s, patch=patch, train_cache=cache))
             for s in seeds]
    specs += [(f"reference-{kind}-{ref}-s{s}", ctx.train_config(kind, ref, s, patch=patch, train_cache=cache))
              for s in ref_seeds]
    references = list(cfg.get("references") or [])
    for r in references:
        specs.append((f"ref:{r}", ctx.reference_config(r, kind=kind, budget=small, seed=seeds[0], splits=all_splits)))
    records = ctx.run_trials(specs)
    trained = [f"final-{kind}-{small}-s{s}" for s in seeds] + [f"reference-{kind}-{ref}-s{s}" for s in ref_seeds]
    if extra:  # the held-out / train-split evaluations, as evaluation-only trials of the trained adapters
        evals = [(f"eval:{lbl}", c) for lbl in trained if (c := ctx.evaluate_config(records[lbl], extra))]
        ev_records = ctx.run_trials(evals)
        for lbl in trained:
            ev = ev_records.get(f"eval:{lbl}")
            if ev is None:
                continue
            rec = dict(records[lbl])
            if ev.get("status") == "completed":
                rec["metrics"] = {**(rec.get("metrics") or {}), **(ev.get("metrics") or {})}
                art = dict(rec.get("artifacts") or {})
                art["grids"] = {**(art.get("grids") or {}), **((ev.get("artifacts") or {}).get("grids") or {})}
                rec["artifacts"] = art
            else:
                rec["eval_error"] = ev.get("error")
            records[lbl] = rec

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
        row.update({"label": {"caption": "decoder's own caption conditioning (reference, not a cap)",
                              "zero": "zero conditioning", "untrained": f"untrained {kind} {small} adapter"}[r],
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
        art = best.get("artifacts") or {}
        path = ctx.export_dir(art.get("adapter"), "checkpoints/adapter_final")
        if path:
            checkpoints["final"] = {"path": path, "trial": best["key"],
                                    f"{split}_distance": an.split_metric(best, "distance", split)}
        for sp in (split, "val"):
            grid = ctx.export_file((art.get("grids") or {}).get(sp), f"figures/grids/e2_4_final_{sp}.png")
            if grid:
                grids[f"final {kind} {small} ({sp})"] = grid
    for row, r in zip(ref_rows, references):
        art = records[f"ref:{r}"].get("artifacts") or {}
        grid = ctx.export_file((art.get("grids") or {}).get(split), f"figures/grids/e2_4_ref_{r}_{split}.png")
        if grid:
            grids[row["label"]] = grid
    summary["phase3_configuration"] = {
        "kind": kind, "budget": small, "params": g_final.get("params"), "recipe": describe(recipe),
        "checkpoint": (checkpoints.get("final") or {}).get("path"),
    }
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
