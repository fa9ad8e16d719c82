"""The planner's compute levers, each on a constructed trial: early stopping, the pixel schedule (late, every k-th
step, a crop, a window of latent frames), gradient checkpointing, the largest micro-batch that fits, decoder LoRA,
distillation, successive halving and the trial-graph makespan; then the shipped full configs against the budget.
The LoRA and checkpointing FLOPs are checked against FlopCounterMode on the diffusers class."""
from __future__ import annotations

import pytest
import torch
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.utils.flop_counter import FlopCounterMode

from c2bridge import planner as P
from c2bridge.full_dims import full_dims
from c2bridge.presets import get_preset

TINY_LTX = dict(in_channels=8, out_channels=8, patch_size=1, patch_size_t=1, num_attention_heads=4,
                attention_head_dim=8, cross_attention_dim=32, num_layers=2, caption_channels=32)
FLOW = {"adapter": {"kind": "query", "budget": "10m"},
        "optim": {"batch_size": 8, "grad_accum": 4, "epochs": 2.0, "max_steps": None},
        "loss": {"name": "flow", "perceptual": "lpips_vgg"},
        "eval": {"every_steps": 0, "n_samples": 0, "sample_steps": 20, "guidance": 1.0}}
PIXEL = {**FLOW, "loss": {"name": "lpips_l2", "weights": {"flow": 1.0}, "perceptual": "lpips_vgg"}}
DATA = {"train": {"img": {"n": 640, "frames": 1, "weight": 1.0}, "clip": {"n": 640, "frames": 25, "weight": 1.0}},
        "val": {}}


def _trial(recipe: dict, overrides: dict | None = None, **kw) -> P.TrialEstimate:
    return P.estimate_trial("e2.1", overrides or {}, recipe=recipe, data=DATA, **kw)


def _costs(recipe: dict, frames: int) -> dict:
    p = get_preset("full")
    enc = {**P.PLAN_ENCODING, "vlm_tokens": 288}
    return P.sample_costs(full_dims(), p, frames, p.n_tokens, recipe, enc, 1e7)


def _with(recipe: dict, **sections) -> dict:
    out = {k: dict(v) if isinstance(v, dict) else v for k, v in recipe.items()}
    for section, values in sections.items():
        out[section] = {**out.get(section, {}), **values}
    return out


def _ltx(cfg: dict, frames=3, h=4, w=4, text=7, lora_targets=None, checkpointing=False):
    from diffusers import LTXVideoTransformer3DModel

    torch.manual_seed(0)
    model = LTXVideoTransformer3DModel(**cfg).eval().requires_grad_(False)
    lora = []
    if lora_targets:
        from peft import LoraConfig, inject_adapter_in_model

        model = inject_adapter_in_model(LoraConfig(r=2, lora_alpha=2, target_modules=list(lora_targets),
                                                   init_lora_weights=False), model)
        lora = [p.requires_grad_(True) for n, p in model.named_parameters() if "lora_" in n]
    if checkpointing:
        model.enable_gradient_checkpointing()
    s = frames * h * w
    cond = torch.randn(1, text, cfg["caption_channels"], requires_grad=True)
    kw = dict(hidden_states=torch.randn(1, s, cfg["in_channels"]), encoder_hidden_states=cond,
              timestep=torch.tensor([500.0]), encoder_attention_mask=torch.ones(1, text), num_frames=frames,
              height=h, width=w, return_dict=False)
    weights = {p.untyped_storage().data_ptr() for p in model.parameters()}
    saved: dict[int, int] = {}

    def pack(t):
        if t.untyped_storage().data_ptr() not in weights:
            saved[t.untyped_storage().data_ptr()] = t.untyped_storage().nbytes()
        return t

    with sdpa_kernel(SDPBackend.MATH):
        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t), FlopCounterMode(display=False) as fc:
            out = model(**kw)[0]
        fwd = fc.get_total_flops()
        with FlopCounterMode(display=False) as fc:
            out.square().mean().backward()
        bwd = fc.get_total_flops()
    assert cond.grad is not None and all(p.grad is not None for p in lora)
    return {"forward": fwd, "backward": bwd, "lora_params": sum(p.numel() for p in lora), "saved": sum(saved.values()),
            "tokens": s, "text": text}


