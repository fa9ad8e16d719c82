"""An adapter trained jointly with a decoder LoRA (plan 8.2), used through its package: ``C2BridgePipeline`` and
``c2bridge reconstruct`` load the LoRA saved next to it (peft), or refuse the package when the LoRA is missing."""
from __future__ import annotations

import shutil

import numpy as np
import pytest
import torch

from c2bridge.train.loop import train


@pytest.fixture(scope="module")
def lora_run(tmp_path_factory, tiny_caches):
    """A 3-step tiny run with a rank-2 decoder LoRA -> its output dir."""
    out = tmp_path_factory.mktemp("lora_run") / "run"
    cfg = {"preset": "tiny", "seed": 0, "threads": 1,
           "data": {"train_cache": tiny_caches["train"], "val_cache": tiny_caches["val"]},
           "optim": {"lr": 3e-2, "batch_size": 4, "grad_accum": 1, "max_steps": 3},
           "eval": {"every_steps": 3}, "checkpoint": {"every_steps": 3, "keep_last": 1},
           "log": {"progress_bar": False}, "decoder_lora": {"rank": 2}}
    assert train(cfg, out)["status"] == "completed"
    return out


def _pixels() -> np.ndarray:
    return np.random.default_rng(0).integers(0, 256, (32, 32, 3), dtype=np.uint8)


def test_pipeline_loads_the_decoder_lora_the_adapter_was_trained_with(lora_run):
    from c2bridge import package
    from c2bridge.decoder import LTXBridge, lora
    from c2bridge.encoders import build_encoders
    from c2bridge.pipeline import C2BridgePipeline

    adapter_dir = lora_run / "adapter"
    provenance = package.read_provenance(adapter_dir)
    assert provenance["training"]["decoder_lora"]["rank"] == 2  # the package says it needs its LoRA
    assert "decoder LoRA" in (adapter_dir / package.CARD_NAME).read_text()
    encoders = build_encoders("tiny", device="cpu")
    # the recorded decoder is the frozen base (the LoRA is recorded on its own): a fresh decoder passes the check
    assert provenance["decoder"]["weights_sha256"] == package.decoder_fingerprint(
        LTXBridge.from_preset("tiny"))["weights_sha256"]

    pipe = C2BridgePipeline.from_pretrained(adapter_dir, preset="tiny", bridge=LTXBridge.from_preset("tiny"),
                                            encoders=encoders)
    assert any("lora_B" in n for n, _ in pipe.bridge.transformer.named_parameters())
    assert not any(p.requires_grad for p in pipe.bridge.transformer.parameters())
    got = pipe(image=_pixels(), num_inference_steps=2, seed=0, output_type="pt").frames

    # by hand: the same adapter on a fresh decoder with the saved LoRA loaded (peft) ...
    by_hand = C2BridgePipeline(pipe.adapter, LTXBridge.from_preset("tiny"), encoders, "tiny")
    with lora.loaded(by_hand.bridge.transformer, adapter_dir / "decoder_lora"):
        want = by_hand(image=_pixels(), num_inference_steps=2, seed=0, output_type="pt").frames
    frozen = by_hand(image=_pixels(), num_inference_steps=2, seed=0, output_type="pt").frames  # ... and without
    torch.testing.assert_close(got, want, rtol=0, atol=1e-6)
    assert (got - frozen).abs().max() > 1e-4  # on the frozen decoder alone the adapter reconstructs otherwise


def test_a_package_missing_its_decoder_lora_is_refused_in_one_line(lora_run, tmp_path, capsys):
    from c2bridge.cli import main
    from c2bridge.pipeline import C2BridgePipeline

    broken = tmp_path / "adapter"
    shutil.copytree(lora_run / "adapter", broken)
    (broken / "decoder_lora" / "adapter_model.safetensors").unlink()
    with pytest.raises(ValueError, match=r"decoder LoRA.*adapter_model\.safetensors"):
        C2BridgePipeline.from_pretrained(broken, preset="tiny")  # refused before any model is built
    shutil.rmtree(broken / "decoder_lora")  # gone altogether: the provenance still says it is needed
    image = tmp_path / "in.png"
    from PIL import Image

    Image.fromarray(_pixels()).save(image)
    out = tmp_path / "recon"
    assert main(["reconstruct", str(image), "--adapter", str(broken), "--preset", "tiny", "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "decoder LoRA" in err[0] and "adapter_config.json" in err[0], err
    assert not out.exists()  # nothing written
