"""Each dataset's item kind: what build_dataset yields agrees with dataset_item_shape on every preset; bad items are
one listed skip each and never cost cached work."""
from __future__ import annotations

import json

import pytest
import torch

from c2bridge.data import UnreadableSample
from c2bridge.data.registry import build_dataset
from c2bridge.datasets import DATASET_SPECS, DATASETS, dataset_item_shape
from c2bridge.presets import PRESETS, get_preset
from data_files import EXT, make_coco, write_video

LONG_VIDEO_FRAMES = 26  # more than any preset's clip frames (full: 25)


def make_ssv2_root(root, videos: dict[str, int | bytes]):
    """SSv2 layout; ``videos``: id -> frame count (a real video) or raw bytes (a broken file). All in validation."""
    (root / "20bn-something-something-v2").mkdir(parents=True)
    (root / "labels").mkdir()
    entries = [{"id": vid, "label": f"moving thing {vid}", "template": "Moving [something]"} for vid in videos]
    for vid, content in videos.items():
        path = root / "20bn-something-something-v2" / f"{vid}{EXT}"
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            write_video(path, n_frames=content)
    (root / "labels" / "train.json").write_text(json.dumps(entries))
    (root / "labels" / "validation.json").write_text(json.dumps(entries))
    return root


@pytest.fixture(scope="module")
def roots(tmp_path_factory):
    base = tmp_path_factory.mktemp("kinds")
    return {"coco": make_coco(base / "coco"),
            "ssv2": make_ssv2_root(base / "ssv2", {str(300 + i): LONG_VIDEO_FRAMES for i in range(4)})}


@pytest.mark.parametrize("preset", sorted(PRESETS))
@pytest.mark.parametrize("name", DATASETS)
def test_items_have_the_declared_shape(preset, name, roots):
    spec = DATASET_SPECS[name]
    root = roots.get(name)
    try:
        frames, height, width = dataset_item_shape(preset, name)
    except ValueError as declared:  # the preset cannot make this dataset's items: building it says the same
        with pytest.raises(ValueError) as built:
            build_dataset(name, "train", preset, root=root, limit=1)
        assert str(built.value) == str(declared)
        assert spec.kind == "clip" and get_preset(preset).num_frames < 2
        return
    ds = build_dataset(name, "train", preset, root=root, limit=2)
    item = _first_readable(ds)
    if spec.kind == "image":
        assert frames == 1 and "clip" not in item
        assert tuple(item["image"].shape) == (3, height, width)
    else:
        assert "image" not in item
        assert tuple(item["clip"].shape) == (3, frames, height, width)
    if "mask" in item:
        assert tuple(item["mask"].shape[-2:]) == (height, width)
        assert item["mask"].ndim == (2 if spec.kind == "image" else 3)


def _first_readable(ds) -> dict:
    for i in range(len(ds)):
        try:
            return ds[i]
        except UnreadableSample:  # the COCO fixture's corrupt image
            continue
    raise AssertionError("no readable item")


def test_full_preset_keeps_shapes_as_images():
    """The plan's shapes world is 10,000 images on `full`, not 25-frame clips."""
    assert dataset_item_shape("full", "shapes") == (1, 512, 512)
    assert dataset_item_shape("full", "ssv2") == (25, 512, 512)
    assert dataset_item_shape("full", "shapes_clips") == (25, 512, 512)
    item = build_dataset("shapes", "train", "full", limit=1)[0]
    assert tuple(item["image"].shape) == (3, 512, 512)


def test_shapes_clips_move_and_are_keyed_apart():
    preset = get_preset("tiny").replace(num_frames=5)
    clips = build_dataset("shapes_clips", "val", preset, limit=2)
    images = build_dataset("shapes", "val", preset, limit=2)
    clip = clips[0]
    assert tuple(clip["clip"].shape) == (3, 5, 32, 32) and tuple(clip["mask"].shape) == (5, 32, 32)
    assert not torch.equal(clip["mask"][0], clip["mask"][-1])  # the shapes moved
    assert clips.dataset_key()["name"] == "shapes_clips" and clips.dataset_key()["num_frames"] == 5
    assert images.dataset_key()["name"] == "shapes" and "num_frames" not in images.dataset_key()  # keys unchanged
    assert [DATASET_SPECS[n].iou_protocol for n in DATASETS] == ["background_colour", "background_colour", None, None]


def test_cache_targets_have_the_declared_shape(tmp_path):
    from c2bridge.encoders.extraction import extract

    for name, preset in [("shapes", get_preset("tiny")), ("shapes_clips", get_preset("tiny").replace(num_frames=3))]:
        cache = extract(preset, name, "val", tmp_path / name, limit=2, batch_size=2, progress=False)
        frames, height, width = dataset_item_shape(preset, name)
        want = (3, height, width) if frames == 1 and DATASET_SPECS[name].kind == "image" else (3, frames, height,
                                                                                               width)
        assert tuple(cache[0]["target"].shape) == want
        assert tuple(cache[0]["mask"].shape) == want[1:]


# ------------------------------------------------------------------------------------------------- bad data

