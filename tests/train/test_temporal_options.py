"""Clips end to end on the tiny preset: a shapes_clips cache holds every frame's DINOv2 tokens [F, P, D]; each of the
adapter's temporal options (frame / pool / spacetime) trains on it and samples clips of the cache's frame count."""
from __future__ import annotations

import pytest
import torch

from c2bridge.adapters import build_adapter_for_preset
from c2bridge.presets import get_preset

FRAMES = get_preset("tiny").num_frames  # 9


@pytest.fixture(scope="module")
def clip_caches(tmp_path_factory):
    from c2bridge.encoders.extraction import extract

    root = tmp_path_factory.mktemp("tiny_clip_caches")
    extract("tiny", "shapes_clips", "train", root / "train", limit=8, progress=False)
    extract("tiny", "shapes_clips", "val", root / "val", limit=4, progress=False)
    return {"train": str(root / "train"), "val": str(root / "val")}


def test_clip_cache_holds_every_frames_tokens(clip_caches):
    from c2bridge.encoders import FeatureCache, build_encoders

    p = get_preset("tiny")
    cache = FeatureCache(clip_caches["val"])
    item = cache[0]
    assert tuple(item["dino"].shape) == (FRAMES, p.n_patches, p.dino_dim)  # [F, P, D]
    assert tuple(item["target"].shape) == (3, FRAMES, p.image_size, p.image_size)
    assert cache.dims == {"vlm_dim": p.vlm_dim, "dino_dim": p.dino_dim, "n_patches": p.n_patches}
    # each frame's tokens are that frame encoded alone; moving shapes make the frames differ
    from c2bridge.data import build_dataset

    enc = build_encoders("tiny", device="cpu")
    clip = build_dataset("shapes_clips", "val", "tiny", limit=4)[0]["clip"][None]  # [1, 3, F, S, S]
    for t in (0, FRAMES - 1):
        assert torch.allclose(item["dino"][t], enc.dino(clip[:, :, t])[0], atol=1e-4)
    assert not torch.allclose(item["dino"][0], item["dino"][-1], atol=1e-3)


@pytest.mark.parametrize("temporal", ["frame", "pool", "spacetime"])
def test_each_temporal_option_trains_and_samples_clips(clip_caches, tmp_path, temporal):
    from c2bridge.adapters import load_adapter
    from c2bridge.decoder import LTXBridge
    from c2bridge.encoders import FeatureCache
    from c2bridge.metrics import evaluate_adapter
    from c2bridge.train import train

    cfg = {"preset": "tiny", "seed": 0, "threads": 1,
           "adapter": {"kind": "query", "budget": "10m", "overrides": {"temporal": temporal}},
           "data": {"train_cache": clip_caches["train"], "val_cache": clip_caches["val"]},
           "optim": {"batch_size": 4, "max_steps": 2}, "eval": {"every_steps": 2, "n_samples": 0},
           "checkpoint": {"every_steps": 2}, "log": {"progress_bar": False}}
    result = train(cfg, tmp_path / "run")
    assert result["status"] == "completed", result
    result_budget = result["params"]["trainable"]
    adapter = load_adapter(tmp_path / "run" / "adapter")
    assert adapter.temporal == temporal
    # every option has the same parameter count: the budget is the image adapter's
    assert result_budget == build_adapter_for_preset("query", "10m", "tiny").num_params
    bridge = LTXBridge.from_preset("tiny")
    metrics = evaluate_adapter(adapter, bridge, FeatureCache(clip_caches["val"]), n=2, batch_size=2, steps=2,
                               latency_iters=1)
    assert metrics["n"] == 2 and metrics["flicker"] >= 0 and metrics["warp_error"] >= 0
    cache = FeatureCache(clip_caches["val"])
    batch = {k: v[None] for k, v in cache[0].items() if torch.is_tensor(v)}
    cond = adapter(batch["vlm"], batch["dino"])
    assert cond.shape == ((1, FRAMES, 8, 32) if temporal == "frame" else (1, 8, 32))
    clip = bridge.sample(cond.detach(), None, num_frames=FRAMES, steps=2, seed=3)
    assert clip.shape == (1, 3, FRAMES, 32, 32)


def test_per_frame_conditioning_is_frames_sampled_as_images_from_one_noise():
    from c2bridge.decoder import LTXBridge

    bridge = LTXBridge.from_preset("tiny")
    g = torch.Generator().manual_seed(0)
    cond = torch.randn(2, 3, 8, 32, generator=g)  # [B, F=3, L, D]: one conditioning per frame
    clips = bridge.sample(cond, None, num_frames=3, steps=2, seed=[5, 6])
    assert clips.shape == (2, 3, 3, 32, 32)
    # frame t of clip i is the 1-frame image of cond[i, t] from clip i's seed
    image = bridge.sample(cond[1, 2][None], None, num_frames=1, steps=2, seed=[6])
    assert torch.allclose(clips[1, :, 2], image[0], atol=1e-5)
    # the same conditioning in every frame gives a still clip (shared noise): no flicker of its own
    still = bridge.sample(cond[:, :1].expand(-1, 3, -1, -1), None, num_frames=3, steps=2, seed=[5, 6])
    assert torch.allclose(still[:, :, 0], still[:, :, 2], atol=1e-5)
    with pytest.raises(ValueError, match="num_frames"):
        bridge.sample(cond, None, num_frames=9, steps=2)
    # the training loss of per-frame conditioning is the loss of its frames as images
    target = torch.rand(2, 3, 3, 32, 32, generator=g)
    latents = bridge.encode_latents(target, per_frame=True)  # [B, C, F, h, w]: each frame on its own
    assert latents.shape[2] == 3
    frame = bridge.encode_latents(target[:, :, 1])  # [B, C, 1, h, w]
    assert torch.allclose(latents[:, :, 1:2], frame, atol=1e-5)
    loss, _ = bridge.training_loss(cond, None, latents, target, generator=torch.Generator().manual_seed(1))
    flat, _ = bridge.training_loss(cond.flatten(0, 1), None, latents.transpose(1, 2).flatten(0, 1).unsqueeze(2),
                                   target.transpose(1, 2).flatten(0, 1), generator=torch.Generator().manual_seed(1))
    assert torch.allclose(loss, flat)
    with pytest.raises(ValueError, match="per-frame latents"):  # whole-clip latents are refused (tiny VAE: 4x in time)
        bridge.training_loss(cond, None, bridge.encode_latents(torch.rand(2, 3, 5, 32, 32)), None)
