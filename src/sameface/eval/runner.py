"""The benchmark runner: personalise each identity once per method, generate, score, record.

Resumable (records already in `results*.jsonl` are skipped; generated images and artifacts
are cached on disk) and sharded by identity under `accelerate launch` (each process writes
its own part; the main process merges them, so nothing is lost or duplicated). The
no-identity baseline ("none": the base model with the person written as "a person") is
always run first for each identity: CLIP-I and the FeedFace normalisation need it. Two more
baselines can be asked for (`BenchSettings.extra_baselines`): "known-by-name" (the base model
given the name of a person it was trained on: what it does for someone it knows) and
"copy-reference" (a reference photo itself as the "generated" image: the fidelity ceiling and
editability floor).

Each method row may be a variant of a method (`textual-inversion@id-e`) and an optimisation
method may be personalised once per training seed (`sameface.eval.variants`); records then
carry `training_seed`, and images and artifacts of each seed get their own folder.

A suite may give each identity a style reference (`sameface.eval.style`): a method that
learns from one gets it; every other row gets the style in words, and records carry
`leak_similarity`, the face's similarity to the reference's face.
"""

from __future__ import annotations

import os
import resource
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from .. import __version__
from ..errors import SamefaceError
from ..fileio import append_jsonl, child_path, write_json_atomic
from ..locks import LOCK_FILE, FolderLock
from .metrics import aggregate_score, mean_pairwise, neutral_prompt, normalise, score_face
from .provenance import run_licenses
from .records import RESULTS, done_keys, json_default, merge_results, read_results, record_key
from .style import STYLE_PLACEHOLDER, leakage, words_prompts
from .suite import Suite
from .variants import method_of, run_settings

BASELINE = "none"
KNOWN_BY_NAME = "known-by-name"
COPY_REFERENCE = "copy-reference"
EXTRA_BASELINES = (KNOWN_BY_NAME, COPY_REFERENCE)
"""Optional baselines, in the order they run and are reported (after "none")."""


@dataclass
class Evaluator:
    """The models that score generations; they are named in the report.

    Attributes:
        analyzer: `FaceAnalyzer` with the evaluator recogniser (should differ from the one a
            method conditions on).
        clip: a `ClipScorer`.
        context: optional context classifier (`predict(list_of_rgb) -> list[dict]`, e.g. the
            miniature world's); when given, every image record gets `context_predicted` and
            `context_accuracy` (the fraction of the attributes the prompt asks for that the
            image shows; None when the prompt asks for none).
    """

    analyzer: Any
    clip: Any
    context: Any = None


@dataclass
class BenchSettings:
    """What to run.

    Attributes:
        methods: the rows to run: registered method names and `method@variant` labels whose
            settings the suite declares (the baseline is added automatically).
        base_spec: how the base model was given (recorded).
        method_settings: per-method (or per-label) config overrides, on top of the suite's.
        method_defaults: per-method settings under the suite's (e.g. a method's settings for
            the proving-ground world, `MethodSpec.world_settings`).
        bank: celebrity bank for textual inversion's id init, or None.
        identity_recognizer: recogniser the identities are built with (what methods condition
            on); its name when `identity_analyzer` is given.
        identity_analyzer: a ready `FaceAnalyzer` to build identities with (e.g. the world's);
            None = `FaceAnalyzer(identity_recognizer)`.
        identity_square_expand: the identities' square crops (what textual inversion trains
            on): the face box expanded this much, or None for the whole image.
        known_people: (name, reference photo paths) of people the base model knows by name,
            for the "known-by-name" baseline (suite identity i is paired with person i, cycled).
        extra_baselines: any of `EXTRA_BASELINES` ("known-by-name", "copy-reference").
    """

    methods: list[str]
    base_spec: str = ""
    method_settings: dict = field(default_factory=dict)
    method_defaults: dict = field(default_factory=dict)
    bank: Any = None
    identity_recognizer: str = "sface"
    identity_analyzer: Any = None
    identity_square_expand: float | None = 1.1
    known_people: list[tuple[str, list]] | None = None
    extra_baselines: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        unknown = [b for b in self.extra_baselines if b not in EXTRA_BASELINES]
        if unknown:
            raise ValueError(
                f"unknown baseline(s) {', '.join(unknown)}; choose from {', '.join(EXTRA_BASELINES)}"
            )
        if KNOWN_BY_NAME in self.extra_baselines and not self.known_people:
            raise ValueError(f"the {KNOWN_BY_NAME!r} baseline needs known_people")
        # Always in the reported order, whatever order they were given in.
        self.extra_baselines = tuple(b for b in EXTRA_BASELINES if b in self.extra_baselines)

    def row_values(self, run: Any, training_seed: int | None, suite: Suite) -> dict:
        """A row's config values: these defaults, the suite's, then these overrides
        (`sameface.eval.variants.run_settings`)."""
        return run_settings(
            run,
            training_seed,
            defaults=self.method_defaults,
            suite=suite.methods,
            overrides=self.method_settings,
        )


