"""`sameface models`: the models sameface can run, where each comes from, and its licence."""

from __future__ import annotations


def cmd_models(args) -> int:
    import json

    from ..licenses import CATALOGUE, license_of

    rows = []
    for role, model, where in CATALOGUE:
        lic = license_of(model)
        rows.append(
            {"role": role, "model": model, "from": where}
            | ({"license": None} if lic is None else {"license": lic.to_dict()})
        )
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    width = max(len(r["model"]) for r in rows)
    for r in rows:
        lic = r["license"]
        terms = "unknown" if lic is None else lic["name"]
        use = "" if lic is None or lic["commercial"] else "  NON-COMMERCIAL"
        print(f"{r['role']:<19} {r['model']:<{width}}  {terms}{use}")
        print(f"{'':<19} {'':<{width}}  {r['from']}")
    print(
        "\nLicences as their publishers state them (sameface.licenses; `--json` adds the links "
        "and notes); a pointer to their terms, not legal advice. Benchmark reports list the "
        "licences of what produced each row."
    )
    return 0


def add_parsers(sub, common) -> None:
    p = sub.add_parser(
        "models",
        parents=[common],
        help="the models sameface can run, where each comes from, and its licence",
        description="List the face detectors, recognisers, CLIP towers, released weights and "
        "base models sameface can run, where each comes from, and the licence its publisher "
        "states (InsightFace's models and the adapters that need them are non-commercial).",
    )
    p.add_argument("--json", action="store_true", help="print JSON, with links and notes")
    p.set_defaults(func=cmd_models)
