"""The planner's formulas against FLOPs counted by torch (FlopCounterMode) and tensors saved by autograd, on the
real diffusers/transformers classes (tiny configs and real widths), and the plan it prints."""
from __future__ import annotations

import json

import pytest
import torch
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.utils.flop_counter import FlopCounterMode

from c2bridge import planner as P
from c2bridge.full_dims import full_dims

EXACT = 1e-6  # matmul/conv FLOPs are counted exactly by the formulas
TINY_LTX = dict(in_channels=8, out_channels=8, patch_size=1, patch_size_t=1, num_attention_heads=4,
                attention_head_dim=8, cross_attention_dim=32, num_layers=2, caption_channels=32)
TINY_VAE = dict(in_channels=3, out_channels=3, latent_channels=8, block_out_channels=(8, 8, 8, 8),
                decoder_block_out_channels=(8, 8, 8, 8), layers_per_block=(1, 1, 1, 1, 1),
                decoder_layers_per_block=(1, 1, 1, 1, 1), spatio_temporal_scaling=(True, True, False, False),
                decoder_spatio_temporal_scaling=(True, True, False, False),
                decoder_inject_noise=(False, False, False, False, False), upsample_residual=(False,) * 4,
                upsample_factor=(1,) * 4, patch_size=1, patch_size_t=1, timestep_conditioning=False)


def _rel(a: float, b: float) -> float:
    return abs(a - b) / max(abs(b), 1.0)


def _count(fn) -> tuple[float, object]:
    with FlopCounterMode(display=False) as fc:
        out = fn()
    return fc.get_total_flops(), out


def _ltx_counts(cfg: dict, frames: int, h: int, w: int, text: int):
    from diffusers import LTXVideoTransformer3DModel

    torch.manual_seed(0)
    model = LTXVideoTransformer3DModel(**cfg).eval().requires_grad_(False)
    s = frames * h * w
    x = torch.randn(1, s, cfg["in_channels"])
    cond = torch.randn(1, text, cfg["caption_channels"], requires_grad=True)
    kw = dict(hidden_states=x, encoder_hidden_states=cond, timestep=torch.tensor([500.0]),
              encoder_attention_mask=torch.ones(1, text), num_frames=frames, height=h, width=w, return_dict=False)
    with sdpa_kernel(SDPBackend.MATH):  # CPU flash attention is not counted by FlopCounterMode; math is (bmm)
        fwd, out = _count(lambda: model(**kw)[0])
        bwd, _ = _count(lambda: out.square().mean().backward())
    assert cond.grad is not None and cond.grad.abs().sum() > 0
    params = sum(p.numel() for p in model.parameters())
    # tensors autograd keeps for the backward (flash kernel, as on GPU), parameters excluded
    weights = {p.untyped_storage().data_ptr() for p in model.parameters()}
    saved: dict[int, int] = {}

    def pack(t):
        ptr = t.untyped_storage().data_ptr()
        if ptr not in weights:
            saved[ptr] = t.untyped_storage().nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        model(**kw)
    return fwd, bwd, params, sum(saved.values()), s


@pytest.mark.parametrize("cfg,shape,text", [
    (TINY_LTX, (3, 4, 4), 7),  # the diffusers test-suite config
    pytest.param(dict(full_dims()["ltx_transformer"], num_layers=2), (1, 8, 8), 77,  # real widths, 64 tokens
                 marks=pytest.mark.slow),
], ids=["tiny", "real-width"])
def test_ltx_transformer_flops_params_and_activations(cfg, shape, text):
    fwd, bwd, params, saved_bytes, s = _ltx_counts(cfg, *shape, text)
    est = P.ltx_transformer_flops(cfg, s, text, attention="math")
    assert _rel(est["forward"], fwd) < EXACT
    assert _rel(est["backward"], bwd) < EXACT
    assert P.ltx_transformer_params(cfg) == params
    act = P.ltx_transformer_activation_bytes(cfg, s, text, bytes_per_element=4)  # float32 here
    assert saved_bytes <= act <= 1.35 * saved_bytes, (act, saved_bytes)
    # flash (the GPU kernel) recomputes QKᵀ in the backward: more than the math count, same forward
    flash = P.ltx_transformer_flops(cfg, s, text, attention="flash")
    assert flash["forward"] == est["forward"] and flash["backward"] > est["backward"]


