"""`c2bridge extract` / `c2bridge cache verify|info` end to end on the tiny preset and the shapes world."""
from __future__ import annotations

import json

import torch

from c2bridge.cli import main
from c2bridge.encoders.cache import FeatureCache


def test_extract_verify_info(tmp_path, capsys):
    out = tmp_path / "cache"
    args = ["extract", "--preset", "tiny", "--dataset", "shapes", "--split", "val", "--limit", "6",
            "--shard-size", "4", "--batch-size", "3", "--augment", "random_crop", "--views", "2", "--out", str(out)]
    assert main(args) == 0
    assert "12 samples" in capsys.readouterr().out
    cache = FeatureCache(out)
    item = cache[0]
    assert item["target"].shape == (3, 32, 32) and item["mask"].shape == (32, 32)
    assert item["caption_ids"].dtype == torch.long and item["sample_id"].endswith("#v0")
    spec = cache.manifest["spec"]
    assert spec["dataset"]["name"] == "shapes" and spec["dataset"]["split"] == "val"
    assert spec["augment"]["kind"] == "random_crop" and spec["augment"]["views"] == 2
    assert main(["cache", "verify", str(out)]) == 0
    assert "OK: 2 shards, 12 samples" in capsys.readouterr().out
    from c2bridge.encoders import expected_key

    assert expected_key("tiny", "shapes", "val", limit=6, augment="random_crop", views=2) == cache.key
    assert expected_key("tiny", "shapes", "val", limit=6, augment="random_crop", views=3) != cache.key
    assert main(["cache", "info", str(out)]) == 0
    assert json.loads(capsys.readouterr().out)["key"] == cache.key
    # same command again: nothing to do, same cache; another option: refused, one line, exit 2
    assert main(args) == 0
    assert main(args[:-4] + ["--views", "3", "--out", str(out)]) == 2
    assert "refusing" in capsys.readouterr().err
