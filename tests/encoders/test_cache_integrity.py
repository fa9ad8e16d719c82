"""Caches never lie: shard checksums checked on read, damaged manifests refused, resumes verify, and the key follows
the weights actually loaded (replaced weights in a local model directory never get the old model's features)."""
from __future__ import annotations

import json
import os

import pytest
import torch
from enc_fakes import FakeImages

from c2bridge.encoders import cache as cache_mod
from c2bridge.encoders.cache import FeatureCache, verify_cache
from c2bridge.encoders.extraction import expected_key, extract
from c2bridge.presets import get_preset

TINY = get_preset("tiny")


def run(out, ds, enc, **kw):
    return extract(TINY, ds, "train", out, progress=False, encoders=enc, batch_size=4, shard_size=4, **kw)


def flip_byte(path, offset=-10):
    data = bytearray(path.read_bytes())
    data[offset] ^= 0xFF  # same size, different content: only a checksum can tell
    path.write_bytes(bytes(data))


def edit_manifest(cache_dir, fn):
    path = cache_dir / "manifest.json"
    manifest = json.loads(path.read_text())
    fn(manifest)
    path.write_text(json.dumps(manifest))


def test_flipped_byte_in_a_shard_is_an_error_on_read(tmp_path, enc):
    cache = run(tmp_path / "c", FakeImages(n=8), enc)
    good = FeatureCache(cache.dir)[0]["dino"].clone()
    flip_byte(cache.dir / "shard-00001.safetensors")
    fresh = FeatureCache(cache.dir)  # the size is right: opening succeeds, serving from the damaged shard does not
    torch.testing.assert_close(fresh[0]["dino"], good)  # shard 0 is intact
    with pytest.raises(ValueError, match=r"shard-00001.safetensors is corrupted: its sha256 .* does not match"):
        fresh[5]
    with pytest.raises(ValueError, match="corrupted"):
        FeatureCache(cache.dir).verify()
    # without the check (the reader before checksums) the flipped value is served silently
    assert FeatureCache(cache.dir, verify=False)[5]["dino"].shape == good.shape


def test_each_shard_is_hashed_once_per_process(tmp_path, enc, monkeypatch):
    cache = run(tmp_path / "c", FakeImages(n=8), enc)
    cache_mod._VERIFIED.clear()
    import hashlib

    calls = []
    real = hashlib.sha256
    monkeypatch.setattr(hashlib, "sha256", lambda *a: (calls.append(1), real(*a))[1])
    for _ in range(3):  # three readers of the same files in one process (e.g. E2.x trials in one worker)
        c = FeatureCache(cache.dir)
        c[0], c[5]
    assert len(calls) == 2  # one hash per shard
    # a shard rewritten in place (new mtime/inode) is hashed again
    shard = cache.dir / "shard-00000.safetensors"
    shard.write_bytes(shard.read_bytes())
    FeatureCache(cache.dir)[0]
    assert len(calls) == 3


@pytest.mark.parametrize("damage, message", [
    (lambda m: m["shards"][0].update(file="../outside.safetensors"), "names file '../outside.safetensors', expected "
                                                                     "a plain file name"),
    (lambda m: m["shards"][0].update(file="/etc/passwd"), "expected a plain file name"),
    (lambda m: m.pop("key"), "key 'key' is missing"),
    (lambda m: m["shards"][1].pop("sha256"), r"shard entry 1 lacks 'sha256' \(str\)"),
    (lambda m: m.update(n_samples=9), "n_samples is 9 but its shards hold 8"),
    (lambda m: m.update(shards={"a": 1}), "key 'shards' is missing or not a list"),
])
def test_damaged_manifest_is_one_clear_error(tmp_path, enc, damage, message):
    cache = run(tmp_path / "c", FakeImages(n=8), enc)
    (tmp_path / "outside.safetensors").write_bytes((cache.dir / "shard-00000.safetensors").read_bytes())
    edit_manifest(cache.dir, damage)
    with pytest.raises(ValueError, match=message):
        FeatureCache(cache.dir)
    report = verify_cache(cache.dir)
    assert not report["ok"] and len(report["problems"]) == 1 and "manifest.json" in report["problems"][0]


