"""The world's own quality checks (docs/proving-ground.md), run at the end of every build.

1. Known people drawn by name are recognised as themselves: mean ID similarity to their
   own gallery and top-1 identification among *all* known people.
2. The context a prompt asks for is present: context-classifier accuracy per attribute.
3. "a person" is nobody in particular: a generated anonymous person's best match among the
   known people is compared with the recogniser's same-person threshold.
Plus the instruments themselves on held-out renders of new people: recogniser
verification, detector rate and landmark error, classifier accuracy (from the build).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

GALLERY_IMAGES = 2
SAMPLE_STEPS = 30
GUIDANCE = 7.5


def generate(
    base: Any,
    prompts: list[str],
    seeds: list[int],
    *,
    steps: int = SAMPLE_STEPS,
    guidance: float = GUIDANCE,
    batch: int = 32,
    progress: bool = True,
) -> list[np.ndarray]:
    """Images (uint8) for prompts with per-image seeds, batched (same images as one at a time)."""
    import torch
    from diffusers import DDIMScheduler
    from tqdm.auto import tqdm

    pipe = base.as_pipeline(scheduler=DDIMScheduler.from_config(base.scheduler.config))
    pipe.set_progress_bar_config(disable=True)
    out = []
    for i in tqdm(
        range(0, len(prompts), batch), desc="generate", disable=None if progress else True
    ):
        gens = [torch.Generator().manual_seed(s) for s in seeds[i : i + batch]]
        res = pipe(
            prompt=prompts[i : i + batch],
            num_inference_steps=steps,
            guidance_scale=guidance,
            generator=gens,
            output_type="np",
        )
        out += [(np.asarray(im) * 255).round().clip(0, 255).astype(np.uint8) for im in res.images]
    return out


def gallery(world: Any, params: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """(N, D) mean recogniser embedding of each person over a few plain renders."""
    from .render import Context, render

    rec = world.recognizer
    embs = np.zeros((len(params), rec.dim), np.float32)
    for i, p in enumerate(params):
        for _ in range(GALLERY_IMAGES):
            r = render(
                p,
                Context.random(rng, style="photo", hat=False, glasses=False, scarf=False),
                size=world.image_size,
                rng=rng,
            )
            embs[i] += rec.embed(rec.align(r.image, _face(r)))
    return embs / np.linalg.norm(embs, axis=1, keepdims=True)


def _face(r) -> Any:
    from ..faces.types import Face

    return Face(bbox=tuple(r.box), landmarks=r.landmarks, score=1.0)


def embed_generated(world: Any, images: list[np.ndarray]) -> list[np.ndarray | None]:
    """Detector + recogniser on generated images; None where no face is found."""
    out = []
    for im in images:
        faces = world.detector.detect(im)
        out.append(world.recognizer.embed_face(im, faces[0]) if faces else None)
    return out


def measure_world(
    folder: str | os.PathLike,
    config: Any,
    *,
    work: Path | None = None,
    progress: bool = True,
    n_people: int | None = None,
) -> dict:
    """Run every check, save sample grids under `folder/samples`, write `quality.json`."""
    from ..fileio import write_json_atomic
    from ..imageio import save_image_atomic
    from .captions import parse_caption, write_caption
    from .faces import context_accuracy
    from .render import Context, contact_sheet
    from .world import World

    folder = Path(folder)
    world = World(folder)
    known, new = world.people
    rng = np.random.default_rng([config.seed, 7])
    n = min(n_people or config.eval_people, len(known.names))
    chosen = rng.choice(len(known.names), n, replace=False)
    gal = gallery(world, known.params, rng)
    thr = world.recognizer.same_person_threshold

    # 1. Known people by name: a plain prompt and one with a random context each.
    prompts, who = [], []
    for i in chosen:
        name = known.names[i]
        prompts += [f"a photo of {name}", write_caption(name, Context.random(rng), rng=rng)]
        who += [i, i]
    # 2./3. "a person" with and without context.
    anon = ["a photo of a person"] * (n // 2) + [
        write_caption("a person", Context.random(rng), rng=rng) for _ in range(n - n // 2)
    ]
    images = generate(
        world.base, prompts + anon, list(range(len(prompts) + len(anon))), progress=progress
    )
    named_imgs, anon_imgs = images[: len(prompts)], images[len(prompts) :]

    embs = embed_generated(world, named_imgs)
    det = [e is not None for e in embs]
    sims, top1, top10, percentile, same = [], [], [], [], []
    for e, i in zip(embs, who, strict=False):
        if e is None:
            continue
        s = gal @ e
        sims.append(float(s[i]))
        above = int((s > s[i]).sum())  # known people the image is more like than its own
        top1.append(above == 0)
        top10.append(above < 10)
        percentile.append(1 - above / (len(s) - 1))
        same.append(float(s[i]) >= thr)
    anon_embs = [e for e in embed_generated(world, anon_imgs) if e is not None]
    anon_best = [float(np.max(gal @ e)) for e in anon_embs]
    new_gal = gallery(world, new.params[:n], rng)
    new_best = (new_gal @ gal.T).max(1)

    acc: dict[str, list[float]] = {}
    preds = world.context.predict(images)
    for text, pred in zip(prompts + anon, preds, strict=False):
        asked = parse_caption(text)[1]
        for k, v in asked.items():
            if k in pred:
                acc.setdefault(k, []).append(float(pred[k] == v))
    overall = [
        context_accuracy(p, parse_caption(t)[1])
        for t, p in zip(prompts + anon, preds, strict=False)
    ]
    overall = [a for a in overall if a is not None]

    build = {}
    if work is not None:
        import json

        for stage in ("recognizer", "judge", "detector", "context", "latents"):
            f = Path(work) / "done" / f"{stage}.json"
            if f.is_file():
                build[stage] = json.loads(f.read_text())
    report = {
        "people_checked": int(n),
        "known_people": len(known.names),
        "sampler": {"scheduler": "DDIM", "steps": SAMPLE_STEPS, "guidance_scale": GUIDANCE},
        "known_by_name": {
            "detection_rate": _r(np.mean(det)),
            "id_similarity_mean": _r(np.mean(sims)) if sims else None,
            "top1_identification": _r(np.mean(top1)) if top1 else None,
            "top10_identification": _r(np.mean(top10)) if top10 else None,
            # 1 = the own person ranks first among all known people, 0.5 = chance
            "own_rank_percentile_mean": _r(np.mean(percentile)) if percentile else None,
            "same_person_rate": _r(np.mean(same)) if same else None,
            "chance_top1": _r(1 / len(known.names)),
            "chance_top10": _r(min(1.0, 10 / len(known.names))),
        },
        "a_person": {
            "detection_rate": _r(len(anon_embs) / max(1, len(anon_imgs))),
            "best_known_similarity_mean": _r(np.mean(anon_best)) if anon_best else None,
            "taken_for_a_known_person_rate": _r(np.mean(np.array(anon_best) >= thr))
            if anon_best
            else None,
            "new_people_renders_best_known_similarity_mean": _r(new_best.mean()),
        },
        "context_accuracy": {k: _r(np.mean(v)) for k, v in sorted(acc.items())}
        | {"all_asked_attributes": _r(np.mean(overall)) if overall else None},
        "recognizer_threshold": thr,
        "instruments_heldout": build,
    }
    samples = folder / "samples"
    save_image_atomic(contact_sheet(named_imgs[:48], 8), samples / "known_by_name.png")
    save_image_atomic(contact_sheet(anon_imgs[:48], 8), samples / "a_person.png")
    write_json_atomic(folder / "quality.json", report)
    return report


def _r(x: Any) -> float:
    return round(float(x), 4)