# ------------------------------------------------------------------------------------- FLOPs against the class


@pytest.mark.parametrize("targets", [P.LORA_TARGETS, ("to_k", "to_v"), ("to_out.0",)], ids=["all", "kv", "out"])
def test_decoder_lora_flops_and_params_match_peft(targets):
    c = _ltx(TINY_LTX, lora_targets=targets)
    est = P.ltx_transformer_flops(TINY_LTX, c["tokens"], c["text"], attention="math", lora_rank=2,
                                  lora_targets=targets)
    assert est["forward"] == c["forward"] and est["backward"] == c["backward"]
    assert P.decoder_lora_params(TINY_LTX, 2, targets) == c["lora_params"]
    plain = P.ltx_transformer_flops(TINY_LTX, c["tokens"], c["text"], attention="math")
    assert est["backward"] > plain["backward"]  # LoRA weight gradients (and layer 0's self-attention) on top
    # the full model at rank 8 on the four projections: the plan's 4-8M
    assert P.decoder_lora_params(full_dims()["ltx_transformer"], 8) == 28 * 8 * 8 * 4096


def test_gradient_checkpointing_recomputes_one_forward_of_the_blocks():
    c = _ltx(TINY_LTX, checkpointing=True)
    est = P.ltx_transformer_flops(TINY_LTX, c["tokens"], c["text"], attention="math")
    assert c["forward"] == est["forward"]
    assert c["backward"] == est["backward"] + est["blocks_forward"]
    # kept for backward: each block's inputs (n·S·D), and during one block's recompute that block's tensors
    d = TINY_LTX["num_attention_heads"] * TINY_LTX["attention_head_dim"]
    inputs = TINY_LTX["num_layers"] * c["tokens"] * d * 4  # float32 here
    one_block = P.ltx_transformer_activation_bytes(dict(TINY_LTX, num_layers=1), c["tokens"], c["text"], 1, 4)
    assert inputs <= c["saved"] <= inputs + one_block


# --------------------------------------------------------------------------------------- levers on one trial


def test_early_stopping_costs_the_expected_share_and_prints_the_worst_case():
    full = _trial(FLOW)
    stop = _with(FLOW, stop={"patience": 5, "min_fraction": 0.0})
    est = _trial(stop, assumptions={"expected_stop_fraction": 0.4})
    assert est.run_fraction == 0.4 and est.steps_run == round(0.4 * full.optimizer_steps)
    assert est.flops["train"] == pytest.approx(0.4 * full.flops["train"], rel=1e-12)
    assert est.hours_worst == pytest.approx(full.hours, rel=1e-12) and est.hours < full.hours
    # never below stop.min_fraction; no patience: no early stopping, whatever the assumption
    floor = _trial(_with(stop, stop={"min_fraction": 0.6}), assumptions={"expected_stop_fraction": 0.4})
    assert floor.run_fraction == 0.6
    assert _trial(FLOW, assumptions={"expected_stop_fraction": 0.4}).run_fraction == 1.0
    # no documented assumption: an early-stopped trial is costed at full length
    assert _trial(stop).flops["train"] == full.flops["train"]