def run_benchmark(
    suite: Suite,
    base: Any,
    out_dir: str | os.PathLike,
    evaluator: Evaluator,
    settings: BenchSettings,
    *,
    progress: bool = True,
    process_index: int = 0,
    num_processes: int = 1,
    wait_fn: Any = None,
) -> Path:
    """Run (or resume) a benchmark and return the folder holding `results.jsonl`.

    Args:
        suite: the protocol.
        base: the `BaseModel` every method runs on.
        out_dir: run folder (images, artifacts, results, report).
        evaluator: scoring models.
        settings: methods and their settings.
        progress: show progress bars.
        process_index, num_processes: this process's shard (identities are split round-robin).
        wait_fn: called after this shard's work, to wait for the others (accelerate).
    """
    from ..methods import get_method
    from .variants import method_runs

    out = Path(out_dir)
    # One run per folder (per shard): a second run would redo and interleave this one's work.
    lock_file = LOCK_FILE if num_processes == 1 else f".sameface.{process_index}.lock"
    _lock = FolderLock(out, "sameface bench", lock_file=lock_file).acquire()
    specs = {m: get_method(m) for m in {method_of(label) for label in settings.methods}}
    runs = method_runs(
        settings.methods,
        suite.methods,
        training_seeds=suite.training_seeds,
        optimises={m: spec.kind == "optimisation" for m, spec in specs.items()},
    )
    if process_index == 0:
        write_json_atomic(
            out / "run.json",
            _run_meta(suite, evaluator, settings, runs, specs)
            | {"licenses": run_licenses(settings, evaluator, runs, specs, suite)},
            default=json_default,
        )
    part = out / (RESULTS if num_processes == 1 else f"results.part{process_index}.jsonl")
    done = done_keys(out)
    mine = [i for i in range(len(suite.identities)) if i % num_processes == process_index]
    _check_style_references(suite, mine, evaluator)  # now, not hours into the run
    for index in _bar(mine, progress, "identities"):
        _run_identity(index, suite, base, out, evaluator, settings, runs, part, done, progress)
    if num_processes > 1:
        if wait_fn is not None:
            wait_fn()
        if process_index == 0:
            merge_results(out)
    return out


