"""What every method provides to the registry, the CLI, the UI and the benchmark runner."""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
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
            resume=True, progress=True) -> Path` writes the method's artifact folder
            (`artifact.json` names the method) for one identity.
        pipeline_cls: inference pipeline with `from_artifact(folder, base=None, ...)` and a
            diffusers-style `__call__`.
        train: dataset -> encoder weights, for encoder methods.
        world: how the method trains and runs in the proving-ground world, when it has parts
            to train there (`WorldRecipe`); None = it runs there as it is.
    """

    name: str
    kind: str
    paper: str
    config_cls: type
    personalize: Callable[..., Any]
    pipeline_cls: type
    train: Callable[..., Any] | None = None
    world: WorldRecipe | None = None


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
