"""`sameface personalize` and `sameface generate`: any registered method, one interface."""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

from ..errors import SamefaceError
from ..locks import FolderLock
from .common import (
    add_device_options,
    add_face_options,
    ensure_folder,
    expand_images,
    pick_device,
    recognizer_kwargs,
)


def _registry() -> dict:
    """Registered method name -> its `MethodSpec` (cheap: no torch is imported)."""
    from ..methods import available_methods, get_method

    return {name: get_method(name) for name in available_methods()}


def method_config(method, args):
    """The chosen method's config from `--config`, `--set` and the config flags."""
    from .config_flags import config_from_args

    return config_from_args(method.config_cls, method.name, args)


def cmd_personalize(args) -> int:
    from ..faces import FaceAnalyzer
    from ..identity import Identity
    from ..methods import get_method
    from ..models import load_base_model

    method = get_method(args.method)
    config = method_config(method, args)
    device, dtype = pick_device(args.device, args.dtype, training=True)
    out = ensure_folder(args.out)
    _lock = FolderLock(out, "sameface personalize").acquire()  # one run per --out
    if (out / "artifact.json").exists() and not args.force:
        raise SamefaceError(f"{out} already holds a finished artifact; pass --force to train again")
    # Resolve the base model's files and family now (cheap: no weights loaded), so a wrong
    # --base fails before the photos are analysed, and crops match the model's resolution.
    from ..models import detect_family, resolve_model_source

    native = detect_family(resolve_model_source(args.base)).resolution
    if args.identity:
        identity = Identity.load(args.identity)
    else:
        analyzer = FaceAnalyzer(
            args.recognizer,
            face_policy=args.face_policy,
            min_face_size=args.min_face_size,
            recognizer_kwargs=recognizer_kwargs(args),
        )
        identity = Identity.from_images(
            expand_images(args.faces),
            analyzer=analyzer,
            square_size=max(512, native),
            progress=True,
        )
    print(identity.summary())
    bank = None
    if getattr(config, "celeb_bank", None):
        from ..data.celebs import CelebrityBank

        bank = CelebrityBank.load(config.celeb_bank)
    base = load_base_model(args.base, device=device, dtype=dtype)
    # Record local paths absolutely, so `generate` works from any folder.
    spec = str(Path(args.base).resolve()) if Path(args.base).exists() else args.base
    start = time.perf_counter()
    method.personalize(
        identity, base, config, out, base_spec=spec, bank=bank, resume=not args.no_resume
    )
    print(f"{method.name}: personalised in {time.perf_counter() - start:.0f} s; artifact in {out}")
    print(
        f'next: sameface generate --identity {out} "a photo of {getattr(config, "placeholder", "<id>")} as an astronaut"'
    )
    return 0


def _positive(text: str) -> int:
    """argparse type: a whole number >= 1."""
    import argparse

    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def _slug(text: str, n: int = 40) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")[:n] or "image"


def cmd_generate(args) -> int:
    import torch

    from ..imageio import save_image_atomic
    from ..limits import MAX_IMAGES
    from ..methods import artifact_method, get_method
    from ..models import load_base_model

    if not 1 <= args.num_images <= MAX_IMAGES:  # refused before any model is loaded
        raise ValueError(f"-n must be in 1..{MAX_IMAGES}, got {args.num_images}")
    out = ensure_folder(args.out)
    device, dtype = pick_device(args.device, args.dtype)
    base = None
    if args.base:
        base = load_base_model(args.base, device=device, dtype=dtype)
    if args.faces:  # encoder methods: encode the photos now (cached under OUT/identity-artifact)
        args.identity = _encode_faces(args, out, base, device, dtype)
    elif not args.identity:
        raise ValueError(
            "give --identity DIR (a personalised identity), or --method M --adapter DIR --face IMAGE..."
        )
    name = artifact_method(args.identity)
    if name is None:
        raise SamefaceError(
            f"{args.identity}: not a personalised identity (no artifact.json); run `sameface personalize` first"
        )
    method = get_method(name)
    extra = _generate_options(method, args)
    if args.steps is not None:
        extra["num_inference_steps"] = args.steps
    with method.pipeline_cls.from_artifact(args.identity, base, device=device, dtype=dtype) as pipe:
        records = []
        for prompt in args.prompts:
            for i in range(args.num_images):
                seed = args.seed + i
                result = pipe(
                    prompt,
                    negative_prompt=args.negative_prompt,
                    guidance_scale=args.guidance_scale,
                    **extra,
                    generator=torch.Generator(device="cpu").manual_seed(seed),
                    height=args.height,
                    width=args.width,
                    output_type="np",
                )
                image = (result.images[0] * 255).round().clip(0, 255).astype("uint8")
                path = save_image_atomic(image, out / f"{_slug(prompt)}_{seed}.png")
                records.append({"file": path.name, "prompt": prompt, "seed": seed})
                print(path)
    log = {
        "identity": str(args.identity),
        "method": name,
        "negative_prompt": args.negative_prompt,
        "num_inference_steps": args.steps,
        "guidance_scale": args.guidance_scale,
        "images": records,
    }
    (out / "generation.json").write_text(json.dumps(log, indent=2) + "\n")
    return 0


def _generate_options(method, args) -> dict:
    """The method's extra call arguments given on the command line (refused for other methods)."""
    from ..errors import UsageError

    owners: dict[str, list[str]] = {}
    for name, spec in _registry().items():
        for arg in spec.generate_options:
            owners.setdefault(arg, []).append(name)
    out = {}
    for arg, names in owners.items():
        value = getattr(args, arg, None)
        if value is None:
            continue
        if arg not in method.generate_options:
            raise UsageError(
                f"--{arg.replace('_', '-')} is an option of {' and '.join(names)}, "
                f"not of {method.name}"
            )
        out[arg] = value
    return out


