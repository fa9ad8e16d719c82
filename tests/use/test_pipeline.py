"""C2BridgePipeline on the tiny preset: it is LTXPipeline driven with the adapter's conditioning, it reads any
picture, and an adapter package refuses models other than the ones it was trained against."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

from c2bridge.pipeline import C2BridgePipeline, center_square, image_to_tensor


@pytest.fixture(scope="module")
def pipe(tiny_package, tiny_models):
    bridge, encoders = tiny_models
    return C2BridgePipeline.from_pretrained(tiny_package, preset="tiny", bridge=bridge, encoders=encoders)


def _rgb(seed: int, h: int = 32, w: int = 32) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def test_pipeline_equals_ltxpipeline_driven_by_hand(pipe, tiny_models):
    bridge, encoders = tiny_models
    images = [_rgb(1), _rgb(2)]
    out = pipe(image=images, num_inference_steps=2, seed=3, output_type="pt")

    # by hand: the pictures (already at the decoder's 32 px) -> frozen encoders -> adapter -> LTXPipeline
    pixels = torch.stack([torch.from_numpy(a).permute(2, 0, 1).float() / 255 for a in images])  # [2, 3, 32, 32]
    dino = encoders.dino(pixels)
    vlm, vlm_mask = encoders.vlm(pixels)
    with torch.no_grad():
        cond = pipe.adapter(vlm, dino, vlm_mask=vlm_mask)  # [2, n_tokens, cond_dim]
        mask = torch.ones(cond.shape[:2], dtype=torch.long)
        frames = bridge.pipeline(
            prompt_embeds=cond, prompt_attention_mask=mask, height=32, width=32, num_frames=1,
            num_inference_steps=2, guidance_scale=1.0, decode_timestep=bridge.decode_timestep,
            generator=[torch.Generator("cpu").manual_seed(3) for _ in images], output_type="pt",
            max_sequence_length=cond.shape[1],
        ).frames  # [2, 1, 3, 32, 32]
    assert out.frames.shape == (2, 1, 3, 32, 32)
    torch.testing.assert_close(out.frames, frames.float().clamp(0, 1), rtol=0, atol=1e-6)
    by_bridge = bridge.sample(cond, mask, steps=2, seed=[3, 3])  # [2, 3, 32, 32]
    torch.testing.assert_close(out.images, by_bridge, rtol=0, atol=1e-6)
    torch.testing.assert_close(out.inputs[:, 0], pixels)
    # the conditioning matters: another picture gives another reconstruction
    assert (out.frames[0] - out.frames[1]).abs().max() > 1e-3


def test_each_input_depends_only_on_itself_and_the_seed(pipe):
    a, b = _rgb(4), _rgb(5)
    together = pipe(image=[a, b], num_inference_steps=2, seed=0, output_type="pt").frames
    alone = pipe(image=b, num_inference_steps=2, seed=0, output_type="pt").frames
    torch.testing.assert_close(together[1], alone[0], rtol=0, atol=1e-6)
    other_seed = pipe(image=b, num_inference_steps=2, seed=1, output_type="pt").frames
    assert (other_seed - alone).abs().max() > 1e-4


def test_any_picture_becomes_rgb_at_the_decoder_size():
    gray = image_to_tensor(Image.fromarray(np.full((10, 20), 100, np.uint8), "L"))
    assert gray.shape == (3, 10, 20) and torch.allclose(gray, torch.full_like(gray, 100 / 255))
    rgba = np.zeros((4, 4, 4), np.uint8)
    rgba[..., 0] = 255
    rgba[0, 0, 3] = 0  # transparent: white; opaque: red
    rgba[1:, :, 3] = 255
    rgba[0, 1:, 3] = 255
    t = image_to_tensor(Image.fromarray(rgba, "RGBA"))
    assert torch.allclose(t[:, 0, 0], torch.ones(3)) and torch.allclose(t[:, 1, 1], torch.tensor([1.0, 0, 0]))
    assert torch.allclose(image_to_tensor(torch.from_numpy(rgba).permute(2, 0, 1)), t)  # RGBA tensor, same rule
    sixteen = image_to_tensor(Image.fromarray(np.full((4, 4), 65535, np.uint16)))
    assert torch.allclose(sixteen, torch.ones(3, 4, 4))
    palette = image_to_tensor(Image.fromarray(_rgb(6, 8, 8)).convert("P"))
    assert palette.shape == (3, 8, 8)
    wide = torch.zeros(3, 40, 100)
    wide[:, :, 30:70] = 1.0  # the centre square of a wide picture
    assert torch.allclose(center_square(wide, 32), torch.ones(3, 32, 32))
    with pytest.raises(ValueError, match=r"float images must be in \[0, 1\]"):
        image_to_tensor(np.full((4, 4, 3), 2.0, np.float32))
    with pytest.raises(ValueError, match="C in 1, 3, 4"):
        image_to_tensor(np.zeros((4, 4, 2), np.uint8))


def test_clip_on_an_image_world_is_reconstructed_frame_by_frame(pipe):
    clip = np.stack([_rgb(10 + i, 40, 48) for i in range(3)])  # [F, H, W, C], not square, not 32 px
    out = pipe(video=clip, num_inference_steps=2, seed=0, output_type="pt")
    assert out.frames.shape == (1, 3, 3, 32, 32) and out.frame_rate == 25
    frame1 = pipe(image=clip[1], num_inference_steps=2, seed=0, output_type="pt").frames[0, 0]
    torch.testing.assert_close(out.frames[0, 1], frame1, rtol=0, atol=1e-6)
    pil = pipe(video=[Image.fromarray(f) for f in clip], num_inference_steps=2, seed=0)
    assert len(pil.frames) == 1 and len(pil.frames[0]) == 3 and pil.frames[0][0].size == (32, 32)


def test_package_refuses_a_mismatched_decoder(tiny_package, tiny_models):
    from c2bridge.decoder import LTXBridge

    _, encoders = tiny_models
    other = LTXBridge.from_preset("tiny", seed=1, device="cpu")  # same config, other weights
    with pytest.raises(ValueError, match=r"trained against other frozen models .*decoder\.weights_sha256") as err:
        C2BridgePipeline.from_pretrained(tiny_package, preset="tiny", bridge=other, encoders=encoders)
    assert "\n" not in str(err.value)


def test_package_refuses_another_preset_before_loading_models(tiny_package):
    with pytest.raises(ValueError, match=r"trained on the 'tiny' preset's models, not 'mini'; use --preset tiny"):
        C2BridgePipeline.from_pretrained(tiny_package, preset="mini")


def test_package_refuses_changed_encoders(tmp_path, tiny_package, tiny_models):
    import shutil

    bridge, encoders = tiny_models
    copy = tmp_path / "adapter"
    shutil.copytree(tiny_package, copy)
    prov = json.loads((copy / "provenance.json").read_text())
    prov["dino"]["revision"] = "another-revision"
    (copy / "provenance.json").write_text(json.dumps(prov))
    with pytest.raises(ValueError, match=r"dino\.revision 'another-revision' vs"):
        C2BridgePipeline.from_pretrained(copy, preset="tiny", bridge=bridge, encoders=encoders)


def test_package_is_a_model_card_for_the_hub(tiny_package):
    from huggingface_hub import ModelCard

    from c2bridge.adapters import load_adapter

    assert {p.name for p in tiny_package.iterdir()} >= {"adapter_config.json", "model.safetensors",
                                                        "provenance.json", "README.md"}
    card = ModelCard.load(tiny_package / "README.md")
    meta = card.data.to_dict()
    assert meta["license"] == "apache-2.0" and meta["library_name"] == "c2bridge"
    assert "preset-tiny" in meta["tags"] and "adapter-query" in meta["tags"]
    assert "| val | 16 | 0.41 [0.38, 0.44] | 0.59 | 14.2 |" in card.text  # metrics with their interval
    assert "c2bridge reconstruct" in card.text and "## Licence" in card.text
    prov = json.loads((tiny_package / "provenance.json").read_text())
    assert prov["preset"] == "tiny" and prov["decoder"]["weights_sha256"]
    assert prov["metrics"]["val"]["ssim"] == 0.59
    load_adapter(tiny_package)  # still a plain save_pretrained directory


def test_full_decoder_is_identified_by_its_weight_files(tmp_path, tiny_models):
    """The full preset's fingerprint hashes the loaded files (not the tensors): replaced weights read as another
    decoder. Shown with the tiny classes saved in LTX-Video's diffusers layout."""
    from diffusers import AutoencoderKLLTXVideo, LTXVideoTransformer3DModel

    from c2bridge.decoder import LTXBridge
    from c2bridge.package import decoder_fingerprint

    bridge, _ = tiny_models
    bridge.transformer.save_pretrained(tmp_path / "transformer")
    bridge.vae.save_pretrained(tmp_path / "vae")

    def load():
        t = LTXVideoTransformer3DModel.from_pretrained(str(tmp_path), subfolder="transformer")
        v = AutoencoderKLLTXVideo.from_pretrained(str(tmp_path), subfolder="vae")
        return decoder_fingerprint(LTXBridge(t, v, bridge.scheduler, preset="full"))

    first = load()
    assert first["weights_sha256"].startswith("transformer=sha256:") and ";vae=sha256:" in first["weights_sha256"]
    assert load() == first
    weights = tmp_path / "vae" / "diffusion_pytorch_model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-1] ^= 1
    weights.write_bytes(bytes(data))
    assert load()["weights_sha256"] != first["weights_sha256"]

