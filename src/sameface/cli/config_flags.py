"""Command-line flags made from the registered methods' config dataclasses.

Every field of a method's config becomes `--field-name` (types, defaults and help from the
dataclass and its docstring's `Attributes:`), so adding a method or a setting touches no CLI
file. Several methods share one command, so a flag belongs to every method whose config has
the field, and giving a flag the chosen method does not have is a usage error naming it.
"""

from __future__ import annotations

import argparse
import dataclasses
import re
import typing
from pathlib import Path
from typing import Any

ALIASES = {"learning_rate": ("--lr",)}
"""Short spellings of common settings (a field name stays a flag too)."""

_ATTR = re.compile(r"^(\s+)([a-z_][a-z0-9_]*): (.*)$")


def field_help(cls: type) -> dict[str, str]:
    """Field name -> its text in the `Attributes:` sections of the class's docstring, or of a
    base class's for inherited fields (joined lines)."""
    out: dict[str, str] = {}
    for klass in reversed(cls.__mro__):
        out |= _doc_attributes(klass.__doc__ or "")
    return out


def _doc_attributes(doc: str) -> dict[str, str]:
    out: dict[str, str] = {}
    current, indent = None, 0
    for line in doc.splitlines():
        m = _ATTR.match(line)
        if m and (current is None or len(m.group(1)) <= indent):
            current, indent = m.group(2), len(m.group(1))
            out[current] = m.group(3).strip()
        elif current and line.strip() and len(line) - len(line.lstrip()) > indent:
            out[current] += " " + line.strip()
        else:
            current = None
    return out


def _parse_for(hint: Any) -> tuple[Any, dict]:
    """(argparse type, extra add_argument kwargs) for a field's type hint."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, getattr(__import__("types"), "UnionType", None)):
        options = [a for a in args if a is not type(None)]
        if len(options) == 1:
            return _parse_for(options[0])
        return _scalar, {}
    if origin is tuple:
        elem = args[0] if args else str
        return (elem if elem in (int, float, str) else _scalar), {"nargs": "+", "metavar": "V"}
    if hint is bool:
        return None, {"action": argparse.BooleanOptionalAction}
    if hint is int:
        return int, {"metavar": "N"}
    if hint is str:
        return str, {"metavar": "TEXT"}
    # floats stay lenient: a config may accept words too (reparam_base: "e", "off")
    return _scalar, {"metavar": "X" if hint is float else "VALUE"}


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
    hints = typing.get_type_hints(cls)
    helps = field_help(cls)
    out = {}
    for f in dataclasses.fields(cls):
        if f.name.startswith("_"):
            continue
        kind, extra = _parse_for(hints.get(f.name, str))
        default = f.default if f.default is not dataclasses.MISSING else None
        out[f.name] = (kind, extra, helps.get(f.name, ""), default)
    return out


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
    owners: dict[str, list[str]] = {}
    specs: dict[str, tuple] = {}
    for method, cls in configs.items():
        for name, spec in flag_specs(cls).items():
            owners.setdefault(name, []).append(method)
            specs.setdefault(name, spec)
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
    unknown = sorted(set(values) - own)
    if unknown:
        raise UsageError(
            f"unknown setting(s) {', '.join(unknown)} for {method}; known: {', '.join(sorted(own))}"
        )
    try:
        return config_cls(**values)
    except (TypeError, ValueError) as e:
        raise UsageError(str(e)) from None
