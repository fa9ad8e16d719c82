"""Feature cache: layout, reading, key separation, verify, failure handling, determinism, augmentation."""
from __future__ import annotations

import json

import pytest
import torch
from enc_fakes import FakeImages

from c2bridge.encoders import build_encoders
from c2bridge.encoders.cache import FeatureCache, collate_features, verify_cache
from c2bridge.encoders.extraction import extract
from c2bridge.presets import get_preset

TINY = get_preset("tiny")


def run(out, ds, enc, **kw):
    kw.setdefault("batch_size", 4)
    kw.setdefault("shard_size", 4)
    return extract(TINY, ds, "train", out, progress=False, encoders=enc, **kw)


def shard_shas(cache_dir):
    return {s["file"]: s["sha256"] for s in json.loads((cache_dir / "manifest.json").read_text())["shards"]}


def test_items_and_collate_match_the_encoders(tmp_path, enc):
    ds = FakeImages(n=10)
    cache = run(tmp_path / "c", ds, enc)
    assert len(cache) == 10 and cache.dims == {"vlm_dim": 32, "dino_dim": 32, "n_patches": 16}
    assert cache.manifest["complete"] and len(cache.manifest["shards"]) == 3  # 4 + 4 + 2
    item = cache[7]
    x = ds[7]["image"][None]
    assert torch.allclose(item["dino"], enc.dino(x)[0], atol=1e-6)
    vlm, mask = enc.vlm(x)
    assert torch.allclose(item["vlm"], vlm[0, mask[0]], atol=1e-6)
    # target: uint8-quantized image at the decoder resolution; mask and caption ids carried along
    assert item["target"].shape == (3, 32, 32) and item["target"].dtype == torch.float32
    assert (item["target"] - ds[7]["image"]).abs().max() <= 0.5 / 255 + 1e-6
    assert torch.equal(item["mask"], ds[7]["mask"]) and torch.equal(item["caption_ids"], ds[7]["caption_ids"])
    assert item["sample_id"] == "fake-a-0007" and cache[-1]["sample_id"] == "fake-a-0009"
    with pytest.raises(IndexError):
        cache[10]

    batch = collate_features([cache[i] for i in (0, 5, 9)])
    assert batch["vlm"].shape == (3, item["vlm"].shape[0], 32) and batch["vlm_mask"].all()
    assert batch["dino"].shape == (3, 16, 32) and batch["target"].shape == (3, 3, 32, 32)
    assert batch["mask"].shape == (3, 32, 32) and batch["caption_ids"].shape == (3, 3)

    everything = cache.load_all()
    assert everything["vlm"].shape[0] == 10 and everything["sample_ids"] == cache.sample_ids
    assert torch.equal(everything["dino"][7], item["dino"]) and torch.equal(everything["target"][7], item["target"])

    batches = list(cache.loader(batch_size=4, shuffle=True, seed=0))
    assert sorted(sum((b["sample_id"] for b in batches), [])) == cache.sample_ids


def test_collate_pads_variable_length_vlm_tokens():
    a = {"vlm": torch.ones(3, 4), "dino": torch.zeros(2, 5), "target": torch.zeros(3, 8, 8), "sample_id": "a"}
    b = {"vlm": torch.full((5, 4), 2.0), "dino": torch.zeros(2, 5), "target": torch.zeros(3, 8, 8), "sample_id": "b"}
    batch = collate_features([a, b])
    assert batch["vlm"].shape == (2, 5, 4)
    assert batch["vlm_mask"].tolist() == [[True] * 3 + [False] * 2, [True] * 5]
    assert batch["vlm"][0, 3:].abs().sum() == 0 and "mask" not in batch


def test_same_inputs_same_bytes_and_key(tmp_path, enc):
    a = run(tmp_path / "a", FakeImages(n=6), enc)
    b = run(tmp_path / "b", FakeImages(n=6), enc)
    assert a.key == b.key and shard_shas(a.dir) == shard_shas(b.dir)


def test_key_separation(tmp_path, enc):
    base = run(tmp_path / "base", FakeImages(n=4), enc)
    other_prompt = build_encoders("tiny", device="cpu", prompt="Describe this picture.")
    image_only = build_encoders("tiny", device="cpu", token_selection="image")
    keys = {
        "prompt": run(tmp_path / "p", FakeImages(n=4), other_prompt).key,
        "tokens": run(tmp_path / "t", FakeImages(n=4), image_only).key,
        "dataset": run(tmp_path / "d", FakeImages(n=4, tag="b"), enc).key,
        "seed": run(tmp_path / "s", FakeImages(n=4), enc, seed=1).key,
        "augment": run(tmp_path / "g", FakeImages(n=4), enc, augment="color_jitter").key,
    }
    assert len(set(keys.values()) | {base.key}) == 6
    # a changed dtype changes the encoder key (bf16 features must never read as fp32 ones)
    bf16 = build_encoders("tiny", device="cpu")
    bf16.dino.model.to(torch.bfloat16)
    assert bf16.dino.encoder_key()["dtype"] == "bfloat16" != enc.dino.encoder_key()["dtype"]

    # opening for another key is an error; extracting another key into the directory refuses and changes nothing
    with pytest.raises(ValueError, match="holds key"):
        FeatureCache(base.dir, key=keys["prompt"])
    before = {p.name: p.stat().st_mtime_ns for p in base.dir.iterdir()}
    with pytest.raises(ValueError, match="refusing"):
        run(base.dir, FakeImages(n=4), other_prompt)
    assert {p.name: p.stat().st_mtime_ns for p in base.dir.iterdir()} == before
    # re-running the same extraction just opens the finished cache
    assert run(base.dir, FakeImages(n=4), enc).key == base.key
    assert {p.name: p.stat().st_mtime_ns for p in base.dir.iterdir() if p.name != ".lock"} == \
        {k: v for k, v in before.items() if k != ".lock"}


