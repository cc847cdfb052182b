"""What every method provides to the registry, the CLI, the UI and the benchmark runner."""

from __future__ import annotations

import importlib
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class MethodSpec:
    """A registered personalisation method.

    Attributes:
        name: registry name, e.g. "textual-inversion".
        kind: "optimisation" (personalise trains per identity) or "encoder" (personalise
            encodes; `train` trains the encoder on a dataset).
        paper: the seed paper this implements.
        config_cls: dataclass of the method's settings.
        personalize: `(identity, base, config, out_dir, *, base_spec=None, bank=None,
            resume=True, progress=True) -> Path` (or its "module:attr" path) writes the method's artifact folder
            (`artifact.json` names the method) for one identity.
        pipeline_cls: inference pipeline with `from_artifact(folder, base=None, ...)` and a
            diffusers-style `__call__`.
        train: dataset -> encoder weights, for encoder methods.
        world: how the method trains and runs in the proving-ground world, when it has parts
            to train there (`WorldRecipe`); None = it runs there as it is.
        trained_meta: the JSON file of a trained weights folder (`train` output), holding at
            least "base" and "family" (`sameface.methods.trained`); None when it trains none.
        generate_options: extra pipeline call arguments `generate` offers, each documented by
            a config field: {call argument: config field} (e.g. {"id_scale":
            "inference_id_scale"}: the flag `--id-scale` takes that field's type and help).
        train_inputs: further folders `train` takes beside the dataset: {keyword: help}
            (`sameface train` offers `--keyword DIR`).
        data_commands: `sameface data <name>` sub-commands the method adds: {name:
            "module:function"}, the function adding its parser (`function(subparsers, common)`).
        uses_recognizer: an optimisation method that trains against the identity's face
            recogniser (an ID loss: MagiCapture); encoder methods always condition on it.
        world_settings: settings the method takes in the proving-ground world under a suite's
            own (step counts at the world's scale, prompts in the world's caption grammar).
        style_field: the config field taking a style reference portrait (MagiCapture's
            `style_reference`), or None; a suite whose prompts name `<style>` gives it each
            identity's reference and the prompts as written (`sameface.eval.style`).
    """

    name: str
    kind: str
    paper: str
    config_cls: type
    personalize: Callable[..., Any] | str
    pipeline_cls: type | str
    train: Callable[..., Any] | str | None = None
    world: WorldRecipe | None = None
    trained_meta: str | None = None
    generate_options: Mapping[str, str] = field(default_factory=dict)
    train_inputs: Mapping[str, str] = field(default_factory=dict)
    data_commands: Mapping[str, str] = field(default_factory=dict)
    uses_recognizer: bool = False
    world_settings: Mapping[str, Any] = field(default_factory=dict)
    style_field: str | None = None

    def __getattribute__(self, name: str) -> Any:
        # personalize / pipeline_cls / train may be given as "module:attr" and are imported on
        # first use, so the registry (and the CLI built from it) loads no torch.
        value = object.__getattribute__(self, name)
        if name in _LAZY and isinstance(value, str):
            module, _, attr = value.partition(":")
            value = getattr(importlib.import_module(module), attr)
            object.__setattr__(self, name, value)  # frozen dataclass: cache once, on purpose
        return value

    @property
    def trains(self) -> bool:
        """Whether the method has a `train` (dataset -> weights), without importing it."""
        return object.__getattribute__(self, "train") is not None


_LAZY = ("personalize", "pipeline_cls", "train")


@dataclass(frozen=True)
class WorldRecipe:
    """A method's recipe for the proving-ground world (`sameface world <method>`).

    The world names no method: its bench, demo and CLI ask the registry for these.

    Attributes:
        folder: where its trained parts live inside a world folder (e.g. "pulid").
        what: what those parts are called in messages (e.g. "PuLID adapter").
        help: one line for `sameface world --help`.
        description: the `sameface world <method> --help` text.
        add_arguments: adds the command's options to an argparse parser.
        run: `run(args) -> Path` trains from the parsed options, returns the folder.
        settings: `settings(world, folder) -> dict`: this method's settings in that world
            (what the benchmark runner passes to its config).
    """

    folder: str
    what: str
    help: str
    description: str
    add_arguments: Callable[[Any], None]
    run: Callable[[Any], Any]
    settings: Callable[[Any, Path], dict]

    def trained(self, world_folder: str | os.PathLike) -> Path | None:
        """The trained folder in a world, or None when it has none yet (loading it checks it)."""
        folder = Path(world_folder) / self.folder
        return folder if folder.is_dir() else None


@dataclass
class GenerationOutput:
    """What a method pipeline returns.

    Attributes:
        images: PIL images (or arrays with `output_type="np"`), `num_images_per_prompt` per prompt.
        prompts: the prompt each image was made from, placeholder included.
    """

    images: list[Any]
    prompts: list[str]


def artifact_base(meta: dict, base: Any = None, **load_kwargs: Any) -> Any:
    """`base` if given, else the base model an artifact records (`meta["base"]`), loaded offline
    by default (`load_kwargs`: device, dtype, local_files_only)."""
    if base is not None:
        return base
    from ..models import load_base_model

    return load_base_model(meta["base"], **load_kwargs)
