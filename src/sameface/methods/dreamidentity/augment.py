"""Self-augmented editability data (seed 000, "Self-Augmented Editability Learning").

The base model already knows how to edit the people it knows by name. For every name of a
bank it draws "{name} face" and edited images from edit-prompt templates ("oil painting
style, {name} face", "{name} as a chef", ...), scores each (face, edit prompt, edited image)
triplet by ID similarity (the edited image's face against the "{name} face" image's) plus CLIP
score (edited image against its prompt), and keeps the top quarter. Training then asks the
encoder, reading only the face, to reproduce the edit: editing is learned from the model's own
mature knowledge of celebrities.

    out/sources/<name>.png        the "{name} face" image
    out/faces/<name>.png          its aligned 112×112 face (what the encoder reads)
    out/images/<name>-<j>.png     the edited images
    out/names/<name>.json         per name: its candidates and scores, or why it was skipped
                                  (written last: a name with this file is done)
    out/triplets.jsonl            the kept triplets (written at the end, by the main process)
    out/augment.json              settings and a summary: what was kept and why

Resumable per name; sharded by name over `accelerate launch` processes.
"""

from __future__ import annotations

import json
import os
import re
import time
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ...errors import SamefaceError
from ...fileio import read_jsonl, write_json_atomic

FACE_TEMPLATE = "{name} face"
"""The paper's prompt for a celebrity's face image."""
EDIT_TEMPLATES: tuple[str, ...] = (
    # style
    "oil painting style, {name} face",
    "a pencil sketch of {name}",
    "a watercolor painting of {name}",
    # profession
    "{name} as a chef",
    "{name} as an astronaut",
    "{name} as a firefighter",
    # accessories
    "{name} wearing sunglasses",
    "{name} wearing a hat",
    "{name} wearing a scarf",
    # scenes
    "{name} on the beach",
    "{name} in the snow",
    "{name} in a library",
)
"""Edit prompts (the paper's two examples first), in the four groups the issue names."""
KEEP = 0.25
"""Share of the scored triplets kept (the paper: top 25%)."""
TRIPLETS = "triplets.jsonl"
SUMMARY = "augment.json"


def fill(template: str, name: str) -> str:
    """`template` with the person written in: "{name}" replaced (other braces left as they are)."""
    return template.replace("{name}", name)


def slug(name: str) -> str:
    """A file-name-safe form of a name."""
    return re.sub(r"[^A-Za-z0-9]+", "_", name).strip("_")[:80] or "name"


def keep_top(scores: Sequence[float], share: float = KEEP) -> list[int]:
    """Indices of the top `share` of `scores` (at least one when any), best first; ties keep
    the earlier index, so the choice is deterministic."""
    if not scores:
        return []
    n = max(1, round(len(scores) * share))
    order = sorted(range(len(scores)), key=lambda i: (-scores[i], i))
    return order[:n]


def triplet_score(id_similarity: float, clip_score: float) -> float:
    """The ranking score: ID similarity + CLIP score (seed: "Rank images by ID + CLIP score")."""
    return float(id_similarity) + float(clip_score)


class TripletSet:
    """The kept triplets of a self-augment folder, as arrays: face (112, 112, 3) uint8, image
    (H, W, 3) uint8, template (with "{name}" where the person goes), name."""

    def __init__(self, folder: str | os.PathLike):
        self.folder = Path(folder)
        path = self.folder / TRIPLETS
        if not path.is_file():
            raise SamefaceError(
                f"{self.folder}: no {TRIPLETS} (make it with `sameface data self-augment`, and let "
                "it finish: the kept triplets are written at the end)"
            )
        self.records = read_jsonl(path)
        bad = [r.get("id") for r in self.records if "{name}" not in str(r.get("template", ""))]
        if bad:
            raise SamefaceError(f"{path}: triplets without a {{name}} in their template: {bad[:3]}")

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, i: int) -> dict:
        from ...imageio import load_image

        r = self.records[i]
        return {
            "face": load_image(self.folder / r["face"]),
            "image": load_image(self.folder / r["image"]),
            "template": r["template"],
            "name": r["name"],
        }


