"""`sameface export` (a personalised identity as the files A1111 and ComfyUI load) and
`sameface import` (released weights as sameface folders)."""

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

    imp = sub.add_parser(
        "import",
        parents=[common],
        help="released weights as a sameface folder (PuLID v1.1, IP-Adapter-FaceID)",
        description="Convert released weights into a sameface trained folder, every tensor "
        "mapped once and checked. `import pulid FILE`: PuLID v1.1 for SDXL "
        "(pulid_v1.1.safetensors) -> a PuLID folder for `--adapter` (its conditions, EVA02-CLIP "
        "and the raw antelopev2 embedding, are recorded in pulid.json; see docs/interop.md). "
        "`import ip-adapter-faceid FILE`: ip-adapter-faceid_sd15.bin / _sdxl.bin -> an "
        "`ip-adapter-faceid` folder for `--adapter` (read with torch.load(weights_only=True): "
        "tensors only; its LoRA included).",
    )
    what = imp.add_subparsers(dest="what", metavar="WHAT", required=True)
    pulid = what.add_parser("pulid", parents=[common], help="pulid_v1.1.safetensors (SDXL)")
    pulid.add_argument("file", metavar="FILE", help="the released pulid_v1.1.safetensors")
    pulid.add_argument("--out", required=True, metavar="DIR", help="the PuLID folder to write")
    pulid.add_argument(
        "--base",
        default=None,
        help="the SDXL base model the folder records (default: SDXL base 1.0)",
    )
    pulid.add_argument("--force", action="store_true", help="replace a PuLID folder at --out")
    pulid.set_defaults(func=cmd_import_pulid)

    faceid = what.add_parser(
        "ip-adapter-faceid",
        parents=[common],
        help="ip-adapter-faceid_sd15.bin / _sdxl.bin (SD1.5 / SDXL)",
    )
    faceid.add_argument("file", metavar="FILE", help="the released .bin (or .safetensors)")
    faceid.add_argument("--out", required=True, metavar="DIR", help="the folder to write")
    faceid.add_argument(
        "--base",
        default=None,
        help="the base model the folder records (default: SD1.5 or SDXL base 1.0, by the "
        "file's token width)",
    )
    faceid.add_argument("--force", action="store_true", help="replace a folder at --out")
    faceid.set_defaults(func=cmd_import_faceid)


def cmd_import_pulid(args) -> int:
    from ..interop.pulid import SDXL_BASE, import_pulid

    folder = import_pulid(args.file, args.out, base=args.base or SDXL_BASE, overwrite=args.force)
    print(f"PuLID v1.1 imported into {folder}")
    return 0


def cmd_import_faceid(args) -> int:
    from ..interop.ip_adapter_faceid import import_ip_adapter_faceid

    folder = import_ip_adapter_faceid(args.file, args.out, base=args.base, overwrite=args.force)
    print(f"IP-Adapter-FaceID imported into {folder}")
    print(
        "its embedding is insightface's buffalo_l: build identities with --recognizer "
        "insightface --insightface-model DIR/buffalo_l, then `sameface personalize --method "
        f"ip-adapter-faceid --adapter {folder} ...`"
    )
    return 0
