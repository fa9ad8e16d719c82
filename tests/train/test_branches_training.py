"""The training options the plan's branches use, on the tiny preset: decoder LoRA (8.2), a distillation teacher
(8.3), fewer output tokens (open question 2), and that the decoder stays frozen everywhere else."""
from __future__ import annotations

import pytest
import torch

from c2bridge.recipe import load_config
from c2bridge.train.loop import AdapterTrainingRecipe, train


def _run_recipe(cfg: dict, out):
    """Run the recipe stage by stage, keeping the object (its decoder) for inspection."""
    recipe = AdapterTrainingRecipe(load_config(cfg), out)
    recipe.check(False, False)
    recipe.setup_data()
    recipe.setup_model()
    before = {k: v.detach().clone() for k, v in recipe.bridge.transformer.state_dict().items()}
    adapter_before = {k: v.detach().clone() for k, v in recipe.adapter.state_dict().items()}
    recipe.claim_run_dir(False)
    recipe.restore()
    status, detail = recipe.fit()
    result = recipe.finish(status, detail)
    return recipe, before, adapter_before, result


def test_decoder_is_bit_identical_after_training_without_lora(tiny_config, tmp_path):
    recipe, before, adapter_before, result = _run_recipe(tiny_config(**{"optim.max_steps": 3}), tmp_path / "run")
    assert result["status"] == "completed"
    after = recipe.bridge.transformer.state_dict()
    assert set(after) == set(before)
    assert all(torch.equal(after[k], before[k]) for k in before)  # the frozen decoder: not one bit changed
    assert not any(torch.equal(v, adapter_before[k]) for k, v in recipe.adapter.state_dict().items()
                   if v.is_floating_point() and v.numel() > 1 and "out_proj.weight" in k)  # the adapter did train
    assert result["params"]["decoder_lora"] is None


def test_decoder_lora_trains_only_lora_and_adapter_and_reloads(tiny_config, tmp_path):
    from c2bridge.decoder import LTXBridge, lora

    cfg = tiny_config(**{"optim.max_steps": 3, "decoder_lora.rank": 2})
    recipe, _, _, result = _run_recipe(cfg, tmp_path / "run")
    assert result["status"] == "completed"
    before = LTXBridge.from_preset("tiny").transformer.state_dict()  # the frozen decoder (seeded: the same init)
    after = recipe.bridge.transformer.state_dict()
    lora_keys = [k for k in after if "lora_" in k]
    assert lora_keys and result["params"]["decoder_lora"] == 2 * 8 * (32 + 32)  # rank x (in + out) x 8 projections
    for key, value in after.items():  # every base weight unchanged (peft renames them ...base_layer.weight)
        if "lora_" in key:
            continue
        original = key.replace("base_model.model.", "").replace(".base_layer", "")
        assert torch.equal(value, before[original]), key
    trained_b = [after[k] for k in lora_keys if "lora_B" in k]
    assert any(t.abs().sum() > 0 for t in trained_b)  # lora_B starts at zero: it moved, so the LoRA trained

    # the saved LoRA (peft's save_pretrained, inside the adapter dir) reloads onto a fresh decoder: same outputs
    lora_dir = tmp_path / "run" / "adapter" / "decoder_lora"
    assert (lora_dir / "adapter_model.safetensors").is_file()
    fresh = LTXBridge.from_preset("tiny")
    x = torch.randn(1, 8, 1, 4, 4, generator=torch.Generator().manual_seed(0))
    cond = torch.randn(1, 8, 32, generator=torch.Generator().manual_seed(1))
    mask = torch.ones(1, 8, dtype=torch.long)
    sig = torch.full((1,), 0.7)
    packed = recipe.bridge.transformer
    with torch.no_grad():
        want = _velocity(recipe.bridge, x, sig, cond, mask)
        plain = _velocity(fresh, x, sig, cond, mask)
        with lora.loaded(fresh.transformer, lora_dir):
            got = _velocity(fresh, x, sig, cond, mask)
        unloaded = _velocity(fresh, x, sig, cond, mask)
    assert packed is recipe.bridge.transformer
    assert torch.allclose(got, want, atol=1e-6) and not torch.allclose(plain, want, atol=1e-6)
    assert torch.equal(unloaded, plain)  # unloading restores the frozen decoder exactly


def _velocity(bridge, latents, sigmas, cond, mask):
    """The transformer's prediction on a latent [B, C, F, H, W]."""
    return bridge.predict_velocity(latents, sigmas, cond, mask)


