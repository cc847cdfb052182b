"""Command-line flags made from the registered methods' config dataclasses.

Every field of a method's config becomes `--field-name` (types, defaults and help from the
dataclass and its docstring's `Attributes:`), so adding a method or a setting touches no CLI
file. Several methods share one command, so a flag belongs to every method whose config has
the field, and giving a flag the chosen method does not have is a usage error naming it.
"""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path
from typing import Any

ALIASES = {"learning_rate": ("--lr",)}
"""Short spellings of common settings (a field name stays a flag too)."""


def _parse_for(info: Any) -> tuple[Any, dict]:
    """(argparse type, extra add_argument kwargs) for a setting (`FieldInfo`)."""
    plain = {"int": int, "str": str}
    if info.kind == "tuple":
        return plain.get(info.item, float if info.item == "float" else _scalar), {
            "nargs": "+",
            "metavar": "V",
        }
    if info.kind == "bool":
        return None, {"action": argparse.BooleanOptionalAction}
    if info.kind == "int":
        return int, {"metavar": "N"}
    if info.kind == "str":
        return str, {"metavar": "TEXT"}
    # floats stay lenient: a config may accept words too (reparam_base: "e", "off")
    return _scalar, {"metavar": "X" if info.kind == "float" else "VALUE"}


def _scalar(text: str) -> Any:
    """A number when it reads as one, else the text (e.g. "2.0" -> 2.0, "e" -> "e")."""
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


def flag_specs(cls: type) -> dict[str, tuple[Any, dict, str, Any]]:
    """Field name -> (argparse type, extra add_argument kwargs, help, default) of a config."""
    from ..methods.config_fields import config_fields

    out = {}
    for name, info in config_fields(cls).items():
        kind, extra = _parse_for(info)
        out[name] = (kind, extra, info.help, info.default)
    return out


def merge_specs(by_method: dict[str, tuple]) -> tuple:
    """One flag's spec for a setting several methods have: the first method's when their
    defaults agree (the texts then say the same in other words), else each method's own
    help and default in turn (the flag itself has none: each method keeps its own)."""
    specs = list(by_method.values())
    kind, extra, _, _ = specs[0]
    if all(s[3] == specs[0][3] for s in specs):
        return specs[0]
    text = " ".join(
        f"{m}: {t.rstrip('.')}{'' if d is None or isinstance(d, tuple) else f' (default {d})'}."
        for m, (_, _, t, d) in by_method.items()
    )
    return kind, extra, text, None


def add_flag(
    group: Any, name: str, spec: tuple, owners: list[str], dest: str | None = None
) -> None:
    """`--name` (and its aliases) for one setting, into `group`."""
    kind, extra, text, default = spec
    flags = [f"--{name.replace('_', '-')}", *ALIASES.get(name, ())]
    who = f"[{', '.join(owners)}] " if owners else ""
    shown = "" if default is None or isinstance(default, tuple) else f" (default {default})"
    kwargs = {
        "dest": dest or name,
        "default": None,
        "help": f"{who}{text}{shown}".replace("%", "%%"),
    }
    if kind is not None:
        kwargs["type"] = kind
    group.add_argument(*flags, **kwargs | extra)


def add_config_flags(parser: argparse.ArgumentParser, configs: dict[str, type]) -> None:
    """Add a flag for every field of every config (one flag per field name, shared), grouped
    by the method that has it ("settings of several methods" for shared ones). A field whose
    flag the command already has for something else (e.g. `--recognizer` of the photos'
    analysis) gets none: `--set field=value` or `--config` set it.

    Args:
        parser: the command's parser.
        configs: method name -> config dataclass.
    """
    by_field: dict[str, dict[str, tuple]] = {}
    for method, cls in configs.items():
        for name, spec in flag_specs(cls).items():
            by_field.setdefault(name, {})[method] = spec
    owners = {name: list(by) for name, by in by_field.items()}
    specs = {name: merge_specs(by) for name, by in by_field.items()}
    groups: dict[str, Any] = {}
    taken = set(parser._option_string_actions)  # argparse keeps no public list of these
    added = []
    for name, spec in specs.items():
        if f"--{name.replace('_', '-')}" in taken:
            continue
        added.append(name)
        methods = owners[name]
        key = methods[0] if len(methods) == 1 else "shared"
        if key not in groups:
            title = f"{key} settings" if key != "shared" else "settings of several methods"
            groups[key] = parser.add_argument_group(title)
        add_flag(groups[key], name, spec, methods if len(configs) > 1 else [])
    parser.set_defaults(_config_flags=tuple(added))  # what `config_from_args` reads


def config_from_args(config_cls: type, method: str, args: argparse.Namespace) -> Any:
    """The method's config from `--config FILE.yaml`, `--set key=value` and the named flags.

    Args:
        config_cls: the chosen method's config dataclass.
        method: its registry name (for messages).
        args: parsed arguments (the config flags of every method: those of other methods
            are refused).

    Raises:
        SamefaceError: unreadable config file, or a flag / setting the method does not have.
    """
    import yaml

    from ..errors import SamefaceError, UsageError

    values: dict = {}
    if getattr(args, "config", None):
        try:
            loaded = yaml.safe_load(Path(args.config).read_text()) or {}
        except (OSError, yaml.YAMLError) as e:
            raise SamefaceError(f"{args.config}: cannot read config ({e})") from None
        if not isinstance(loaded, dict):
            raise SamefaceError(f"{args.config}: a config file is a mapping of setting: value")
        values |= loaded
    for item in getattr(args, "set", None) or []:
        key, sep, raw = item.partition("=")
        if not sep:
            raise UsageError(f"--set expects key=value, got {item!r}")
        values[key.strip().replace("-", "_")] = yaml.safe_load(raw)
    from ..methods.config_fields import config_from_values

    own = {f.name for f in dataclasses.fields(config_cls)}
    for name in getattr(args, "_config_flags", ()):
        value = getattr(args, name, None)
        if value is None:
            continue
        if name not in own:
            raise UsageError(
                f"--{name.replace('_', '-')} is not a setting of {method} "
                f"(its settings: {', '.join(sorted(own))})"
            )
        values[name] = tuple(value) if isinstance(value, list) else value
    return config_from_values(config_cls, method, values)
