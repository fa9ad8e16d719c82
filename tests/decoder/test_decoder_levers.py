"""The decoder's compute levers on the tiny bridge: gradient checkpointing gives the conditioning the same
gradients, pixel regions decode only their part and map latent frames / squares to the right target pixels."""
import pytest
import torch

from c2bridge.decoder import LTXBridge
from c2bridge.decoder.objective import LossSpec, PixelRegion, random_pixel_region


def _cond_grad(bridge, spec, latents, target, seed=0):
    cond = torch.randn(2, 8, bridge.cond_dim, generator=torch.Generator().manual_seed(5)).requires_grad_(True)
    loss, _ = bridge.training_loss(cond, None, latents, target, loss=spec,
                                   generator=torch.Generator().manual_seed(seed))
    loss.backward()
    return float(loss.detach()), cond.grad.clone()


def test_gradient_checkpointing_gives_the_conditioning_the_same_gradients():
    """Frozen weights, gradients only to the input (the adapter's output): checkpointed blocks must still pass
    them, equal within float tolerance, and really recompute (each block runs twice per step)."""
    plain, checkpointed = LTXBridge.from_preset("tiny"), LTXBridge.from_preset("tiny", gradient_checkpointing=True)
    assert checkpointed.transformer.gradient_checkpointing and not plain.transformer.gradient_checkpointing
    target = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    latents = plain.encode_latents(target)
    calls = []
    for bridge in (plain, checkpointed):
        # a pre-hook: the recompute stops as soon as backward has what it needs, before the block returns
        bridge.transformer.transformer_blocks[0].register_forward_pre_hook(lambda *a: calls.append(1))
    spec = LossSpec(terms={"flow": 1.0, "l2": 0.5})  # through the transformer and the VAE decoder
    loss_a, grad_a = _cond_grad(plain, spec, latents, target)
    n_plain = len(calls)
    loss_b, grad_b = _cond_grad(checkpointed, spec, latents, target)
    assert n_plain == 1 and len(calls) - n_plain == 2  # forward + the recompute in backward
    assert loss_a == pytest.approx(loss_b, rel=1e-6)
    assert grad_a.abs().sum() > 0
    torch.testing.assert_close(grad_a, grad_b, rtol=1e-5, atol=1e-7)
    assert all(p.grad is None for p in checkpointed.parameters())  # the decoder stays frozen


def test_random_pixel_region_is_seeded_and_inside_the_latent():
    assert random_pixel_region((1, 8, 8)) is None  # nothing to crop
    assert random_pixel_region((3, 8, 8), size=8, frames=3) is None
    regions = {random_pixel_region((3, 8, 8), size=4, frames=2, seed=s) for s in range(40)}
    assert len(regions) > 5  # placed at random ...
    assert random_pixel_region((3, 8, 8), size=4, frames=2, seed=7) == random_pixel_region((3, 8, 8), size=4,
                                                                                          frames=2, seed=7)
    for r in regions:  # ... and always inside
        assert 0 <= r.frame <= 1 and r.frames == 2 and 0 <= r.top <= 4 and 0 <= r.left <= 4 and r.size == 4


def test_region_decodes_only_its_part_and_matches_its_target_pixels(tiny_bridge, monkeypatch):
    clip = torch.rand(2, 3, 9, 32, 32, generator=torch.Generator().manual_seed(2))  # 9 frames -> 3 latent frames
    latents = tiny_bridge.encode_latents(clip)
    assert latents.shape[2:] == (3, 8, 8)
    decoded = []
    original = LTXBridge.decode_latents

    def recording(self, z):
        out = original(self, z)
        decoded.append((tuple(z.shape), tuple(out.shape)))
        return out

    monkeypatch.setattr(LTXBridge, "decode_latents", recording)
    spec = LossSpec(terms={"flow": 1.0, "l2": 1.0})
    for region in (PixelRegion(frame=1, frames=2, top=2, left=4, size=4), PixelRegion(frame=0, frames=1),
                   PixelRegion(frame=2, frames=1, top=0, left=0, size=2)):
        cond = torch.zeros(2, 8, tiny_bridge.cond_dim)
        _, parts = tiny_bridge.training_loss(cond, None, latents, clip, loss=spec,
                                             generator=torch.Generator().manual_seed(0), region=region)
        z_shape, px_shape = decoded[-1]
        size = region.size or 8
        assert z_shape == (2, 8, region.frames, size, size)  # only the region is decoded
        assert px_shape == (2, 3, 1 + 4 * (region.frames - 1), 4 * size, 4 * size)
        assert region.pixels(clip, 4, 4).shape == px_shape  # its target pixels are the same frames / square
        assert parts["l2"] > 0
    # the frame window [j, j + k) decodes to pixel frames [4j, 4j + 1 + 4(k - 1)): frame 4 starts latent frame 1
    marked = torch.zeros(1, 3, 9, 8, 8)
    marked[:, :, 4] = 1.0
    assert PixelRegion(frame=1, frames=2).pixels(marked, 4, 4)[:, :, 0].eq(1).all()

    # a whole-latent region is the objective without one, exactly
    cond = torch.randn(2, 8, tiny_bridge.cond_dim, generator=torch.Generator().manual_seed(3))
    whole = PixelRegion(frame=0, frames=3, top=0, left=0, size=8)
    a, pa = tiny_bridge.training_loss(cond, None, latents, clip, loss=spec, generator=torch.Generator().manual_seed(0))
    b, pb = tiny_bridge.training_loss(cond, None, latents, clip, loss=spec, generator=torch.Generator().manual_seed(0),
                                      region=whole)
    assert torch.equal(a, b) and pa == pb


def test_pixel_region_crop_must_fit_the_vae(tiny_bridge):
    with pytest.raises(ValueError, match="multiple of the VAE's spatial compression 4"):
        tiny_bridge.pixel_region((1, 8, 8), crop=6)
    region = tiny_bridge.pixel_region((1, 8, 8), crop=16, seed=3)
    assert region.size == 4 and region.frames is None


def test_flow_only_drops_the_pixel_terms():
    spec = LossSpec(terms={"flow": 0.7, "lpips": 1.0, "l2": 0.1})
    assert spec.flow_only().terms == {"flow": 0.7} and not spec.flow_only().needs_pixels
    with pytest.raises(ValueError, match="no flow term"):
        LossSpec.named("lpips_l2").flow_only()
