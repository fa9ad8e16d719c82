"""The one config path (c2bridge.config) and the name lists (c2bridge.names)."""
import subprocess
import sys

import pytest
import yaml

from c2bridge import config as C
from c2bridge.presets import get_preset


def test_resolve_budget_names_and_any_size():
    full, mini = get_preset("full"), get_preset("mini")
    assert C.resolve_budget("10m", full) == 1e7
    assert C.resolve_budget("10m", mini) == mini.budgets["10m"] == 1.25e4  # a budget name maps through the preset
    assert C.resolve_budget("10m", "mini") == 1.25e4  # a preset name works too
    # any other size is a literal count: the plan's pivot "accept 20-30M" can be written
    assert C.resolve_budget("30m", full) == C.resolve_budget("30M", mini) == C.resolve_budget(3e7, full) == 3e7
    assert C.resolve_budget("25M", full) == 25e6 and C.resolve_budget("3e7", full) == 3e7
    assert C.resolve_budget("5k", mini) == 5e3 and C.resolve_budget(" 2.5m ", mini) == 2.5e6
    assert C.resolve_budget(30_000_000, full) == 3e7


@pytest.mark.parametrize("bad, match", [
    ("ten", "expected a parameter count"), (0, "positive"), (-5, "positive"), (True, "expected a parameter count"),
    ([1], "expected a parameter count"), ("1e15", "at most 1e\\+10"), (float("inf"), "positive"),
])
def test_resolve_budget_bad_values_are_one_clear_error(bad, match):
    with pytest.raises(ValueError, match=match) as info:
        C.resolve_budget(bad, get_preset("mini"))
    assert "\n" not in str(info.value)
    if match != "at most 1e\\+10":
        assert "'10m'" in str(info.value)  # says which names the preset has


def test_overrides_yaml_values_and_one_error_for_every_bad_item():
    assert C.parse_overrides(["a.b=3.0e-4", "c=[0, 1]", "d=null", "e="]) == {"a.b": 3e-4, "c": [0, 1], "d": None,
                                                                           "e": None}
    with pytest.raises(ValueError) as info:
        C.parse_overrides(["novalue", "=3", "x=[unclosed", "ok=1"])
    text = str(info.value)
    assert "'novalue'" in text and "'=3'" in text and "'x=[unclosed'" in text and "'ok=1'" not in text
    common, per = C.split_scoped({"e2_1.seeds": [0], "E2.2.budget": "5m", "recipe.x": 1}, ["e2.1", "e2.2"])
    assert common == {"recipe.x": 1} and per == {"e2.1": {"seeds": [0]}, "e2.2": {"budget": "5m"}}


def test_yaml_base_chain_and_merge(tmp_path):
    (tmp_path / "root.mini.yaml").write_text(yaml.safe_dump({"a": {"x": 1, "y": 2}, "z": 0}))
    (tmp_path / "mid.mini.yaml").write_text(yaml.safe_dump({"base": "root", "a": {"y": 3}}))
    (tmp_path / "leaf.mini.yaml").write_text(yaml.safe_dump({"base": "mid", "z": 5}))
    assert C.load_yaml_config(tmp_path / "leaf.mini.yaml") == {"a": {"x": 1, "y": 3}, "z": 5}
    (tmp_path / "bad.mini.yaml").write_text(yaml.safe_dump({"base": "missing"}))
    with pytest.raises(FileNotFoundError, match="missing.mini.yaml"):
        C.load_yaml_config(tmp_path / "bad.mini.yaml")
    (tmp_path / "loop.mini.yaml").write_text(yaml.safe_dump({"base": "loop"}))
    with pytest.raises(ValueError, match="loops"):
        C.load_yaml_config(tmp_path / "loop.mini.yaml")
    (tmp_path / "list.mini.yaml").write_text("[1, 2]")
    with pytest.raises(ValueError, match="mapping"):
        C.load_yaml_config(tmp_path / "list.mini.yaml")


def test_typed_coercion_collects_every_bad_key():
    from c2bridge.recipe import TrainConfig

    cfg, errors = TrainConfig(), []
    C.apply_to_dataclass(cfg, {"optim": {"lr": "1e-3", "batch_size": "x"}, "nope": 1}, errors)
    C.set_dataclass_key(cfg, "adapter.overrides.n_layers", 2, errors)
    C.set_dataclass_key(cfg, "schedule.warmup_steps", 2.5, errors)
    assert cfg.optim.lr == 1e-3 and cfg.adapter.overrides == {"n_layers": 2}
    assert len(errors) == 3 and any("optim.batch_size" in e for e in errors) and any("'nope'" in e for e in errors)
    assert any("schedule.warmup_steps" in e for e in errors)


def test_config_path_and_names_import_without_torch():
    code = ("import sys, c2bridge.config, c2bridge.names, c2bridge.recipe, c2bridge.planner\n"
            "from c2bridge.experiments import registry; registry.experiments()\n"
            "print('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"


def test_every_name_list_matches_its_implementation():
    from c2bridge import names
    from c2bridge.adapters import ADAPTERS
    from c2bridge.data import augment
    from c2bridge.decoder import objective
    from c2bridge.train import schedules
    from c2bridge.recipe import load_config

    assert sorted(ADAPTERS) == sorted(names.ADAPTER_KINDS)
    assert augment.AUGMENTATIONS == names.AUGMENTATIONS
    assert objective.NAMED_LOSSES == names.NAMED_LOSSES and objective.TERMS == names.LOSS_TERMS
    for name in names.SCHEDULES:  # every schedule name resolves to a learning rate
        cfg = load_config({"schedule": {"name": name}, "optim": {"max_steps": 10}})
        assert schedules.lr_at(5, cfg, 10) > 0
    with pytest.raises(ValueError, match="loss.name"):
        load_config({"loss": {"name": "l1"}})
