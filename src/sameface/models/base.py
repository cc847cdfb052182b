"""`BaseModel`: the components of a Stable Diffusion base model behind one uniform shape.

Methods train adapters, embeddings or LoRA on top of these frozen parts, so every method sees
SD1.x, SD2.x and SDXL the same way: `tokenizers` / `text_encoders` are lists (one entry for
SD1/SD2, two for SDXL), and `as_pipeline()` gives the matching diffusers pipeline.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sameface.errors import ModelError, ModelNotFoundError, SamefaceError
from sameface.models.family import FamilyInfo, detect_family
from sameface.models.resolve import (
    ResolvedModel,
    check_diffusers_folder,
    read_model_index,
    resolve_config_folder,
    resolve_model_source,
)

# Pad tokens of the real SD tokenizers: OpenCLIP-based encoders (SD2, SDXL's second) pad
# with "!" (id 0); the OpenAI CLIP ones with the end token. Padding changes the hidden states
# the UNet cross-attends to, so it has to match what the model was trained with.
PAD_TOKENS = {
    "sd1": ["<|endoftext|>"],
    "sd2": ["!"],
    "sdxl": ["<|endoftext|>", "!"],
}
_TEXT_ENCODER_CLASSES = ("CLIPTextModel", "CLIPTextModelWithProjection")
# The class model_index.json may name for each component: anything else could make a library
# pick a loader that unpickles (e.g. a non-scheduler class for the scheduler loads a `.bin`).
_COMPONENT_CLASSES = {
    "unet": ("UNet2DConditionModel",),
    "vae": ("AutoencoderKL",),
    "text_encoder": _TEXT_ENCODER_CLASSES,
    "text_encoder_2": _TEXT_ENCODER_CLASSES,
    "tokenizer": ("CLIPTokenizer", "CLIPTokenizerFast"),
    "tokenizer_2": ("CLIPTokenizer", "CLIPTokenizerFast"),
}
_PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".pkl", ".pickle")


@dataclass
class BaseModel:
    """A Stable Diffusion base model's components.

    Attributes:
        family: `"sd1"`, `"sd2"` or `"sdxl"`.
        tokenizers: `transformers.CLIPTokenizer`s; one, or two for SDXL.
        text_encoders: CLIP text models, aligned with `tokenizers`; SDXL's second one is a
            `CLIPTextModelWithProjection`.
        unet: `diffusers.UNet2DConditionModel`.
        vae: `diffusers.AutoencoderKL`.
        scheduler: a diffusers scheduler (the one saved with the model).
        source: where it came from (path, hub id, or a builder name).
    """

    family: str
    tokenizers: list[Any]
    text_encoders: list[Any]
    unet: Any
    vae: Any
    scheduler: Any
    source: str = field(default="")

    def __post_init__(self) -> None:
        n = 2 if self.family == "sdxl" else 1
        if self.family not in PAD_TOKENS:
            raise ValueError(f"family must be 'sd1', 'sd2' or 'sdxl', not {self.family!r}")
        if len(self.tokenizers) != n or len(self.text_encoders) != n:
            raise ValueError(
                f"{self.family} needs {n} tokenizer(s) and text encoder(s); got "
                f"{len(self.tokenizers)} and {len(self.text_encoders)}"
            )

    @property
    def tokenizer(self) -> Any:
        """The first tokenizer."""
        return self.tokenizers[0]

    @property
    def text_encoder(self) -> Any:
        """The first text encoder."""
        return self.text_encoders[0]

    @property
    def is_sdxl(self) -> bool:
        return self.family == "sdxl"

    @property
    def prediction_type(self) -> str:
        """What the UNet predicts: `"epsilon"` or `"v_prediction"` (from the scheduler)."""
        return self.scheduler.config.get("prediction_type", "epsilon")

    @property
    def vae_scale_factor(self) -> int:
        """Pixels per latent cell along each side (8 for the real models)."""
        return 2 ** (len(self.vae.config.block_out_channels) - 1)

    @property
    def resolution(self) -> int:
        """Native image size in pixels (UNet sample size x VAE scale factor)."""
        return int(self.unet.config.sample_size) * self.vae_scale_factor

    @property
    def device(self) -> Any:
        return next(self.unet.parameters()).device

    @property
    def dtype(self) -> Any:
        return next(self.unet.parameters()).dtype

    def modules(self) -> dict[str, Any]:
        """The torch modules by pipeline component name (`unet`, `vae`, `text_encoder`, ...)."""
        mods = {"unet": self.unet, "vae": self.vae}
        for i, te in enumerate(self.text_encoders):
            mods["text_encoder" if i == 0 else f"text_encoder_{i + 1}"] = te
        return mods

    def to(self, device: Any = None, dtype: Any = None) -> BaseModel:
        """Move every module to `device` and/or cast to `dtype`, in place.

        Args:
            device: e.g. `"cpu"`, `"cuda"`; None keeps the current one.
            dtype: e.g. `torch.bfloat16`; None keeps the current one.

        Returns:
            self, for chaining.
        """
        # Only pass what is set: diffusers warns about fp32-kept modules whenever `dtype` is
        # passed, even as None.
        kwargs = {k: v for k, v in (("device", device), ("dtype", dtype)) if v is not None}
        if kwargs:
            for mod in self.modules().values():
                mod.to(**kwargs)
        return self

    def freeze(self) -> BaseModel:
        """Turn off gradients and put every module in eval mode, in place. Returns self."""
        for mod in self.modules().values():
            mod.requires_grad_(False)
            mod.eval()
        return self

    def _eval(self) -> BaseModel:
        # Eval mode like `from_pretrained` gives, so built and loaded models behave alike.
        for mod in self.modules().values():
            mod.eval()
        return self

    def pipeline_class(self) -> type:
        """`diffusers.StableDiffusionXLPipeline` for sdxl, else `StableDiffusionPipeline`."""
        import diffusers

        if self.is_sdxl:
            return diffusers.StableDiffusionXLPipeline
        return diffusers.StableDiffusionPipeline

    def components(self) -> dict[str, Any]:
        """The keyword arguments of the pipeline constructor that hold this model's parts."""
        comps = {
            **self.modules(),
            "tokenizer": self.tokenizers[0],
            "scheduler": self.scheduler,
        }
        if self.is_sdxl:
            comps["tokenizer_2"] = self.tokenizers[1]
        return comps

    def as_pipeline(self, **kwargs: Any) -> Any:
        """Build the diffusers pipeline around these components (shared, not copied).

        No safety checker, feature extractor, image encoder or watermarker is attached.

        Args:
            **kwargs: extra or overriding constructor arguments, e.g. `scheduler=...`.
        """
        extra: dict[str, Any] = {"feature_extractor": None, "image_encoder": None}
        if self.is_sdxl:
            extra["add_watermarker"] = False
        else:
            extra.update(safety_checker=None, requires_safety_checker=False)
        return self.pipeline_class()(**{**self.components(), **extra, **kwargs})


