"""Settings forms made from every method's config, and configs made back from them."""

from __future__ import annotations

import dataclasses

import pytest

from sameface.methods import available_methods, get_method
from sameface.ui.forms import UI_SUPPLIED, form_fields, parse_settings


@pytest.mark.parametrize("name", available_methods())
def test_an_untouched_form_gives_the_default_config(name):
    cls = get_method(name).config_cls
    form = form_fields(cls)
    names = {f.name for f in form}
    assert names == {f.name for f in dataclasses.fields(cls) if not f.name.startswith("_")} - set(
        UI_SUPPLIED
    )
    config, problems = parse_settings(name, cls, {f.name: f.value for f in form})
    assert problems == []
    assert config == cls()


def test_widgets_follow_the_field_types():
    cls = get_method("textual-inversion").config_cls
    form = {f.name: f for f in form_fields(cls)}
    assert form["steps"].widget == "int" and form["steps"].value == 400
    assert form["learning_rate"].widget == "float"
    assert form["gradient_checkpointing"].widget == "checkbox"
    assert form["adam_betas"].widget == "text" and form["adam_betas"].value == "0.9, 0.98"
    assert form["num_tokens"].widget == "text" and "empty = not set" in form["num_tokens"].info
    assert form["reparam_base"].widget == "text"  # a number or a word ("e", "off")
    assert form["templates"].widget == "lines" and "{}" in form["templates"].value
    assert form["steps"].info  # the config docstring's help


def test_typed_values_come_back_typed_and_defaults_apply_first():
    cls = get_method("textual-inversion").config_cls
    config, problems = parse_settings(
        "textual-inversion",
        cls,
        {"adam_betas": "0.8, 0.9", "reparam_base": "e", "num_tokens": "3", "steps": 7.0},
        defaults={"steps": 50, "seed": 4},
    )
    assert problems == []
    assert config.adam_betas == (0.8, 0.9) and config.reparam_base == pytest.approx(2.71828, 1e-4)
    assert config.num_tokens == 3 and config.steps == 7 and config.seed == 4


def test_every_problem_is_named_not_raised():
    cls = get_method("textual-inversion").config_cls
    config, problems = parse_settings(
        "textual-inversion", cls, {"steps": 2.5, "learning_rate": "fast", "nonsense": 1}
    )
    assert config is None
    assert "steps: expected a whole number, got 2.5" in problems
    assert "nonsense: not a setting of textual-inversion" in problems
    config, problems = parse_settings("textual-inversion", cls, {"learning_rate": "fast"})
    assert problems == [
        "invalid TextualInversionConfig: learning_rate must be a number, got 'fast'"
    ]
    config, problems = parse_settings("textual-inversion", cls, {"steps": -3})
    assert config is None and len(problems) == 1 and "steps" in problems[0]


def test_a_client_chooses_no_file_or_model_on_the_server():
    cls = get_method("magicapture").config_cls
    config, problems = parse_settings("magicapture", cls, {"style_reference": "/etc/passwd"})
    assert config is None and "not chosen from the UI" in problems[0]
    pulid = get_method("pulid").config_cls
    _, problems = parse_settings("pulid", pulid, {"adapter": "/some/folder", "world": "w"})
    assert problems == [
        "adapter: set by the server, not by the form",
        "world: set by the server, not by the form",
    ]
    # what the form showed (the server's own default) is fine
    config, problems = parse_settings("pulid", pulid, {"clip_vision": pulid().clip_vision})
    assert problems == [] and config.clip_vision == pulid().clip_vision
    _, problems = parse_settings("pulid", pulid, {"clip_vision": "someone/else"})
    assert "not chosen from the UI" in problems[0]


def test_words_stay_words():
    """`off` is a word here, not YAML's false (`reparam_base: off`, `ortho: off`)."""
    ti = get_method("textual-inversion").config_cls
    config, problems = parse_settings("textual-inversion", ti, {"reparam_base": "off"})
    assert problems == [] and config.reparam_base is None
    pulid = get_method("pulid").config_cls
    config, problems = parse_settings("pulid", pulid, {"ortho": "off", "num_zero": 20})
    assert problems == [] and config.ortho == "off" and config.num_zero == 20
