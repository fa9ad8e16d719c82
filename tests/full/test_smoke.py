"""The real-width smoke run: every real class at its real widths (random weights, 1 layer) through extract ->
cache -> a training step -> LTXPipeline sampling. Reduced resolution here (64 px instead of the full preset's
512 px; the widths, token counts and the real VAE config are unchanged) so it fits CI; `c2bridge smoke` runs the
full resolution by default."""
from __future__ import annotations

import pytest


@pytest.mark.slow
def test_smoke_real_widths_reduced_resolution(tmp_path, capsys):
    from c2bridge.cli import main
    from c2bridge.full_dims import DINOV2_LARGE, LTX_TRANSFORMER, QWEN25_VL_7B_TEXT
    from c2bridge.smoke import run_smoke

    report = run_smoke(out=tmp_path / "smoke", image_size=64, num_frames=1, layers=1, samples=1, sample_steps=2)
    assert report["ok"]
    stages = {s["name"]: s for s in report["stages"]}
    assert list(stages) == ["build", "extract", "cache", "train_step", "sample"]
    cache = stages["cache"]["shapes"]
    # the interfaces at the real widths: DINOv2-L 224 px -> 256 patches of 1024; Qwen 3584 wide; LTX latents 128 ch
    assert cache["dino"] == [1, 256, DINOV2_LARGE["hidden_size"]]
    assert cache["vlm"][0] == 1 and cache["vlm"][2] == QWEN25_VL_7B_TEXT["hidden_size"]
    assert cache["vlm"][1] > 256  # 448 px -> 32 x 32 patches -> 256 merged image tokens, plus the prompt
    assert cache["latent"] == [1, LTX_TRANSFORMER["in_channels"], 1, 2, 2]  # 64 px / 32
    train = stages["train_step"]["shapes"]
    assert train["cond"] == [1, 77, LTX_TRANSFORMER["caption_channels"]]
    assert set(train["loss"]) >= {"flow", "l2", "total"} and train["grad_norm"] > 0
    assert stages["sample"]["shapes"]["pixels"] == [1, 3, 64, 64]
    assert all(s["seconds"] >= 0 and s["peak_rss_gib"] > 0 for s in stages.values())
    assert 1.0 < report["peak_rss_gib"] < 12.0
    printed = capsys.readouterr().out
    assert "[smoke] train_step" in printed and "ok: process peak RSS" in printed

    assert main(["smoke", "--image-size", "48"]) == 2  # bad input: one clear error
    assert "multiple of 32" in capsys.readouterr().err
    assert main(["smoke", "--steps", "1"]) == 2
    assert "steps must be >= 2" in capsys.readouterr().err


@pytest.mark.slow
def test_smoke_clip_path_takes_one_mixed_image_and_clip_step(tmp_path):
    """With clips the training step is one mixed step (an image micro-batch + a clip micro-batch, accumulated), at
    the real widths; 9 frames (8k+1) -> 2 latent frames; sampling decodes the clip through LTXPipeline."""
    from c2bridge.full_dims import LTX_TRANSFORMER
    from c2bridge.smoke import run_smoke

    report = run_smoke(out=tmp_path / "smoke", image_size=64, num_frames=9, layers=1, samples=1, sample_steps=2,
                       echo=False)
    assert report["ok"]
    stages = {s["name"]: s for s in report["stages"]}
    cache = stages["cache"]["shapes"]
    assert cache["target"] == [1, 3, 9, 64, 64] and cache["image_target"] == [1, 3, 64, 64]
    assert cache["latent"] == [1, LTX_TRANSFORMER["in_channels"], 2, 2, 2]
    assert cache["image_latent"] == [1, LTX_TRANSFORMER["in_channels"], 1, 2, 2]
    train = stages["train_step"]["shapes"]
    assert train["micro_batches"] == 2 and train["grad_norm"] > 0
    assert stages["sample"]["shapes"]["pixels"] == [1, 3, 9, 64, 64]
