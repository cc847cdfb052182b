"""A development suite for the proving ground: people and prompts no shipped suite holds.

Choosing a method's settings on the shipped suites would tune them to the very people they
are scored on. This renders fresh anonymous people (never a known or new person of the
world, `world.recipes.anonymous_identities`), 4 reference photos each the way the world's
reference people are rendered (plain photos over varied backgrounds, portrait and close-up),
and writes a suite of random captions of the world's grammar with other seeds. Pick settings
here; confirm on the shipped suites.

It also writes `world-dev-style.yaml`, the development form of `world-style.yaml`
(MagiCapture's task): each dev person's 4 photos with a style reference, a portrait of
another fresh anonymous person in a random context of the world's grammar (medium, framing,
background, pattern, accessories), given to rows without a reference in words.

    python benchmarks/world_dev_people.py --out runs/dev            # 16 people, 8 prompts
    sameface bench --world --suite runs/dev/world-dev-1ref.yaml --methods feedface --out runs/dev-ff
    sameface bench --world --suite runs/dev/world-dev-style.yaml --out runs/dev-style
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import yaml

DEV_SEED = 20261130
"""Seeds the dev people, their photos and the prompts (no shipped world stage uses it)."""


def render_dev_people(world, out: Path, n_people: int, seed: int = DEV_SEED):
    """`n_people` anonymous people, 4 reference portraits each, under `out/<Name>/k.png`;
    returns (names, identity parameters)."""
    from sameface.imageio import save_image_atomic
    from sameface.world.people import make_names
    from sameface.world.recipes import anonymous_identities
    from sameface.world.render import Context, render

    known, new = world.people
    params = anonymous_identities(world, n_people, np.random.default_rng([seed, 0]))
    names = make_names(n_people, np.random.default_rng([seed, 1]), exclude=known.names + new.names)
    rng = np.random.default_rng([seed, 2])
    for name, p in zip(names, params, strict=True):
        folder = out / name.replace(" ", "_")
        for k in range(4):
            ctx = Context(
                background=Context.random(rng).background,
                pattern="plain",
                style="photo",
                framing=("portrait", "close-up")[k % 2],
            )
            image = render(p, ctx, size=world.image_size, rng=rng).image
            save_image_atomic(image, folder / f"{k}.png")
    return names, params


def render_dev_styles(world, out: Path, names: list[str], dev, seed: int = DEV_SEED) -> list[dict]:
    """A style reference for each dev person: a portrait of another fresh anonymous person
    (none of the dev people, whose parameters are `dev`, nor a known or new person) in a
    random context, saved under
    `out/<k>.png`; returns the suite's identity entries (photos and `style_reference`)."""
    from sameface.imageio import save_image_atomic
    from sameface.world.captions import write_caption
    from sameface.world.people import sample_identities
    from sameface.world.render import Context, render

    known, new = world.people
    others = sample_identities(
        len(names),
        np.random.default_rng([seed, 4]),
        avoid=np.concatenate([known.params, new.params, dev]),
    )
    rng = np.random.default_rng([seed, 5])
    entries = []
    for k, (name, p) in enumerate(zip(names, others, strict=True)):
        ctx = Context.random(rng)
        path = out / f"{k:03d}.png"
        save_image_atomic(render(p, ctx, size=world.image_size, rng=rng).image, path)
        folder = name.replace(" ", "_")
        entries.append(
            {
                "name": folder,
                "photos": [f"people/{folder}/"],
                "style_reference": {
                    "image": f"styles/{path.name}",
                    "prompt": write_caption("<id>", ctx),
                },
            }
        )
    return entries


def dev_prompts(n: int, seed: int = DEV_SEED) -> list[str]:
    """`n` distinct random captions of the world's grammar naming `<id>`."""
    from sameface.world.captions import write_caption
    from sameface.world.render import Context

    rng = np.random.default_rng([seed, 3])
    out: list[str] = []
    while len(out) < n:
        text = write_caption("<id>", Context.random(rng), rng=rng)
        if text not in out:
            out.append(text)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", required=True, help="folder for the people and the suites")
    ap.add_argument("--world", default=None, help="world folder (default: the shipped world)")
    ap.add_argument("--people", type=int, default=16)
    ap.add_argument("--prompts", type=int, default=8)
    ap.add_argument("--seeds", type=int, nargs="+", default=[100, 101])
    args = ap.parse_args()

    from sameface.world.world import World

    world = World.load(args.world)
    out = Path(args.out)
    names, params = render_dev_people(world, out / "people", args.people)
    prompts = dev_prompts(args.prompts)
    shipped = yaml.safe_load((Path(__file__).parent / "suites" / "world-1ref.yaml").read_text())
    for refs in (1, 4):
        suite = {
            "name": f"world-dev-{refs}ref",
            "description": "development people and prompts (benchmarks/world_dev_people.py)",
            "identities": "people",
            "photos_per_identity": refs,
            "prompts": prompts,
            "seeds": list(args.seeds),
            "num_inference_steps": shipped["num_inference_steps"],
            "guidance_scale": shipped["guidance_scale"],
            "methods": shipped.get("methods", {}),
        }
        path = out / f"world-dev-{refs}ref.yaml"
        path.write_text(yaml.safe_dump(suite, sort_keys=False))
        print(f"wrote {path}")
    style = yaml.safe_load((Path(__file__).parent / "suites" / "world-style.yaml").read_text())
    suite = {
        "name": "world-dev-style",
        "description": "development people, each with a style reference of another fresh "
        "person in a random context (benchmarks/world_dev_people.py)",
        "identities": render_dev_styles(world, out / "styles", names, params),
        "photos_per_identity": 4,
        "prompts": style["prompts"],
        "seeds": list(range(args.seeds[0], args.seeds[0] + len(style["seeds"]))),
        "num_inference_steps": style["num_inference_steps"],
        "guidance_scale": style["guidance_scale"],
        "methods": {"textual-inversion": style["methods"]["textual-inversion"]},
        "run": ["textual-inversion", "magicapture"],
    }
    path = out / "world-dev-style.yaml"
    path.write_text(yaml.safe_dump(suite, sort_keys=False))
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
