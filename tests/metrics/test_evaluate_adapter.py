"""evaluate_adapter end to end on the tiny decoder, and `c2bridge eval`."""
import json

import pytest
import torch

from c2bridge.metrics import evaluate_adapter


@pytest.fixture(scope="module")
def bridge():
    from c2bridge.decoder import LTXBridge

    return LTXBridge.from_preset("tiny", seed=0)


def _batch(b=3):
    g = torch.Generator().manual_seed(0)
    target = torch.full((b, 3, 32, 32), 0.8)
    mask = torch.zeros(b, 32, 32, dtype=torch.bool)
    mask[:, 8:20, 6:18] = True
    target[:, :, 8:20, 6:18] = 0.2
    return {"vlm": torch.randn(b, 5, 32, generator=g), "vlm_mask": torch.ones(b, 5, dtype=torch.bool),
            "dino": torch.randn(b, 16, 32, generator=g), "target": target, "mask": mask}


def test_evaluate_adapter_metrics_and_grid(bridge, tmp_path):
    from stand_ins import TinyAdapter
    from PIL import Image

    torch.manual_seed(0)
    adapter = TinyAdapter()
    out = evaluate_adapter(adapter, bridge, _batch(), steps=2, batch_size=2, out_png=tmp_path / "grid.png",
                           latency_iters=3)
    assert out["n"] == 3 and out["distance"] == "one_minus_ssim"
    assert 0 <= out["distance_mean"] <= 2 and out["one_minus_ssim"] == out["distance_mean"]
    assert -1 <= out["ssim"] <= 1 and math_finite(out["psnr"])
    assert 0 <= out["mask_iou"] <= 1 and 0 <= out["box_iou"] <= 1
    assert out["num_params"] == sum(p.numel() for p in adapter.parameters())
    assert out["param_bytes"] == 4 * out["num_params"] and out["adapter_latency_ms"] > 0
    assert len(out["per_sample"]["distance"]) == 3
    with Image.open(out["grid_png"]) as png:
        assert png.format == "PNG" and png.size == (2 * 34 + 2, 3 * 34 + 2)  # 2 columns x 3 rows, 2 px padding
    json.dumps(out)  # JSON-able
    # per-sample seeds: the same numbers whatever the batch size
    again = evaluate_adapter(adapter, bridge, _batch(), steps=2, batch_size=3, latency_iters=1)
    assert again["per_sample"]["distance"] == pytest.approx(out["per_sample"]["distance"], abs=1e-5)


def math_finite(x):
    import math

    return math.isfinite(x)


def test_eval_cli(bridge, tmp_path, monkeypatch, capsys):
    """`c2bridge eval` with stand-ins for load_adapter / FeatureCache (their own tests live with their code)."""
    import c2bridge.adapters
    import c2bridge.encoders
    from stand_ins import TinyAdapter

    from c2bridge.cli import main

    batch = _batch(2)
    items = [{**{k: v[i] for k, v in batch.items() if k != "vlm_mask"}, "sample_id": f"s{i}"} for i in range(2)]

    class FakeCache:
        split = "val"  # FeatureCache.split: the split its key spec records

        def __init__(self, path):
            pass

        def __len__(self):
            return len(items)

        def __getitem__(self, i):
            return items[i]

    monkeypatch.setattr(c2bridge.adapters, "load_adapter", lambda d: TinyAdapter(), raising=False)
    monkeypatch.setattr(c2bridge.encoders, "FeatureCache", FakeCache, raising=False)
    adapter_dir = tmp_path / "adapter"
    adapter_dir.mkdir()
    (tmp_path / "cache" / "val").mkdir(parents=True)
    rc = main(["eval", str(adapter_dir), "--preset", "tiny", "--cache", str(tmp_path / "cache"), "--steps", "2",
               "--out", str(tmp_path / "out"), "--distance", "one_minus_ssim"])
    assert rc == 0
    metrics = json.loads((tmp_path / "out" / "metrics.json").read_text())
    assert metrics["n"] == 2 and metrics["preset"] == "tiny" and metrics["is_miniature"] is True
    assert (tmp_path / "out" / "grid.png").is_file()
    assert "distance_mean" in capsys.readouterr().out
    rc = main(["eval", str(tmp_path / "missing"), "--preset", "tiny", "--cache", str(tmp_path / "cache")])
    assert rc == 2 and "does not exist" in capsys.readouterr().err
    FakeCache.split = "heldout"  # a cache of another split: refused before anything is sampled or written
    rc = main(["eval", str(adapter_dir), "--preset", "tiny", "--cache", str(tmp_path / "cache" / "val"),
               "--split", "val", "--out", str(tmp_path / "out2")])
    assert rc == 2 and "holds split 'heldout', not --split 'val'" in capsys.readouterr().err
    assert not (tmp_path / "out2").exists()
    rc = main(["eval", str(adapter_dir), "--preset", "tiny", "--cache", str(tmp_path / "cache"), "--split", "../val"])
    assert rc == 2 and "not a plain name" in capsys.readouterr().err