@pytest.mark.parametrize("rank", [0, -1, 33])
def test_lora_rank_that_does_not_fit_is_one_error_before_training(tiny_config, tmp_path, rank):
    out = tmp_path / "run"
    with pytest.raises(ValueError, match="decoder_lora.rank") as err:
        train(tiny_config(**{"decoder_lora.rank": rank}), out)
    assert "\n" not in str(err.value)
    assert not out.exists() or not any(out.iterdir())  # nothing written


def test_fewer_output_tokens_train_and_sample(tiny_config, tmp_path):
    cfg = tiny_config(**{"optim.max_steps": 2, "adapter.overrides": {"n_tokens": 4}, "eval.n_samples": 2,
                         "eval.sample_steps": 2, "eval.distance": "one_minus_ssim"})
    result = train(cfg, tmp_path / "run")
    assert result["status"] == "completed", result.get("error")
    assert result["sampled"]["n"] == 2
    from c2bridge.adapters import load_adapter

    assert load_adapter(tmp_path / "run" / "adapter").n_tokens == 4


def test_teacher_is_loaded_read_only_and_counted(tiny_config, tmp_path):
    import hashlib

    teacher_run = train(tiny_config(**{"optim.max_steps": 2, "adapter.budget": "20m"}), tmp_path / "teacher")
    teacher_dir = tmp_path / "teacher" / "adapter"
    digest = {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in teacher_dir.iterdir()}
    mtimes = {p.name: p.stat().st_mtime_ns for p in teacher_dir.iterdir()}
    cfg = tiny_config(**{"optim.max_steps": 2, "distill.teacher": str(teacher_dir)})
    recipe, _, _, result = _run_recipe(cfg, tmp_path / "student")
    assert result["status"] == "completed"
    assert all(not p.requires_grad for p in recipe.teacher.parameters())
    assert result["params"]["teacher"] == teacher_run["params"]["trainable"] > 0
    assert {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in teacher_dir.iterdir()} == digest
    assert {p.name: p.stat().st_mtime_ns for p in teacher_dir.iterdir()} == mtimes


@pytest.mark.parametrize("make", ["missing", "empty", "lora"])
def test_teacher_that_is_not_an_adapter_is_one_error_before_training(tiny_config, tmp_path, make):
    bad = tmp_path / "bad"
    if make != "missing":
        bad.mkdir()
    if make == "lora":  # a peft LoRA dir has an adapter_config.json too, but it is no adapter
        (bad / "adapter_config.json").write_text('{"r": 2, "peft_type": "LORA"}')
        (bad / "model.safetensors").write_bytes(b"")
    out = tmp_path / "run"
    with pytest.raises((ValueError, FileNotFoundError), match="distill.teacher") as err:
        train(tiny_config(**{"distill.teacher": str(bad)}), out)
    assert "\n" not in str(err.value)
    assert not out.exists() or not any(out.iterdir())


@pytest.mark.parametrize("kind", ["query", "bottleneck", "lora", "perceiver", "moe"])
def test_position_and_stream_options_build_train_and_round_trip(kind, tmp_path):
    """Q3's pos_emb none / learned / sincos and Q4's learned stream gate, on every kind."""
    from c2bridge.adapters import build_adapter, load_adapter

    dims = dict(vlm_dim=32, dino_dim=32, out_dim=32, n_tokens=8, n_patches=16, seed=0)
    vlm, dino = torch.randn(2, 5, 32), torch.randn(2, 16, 32)
    counts = {}
    for pos in (True, "sincos", "none"):
        a = build_adapter(kind, budget=4e4, pos_emb=pos, stream_weights="learned", **dims)
        names = {n for n, p in a.named_parameters()}
        counts[pos] = sum(p.numel() for n, p in a.named_parameters() if n.endswith(("pos.rows", "pos.cols")))
        gate = [p for n, p in a.named_parameters() if n.endswith("gate")]
        assert len(gate) == 1, names
        a(vlm, dino).square().mean().backward()
        assert gate[0].grad is not None and gate[0].grad.abs() > 0  # the gate learns
        a.save_pretrained(tmp_path / str(pos))
        b = load_adapter(tmp_path / str(pos))
        assert b.config["pos_emb"] == pos and b.config["stream_weights"] == "learned"
        assert torch.equal(a(vlm, dino), b(vlm, dino))
    assert counts[True] > 0 and counts["sincos"] == 0 and counts["none"] == 0  # sincos is fixed (a buffer)
    with pytest.raises(ValueError, match="pos_emb must be one of"):
        build_adapter(kind, budget=4e4, pos_emb="rope", **dims)
    with pytest.raises(ValueError, match="stream_weights must be"):
        build_adapter(kind, budget=4e4, stream_weights="gated", **dims)
