"""A method's settings form, made from its config dataclass (`methods.config_fields`), and the
config made back from what a person typed, with every problem as a message, never a traceback.

No gradio here: the app turns each `FormField` into a widget, and tests check the round trip.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

UI_SUPPLIED = ("adapter", "world")
"""Settings the UI fills itself (the adapter picker, the world it runs on), not form fields."""


@dataclass(frozen=True)
class FormField:
    """One widget of a method's settings form.

    Attributes:
        name: the config field.
        widget: "checkbox", "int", "float", "text" (strings, words-or-numbers, optional
            values — empty means not set — and comma-separated tuples of numbers) or "lines"
            (tuples of strings, one a line: they may hold commas).
        value: the widget's starting value (the default here, as the widget shows it).
        label: the field name as a label.
        info: the field's help, with its type where the widget does not show it.
    """

    name: str
    widget: str
    value: Any
    label: str
    info: str


def form_fields(config_cls: type, defaults: dict | None = None) -> list[FormField]:
    """The form of a config: a field each, starting from `defaults` over the dataclass's own."""
    from ..licenses import LICENSED_FIELDS, license_text
    from ..methods.config_fields import config_fields

    defaults = defaults or {}
    out = []
    for name, f in config_fields(config_cls).items():
        if name in UI_SUPPLIED:
            continue
        value = defaults.get(name, f.default)
        info = f.help
        if f.kind in ("bool", "int", "float") and not f.optional:
            widget = {"bool": "checkbox", "int": "int", "float": "float"}[f.kind]
        elif f.kind == "tuple" and f.item == "str":
            widget, value = "lines", "\n".join(value or ())
            info = f"{info} (one a line)" if info else "one a line"
        else:
            widget = "text"
            value = show(value)
            what = {
                "tuple": f"comma-separated {f.item or 'values'}",
                "any": "a number or a word",
                "int": "a whole number",
                "float": "a number",
            }.get(f.kind)
            extra = [what] if what else []
            if f.optional:
                extra.append("empty = not set")
            if extra:
                info = f"{info} ({'; '.join(extra)})" if info else "; ".join(extra)
        if name in LICENSED_FIELDS and value not in (None, ""):
            info = f"{info} — licence of {value}: {license_text(value)}"
        out.append(FormField(name, widget, value, name.replace("_", " "), info))
    return out


def show(value: Any) -> str:
    """A value as a text widget shows it (tuples comma-separated; None empty)."""
    if value is None:
        return ""
    if isinstance(value, (tuple, list)):
        return ", ".join(show(v) for v in value)
    return str(value)


def parse_settings(
    method: str, config_cls: type, raw: dict[str, Any], defaults: dict | None = None
) -> tuple[Any | None, list[str]]:
    """The config from a form's values, or (None, messages): each problem names its field.

    `defaults` (the model's, e.g. the world's settings and trained adapter) apply under the
    form's values, as the form showed them. A client chooses no file or model on the server:
    the settings the UI fills itself are refused, and so is a text setting that names a path
    other than the one the form showed (start the UI with it, or use the command line).
    """
    from ..errors import SamefaceError
    from ..methods.config_fields import config_fields, config_from_values

    fields = config_fields(config_cls)
    values = dict(defaults or {})
    problems = []
    for name, given in raw.items():
        f = fields.get(name)
        if f is None or name in UI_SUPPLIED:
            problems.append(
                f"{name}: not a setting of {method}"
                if f is None
                else f"{name}: set by the server, not by the form"
            )
            continue
        try:
            value = _parse(f, given)
        except ValueError as e:
            problems.append(f"{name}: {e}")
            continue
        shown = (defaults or {}).get(name, f.default)
        if isinstance(value, str) and value != shown and _names_a_path(value):
            problems.append(
                f"{name}: files and models on the server are not chosen from the UI (start "
                "the UI with them, or use the command line)"
            )
            continue
        values[name] = value
    if problems:
        return None, problems
    try:
        return config_from_values(config_cls, method, values), []
    except SamefaceError as e:
        return None, [str(e)]


def _names_a_path(text: str) -> bool:
    """Whether a setting's text names a file, folder or model (a path or a hub id)."""
    import os

    return any(c in text for c in "/\\") or text.startswith(("~", ".")) or os.path.exists(text)


def _parse(f: Any, given: Any) -> Any:
    """One widget's value as the field's type (None for an empty optional field)."""
    if f.kind == "bool" and not f.optional:
        return bool(given)
    if isinstance(given, (int, float)) and not isinstance(given, bool):
        if f.kind == "int" and float(given) != int(given):
            raise ValueError(f"expected a whole number, got {given}")
        return int(given) if f.kind == "int" else float(given)
    text = "" if given is None else str(given).strip()
    if not text:
        if f.optional:
            return None
        if f.kind in ("str", "any"):
            return ""
        raise ValueError("a value is needed")
    if f.kind == "str":
        return text
    if f.kind == "tuple":
        sep = "\n" if f.item == "str" else ","
        items = [t.strip() for t in text.split(sep) if t.strip()]
        return tuple(_scalar(t, f.item) for t in items)
    # Words stay words ("off", "e", "v2"): YAML would read `off` as a boolean.
    return _scalar(text, f.kind)


def _scalar(value: Any, kind: str | None) -> Any:
    if kind == "int":
        try:
            return int(str(value))
        except ValueError:
            raise ValueError(f"expected a whole number, got {value!r}") from None
    if kind == "float":  # lenient, as on the command line: some take words ("e", "off"),
        try:  # and the config's own check words the refusal
            return float(str(value))
        except ValueError:
            return value
    if kind == "str":
        return str(value)
    if isinstance(value, str):  # "any": a number when it reads as one
        for k in (int, float):
            try:
                return k(value)
            except ValueError:
                pass
    return value
