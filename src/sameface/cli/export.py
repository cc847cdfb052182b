"""`sameface export`: a personalised identity as the files A1111 and ComfyUI load."""

from __future__ import annotations


def cmd_export(args) -> int:
    from ..interop import export_artifact

    done = export_artifact(args.identity, args.out, name=args.name, overwrite=args.force)
    for path in [*done.embeddings, *done.loras]:
        print(path)
    print(done.usage())
    return 0


def add_parsers(sub, common) -> None:
    p = sub.add_parser(
        "export",
        parents=[common],
        help="write a personalised identity as AUTOMATIC1111 / ComfyUI embedding (and LoRA) files",
        description="Write the learned words of a personalised identity (textual inversion, "
        "DreamIdentity, MagiCapture), and MagiCapture's LoRA, as the files A1111 and ComfyUI "
        "load: OUT/embeddings/NAME.safetensors (+ OUT/loras/NAME.safetensors). Both tools call "
        "an embedding by its file name, so NAME is the word in their prompts. Nothing of the "
        "identity's photos or face embeddings is written.",
    )
    p.add_argument("identity", metavar="DIR", help="the `sameface personalize` output folder")
    p.add_argument("--out", required=True, metavar="DIR", help="where to write the files")
    p.add_argument(
        "--name",
        help="the word in the tools' prompts and the file name (default: the folder's name)",
    )
    p.add_argument("--force", action="store_true", help="replace files of the same names")
    p.set_defaults(func=cmd_export)
