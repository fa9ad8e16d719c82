"""The mini Qwen2.5-VL stage of the build: caption language modelling through the encoder's own inputs, rebuilt
alone without touching the other weights, repeatable and resumable, one clear error for a bad stage name."""
import json

import pytest
import torch

from c2bridge.data import shapes as S
from c2bridge.mini import build as B
from c2bridge.mini.captions import vlm_caption_text


def _bytes(directory):
    return {p.relative_to(directory).as_posix(): p.read_bytes() for p in sorted(directory.rglob("*.safetensors"))}


def test_caption_words_are_in_the_mini_vocabulary_and_labels_cover_only_the_answer():
    from c2bridge.mini.models import build_vlm

    encoder = B.vlm_encoder(build_vlm())
    batch = S.generate_batch("train", 0, 64)
    text = vlm_caption_text(batch["caption"][0])
    assert "(" not in text and "x=" not in text and text.endswith(".")
    tok = encoder.processor.tokenizer
    unk = tok.convert_tokens_to_ids("<unk>")
    assert all(unk not in tok(vlm_caption_text(c))["input_ids"] for c in batch["caption"])
    inputs = B.vlm_lm_batch(encoder, batch["image"][:4], batch["caption"][:4])
    prompt = encoder.build_inputs(batch["image"][:4])["input_ids"]
    assert torch.equal(inputs["input_ids"][:, :prompt.shape[1]], prompt)  # the prompt exactly as the encoder feeds it
    labelled = inputs["labels"][0][inputs["labels"][0] >= 0]
    want = tok(vlm_caption_text(batch["caption"][0]))["input_ids"] + [encoder.model.config.text_config.eos_token_id]
    assert labelled.tolist() == want  # the caption words + <|im_end|>, nothing of the prompt


def test_vlm_stage_alone_is_repeatable_resumable_and_keeps_the_other_weights(tmp_path):
    cfg = B.BuildConfig.quick(checkpoint_every=1, vlm_steps=4)
    first = tmp_path / "first"
    first.mkdir()
    (first / "vae").mkdir()
    (first / "vae" / "diffusion_pytorch_model.safetensors").write_bytes(b"other stage")  # must survive
    (first / "build_report.json").write_text(json.dumps({"vae": {"steps": 700}, "config": {"vae_steps": 700}}))
    report = B.build(first, cfg, stages=("vlm",))
    assert (first / "vae" / "diffusion_pytorch_model.safetensors").read_bytes() == b"other stage"
    saved = json.loads((first / "build_report.json").read_text())
    assert saved["vae"] == {"steps": 700} and saved["config"]["vae_steps"] == 700 and saved["config"]["vlm_steps"] == 4
    assert saved["stages_rebuilt"] == ["vlm"] and "eval" not in saved and not (first / ".build-work").exists()
    probe = report["vlm"]["probe"]
    assert set(probe["probes"]) == {"vlm", "untrained_vlm", "dinov2"}  # DINOv2: the shipped one, for comparison
    assert {"colour_accuracy", "kind_accuracy", "x_r2", "centre_rms_px"} <= set(probe["probes"]["vlm"]["tokens"])
    assert set(probe["naming"]) == {f"{w}_words" for w in B.VLM_WORDS}

    # interrupted after 2 steps, then run again: resumes from the checkpoint, same bytes as the uninterrupted build
    again = tmp_path / "again"
    original, calls = B._train_images, []

    def interrupting(cfg_, start, count):
        calls.append(start)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return original(cfg_, start, count)

    B._train_images = interrupting
    try:
        with pytest.raises(KeyboardInterrupt):
            B.build(again, cfg, stages=("vlm",))
    finally:
        B._train_images = original
    assert [p.name.split("-")[0] for p in (again / ".build-work").iterdir()] == ["vlm"]
    B.build(again, cfg, stages=("vlm",))
    assert _bytes(first) == {**_bytes(again), "vae/diffusion_pytorch_model.safetensors": b"other stage"}
    assert set(_bytes(again)) == {"qwen_vl/model.safetensors"}


def test_the_trained_vlm_loads_as_the_mini_encoder(tmp_path):
    from c2bridge.encoders.build import mini_vlm_encoder
    from c2bridge.mini.assets import load_mini_vlm_model

    B.build(tmp_path, B.BuildConfig.quick(), stages=("vlm",))
    model = load_mini_vlm_model(tmp_path)
    assert not model.training and all(p.dtype == torch.float32 and not p.requires_grad for p in model.parameters())
    hidden, mask = mini_vlm_encoder(model)(S.generate_batch("val", 0, 2)["image"])
    assert hidden.shape[0] == 2 and hidden.shape[-1] == 32 and mask.all()
    with pytest.raises(FileNotFoundError, match="c2bridge mini build --stages vlm"):
        load_mini_vlm_model(tmp_path / "nowhere")


def test_bad_stage_names_are_one_clear_error_before_anything_is_written(tmp_path, capsys):
    from c2bridge.cli import main

    out = tmp_path / "x"
    assert main(["mini", "build", "--quick", "--stages", "vlm,nope", "--out", str(out)]) == 2
    assert "--stages: unknown stage(s) ['nope']" in capsys.readouterr().err
    with pytest.raises(ValueError, match="build 'vae' with it"):
        B.build(out, B.BuildConfig.quick(), stages=("transformer",))
    assert not out.exists()
