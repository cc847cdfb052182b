"""Building a bank from the base model: generate each name, keep the ones faces confirm (resumable, sharded)."""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ...errors import ArtifactError
from ...fileio import write_with
from ...training.distributed import distributed_context
from .bank import (
    FORMAT_VERSION,
    CelebrityBank,
    _assemble_bank,
    _json_safe,
    _now,
    _tokenize,
    _tokenizer_info,
)
from .face_stats import _embed_faces, _summarise_faces, _verdict
from .names import name_seed, parse_names

PARTS_DIR = "parts"
IMAGES_DIR = "images"
DEFAULT_PROMPT = "a photo of {name}, portrait, face, high quality"
DEFAULT_NEGATIVE_PROMPT = "cartoon, drawing, blurry, multiple people"


def _part_stem(name: str) -> str:
    # Readable and filesystem-safe; the hash keeps "Beyoncé" and "Beyonce" apart.
    slug = re.sub(r"[^A-Za-z0-9]+", "_", name).strip("_")[:60] or "name"
    return f"{slug}-{hashlib.sha256(name.encode('utf-8')).hexdigest()[:10]}"


# ---- building from the base model ---------------------------------------------------------


def _make_pipeline(base_model: Any) -> Any:
    """The base model's diffusers pipeline with a DDIM scheduler (deterministic, eta 0)."""
    from diffusers import DDIMScheduler

    pipe = base_model.as_pipeline(scheduler=DDIMScheduler.from_config(base_model.scheduler.config))
    pipe.set_progress_bar_config(disable=True)  # one bar over the names, not one per name
    return pipe


