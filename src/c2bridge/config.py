"""One config path: YAML files, ``base:`` inheritance, deep merges, dotted ``key=value`` overrides, type coercion
against dataclasses, adapter budgets, and where the shipped configs live. Importable without torch.

Every config in c2bridge goes through here: the training recipe (``c2bridge.train.config``), the experiment
configs (``c2bridge.experiments``) and the planner (``c2bridge.planner``).

- ``load_yaml_config(path)``: a YAML mapping, with its ``base: NAME`` file (``NAME.<suffix>.yaml`` next to it,
  the same suffix) merged underneath.
- ``parse_overrides(["optim.lr=3e-4", "e2_1.seeds=[0]"])``: values read as YAML; every malformed item in one error.
- ``apply_overrides(tree, overrides)`` (plain dicts) / ``apply_to_dataclass(obj, values)`` and
  ``set_dataclass_key(obj, dotted, value)`` (typed: values coerced to the field's type, every bad key collected).
- ``resolve_budget(budget, preset)``: a preset budget name (``"10m"``) or any size (``"30m"``, ``3e7``, ``"25M"``).
"""
from __future__ import annotations

import copy
import dataclasses
import math
import re
import typing
from importlib import resources
from pathlib import Path
from typing import Any, Iterable, Mapping, Union

from c2bridge._io import read_yaml
from c2bridge.presets import get_preset

# ------------------------------------------------------------------------------------------------- where configs live


def config_dir(*parts: str) -> Path:
    """The shipped config directory (``c2bridge/configs``), or a sub-directory (``config_dir("experiments")``)."""
    return Path(str(resources.files("c2bridge") / "configs")).joinpath(*parts)


def experiments_dir() -> Path:
    return config_dir("experiments")


def presets_dir() -> Path:
    return config_dir("presets")


# ------------------------------------------------------------------------------------------------------ plain trees


def deep_merge(base: Mapping | None, patch: Mapping | None) -> dict:
    """``patch`` over ``base`` (nested mappings merged, everything else replaced); neither input is changed."""
    out = copy.deepcopy(dict(base or {}))
    for key, value in (patch or {}).items():
        if isinstance(value, Mapping) and isinstance(out.get(key), dict):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def set_dotted(tree: dict, dotted: str, value: Any) -> None:
    """``tree["a"]["b"] = value`` for ``"a.b"`` (missing or non-mapping levels become mappings)."""
    parts = dotted.split(".")
    for part in parts[:-1]:
        if not isinstance(tree.get(part), dict):
            tree[part] = {}
        tree = tree[part]
    tree[parts[-1]] = copy.deepcopy(value)


def nested(dotted: Mapping[str, Any]) -> dict:
    """``{"optim.lr": 1e-3}`` -> ``{"optim": {"lr": 1e-3}}``."""
    out: dict = {}
    for key, value in dotted.items():
        set_dotted(out, str(key), value)
    return out


def apply_overrides(tree: Mapping, overrides: Mapping[str, Any]) -> dict:
    """A copy of ``tree`` with each dotted key set."""
    out = copy.deepcopy(dict(tree))
    for key, value in overrides.items():
        set_dotted(out, key, value)
    return out


# --------------------------------------------------------------------------------------------------------- overrides


def parse_value(text: str) -> Any:
    """A command-line value read as YAML (``3.0e-4`` -> 0.0003, ``[0, 1]`` -> list, ``null`` -> None; YAML reads
    ``3e-4`` as a string, which typed fields coerce)."""
    import yaml

    return yaml.safe_load(text) if text.strip() else None


def parse_overrides(items: Iterable[str] | Mapping[str, Any] | None,
                    example: str = "optim.lr=3e-4") -> dict[str, Any]:
    """``["a.b=1", "c=[0, 1]"]`` -> ``{"a.b": 1, "c": [0, 1]}`` (a mapping passes through).

    Every item that is not ``KEY=VALUE`` with valid YAML is collected into one ``ValueError``.
    """
    import yaml

    if items is None:
        return {}
    if isinstance(items, Mapping):
        return dict(items)
    out: dict[str, Any] = {}
    errors: list[str] = []
    for item in items:
        key, sep, raw = str(item).partition("=")
        key = key.strip()
        if not isinstance(item, str) or not sep or not key:
            errors.append(f"{item!r} is not KEY=VALUE")
            continue
        try:
            out[key] = parse_value(raw)
        except yaml.YAMLError as exc:
            errors.append(f"{item!r}: value is not valid YAML ({exc.__class__.__name__})")
    if errors:
        raise ValueError(f"bad override(s): {'; '.join(errors)} (expected KEY=VALUE with a dotted key, e.g. {example})")
    return out


