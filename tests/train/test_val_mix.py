"""Validation mixes (``data.val_mix``): every val cache validated on its own, ``val_loss`` pooled over all their
samples (one cache: exactly a ``data.val_cache`` run's numbers), ``val_<term>/<name>`` per cache; bad mixes are one
clear error before anything is written; runs without a val mix keep their config hash and trial keys."""
import copy
import json
import shutil

import pytest

from c2bridge.train import train


def _val_records(run) -> list[dict]:
    lines = (run / "metrics.jsonl").read_text().splitlines()
    return [r for r in map(json.loads, lines) if r["kind"] == "val"]


def _with_val_mix(cfg: dict, entries: list[dict]) -> dict:
    cfg = copy.deepcopy(cfg)
    cfg["data"]["val_cache"] = None
    cfg["data"]["val_mix"] = entries
    return cfg


def test_val_mix_pools_val_loss_over_samples_and_logs_each_cache(tiny_config, tiny_caches, heldout_cache, tmp_path):
    # 8 val samples (2 micro-batches of 4) and 16 held-out ones capped at 3 micro-batches: 12 (the cap is per cache)
    base = tiny_config(**{"optim.max_steps": 2, "eval.every_steps": 2, "eval.max_batches": 3,
                          "checkpoint.every_steps": 0})
    single = train(base, tmp_path / "single")
    one = train(_with_val_mix(base, [{"cache": tiny_caches["val"]}]), tmp_path / "one")
    two = train(_with_val_mix(base, [{"cache": tiny_caches["val"]}, {"cache": heldout_cache, "name": "heldout"}]),
                tmp_path / "two")
    assert single["status"] == one["status"] == two["status"] == "completed"
    assert (single["n_val"], two["n_val"]) == (8, 8 + 16)

    ref, same, mixed = (_val_records(tmp_path / d) for d in ("single", "one", "two"))
    assert len(ref) == 2 and same == ref  # a one-entry val mix is the val_cache run, to the last digit
    terms = [k for k in ref[0] if k.startswith("val_")]
    assert "val_loss" in terms and len(terms) > 1  # the loss and its terms
    for r_ref, r in zip(ref, mixed):
        assert set(r) == {"kind", "step", *terms, *(f"{t}/{n}" for t in terms for n in ("shapes", "heldout"))}
        for t in terms:
            assert r[f"{t}/shapes"] == r_ref[t]  # each cache's numbers do not depend on the others (noise reset)
            assert r[t] == pytest.approx((8 * r[f"{t}/shapes"] + 12 * r[f"{t}/heldout"]) / 20, rel=1e-12)
        assert r["val_loss/heldout"] != r["val_loss/shapes"]
    # early stopping and the best checkpoint read the pooled val_loss
    assert two["best"]["value"] == min(r["val_loss"] for r in mixed)
    assert two["final"]["val_loss"] == mixed[-1]["val_loss"]


def test_bad_val_mixes_are_one_clear_error_before_anything_is_written(tiny_config, tiny_caches, heldout_cache,
                                                                      tmp_path):
    both = _with_val_mix(tiny_config(), [{"cache": heldout_cache}])
    both["data"]["val_cache"] = tiny_caches["val"]
    with pytest.raises(ValueError, match=r"data.val_mix and data.val_cache='.*' are both set; expected one of them"):
        train(both, tmp_path / "both")
    limited = _with_val_mix(tiny_config(**{"data.limit_val": 4}), [{"cache": heldout_cache}])
    with pytest.raises(ValueError, match=r"data.limit_val=4: .* expected a limit per entry"):
        train(limited, tmp_path / "limited")
    with pytest.raises(ValueError, match=r"data.val_mix\[0\]: unknown keys \['weight'\]"):
        train(_with_val_mix(tiny_config(), [{"cache": heldout_cache, "weight": 1}]), tmp_path / "weight")

    # a cache from other encoders: same features on disk, another encoder spec in its manifest
    other = tmp_path / "other_encoders"
    shutil.copytree(heldout_cache, other)
    manifest = json.loads((other / "manifest.json").read_text())
    manifest["spec"]["encoders"] = {"vlm": "some other VLM", "dino": manifest["spec"]["encoders"]}
    (other / "manifest.json").write_text(json.dumps(manifest))
    foreign = _with_val_mix(tiny_config(), [{"cache": tiny_caches["val"]}, {"cache": str(other)}])
    with pytest.raises(ValueError, match=r"data.val_mix\[1\].cache=.* comes from different encoders than "
                                         r"data.train_cache"):
        train(foreign, tmp_path / "foreign")
    assert not any((tmp_path / d).exists() for d in ("both", "limited", "weight", "foreign"))


def test_a_config_without_val_mix_keeps_its_hash():
    """Trial keys of existing runs: the default (empty) val mix is not part of the hashed config."""
    from c2bridge.recipe import config_hash, config_to_dict, load_config

    cfg = {"preset": "tiny", "seed": 3, "data": {"train_cache": "runs/x/train", "val_cache": "runs/x/val",
                                                  "limit_val": 4}}
    plain = config_to_dict(load_config(copy.deepcopy(cfg)))
    assert "val_mix" not in plain["data"] and "mix" not in plain["data"]
    # the hash this config had before data.val_mix existed (recipe.py at the commit before it); a change here
    # changes every existing trial key
    assert config_hash(load_config(copy.deepcopy(cfg))) == "a672e5ed5717"
    mixed = {**cfg, "data": {"train_cache": "runs/x/train", "val_mix": [{"cache": "runs/x/val"}]}}
    assert config_hash(load_config(mixed)) != config_hash(load_config(copy.deepcopy(cfg)))


def test_the_full_study_validates_on_the_plans_val_mix(tmp_path):
    """On `full` every E2.1 trial validates on shapes 1,000 + COCO's val split; the planner costs both; q5 (clips)
    keeps its own val cache."""
    from c2bridge import planner
    from c2bridge.experiments import registry
    from c2bridge.experiments.context import StudyContext
    from c2bridge.experiments.runner import Study
    from c2bridge.presets import get_preset

    study = Study(tmp_path / "run", preset="full", dry=True, log=lambda s: None)
    for name in ("e2.1", "q5"):
        cfg = registry.load_experiment_config(name, "full")
        specs = registry.get(name).trials(cfg, get_preset("full"), {})
        study._setup(cfg)
        ctx = StudyContext(study, name, cfg)
        data = ctx.resolve(next(s for s in specs if s.kind == "train"))["train"]["data"]
        if name == "e2.1":
            assert data["val_cache"] is None
            assert [e["name"] for e in data["val_mix"]] == ["val", "coco_val"]
            assert [e["cache"] for e in data["val_mix"]] == [ctx.cache("val")["path"], ctx.cache("coco_val")["path"]]
        else:
            assert "val_mix" not in data and data["val_cache"] == ctx.cache("ssv2_val")["path"]
    assert not (tmp_path / "run").exists()

    first = planner.load_sources("full")["experiments"]["e2.1"][0]
    assert first["_data"]["val"] == {"shapes": {"n": 1000, "frames": 1}, "coco": {"n": 250, "frames": 1}}