def save_base_model(model: BaseModel, folder: str | os.PathLike[str]) -> Path:
    """Save a `BaseModel` as a diffusers folder (safetensors) that `load_base_model` reads.

    Args:
        model: the model to save.
        folder: destination folder (created; existing files are overwritten).

    Returns:
        The folder.
    """
    folder = Path(folder)
    model.as_pipeline().save_pretrained(str(folder), safe_serialization=True)
    return folder


def _transformers_dtype_kwargs(dtype: Any) -> dict[str, Any]:
    # transformers renamed `torch_dtype` to `dtype` (4.56); older versions know only the former.
    if dtype is None:
        return {}
    import transformers
    from packaging.version import Version

    new = Version(transformers.__version__.split("+")[0]) >= Version("4.56")
    return {"dtype" if new else "torch_dtype": dtype}


def _load_tokenizer(folder: Path, name: str, pad: str, missing: tuple[str, ...], cache: Any) -> Any:
    from transformers import CLIPTokenizer

    from sameface.models.tokenizer import clip_tokenizer

    if name in missing:
        # Not shipped with the folder: every SD tokenizer is the same CLIP BPE, built offline.
        return clip_tokenizer(pad_token=pad, cache_dir=cache)
    # A tokenizer folder holds only JSON/text (vocab, merges); nothing there is unpickled.
    return CLIPTokenizer.from_pretrained(str(folder), subfolder=name, local_files_only=True)


