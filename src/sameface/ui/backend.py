"""What the web UI runs on: the shipped miniature world (the default, no weights needed) or a
base model of the user's, with the face analyser, per-method defaults and trained adapters
each brings. Everything comes from the registry and the world's recipes, as for the CLI and
the benchmark runner; nothing here names a method.
"""

from __future__ import annotations

import os
import threading
from functools import cached_property
from pathlib import Path
from typing import Any


class Backend:
    """A base model and face analyser, loaded once on first use and shared by every session.

    Args:
        world: a world folder (`None` with no `base`: `$SAMEFACE_WORLD` or the shipped one).
        base: a base model spec (diffusers folder, .safetensors file or cached hub id);
            overrides the world.
        adapters: for a base model, a folder whose sub-folders are trained encoder/adapter
            folders (`sameface train` outputs); the world brings its own.
        device, dtype: where the base model runs (default: the CPU, float32).
        recognizer: the face recogniser for identities on a base model ("sface", "dlib",
            "insightface"); the world uses its own.
    """

    def __init__(
        self,
        *,
        world: str | os.PathLike | None = None,
        base: str | None = None,
        adapters: str | os.PathLike | None = None,
        device: str = "cpu",
        dtype: Any = None,
        recognizer: str = "sface",
    ) -> None:
        self.base_spec = base
        self.adapters_dir = Path(adapters) if adapters else None
        self.device, self.dtype, self.recognizer = device, dtype, recognizer
        self._world_folder = world
        self.lock = threading.Lock()
        """Held while the base model computes: one generation or training at a time."""
        if base is None:
            self.world  # noqa: B018 - fail now, with the loader's message, not at first click
        elif self.adapters_dir is not None and not self.adapters_dir.is_dir():
            raise FileNotFoundError(f"--adapters {self.adapters_dir}: no such folder")

    # -- what it runs on ----------------------------------------------------------------------

    @cached_property
    def world(self) -> Any:
        """The world (None when running on a base model of the user's)."""
        if self.base_spec is not None:
            return None
        from ..demo import load_world

        return load_world(self._world_folder)

    @property
    def label(self) -> str:
        """One line naming what this runs on."""
        if self.world is not None:
            return f"the miniature world ({self.world.folder})"
        return f"base model {self.base_spec}"

    @cached_property
    def base(self) -> Any:
        """The loaded `BaseModel` (loaded on first use)."""
        if self.world is not None:
            return self.world.base
        from ..models import load_base_model

        return load_base_model(self.base_spec, device=self.device, dtype=self.dtype)

    @cached_property
    def base_source(self) -> str:
        """How an artifact records the base model (a local path made absolute)."""
        if self.world is not None:
            return str(Path(self.world.folder) / "base")
        spec = self.base_spec
        return str(Path(spec).resolve()) if Path(spec).exists() else spec

    def licenses(self, method: str | None = None) -> str:
        """One line: the licences of what this runs (the base model, the identities'
        recogniser) and, with `method`, of the models its default settings pick."""
        from ..licenses import FIELD_LABELS, base_license, config_licenses, license_text

        base = base_license(self.base_source)
        parts = [f"base model: {base.short() if base else license_text(None)}"]
        who = "world" if self.world else self.recognizer
        parts.append(f"identities' face recogniser: {license_text(who)}")
        if method is not None:
            from ..methods import get_method

            try:
                config = get_method(method).config_cls(**self.defaults(method))
            except (TypeError, ValueError):
                config = None
            for name, entry in (config_licenses(config) if config else {}).items():
                lic = entry["license"]
                terms = license_text(None) if lic is None else lic["name"]
                terms += "" if lic is None or lic["commercial"] else ": non-commercial"
                parts.append(f"{FIELD_LABELS[name]}: {terms}")
        return "Licences — " + "; ".join(parts)

    @cached_property
    def analyzer(self) -> Any:
        """The `FaceAnalyzer` identities are built with."""
        if self.world is not None:
            return self.world.analyzer()
        from ..faces import FaceAnalyzer

        return FaceAnalyzer(self.recognizer)

    def identity_options(self) -> dict:
        """`Identity.from_images` settings for this model (the world's portraits are whole
        squares; a real model's crops match its resolution)."""
        if self.world is not None:
            return {"square_expand": None, "square_size": self.world.image_size}
        from ..models import detect_family, resolve_model_source

        native = detect_family(resolve_model_source(self.base_spec)).resolution
        return {"square_size": max(512, native)}

    # -- methods ------------------------------------------------------------------------------

    def methods(self) -> dict[str, str | None]:
        """Every registered method -> why it cannot run here, or None when it can."""
        from ..methods import available_methods, get_method

        out: dict[str, str | None] = {}
        for name in available_methods():
            spec = get_method(name)
            if self.world is not None:
                from ..eval.world_bench import unavailable_reason

                out[name] = unavailable_reason(self.world, name)
            elif spec.kind == "encoder" and not self.adapters(name):
                out[name] = (
                    f"{name} needs trained weights: train them (`sameface train {name}`) and "
                    "start the UI with --adapters DIR holding the output folder"
                )
            else:
                out[name] = None
        return out

    def adapters(self, method: str) -> list[str]:
        """The trained encoder/adapter folders an encoder method can use here."""
        from ..methods import get_method

        spec = get_method(method)
        if spec.kind != "encoder":
            return []
        if self.world is not None:
            recipe = spec.world
            folder = recipe.trained(self.world.folder) if recipe is not None else None
            return [str(folder)] if folder is not None else []
        if self.adapters_dir is None or not spec.trained_meta:
            return []
        return sorted(
            str(d) for d in self.adapters_dir.iterdir() if (d / spec.trained_meta).is_file()
        )

    def defaults(self, method: str) -> dict:
        """Settings this model gives a method before the user's own: in the world, the
        method's world settings and what its world recipe supplies (as the benchmark runner
        does)."""
        if self.world is None:
            return {}
        from ..eval.world_bench import world_defaults, world_method_settings

        supplied = world_method_settings(self.world, [method]).get(method, {})
        return world_defaults(self.world, method) | supplied
