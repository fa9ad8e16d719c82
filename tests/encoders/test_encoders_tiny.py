"""The real encoder classes at tiny configs: output shapes, token handling, keys, loading and its offline errors."""
from __future__ import annotations

import os
import subprocess
import sys

import pytest
import torch

from c2bridge.encoders import build_encoders
from c2bridge.encoders.dinov2 import DinoPreprocess, DinoV2Encoder
from c2bridge.encoders.qwen_vl import QwenVLEncoder


def images(n=3, size=32, seed=0):
    return torch.rand(n, 3, size, size, generator=torch.Generator().manual_seed(seed))


def test_dinov2_patch_tokens_without_cls(enc):
    x = images()
    tokens = enc.dino(x)
    assert tokens.shape == (3, 16, 32)  # tiny preset: P = 16, dino_dim = 32
    # CLS removed: equal to the model's own output minus token 0, on the resized + normalized input
    pre = torch.nn.functional.interpolate(x, size=(8, 8), mode="bicubic", antialias=True).clamp(0, 1)
    pre = (pre - torch.tensor(enc.dino.preprocess.mean).view(1, 3, 1, 1)) / torch.tensor(
        enc.dino.preprocess.std).view(1, 3, 1, 1)
    with torch.no_grad():
        full = enc.dino.model(pixel_values=pre).last_hidden_state
    assert full.shape[1] == 17 and torch.allclose(tokens, full[:, 1:], atol=1e-5)
    # a clip is encoded frame by frame: [B, F, P, D], each frame as that image alone
    clip = torch.stack([images(3, seed=s) for s in range(5)], dim=2)  # [3, 3, 5, 32, 32]
    per_frame = enc.dino(clip)
    assert per_frame.shape == (3, 5, 16, 32)
    for t in (0, 2, 4):
        assert torch.allclose(per_frame[:, t], enc.dino(clip[:, :, t]), atol=1e-6)
    assert not torch.allclose(per_frame[:, 0], per_frame[:, 4])
    with pytest.raises(ValueError, match=r"\[B, 3, H, W\]"):
        enc.dino(torch.rand(3, 32, 32))


def test_dinov2_register_tokens_removed():
    from transformers import Dinov2WithRegistersConfig, Dinov2WithRegistersModel

    torch.manual_seed(0)
    cfg = Dinov2WithRegistersConfig(image_size=8, patch_size=2, hidden_size=32, num_hidden_layers=1,
                                    num_attention_heads=4, intermediate_size=37, num_register_tokens=3)
    encoder = DinoV2Encoder(Dinov2WithRegistersModel(cfg), DinoPreprocess(image_size=8), model_id="regs")
    out = encoder(images())
    assert encoder.n_prefix == 4 and out.shape == (3, 16, 32)


def test_qwen_hidden_states_mask_and_token_selection(enc):
    x = images()
    hidden, mask = enc.vlm(x)
    inputs = enc.vlm.build_inputs(x)
    n_tokens = inputs["input_ids"].shape[1]
    assert hidden.shape == (3, n_tokens, 32) and mask.dtype == torch.bool and mask.all()
    with torch.no_grad():
        ref = enc.vlm.model.model(**inputs).last_hidden_state  # layer -1 == last_hidden_state
    assert torch.allclose(hidden, ref, atol=1e-5)
    # the prompt went through the chat template; 16 px image -> 4x4 patches merged 2x2 -> 4 image tokens
    text = enc.vlm.chat_text(video=False)
    assert text.startswith("<|im_start|>user") and "Describe this image in detail." in text
    image_positions = inputs["input_ids"] == enc.vlm.model.config.image_token_id
    assert image_positions.sum(1).tolist() == [4, 4, 4]
    assert (inputs["input_ids"] == enc.vlm.processor.tokenizer.unk_token_id).sum() == 0  # prompt in the vocabulary

    only_image = build_encoders("tiny", device="cpu", token_selection="image").vlm
    h_img, m_img = only_image(x)
    assert h_img.shape == (3, 4, 32) and m_img.all()
    assert torch.allclose(h_img, hidden[image_positions].view(3, 4, 32), atol=1e-5)

    first_layer = build_encoders("tiny", device="cpu", layer=1).vlm
    h1, _ = first_layer(x)
    assert h1.shape == hidden.shape and not torch.allclose(h1, hidden)
    assert first_layer.encoder_key() != enc.vlm.encoder_key()


def test_qwen_video_input(enc):
    clip = torch.rand(2, 3, 4, 32, 32)
    hidden, mask = enc.vlm(clip)
    inputs = enc.vlm.build_inputs(clip)
    video_tokens = (inputs["input_ids"] == enc.vlm.model.config.video_token_id).sum(1)
    assert video_tokens.tolist() == [8, 8]  # 4 frames / temporal patch 2 = 2 steps x 4 merged patches
    assert hidden.shape == (2, inputs["input_ids"].shape[1], 32) and mask.all()


def test_padding_is_packed_left():
    from c2bridge.encoders.qwen_vl import pack_left

    hidden = torch.arange(2 * 4, dtype=torch.float32).view(2, 4, 1)
    keep = torch.tensor([[False, True, True, True], [True, False, True, False]])
    packed, mask = pack_left(hidden, keep)
    assert packed[..., 0].tolist() == [[1, 2, 3], [4, 6, 0]] and mask.tolist() == [[1, 1, 1], [1, 1, 0]]