@dataclass
class _Scorer:
    """Scores one identity's images and records them (skipping those already recorded)."""

    suite: Suite
    out: Path
    part: Path
    done: set
    evaluator: Evaluator
    identity: str
    reference: np.ndarray
    ref_clip: np.ndarray
    norms: dict
    baseline: dict
    style: Any = None  # the identity's StyleReference, when the prompts name `<style>`
    written: list[str] | None = None  # the prompts as the suite writes them (with `<style>`)
    leak: np.ndarray | None = None  # the style reference's face embedding

    def add(
        self,
        method,
        pi,
        seed,
        img,
        secs,
        path,
        *,
        reference=None,
        norms=None,
        extra=None,
        training_seed=None,
    ):
        """Score `img` (made for prompt `pi` and `seed`) against `reference` and record it."""
        ref = self.reference if reference is None else reference
        rec = _score(img, self.suite.prompts[pi], self.suite, ref, self.evaluator, self.leak)
        rec |= {"image_path": path, "gen_time_s": secs, "extra": extra or {}}
        emb = self.evaluator.clip.image_embeddings([img])[0]
        rec["clip_i"] = float(emb @ self.baseline[(pi, seed)]["clip_emb"])
        args = (self.suite, pi, seed, rec, self.ref_clip, norms or self.norms, self.out)
        _record(self.part, self.done, method, self.identity, *args, training_seed=training_seed)


def _run_identity(index, suite, base, out, evaluator, settings, runs, part, done, progress) -> None:
    ident = suite.identities[index]
    identity = _identity(ident, out, settings)
    # With a style reference, the rows without one (and the scores) see its words.
    written, suite = suite.prompts, _words_suite(suite, ident)
    leak = None
    if ident.style is not None:
        leak = evaluator.analyzer.analyze(ident.style.image, strict=True).embedding

    # Reference: the evaluator's embedding of each photo, their mean, and their face crops.
    reference, self_sim = _reference_embedding(evaluator, ident.photos)
    ref_crops = list(identity.squares)
    ref_clip = evaluator.clip.image_embeddings(ref_crops)
    if ("reference", ident.name) not in done:
        paths = []
        for k, crop in enumerate(ref_crops):
            paths.append(
                _save_image(crop, child_path(out / "references", f"{ident.name}_{k}.png"), out)
            )
        append_jsonl(
            part,
            {
                "type": "reference",
                "identity": ident.name,
                "images": paths,
                "self_similarity": self_sim,
            },
            default=json_default,
        )

    # The baseline first: its images anchor CLIP-I and the normalisation.
    base_pipe = baseline_pipeline(base)
    baseline: dict[tuple[int, int], dict] = {}
    for pi, prompt in enumerate(suite.prompts):
        for seed in suite.seeds:
            path = _image_path(out, BASELINE, ident.name, pi, seed)
            img, secs = _cached_or_generate(
                path,
                _generate,
                base_pipe,
                base,
                suite,
                neutral_prompt(prompt, suite.placeholder),
                seed,
            )
            baseline[(pi, seed)] = _score(img, prompt, suite, reference, evaluator, leak) | {
                "image_path": path,
                "gen_time_s": secs,
                "clip_emb": evaluator.clip.image_embeddings([img])[0],
            }
    norms = _normalisers(suite, baseline, self_sim, ref_clip, evaluator)
    for (pi, seed), rec in baseline.items():
        _record(part, done, BASELINE, ident.name, suite, pi, seed, rec, ref_clip, norms, out)

    scorer = _Scorer(
        suite, out, part, done, evaluator, ident.name, reference, ref_clip, norms, baseline,
        ident.style, written, leak,
    )  # fmt: skip
    if KNOWN_BY_NAME in settings.extra_baselines:
        person = settings.known_people[index % len(settings.known_people)]
        _run_known_by_name(scorer, person, base_pipe, base)
    if COPY_REFERENCE in settings.extra_baselines:
        _run_copy_reference(scorer, ident.photos)

    for run in runs:
        for training_seed in run.training_seeds:
            _run_method(run, training_seed, identity, scorer, base, settings, progress)