def _encode_faces(args, out: Path, base, device, dtype) -> Path:
    """Personalise an encoder method from photos into OUT/identity-artifact; returns that folder."""
    from ..faces import FaceAnalyzer
    from ..identity import Identity
    from ..methods import get_method
    from ..models import load_base_model

    if not args.method or not args.adapter:
        raise ValueError(
            "--face needs --method (an encoder method, e.g. pulid) and --adapter DIR (its trained weights)"
        )
    method = get_method(args.method)
    if method.kind != "encoder":
        raise ValueError(
            f"{method.name} is trained per identity: run `sameface personalize` first, then --identity"
        )
    analyzer = FaceAnalyzer(args.recognizer, recognizer_kwargs=recognizer_kwargs(args))
    identity = Identity.from_images(expand_images(args.faces), analyzer=analyzer, progress=True)
    if base is None:
        from ..methods.trained import trained_base

        base = load_base_model(trained_base(method, args.adapter), device=device, dtype=dtype)
    folder = out / "identity-artifact"
    config = method.config_cls(adapter=str(Path(args.adapter).resolve()))
    method.personalize(identity, base, config, folder, base_spec=base.source)
    return folder


def _add_generate_options(parser, registry) -> None:
    """One flag per extra pipeline argument a method declares (`MethodSpec.generate_options`),
    typed and documented by the config field it names."""
    from .config_flags import add_flag, flag_specs, merge_specs

    group = parser.add_argument_group("method options")
    specs: dict[str, dict[str, tuple]] = {}
    for name, spec in registry.items():
        for arg, field in spec.generate_options.items():
            specs.setdefault(arg, {})[name] = flag_specs(spec.config_cls)[field]
    for arg, by_method in specs.items():  # one flag for several methods: each its own default
        add_flag(group, arg, merge_specs(by_method), list(by_method))


def add_parsers(sub, common) -> None:
    """Add `personalize` and `generate` to the sub-command parser."""
    import argparse

    from ..methods import available_methods

    registry = _registry()
    p = sub.add_parser(
        "personalize",
        parents=[common],
        help="teach a base model a person from their photos",
        description="Build the identity from photos (or load one) and run the method's personalisation; "
        "optimisation methods train here (resumable: run the same command again after an interruption).",
    )
    p.add_argument(
        "--method",
        default="textual-inversion",
        choices=available_methods(),
        help="method (default: textual-inversion)",
    )
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument(
        "--face",
        dest="faces",
        nargs="+",
        metavar="IMAGE",
        help="photos of the person (files or folders)",
    )
    src.add_argument(
        "--identity", metavar="DIR", help="an identity saved by `sameface identity create`"
    )
    p.add_argument(
        "--base",
        required=True,
        metavar="MODEL",
        help="diffusers folder, .safetensors file, or hub id in the HF cache",
    )
    p.add_argument("--out", required=True, metavar="DIR", help="artifact folder")
    p.add_argument("--config", metavar="FILE", help="YAML file of method settings")
    p.add_argument(
        "--set",
        action="append",
        metavar="KEY=VALUE",
        help="any method setting, e.g. --set num_tokens=3",
    )
    p.add_argument(
        "--no-resume", action="store_true", help="ignore checkpoints in --out and start over"
    )
    p.add_argument(
        "--force", action="store_true", help="train again even if --out holds a finished artifact"
    )
    add_device_options(p)
    add_face_options(p, policy_flag="--face-policy")
    from .config_flags import add_config_flags

    add_config_flags(p, {n: m.config_cls for n, m in registry.items()})  # last: see its doc
    p.set_defaults(func=cmd_personalize)

    g = sub.add_parser(
        "generate",
        parents=[common],
        help="generate images of a personalised identity",
        description='Generate images from prompts that name the person with the placeholder, e.g. "a photo of <id> as a chef".',
    )
    g.add_argument("prompts", nargs="+", metavar="PROMPT", help="prompts naming the person as <id>")
    g.add_argument("--identity", metavar="DIR", help="the `personalize` output folder")
    g.add_argument(
        "--face",
        dest="faces",
        nargs="+",
        metavar="IMAGE",
        help="encoder methods: photos of the person (with --method and --adapter; put the prompts before --face)",
    )
    g.add_argument("--method", help="encoder method for --face, e.g. pulid")
    g.add_argument(
        "--adapter",
        metavar="DIR",
        help="encoder methods: the trained weights (`sameface train`)",
    )
    _add_generate_options(g, registry)
    g.add_argument(
        "--recognizer",
        default="sface",
        choices=["sface", "dlib", "insightface"],
        help=argparse.SUPPRESS,
    )
    g.add_argument("--out", required=True, metavar="DIR", help="where to write the images")
    g.add_argument(
        "-n",
        "--num-images",
        type=_positive,
        default=4,
        help="images per prompt (default 4; seeds SEED, SEED+1, ...)",
    )
    g.add_argument("--negative-prompt", default=None, help="what to steer away from")
    g.add_argument(
        "--steps",
        type=_positive,
        help="sampling steps (default: the method's; textual inversion 50 DDIM, PuLID 30)",
    )
    g.add_argument(
        "--guidance-scale",
        type=float,
        default=None,
        help="classifier-free guidance (default 7.5; SDXL 5.0)",
    )
    g.add_argument("--seed", type=int, default=0, help="first seed (default 0)")
    g.add_argument("--height", type=int, default=None, help="image height (default: the model's)")
    g.add_argument("--width", type=int, default=None, help="image width (default: the model's)")
    g.add_argument(
        "--base",
        metavar="MODEL",
        help="load this base model instead of the one recorded in the artifact",
    )
    add_device_options(g)
    g.set_defaults(func=cmd_generate)
