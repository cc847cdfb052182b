"""`sameface ui`: the web UI and its HTTP API (docs/ui.md)."""

from __future__ import annotations


def cmd_ui(args) -> int:
    from ..ui import serve_ui
    from ..ui.serve import ServeOptions
    from ..ui.workspace import Limits
    from .common import pick_device

    device, dtype = pick_device(args.device, args.dtype) if args.base else ("cpu", None)
    options = ServeOptions(
        host=args.host,
        port=args.port,
        allow_remote=args.allow_remote,
        auth_file=args.auth_file,
        queue_size=args.queue_size,
        share=args.share,
    )
    limits = Limits(max_photos=args.max_photos, max_upload_mb=args.max_upload_mb)
    print(f"sameface ui: data in {args.data_dir}; Ctrl-C stops the server")
    serve_ui(
        args.data_dir,
        world=args.world,
        base=args.base,
        adapters=args.adapters,
        reports=args.reports,
        options=options,
        limits=limits,
        device=device,
        dtype=dtype,
    )
    return 0


def add_parsers(sub, common) -> None:
    from .common import add_device_options
    from .methods import _positive

    p = sub.add_parser(
        "ui",
        parents=[common],
        help="the web UI (and its HTTP API) in a browser",
        description="Serve the web UI: photos -> identity, personalise with any method, generate, "
        "manage identities, open bench reports. Opens on the shipped miniature world (no weights "
        "needed); --base serves a base model of yours. Needs the `ui` extra (gradio).",
    )
    what = p.add_mutually_exclusive_group()
    what.add_argument("--world", metavar="DIR", help="a world folder (default: the shipped one)")
    what.add_argument(
        "--base",
        metavar="MODEL",
        help="a base model instead of the world: diffusers folder, .safetensors or cached hub id",
    )
    p.add_argument(
        "--adapters",
        metavar="DIR",
        help="with --base: a folder of trained encoder/adapter folders (`sameface train` outputs)",
    )
    p.add_argument(
        "--data-dir",
        default="sameface-ui",
        metavar="DIR",
        help="where sessions keep identities, artifacts and images (default ./sameface-ui)",
    )
    p.add_argument(
        "--reports",
        nargs="+",
        metavar="DIR",
        help="folders of bench/demo runs whose report.html the UI can open",
    )
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=None, help="port (default: 7860 or the next free)")
    p.add_argument(
        "--allow-remote",
        action="store_true",
        help="allow a --host other than loopback (the UI is then reachable from other machines)",
    )
    p.add_argument("--auth-file", metavar="FILE", help="basic auth: a file of user:password lines")
    p.add_argument(
        "--queue-size",
        type=_positive,
        default=32,
        help="model requests that may wait their turn (one runs at a time); more are refused "
        "with a message (default 32)",
    )
    p.add_argument(
        "--max-photos", type=_positive, default=8, help="photos per identity (default 8)"
    )
    p.add_argument(
        "--max-upload-mb", type=float, default=20.0, help="size of one upload (default 20 MB)"
    )
    p.add_argument(
        "--share",
        action="store_true",
        help="also open a public gradio share link (off by default; needs the internet and --allow-remote)",
    )
    add_device_options(p)
    p.set_defaults(func=cmd_ui)
