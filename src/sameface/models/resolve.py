"""The one place that turns a model spec into local files (DESIGN convention 7).

A spec is a local diffusers folder (has `model_index.json`), a single `.safetensors`
checkpoint, or a hub id `org/name` looked up in the Hugging Face cache. Nothing here touches
the network unless the caller passes `local_files_only=False` and `HF_HUB_OFFLINE` is unset.
When files are missing, one `ModelNotFoundError` names every missing file and the command that
fetches them on a machine with access.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from sameface.errors import ModelNotFoundError, SamefaceError

# Components a Stable Diffusion pipeline needs; others in model_index.json (safety_checker,
# feature_extractor, image_encoder) are never loaded, so they are never required.
MODEL_COMPONENTS = ("unet", "vae", "text_encoder", "text_encoder_2")
TOKENIZER_COMPONENTS = ("tokenizer", "tokenizer_2")
SCHEDULER_COMPONENT = "scheduler"
_WEIGHT_STEMS = ("diffusion_pytorch_model", "model")  # diffusers / transformers file names
PICKLE_SUFFIXES = (".ckpt", ".bin", ".pt", ".pth", ".pkl", ".pickle")
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")
_TRUE = {"1", "on", "yes", "true"}

# The diffusers repos whose configs describe each family's original single-file checkpoints.
BASE_CONFIG_REPOS = {
    "sd1": "stable-diffusion-v1-5/stable-diffusion-v1-5",
    "sd2": "stabilityai/stable-diffusion-2-1-base",
    "sd2-v": "stabilityai/stable-diffusion-2-1",
    "sdxl": "stabilityai/stable-diffusion-xl-base-1.0",
}


@dataclass(frozen=True)
class ResolvedModel:
    """Local files for a model spec.

    Attributes:
        spec: what the caller asked for.
        kind: `"diffusers"` (a folder with `model_index.json`) or `"single_file"`.
        path: the diffusers folder (a snapshot folder for hub ids) or the checkpoint file.
        repo_id: the hub id when the files came from the Hugging Face cache.
        variant: weight variant (e.g. `"fp16"`) the folder was checked for, if any.
        missing_tokenizers: tokenizer folders absent from a diffusers folder; the loader builds
            the real CLIP tokenizer offline instead.
    """

    spec: str
    kind: str
    path: Path
    repo_id: str | None = None
    variant: str | None = None
    missing_tokenizers: tuple[str, ...] = field(default=())

    @property
    def is_single_file(self) -> bool:
        return self.kind == "single_file"


def is_offline_env() -> bool:
    """True when `HF_HUB_OFFLINE` is set to a truthy value (read now, not at import time)."""
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in _TRUE


def effective_local_files_only(local_files_only: bool | None) -> bool:
    """Offline unless the caller explicitly passes `False` and `HF_HUB_OFFLINE` is unset."""
    return local_files_only is not False or is_offline_env()


def hub_cache_dir(cache_dir: str | os.PathLike[str] | None = None) -> Path:
    """The Hugging Face hub cache folder, honouring `HF_HUB_CACHE` and `HF_HOME`.

    Read from the environment at call time (huggingface_hub's constants are frozen at import).

    Args:
        cache_dir: explicit folder; wins over every environment variable.
    """
    if cache_dir is not None:
        return Path(cache_dir).expanduser()
    for var in ("HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE"):
        if os.environ.get(var):
            return Path(os.environ[var]).expanduser()
    if os.environ.get("HF_HOME"):
        return Path(os.environ["HF_HOME"]).expanduser() / "hub"
    xdg = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(xdg) / "huggingface" / "hub"


def _weight_names(stem: str, variant: str | None) -> tuple[str, str]:
    """(single file, shard index) names, with diffusers' variant infix."""
    if variant:
        return f"{stem}.{variant}.safetensors", f"{stem}.safetensors.index.{variant}.json"
    return f"{stem}.safetensors", f"{stem}.safetensors.index.json"


def _missing_weights(folder: Path, name: str, variant: str | None) -> list[str]:
    """Missing weight files of one model component (empty when complete)."""
    comp = folder / name
    for stem in _WEIGHT_STEMS:
        single, index = _weight_names(stem, variant)
        if (comp / single).is_file():
            return []
        if (comp / index).is_file():
            try:
                shards = set(json.loads((comp / index).read_text())["weight_map"].values())
            except (OSError, ValueError, KeyError, AttributeError):
                return [f"{name}/{index} (unreadable shard index)"]
            return [f"{name}/{s}" for s in sorted(shards) if not (comp / s).is_file()]
    stem = "diffusion_pytorch_model" if name in ("unet", "vae") else "model"
    wanted = f"{name}/{_weight_names(stem, variant)[0]}"
    pickles = sorted(p.name for p in comp.glob("*") if p.suffix in PICKLE_SUFFIXES)
    if pickles:
        wanted += (
            f" (only pickle weights {', '.join(pickles)} are present; sameface never loads "
            "pickle files: convert them to safetensors)"
        )
    return [wanted]


def read_model_index(folder: Path) -> dict:
    """Parse `model_index.json` of a diffusers folder.

    Raises:
        SamefaceError: the file is not valid JSON.
    """
    try:
        return json.loads((folder / "model_index.json").read_text())
    except ValueError as e:
        raise SamefaceError(f"{folder / 'model_index.json'} is not valid JSON: {e}") from e


def pipeline_components(index: dict) -> list[str]:
    """Names of the components a SD pipeline loads, as listed in `model_index.json`."""
    wanted = (*MODEL_COMPONENTS, *TOKENIZER_COMPONENTS, SCHEDULER_COMPONENT)
    return [
        k for k in wanted if isinstance(index.get(k), list) and index[k] and index[k][0] is not None
    ]


def check_diffusers_folder(
    folder: Path, *, variant: str | None = None, weights: bool = True
) -> tuple[list[str], list[str]]:
    """List what a diffusers folder lacks.

    Args:
        folder: candidate folder.
        variant: weight variant to look for (e.g. `"fp16"`).
        weights: also check weight files (False: configs only, enough for single-file loading).

    Returns:
        `(missing, missing_tokenizers)`: relative paths of missing required files, and
        tokenizer folders that are absent (optional: the loader can rebuild CLIP's tokenizer).
    """
    if not (folder / "model_index.json").is_file():
        return ["model_index.json"], []
    index = read_model_index(folder)
    missing: list[str] = []
    missing_tok: list[str] = []
    for name in pipeline_components(index):
        if name in TOKENIZER_COMPONENTS:
            tok = folder / name
            if not (tok / "tokenizer.json").is_file() and not (
                (tok / "vocab.json").is_file() and (tok / "merges.txt").is_file()
            ):
                missing_tok.append(name)
        elif name == SCHEDULER_COMPONENT:
            if not (folder / name / "scheduler_config.json").is_file():
                missing.append(f"{name}/scheduler_config.json")
        else:
            if not (folder / name / "config.json").is_file():
                missing.append(f"{name}/config.json")
            if weights:
                missing += _missing_weights(folder, name, variant)
    if "unet" not in index:
        missing.append("unet (model_index.json lists no unet: not a Stable Diffusion pipeline)")
    return missing, missing_tok


def download_hint(
    repo_id: str,
    patterns: Iterable[str],
    cache: Path,
    pass_as: str = "the folder instead of the hub id",
) -> str:
    """Text telling the user how to fetch `patterns` of `repo_id` elsewhere and bring them here."""
    include = " ".join(f'"{p}"' for p in patterns)
    return (
        "On a machine with access to huggingface.co, run\n"
        f"    hf download {repo_id} --include {include}\n"
        "(`huggingface-cli download` with the same arguments on older huggingface_hub), then "
        f"copy its cache folder models--{repo_id.replace('/', '--')} into {cache} here (or "
        "point HF_HUB_CACHE / HF_HOME at a copied cache); or add `--local-dir DIR` to the "
        f"command, copy DIR here and pass {pass_as}."
    )


def _include_patterns(missing: list[str]) -> list[str]:
    # Configs are tiny, so always fetch all of them; then each missing weight file by name.
    pats = ["*.json", "*.txt"]
    for m in missing:
        path = m.split(" ", 1)[0]
        if not path.endswith((".json", ".txt")) and "/" in path:
            pats.append(path)
    return pats


def _default_weight_patterns(variant: str | None) -> list[str]:
    pats = ["*.json", "*.txt"]
    for name in MODEL_COMPONENTS:
        stem = "diffusion_pytorch_model" if name in ("unet", "vae") else "model"
        pats.append(f"{name}/{_weight_names(stem, variant)[0]}")
    return pats


def cached_snapshot(repo_id: str, *, cache: Path, revision: str | None = None) -> Path | None:
    """Snapshot folder of `repo_id` in the local Hugging Face cache, or None; read from the
    cache's layout (`refs/<revision>` -> `snapshots/<commit>`), never touching the network."""
    folder = cache / f"models--{repo_id.replace('/', '--')}"
    rev = revision or "main"
    ref = folder / "refs" / rev
    commit = ref.read_text().strip() if ref.is_file() else rev
    snap = folder / "snapshots" / commit
    return snap if commit and snap.is_dir() else None


def _snapshot(
    repo_id: str,
    *,
    cache: Path,
    revision: str | None,
    local_only: bool,
    allow_patterns: list[str] | None = None,
) -> Path | None:
    """Snapshot folder of `repo_id`: from the cache, or (only when the caller allowed
    downloads) fetched. This is the one place in sameface that downloads."""
    if local_only:
        return cached_snapshot(repo_id, cache=cache, revision=revision)
    from huggingface_hub import snapshot_download

    return Path(
        snapshot_download(
            repo_id,
            cache_dir=cache,
            revision=revision,
            allow_patterns=allow_patterns,
            local_files_only=False,
        )
    )


def local_model_folder(
    spec: str | os.PathLike[str],
    *,
    what: str,
    include: list[str],
    hint: str = "",
    local_files_only: bool | None = None,
) -> Path:
    """A model folder given as a path, or a hub id's snapshot in the Hugging Face cache.

    For models outside the diffusers layout (CLIP scorers, CLIP vision encoders). Offline
    unless the caller passes `local_files_only=False` and `HF_HUB_OFFLINE` is unset.

    Args:
        spec: a folder, or a hub id `org/name`.
        what: what the model is, for messages ("CLIP model").
        include: file patterns a download would fetch, for the `hf download` hint.
        hint: extra advice for the error message.
        local_files_only: as in `resolve_model_source`.

    Raises:
        ModelNotFoundError: not a folder and not in the cache.
    """
    raw = os.fspath(spec)
    path = Path(raw).expanduser()
    if path.is_dir():
        return path
    if _looks_like_path(raw) or not _HUB_ID.match(raw):
        raise ModelNotFoundError(
            f"{what} folder {raw!r} does not exist{'; ' + hint if hint else ''}"
        )
    cache = hub_cache_dir()
    local_only = effective_local_files_only(local_files_only)
    try:
        snap = _snapshot(
            raw, cache=cache, revision=None, local_only=local_only, allow_patterns=include
        )
    except Exception as e:  # network errors come in many types
        snap, why = None, f"; download failed: {e}"
    else:
        why = ""
    if snap is None:
        raise ModelNotFoundError(
            f"{what} {raw!r} is not a local folder and not in the Hugging Face cache ({cache}){why}.\n"
            + download_hint(raw, include, cache, pass_as="the folder")
            + (f"\n{hint}" if hint else "")
        )
    return snap


def _resolve_hub_id(
    repo_id: str,
    spec: str,
    *,
    cache: Path,
    revision: str | None,
    local_only: bool,
    variant: str | None,
) -> ResolvedModel:
    snapshot = None
    if not local_only:
        try:
            # Configs first (small), so the weights fetched next are exactly the ones needed.
            snapshot = _snapshot(
                repo_id,
                cache=cache,
                revision=revision,
                local_only=False,
                allow_patterns=["*.json", "*.txt"],
            )
            missing, _ = check_diffusers_folder(snapshot, variant=variant)
            if missing:
                snapshot = _snapshot(
                    repo_id,
                    cache=cache,
                    revision=revision,
                    local_only=False,
                    allow_patterns=_include_patterns(missing),
                )
        except SamefaceError:
            raise
        except Exception as e:  # network errors come in many types; report them as one
            raise ModelNotFoundError(
                f"Could not download {repo_id!r} from the Hugging Face hub: {e}\n"
                + download_hint(repo_id, _default_weight_patterns(variant), cache)
            ) from e
    else:
        snapshot = _snapshot(repo_id, cache=cache, revision=revision, local_only=True)

    if snapshot is None:
        missing = ["model_index.json", "and every component (nothing of this repo is cached)"]
        patterns = _default_weight_patterns(variant)
    else:
        missing, missing_tok = check_diffusers_folder(snapshot, variant=variant)
        patterns = _include_patterns(missing)
        if not missing:
            return ResolvedModel(spec, "diffusers", snapshot, repo_id, variant, tuple(missing_tok))
        if missing == ["model_index.json"]:
            missing.append("and every component (their names come from model_index.json)")
            patterns = _default_weight_patterns(variant)
    why = (
        "HF_HUB_OFFLINE is set"
        if is_offline_env()
        else "downloads are off (pass local_files_only=False to allow them)"
        if local_only
        else "the download did not bring them"
    )
    where = snapshot if snapshot is not None else cache / f"models--{repo_id.replace('/', '--')}"
    raise ModelNotFoundError(
        f"Model {repo_id!r}{f' (revision {revision})' if revision else ''} is not complete in "
        f"the Hugging Face cache ({where}); {why}. Missing:\n"
        + "".join(f"  - {m}\n" for m in missing)
        + download_hint(repo_id, patterns, cache)
    )


def _looks_like_path(spec: str) -> bool:
    return (
        spec.startswith(("/", "./", "../", "~", "\\"))
        or os.path.isabs(spec)
        or "\\" in spec
        or spec.count("/") != 1
        or spec.lower().endswith((".safetensors", *PICKLE_SUFFIXES))
    )


def resolve_model_source(
    spec: str | os.PathLike[str],
    *,
    cache_dir: str | os.PathLike[str] | None = None,
    local_files_only: bool | None = None,
    revision: str | None = None,
    variant: str | None = None,
) -> ResolvedModel:
    """Resolve a model spec to local files, without touching the network by default.

    Args:
        spec: a diffusers folder (with `model_index.json`), a `.safetensors` checkpoint file,
            or a hub id `org/name` looked up in the Hugging Face cache.
        cache_dir: Hugging Face hub cache folder; default `HF_HUB_CACHE`, `HF_HOME/hub`, or
            `~/.cache/huggingface/hub`.
        local_files_only: `None`/`True` never download; `False` allows downloading missing
            files of a hub id, unless `HF_HUB_OFFLINE` is set.
        revision: hub branch, tag or commit (hub ids only).
        variant: weight variant such as `"fp16"` (diffusers folders and hub ids).

    Raises:
        ModelNotFoundError: the path does not exist, or files are missing (the message lists
            them and how to fetch them).
        SamefaceError: the path is a pickle checkpoint, or a folder that is not a diffusers
            pipeline.
    """
    raw = os.fspath(spec).strip()
    if not raw:
        raise SamefaceError(
            "Empty model spec: pass a diffusers folder, a .safetensors file or org/name."
        )
    path = Path(raw).expanduser()
    if path.is_file():
        return _resolve_file(raw, path)
    if path.is_dir():
        return _resolve_folder(raw, path, variant)
    if _looks_like_path(raw) or not _HUB_ID.match(raw):
        raise ModelNotFoundError(
            f"Model path {raw!r} does not exist. Pass a diffusers folder (with "
            "model_index.json), a .safetensors checkpoint file, or a hub id like "
            "'stable-diffusion-v1-5/stable-diffusion-v1-5' that is in the Hugging Face cache."
        )
    return _resolve_hub_id(
        raw,
        raw,
        cache=hub_cache_dir(cache_dir),
        revision=revision,
        local_only=effective_local_files_only(local_files_only),
        variant=variant,
    )


def _resolve_file(spec: str, path: Path) -> ResolvedModel:
    suffix = path.suffix.lower()
    if suffix in PICKLE_SUFFIXES:
        raise SamefaceError(
            f"{path} is a pickle checkpoint ({suffix}); sameface loads only .safetensors because "
            "unpickling can run arbitrary code. Convert it on a machine you trust, e.g. load it "
            "with diffusers' `from_single_file` and `save_pretrained(DIR)` (safetensors), or "
            "re-save its state dict with `safetensors.torch.save_file`, then pass the result."
        )
    if suffix != ".safetensors":
        raise SamefaceError(
            f"{path} is not a .safetensors checkpoint; pass a single-file .safetensors "
            "checkpoint or a diffusers folder (with model_index.json)."
        )
    return ResolvedModel(spec, "single_file", path)


def _resolve_folder(spec: str, path: Path, variant: str | None) -> ResolvedModel:
    if not (path / "model_index.json").is_file():
        hint = ""
        checkpoints = sorted(p.name for p in path.glob("*.safetensors"))
        if checkpoints:
            hint = f" It holds {', '.join(checkpoints[:3])}: pass a checkpoint file directly."
        elif (path / "config.json").is_file():
            hint = " It looks like a single component (it has config.json); pass its parent folder."
        raise SamefaceError(
            f"{path} is not a diffusers pipeline folder: it has no model_index.json.{hint}"
        )
    missing, missing_tok = check_diffusers_folder(path, variant=variant)
    if missing:
        raise ModelNotFoundError(
            f"Diffusers folder {path} is incomplete. Missing:\n"
            + "".join(f"  - {m}\n" for m in missing)
            + "Copy the missing files from the model's repository (e.g. `hf download ORG/NAME "
            f"--include {' '.join(repr(p) for p in _include_patterns(missing))} --local-dir "
            f"{path}` on a machine with access)."
        )
    return ResolvedModel(spec, "diffusers", path, None, variant, tuple(missing_tok))


def resolve_config_folder(
    spec: str | os.PathLike[str],
    *,
    cache_dir: str | os.PathLike[str] | None = None,
    local_files_only: bool | None = None,
    revision: str | None = None,
    purpose: str = "",
) -> Path:
    """Find a diffusers folder's configs (no weights), e.g. for single-file checkpoint loading.

    Args:
        spec: a local folder, or a hub id looked up in the Hugging Face cache.
        cache_dir: Hugging Face hub cache folder (see `hub_cache_dir`).
        local_files_only: as in `resolve_model_source`; when downloads are allowed only the
            small `*.json` / `*.txt` files are fetched.
        revision: hub branch, tag or commit.
        purpose: a phrase for the error message (why the configs are needed).

    Raises:
        ModelNotFoundError: the configs are not available locally.
    """
    raw = os.fspath(spec)
    path = Path(raw).expanduser()
    if path.is_dir() or _looks_like_path(raw) or not _HUB_ID.match(raw):
        missing = check_diffusers_folder(path, weights=False)[0] if path.is_dir() else ["(folder)"]
        if missing:
            raise ModelNotFoundError(
                f"Config folder {path} {'lacks ' + ', '.join(missing) if path.is_dir() else 'does not exist'}"
                f"{'; ' + purpose if purpose else ''}. Pass a diffusers folder holding "
                "model_index.json and each component's config."
            )
        return path
    cache = hub_cache_dir(cache_dir)
    local_only = effective_local_files_only(local_files_only)
    snapshot = None
    try:
        snapshot = _snapshot(
            raw,
            cache=cache,
            revision=revision,
            local_only=local_only,
            allow_patterns=None if local_only else ["*.json", "*.txt"],
        )
    except Exception as e:  # network errors come in many types
        if local_only:
            raise
        purpose = f"{purpose}; download failed: {e}"
    missing = (
        check_diffusers_folder(snapshot, weights=False)[0] if snapshot else ["model_index.json"]
    )
    if not missing:
        return snapshot
    raise ModelNotFoundError(
        f"The configs of {raw!r} are not in the Hugging Face cache ({cache}); missing: "
        f"{', '.join(missing)}.{' ' + purpose + '.' if purpose else ''}\n"
        + download_hint(raw, ["*.json", "*.txt"], cache, pass_as="config=DIR")
    )