def _run_method(run, training_seed, identity, scorer: _Scorer, base, settings, progress) -> None:
    """Personalise one row (at one training seed) for the scorer's identity, generate, score."""
    from ..methods import get_method

    method = get_method(run.method)
    suite, out, name = scorer.suite, scorer.out, scorer.identity
    # A method that learns from a style reference gets it, and the prompts naming `<style>`.
    styled = scorer.style is not None and method.style_field is not None
    art = child_path(out / "artifacts", run.label, name, *_seed_folder(training_seed))
    if ("personalize", run.label, name, training_seed) not in scorer.done:
        values = settings.row_values(run, training_seed, suite)
        if styled:  # the reference, named in the prompts by the suite's word
            values[method.style_field] = str(scorer.style.image)
            if "style_placeholder" in getattr(method.config_cls, "__dataclass_fields__", {}):
                values["style_placeholder"] = STYLE_PLACEHOLDER
        t0 = time.perf_counter()
        _reset_peak_memory(base)
        method.personalize(
            identity,
            base,
            method.config_cls(**values),
            art,
            base_spec=settings.base_spec,
            bank=settings.bank,
            progress=progress,
        )
        rec = {
            "type": "personalize",
            "method": run.label,
            "identity": name,
            "time_s": time.perf_counter() - t0,
            "peak_mem_mb": _peak_memory_mb(base),
        }
        if training_seed is not None:
            rec["training_seed"] = training_seed
        append_jsonl(scorer.part, rec, default=json_default)
        scorer.done.add(record_key(rec))
    with method.pipeline_cls.from_artifact(art, base) as pipe:
        for pi, prompt, seed in _cells(suite):
            if (run.label, name, pi, seed, training_seed) in scorer.done:
                continue
            prompt = scorer.written[pi] if styled else prompt
            path = _image_path(out, run.label, name, pi, seed, training_seed)
            img, secs = _cached_or_generate(path, _generate, pipe, base, suite, prompt, seed)
            extra = {} if training_seed is None else {"training_seed": training_seed}
            if styled:
                extra["generation_prompt"] = prompt
            scorer.add(
                run.label, pi, seed, img, secs, path, extra=extra, training_seed=training_seed
            )


def _check_style_references(suite: Suite, mine: list[int], evaluator: Evaluator) -> None:
    """Every style reference of this shard shows a face the evaluator finds (else a clear
    error naming the identity, before any work)."""
    for i in mine:
        ident = suite.identities[i]
        if ident.style is not None:
            try:
                evaluator.analyzer.analyze(ident.style.image, strict=True)
            except SamefaceError as e:
                raise SamefaceError(f"identity {ident.name!r}: style reference: {e}") from None


def _words_suite(suite: Suite, ident: Any) -> Suite:
    """The suite as the identity's rows without a style reference see it: every prompt naming
    `<style>` replaced by the reference in words (the suite itself without a reference)."""
    if ident.style is None:
        return suite
    people = [replace(i, style=None) for i in suite.identities]
    return replace(suite, prompts=words_prompts(suite.prompts, ident.style), identities=people)


def _identity(ident, out: Path, settings: BenchSettings) -> Any:
    """The suite identity's `Identity`, built once and cached in the run folder."""
    from ..faces import FaceAnalyzer
    from ..identity import Identity

    id_dir = child_path(out / "identities", ident.name, what="identity name")
    try:
        return Identity.load(id_dir)
    except SamefaceError:
        pass
    analyzer = settings.identity_analyzer
    if analyzer is None:
        analyzer = FaceAnalyzer(settings.identity_recognizer)
    identity = Identity.from_images(
        ident.photos, analyzer=analyzer, square_expand=settings.identity_square_expand
    )
    identity.save(id_dir, overwrite=True)
    return identity


def _reference_embedding(evaluator: Evaluator, photos: list) -> tuple[np.ndarray, float | None]:
    """(unit mean of the evaluator's embeddings of `photos`, their mean pairwise similarity)."""
    embs = np.stack([evaluator.analyzer.analyze(p, strict=True).embedding for p in photos])
    mean = embs.mean(0)
    return mean / np.linalg.norm(mean), mean_pairwise(embs)


