"""`sameface data prepare`: turn a folder of photos into training samples for encoder methods."""

from __future__ import annotations

from .common import add_face_options, recognizer_kwargs


def cmd_data_prepare(args) -> int:
    from ..data.prepare import PrepareSettings, prepare_face_dataset
    from ..faces import FaceAnalyzer

    settings = PrepareSettings(
        resolution=args.resolution,
        expand=args.expand,
        min_face_size=args.min_face_size,
        default_caption=args.default_caption,
    )
    analyzer = FaceAnalyzer(
        args.recognizer, min_face_size=args.min_face_size, recognizer_kwargs=recognizer_kwargs(args)
    )
    summary = prepare_face_dataset(args.src, args.out, analyzer, settings)
    run = summary["this_run"]
    dropped = ", ".join(f"{n} {why}" for why, n in sorted(run.items()) if why != "kept") or "none"
    print(
        f"kept {run.get('kept', 0)} image(s) this run (dropped: {dropped}); {summary['samples']} sample(s) in {args.out}"
    )
    return 0


def add_parsers(sub, common) -> None:
    """Add `data prepare` to the sub-command parser."""
    pdata = sub.add_parser(
        "data", help="prepare training data for the encoder methods"
    ).add_subparsers(dest="action", metavar="ACTION")
    p = pdata.add_parser(
        "prepare",
        parents=[common],
        help="filter, crop, mask, embed and caption a folder of photos (FeedFace's recipe)",
        description="Keeps images with exactly one usable face; writes square crops, aligned faces, masks, "
        "embeddings and captions (from <image>.txt or captions.jsonl) to DIR. Resumable.",
    )
    p.add_argument("src", metavar="SRC", help="folder of images (searched recursively)")
    p.add_argument("--out", required=True, metavar="DIR", help="dataset folder")
    p.add_argument(
        "--resolution", type=int, default=512, help="training crop side in pixels (default 512)"
    )
    p.add_argument(
        "--expand",
        type=float,
        default=1.1,
        help="face-box expansion before squaring (FeedFace: 1.1)",
    )
    p.add_argument(
        "--default-caption", default="a photo of a person", help="caption when none is given"
    )
    add_face_options(p, policy_flag="--face-policy")
    p.set_defaults(func=cmd_data_prepare, min_face_size=64.0)
    _add_method_commands(pdata, common)


def _add_method_commands(pdata, common) -> None:
    """The `data` sub-commands the registered methods add (`MethodSpec.data_commands`)."""
    import importlib

    from ..methods import available_methods, get_method

    for n in available_methods():
        for target in get_method(n).data_commands.values():
            module, _, attr = target.partition(":")
            getattr(importlib.import_module(module), attr)(pdata, common)