def check_component_classes(folder: Path, index: dict, names: list[str]) -> Any:
    """Check each component's class in `model_index.json`; return the scheduler class.

    Raises:
        ModelError: a component names a class it cannot be, or the scheduler is not a
            diffusers scheduler.
    """
    import diffusers

    where = folder / "model_index.json"
    for name in names:
        entry = index.get(name)
        if entry is None:
            continue  # a missing component is reported by the loaders as missing
        cls_name = entry[1] if isinstance(entry, list) and len(entry) == 2 else entry
        allowed = _COMPONENT_CLASSES[name]
        if cls_name not in allowed and not (name.startswith("tokenizer") and cls_name is None):
            raise ModelError(f"{where}: {name} is {cls_name!r}; it must be one of {list(allowed)}")
    entry = index.get("scheduler")
    sched_name = entry[1] if isinstance(entry, list) and len(entry) == 2 else entry
    sched_cls = getattr(diffusers, sched_name, None) if isinstance(sched_name, str) else None
    if not (isinstance(sched_cls, type) and issubclass(sched_cls, diffusers.SchedulerMixin)):
        raise ModelError(f"{where}: scheduler is {sched_name!r}, not a diffusers scheduler class")
    return sched_cls


def check_weight_files(folder: Path, names: list[str]) -> None:
    """Refuse pickled weights and check every safetensors header in the components' folders.

    Raises:
        ModelError: a component holds pickle weights only, or a crafted/corrupt safetensors file.
    """
    from sameface.tensorfile import check_header

    for name in names:
        sub = folder / name
        if not sub.is_dir():
            continue
        files = sorted(p for p in sub.iterdir() if p.is_file())
        safe = [p for p in files if p.name.endswith(".safetensors")]
        pickles = [p for p in files if p.name.endswith(_PICKLE_SUFFIXES)]
        if pickles and not safe:
            raise ModelError(
                f"{sub}: weights are pickle files ({pickles[0].name}); sameface loads only "
                ".safetensors (convert them with diffusers' save_pretrained)"
            )
        for p in safe:
            check_header(p, ModelError)


def _load_diffusers_folder(
    resolved: ResolvedModel, info: FamilyInfo, dtype: Any, tokenizer_cache_dir: Any
) -> BaseModel:
    import diffusers
    import transformers

    folder, variant = resolved.path, resolved.variant
    index = read_model_index(folder)
    names = ["text_encoder", "text_encoder_2"] if info.family == "sdxl" else ["text_encoder"]
    toks = ["tokenizer", "tokenizer_2"] if info.family == "sdxl" else ["tokenizer"]
    sched_cls = check_component_classes(folder, index, ["unet", "vae", *names, *toks])
    check_weight_files(folder, ["unet", "vae", *names])
    common = {"local_files_only": True, "use_safetensors": True}
    if variant:
        common["variant"] = variant
    dkw = {**common, **({"torch_dtype": dtype} if dtype is not None else {})}
    try:
        unet = diffusers.UNet2DConditionModel.from_pretrained(str(folder), subfolder="unet", **dkw)
        vae = diffusers.AutoencoderKL.from_pretrained(str(folder), subfolder="vae", **dkw)
    except (OSError, ValueError, RuntimeError) as e:
        if isinstance(e, SamefaceError):
            raise
        raise ModelError(f"{folder}: cannot load ({str(e).splitlines()[0]})") from None
    encoders = []
    for name in names:
        cls_name = (index.get(name) or [None, None])[1]
        if cls_name not in _TEXT_ENCODER_CLASSES:
            raise SamefaceError(
                f"{folder}: {name} is {cls_name!r}; sameface supports {_TEXT_ENCODER_CLASSES}."
            )
        cls = getattr(transformers, cls_name)
        try:
            encoders.append(
                cls.from_pretrained(
                    str(folder), subfolder=name, **common, **_transformers_dtype_kwargs(dtype)
                )
            )
        except (OSError, ValueError, RuntimeError) as e:
            if isinstance(e, SamefaceError):
                raise
            raise ModelError(f"{folder / name}: cannot load ({str(e).splitlines()[0]})") from None
    tokenizers = [
        _load_tokenizer(folder, name, pad, resolved.missing_tokenizers, tokenizer_cache_dir)
        for name, pad in zip(("tokenizer", "tokenizer_2"), PAD_TOKENS[info.family], strict=False)
    ]
    # A SchedulerMixin reads only scheduler_config.json (checked above), never weights.
    scheduler = sched_cls.from_pretrained(str(folder), subfolder="scheduler", local_files_only=True)
    return BaseModel(info.family, tokenizers, encoders, unet, vae, scheduler, resolved.spec)


