"""A development suite for the proving ground: people and prompts no shipped suite holds.

Choosing a method's settings on the shipped suites would tune them to the very people they
are scored on. This renders fresh anonymous people (never a known or new person of the
world, `world.recipes.anonymous_identities`), 4 reference photos each the way the world's
reference people are rendered (plain photos over varied backgrounds, portrait and close-up),
and writes a suite of random captions of the world's grammar with other seeds. Pick settings
here; confirm on the shipped suites.

    python benchmarks/world_dev_people.py --out runs/dev            # 16 people, 8 prompts
    sameface bench --world --suite runs/dev/world-dev-1ref.yaml --methods feedface --out runs/dev-ff
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import yaml

DEV_SEED = 20261130
"""Seeds the dev people, their photos and the prompts (no shipped world stage uses it)."""


def render_dev_people(world, out: Path, n_people: int, seed: int = DEV_SEED) -> list[str]:
    """`n_people` anonymous people, 4 reference portraits each, under `out/<Name>/k.png`."""
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
    return names


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
    render_dev_people(world, out / "people", args.people)
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


if __name__ == "__main__":
    main()