def test_verify_catches_corruption_and_truncation(tmp_path, enc, capsys):
    from c2bridge.cli import main

    cache = run(tmp_path / "c", FakeImages(n=8), enc)
    assert verify_cache(cache.dir)["ok"]
    assert main(["cache", "verify", str(cache.dir)]) == 0
    shard = cache.dir / "shard-00001.safetensors"
    data = bytearray(shard.read_bytes())
    data[-10] ^= 0xFF  # one flipped bit in the tensor data: same size, different content
    shard.write_bytes(bytes(data))
    report = verify_cache(cache.dir)
    assert not report["ok"] and len(report["problems"]) == 1 and "shard-00001" in report["problems"][0]
    assert main(["cache", "verify", str(cache.dir)]) == 1
    assert "sha256" in capsys.readouterr().out

    shard.write_bytes(bytes(data[: len(data) // 2]))  # truncated
    with pytest.raises(ValueError, match="shard-00001.safetensors is truncated"):
        FeatureCache(cache.dir)
    assert "truncated" in verify_cache(cache.dir)["problems"][0]


def test_unreadable_items_are_skipped_and_listed(tmp_path, enc):
    cache = run(tmp_path / "c", FakeImages(n=9, unreadable={2, 5}), enc)
    assert len(cache) == 7
    skipped = cache.manifest["skipped"]
    assert [s["sample_id"] for s in skipped] == ["fake-a-0002", "fake-a-0005"]
    assert "corrupt JPEG" in skipped[0]["reason"]
    assert "fake-a-0002" not in cache.sample_ids and verify_cache(cache.dir)["ok"]


def test_non_finite_features_refused_naming_the_sample(tmp_path, enc):
    out = tmp_path / "c"
    with pytest.raises(ValueError, match=r"non-finite .*fake-a-0006"):
        run(out, FakeImages(n=8, nan_at={6}), enc)
    # the shard before it is finished and intact; the bad one was never written
    manifest = json.loads((out / "manifest.json").read_text())
    assert [s["file"] for s in manifest["shards"]] == ["shard-00000.safetensors"] and not manifest["complete"]
    assert not (out / "shard-00001.safetensors").exists() and verify_cache(out)["ok"]
    with pytest.raises(ValueError, match="incomplete"):
        FeatureCache(out)
    assert len(FeatureCache(out, allow_partial=True)) == 4


def test_bad_arguments(tmp_path, enc):
    with pytest.raises(ValueError, match="identical copies"):
        run(tmp_path / "a", FakeImages(n=2), enc, views=3)
    with pytest.raises(ValueError, match="latents_key"):
        run(tmp_path / "b", FakeImages(n=2), enc, latents_fn=lambda x: x)
    with pytest.raises(ValueError, match="unknown augmentation"):
        run(tmp_path / "c", FakeImages(n=2), enc, augment="cutout")
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "notes.txt").write_text("mine")
    with pytest.raises(ValueError, match="not empty"):
        run(tmp_path / "d", FakeImages(n=2), enc)
    with pytest.raises(FileNotFoundError, match="not a feature cache"):
        FeatureCache(tmp_path / "d")


def test_augmented_views_and_latents(tmp_path, enc):
    def latents_fn(pixels):  # stands in for LTXBridge.encode_latents: [B,3,H,W] -> [B,C,F,h,w]
        return torch.nn.functional.avg_pool2d(pixels, 8)[:, :, None]

    ds = FakeImages(n=5)
    cache = run(tmp_path / "c", ds, enc, augment="random_crop", views=3, latents_fn=latents_fn,
                latents_key={"fn": "avgpool8"})
    assert len(cache) == 15 and cache[4]["sample_id"] == "fake-a-0001#v1"
    assert cache.manifest["spec"]["augment"]["views"] == 3 and cache.manifest["spec"]["latents"] == {"fn": "avgpool8"}
    views = [cache[i] for i in range(3, 6)]  # the three views of item 1
    assert not torch.equal(views[0]["target"], views[1]["target"])
    for v in views:
        # the cached latent is of the cached target; the mask moved with the pixels (square colour inside it)
        assert v["latent"].shape == (3, 1, 4, 4)
        assert torch.allclose(v["latent"], latents_fn(v["target"][None])[0], atol=1e-6)
        bright = v["target"][0] > 0.7  # the square's red channel (background <= 0.3)
        iou = (bright & v["mask"]).sum() / (bright | v["mask"]).sum()
        assert iou > 0.75, iou  # edges differ by resampling only


def test_mini_without_assets_names_the_build_command(monkeypatch, tmp_path):
    import c2bridge.encoders as encoders
    import c2bridge.encoders.build as encoders_build

    monkeypatch.setattr(encoders_build, "MINI_DINO_DIR", tmp_path / "nothing-here")
    with pytest.raises(FileNotFoundError, match="c2bridge mini build"):
        encoders.build_encoders("mini", device="cpu")