def _generate_name_images(
    pipe: Any,
    name: str,
    *,
    images_per_name: int,
    num_inference_steps: int,
    guidance_scale: float,
    height: int,
    width: int,
    prompt_template: str,
    negative_prompt: str | None,
    seed: int,
) -> np.ndarray:
    """Generate `images_per_name` images of `name` in one batch: (n, H, W, 3) uint8.

    The generator lives on the CPU and is seeded from the name alone (`name_seed`), so a
    name gets the same latents whatever the order, shard or device it runs on.
    """
    import torch

    generator = torch.Generator(device="cpu").manual_seed(name_seed(name, seed))
    out = pipe(
        prompt=prompt_template.replace("{name}", name),
        negative_prompt=negative_prompt or None,
        num_images_per_prompt=images_per_name,
        num_inference_steps=num_inference_steps,
        guidance_scale=guidance_scale,
        height=height,
        width=width,
        generator=generator,
        output_type="np",
    )
    return (np.clip(np.asarray(out.images, np.float32), 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)


def _write_part(parts_dir: Path, record: dict, face_embeddings: np.ndarray) -> Path:
    """Write one finished name: `<stem>.safetensors` (its face embeddings), then `<stem>.json`.

    The JSON file is written last and marks the name as finished.
    """
    from safetensors.numpy import save_file

    stem = _part_stem(record["name"])
    tensors = {"face_embeddings": np.ascontiguousarray(face_embeddings, np.float32)}
    write_with(parts_dir / f"{stem}.safetensors", lambda p: save_file(tensors, str(p)))
    text = json.dumps(_json_safe(record), indent=1, ensure_ascii=False) + "\n"
    write_with(parts_dir / f"{stem}.json", lambda p: p.write_text(text, encoding="utf-8"))
    return parts_dir / f"{stem}.json"


def _read_parts(parts_dir: Path) -> dict[str, dict]:
    """Finished records by name (only names whose JSON and tensors are both there)."""
    found: dict[str, dict] = {}
    if not parts_dir.is_dir():
        return found
    for p in sorted(parts_dir.glob("*.json")):
        if p.name.startswith("."):
            continue
        try:
            rec = json.loads(p.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError, OSError):
            continue  # unreadable: treated as not finished, so the name is generated again
        if not isinstance(rec, dict) or "name" not in rec:
            continue
        if not p.with_suffix(".safetensors").is_file():
            continue
        rec["_tensors"] = str(p.with_suffix(".safetensors"))
        found[rec["name"]] = rec
    return found


def _load_part_embeddings(rec: dict, dim: int) -> np.ndarray:
    from safetensors import SafetensorError
    from safetensors.numpy import load_file

    try:
        e = load_file(rec["_tensors"])["face_embeddings"]
    except (SafetensorError, OSError, KeyError) as err:
        raise ArtifactError(
            f"{rec['_tensors']}: corrupt record for {rec['name']!r} ({err}); delete it and "
            "rerun the build to regenerate that name"
        ) from None
    return np.asarray(e, np.float32).reshape(-1, dim)


def _settings_diff(a: dict, b: dict) -> list[str]:
    return [
        f"{k}: {a.get(k)!r} vs {b.get(k)!r}"
        for k in sorted(set(a) | set(b))
        if a.get(k) != b.get(k)
    ]


def _check_build_args(
    images_per_name: int, num_inference_steps: int, min_faces: int, prompt_template: str
) -> None:
    if images_per_name < 1 or num_inference_steps < 1:
        raise ValueError("images_per_name and num_inference_steps must be at least 1")
    if not 1 <= min_faces <= images_per_name:
        raise ValueError(
            f"min_faces must be between 1 and images_per_name ({images_per_name}), got {min_faces}"
        )
    if "{name}" not in prompt_template:
        raise ValueError(f"prompt_template must contain '{{name}}': {prompt_template!r}")


def _resolve_shard(
    process_index: int | None, num_processes: int | None, wait_fn: Callable[[], None] | None
) -> tuple[int, int, Callable[[], None] | None]:
    """(process index, number of processes, wait function): as given, or from
    `distributed_context()` when neither the index nor the count is given."""
    if process_index is None and num_processes is None:
        process_index, num_processes, wait_fn, _ = distributed_context()
    process_index = int(process_index or 0)
    num_processes = int(num_processes or 1)
    if not 0 <= process_index < num_processes:
        raise ValueError(
            f"process_index {process_index} out of range for {num_processes} processes"
        )
    return process_index, num_processes, wait_fn


def _check_resumable(parts_dir: Path, done: dict[str, dict], settings: dict) -> None:
    """Refuse to resume over records made with other settings."""
    for rec_done in done.values():
        diff = _settings_diff(rec_done.get("settings", {}), _json_safe(settings))
        if diff:
            raise ArtifactError(
                f"{parts_dir}: holds records made with other settings ({'; '.join(diff)}); "
                "use another output folder or the same settings"
            )


def _check_same_settings(parts_dir: Path, records: Sequence[dict]) -> None:
    """Refuse to merge records made with different settings into one bank."""
    settings = records[0].get("settings", {})
    for r in records[1:]:
        diff = _settings_diff(r.get("settings", {}), settings)
        if diff:
            raise ArtifactError(
                f"{parts_dir}: records were made with different settings ({'; '.join(diff)})"
            )


def _save_name_images(out_dir: Path, name: str, images: Sequence[Any]) -> None:
    """Keep one name's generated images under `out_dir/images/` for inspection."""
    from ...imageio import save_image_atomic

    for i, img in enumerate(images):
        save_image_atomic(np.asarray(img), out_dir / IMAGES_DIR / _part_stem(name) / f"{i:02d}.jpg")


def _progress_bar(total: int) -> Any:
    from tqdm.auto import tqdm

    return tqdm(total=total, desc="celebrities", unit="name", disable=None)


def _shards_pending(
    parts_dir: Path, names: Sequence[str], wait_fn: Callable[[], None] | None, num_processes: int
) -> bool:
    """Whether explicit shards that nobody waits for still have names without a record."""
    if wait_fn is not None or num_processes <= 1:
        return False
    have = _read_parts(parts_dir)
    return any(n not in have for n in names)


def build_bank_from_model(
    base_model: Any,
    analyzer: Any,
    names: Sequence[str],
    out_dir: str | os.PathLike,
    *,
    images_per_name: int = 4,
    num_inference_steps: int = 25,
    guidance_scale: float = 7.5,
    height: int | None = None,
    width: int | None = None,
    prompt_template: str = DEFAULT_PROMPT,
    negative_prompt: str | None = DEFAULT_NEGATIVE_PROMPT,
    threshold: float | None = None,
    min_faces: int = 2,
    reference: CelebrityBank | None = None,
    seed: int = 0,
    save_images: bool = False,
    progress: bool = True,
    process_index: int | None = None,
    num_processes: int | None = None,
    wait_fn: Callable[[], None] | None = None,
) -> CelebrityBank | None:
    """Build a bank by generating each celebrity with the base model (seeds/001, "id" init).

    For each name, `images_per_name` portraits are generated in one batch (DDIM, seeded
    from the name), the chosen face of each is embedded, and the name is kept if at least
    `min_faces` faces were found and they agree (consistency >= `threshold`); with a
    `reference` bank of real photos, the generated faces must also match the photos, as in
    the paper. Each finished name is written at once to `out_dir/parts/`, so a killed
    run resumes where it stopped; the bank (`bank.safetensors` + `bank.json`) is written to
    `out_dir` when every name is done.

    Names are shared round-robin between processes. With neither `process_index` nor
    `num_processes` given they come from `distributed_context()`, so the same call works
    under `accelerate launch`. With explicit shards and no `wait_fn`, a shard only writes
    its records and returns None; run `consolidate_bank` once all shards are done.

    Args:
        base_model: a `sameface.models.BaseModel` (on the device to generate on).
        analyzer: a `FaceAnalyzer`; its recogniser defines the embedding space.
        names: the celebrities to try (duplicates dropped).
        out_dir: folder for `parts/` and the final bank.
        images_per_name: images generated per name (one batch).
        num_inference_steps: DDIM steps.
        guidance_scale: classifier-free guidance scale.
        height: image height; default the model's native resolution.
        width: image width; default the model's native resolution.
        prompt_template: prompt with a `{name}` placeholder.
        negative_prompt: negative prompt (None or "" for none).
        threshold: minimum consistency (and reference similarity); default the
            recogniser's `same_person_threshold`.
        min_faces: names with fewer usable faces are rejected.
        reference: a bank from real photos (`build_bank_from_photos`); names absent from it
            or whose generated faces do not match it are rejected.
        seed: base seed; each name's seed is `name_seed(name, seed)`.
        save_images: also keep the generated images under `out_dir/images/` for inspection.
        progress: show a progress bar (main process, on a terminal only).
        process_index: this shard's index.
        num_processes: number of shards.
        wait_fn: called after this shard's names are done to wait for the others.

    Returns:
        The bank on the main process once every name is done, else None.

    Raises:
        ArtifactError: `out_dir` holds records made with other settings, or (after waiting
            for every process) some names have no record.
    """
    _check_build_args(images_per_name, num_inference_steps, min_faces, prompt_template)
    names = parse_names(names)
    if not names:
        raise ValueError("no celebrity names given")
    process_index, num_processes, wait_fn = _resolve_shard(process_index, num_processes, wait_fn)
    is_main = process_index == 0

    out_dir = Path(out_dir)
    parts_dir = out_dir / PARTS_DIR
    parts_dir.mkdir(parents=True, exist_ok=True)
    rec = analyzer.recognizer
    tokenizer = base_model.tokenizers[0]
    height = int(height or base_model.resolution)
    width = int(width or base_model.resolution)
    # Everything that changes a name's record. Records made with other settings must not
    # be mixed into this bank, nor silently regenerated (hours of work may be in them).
    settings = {
        "base_model": str(getattr(base_model, "source", "")),
        "family": str(getattr(base_model, "family", "")),
        "scheduler": "DDIMScheduler",
        "prompt_template": prompt_template,
        "negative_prompt": negative_prompt or None,
        "images_per_name": images_per_name,
        "num_inference_steps": num_inference_steps,
        "guidance_scale": float(guidance_scale),
        "height": height,
        "width": width,
        "seed": int(seed),
        "recognizer": rec.describe() | {"same_person_threshold": rec.same_person_threshold},
    }
    tok_info = _tokenizer_info(tokenizer)
    done = _read_parts(parts_dir)
    _check_resumable(parts_dir, done, settings)
    mine = [n for i, n in enumerate(names) if i % num_processes == process_index and n not in done]

    pipe = None
    bar = _progress_bar(len(mine)) if progress and is_main and mine else None
    try:
        for name in mine:
            if pipe is None:  # built lazily: a fully resumed run never touches the model
                pipe = _make_pipeline(base_model)
            images = _generate_name_images(
                pipe,
                name,
                images_per_name=images_per_name,
                num_inference_steps=num_inference_steps,
                guidance_scale=guidance_scale,
                height=height,
                width=width,
                prompt_template=prompt_template,
                negative_prompt=negative_prompt,
                seed=seed,
            )
            face_embs, errors = _embed_faces(analyzer, images, name)
            if save_images:
                _save_name_images(out_dir, name, images)
            _, consistency, n = _summarise_faces(face_embs, int(rec.dim))
            _write_part(
                parts_dir,
                {
                    "format_version": FORMAT_VERSION,
                    "name": name,
                    "settings": settings,
                    "name_seed": name_seed(name, seed),
                    "process_index": process_index,
                    "num_images": len(images),
                    "num_faces": n,
                    "consistency": consistency,
                    "token_ids": _tokenize(tokenizer, name),
                    "tokenizer": tok_info,
                    "errors": errors,
                    "created": _now(),
                },
                face_embs,
            )
            if bar is not None:
                bar.update(1)
                bar.set_postfix_str(f"{name}: {n}/{len(images)} faces", refresh=False)
    finally:
        if bar is not None:
            bar.close()

    if wait_fn is not None:
        wait_fn()
    if not is_main or _shards_pending(parts_dir, names, wait_fn, num_processes):
        return None  # other shards still running: `consolidate_bank` when they finish
    return consolidate_bank(
        out_dir,
        names,
        threshold=threshold,
        min_faces=min_faces,
        reference=reference,
        tokenizer=tokenizer,
    )


def consolidate_bank(
    out_dir: str | os.PathLike,
    names: Sequence[str] | None = None,
    *,
    threshold: float | None = None,
    min_faces: int = 2,
    reference: CelebrityBank | None = None,
    tokenizer: Any = None,
    save: bool = True,
) -> CelebrityBank:
    """Merge the per-name records in `out_dir/parts/` into one bank and save it in `out_dir`.

    The acceptance rule is applied here, so a finished build can be re-filtered with
    another `threshold`, `min_faces` or `reference` without generating anything again.

    Args:
        out_dir: the folder `build_bank_from_model` wrote to.
        names: the names to include, in bank order; default every record, sorted.
        threshold: minimum consistency (and reference similarity); default the
            recogniser's `same_person_threshold`.
        min_faces: names with fewer usable faces are rejected.
        reference: a real-photo bank the generated faces must match.
        tokenizer: recorded in the metadata (default: as the records say); the token ids
            come from the records.
        save: write `bank.safetensors` + `bank.json` into `out_dir` (replacing a previous bank).

    Raises:
        ArtifactError: names without a record, or records made with different settings.
    """
    out_dir = Path(out_dir)
    parts_dir = out_dir / PARTS_DIR
    parts = _read_parts(parts_dir)
    wanted = parse_names(names) if names is not None else sorted(parts, key=str.casefold)
    if not wanted:
        raise ArtifactError(f"{parts_dir}: no finished celebrity records to consolidate")
    missing = [n for n in wanted if n not in parts]
    if missing:
        shown = ", ".join(missing[:5]) + (
            f" and {len(missing) - 5} more" if len(missing) > 5 else ""
        )
        raise ArtifactError(
            f"{parts_dir}: {len(missing)} name(s) have no finished record ({shown}); rerun the "
            "build (it resumes) to generate them"
        )
    records = [parts[n] for n in wanted]
    settings = records[0].get("settings", {})
    _check_same_settings(parts_dir, records)
    recognizer = dict(settings.get("recognizer", {}))
    dim = int(recognizer.get("dim") or 0)
    if threshold is None:
        threshold = float(recognizer.get("same_person_threshold", 0.5))
    if reference is not None:
        reference.check_recognizer(recognizer, what="generated celebrity faces")

    kept_names, embs, cons, counts, toks = [], [], [], [], []
    rejected: dict[str, str] = {}
    for r in records:
        face_embs = _load_part_embeddings(r, dim)
        mean, consistency, n = _summarise_faces(face_embs, dim)
        ref_sim = None
        if reference is not None and n > 0 and r["name"] in reference:
            ref_sim = float(reference.embeddings[reference.index(r["name"])] @ mean)
        reason = _verdict(
            n,
            consistency,
            min_faces=min_faces,
            threshold=threshold,
            reference_similarity=ref_sim,
            reference_used=reference is not None,
        )
        if reason is not None:
            rejected[r["name"]] = reason
            continue
        kept_names.append(r["name"])
        embs.append(mean)
        cons.append(consistency)
        counts.append(n)
        toks.append([int(t) for t in r.get("token_ids", [])])
    meta = {
        "format_version": FORMAT_VERSION,
        "created": _now(),
        "source": f"base-model:{settings.get('base_model', '')}",
        "recognizer": recognizer,
        "tokenizer": _tokenizer_info(tokenizer)
        if tokenizer is not None
        else records[0].get("tokenizer"),
        "prompt_template": settings.get("prompt_template"),
        "negative_prompt": settings.get("negative_prompt"),
        "images_per_name": settings.get("images_per_name"),
        "num_inference_steps": settings.get("num_inference_steps"),
        "guidance_scale": settings.get("guidance_scale"),
        "size": [settings.get("width"), settings.get("height")],
        "scheduler": settings.get("scheduler"),
        "seed": settings.get("seed"),
        "threshold": float(threshold),
        "min_faces": int(min_faces),
        "reference": None if reference is None else reference.meta.get("source"),
        "num_requested": len(wanted),
        "rejected": rejected,
    }
    bank = _assemble_bank(kept_names, embs, cons, counts, toks, meta, dim)
    if save:
        bank.save(out_dir, overwrite=True)
    return bank