def _load_single_file(
    resolved: ResolvedModel,
    info: FamilyInfo,
    *,
    dtype: Any,
    config: str | os.PathLike[str] | None,
    original_config: str | os.PathLike[str] | None,
    cache_dir: Any,
    local_files_only: bool | None,
    tokenizer_cache_dir: Any,
) -> BaseModel:
    import diffusers

    from sameface.models.configs import write_config_folder
    from sameface.models.tokenizer import clip_tokenizer

    purpose = (
        f"Loading the single-file {info.family} checkpoint {resolved.path.name} needs them "
        "(model_index.json and each component's config, a few KB; no weights). Alternatives: "
        "pass config=DIR (a diffusers folder of the same architecture; weights not needed), "
        f'or config="builtin" to use sameface\'s copy of the {info.base_repo} configs'
    )
    if original_config is not None and not Path(original_config).is_file():
        raise ModelNotFoundError(
            f"original_config {original_config!r} is not a local file; sameface does not fetch "
            "original LDM YAML configs from the network."
        )
    with contextlib.ExitStack() as stack:
        if config is not None and os.fspath(config) == "builtin":
            tmp = stack.enter_context(tempfile.TemporaryDirectory(prefix="sameface-config-"))
            cfg_dir = write_config_folder(
                info.family,
                tmp,
                prediction_type=info.prediction_type,
                tokenizer_cache_dir=tokenizer_cache_dir,
            )
        else:
            cfg_dir = resolve_config_folder(
                config if config is not None else info.base_repo,
                cache_dir=cache_dir,
                local_files_only=local_files_only,
                purpose=purpose,
            )
        _, missing_tok = check_diffusers_folder(Path(cfg_dir), weights=False)
        kwargs: dict[str, Any] = {"feature_extractor": None}
        names = ("tokenizer", "tokenizer_2")
        for name, pad in zip(names, PAD_TOKENS[info.family], strict=False):
            if name in missing_tok:
                kwargs[name] = clip_tokenizer(pad_token=pad, cache_dir=tokenizer_cache_dir)
        if info.family == "sdxl":
            cls = diffusers.StableDiffusionXLPipeline
            kwargs.update(image_encoder=None, add_watermarker=False)
        else:
            cls = diffusers.StableDiffusionPipeline
            kwargs.update(safety_checker=None, requires_safety_checker=False)
        # config= a local folder: diffusers reads every config from it and never calls the hub
        # (with config=None it would fall back to downloading even when local_files_only=True).
        pipe = cls.from_single_file(
            str(resolved.path),
            config=str(cfg_dir),
            original_config=os.fspath(original_config) if original_config else None,
            local_files_only=True,
            torch_dtype=dtype,
            **kwargs,
        )
    encoders = [pipe.text_encoder] + ([pipe.text_encoder_2] if info.family == "sdxl" else [])
    tokenizers = [pipe.tokenizer] + ([pipe.tokenizer_2] if info.family == "sdxl" else [])
    return BaseModel(
        info.family, tokenizers, encoders, pipe.unet, pipe.vae, pipe.scheduler, resolved.spec
    )


