"""`sameface celebs build|nearest|show`: the celebrity bank behind textual inversion's id/rand2 inits."""

from __future__ import annotations

import json

from ..errors import SamefaceError
from .common import add_device_options, add_face_options, process_device, recognizer_kwargs


def cmd_celebs_build(args) -> int:
    from ..data.celebs import (
        CelebrityBank,
        build_bank_from_model,
        build_bank_from_photos,
        distributed_context,
        load_celebrity_names,
    )
    from ..faces import FaceAnalyzer

    if args.world is not None:
        return _build_in_world(args)
    analyzer = FaceAnalyzer(
        args.recognizer,
        face_policy=args.face_policy,
        min_face_size=args.min_face_size,
        recognizer_kwargs=recognizer_kwargs(args),
    )
    if args.photos:
        bank = build_bank_from_photos(
            args.photos,
            analyzer,
            min_faces=args.min_faces or 1,
            out=args.out,
            overwrite=args.force,
            progress=True,
        )
        print(bank.summary())
        print(f"saved to {args.out}")
        return 0

    from ..models import load_base_model

    # Under `accelerate launch` each process takes every Nth name and the main one merges.
    ctx = distributed_context()
    device, dtype = process_device(args, ctx)
    base = load_base_model(args.base, device=device, dtype=dtype)
    reference = CelebrityBank.load(args.reference) if args.reference else None
    bank = build_bank_from_model(
        base,
        analyzer,
        load_celebrity_names(args.names)[: args.max_names],
        args.out,
        images_per_name=args.images_per_name,
        num_inference_steps=args.steps,
        guidance_scale=args.guidance,
        height=args.size,
        width=args.size,
        threshold=args.threshold,
        min_faces=args.min_faces or 2,
        reference=reference,
        seed=args.seed,
        save_images=args.save_images,
        progress=True,
        process_index=ctx.process_index,
        num_processes=ctx.num_processes,
        wait_fn=ctx.wait,
    )
    if bank is not None:  # None on the other processes
        print(bank.summary())
        print(f"saved to {args.out}")
    return 0


def _build_in_world(args) -> int:
    """`celebs build --world`: the bank of the world's known people, from its base model,
    recognised by the recogniser its identities are built with."""
    from ..data.celebs import build_bank_from_model, load_celebrity_names
    from ..world.world import World

    if args.recognizer != "sface" or args.insightface_model:
        raise ValueError("--world builds with the world's own recogniser; drop --recognizer")
    world = World.load(args.world or None)
    known, _ = world.people
    names = load_celebrity_names(args.names) if args.names else list(known.names)
    names = names[: args.max_names]
    bank = build_bank_from_model(
        world.base,
        world.analyzer(),
        names,
        args.out,
        images_per_name=args.images_per_name,
        num_inference_steps=args.steps,
        guidance_scale=args.guidance,
        height=args.size or world.image_size,
        width=args.size or world.image_size,
        threshold=args.threshold,
        min_faces=args.min_faces or 2,
        # The world's portraits are plain renders; a real model's negatives mean nothing here.
        prompt_template=WORLD_PROMPT,
        negative_prompt=None,
        seed=args.seed,
        save_images=args.save_images,
        progress=True,
    )
    if bank is not None:
        print(bank.summary())
        print(f"saved to {args.out}")
    return 0


WORLD_PROMPT = "a photo of {name}"
"""The world's captions name a known person this way (`sameface.world.captions`)."""


def cmd_celebs_nearest(args) -> int:
    from ..data.celebs import CelebrityBank
    from ..identity import Identity

    bank = CelebrityBank.load(args.bank)
    if len(bank) == 0:
        raise SamefaceError(f"{args.bank}: the celebrity bank is empty (every name was rejected)")
    ranked = bank.nearest(Identity.load(args.identity), k=args.k)
    if args.json:
        print(json.dumps([{"name": n, "similarity": round(s, 4)} for n, s in ranked], indent=2))
    else:
        for name, sim in ranked:
            print(f"{sim:6.3f}  {name}")
    return 0


