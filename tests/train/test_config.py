"""TrainConfig: YAML + dotted overrides, type coercion, one clear error per bad input, stable hashing."""
import pytest

from c2bridge.train.config import TrainConfig, config_hash, load_config, resolve_budget
from c2bridge.presets import get_preset


def test_full_preset_defaults_are_the_recipe_the_miniature_learned_with():
    cfg = load_config({"preset": "full"})
    assert (cfg.optim.weight_decay, cfg.optim.batch_size, cfg.optim.grad_accum, cfg.optim.epochs) == (1e-4, 8, 4, 50)
    # flow matching on every step, σ biased high, the plan's LPIPS + 0.1·L2 joining late on a subset of steps
    assert cfg.loss.name == "lpips_l2" and cfg.loss.weights["flow"] > 0
    assert cfg.loss.sigma == "logit_normal" and cfg.loss.logit_mean > 0
    assert cfg.loss.pixel_start > 0 and cfg.loss.pixel_every > 1 and cfg.optim.lr > 1e-4
    assert cfg.stop.patience is not None
    assert resolve_budget(cfg.adapter.budget, get_preset("full")) == 10e6


def test_the_plans_recipe_is_one_override_away():
    plan = load_config({"preset": "full"}, {
        "loss.weights.flow": 0.0, "loss.sigma": "shifted", "loss.logit_mean": 0.0, "loss.pixel_start": 0.0,
        "loss.pixel_every": 1, "loss.pixel_crop": None, "loss.pixel_latent_frames": None, "optim.lr": 1e-4,
        "schedule.warmup_steps": 0, "stop.patience": None})
    assert (plan.optim.lr, plan.loss.name, plan.loss.sigma, plan.schedule.name) == (1e-4, "lpips_l2", "shifted",
                                                                                  "constant")
    assert plan.loss.pixel_every == 1 and plan.stop.patience is None


def test_yaml_file_and_overrides_are_coerced(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("preset: tiny\noptim:\n  lr: 1e-4\n  batch_size: 2\nadapter:\n  kind: moe\n")
    cfg = load_config(path, ["optim.lr=3e-4", "optim.max_steps=7", "adapter.overrides.n_experts=4",
                             "loss.weights.l2=1e-1", "log.progress_bar=false", "schedule.cyclic_high=null"])
    assert cfg.optim.lr == 3e-4 and isinstance(cfg.optim.lr, float)
    assert cfg.optim.batch_size == 2 and cfg.optim.max_steps == 7
    assert cfg.adapter.kind == "moe" and cfg.adapter.overrides == {"n_experts": 4}
    assert cfg.loss.weights == {"l2": 0.1}
    assert cfg.log.progress_bar is False and cfg.schedule.cyclic_high is None


def test_preset_yaml_supplies_recipe_under_the_user_config():
    mini = load_config({"preset": "mini"})
    assert mini.loss.name == "flow" and mini.optim.lr > 1e-4  # the mini recipe, not the full one
    assert load_config({"preset": "mini", "optim": {"lr": 5e-4}}).optim.lr == 5e-4


@pytest.mark.parametrize("override, key, accepted", [
    ("optim.lr=0", "optim.lr", "> 0"),
    ("optim.lr=-1e-3", "optim.lr", "> 0"),
    ("optim.batch_size=0", "optim.batch_size", ">= 1"),
    ("optim.batch_size=2.5", "optim.batch_size", "integer"),
    ("optim.lrr=1", "optim.lrr", "'lr'"),
    ("schedule.name=linear", "schedule.name", "warmup_cosine"),
    ("loss.name=mse", "loss.name", "lpips_l2"),
    ("loss.weights.foo=1", "loss.weights.foo", "ms_lpips"),
    ("data.augment=flip", "data.augment", "color_jitter"),
    ("adapter.kind=mlp", "adapter.kind", "perceiver"),
    ("adapter.budget=lots", "adapter.budget", "10m"),
    ("preset=huge", "preset", "tiny"),
    ("eval.every_steps=-1", "eval.every_steps", ">= 0"),
    ("checkpoint.keep_last=0", "checkpoint.keep_last", ">= 1"),
])
def test_bad_values_raise_one_error_naming_key_and_accepted(override, key, accepted):
    with pytest.raises(ValueError) as info:
        load_config({"preset": "tiny"}, [override])
    assert key in str(info.value) and accepted in str(info.value)


def test_unknown_yaml_section_key_is_an_error(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("preset: tiny\noptim:\n  learning_rate: 1.0e-3\n")
    with pytest.raises(ValueError, match="optim.learning_rate"):
        load_config(path)
    with pytest.raises(FileNotFoundError, match="nope.yaml"):
        load_config(tmp_path / "nope.yaml")
    with pytest.raises(ValueError, match="KEY=VALUE"):
        load_config({}, ["optim.lr"])


def test_budget_names_and_literals():
    mini = get_preset("mini")
    assert resolve_budget("10m", mini) == mini.budgets["10m"]  # a budget name maps through the preset
    assert resolve_budget("5k", mini) == 5e3 and resolve_budget("2.5m", mini) == 2.5e6  # literal sizes
    assert resolve_budget(1e4, mini) == 1e4
    with pytest.raises(ValueError):
        resolve_budget(0, mini)


def test_hash_is_stable_and_ignores_logging_only():
    a = load_config({"preset": "tiny"})
    b = load_config({"preset": "tiny"}, ["log.progress_bar=true"])
    c = load_config({"preset": "tiny"}, ["optim.lr=1e-2"])
    assert config_hash(a) == config_hash(b) != config_hash(c)
    assert config_hash(load_config(a)) == config_hash(a)  # a TrainConfig round-trips
    assert isinstance(load_config(a), TrainConfig) and load_config(a) is not a
