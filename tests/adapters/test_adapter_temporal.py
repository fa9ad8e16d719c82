"""The adapter's temporal option on clips (dino [B, F, P, D]): frame = one conditioning per frame, pool = the mean
over frames, spacetime = every frame's tokens with a temporal position embedding; none adds parameters."""
from __future__ import annotations

import pytest
import torch

from c2bridge.adapters import ADAPTERS, build_adapter_for_preset
from c2bridge.presets import get_preset

P = get_preset("tiny")


def inputs(b=2, f=4, seed=0):
    g = torch.Generator().manual_seed(seed)
    vlm = torch.randn(b, 5, P.vlm_dim, generator=g)
    mask = torch.ones(b, 5, dtype=torch.bool)
    mask[1, 3:] = False
    return vlm, torch.randn(b, f, P.n_patches, P.dino_dim, generator=g), mask


@pytest.mark.parametrize("kind", list(ADAPTERS))
def test_each_option_has_the_image_adapters_count_and_shapes(kind):
    counts = set()
    vlm, dino, mask = inputs()
    for temporal in ("frame", "pool", "spacetime"):
        a = build_adapter_for_preset(kind, "10m", P, temporal=temporal, seed=0).eval()
        counts.add(a.num_params)
        cond = a(vlm, dino, mask)
        assert cond.shape == ((2, 4, P.n_tokens, P.cond_dim) if temporal == "frame" else (2, P.n_tokens, P.cond_dim))
        assert torch.isfinite(cond).all()
        assert a.config["temporal"] == temporal
    assert counts == {build_adapter_for_preset(kind, "10m", P, seed=0).num_params}


def test_frame_and_pool_are_the_image_adapter_on_frames_and_on_their_mean():
    vlm, dino, mask = inputs()
    frame = build_adapter_for_preset("query", "10m", P, temporal="frame", seed=0).eval()
    pool = build_adapter_for_preset("query", "10m", P, temporal="pool", seed=0).eval()
    with torch.no_grad():
        per_frame = frame(vlm, dino, mask)
        for t in range(dino.shape[1]):
            assert torch.allclose(per_frame[:, t], frame(vlm, dino[:, t], mask), atol=1e-5)
        assert torch.allclose(pool(vlm, dino, mask), pool(vlm, dino.mean(1), mask), atol=1e-6)


def test_spacetime_sees_the_frame_order():
    vlm, dino, mask = inputs()
    for kind in ("query", "bottleneck"):
        a = build_adapter_for_preset(kind, "10m", P, temporal="spacetime", seed=0).eval()
        with torch.no_grad():
            cond = a(vlm, dino, mask)
            reversed_ = a(vlm, dino.flip(1), mask)
            one = a(vlm, dino[:, :1], mask)  # a 1-frame clip is the image
            image = a(vlm, dino[:, 0], mask)
        assert not torch.allclose(cond, reversed_, atol=1e-4), kind  # the temporal embedding tells frames apart
        assert torch.allclose(one, image, atol=1e-6), kind


def test_bad_temporal_option_and_bad_clip_features_are_one_clear_error():
    with pytest.raises(ValueError, match="temporal must be one of"):
        build_adapter_for_preset("query", "10m", P, temporal="sideways")
    a = build_adapter_for_preset("query", "10m", P, temporal="spacetime", seed=0)
    vlm, dino, mask = inputs()
    with pytest.raises(ValueError, match="dino must be"):
        a(vlm, dino[:, :, :-1], mask)  # a frame with one patch missing
