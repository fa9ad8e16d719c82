"""The mini world's build: conventions shared with LTXPipeline, the caption embedder, the command end to end."""
import json

import pytest
import torch

from c2bridge.data import shapes as S
from c2bridge.decoder.ltx import LTXBridge, rope_interpolation_scale, transformer_velocity
from c2bridge.mini import load_mini_components
from c2bridge.mini import models as M
from c2bridge.mini.build import colour_correct, spatial_iou
from c2bridge.mini.captions import CaptionEmbedder


def _random_world(seed=0):
    torch.manual_seed(seed)
    vae, transformer = M.build_vae().eval(), M.build_transformer(64).eval()
    with torch.no_grad():
        vae.latents_mean.copy_(torch.randn(M.LATENT_CHANNELS) * 0.1)
        vae.latents_std.copy_(torch.rand(M.LATENT_CHANNELS) + 0.5)
    return {"vae": vae, "transformer": transformer, "scheduler": M.build_scheduler()}


def test_training_call_is_the_pipelines_call():
    """One Euler step of LTXPipeline from known noise equals noise - v of the build's transformer call, and the
    pipeline's timesteps are sigma * 1000 on linspace(1, 1/N, N): what the transformer was trained on."""
    from diffusers import LTXPipeline

    world = _random_world()
    pipe = LTXBridge(world["transformer"], world["vae"], world["scheduler"]).pipeline
    g = torch.Generator().manual_seed(1)
    latents = torch.randn(2, M.LATENT_CHANNELS, 1, 8, 8, generator=g)
    packed = LTXPipeline._pack_latents(latents, 1, 1)  # [2, 64, 8]
    cond = torch.randn(2, 3, 64, generator=g)
    mask = torch.tensor([[1, 1, 0], [1, 0, 0]])
    with torch.no_grad():
        out = pipe(prompt_embeds=cond, prompt_attention_mask=mask, latents=packed, num_frames=1, height=32,
                   width=32, num_inference_steps=1, guidance_scale=1.0, output_type="latent").frames
        v = transformer_velocity(world["transformer"], packed, torch.ones(2), cond, mask, (1, 8, 8),
                                 rope_interpolation_scale(world["vae"]))
    assert torch.allclose(out, packed - v, atol=1e-5)
    pipe.scheduler.set_timesteps(sigmas=[1.0, 0.75, 0.5, 0.25])
    assert torch.allclose(pipe.scheduler.timesteps, torch.tensor([1000.0, 750.0, 500.0, 250.0]))
    assert rope_interpolation_scale(world["vae"]) == (1 / 25, 4, 4)


def test_caption_embedder_tokens_mask_and_roundtrip(tmp_path):
    batch = S.generate_batch("val", 0, 4)
    emb = CaptionEmbedder(cond_dim=64)
    cond, mask = emb(batch["caption_ids"])
    assert cond.shape == (4, S.MAX_SHAPES, 64) and mask.dtype == torch.bool
    assert torch.equal(mask.sum(1), batch["num_shapes"])
    assert torch.all(cond[~mask] == 0)
    emb.save_pretrained(tmp_path / "captions")
    back = CaptionEmbedder.from_pretrained(tmp_path / "captions")
    cond2, _ = back(batch["caption_ids"])
    assert torch.allclose(cond, cond2, atol=1e-2)  # stored as fp16
    with pytest.raises(ValueError, match="caption_ids"):
        emb(torch.zeros(2, 7, dtype=torch.long))
    with pytest.raises(FileNotFoundError, match="c2bridge mini build"):
        CaptionEmbedder.from_pretrained(tmp_path / "nowhere")


def test_quality_measures_on_ground_truth():
    batch = S.generate_batch("val", 0, 12)
    assert torch.all(spatial_iou(batch["image"], batch["mask"]) == 1)
    assert colour_correct(batch["image"], batch).all()
    blank = torch.tensor(S.BACKGROUND_RGB).view(1, 3, 1, 1).expand(12, 3, 32, 32)
    assert torch.all(spatial_iou(blank, batch["mask"]) == 0)
    # shifting every picture by 8 px wrecks IoU
    assert spatial_iou(batch["image"].roll(8, dims=-1), batch["mask"]).mean() < 0.6


def test_missing_assets_name_the_build_command(tmp_path):
    with pytest.raises(FileNotFoundError, match="c2bridge mini build"):
        load_mini_components(tmp_path)


def _weights(directory):
    from safetensors.torch import load_file

    return {f"{p.parent.name}/{k}": v for p in sorted(directory.rglob("*.safetensors")) for k, v in load_file(p).items()}


def test_quick_build_command_end_to_end_and_repeatable(tmp_path, capsys):
    from c2bridge.cli import main

    out = tmp_path / "mini"
    assert main(["mini", "build", "--quick", "--out", str(out)]) == 0
    assert "caption IoU" in capsys.readouterr().out
    components = load_mini_components(out)
    assert set(components) == {"vae", "transformer", "scheduler", "dinov2", "captions"}
    for name in ("vae", "transformer", "dinov2", "captions"):
        module = components[name]
        assert not module.training and not any(p.requires_grad for p in module.parameters())
        assert all(p.dtype == torch.float32 for p in module.parameters())
    assert components["transformer"].config.caption_channels == 64
    dino = components["dinov2"](pixel_values=torch.rand(2, 3, 32, 32)).last_hidden_state
    assert dino.shape == (2, 1 + 64, 64)  # CLS + the mini preset's 64 patch tokens of width 64
    report = json.loads((out / "build_report.json").read_text())
    assert {"vae", "transformer", "dinov2", "eval"} <= set(report) and (out / "samples.png").stat().st_size > 0
    assert 0 < report["shipped_bytes"] <= 10e6
    # an interrupted build resumes from its stage checkpoints and gives the same weights as the uninterrupted one
    # (which also shows: same seed -> same weights)
    from c2bridge.mini import build as B

    again = tmp_path / "again"
    cfg = B.BuildConfig.quick(checkpoint_every=1)
    original = B.train_transformer

    def interrupted(cfg_, vae, report, callback=None, callback_every=0):
        def stop(step, *models):
            if step == 2:
                raise KeyboardInterrupt
        return original(cfg_, vae, report, callback=stop, callback_every=1)

    B.train_transformer = interrupted
    try:
        with pytest.raises(KeyboardInterrupt):
            B.build(again, cfg)
    finally:
        B.train_transformer = original
    work = {p.name.split("-")[0] for p in (again / ".build-work").iterdir()}
    assert work == {"vae", "transformer"} and not (again / "transformer").exists()
    B.build(again, cfg)
    assert not (again / ".build-work").exists()
    first, second = _weights(out), _weights(again)
    assert first.keys() == second.keys() and all(torch.equal(first[k], second[k]) for k in first)


def test_bad_build_arguments_are_one_clear_error(tmp_path, capsys):
    from c2bridge.cli import main

    assert main(["mini", "build", "--quick", "--vae-steps", "0", "--out", str(tmp_path / "x")]) == 2
    assert "--vae-steps must be >= 1" in capsys.readouterr().err
    assert not (tmp_path / "x").exists()
    with pytest.raises(ValueError, match="min_shapes"):
        S.ShapesConfig(min_shapes=0)