def _vae_counts(cfg: dict, latent: tuple[int, int, int]):
    from diffusers import AutoencoderKLLTXVideo

    torch.manual_seed(0)
    vae = AutoencoderKLLTXVideo(**cfg).eval().requires_grad_(False)
    z = torch.randn(1, cfg["latent_channels"], *latent, requires_grad=True)
    weights = {p.untyped_storage().data_ptr() for p in vae.parameters()}
    saved: dict[int, int] = {}

    def pack(t):
        ptr = t.untyped_storage().data_ptr()
        if ptr not in weights:
            saved[ptr] = t.untyped_storage().nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        fwd, out = _count(lambda: vae.decoder(z))
    bwd, _ = _count(lambda: out.mean().backward())
    with torch.no_grad():
        enc, _ = _count(lambda: vae.encoder(torch.rand(*out.shape)))
    return {"fwd": fwd, "bwd": bwd, "saved": sum(saved.values()) / 4, "out": tuple(out.shape), "enc": enc,
            "dec_params": sum(p.numel() for p in vae.decoder.parameters()),
            "enc_params": sum(p.numel() for p in vae.encoder.parameters())}


@pytest.mark.parametrize("cfg,latent", [(TINY_VAE, (3, 4, 4)),
                                        pytest.param(full_dims()["ltx_vae"], (1, 2, 2), marks=pytest.mark.slow)],
                         ids=["tiny", "real-config"])
def test_vae_decoder_and_encoder(cfg, latent):
    c = _vae_counts(cfg, latent)
    est = P.vae_decoder_costs(cfg, *latent)
    assert _rel(est["forward"], c["fwd"]) < EXACT
    assert _rel(est["forward"], c["bwd"]) < EXACT  # input-gradient backward = forward
    assert est["params"] == c["dec_params"]
    assert abs(est["saved_elements"] / c["saved"] - 1) < 0.05
    _, frames, height, width = c["out"][1:]
    assert P.latent_shape(cfg, frames, height, width) == latent
    enc = P.vae_encoder_costs(cfg, frames, height, width)
    assert _rel(enc["forward"], c["enc"]) < EXACT and enc["params"] == c["enc_params"]


def test_real_vae_091_decoder_params():
    from diffusers import AutoencoderKLLTXVideo

    from c2bridge.full_dims import LTX_VAE_091

    with torch.device("meta"):
        vae = AutoencoderKLLTXVideo(**LTX_VAE_091)
    assert P.vae_decoder_costs(LTX_VAE_091, 1, 1, 1)["params"] == sum(p.numel() for p in vae.decoder.parameters())


@pytest.mark.parametrize("net", ["alex", "vgg"])
def test_lpips(net):
    import lpips

    m = lpips.LPIPS(net=net, pnet_rand=True, verbose=False).eval().requires_grad_(False)
    weights = {p.untyped_storage().data_ptr() for p in m.parameters()}
    a, b = torch.rand(1, 3, 64, 64, requires_grad=True), torch.rand(1, 3, 64, 64)
    saved: dict[int, int] = {}

    def pack(t):
        ptr = t.untyped_storage().data_ptr()
        if ptr not in weights:
            saved[ptr] = t.untyped_storage().nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        fwd, d = _count(lambda: m(a * 2 - 1, b * 2 - 1))
    bwd, _ = _count(lambda: d.sum().backward())
    est = P.lpips_costs(net, 64, 64)
    assert _rel(est["forward"], fwd) < EXACT and _rel(est["backward"], bwd) < EXACT
    assert est["params"] == sum(p.numel() for p in m.net.parameters())
    assert abs(est["saved_elements"] / (sum(saved.values()) / 4) - 1) < 0.10


