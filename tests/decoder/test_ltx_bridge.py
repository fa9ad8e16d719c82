"""LTXBridge on the tiny random config: latents, the training objective, sampling through LTXPipeline."""
import pytest
import torch

from c2bridge.decoder import LossSpec, LTXBridge


def _fixed_batch(bridge, b=2, frames=1, seed=0):
    g = torch.Generator().manual_seed(seed)
    shape = (b, 3, 32, 32) if frames == 1 else (b, 3, frames, 32, 32)
    pixels = torch.rand(shape, generator=g)
    return pixels, bridge.encode_latents(pixels)


def test_tiny_bridge_properties(tiny_bridge):
    assert tiny_bridge.cond_dim == 32  # tiny preset cond_dim
    assert tiny_bridge.latent_channels == 8
    assert tiny_bridge.device.type == "cpu" and tiny_bridge.dtype == torch.float32
    assert all(not p.requires_grad for p in tiny_bridge.parameters())
    cond, mask = tiny_bridge.null_cond(3)
    assert cond.shape == (3, 8, 32) and mask.shape == (3, 8) and not cond.any() and mask.all()


def test_encode_latents_images_and_clips(tiny_bridge):
    _, lat = _fixed_batch(tiny_bridge)
    assert lat.shape == (2, 8, 1, 8, 8)  # 4x spatial compression, 1 frame
    _, lat = _fixed_batch(tiny_bridge, frames=9)
    assert lat.shape == (2, 8, 3, 8, 8)  # 4x temporal: 9 frames -> 3
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        tiny_bridge.encode_latents(torch.rand(1, 3, 32, 32) * 2 - 1)
    with pytest.raises(ValueError, match="num_frames"):
        tiny_bridge.encode_latents(torch.rand(1, 3, 4, 32, 32))
    with pytest.raises(ValueError, match="multiples"):
        tiny_bridge.encode_latents(torch.rand(1, 3, 30, 30))


def test_training_matches_ltx_pipeline():
    """The objective's packing, normalization, timestep scale, rope scale and decode are the pipeline's: one
    LTXPipeline step from pure noise (σ=1) equals x0_hat = x_t − σ·v computed by the bridge."""
    from diffusers import LTXPipeline

    bridge = LTXBridge.from_preset("tiny", seed=1)
    g = torch.Generator().manual_seed(0)
    bridge.vae.latents_mean.copy_(torch.randn(8, generator=g) * 0.3)  # make (de)normalization non-trivial
    bridge.vae.latents_std.copy_(torch.rand(8, generator=g) + 0.5)
    cond = torch.randn(2, 8, 32, generator=g)
    mask = torch.ones(2, 8, dtype=torch.long)
    noise = torch.randn(2, 8, 1, 8, 8, generator=g)
    sigmas = torch.ones(2)
    with torch.no_grad():
        x0_hat = noise - sigmas.view(2, 1, 1, 1, 1) * bridge.predict_velocity(noise, sigmas, cond, mask)
        expected_pixels = bridge.decode_latents(x0_hat)[:, :, 0].clamp(0, 1)
    common = dict(prompt_embeds=cond, prompt_attention_mask=mask, height=32, width=32, num_frames=1,
                  num_inference_steps=1, guidance_scale=1.0, latents=LTXPipeline._pack_latents(noise))
    packed = bridge.pipeline(**common, output_type="latent").frames
    got = LTXPipeline._unpack_latents(packed, 1, 8, 8)
    torch.testing.assert_close(got, x0_hat, atol=1e-5, rtol=1e-4)
    pixels = bridge.pipeline(**common, output_type="pt").frames[:, 0]  # [B, 3, H, W]
    torch.testing.assert_close(pixels, expected_pixels, atol=1e-5, rtol=1e-4)


# The random tiny decoder barely depends on its conditioning in pixel space, so the pixel loss can only move a
# little (observed: flow −20%, pixel −2.4% in 8 steps); the thresholds are well above float noise (runs are exact).
@pytest.mark.parametrize("spec,min_drop", [
    (LossSpec(), 0.15),
    (LossSpec.named("lpips_l2", perceptual="one_minus_ssim", sigma="uniform"), 0.01),
], ids=["flow", "pixel"])
def test_loss_decreases_and_only_adapter_gets_grads(tiny_bridge, spec, min_drop):
    from stand_ins import TinyAdapter

    torch.manual_seed(0)
    adapter = TinyAdapter()
    pixels, latents = _fixed_batch(tiny_bridge)
    dino = torch.randn(2, 16, 32)
    opt = torch.optim.Adam(adapter.parameters(), lr=0.2)
    losses = []
    for _ in range(8):
        g = torch.Generator().manual_seed(123)  # same σ and noise every step: a fixed objective
        loss, parts = tiny_bridge.training_loss(adapter(None, dino), None, latents, pixels, loss=spec, generator=g)
        opt.zero_grad()
        loss.backward()
        if not losses:
            assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in adapter.parameters())
            assert all(p.grad is None for p in tiny_bridge.parameters())
        opt.step()
        losses.append(loss.item())
        assert set(parts) == {"flow", "total", *spec.active_terms}
        assert parts["total"] == pytest.approx(loss.item())
    assert losses[-1] < (1 - min_drop) * losses[0], losses