def test_pixel_schedule_costs_only_the_steps_and_the_region_it_decodes():
    every, late = _costs(PIXEL, 25), _costs(_with(PIXEL, loss={"pixel_crop": 256, "pixel_latent_frames": 1}), 25)
    dims = full_dims()
    # a 256 px crop of one latent frame: 8 x 8 latents decoded, one frame through LPIPS
    assert late["pixel_region"] == (1, 256, 256)
    assert late["train"]["vae_decode"] == 2 * P.vae_decoder_costs(dims["ltx_vae"], 1, 8, 8)["forward"]
    assert late["train"]["perceptual"] == pytest.approx(sum(P.lpips_costs("vgg", 256, 256)[k]
                                                           for k in ("forward", "backward")))
    assert every["train"]["vae_decode"] > 50 * late["train"]["vae_decode"]
    assert late["activation_bytes"]["vae_decode"] < every["activation_bytes"]["vae_decode"] / 25
    assert late["train"]["transformer"] == every["train"]["transformer"]  # the flow term: every step, whole latent
    assert late["eval"] == every["eval"]  # validation decodes whole frames

    base = _trial(PIXEL)
    sched = _with(PIXEL, loss={"pixel_start": 0.25, "pixel_every": 4})
    est = _trial(sched)
    assert est.pixel_share == pytest.approx(0.75 / 4)
    flow = {n: sum(v for k, v in _costs(PIXEL, d["frames"])["train"].items() if k not in P.PIXEL_STAGES)
            for n, d in DATA["train"].items()}
    pixel = {n: sum(_costs(PIXEL, d["frames"])["train"][k] for k in P.PIXEL_STAGES) for n, d in DATA["train"].items()}
    samples = base.micro_batches * base.batch_size / 2  # half the micro-batches from each dataset
    assert est.flops["train"] == pytest.approx(samples * sum(flow[n] + 0.75 / 4 * pixel[n] for n in flow), rel=1e-9)
    assert base.flops["train"] == pytest.approx(samples * sum(flow[n] + pixel[n] for n in flow), rel=1e-9)
    # a trial that stops before the pixel terms start never runs them
    stopped = _trial(_with(sched, stop={"patience": 3}), assumptions={"expected_stop_fraction": 0.2})
    assert stopped.pixel_share == 0.0


def test_gradient_checkpointing_trades_memory_for_one_forward():
    plain, ckpt = _trial(FLOW), _trial(_with(FLOW, memory={"gradient_checkpointing": True}))
    blocks = {n: P.ltx_transformer_flops(full_dims()["ltx_transformer"], _costs(FLOW, d["frames"])["tokens"], 77)
              ["blocks_forward"] for n, d in DATA["train"].items()}
    samples = plain.micro_batches * plain.batch_size / 2
    assert ckpt.flops["train"] - plain.flops["train"] == pytest.approx(samples * sum(blocks.values()), rel=1e-9)
    assert ckpt.memory_gib["activations_transformer"] < plain.memory_gib["activations_transformer"] / 5
    assert ckpt.max_batch > plain.max_batch


def test_the_largest_micro_batch_that_fits_keeps_the_effective_batch():
    big = _with(PIXEL, optim={"batch_size": 32, "grad_accum": 1})
    own = _trial(big, gpu="a100-40")
    assert not own.fits and not own.configured_fits and own.batch_size == 32
    chosen = _trial(big, gpu="a100-40", choose_batch=True)
    assert chosen.fits and not chosen.configured_fits
    assert chosen.batch_size * chosen.grad_accum == 32 and 32 % chosen.batch_size == 0
    assert chosen.batch_size <= chosen.max_batch < 2 * chosen.batch_size  # the next divisor up would not fit
    assert chosen.flops["train"] == pytest.approx(own.flops["train"], rel=1e-12)  # same samples, same FLOPs
    assert chosen.peak_gib < own.peak_gib


def test_decoder_lora_and_distillation_are_costed():
    plain = _trial(FLOW)
    lora = _trial(_with(FLOW, decoder_lora={"rank": 8}))
    n_lora = P.decoder_lora_params(full_dims()["ltx_transformer"], 8)
    assert lora.decoder_lora_params == n_lora
    assert lora.memory_gib["decoder_lora_and_adamw"] == pytest.approx(n_lora * P.ADAPTER_BYTES_PER_PARAM / P.GIB)
    extra = {n: _costs(_with(FLOW, decoder_lora={"rank": 8}), d["frames"])["train"]["decoder_lora"]
             for n, d in DATA["train"].items()}
    samples = plain.micro_batches * plain.batch_size / 2
    assert lora.flops["train"] - plain.flops["train"] == pytest.approx(samples * sum(extra.values()), rel=1e-9)
    assert lora.memory_gib["activations_transformer"] > plain.memory_gib["activations_transformer"]

    distilled = _trial(_with(FLOW, distill={"teacher": "checkpoints/adapter_100m_best"}), {"_teacher_budget": "100m"})
    assert distilled.teacher_params == 1e8
    assert distilled.memory_gib["teacher_fp32"] == pytest.approx(4e8 / P.GIB)
    teacher = P.adapter_flops(1e8, 288 + get_preset("full").n_patches)["forward"]
    assert distilled.flops["train"] - plain.flops["train"] == pytest.approx(2 * samples * teacher, rel=1e-9)


