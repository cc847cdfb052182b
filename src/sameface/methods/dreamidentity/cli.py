"""`sameface data self-augment`: DreamIdentity's self-augmented editability data (`augment.py`).

Added to `sameface data` through `METHOD.data_commands`; imports nothing heavy until it runs.
"""

from __future__ import annotations

DEFAULT_CLIP = "openai/clip-vit-large-patch14"


def cmd_self_augment(args) -> int:
    from ...cli.common import process_device, recognizer_kwargs
    from ...data.celebs.bank import CelebrityBank
    from ...faces import FaceAnalyzer
    from ...locks import FolderLock
    from ...models import load_base_model
    from ...models.clip import ClipScorer, tiny_clip
    from ...training.distributed import distributed_context
    from .augment import EDIT_TEMPLATES, FACE_TEMPLATE, self_augment

    ctx = distributed_context()
    _lock = FolderLock(args.out, "sameface data self-augment").acquire() if ctx.is_main else None
    templates = EDIT_TEMPLATES
    if args.templates:
        from pathlib import Path

        from ...errors import SamefaceError

        try:
            text = Path(args.templates).read_text()
        except OSError as e:
            raise SamefaceError(f"--templates {args.templates}: cannot read ({e})") from None
        templates = tuple(t.strip() for t in text.splitlines() if t.strip())
    names = CelebrityBank.load(args.bank).names
    if args.max_names:
        names = names[: args.max_names]
    device, dtype = process_device(args, ctx)
    base = load_base_model(args.base, device=device, dtype=dtype)
    analyzer = FaceAnalyzer(
        args.recognizer,
        face_policy=args.face_policy,
        min_face_size=args.min_face_size,
        recognizer_kwargs=recognizer_kwargs(args),
    )
    clip_spec = args.clip or DEFAULT_CLIP
    clip = tiny_clip() if clip_spec == "tiny-random" else ClipScorer.load(clip_spec, device=device)
    summary = self_augment(
        base,
        names,
        args.out,
        analyzer=analyzer,
        clip=clip,
        templates=templates,
        face_template=args.face_template or FACE_TEMPLATE,
        keep=args.keep,
        num_inference_steps=args.steps,
        guidance_scale=args.guidance_scale,
        seed=args.seed,
        context=ctx,
    )
    if ctx.is_main:
        print(
            f"kept {summary['kept']} of {summary['candidates']} triplets from "
            f"{summary['names_used']} of {summary['names']} names (score >= "
            f"{summary['kept_min_score']:.3f}); {len(summary['names_skipped'])} names gave no face; "
            f"summary in {args.out}/augment.json"
        )
    return 0


def add_parser(pdata, common) -> None:
    """Add `data self-augment` to the `data` sub-commands."""
    from ...cli.common import add_device_options, add_face_options
    from .augment import KEEP

    p = pdata.add_parser(
        "self-augment",
        parents=[common],
        help="DreamIdentity's self-augmented editability triplets from a celebrity bank",
        description="For every name of the bank, draw '{name} face' and edited images with the base "
        "model, score each (face, edit prompt, edited image) by ID similarity + CLIP score, keep the "
        "top quarter (train with `sameface train dreamidentity --augmented DIR`). Resumable per "
        "name; several processes with `accelerate launch -m sameface.cli data self-augment ...`.",
    )
    p.add_argument("--base", required=True, metavar="MODEL", help="the base model that draws")
    p.add_argument(
        "--bank",
        required=True,
        metavar="BANK",
        help="celebrity bank folder (`sameface celebs build`)",
    )
    p.add_argument("--out", required=True, metavar="DIR", help="output folder")
    p.add_argument(
        "--templates", metavar="FILE", help="edit prompts, one per line, each with {name}"
    )
    p.add_argument("--face-template", help="prompt of the face image (default '{name} face')")
    p.add_argument("--keep", type=float, default=KEEP, help=f"share kept (default {KEEP})")
    p.add_argument("--max-names", type=int, help="use only the bank's first N names")
    p.add_argument("--steps", type=int, default=30, help="sampling steps (default 30)")
    p.add_argument("--guidance-scale", type=float, help="CFG scale (default: diffusers')")
    p.add_argument("--seed", type=int, default=0, help="seed of the images (default 0)")
    p.add_argument(
        "--clip",
        metavar="MODEL",
        help=f"CLIP for the CLIP score (default {DEFAULT_CLIP}, local only; 'tiny-random' for tests)",
    )
    add_device_options(p)
    add_face_options(p, policy_flag="--face-policy")
    p.set_defaults(func=cmd_self_augment)
