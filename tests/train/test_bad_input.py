"""Each bad input raises one clear error before any training step, and an existing run dir is left untouched."""
import json
import shutil

import pytest

from c2bridge.train import train


@pytest.fixture
def occupied_run(tmp_path):
    """A run dir holding someone's results: every failed call below must leave it exactly as it was."""
    run = tmp_path / "run"
    run.mkdir()
    (run / "precious.txt").write_text("keep me")
    return run


def _untouched(run):
    assert sorted(p.name for p in run.iterdir()) == ["precious.txt"]
    assert (run / "precious.txt").read_text() == "keep me"


def _edited_cache(src, dst, edit):
    shutil.copytree(src, dst)
    manifest = json.loads((dst / "manifest.json").read_text())
    edit(manifest)
    (dst / "manifest.json").write_text(json.dumps(manifest))
    return str(dst)


def test_non_empty_run_dir_needs_resume_or_overwrite(tiny_config, occupied_run):
    with pytest.raises(ValueError, match="not empty.*--resume.*--overwrite"):
        train(tiny_config(), occupied_run)
    _untouched(occupied_run)


@pytest.mark.parametrize("dotted, error, match", [
    ({"optim.lr": 0}, ValueError, r"optim.lr=0.*> 0"),
    ({"optim.batch_size": 0}, ValueError, r"optim.batch_size=0.*>= 1"),
    ({"loss.name": "lpips_l1"}, ValueError, r"loss.name='lpips_l1'.*lpips_l2"),
    ({"schedule.name": "step"}, ValueError, r"schedule.name='step'.*warmup_cosine"),
    ({"data.augment": "cutout"}, ValueError, r"data.augment='cutout'.*random_crop"),
    ({"data.augment": "color_jitter"}, ValueError, r"augment='none' but data.augment='color_jitter'"),
    ({"data.encoder_key": "0123456789ab"}, ValueError, r"encoder key .* differs from data.encoder_key"),
    ({"optim.batch_size": 64}, ValueError, r"32 samples, fewer than optim.batch_size=64"),
    ({"schedule.name": "warmup_cosine"}, ValueError, r"warmup_steps=1000 is not shorter than the run"),
    ({"data.train_cache": "/nonexistent/cache"}, FileNotFoundError, r"data.train_cache='/nonexistent/cache'"),
    ({"data.train_cache": None}, ValueError, r"data.train_cache is not set"),
    ({"distill.teacher": "/nonexistent/teacher"}, FileNotFoundError, r"distill.teacher"),
    ({"preset": "mini"}, ValueError, r"extracted for preset .tiny., but preset=.mini."),
])
def test_bad_config_values_fail_before_any_step(tiny_config, occupied_run, dotted, error, match):
    with pytest.raises(error, match=match):
        train(tiny_config(**dotted), occupied_run, overwrite=True)  # even --overwrite must not touch it
    _untouched(occupied_run)


def test_wrong_dims_and_empty_cache(tiny_config, tiny_caches, occupied_run, tmp_path):
    from pathlib import Path

    wrong = _edited_cache(Path(tiny_caches["train"]), tmp_path / "wrong",
                          lambda m: m["dims"].update(dino_dim=1024))
    with pytest.raises(ValueError, match=r"feature dims do not match.*dino_dim=1024 \(expected 32\)"):
        train(tiny_config(**{"data.train_cache": wrong}), occupied_run, overwrite=True)
    empty = _edited_cache(Path(tiny_caches["train"]), tmp_path / "empty", lambda m: m.update(shards=[]))
    with pytest.raises(ValueError, match="empty"):
        train(tiny_config(**{"data.train_cache": empty}), occupied_run, overwrite=True)
    other = _edited_cache(Path(tiny_caches["val"]), tmp_path / "other",
                          lambda m: m["spec"]["encoders"]["vlm"].update(layer=-2))
    with pytest.raises(ValueError, match="different encoders"):
        train(tiny_config(**{"data.val_cache": other}), occupied_run, overwrite=True)
    _untouched(occupied_run)


def test_resume_with_a_different_config_is_refused(tiny_config, tmp_path):
    run = tmp_path / "run"
    train(tiny_config(**{"optim.max_steps": 1, "eval.every_steps": 0, "data.val_cache": None}), run)
    before = {p: p.read_bytes() for p in run.rglob("*") if p.is_file()}
    with pytest.raises(ValueError, match=r"differs .*optim.lr"):
        train(tiny_config(**{"optim.max_steps": 1, "eval.every_steps": 0, "data.val_cache": None,
                             "optim.lr": 1e-2}), run, resume=True)
    assert {p: p.read_bytes() for p in run.rglob("*") if p.is_file()} == before


def test_cli_prints_one_line_and_exits_2(tiny_config, occupied_run, tmp_path, capsys):
    import yaml

    from c2bridge.cli import main

    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(tiny_config()))
    code = main(["train", str(path), "optim.lr=-1", "--out", str(occupied_run), "--overwrite"])
    err = capsys.readouterr().err
    assert code == 2
    assert err.strip().count("\n") == 0 and "optim.lr=-1" in err and err.startswith("c2bridge train: error:")
    _untouched(occupied_run)