def split_scoped(overrides: Mapping[str, Any], scopes: Iterable[str]) -> tuple[dict, dict[str, dict]]:
    """Overrides for everyone and per scope: a key starting with a scope id (``e2.1.seeds`` or ``e2_1.seeds``,
    any case) applies to that scope only, without the prefix."""
    scopes = list(scopes)
    common: dict[str, Any] = {}
    per: dict[str, dict] = {s: {} for s in scopes}
    for key, value in overrides.items():
        for scope in scopes:
            prefix = next((p for p in (scope + ".", scope.replace(".", "_") + ".") if key.lower().startswith(p)), None)
            if prefix:
                per[scope][key[len(prefix):]] = value
                break
        else:
            common[key] = value
    return common, per


# ------------------------------------------------------------------------------------------------------- YAML files


def read_mapping(path: str | Path) -> dict:
    """A YAML file whose top level is a mapping (an empty file is ``{}``)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"config file {str(path)!r} not found")
    data = read_yaml(path)
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ValueError(f"config file {str(path)!r}: expected a YAML mapping at top level, got {type(data).__name__}")
    return data


def load_yaml_config(path: str | Path) -> dict:
    """A YAML mapping with its ``base:`` merged underneath (``base: common`` in ``e2_1.mini.yaml`` names
    ``common.mini.yaml`` in the same directory; bases may have bases)."""
    path = Path(path)
    seen: list[Path] = []
    layers: list[dict] = []
    while True:
        if path in seen:
            raise ValueError(f"config {seen[0]}: 'base' chain loops back to {path}")
        seen.append(path)
        cfg = read_mapping(path)
        base = cfg.pop("base", None)
        layers.append(cfg)
        if not base:
            break
        suffix = path.name.split(".", 1)[1] if "." in path.name else "yaml"
        base_path = path.parent / f"{base}.{suffix}"
        if not base_path.is_file():
            raise FileNotFoundError(f"{path} names base {base!r} but {base_path} does not exist")
        path = base_path
    out: dict = {}
    for layer in reversed(layers):
        out = deep_merge(out, layer)
    return out


# ------------------------------------------------------------------------------------------------ typed dataclasses


def apply_to_dataclass(obj: Any, values: Any, errors: list[str], prefix: str = "", origin: str = "") -> None:
    """Set ``obj``'s fields from a (nested) mapping, coercing each value to its field's type; unknown keys and
    bad values are appended to ``errors`` (``origin`` prefixes each message, e.g. the file's name)."""
    if not isinstance(values, Mapping):
        errors.append(f"{origin}{prefix.rstrip('.') or 'config'}: expected a mapping, got {_show(values)}")
        return
    names = {f.name for f in dataclasses.fields(obj)}
    hints = typing.get_type_hints(type(obj))
    for key, value in values.items():
        dotted = f"{prefix}{key}"
        if key not in names:
            errors.append(f"{origin}unknown config key {dotted!r}; expected one of {sorted(names)}")
            continue
        current = getattr(obj, key)
        if dataclasses.is_dataclass(current):
            apply_to_dataclass(current, value if value is not None else {}, errors, dotted + ".", origin)
            continue
        try:
            setattr(obj, key, coerce(value, hints[key], dotted))
        except ValueError as exc:
            errors.append(f"{origin}{exc}")


def set_dataclass_key(obj: Any, dotted: str, value: Any, errors: list[str]) -> None:
    """``obj.a.b = value`` for ``"a.b"`` (coerced); inside a free-form dict field the rest of the key nests."""
    parts = dotted.split(".")
    for i, part in enumerate(parts):
        here = ".".join(parts[: i + 1])
        if isinstance(obj, dict):  # free-form dict fields (adapter.overrides, loss.weights): set nested keys
            for sub in parts[i:-1]:
                obj = obj.setdefault(sub, {})
                if not isinstance(obj, dict):
                    errors.append(f"override {dotted!r}: {here!r} is not a mapping")
                    return
            obj[parts[-1]] = value
            return
        if not dataclasses.is_dataclass(obj):
            errors.append(f"unknown config key {dotted!r}: {'.'.join(parts[:i])!r} has no sub-keys")
            return
        names = {f.name for f in dataclasses.fields(obj)}
        if part not in names:
            errors.append(f"unknown config key {here!r}; expected one of {sorted(names)}")
            return
        if i == len(parts) - 1:
            current = getattr(obj, part)
            if dataclasses.is_dataclass(current):
                apply_to_dataclass(current, value if value is not None else {}, errors, here + ".")
                return
            try:
                setattr(obj, part, coerce(value, typing.get_type_hints(type(obj))[part], here))
            except ValueError as exc:
                errors.append(str(exc))
            return
        obj = getattr(obj, part)


def coerce(value: Any, hint: Any, key: str) -> Any:
    """A YAML/CLI value as the field's declared type (YAML reads ``1e-4`` as a string: here it is a float), or a
    ValueError naming the key and what was expected."""
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if origin is Union:
        if value is None or (isinstance(value, str) and value.strip().lower() in ("null", "none", "~")):
            if type(None) in args:
                return None
        for arg in args:
            if arg is type(None):
                continue
            try:
                return coerce(value, arg, key)
            except ValueError:
                pass
        names = " or ".join("null" if a is type(None) else getattr(a, "__name__", str(a)) for a in args)
        raise ValueError(f"{key}={_show(value)}: expected {names}")
    if hint is float:
        if isinstance(value, bool):
            raise ValueError(f"{key}={_show(value)}: expected a number")
        try:
            return float(value)
        except (TypeError, ValueError):
            raise ValueError(f"{key}={_show(value)}: expected a number") from None
    if hint is int:
        if isinstance(value, bool):
            raise ValueError(f"{key}={_show(value)}: expected an integer")
        try:
            f = float(value)
        except (TypeError, ValueError):
            raise ValueError(f"{key}={_show(value)}: expected an integer") from None
        if not f.is_integer():
            raise ValueError(f"{key}={_show(value)}: expected an integer")
        return int(f)
    if hint is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.strip().lower() in ("true", "yes", "on", "1", "false", "no", "off", "0"):
            return value.strip().lower() in ("true", "yes", "on", "1")
        if isinstance(value, int) and value in (0, 1):
            return bool(value)
        raise ValueError(f"{key}={_show(value)}: expected true or false")
    if hint is str:
        if isinstance(value, (str, int, float)) and not isinstance(value, bool):
            return str(value)
        raise ValueError(f"{key}={_show(value)}: expected a string")
    if hint is dict or origin is dict:
        if isinstance(value, Mapping):
            return copy.deepcopy(dict(value))
        raise ValueError(f"{key}={_show(value)}: expected a mapping")
    if hint is tuple or origin is tuple:
        if isinstance(value, (list, tuple)):
            return tuple(coerce(v, float, f"{key}[{i}]") for i, v in enumerate(value))
        raise ValueError(f"{key}={_show(value)}: expected a list")
    return value


def get_dotted(obj: Any, dotted: str) -> Any:
    for part in dotted.split("."):
        obj = obj[part] if isinstance(obj, Mapping) else getattr(obj, part)
    return obj


def _show(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


# ---------------------------------------------------------------------------------------------------------- budgets

MAX_BUDGET = 1e10  # trainable adapter parameters; anything larger is a typo (the plan's sizes are 5M-100M)
_SIZE = re.compile(r"\s*([0-9]*\.?[0-9]+(?:e[+-]?[0-9]+)?)\s*([kmbg]?)\s*")
_SUFFIXES = {"": 1.0, "k": 1e3, "m": 1e6, "b": 1e9, "g": 1e9}


def parse_size(size: Any) -> float:
    """A parameter count: ``3e7``, ``30_000_000``, ``"30m"``, ``"25M"``, ``"5k"``, ``"2.5e4"`` -> float.

    ValueError (one line: what was wrong, what is expected) for anything else, for counts below 1 and for counts
    above ``MAX_BUDGET``.
    """
    expected = "a parameter count like 3e7, '30M', '25m' or '5k'"
    if isinstance(size, bool) or not isinstance(size, (int, float, str)):
        raise ValueError(f"budget {size!r}: expected {expected}")
    if isinstance(size, str):
        match = _SIZE.fullmatch(size.lower())
        if not match:
            raise ValueError(f"budget {size!r}: expected {expected}")
        value = float(match.group(1)) * _SUFFIXES[match.group(2)]
    else:
        value = float(size)
    if not math.isfinite(value) or value < 1:
        raise ValueError(f"budget {size!r}: expected a positive parameter count ({expected})")
    if value > MAX_BUDGET:
        raise ValueError(f"budget {size!r} = {value:.3g} parameters is beyond any adapter this study trains: expected "
                         f"at most {MAX_BUDGET:.0e} (10B; the plan's sizes are 5M-100M)")
    return value


def resolve_budget(budget: Any, preset: Any) -> float:
    """An adapter budget -> trainable-parameter count.

    A string that is one of the preset's budget names (``"5m"``, ``"10m"``, ... as written in ``preset.budgets``)
    maps through the preset (``"10m"`` is 1e7 parameters in ``full`` and 1.25e4 in ``mini``); any other size is a
    literal count (``"30m"``, ``"25M"``, ``3e7``; see ``parse_size``). ``preset`` is a Preset or its name.
    """
    if isinstance(preset, str):
        preset = get_preset(preset)
    if isinstance(budget, str) and budget.strip() in preset.budgets:
        return float(preset.budgets[budget.strip()])
    try:
        return parse_size(budget)
    except ValueError as exc:
        raise ValueError(f"{exc}, or one of preset {preset.name!r}'s budget names {list(preset.budgets)}") from None
