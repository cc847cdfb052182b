"""A method config's fields, described once for every front end (the CLI's flags, the web UI's
forms): kind, default and help from the dataclass and its docstring, and the config built
from plain values with a one-line error instead of a traceback."""

from __future__ import annotations

import dataclasses
import re
import typing
from dataclasses import dataclass
from typing import Any

_ATTR = re.compile(r"^(\s+)([a-z_][a-z0-9_]*): (.*)$")


@dataclass(frozen=True)
class FieldInfo:
    """One setting of a method config.

    Attributes:
        name: the dataclass field.
        kind: "bool", "int", "float", "str", "tuple" or "any" (a union of several types:
            e.g. a number or a word).
        optional: None is allowed (shown as empty).
        default: the default value (None when the field has a factory).
        help: the field's text in the config's `Attributes:` docstring.
        item: for tuples, the kind of their items ("int", "float", "str" or "any").
    """

    name: str
    kind: str
    optional: bool
    default: Any
    help: str
    item: str | None = None


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


_KINDS = {bool: "bool", int: "int", float: "float", str: "str"}


def _kind(hint: Any) -> tuple[str, bool, str | None]:
    """(kind, optional, tuple item kind) of a type hint."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, getattr(__import__("types"), "UnionType", None)):
        options = [a for a in args if a is not type(None)]
        optional = len(options) < len(args)
        if len(options) == 1:
            kind, _, item = _kind(options[0])
            return kind, optional, item
        return "any", optional, None
    if origin is tuple:
        elem = args[0] if args else str
        return "tuple", False, _KINDS.get(elem, "any") if elem is not bool else "any"
    return _KINDS.get(hint, "any"), False, None


def config_fields(cls: type) -> dict[str, FieldInfo]:
    """Field name -> `FieldInfo` for every public field of a config dataclass, in order."""
    hints = typing.get_type_hints(cls)
    helps = field_help(cls)
    out = {}
    for f in dataclasses.fields(cls):
        if f.name.startswith("_"):
            continue
        kind, optional, item = _kind(hints.get(f.name, str))
        default = f.default if f.default is not dataclasses.MISSING else None
        out[f.name] = FieldInfo(f.name, kind, optional, default, helps.get(f.name, ""), item)
    return out


def config_from_values(config_cls: type, method: str, values: dict) -> Any:
    """`config_cls(**values)`, with unknown names and the config's own checks as one line.

    Raises:
        UsageError: a setting the method does not have, or a value its config refuses.
    """
    from ..errors import UsageError

    own = {f.name for f in dataclasses.fields(config_cls)}
    unknown = sorted(set(values) - own)
    if unknown:
        raise UsageError(
            f"unknown setting(s) {', '.join(unknown)} for {method}; known: {', '.join(sorted(own))}"
        )
    try:
        return config_cls(**values)
    except (TypeError, ValueError) as e:
        raise UsageError(str(e)) from None