def test_seeded_init_is_deterministic_and_leaves_global_rng(enc):
    state = torch.random.get_rng_state()
    again = build_encoders("tiny", device="cpu")
    assert torch.equal(torch.random.get_rng_state(), state)
    x = images()
    assert torch.equal(again.dino(x), enc.dino(x)) and torch.equal(again.vlm(x)[0], enc.vlm(x)[0])
    other = DinoV2Encoder.random(32, 16, 8, seed=5)
    assert not torch.allclose(other(x), enc.dino(x))
    assert other.encoder_key() != enc.dino.encoder_key()


def test_bad_options():
    with pytest.raises(ValueError, match="token_selection"):
        QwenVLEncoder.random(32, token_selection="text")
    with pytest.raises(ValueError, match="layer 7 out of range"):
        QwenVLEncoder.random(32, layer=7)
    with pytest.raises(ValueError, match="min_pixels <= max_pixels"):  # below one merged patch (8 x 8 px)
        QwenVLEncoder.random(32, image_size=7)
    with pytest.raises(ValueError, match="unknown preset"):
        build_encoders("huge")


def test_full_loading_code_from_local_dirs(tmp_path, enc):
    """The from_pretrained path (the one `full` uses) on save_pretrained dirs of the tiny models."""
    enc.dino.model.save_pretrained(tmp_path / "dino")
    enc.vlm.model.save_pretrained(tmp_path / "qwen")
    enc.vlm.processor.save_pretrained(tmp_path / "qwen")
    dino = DinoV2Encoder.from_pretrained(str(tmp_path / "dino"), image_size=8)
    vlm = QwenVLEncoder.from_pretrained(str(tmp_path / "qwen"), image_size=16, video_size=16)
    x = images()
    assert torch.allclose(dino(x), enc.dino(x), atol=1e-6)
    assert torch.allclose(vlm(x)[0], enc.vlm(x)[0], atol=1e-5)
    assert dino.encoder_key()["model_id"] == str(tmp_path / "dino")


def test_missing_weights_are_one_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="local model directory .*does-not-exist"):
        build_encoders("full", device="cpu", dino_model=str(tmp_path / "does-not-exist"))
    with pytest.raises(FileNotFoundError, match="c2bridge-test/no-such-model.*hf download c2bridge-test/no-such-model"):
        QwenVLEncoder.from_pretrained("c2bridge-test/no-such-model")


def test_full_preset_offline_cli_error(tmp_path):
    """`c2bridge extract --preset full` with an empty hub cache, offline: exit 2, one line naming the model."""
    env = {**os.environ, "HF_HOME": str(tmp_path / "hf"), "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    env.pop("C2BRIDGE_DINO_MODEL", None)
    proc = subprocess.run([sys.executable, "-m", "c2bridge.cli", "extract", "--preset", "full", "--dataset", "shapes",
                           "--split", "val", "--limit", "1", "--device", "cpu", "--out", str(tmp_path / "out")],
                          env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2, proc.stderr[-2000:]
    lines = [ln for ln in proc.stderr.splitlines() if ln.startswith("c2bridge extract: error")]
    assert len(lines) == 1 and "facebook/dinov2-large" in lines[0]
    assert "hf download facebook/dinov2-large" in lines[0] and "offline" in lines[0]
    assert not (tmp_path / "out" / "manifest.json").exists()


def test_mini_preset_loads_the_shipped_dinov2_layout(tmp_path, monkeypatch):
    """The mini preset on a mini-world-style assets dir (fp16 save_pretrained Dinov2Model, 32 px, patch 4)."""
    from transformers import Dinov2Config, Dinov2Model

    import c2bridge.encoders as encoders
    import c2bridge.encoders.build as encoders_build

    torch.manual_seed(0)
    cfg = Dinov2Config(image_size=32, patch_size=4, hidden_size=64, num_hidden_layers=1, num_attention_heads=4,
                       mlp_ratio=2)
    Dinov2Model(cfg).half().save_pretrained(tmp_path / "dinov2")
    monkeypatch.setattr(encoders_build, "MINI_DINO_DIR", tmp_path / "dinov2")
    mini = encoders.build_encoders("mini", device="cpu")
    x = images(2)
    assert mini.dino(x).shape == (2, 64, 64) and mini.dino.dtype == torch.float32
    hidden, mask = mini.vlm(x)
    assert hidden.shape[-1] == 32 and int(mask.sum(1)[0]) == hidden.shape[1]
    image_tokens = (mini.vlm.build_inputs(x)["input_ids"] == mini.vlm.model.config.image_token_id).sum(1)
    assert image_tokens.tolist() == [16, 16]  # 32 px: 8x8 patches of 4 px, merged 2x2
    key = mini.dino.encoder_key()
    Dinov2Model(cfg).half().save_pretrained(tmp_path / "dinov2")  # a rebuilt DINOv2 gets a new key
    assert encoders.build_encoders("mini", device="cpu").dino.encoder_key()["revision"] != key["revision"]
