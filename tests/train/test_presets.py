"""Presets say what differs between the worlds: interfaces as fields (the record), behaviour on their classes."""
import dataclasses

import pytest

from c2bridge._io import to_plain
from c2bridge.presets import PRESETS, Preset, _factory, get_preset


def test_record_is_the_interfaces_and_behaviour_lives_on_the_class():
    fields = {f.name for f in dataclasses.fields(Preset)}
    for name, preset in PRESETS.items():
        assert set(to_plain(preset)) == fields  # class attributes never leak into results.yaml
        assert callable(_factory(preset.decoder_factory)) and callable(_factory(preset.encoders_factory))
        assert type(preset.replace(n_tokens=4)) is type(preset)  # a resized preset keeps its world's behaviour
        for which in ("header", "claims", "gate2"):
            note = preset.report_note(which, distance="one_minus_ssim")
            assert note is None or ("{" not in note and note.strip())
    assert [n for n, p in PRESETS.items() if p.plumbing_only] == ["tiny"]
    assert get_preset("full").report_note("header") is None and get_preset("full").report_note("gate2") is None
    assert get_preset("mini").sample_steps == 20 and get_preset("full").sample_steps == 50


def test_decoder_identity_and_budget_note():
    full, mini, tiny = (get_preset(n) for n in ("full", "mini", "tiny"))
    assert full.decoder_identity()["model_id"] == "Lightricks/LTX-Video"
    assert tiny.decoder_identity()["seed"] == 0
    ident = mini.decoder_identity()
    assert ident["preset"] == "mini" and len(ident["weights_sha256"]) == 16 and ident["files"] >= 5
    assert mini.budget_scale_note().startswith("the plan's scales / 800 ")
    assert full.budget_scale_note() is None and tiny.budget_scale_note() is None


def test_a_preset_without_factories_is_one_clear_error():
    bare = Preset(name="custom", dino_dim=8, n_patches=4, vlm_dim=8, cond_dim=8, n_tokens=2, encoder_image_size=8,
                  image_size=32, num_frames=1)
    with pytest.raises(ValueError, match="module:function"):
        bare.load_decoder()
