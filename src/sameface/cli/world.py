"""`sameface world build|check|show` and one `sameface world <method>` per world recipe (e.g. pulid): the proving-ground world."""

from __future__ import annotations

import json


def cmd_world_build(args) -> int:
    from ..world.build import BuildConfig, build_world

    config = BuildConfig.tiny() if args.tiny else BuildConfig()
    if args.seed is not None:
        config.seed = args.seed
    if args.unet_steps is not None:
        config.unet.steps = args.unet_steps
    out = build_world(
        args.out, config, work=args.work, progress=not args.quiet, stages=args.stage or None
    )
    print(f"world written to {out}; quality figures in {out / 'quality.json'}")
    return 0


def cmd_world_check(args) -> int:
    from ..world.build import BuildConfig
    from ..world.quality import measure_world
    from ..world.world import resolve_world

    folder = resolve_world(args.world)
    config = BuildConfig.from_dict(json.loads((folder / "world.json").read_text())["build"])
    report = measure_world(folder, config, progress=not args.quiet, n_people=args.people)
    print(json.dumps(report, indent=1))
    return 0


def cmd_world_show(args) -> int:
    from ..world.world import World

    world = World.load(args.world)
    known, new = world.people
    quality = world.folder / "quality.json"
    print(f"world: {world.folder}")
    print(
        f"  image size {world.image_size}, {len(known.names)} known people, {len(new.names)} new people"
    )
    print(f"  e.g. known: {', '.join(known.names[:5])}")
    print(f"  reference people: {', '.join(list(world.reference_people())[:5])} ...")
    if quality.is_file():
        q = json.loads(quality.read_text())
        k, c = q["known_by_name"], q["context_accuracy"]
        print(
            f"  known by name: ID similarity {k['id_similarity_mean']}, top-1 {k['top1_identification']}"
            f" (chance {k['chance_top1']}), own-person rank percentile"
            f" {k.get('own_rank_percentile_mean', '?')} (chance 0.5);"
            f" context accuracy {c['all_asked_attributes']}"
        )
    return 0


def _run_recipe(recipe):
    def run(args) -> int:
        recipe.run(args)
        return 0

    return run


def add_parsers(sub, common) -> None:
    p = sub.add_parser(
        "world",
        parents=[common],
        help="build, check or describe the miniature proving-ground world",
        description="The proving ground: a procedural world with its own SD-shaped text-to-image "
        "model, CLIP, face recogniser, detector and context classifiers (docs/proving-ground.md).",
    )
    wsub = p.add_subparsers(dest="world_command", metavar="ACTION", required=True)
    b = wsub.add_parser(
        "build",
        parents=[common],
        help="render the world and train all its models (resumable)",
        description="Render the world and train every model in it, with progress bars and "
        "checkpoints; rerun the same command to resume. About 3 h on 2 CPU cores.",
    )
    b.add_argument("--out", required=True, metavar="DIR", help="world folder to write")
    b.add_argument("--work", metavar="DIR", help="scratch folder (default DIR/.build)")
    b.add_argument("--seed", type=int, help="world seed (default 0)")
    b.add_argument("--unet-steps", type=int, help="UNet training steps (default 15000)")
    b.add_argument(
        "--stage",
        action="append",
        metavar="NAME",
        help="run only this stage (repeatable), even if done: people, pool, vae, latents, text, "
        "unet, faces, recognizer, judge, detector, context, clip, references, quality",
    )
    b.add_argument("--tiny", action="store_true", help="a few steps of everything (tests)")
    b.add_argument("--quiet", action="store_true", help="no progress bars")
    b.set_defaults(func=cmd_world_build)
    c = wsub.add_parser("check", parents=[common], help="rerun the world's quality checks")
    c.add_argument("--world", metavar="DIR", help="world folder (default: the shipped world)")
    c.add_argument("--people", type=int, help="known people to check (default: as built)")
    c.add_argument("--quiet", action="store_true", help="no progress bars")
    c.set_defaults(func=cmd_world_check)
    s = wsub.add_parser("show", parents=[common], help="describe a world")
    s.add_argument("--world", metavar="DIR", help="world folder (default: the shipped world)")
    s.set_defaults(func=cmd_world_show)
    from ..methods import world_recipes

    for name, recipe in world_recipes().items():  # `sameface world pulid`, ...
        r = wsub.add_parser(
            name, parents=[common], help=recipe.help, description=recipe.description
        )
        recipe.add_arguments(r)
        r.set_defaults(func=_run_recipe(recipe))