def self_augment(
    base: Any,
    names: Sequence[str],
    out: str | os.PathLike,
    *,
    analyzer: Any,
    clip: Any,
    templates: Sequence[str] = EDIT_TEMPLATES,
    face_template: str = FACE_TEMPLATE,
    keep: float = KEEP,
    per_name: int | None = None,
    num_inference_steps: int = 30,
    guidance_scale: float | None = None,
    seed: int = 0,
    context: Any = None,
    progress: bool = True,
) -> dict:
    """Generate, score and filter the self-augmented triplets into `out` (module docstring).

    Args:
        base: the `BaseModel` that draws the images (its own knowledge of the names).
        names: the bank's names.
        out: output folder (resumable: names already done are skipped).
        analyzer: a `FaceAnalyzer` (detects, aligns and embeds faces).
        clip: a `ClipScorer` (CLIP score of each edited image against its prompt).
        templates: edit prompts, each with "{name}".
        face_template: the prompt of the face image ("{name} face").
        keep: share of all scored triplets kept.
        per_name: edit prompts per name, drawn from `templates` (by the name and `seed`); None:
            every template for every name.
        num_inference_steps, guidance_scale: sampling settings (guidance None: diffusers' default).
        seed: image seeds derive from it and the name, so any sharding gives the same images.
        context: a `DistributedContext` (names are split over processes).
        progress: show a progress bar.

    Returns:
        The summary written to `augment.json` (main process; {} on the others).

    Raises:
        SamefaceError: no names, templates without "{name}", or no name that gave a usable
            face.
    """
    import torch
    from tqdm.auto import tqdm

    from ...imageio import save_image_atomic
    from ...training.distributed import distributed_context

    names = list(dict.fromkeys(n.strip() for n in names if n and n.strip()))
    if not names:
        raise SamefaceError("the bank has no usable names: build one with `sameface celebs build`")
    if not templates:
        raise SamefaceError("no edit templates given")
    for t in (face_template, *templates):
        if "{name}" not in t:
            raise SamefaceError(f"template {t!r} has no {{name}} where the person goes")
    if not 0 < keep <= 1:
        raise SamefaceError(f"keep must be in (0, 1], got {keep}")
    ctx = context or distributed_context()
    out = Path(out)
    for sub in ("sources", "faces", "images", "names"):
        (out / sub).mkdir(parents=True, exist_ok=True)
    drawn = {
        "templates": list(templates), "face_template": face_template, "per_name": per_name,
        "num_inference_steps": num_inference_steps, "guidance_scale": guidance_scale,
        "seed": seed, "base": str(getattr(base, "source", None)),
    }  # fmt: skip
    _check_same_drawing(out, drawn, ctx)
    mine = names[ctx.process_index :: ctx.num_processes]
    todo = [n for n in mine if not (out / "names" / f"{slug(n)}.json").is_file()]
    pipe = base.as_pipeline()
    pipe.set_progress_bar_config(disable=True)

    def draw(prompts: list[str], first_seed: int) -> list[np.ndarray]:
        """One batch per name: the images of seeds first_seed, first_seed + 1, ..."""
        gens = [torch.Generator("cpu").manual_seed(first_seed + i) for i in range(len(prompts))]
        kw = {} if guidance_scale is None else {"guidance_scale": guidance_scale}
        out = pipe(
            prompts, num_inference_steps=num_inference_steps, generator=gens, output_type="np", **kw
        )
        return [(im * 255).round().clip(0, 255).astype(np.uint8) for im in out.images]

    bar = tqdm(todo, desc="self-augment", unit="name", disable=not (progress and ctx.is_main))
    for name in bar:
        key = slug(name)
        name_seed = seed * 1_000_003 + _stable_hash(name)
        chosen = _templates_for(name, templates, per_name, seed)
        prompts = [fill(face_template, name)] + [fill(t, name) for t in chosen]
        source, *edits = draw(prompts, name_seed)
        found = analyzer.analyze(source)
        record: dict[str, Any] = {"name": name, "slug": key}
        if found.aligned is None:
            record["skipped"] = f"no usable face in the {face_template!r} image ({found.error})"
            write_json_atomic(out / "names" / f"{key}.json", record)
            continue
        save_image_atomic(source, out / "sources" / f"{key}.png")
        save_image_atomic(found.aligned, out / "faces" / f"{key}.png")
        clip_scores = clip.image_embeddings(edits) @ clip.text_embeddings(prompts[1:]).T
        candidates = []
        for j, (template, image) in enumerate(zip(chosen, edits, strict=True)):
            file = f"images/{key}-{j}.png"
            save_image_atomic(image, out / file)
            got = analyzer.analyze(image)
            id_sim = 0.0 if got.embedding is None else float(np.dot(got.embedding, found.embedding))
            c = float(clip_scores[j, j])
            candidates.append(
                {"template": template, "image": file, "face_found": got.embedding is not None,
                 "id_similarity": round(id_sim, 5), "clip_score": round(c, 5),
                 "score": round(triplet_score(id_sim, c), 5)}
            )  # fmt: skip
        record |= {
            "face": f"faces/{key}.png",
            "source": f"sources/{key}.png",
            "candidates": candidates,
        }
        write_json_atomic(out / "names" / f"{key}.json", record)  # last: the name is done
    ctx.wait()
    if not ctx.is_main:
        return {}
    return write_triplets(out, names, keep, settings={
        "templates": list(templates), "face_template": face_template, "keep": keep, "per_name": per_name,
        "num_inference_steps": num_inference_steps, "guidance_scale": guidance_scale,
        "seed": seed, "base": getattr(base, "source", None),
        "recognizer": getattr(analyzer.recognizer, "name", None), "clip": getattr(clip, "name", None),
    })  # fmt: skip