def test_dinov2_and_qwen_vl_forward():
    from transformers import Dinov2Config, Dinov2Model, Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration

    dcfg = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, mlp_ratio=4, patch_size=2, image_size=30)
    dino = Dinov2Model(Dinov2Config(**dcfg)).eval()
    with sdpa_kernel(SDPBackend.MATH), torch.no_grad():
        flops, _ = _count(lambda: dino(pixel_values=torch.rand(1, 3, 16, 16)))
    assert _rel(P.dinov2_flops(dcfg, 16), flops) < EXACT
    assert P.dinov2_params(dcfg) == sum(p.numel() for p in dino.parameters())

    text = dict(vocab_size=99, hidden_size=32, intermediate_size=37, num_hidden_layers=2, num_attention_heads=4,
                num_key_value_heads=2, rope_parameters={"rope_type": "default", "rope_theta": 1e4,
                                                        "mrope_section": [2, 1, 1]})
    vision = dict(depth=3, hidden_size=32, out_hidden_size=32, intermediate_size=37, num_heads=4, patch_size=14,
                  spatial_merge_size=2, temporal_patch_size=2, window_size=56, fullatt_block_indexes=[1])
    cfg = Qwen2_5_VLConfig(text_config=text, vision_config=vision, image_token_id=95, video_token_id=96,
                           vision_start_token_id=97, vision_end_token_id=98)
    qwen = Qwen2_5_VLForConditionalGeneration(cfg).eval()
    assert P.qwen_vl_params(text, vision) == sum(p.numel() for p in qwen.parameters())
    size, prompt = 140, 6  # 10 x 10 patches: 5 x 5 merged cells, 2 x 2 windows -> partial windows at the edges
    g = size // 14
    ids = torch.tensor([[97] + [95] * (g * g // 4) + [98] + [1] * (prompt - 2)])
    with sdpa_kernel(SDPBackend.MATH), torch.no_grad():
        flops, _ = _count(lambda: qwen.model(input_ids=ids, pixel_values=torch.rand(g * g, 3 * 2 * 14 * 14),
                                             image_grid_thw=torch.tensor([[1, g, g]])))
    est = P.qwen_vl_flops(text, vision, size, prompt)
    assert est["tokens"] == ids.shape[1]
    assert _rel(est["forward"], flops) < EXACT


def test_adapter_bound_covers_real_adapters():
    from c2bridge.adapters import build_adapter

    dims = dict(vlm_dim=48, dino_dim=32, out_dim=40, n_tokens=6, n_patches=16)
    t_vlm = 10
    for kind in ("query", "bottleneck", "lora", "perceiver", "moe"):
        adapter = build_adapter(kind, budget=2e4, **dims)
        vlm, dino = torch.randn(2, t_vlm, 48), torch.randn(2, 16, 32)
        with sdpa_kernel(SDPBackend.MATH):
            fwd, out = _count(lambda: adapter(vlm, dino))
            bwd, _ = _count(lambda: (out.square().mean() + adapter.aux_loss).backward())
        bound = P.adapter_flops(adapter.num_params, t_vlm + 16, batch=2)
        assert fwd <= bound["forward"] and fwd + bwd <= bound["forward"] + bound["backward"], kind


# ------------------------------------------------------------------------------------------------------------ plan


def test_full_plan_against_the_plan_table(tmp_path):
    plan_numbers = P.load_sources("full", config_dir=tmp_path)  # no YAMLs: the plan's own numbers
    assert set(plan_numbers["sources"].values()) == {"plan"}
    result = P.plan(preset="full", gpu="a100-80", sources=plan_numbers)
    assert list(result.experiments) == ["e2.1", "e2.2", "e2.3", "e2.4"]
    base = {f"query-{b}-s0" for b in ("5m", "10m", "20m", "50m", "100m")}  # stage 1 (later stages: run-time choices)
    e21 = [t for t in result.trials if t.experiment == "e2.1" and t.name in base]
    assert len(e21) == 5 and sorted(t.adapter_params for t in e21) == [5e6, 10e6, 20e6, 50e6, 100e6]
    # more parameters never cost less
    by_size = sorted(e21, key=lambda t: t.adapter_params)
    assert all(a.hours <= b.hours for a, b in zip(by_size, by_size[1:]))
    assert result.experiments["e2.1"]["plan_gpu_hours"] == 80.0
    assert result.total_hours == pytest.approx(sum(e["gpu_hours"] for e in result.experiments.values())
                                               + result.cache["hours"])
    # one step of a clip batch is ~10x an image batch (1024 vs 256 latent tokens, 25 decoded frames)
    t = e21[1]
    assert 5 < t.step_tflops["ssv2"] / t.step_tflops["shapes"] < 20
    # a faster GPU, same FLOPs: hours scale with peak throughput
    h100 = P.plan(preset="full", experiments=["e2.1"], gpu="h100", sources=plan_numbers)
    assert h100.experiments["e2.1"]["gpu_hours"] == pytest.approx(
        result.experiments["e2.1"]["gpu_hours"] * 312 / 989, rel=1e-9)
    # shared trials (same resolved recipe) are counted once
    shared = [t for t in result.trials if t.shared_with]
    assert shared and all(t.hours == 0 for t in shared)
    assert any(t.experiment == "e2.2" and t.shared_with == "e2.1/query-10m-s0" for t in shared)
    # the trials come from each experiment's own trials(): the runner's labels, smallest budget first
    first = [t.name for t in result.trials if t.experiment == "e2.1"][:5]
    assert first == [f"query-{b}-s0" for b in ("5m", "10m", "20m", "50m", "100m")]


def test_the_study_configs_load():
    src = P.load_sources("full")  # the repository's configs/presets/full.yaml and experiments/e2_*.full.yaml
    result = P.plan("full", sources=src)
    for name, e in result.experiments.items():
        assert e["trials"] >= 1 and e["gpu_hours"] > 0, name
    assert result.cache["samples"] > 0 and 0 < result.total_hours < 10_000


def test_fit_flags_follow_memory(tmp_path):
    src = P.load_sources("full", config_dir=tmp_path)  # the plan's data: 5k SSv2 clips of 25 frames
    big = P.plan(preset="full", experiments=["e2.1"], gpu="a100-40", overrides={"optim.batch_size": 8},
                 sources=src)
    t = big.trials[0]
    # 25-frame clips at micro-batch 8 do not fit in 40 GiB: the plan takes the largest that does, same 32 per step
    assert not t.configured_fits and t.worst_dataset == "ssv2" and 1 <= t.max_batch < 8
    assert t.fits and t.batch_size <= t.max_batch and t.batch_size * t.grad_accum == 32
    assert not big.experiments["e2.1"]["not_fitting"]
    fit = t.batch_size
    own = {"recipe": src["recipe"], "data": src["data"], "encoding": src["encoding"], "gpu": "a100-40"}
    e21 = src["experiments"]["e2.1"][0]
    small = P.estimate_trial("e2.1", {**e21, "optim": {"batch_size": fit, "grad_accum": 32 // fit}}, **own)
    worse = P.estimate_trial("e2.1", {**e21, "optim": {"batch_size": t.max_batch + 1}}, **own)
    assert small.fits == (small.peak_gib <= 40.0) and small.fits and small.configured_fits
    assert not worse.fits and not worse.configured_fits
    # the same training samples at another micro-batch: the same training FLOPs
    assert small.flops["train"] == pytest.approx(t.flops["train"], rel=1e-9)


def test_experiment_yaml_drives_the_trial_list(tmp_path):
    import yaml

    (tmp_path / "experiments").mkdir()
    (tmp_path / "presets").mkdir()
    (tmp_path / "presets" / "full.yaml").write_text(yaml.safe_dump({"optim": {"batch_size": 2, "grad_accum": 16}}))
    (tmp_path / "experiments" / "e2_1.full.yaml").write_text(yaml.safe_dump(
        {"kind": "lora", "budgets": ["5m", "100m"], "small_budget": "5m", "seeds": [0, 1],
         "recipe": {"loss.name": "flow"}}))
    (tmp_path / "experiments" / "e2_3.full.yaml").write_text(yaml.safe_dump(
        {"budget": "10m", "grids": {"loss": {"arms": {"flow": {"loss.name": "flow"},
                                                       "l2": {"loss.name": "flow", "loss.weights": {"l2": 1.0}}}}},
         "combine": True}))
    src = P.load_sources("full", config_dir=tmp_path)
    e21 = src["experiments"]["e2.1"]
    assert [t["name"] for t in e21][:4] == ["lora-5m-s0", "lora-5m-s1", "lora-100m-s0", "lora-100m-s1"]
    assert e21[0]["loss"]["name"] == "flow" and e21[0]["adapter"] == {"kind": "lora", "budget": "5m"}
    assert [t["name"] for t in src["experiments"]["e2.3"]] == ["loss/flow-s0", "loss/l2-s0", "combined-s0"]
    assert src["experiments"]["e2.3"][2]["_runtime_choice"]  # decided after stage 1: never shared
    assert src["recipe"]["optim"]["batch_size"] == 2
    result = P.plan("full", ["e2.1", "e2.3"], sources=src)
    flow = result.trials[0]
    assert flow.configured_batch == 2 and flow.memory_gib["vae_decoder_bf16"] == 0  # flow loss: no decode
    l2 = next(t for t in result.trials if t.name == "loss/l2-s0")  # flow + an L2 pixel term: decodes
    assert l2.flops["train"] > next(t for t in result.trials if t.name == "loss/flow-s0").flops["train"]
    assert l2.memory_gib["vae_decoder_bf16"] > 0


def test_bad_inputs_are_clear_errors():
    with pytest.raises(ValueError, match="unknown GPU 'v100'"):
        P.estimate_trial("e2.1", {}, gpu="v100")
    with pytest.raises(ValueError, match="unknown experiment 'e9'"):
        P.plan(experiments=["e9"])
    with pytest.raises(ValueError, match="multiples of 32"):
        P.latent_shape(full_dims()["ltx_vae"], 1, 500, 512)
    with pytest.raises(ValueError, match="8k\\+1"):
        P.latent_shape(full_dims()["ltx_vae"], 24, 512, 512)
    with pytest.raises(ValueError, match="unknown loss"):
        P.estimate_trial("e2.1", {"loss": {"name": "nope"}})
    with pytest.raises(ValueError, match="at most 1e\\+10"):
        P.estimate_trial("e2.1", {"adapter": {"budget": "1e14"}})


def test_cli_plan(capsys):
    from c2bridge.cli import main

    assert main(["plan", "--preset", "full", "--summary"]) == 0
    out = capsys.readouterr().out
    assert "e2.1" in out and "total" in out and "220" in out
    assert main(["plan", "e2.2", "--gpu", "h100", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["gpu"]["name"] == "h100" and list(doc["experiments"]) == ["e2.2"]
    assert main(["plan", "e2.9"]) == 2
    assert "unknown experiment 'e2.9'" in capsys.readouterr().err