# ---------------------------------------------------------------------------------------- halving and the graph


def test_halving_caps_prune_all_but_the_top_third_at_each_rung():
    arms = {f"a{i}": {"cost": float(i), "max_steps": 1000, "eval_every": 100, "forced": False} for i in range(9)}
    caps = P.halving_caps(arms, eta=3, min_fraction=0.25)
    # rungs at 250 -> 200 and 750 -> 700 steps (validation steps); 9 -> 3 -> 1 arms, the costliest kept
    assert caps["a8"] == 1.0 and caps["a7"] == caps["a6"] == 0.7
    assert all(caps[f"a{i}"] == 0.2 for i in range(6))
    # a protected (or already trained) arm always survives, on top of the policy's survivors
    arms["a0"]["forced"] = True
    caps = P.halving_caps(arms, eta=3, min_fraction=0.25)
    assert caps["a0"] == 1.0 and caps["a8"] == 1.0 and sum(c == 1.0 for c in caps.values()) == 2


def test_halving_and_the_makespan_in_a_plan(tmp_path):
    import yaml

    (tmp_path / "experiments").mkdir()
    (tmp_path / "presets").mkdir()
    recipe = {"optim": {"batch_size": 8, "grad_accum": 4, "max_steps": 2000}, "loss": {"name": "flow"},
              "eval": {"every_steps": 100, "n_samples": 0}, "stop": {"patience": 3},
              "plan": {"expected_stop_fraction": 0.5}}
    (tmp_path / "presets" / "full.yaml").write_text(yaml.safe_dump(recipe))
    grid = {"budget": "10m", "seeds": [0], "combine": False, "grids": {"lr": {"arms": {
        "base": {}, **{f"lr{i}": {"optim.lr": 1e-4 * (i + 2)} for i in range(5)}}}}}
    (tmp_path / "experiments" / "e2_3.full.yaml").write_text(yaml.safe_dump(grid))
    src = P.load_sources("full", config_dir=tmp_path)
    assert src["assumptions"] == {"expected_stop_fraction": 0.5} and "plan" not in src["recipe"]
    off = P.plan("full", ["e2.3"], sources=src, gpus=1)
    (tmp_path / "experiments" / "e2_3.full.yaml").write_text(yaml.safe_dump({**grid, "halving": {"enabled": True}}))
    on = P.plan("full", ["e2.3"], sources=P.load_sources("full", config_dir=tmp_path), gpus=1)
    rows = {t.name: t for t in on.trials}
    # 6 arms: the baseline (protected) + 5; at the 500-step rung max(1, 6 // 3) = 2 continue (3 stop there), at
    # the 1500-step rung max(1, 3 // 3) = 1 of them (+ the baseline)
    assert sorted(t.halving_rung for t in on.trials if t.halving_rung is not None) == [0.25, 0.25, 0.25, 0.75]
    pruned = [t for t in on.trials if t.halving_rung == 0.25]
    assert all(t.steps_run == 500 for t in pruned)
    assert all(t.run_fraction == 0.5 for t in on.trials if t.halving_rung == 0.75)  # stops early before its rung
    assert rows["lr/base-s0"].halving_rung is None and rows["lr/base-s0"].run_fraction == 0.5
    full_arm = next(t for t in off.trials if t.name == pruned[0].name)
    assert pruned[0].flops["train"] == pytest.approx(full_arm.flops["train"] * 0.25 / 0.5, rel=1e-9)
    assert on.experiments["e2.3"]["gpu_hours"] < off.experiments["e2.3"]["gpu_hours"]
    # one GPU: the makespan is every trial one after the other; eight GPUs: the longest trial and the total / 8
    one = on.makespan["all"] if "all" in on.makespan else next(iter(on.makespan.values()))
    assert one == pytest.approx(on.total_hours, rel=1e-9)
    eight = P.trial_graph_makespan(on, 8)
    assert max(max(t.hours for t in on.trials), on.total_hours / 8) - 1e-9 <= eight < one