def _check_same_drawing(out: Path, drawn: dict, ctx: Any) -> None:
    """A rerun into `out` must draw as the first run did (else its names would mix two sets)."""
    path = out / "drawing.json"
    if path.is_file():
        before = json.loads(path.read_text())
        changed = sorted(k for k in drawn if before.get(k) != drawn[k])
        if changed:
            raise SamefaceError(
                f"{out} was drawn with other settings ({', '.join(changed)} differ): use another --out"
            )
    elif ctx.is_main:
        write_json_atomic(path, drawn)
    ctx.wait()


def write_triplets(out: Path, names: Sequence[str], keep: float, settings: dict) -> dict:
    """Rank every scored candidate of `names` and write the kept ones and the summary."""
    records, skipped = [], {}
    for name in names:
        path = out / "names" / f"{slug(name)}.json"
        if not path.is_file():
            raise SamefaceError(f"{out}: {name!r} was not generated yet (run the command again)")
        rec = json.loads(path.read_text())
        if "skipped" in rec:
            skipped[name] = rec["skipped"]
            continue
        for c in rec["candidates"]:
            records.append({"name": name, "face": rec["face"], **c})
    if not records:
        raise SamefaceError(
            f"{out}: no name gave a usable face image ({len(skipped)} skipped; e.g. "
            f"{next(iter(skipped.values()), '')}); the base model may not know these names"
        )
    kept = [records[i] for i in keep_top([r["score"] for r in records], keep)]
    for i, r in enumerate(kept):
        r["id"] = f"{i:07d}"
    tmp = out / f".{TRIPLETS}.tmp"
    tmp.write_text("".join(json.dumps(r, sort_keys=True) + "\n" for r in kept))
    os.replace(tmp, out / TRIPLETS)
    per_template = Counter(r["template"] for r in kept)
    summary = {
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "settings": settings,
        "names": len(names),
        "names_used": len(names) - len(skipped),
        "names_skipped": skipped,
        "candidates": len(records),
        "candidates_with_face": sum(r["face_found"] for r in records),
        "kept": len(kept),
        "kept_min_score": kept[-1]["score"],
        "kept_mean": {
            "id_similarity": round(float(np.mean([r["id_similarity"] for r in kept])), 5),
            "clip_score": round(float(np.mean([r["clip_score"] for r in kept])), 5),
        },
        "all_mean": {
            "id_similarity": round(float(np.mean([r["id_similarity"] for r in records])), 5),
            "clip_score": round(float(np.mean([r["clip_score"] for r in records])), 5),
        },
        "kept_per_template": dict(per_template),
    }
    write_json_atomic(out / SUMMARY, summary)
    return summary


def _templates_for(
    name: str, templates: Sequence[str], per_name: int | None, seed: int
) -> list[str]:
    """The edit prompts of one name: all, or `per_name` of them drawn by the name and seed."""
    if per_name is None or per_name >= len(templates):
        return list(templates)
    rng = np.random.default_rng([seed, _stable_hash(name)])
    return [templates[i] for i in sorted(rng.choice(len(templates), per_name, replace=False))]


def _stable_hash(text: str) -> int:
    import hashlib

    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:4], "little")
