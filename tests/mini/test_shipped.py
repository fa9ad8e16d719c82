"""The weights shipped in the package: they load, they are small, and they draw what the caption says."""
import json

import torch

from c2bridge.data import shapes as S
from c2bridge.decoder import LTXBridge
from c2bridge.mini import default_assets_dir, load_mini_components
from c2bridge.mini.build import colour_correct, dino_pixels, spatial_iou


def test_shipped_weights_are_small_and_reported():
    assets = default_assets_dir()
    shipped = [p for p in assets.rglob("*") if p.is_file()]
    assert sum(p.stat().st_size for p in shipped) <= 10e6
    report = json.loads((assets / "build_report.json").read_text())
    # the mini world's quality bar, measured by the build on what ships (256 val images, 20 LTXPipeline steps)
    assert report["eval"]["val"]["caption_iou"] >= 0.8 and report["eval"]["val"]["colour_accuracy"] >= 0.95
    assert report["eval"]["val"]["caption_iou"] > report["eval"]["val"]["null_iou"] + 0.5


def test_shipped_decoder_draws_the_caption_through_ltx_pipeline():
    torch.manual_seed(0)
    bridge = LTXBridge.from_preset("mini")
    batch = S.generate_batch("val", 500, 32)  # not the images the build report used
    cond, mask = bridge.caption_cond(batch["caption_ids"])
    pics = bridge.sample(cond, mask, steps=10, seed=3)
    null_cond, null_mask = bridge.null_cond(32, n_tokens=16)
    nulls = bridge.sample(null_cond, null_mask, steps=10, seed=3)
    iou = spatial_iou(pics, batch["mask"]).mean()
    assert iou > 0.7, iou
    assert colour_correct(pics, batch).float().mean() > 0.9
    assert spatial_iou(nulls, batch["mask"]).mean() < iou - 0.3  # the caption, not a prior, places the shapes


def test_shipped_dinov2_patch_tokens_carry_position():
    """A least-squares probe from the frozen patch tokens recovers each patch's foreground fraction."""
    c = load_mini_components()
    batch = S.generate_batch("train", 0, 96)
    with torch.no_grad():
        tokens = c["dinov2"](pixel_values=dino_pixels(batch["image"])).last_hidden_state[:, 1:]  # [B, 64, 64]
    fg = torch.nn.functional.avg_pool2d(batch["mask"][:, None].float(), 4).flatten(1)  # [B, 64]
    X = torch.cat([tokens.reshape(-1, 64), torch.ones(tokens.shape[0] * 64, 1)], 1)
    y = fg.reshape(-1, 1)
    train, test = slice(0, 64 * 64), slice(64 * 64, None)
    w = torch.linalg.lstsq(X[train], y[train]).solution
    residual = ((X[test] @ w - y[test]) ** 2).mean()
    assert residual < 0.25 * y[test].var()  # explains > 75% of the variance on unseen images


def test_shipped_vlm_is_the_mini_encoder_and_carries_meaning():
    """The mini preset's VLM is the trained one shipped with the world, and the build's probes say it learned:
    colours and kinds are read from its hidden states better than from the untrained VLM's."""
    from c2bridge.encoders import build_encoders
    from c2bridge.encoders.hub import weights_revision

    assets = default_assets_dir()
    vlm = build_encoders("mini", device="cpu").vlm
    assert vlm.model_id == "c2bridge-mini-qwen2.5-vl" and vlm.revision == weights_revision(assets / "qwen_vl")
    hidden, mask = vlm(S.generate_batch("val", 0, 2)["image"])
    assert hidden.shape[-1] == 32 and mask.all()
    probe = json.loads((assets / "build_report.json").read_text())["vlm"]["probe"]
    trained, untrained = probe["probes"]["vlm"]["tokens"], probe["probes"]["untrained_vlm"]["tokens"]
    assert trained["colour_accuracy"] >= 0.95 and trained["kind_accuracy"] > untrained["kind_accuracy"] + 0.1
    assert probe["naming"]["colour_words"] > 0.9  # it says the colour it sees