def _cells(suite: Suite):
    """(prompt index, prompt, seed) for every image of an identity."""
    for pi, prompt in enumerate(suite.prompts):
        for seed in suite.seeds:
            yield pi, prompt, seed


def _seed_folder(training_seed: int | None) -> tuple[str, ...]:
    """The sub-folder of one training seed's images and artifact (none without seeds)."""
    return () if training_seed is None else (f"training-seed-{training_seed}",)


def _image_path(
    out: Path, method: str, identity: str, pi: int, seed: int, training_seed: int | None = None
) -> Path:
    parts = (method, identity, *_seed_folder(training_seed), f"p{pi:02d}_s{seed}.png")
    return child_path(out / "images", *parts)


def _run_copy_reference(scorer: _Scorer, photos: list) -> None:
    """The "copy-reference" baseline: reference photo (seed mod #photos), scored as generated."""
    from ..imageio import load_image

    for pi, _prompt, seed in _cells(scorer.suite):
        if (COPY_REFERENCE, scorer.identity, pi, seed, None) in scorer.done:
            continue
        path = _image_path(scorer.out, COPY_REFERENCE, scorer.identity, pi, seed)
        photo = photos[seed % len(photos)]
        img, _ = _cached_or_generate(path, load_image, photo)
        extra = {"reference_photo": Path(photo).name}
        scorer.add(COPY_REFERENCE, pi, seed, img, None, path, extra=extra)


def _run_known_by_name(scorer: _Scorer, person: tuple[str, list], pipe: Any, base: Any) -> None:
    """The "known-by-name" baseline: the base model given a known person's name.

    Face similarity is against that person's reference photos, normalised between the
    no-identity images' similarity to them and their self-similarity.
    """
    suite, evaluator = scorer.suite, scorer.evaluator
    name, photos = person
    cells = [
        c
        for c in _cells(suite)
        if (KNOWN_BY_NAME, scorer.identity, c[0], c[2], None) not in scorer.done
    ]
    if not cells:
        return
    reference, self_sim = _reference_embedding(evaluator, list(photos))
    norms = {}
    for pi in range(len(suite.prompts)):
        recs = [r for (p, _), r in scorer.baseline.items() if p == pi]
        floor = [
            0.0 if r["face"].embedding is None else float(r["face"].embedding @ reference)
            for r in recs
        ]
        norms[pi] = scorer.norms[pi] | {
            "id": (float(np.mean(floor)), 1.0 if self_sim is None else self_sim)
        }
    for pi, prompt, seed in cells:
        text = prompt.replace(suite.placeholder, name)
        path = _image_path(scorer.out, KNOWN_BY_NAME, scorer.identity, pi, seed)
        img, secs = _cached_or_generate(path, _generate, pipe, base, suite, text, seed)
        extra = {"known_person": name, "generation_prompt": text}
        scorer.add(
            KNOWN_BY_NAME, pi, seed, img, secs, path, reference=reference, norms=norms, extra=extra
        )


def _score(
    img: np.ndarray,
    prompt: str,
    suite: Suite,
    reference: np.ndarray,
    evaluator: Evaluator,
    leak: np.ndarray | None = None,
) -> dict:
    """Face similarity, CLIP-T and the face crop's CLIP embedding of one generated image (and
    its face's similarity to a style reference's face `leak`, when given)."""
    face = score_face(evaluator.analyzer, img, reference)
    text = evaluator.clip.text_embeddings([neutral_prompt(prompt, suite.placeholder)])[0]
    clip_t = float(evaluator.clip.image_embeddings([img])[0] @ text)
    face_clip = evaluator.clip.image_embeddings([face.crop])[0] if face.crop is not None else None
    out = {"face": face, "clip_t": clip_t, "face_clip": face_clip}
    if leak is not None:
        out["leak_similarity"] = leakage(face, leak)
    if evaluator.context is not None:
        out |= _score_context(img, prompt, suite, evaluator.context)
    return out


