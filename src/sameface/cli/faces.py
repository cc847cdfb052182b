"""`sameface inspect` and `sameface identity create|show|delete`."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from .. import __version__
from ..errors import SamefaceError
from .common import EXIT_INPUT, add_face_options, ensure_folder, expand_images, recognizer_kwargs


def cmd_inspect(args) -> int:
    """Detect faces, rate them and compare identities across images."""
    from tqdm.auto import tqdm

    from ..faces import FaceAnalyzer, similarity_matrix, square_crop
    from ..imageio import save_image_atomic

    if args.save_crops:
        ensure_folder(args.save_crops)
    analyzer = FaceAnalyzer(
        args.recognizer,
        face_policy=args.face_policy,
        min_face_size=args.min_face_size,
        recognizer_kwargs=recognizer_kwargs(args),
    )
    records, embeddings, failed = [], [], 0
    for i, path in enumerate(
        tqdm(expand_images(args.images), desc="inspect", unit="image", disable=None, leave=False)
    ):
        rec = {
            "path": str(path),
            "width": None,
            "height": None,
            "faces": [],
            "chosen": None,
            "error": None,
        }
        try:
            res = analyzer.analyze(path)
        except SamefaceError as e:
            rec["error"] = str(e)
            print(f"error: {e}", file=sys.stderr)
            failed += 1
            records.append(rec)
            embeddings.append(None)
            continue
        rec.update(
            width=int(res.image.shape[1]),
            height=int(res.image.shape[0]),
            faces=[f.to_dict() for f in res.faces],
            chosen=res.chosen,
            error=res.error,
        )
        if res.error:
            print(f"error: {res.error}", file=sys.stderr)
            failed += 1
        elif args.save_crops:
            stem = f"{i:02d}_{Path(path).stem}"
            out = Path(args.save_crops)
            save_image_atomic(res.aligned, out / f"{stem}_aligned.png")
            square, _ = square_crop(res.image, res.face.bbox, expand=1.1, size=512)
            save_image_atomic(square, out / f"{stem}_square.png")
        records.append(rec)
        embeddings.append(res.embedding)
    sim = similarity_matrix(embeddings)
    rdesc = analyzer.recognizer.describe() | {
        "same_person_threshold": analyzer.recognizer.same_person_threshold
    }
    if args.json:
        doc = {
            "version": __version__,
            "recognizer": rdesc,
            "images": records,
            "similarity": _round(sim),
        }
        print(json.dumps(doc, indent=2))
    else:
        _print_inspect(records, sim, rdesc)
    if args.save_crops and not args.json:
        print(f"crops written to {args.save_crops}")
    return EXIT_INPUT if failed else 0


def _round(m):
    return [[None if v is None else round(v, 4) for v in row] for row in m]


def _print_inspect(records, sim, rdesc) -> None:
    for i, r in enumerate(records):
        size = f"{r['width']}×{r['height']}" if r["width"] else "unreadable"
        print(f"[{i}] {r['path']}  {size}  {len(r['faces'])} face(s)")
        for j, f in enumerate(r["faces"]):
            mark = "*" if j == r["chosen"] else " "
            x0, y0, x1, y1 = (round(v) for v in f["bbox"])
            print(
                f"   {mark}face {j}: box ({x0},{y0})-({x1},{y1})  {f['size']:.0f}px  score {f['score']:.2f}  "
                f"sharpness {f['blur']:.0f}  yaw {f['yaw']:+.0f}° pitch {f['pitch']:+.0f}° roll {f['roll']:+.0f}°"
            )
            for w in f["warnings"]:
                print(f"      ! {w}")
        if r["error"]:
            print(f"    ! {r['error']}")
    if len(records) > 1:
        print(
            f"\nidentity similarity ({rdesc['name']}, cosine; same person above ~{rdesc['same_person_threshold']:.2f}):"
        )
        print("      " + " ".join(f"{f'[{j}]':>6}" for j in range(len(records))))
        for i, row in enumerate(sim):
            cells = " ".join(f"{'  —' if v is None else f'{v:.2f}':>6}" for v in row)
            print(f"{f'[{i}]':>5} {cells}")


def cmd_identity_create(args) -> int:
    from ..faces import FaceAnalyzer
    from ..identity import Identity, check_destination
    from ..locks import FolderLock

    out = check_destination(args.out, overwrite=args.force)  # before the slow part
    # One create per destination; the lock sits beside it, as the folder is swapped in whole.
    _lock = FolderLock(
        out.parent, "sameface identity create", lock_file=f".{out.name}.lock"
    ).acquire()
    analyzer = FaceAnalyzer(
        args.recognizer,
        face_policy=args.face_policy,
        min_face_size=args.min_face_size,
        recognizer_kwargs=recognizer_kwargs(args),
    )
    ident = Identity.from_images(
        expand_images(args.faces),
        analyzer=analyzer,
        mask_method=args.mask,
        drop_outliers=args.drop_outliers,
        progress=True,
    )
    ident.save(args.out, overwrite=args.force)
    print(ident.summary())
    for i in ident.outliers:
        print(f"warning: photo [{i}] may show a different person than the others", file=sys.stderr)
    print(f"saved to {args.out}")
    return 0


def cmd_identity_show(args) -> int:
    from ..identity import Identity

    ident = Identity.load(args.folder)
    if args.json:
        print(json.dumps(ident.meta, indent=2))
    else:
        print(ident.summary())
    return 0


def cmd_identity_delete(args) -> int:
    from ..identity import Identity

    Identity.delete(args.folder)
    print(f"deleted identity {args.folder}")
    return 0


def add_parsers(sub, common) -> None:
    """Add `inspect` and `identity` to the sub-command parser."""
    p = sub.add_parser(
        "inspect",
        parents=[common],
        help="detect faces, report their quality and compare identities across images",
        description="Detect faces (box, 5 landmarks, score), rate them (size, sharpness, pose) and print "
        "the pairwise identity similarity of the chosen face in each image.",
    )
    p.add_argument("images", nargs="+", metavar="IMAGE", help="image files, or folders of them")
    add_face_options(p)
    p.add_argument(
        "--save-crops",
        metavar="DIR",
        help="write each chosen face's aligned 112×112 and 1.1× square crops here",
    )
    p.add_argument("--json", action="store_true", help="print one JSON document instead of text")
    p.set_defaults(func=cmd_inspect)

    pid = sub.add_parser("identity", help="create, show or delete a saved identity").add_subparsers(
        dest="action", metavar="ACTION"
    )
    pc = pid.add_parser(
        "create", parents=[common], help="build an identity folder from photos of one person"
    )
    pc.add_argument(
        "--face",
        dest="faces",
        nargs="+",
        required=True,
        metavar="IMAGE",
        help="photos of the person (files, or folders of them)",
    )
    pc.add_argument("--out", required=True, metavar="DIR", help="folder to write")
    pc.add_argument("--force", action="store_true", help="replace an identity already saved in DIR")
    pc.add_argument(
        "--mask",
        default="auto",
        choices=["auto", "mediapipe", "landmarks"],
        help="face-mask method",
    )
    pc.add_argument(
        "--drop-outliers",
        action="store_true",
        help="leave photos of someone else out of the mean embedding",
    )
    add_face_options(pc, policy_flag="--face-policy")  # `--face` names the photos here
    pc.set_defaults(func=cmd_identity_create)
    ps = pid.add_parser("show", parents=[common], help="print an identity's summary")
    ps.add_argument("folder", metavar="DIR")
    ps.add_argument("--json", action="store_true", help="print the metadata as JSON")
    ps.set_defaults(func=cmd_identity_show)
    pd = pid.add_parser("delete", parents=[common], help="remove every file an identity wrote")
    pd.add_argument("folder", metavar="DIR")
    pd.set_defaults(func=cmd_identity_delete)