def check_consistency(model: BaseModel) -> None:
    """Check the parts fit together (text widths vs. UNet cross-attention, latent channels).

    Raises:
        SamefaceError: the components do not belong to one model.
    """
    widths = [te.config.hidden_size for te in model.text_encoders]
    cross = model.unet.config.cross_attention_dim
    if sum(widths) != cross:
        raise SamefaceError(
            f"{model.source}: text encoder width(s) {widths} do not match the UNet's "
            f"cross_attention_dim {cross}."
        )
    if model.vae.config.latent_channels != model.unet.config.in_channels:
        raise SamefaceError(
            f"{model.source}: VAE latent channels {model.vae.config.latent_channels} != UNet "
            f"input channels {model.unet.config.in_channels}."
        )


def load_base_model(
    spec: str | os.PathLike[str],
    *,
    dtype: Any = None,
    device: Any = "cpu",
    cache_dir: str | os.PathLike[str] | None = None,
    local_files_only: bool | None = None,
    revision: str | None = None,
    variant: str | None = None,
    config: str | os.PathLike[str] | None = None,
    original_config: str | os.PathLike[str] | None = None,
    tokenizer_cache_dir: str | os.PathLike[str] | None = None,
) -> BaseModel:
    """Load a SD1.x / SD2.x / SDXL base model from local files (never downloads by default).

    Args:
        spec: a diffusers folder, a single-file `.safetensors` checkpoint, or a hub id looked
            up in the Hugging Face cache (see `resolve_model_source`).
        dtype: torch dtype to load weights in (default: as stored; float32 when the
            stored modules differ, as fp16 files load half-upcast).
        device: where to put the modules.
        cache_dir: Hugging Face hub cache folder (default from `HF_HUB_CACHE` / `HF_HOME`).
        local_files_only: `False` allows downloading a hub id's missing files (unless
            `HF_HUB_OFFLINE` is set); default never downloads.
        revision: hub branch, tag or commit for hub ids.
        variant: weight variant such as `"fp16"` for diffusers folders / hub ids.
        config: single files only: the diffusers configs to lay the checkpoint out with, as a
            local folder or a hub id in the cache; `"builtin"` uses sameface's copy of the real
            configs (`sameface.models.configs`); default: the family's base repo in the cache.
        original_config: single files only: a local original (LDM) YAML config for the UNet
            and VAE, passed to diffusers' `from_single_file`.
        tokenizer_cache_dir: folder for the offline-built CLIP tokenizer files.

    Raises:
        ModelNotFoundError: files are missing (the message says which and how to get them).
        SamefaceError: unsupported or inconsistent model.
    """
    resolved = resolve_model_source(
        spec,
        cache_dir=cache_dir,
        local_files_only=local_files_only,
        revision=revision,
        variant=variant,
    )
    if resolved.is_single_file:
        from sameface.tensorfile import check_header

        check_header(resolved.path, ModelError)  # before anything parses it
    info = detect_family(resolved)
    if resolved.is_single_file:
        model = _load_single_file(
            resolved,
            info,
            dtype=dtype,
            config=config,
            original_config=original_config,
            cache_dir=cache_dir,
            local_files_only=local_files_only,
            tokenizer_cache_dir=tokenizer_cache_dir,
        )
        _check_materialised(model)
    else:
        model = _load_diffusers_folder(resolved, info, dtype, tokenizer_cache_dir)
    if dtype is None and len({_dtype(m) for m in model.modules().values()}) > 1:
        # e.g. fp16 files: diffusers upcasts its modules to float32, transformers does not.
        import torch

        model.to(dtype=torch.float32)
    check_consistency(model)
    return model.to(device=device)


def _dtype(module: Any) -> Any:
    return next(module.parameters()).dtype


def _check_materialised(model: BaseModel) -> None:
    # With accelerate installed, diffusers builds single-file components on the meta device
    # and fills them from the checkpoint; a key it could not map stays on "meta".
    for name, mod in model.modules().items():
        for pname, p in mod.named_parameters():
            if p.device.type == "meta":
                raise SamefaceError(
                    f"{model.source}: {name}.{pname} was not found in the checkpoint (the "
                    "file's layout does not match the configs it was loaded with)."
                )