def test_the_graph_waits_for_upstream_decisions():
    src = P.load_sources("full")
    result = P.plan("full", ["e2.1", "e2.2", "e2.3", "e2.4"], sources=src, gpus=1000)
    hours = {t.name: t.hours for t in result.trials if t.experiment == "e2.2"}
    e22 = max(hours.values())
    # with GPUs to spare, E2.3 (resting on E2.2's pick) cannot end before E2.2 and E2.3 after it
    assert result.makespan["all"] >= result.cache["hours"] / 1000 + e22 + max(
        t.hours for t in result.trials if t.experiment == "e2.3" and t.stage == 1)


# ------------------------------------------------------------------------------------ the shipped full configs


def test_the_shipped_full_study_fits_half_the_plans_budget_on_a100_80():
    result = P.plan("full", gpu="a100-80")
    study = [n for n, (names, _) in P.group_hours(result).items() if n == "all"]
    assert study, "the study proper is planned"
    names, hours = P.group_hours(result)["all"]
    assert names == ["e2.1", "e2.2", "e2.3", "e2.4"]
    conditional = sum(result.experiments[n]["conditional_gpu_hours"] for n in names)
    # half the plan's 220 GPU-h (the README's table), with every conditional trial at its worst case on top
    assert hours + result.cache["hours"] + conditional <= 110.0
    assert all(t.fits for t in result.trials), [t.name for t in result.trials if not t.fits]
    assert all(t.configured_fits or t.kind != "train" for t in result.trials if t.experiment in names)
    # the plan's data mix, every lever modelled, the worst case printed beside the expected
    first = next(t for t in result.trials if t.experiment == "e2.1")
    assert set(first.train_data) == {"shapes", "coco", "ssv2"} and first.train_data["ssv2"]["frames"] == 25
    assert 0 < first.pixel_share < 1 and first.run_fraction < 1
    assert any(t.halving_rung is not None for t in result.trials if t.experiment == "e2.3")
    assert result.total_hours_worst > result.total_hours
    text = P.format_plan(result, per_trial=False)
    study_line = next(line for line in text.splitlines() if line.startswith("study total"))
    branches_line = next(line for line in text.splitlines() if line.startswith("branches"))
    assert "p8.2" in branches_line and "e2.1" not in branches_line and "p8" not in study_line
    assert "MFU 0.35" in text and "wall-clock on 8 GPU(s)" in text and "early-stop fraction" in text


def test_clip_temporal_options_are_costed_as_they_decode():
    frame = _with(FLOW, adapter={"kind": "query", "budget": "10m", "overrides": {"temporal": "frame"}})
    space = _with(FLOW, adapter={"kind": "query", "budget": "10m", "overrides": {"temporal": "spacetime"}})
    image, per_frame, pooled = _costs(FLOW, 1), _costs(frame, 25), _costs(FLOW, 25)
    # frame: one conditioning per frame, the clip trains as 25 images; pool (the default): one clip of 4 latent frames
    assert per_frame["train"] == {k: 25 * v for k, v in image["train"].items()}
    assert per_frame["activation_bytes"] == {k: 25 * v for k, v in image["activation_bytes"].items()}
    assert sum(per_frame["train"].values()) > 4 * sum(pooled["train"].values())
    # spacetime: every frame's 256 DINOv2 patches reach the adapter
    st = _costs(space, 25)
    assert st["train"]["adapter"] == pytest.approx(pooled["train"]["adapter"] * (288 + 25 * 256) / (288 + 256))
    assert st["train"]["transformer"] == pooled["train"]["transformer"]