def _score_context(img: np.ndarray, prompt: str, suite: Suite, classifier: Any) -> dict:
    """What the context classifier sees, and the fraction of the prompt's asked attributes shown."""
    from ..world.captions import parse_caption
    from ..world.faces import context_accuracy

    predicted = classifier.predict([img])[0]
    _, asked = parse_caption(neutral_prompt(prompt, suite.placeholder))
    return {
        "context_predicted": predicted,
        "context_asked": asked,
        "context_accuracy": context_accuracy(predicted, asked),
    }


def _normalisers(
    suite: Suite, baseline: dict, self_sim: float | None, ref_clip: np.ndarray, evaluator: Evaluator
) -> dict:
    """Per prompt (min, max) of face similarity and CLIP-T (seed 002, appendix).

    Face: max = self-similarity of the reference photos (1 for a single photo), min = the
    base images' similarity to them. Text: max = the base images' CLIP-T, min = the
    reference photos' CLIP-T for the same prompt.
    """
    out = {}
    for pi, prompt in enumerate(suite.prompts):
        recs = [r for (p, _), r in baseline.items() if p == pi]
        id_min = float(np.mean([r["face"].with_misses for r in recs]))
        text = evaluator.clip.text_embeddings([neutral_prompt(prompt, suite.placeholder)])[0]
        text_min = float(np.mean(ref_clip @ text))
        text_max = float(np.mean([r["clip_t"] for r in recs]))
        out[pi] = {
            "id": (id_min, 1.0 if self_sim is None else self_sim),
            "text": (text_min, text_max),
        }
    return out


def _record(
    part, done, method, identity, suite, pi, seed, rec, ref_clip, norms, out, training_seed=None
) -> None:
    if (method, identity, pi, seed, training_seed) in done:
        return
    face = rec["face"]
    # Face CLIP-I (seed 002): CLIP similarity of the generated face crop to the reference crops.
    face_clip_i = None if rec["face_clip"] is None else float(np.mean(ref_clip @ rec["face_clip"]))
    n = norms[pi]
    row = {
        "type": "image",
        "method": method,
        "identity": identity,
        "prompt": suite.prompts[pi],
        "prompt_index": pi,
        "seed": seed,
        "image": str(Path(rec["image_path"]).relative_to(out)),
        "face_detected": face.detected,
        "face_similarity": face.similarity,
        "face_similarity_with_misses": face.with_misses,
        "clip_t": rec["clip_t"],
        "clip_i": rec.get("clip_i"),
        "face_clip_i": face_clip_i,
        "id_norm": normalise(face.with_misses, *n["id"]),
        "text_norm": normalise(rec["clip_t"], *n["text"]),
        "aggregate": aggregate_score(rec["clip_t"], face.with_misses),
        "gen_time_s": rec["gen_time_s"],
    }
    keys = ("context_accuracy", "context_predicted", "context_asked", "leak_similarity")
    row |= {k: rec[k] for k in keys if k in rec}
    row |= rec.get("extra") or {}
    append_jsonl(part, row, default=json_default)
    done.add((method, identity, pi, seed, training_seed))


def baseline_pipeline(base: Any) -> Any:
    """The base model as a diffusers pipeline with the DDIM sampler the method pipelines
    use, so the same seed starts the same way (the no-identity images)."""
    from diffusers import DDIMScheduler

    pipe = base.as_pipeline(scheduler=DDIMScheduler.from_config(base.scheduler.config))
    pipe.set_progress_bar_config(disable=True)
    return pipe


def _generator(seed: int) -> Any:
    import torch

    return torch.Generator(device="cpu").manual_seed(seed)  # CPU: the same image on any device


def _guidance(suite: Suite, base: Any) -> float:
    return (
        suite.guidance_scale if suite.guidance_scale is not None else (5.0 if base.is_sdxl else 7.5)
    )


