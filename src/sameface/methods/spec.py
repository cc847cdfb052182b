"""What every method provides to the registry, the CLI, the UI and the benchmark runner."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
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
    """

    name: str
    kind: str
    paper: str
    config_cls: type
    personalize: Callable[..., Any]
    pipeline_cls: type
    train: Callable[..., Any] | None = None


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