def test_sample_count_disagreeing_with_the_shard_is_an_error(tmp_path, enc):
    cache = run(tmp_path / "c", FakeImages(n=8), enc)

    def shrink(m):
        m["shards"][1]["n_samples"] = 3
        m["n_samples"] = 7

    edit_manifest(cache.dir, shrink)
    c = FeatureCache(cache.dir)
    assert len(c) == 7
    with pytest.raises(ValueError, match=r"shard-00001.safetensors disagrees about its sample count .*the manifest: 3"):
        c[6]
    assert any("holds 4 samples, manifest says 3" in p for p in verify_cache(cache.dir)["problems"])


def test_resuming_verifies_finished_shards(tmp_path, enc):
    cache = run(tmp_path / "c", FakeImages(n=8), enc)
    flip_byte(cache.dir / "shard-00000.safetensors")
    before = {p.name: p.stat().st_mtime_ns for p in cache.dir.iterdir()}
    with pytest.raises(ValueError, match="shard-00000.safetensors is corrupted"):
        run(cache.dir, FakeImages(n=8), enc)  # a finished extraction re-run: checked, not just reopened
    # an interrupted extraction: its finished shards are checked before anything is appended to them
    edit_manifest(cache.dir, lambda m: (m["shards"].pop(), m.update(complete=False, n_samples=4)))
    with pytest.raises(ValueError, match="shard-00000.safetensors is corrupted"):
        run(cache.dir, FakeImages(n=8), enc)
    assert not (cache.dir / "shard-00001.safetensors").exists() or \
        (cache.dir / "shard-00001.safetensors").stat().st_mtime_ns == before["shard-00001.safetensors"]


def test_replaced_weights_in_a_local_model_dir_change_the_key(tmp_path, enc):
    """The stale-features case: same path, same config, new weights -> a new key, so the old cache is refused."""
    from c2bridge.encoders import Encoders
    from c2bridge.encoders.dinov2 import DinoV2Encoder

    model_dir = tmp_path / "dino"
    enc.dino.model.save_pretrained(model_dir)
    first = Encoders(DinoV2Encoder.from_pretrained(str(model_dir), image_size=8), enc.vlm)
    cache = run(tmp_path / "c", FakeImages(n=4), first)
    assert first.dino.encoder_key()["revision"].startswith("sha256:")
    DinoV2Encoder.random(32, 16, 8, seed=7).model.save_pretrained(model_dir)  # retrained in place
    second = Encoders(DinoV2Encoder.from_pretrained(str(model_dir), image_size=8), enc.vlm)
    assert second.dino.encoder_key()["config"] == first.dino.encoder_key()["config"]
    new_key = expected_key(TINY, FakeImages(n=4), "train", encoders=second)
    assert new_key != cache.key
    with pytest.raises(ValueError, match=f"already holds a feature cache with key {cache.key}, not {new_key}"):
        run(cache.dir, FakeImages(n=4), second)
    with pytest.raises(ValueError, match="holds key"):
        FeatureCache(cache.dir, key=new_key)


def test_hub_snapshot_blobs_are_identified_by_their_name(tmp_path):
    """A hub snapshot links LFS files to blobs/<sha256>: the name is used (no 15 GB re-hash per process)."""
    from c2bridge.encoders.hub import file_sha256, weights_revision

    blobs, snap = tmp_path / "blobs", tmp_path / "snapshots" / "abc"
    blobs.mkdir()
    snap.mkdir(parents=True)
    digest = "a" * 64
    (blobs / digest).write_bytes(b"not really weights")
    os.symlink(blobs / digest, snap / "model.safetensors")
    (snap / "config.json").write_text("{}")
    assert file_sha256(snap / "model.safetensors") == digest
    assert weights_revision(snap) == "sha256:44136fa3" + "a" * 8  # config.json hashed, the blob named
    with pytest.raises(FileNotFoundError, match="no weight files"):
        weights_revision(tmp_path / "blobs")


def test_shards_have_normal_permissions_and_reproducible_bytes(tmp_path, enc):
    a = run(tmp_path / "a", FakeImages(n=4), enc)
    b = run(tmp_path / "b", FakeImages(n=4), enc)
    shard, manifest = a.dir / "shard-00000.safetensors", a.dir / "manifest.json"
    assert shard.stat().st_mode & 0o777 == manifest.stat().st_mode & 0o777 == 0o666 & ~_umask()
    assert shard.read_bytes() == (b.dir / "shard-00000.safetensors").read_bytes()


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask
