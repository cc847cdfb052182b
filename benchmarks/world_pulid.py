"""PuLID in the proving-ground world: ID similarity of its images against the "a person" floor.

For each of the first `--people` reference people of a world (`World.reference_people()`),
the identity is built from their 4 reference photos with the world's analyzer and encoded
with the world's PuLID adapter (`WORLD/pulid`, or `--adapter`). Each prompt of `PROMPTS`
is drawn with `--seeds` seeds at every `--id-scale`; id_scale 0 is exactly the base model
on "a person" (the floor: nobody in particular). Every image goes through the world's
detector and recogniser, and is scored by cosine similarity to

  * gallery — the person's mean embedding over fresh renders (plain photos, not the
    reference photos PuLID saw),
  * refs    — the identity's own mean embedding (the reference photos),

plus the context classifier's accuracy on what each prompt asks (editability). Reports the
mean over detected faces per id_scale, the detection rate, and the fraction of images the
recogniser takes for the person (gallery similarity >= its same-person threshold).

    python benchmarks/world_pulid.py --world WORLD [--adapter DIR] [--people 4] [--seeds 4]
                                     [--id-scale 0 0.8 1.0] [--steps 30] [--json]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np

PROMPTS = (
    "a photo of <id>",
    "a close-up photo of <id>",
    "a sketch of <id>",
    "a painting of <id>, green background",
    "a photo of <id> wearing a hat",
    "a photo of <id> wearing glasses, striped yellow background",
)


def person_images(pipe, scale: float, seeds: int, steps: int, guidance: float) -> list:
    import torch

    prompts = [p for p in PROMPTS for _ in range(seeds)]
    gens = [torch.Generator().manual_seed(s) for _ in PROMPTS for s in range(seeds)]
    out = pipe(
        prompts,
        num_inference_steps=steps,
        guidance_scale=guidance,
        generator=gens,
        output_type="np",
        id_scale=scale,
    )
    return [(np.asarray(im) * 255).round().clip(0, 255).astype(np.uint8) for im in out.images]


def score(world, images: list, gallery: np.ndarray, refs: np.ndarray) -> dict:
    from sameface.world.captions import parse_caption
    from sameface.world.faces import context_accuracy
    from sameface.world.quality import embed_generated

    embs = [e for e in embed_generated(world, images) if e is not None]
    thr = world.recognizer.same_person_threshold
    g = [float(gallery @ e) for e in embs]
    prompts = [p.replace("<id>", "a person") for p in PROMPTS]
    asked = [parse_caption(p)[1] for p in prompts for _ in range(len(images) // len(PROMPTS))]
    ctx = [
        context_accuracy(p, a) for p, a in zip(world.context.predict(images), asked, strict=True)
    ]
    return {
        "detected": len(embs) / len(images),
        "gallery": float(np.mean(g)) if g else None,
        "refs": float(np.mean([refs @ e for e in embs])) if embs else None,
        "same_person_rate": float(np.mean(np.array(g) >= thr)) if g else None,
        "context": float(np.mean([c for c in ctx if c is not None])),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--world", required=True)
    ap.add_argument("--adapter", help="PuLID folder (default WORLD/pulid)")
    ap.add_argument("--people", type=int, default=4)
    ap.add_argument("--seeds", type=int, default=4)
    ap.add_argument("--id-scale", type=float, nargs="+", default=[0.0, 0.8, 1.0])
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--guidance", type=float, default=7.5)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--save", help="folder for contact sheets per person and id_scale")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()

    import torch

    torch.set_num_threads(args.threads)
    from sameface.identity import Identity
    from sameface.methods.pulid import PuLIDConfig, PuLIDPipeline, personalize
    from sameface.methods.pulid.world import world_pulid_adapter
    from sameface.world.quality import gallery
    from sameface.world.world import World

    world = World.load(args.world)
    adapter = Path(args.adapter) if args.adapter else world_pulid_adapter(world.folder)
    _, new = world.people
    params = {n.replace(" ", "_"): p for n, p in zip(new.names, new.params, strict=True)}
    rng = np.random.default_rng(0)
    rows: dict[str, list[dict]] = {str(s): [] for s in args.id_scale}
    t0 = time.perf_counter()
    for name, photos in list(world.reference_people().items())[: args.people]:
        identity = Identity.from_images(
            photos, analyzer=world.analyzer(), square_expand=None, mask_method="landmarks"
        )
        gal = gallery(world, params[name][None], rng)[0]
        with tempfile.TemporaryDirectory() as tmp:
            out = personalize(identity, world.base, PuLIDConfig(), Path(tmp) / "a", adapter=adapter)
            with PuLIDPipeline.from_artifact(out, world.base) as pipe:
                for s in args.id_scale:
                    images = person_images(pipe, s, args.seeds, args.steps, args.guidance)
                    rows[str(s)].append(score(world, images, gal, identity.embedding))
                    if args.save:
                        from sameface.imageio import save_image_atomic
                        from sameface.world.render import contact_sheet

                        sheet = contact_sheet(images, args.seeds)
                        save_image_atomic(sheet, Path(args.save) / f"{name}_{s}.png")
    report = {
        "adapter": str(adapter),
        "people": args.people,
        "images_per_person": len(PROMPTS) * args.seeds,
        "sampler": {"steps": args.steps, "guidance": args.guidance},
        "seconds": round(time.perf_counter() - t0, 1),
        "by_id_scale": {s: {k: _mean([r[k] for r in rs]) for k in rs[0]} for s, rs in rows.items()},
    }
    print(json.dumps(report, indent=1) if args.json else _table(report))


def _mean(xs: list) -> float | None:
    xs = [x for x in xs if x is not None]
    return round(float(np.mean(xs)), 4) if xs else None


def _table(report: dict) -> str:
    lines = [
        f"{report['adapter']}: {report['people']} people x {report['images_per_person']} images"
    ]
    lines.append("id_scale  detected  gallery_sim  refs_sim  same_person  context")
    for s, r in report["by_id_scale"].items():
        lines.append(
            f"{s:>8}  {r['detected']}  {r['gallery']}  {r['refs']}  "
            f"{r['same_person_rate']}  {r['context']}"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    main()