def test_bad_clips_are_listed_skips_and_cached_work_stays(tmp_path):
    """A clip shorter than the frame count, a truncated video (decodes, but stops short) and a file that does not
    decode: each one listed skip with its reason; the good clips are cached; re-running rewrites nothing."""
    from c2bridge.encoders.extraction import extract

    good = tmp_path / f"good{EXT}"
    write_video(good, n_frames=12)
    whole = good.read_bytes()
    root = make_ssv2_root(tmp_path / "ssv2", {"400": 12, "401": 3, "402": whole[: int(len(whole) * 0.9)],
                                              "403": 12, "404": whole[: len(whole) // 3], "405": 12})
    preset = get_preset("tiny").replace(num_frames=4)
    ds = build_dataset("ssv2", "train", preset, root=root)
    bad = {"ssv2-401": "3 frames, fewer than the 4 frames", "ssv2-402": "truncated", "ssv2-404": "ssv2-404"}
    for i, entry in enumerate(ds.entries):
        sid = f"ssv2-{entry['id']}"
        if sid in bad:
            with pytest.raises(UnreadableSample, match=bad[sid]):
                ds[i]
    cache = extract(preset, "ssv2", "train", tmp_path / "cache", root=root, batch_size=2, shard_size=2,
                    progress=False)
    skipped = {s["sample_id"]: s["reason"] for s in cache.manifest["skipped"]}
    assert set(skipped) == set(bad)
    assert "fewer than the 4 frames" in skipped["ssv2-401"] and "truncated" in skipped["ssv2-402"]
    assert len(cache) == 3 and all(cache[i]["target"].shape == (3, 4, 32, 32) for i in range(len(cache)))
    shards = {p.name: p.read_bytes() for p in (tmp_path / "cache").glob("shard-*")}
    again = extract(preset, "ssv2", "train", tmp_path / "cache", root=root, batch_size=2, shard_size=2,
                    progress=False)
    assert again.key == cache.key
    assert {p.name: p.read_bytes() for p in (tmp_path / "cache").glob("shard-*")} == shards


def test_coco_image_without_annotations_is_a_listed_skip(tmp_path):
    from c2bridge.encoders.extraction import extract

    root = make_coco(tmp_path / "coco", unannotated=(3, 4, 5, 6, 8, 9, 10, 11, 12, 1, 2))  # all but the corrupt 7
    ds = build_dataset("coco", "train", "tiny", root=root)
    unannotated = [i for i, image_id in enumerate(ds.image_ids) if image_id != 7]
    with pytest.raises(UnreadableSample, match="no annotations"):
        ds[unannotated[0]]
    with pytest.raises(ValueError, match="every item of the dataset was unreadable"):  # one clear error
        extract("tiny", "coco", "train", tmp_path / "cache", root=root, progress=False)
    root2 = make_coco(tmp_path / "coco2", unannotated=(3,))
    cache = extract("tiny", "coco", "train", tmp_path / "cache2", root=root2, shard_size=4, progress=False)
    reasons = {s["sample_id"]: s["reason"] for s in cache.manifest["skipped"]}
    train_ids = set(build_dataset("coco", "train", "tiny", root=root2).image_ids)
    assert ("coco-000000000003" in reasons) == (3 in train_ids)
    assert all("no annotations" in r for sid, r in reasons.items() if sid == "coco-000000000003")
    assert len(cache) == len(train_ids - {3, 7})


# ------------------------------------------------------------------------ one answer for every consumer

@pytest.mark.parametrize("preset", sorted(PRESETS))
def test_planner_describes_the_items_training_reads(preset):
    """The planner's per-cache frame counts are the datasets' own (shapes stay 1-frame images on `full`)."""
    from c2bridge.config import config_dir, load_yaml_config
    from c2bridge.planner import load_sources

    caches = load_sources(preset)["data"].get("caches", {})
    assert caches, "the study's configs name caches"
    common = load_yaml_config(config_dir("experiments") / f"common.{preset}.yaml")  # each cache's dataset
    for name, described in caches.items():
        dataset = common["caches"][name]["dataset"] if name in common.get("caches", {}) else None
        if dataset is not None:
            assert described["frames"] == dataset_item_shape(preset, dataset)[0], (name, dataset, described)
    if preset == "full":
        assert caches["train"]["frames"] == 1 and caches["ssv2_heldout"]["frames"] == 25


@pytest.mark.parametrize("frames", [1, 9])
def test_smoke_extracts_items_of_its_own_frame_count(frames, tmp_path, monkeypatch):
    """The smoke run's extraction reads a dataset whose items have the frame count it samples and trains on."""
    import c2bridge.encoders.extraction as extraction
    from c2bridge import smoke

    seen = {}
    monkeypatch.setattr(extraction, "extract", lambda preset, dataset, *a, **k: seen.update(preset=preset,
                                                                                              dataset=dataset))
    preset = get_preset("full").replace(image_size=64, num_frames=frames)

    class Bridge:
        preset = "full"

        def encode_latents(self, pixels):
            return pixels

    smoke.extract_stage(preset, None, Bridge(), tmp_path, samples=1)
    assert dataset_item_shape(seen["preset"], seen["dataset"]) == (frames, 64, 64)