def cmd_celebs_show(args) -> int:
    from ..data.celebs import CelebrityBank

    bank = CelebrityBank.load(args.folder)
    if args.json:
        print(json.dumps(bank.meta | {"names": bank.names}, indent=2, ensure_ascii=False))
    else:
        print(bank.summary(limit=args.limit))
        for name, why in list(bank.meta.get("rejected", {}).items())[: args.limit]:
            print(f"  rejected {name}: {why}")
    return 0


def add_parsers(sub, common) -> None:
    """Add `celebs` to the sub-command parser."""
    pcel = sub.add_parser(
        "celebs", help="build or query a celebrity bank (textual inversion's id/rand2 inits)"
    ).add_subparsers(dest="action", metavar="ACTION")
    pb = pcel.add_parser(
        "build",
        parents=[common],
        help="generate each celebrity with a base model (or embed real photos) and keep the "
        "names whose faces the recogniser confirms",
        description="Resumable: rerun the same command after an interruption. Sharded: run it "
        "under `accelerate launch --multi_gpu --num_processes N -m sameface.cli celebs build ...`.",
    )
    src = pb.add_mutually_exclusive_group(required=True)
    src.add_argument(
        "--base", metavar="MODEL", help="base model: diffusers folder, .safetensors or hub id"
    )
    src.add_argument(
        "--photos", metavar="DIR", help="one sub-folder of photos per person (Barack_Obama/...)"
    )
    src.add_argument(
        "--world",
        nargs="?",
        const="",
        metavar="DIR",
        help="the miniature world's known people, generated by its base model and recognised by "
        "its recogniser (DIR, else $SAMEFACE_WORLD, else the shipped world; its bank lives in "
        "WORLD/celebs, where `bench --world` finds it)",
    )
    pb.add_argument(
        "--out", required=True, metavar="DIR", help="bank folder (also holds parts/ while building)"
    )
    pb.add_argument(
        "--names",
        metavar="FILE",
        help="names file, one per line (default: the ~300 shipped; with --world its known people)",
    )
    pb.add_argument(
        "--max-names", type=int, metavar="N", help="only the first N names (default: all)"
    )
    pb.add_argument(
        "--images-per-name", type=int, default=4, metavar="N", help="images per name (default 4)"
    )
    pb.add_argument("--steps", type=int, default=25, metavar="N", help="DDIM steps (default 25)")
    pb.add_argument(
        "--guidance", type=float, default=7.5, metavar="S", help="guidance scale (default 7.5)"
    )
    pb.add_argument(
        "--size", type=int, metavar="PX", help="image size (default: the model's native one)"
    )
    pb.add_argument(
        "--threshold",
        type=float,
        metavar="COS",
        help="minimum agreement of a name's faces (default: the recogniser's same-person threshold)",
    )
    pb.add_argument(
        "--min-faces",
        type=int,
        metavar="N",
        help="faces needed per name (default 2; 1 with --photos)",
    )
    pb.add_argument(
        "--reference",
        metavar="DIR",
        help="a bank built with --photos that generated faces must match",
    )
    pb.add_argument("--seed", type=int, default=0, help="base seed (default 0)")
    pb.add_argument(
        "--save-images", action="store_true", help="keep generated images under DIR/images/"
    )
    add_device_options(pb)
    pb.add_argument(
        "--force", action="store_true", help="--photos: replace a bank already saved in DIR"
    )
    add_face_options(pb)
    pb.set_defaults(func=cmd_celebs_build)
    pn = pcel.add_parser(
        "nearest", parents=[common], help="the celebrities whose faces are most like an identity's"
    )
    pn.add_argument("--bank", required=True, metavar="DIR", help="celebrity bank folder")
    pn.add_argument("--identity", required=True, metavar="DIR", help="identity folder")
    pn.add_argument("-k", type=int, default=5, help="how many to list (default 5)")
    pn.add_argument("--json", action="store_true", help="print JSON")
    pn.set_defaults(func=cmd_celebs_nearest)
    pshow = pcel.add_parser("show", parents=[common], help="print a celebrity bank's summary")
    pshow.add_argument("folder", metavar="DIR")
    pshow.add_argument("--limit", type=int, default=20, help="names to list (default 20)")
    pshow.add_argument("--json", action="store_true", help="print the metadata as JSON")
    pshow.set_defaults(func=cmd_celebs_show)