def _generate(pipe: Any, base: Any, suite: Suite, prompt: str, seed: int) -> np.ndarray:
    """One image with the suite's sampler settings; the same seed gives the same starting noise for every method."""
    size = suite.resolution or base.resolution
    out = pipe(
        prompt=prompt,
        negative_prompt=suite.negative_prompt,
        num_inference_steps=suite.num_inference_steps,
        guidance_scale=_guidance(suite, base),
        generator=_generator(seed),
        height=size,
        width=size,
        output_type="np",
    )
    return _to_uint8(out.images[0])


def _to_uint8(img: Any) -> np.ndarray:
    return (np.asarray(img) * 255).round().clip(0, 255).astype(np.uint8)


def _cached_or_generate(path: Path, make, *args) -> tuple[np.ndarray, float | None]:
    """The image at `path` if an earlier run made it, else generate and save it (with its time)."""
    from ..imageio import load_image

    if path.is_file():
        try:
            return load_image(path), None
        except SamefaceError:
            pass  # a damaged cache file: make it again
    t0 = time.perf_counter()
    img = make(*args)
    secs = time.perf_counter() - t0
    _save_image(img, path, None)
    return img, secs


def _save_image(img: np.ndarray, path: Path, root: Path | None) -> str:
    from ..imageio import save_image_atomic

    save_image_atomic(img, path)
    return str(path.relative_to(root)) if root is not None else str(path)


def _reset_peak_memory(base: Any) -> None:
    import torch

    if str(base.device).startswith("cuda"):
        torch.cuda.reset_peak_memory_stats(base.device)


def _peak_memory_mb(base: Any) -> float:
    """Peak GPU memory of the personalisation on CUDA; the process's peak RSS so far on CPU."""
    import torch

    if str(base.device).startswith("cuda"):
        return torch.cuda.max_memory_allocated(base.device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _run_meta(
    suite: Suite, evaluator: Evaluator, settings: BenchSettings, runs: list, specs: dict
) -> dict:
    rec = evaluator.analyzer.recognizer
    context = evaluator.context
    return {
        "suite": suite.name,
        "suite_file": str(suite.path) if suite.path else None,
        "description": suite.description,
        "base": settings.base_spec,
        "methods": [BASELINE, *settings.extra_baselines] + [r.label for r in runs],
        # Each row's registered method and training seeds (a variant's settings are in the
        # protocol's `methods`).
        "rows": {
            r.label: {"method": r.method, "training_seeds": list(r.training_seeds)} for r in runs
        },
        "baselines": [BASELINE, *settings.extra_baselines],
        "evaluator": {
            "recognizer": rec.describe(),
            "clip": evaluator.clip.name,
            "context": None
            if context is None
            else getattr(context, "name", type(context).__name__),
        },
        # Textual inversion conditions on no face model; encoder methods and methods with an
        # ID loss name theirs.
        "conditioning_recognizers": {
            r.label: (
                settings.identity_recognizer
                if specs[r.method].kind == "encoder" or specs[r.method].uses_recognizer
                else None
            )
            for r in runs
        },
        "identity_recognizer": settings.identity_recognizer,
        "identity_square_expand": settings.identity_square_expand,
        "known_people": [name for name, _ in settings.known_people or []]
        if KNOWN_BY_NAME in settings.extra_baselines
        else None,
        "protocol": suite.to_dict()
        | {
            "method_settings": settings.method_settings,
            "method_defaults": settings.method_defaults,
        },
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "sameface_version": __version__,
    }


def _bar(items: list, progress: bool, desc: str):
    from tqdm.auto import tqdm

    return tqdm(items, desc=desc, disable=None if progress else True)


__all__ = [  # the run folder's records live in `records`; read them from either module
    "BASELINE",
    "EXTRA_BASELINES",
    "BenchSettings",
    "Evaluator",
    "baseline_pipeline",
    "merge_results",
    "read_results",
    "record_key",
    "run_benchmark",
]