def test_vae_decode_only_for_pixel_terms(tiny_bridge, monkeypatch):
    pixels, latents = _fixed_batch(tiny_bridge)
    calls = []
    original = tiny_bridge.vae.decode
    monkeypatch.setattr(tiny_bridge.vae, "decode", lambda *a, **k: calls.append(1) or original(*a, **k))
    cond = torch.randn(2, 8, 32)
    tiny_bridge.training_loss(cond, None, latents, pixels, loss=LossSpec())
    assert calls == []
    tiny_bridge.training_loss(cond, None, latents, pixels, loss=LossSpec(terms={"l2": 1.0}))
    assert calls == [1]
    with pytest.raises(ValueError, match="target_pixels"):
        tiny_bridge.training_loss(cond, None, latents, None, loss=LossSpec(terms={"l2": 1.0}))


def test_same_generator_same_loss_and_clip_objective(tiny_bridge):
    pixels, latents = _fixed_batch(tiny_bridge, frames=9)
    cond = torch.randn(2, 8, 32)
    spec = LossSpec.named("lpips_ssim", perceptual="one_minus_ssim", x0_weighting="one_minus_sigma")
    a, pa = tiny_bridge.training_loss(cond, None, latents, pixels, loss=spec, generator=torch.Generator().manual_seed(5))
    b, pb = tiny_bridge.training_loss(cond, None, latents, pixels, loss=spec, generator=torch.Generator().manual_seed(5))
    c, _ = tiny_bridge.training_loss(cond, None, latents, pixels, loss=spec, generator=torch.Generator().manual_seed(6))
    assert a.item() == b.item() and pa == pb and a.item() != c.item()
    with pytest.raises(ValueError, match="cond must be"):
        tiny_bridge.training_loss(torch.randn(2, 8, 31), None, latents, pixels)


def test_sample_shapes_range_and_seed(tiny_bridge):
    cond = torch.randn(2, 8, 32)
    img = tiny_bridge.sample(cond, None, steps=2, seed=3)
    assert img.shape == (2, 3, 32, 32) and img.min() >= 0 and img.max() <= 1
    assert torch.equal(img, tiny_bridge.sample(cond, None, steps=2, seed=3))
    assert not torch.equal(img, tiny_bridge.sample(cond, None, steps=2, seed=4))
    per_sample = tiny_bridge.sample(cond, None, steps=2, seed=[7, 8])
    # per-sample seeds: a sample's noise does not depend on its batch (outputs equal up to batched-matmul rounding)
    torch.testing.assert_close(per_sample[1:], tiny_bridge.sample(cond[1:], None, steps=2, seed=[8]),
                               atol=1e-5, rtol=0)
    clip = tiny_bridge.sample(cond, torch.ones(2, 8), num_frames=9, steps=2, guidance_scale=3.0)
    assert clip.shape == (2, 3, 9, 32, 32) and clip.min() >= 0 and clip.max() <= 1
    with pytest.raises(ValueError, match="num_frames"):
        tiny_bridge.sample(cond, None, num_frames=4, steps=1)


def test_mini_preset_absent_names_build_command(monkeypatch):
    import c2bridge.mini

    def missing():
        raise FileNotFoundError("src/c2bridge/assets/mini/transformer")

    monkeypatch.setattr(c2bridge.mini, "load_mini_components", missing, raising=False)
    with pytest.raises(FileNotFoundError, match="c2bridge mini build"):
        LTXBridge.from_preset("mini")
    monkeypatch.delattr(c2bridge.mini, "load_mini_components")
    with pytest.raises(FileNotFoundError, match="c2bridge mini build"):
        LTXBridge.from_preset("mini")


def test_mini_preset_with_captions(monkeypatch):
    import c2bridge.mini
    from c2bridge.decoder.ltx import _tiny_components

    transformer, vae, scheduler = _tiny_components(64, seed=0)  # mini preset cond_dim 64
    captions = torch.nn.Embedding(10, 64)
    monkeypatch.setattr(c2bridge.mini, "load_mini_components", lambda: dict(
        transformer=transformer, vae=vae, scheduler=scheduler, captions=captions), raising=False)
    bridge = LTXBridge.from_preset("mini")
    assert bridge.cond_dim == 64 and bridge.n_tokens == 16 and bridge.image_size == 32
    cond, mask = bridge.caption_cond(torch.tensor([[1, 2, 3], [4, 5, 6]]))
    assert cond.shape == (2, 3, 64) and mask.shape == (2, 3)
    assert not captions.weight.requires_grad
    with pytest.raises(ValueError, match="caption"):
        LTXBridge.from_preset("tiny").caption_cond(torch.tensor([[1]]))


def test_full_preset_local_dir(tmp_path):
    from c2bridge.decoder.ltx import _tiny_components

    with pytest.raises(FileNotFoundError, match="transformer"):
        LTXBridge.from_preset("full", path=tmp_path, dtype=torch.float32)
    transformer, vae, scheduler = _tiny_components(4096, seed=0)  # same layout as Lightricks/LTX-Video
    for sub, component in (("transformer", transformer), ("vae", vae), ("scheduler", scheduler)):
        component.save_pretrained(tmp_path / sub)
    bridge = LTXBridge.from_preset("full", path=tmp_path, dtype=torch.float32)
    assert bridge.cond_dim == 4096 and bridge.preset == "full" and bridge.default_steps == 50
    assert all(not p.requires_grad for p in bridge.parameters())
