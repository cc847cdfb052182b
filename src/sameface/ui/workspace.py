"""The web UI's work, without gradio: each browser session's folder, its identities,
personalisation, generation, export and complete deletion, within server-side limits.

The calls are the public API's (`Identity`, the method registry, the pipelines'
`from_artifact`), as the CLI makes them. A session's folder holds everything it writes:

    DATA/sessions/<session>/uploads/                 photos while they are inspected
    DATA/sessions/<session>/previews/                the last look's photos with faces boxed
    DATA/sessions/<session>/people/<name>/identity/  the `Identity`
    DATA/sessions/<session>/people/<name>/<method>/  the method's artifact (and checkpoints)
    DATA/sessions/<session>/people/<name>/images/    generated images, each with its settings
    DATA/sessions/<session>/people/<name>/previews/  its photos with faces boxed
    DATA/sessions/<session>/exports/<name>/          zipped artifacts for download
"""

from __future__ import annotations

import json
import os
import re
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import SamefaceError, TrainingError, UsageError
from .files import prune, purge_copies, sha256, zip_folder
from .photos import PhotoReport, remove, upload_name

PEOPLE = "people"
IDENTITY = "identity"
IMAGES = "images"
PREVIEWS = "previews"
_SESSION = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
_PERSON = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,47}$")


@dataclass(frozen=True)
class Limits:
    """Server-side bounds on one request (checked before anything is decoded or computed).

    Attributes:
        max_photos: photos in one identity.
        max_upload_mb: size of one uploaded file.
        max_pixels: pixels of one photo (read from its header, before decoding).
        max_images: images in one generation request (prompts × seeds, "without" included).
        max_steps: sampling steps of one generation.
        max_side: height or width of a generated image.
    """

    max_photos: int = 8
    max_upload_mb: float = 20.0
    max_pixels: int = 25_000_000
    max_images: int = 16
    max_steps: int = 150
    max_side: int = 1024


@dataclass
class Generated:
    """One generated image and the settings that made it."""

    path: Path
    settings: dict

    @property
    def caption(self) -> str:
        s = self.settings
        who = "without the person" if s.get("without_person") else s["method"]
        return f"{who} · seed {s['seed']} · {s['prompt']}"


class Workspace:
    """Per-session folders under one data folder, over one `Backend`.

    Args:
        data_dir: where every session's folder lives (nothing is written outside it).
        backend: the model the sessions share.
        limits: request bounds.
        reports_dirs: folders searched for bench reports (`report.html`).
        upload_root: where the server receives uploads (gradio's cache): uploads are taken
            from there only, and copies of a person's files there go with the person. None
            (library use): any path the caller gives.
    """

    def __init__(
        self,
        data_dir: str | os.PathLike,
        backend: Any,
        limits: Limits | None = None,
        reports_dirs: list[str | os.PathLike] | None = None,
        upload_root: str | os.PathLike | None = None,
    ) -> None:
        self.root = Path(data_dir).resolve()
        self.root.mkdir(parents=True, exist_ok=True)
        self.backend = backend
        self.limits = limits or Limits()
        self.reports_dirs = [Path(d).resolve() for d in reports_dirs or []]
        for d in self.reports_dirs:
            if not d.is_dir():
                raise UsageError(f"--reports {d}: no such folder")
        self.upload_root = Path(upload_root).resolve() if upload_root else None
        self._running: dict[str, Any] = {}  # session -> its training's StepWatcher

    # -- folders -------------------------------------------------------------------------------

    def browser_secret(self) -> str:
        """The key browsers' stored session tokens are encrypted with: made once, kept in the
        data dir (readable by its owner only), so a restarted server knows its browsers."""
        import secrets

        from ..fileio import write_text_atomic

        path = self.root / "browser-secret"
        if not path.is_file():
            write_text_atomic(path, secrets.token_hex(32))
            path.chmod(0o600)
        return path.read_text().strip()

    def session(self, session_id: str) -> Path:
        """The session's folder (made on first use)."""
        if session_id == "":
            raise UsageError("the page is still loading (no session yet): try again in a moment")
        if not isinstance(session_id, str) or not _SESSION.match(session_id):
            raise UsageError("not a valid session")
        folder = self.root / "sessions" / session_id
        folder.mkdir(parents=True, exist_ok=True)
        return folder

    def person(self, session_id: str, name: str) -> Path:
        """A person's folder in a session (checked name; not made)."""
        from ..fileio import child_path

        name = (name or "").strip()
        if not _PERSON.match(name):
            raise UsageError(
                "a name is 1–48 letters, digits, '_', '-' or '.', starting with a letter or digit"
            )
        return child_path(self.session(session_id) / PEOPLE, name, what="name")

    def new_person(self, session_id: str, name: str) -> Path:
        """The folder for a new person; refuses a bad or taken name."""
        folder = self.person(session_id, name)
        if folder.exists():
            raise UsageError(f"{name} exists already: choose another name or delete it first")
        return folder

    def _existing(self, session_id: str, name: str) -> Path:
        folder = self.person(session_id, name)
        if not (folder / IDENTITY).is_dir():
            raise UsageError(f"no person named {name} (save their photos as an identity first)")
        return folder

    def people(self, session_id: str) -> list[dict]:
        """The session's people: name, photos, and the methods personalised for each."""
        from ..methods import artifact_method

        root = self.session(session_id) / PEOPLE
        out = []
        for d in sorted(root.iterdir()) if root.is_dir() else []:
            if not (d / IDENTITY / "identity.json").is_file():
                continue
            meta = json.loads((d / IDENTITY / "identity.json").read_text())
            methods = sorted(
                m for m in (artifact_method(a) for a in d.iterdir() if a.is_dir()) if m
            )
            images = len(list((d / IMAGES).glob("*.png"))) if (d / IMAGES).is_dir() else 0
            out.append(
                {
                    "name": d.name,
                    "photos": len(meta.get("photos") or []),
                    "methods": methods,
                    "images": images,
                }
            )
        return out

    # -- photos -> identity ----------------------------------------------------------------------

    def take_uploads(
        self, session_id: str, paths: list[str | os.PathLike], *, move: bool = True
    ) -> list[Path]:
        """Check uploaded files against the limits and bring them into the session's uploads
        folder: moved (the server's temporary copy is removed), or copied for a look that
        leaves the upload in place. Refused uploads are removed. Returns the session's files."""
        from .photos import bring_in

        dest = self.session(session_id) / "uploads" / f"{time.time_ns():x}"
        return bring_in(paths, dest, self.limits, move=move, root=self.upload_root)

    def preview(
        self, session_id: str, photos: list[Path], choices: list[int | None] | None = None
    ) -> tuple[list[PhotoReport], list[int], list[Path]]:
        """`inspect`, with each boxed photo written to the session's previews folder (the
        previous look's previews are removed; saving the identity keeps these with it, so
        deleting the person removes them and their served copies).

        Returns:
            (reports, outliers, the preview files in photo order)
        """
        from ..imageio import save_image_atomic

        reports, outliers = self.inspect(photos, choices)
        folder = self.session(session_id) / PREVIEWS
        if folder.is_dir() and self.upload_root is not None:  # the last look's served copies
            purge_copies([self.upload_root], {sha256(f) for f in folder.glob("*.png")})
        shutil.rmtree(folder, ignore_errors=True)
        paths = [save_image_atomic(r.boxed, folder / f"{i:02d}.png") for i, r in enumerate(reports)]
        return reports, outliers, paths

    def inspect(
        self, photos: list[Path], choices: list[int | None] | None = None
    ) -> tuple[list[PhotoReport], list[int]]:
        """Every photo's faces (boxed), the chosen face's warnings, and which photos look like
        someone else than the rest (indices)."""
        from .photos import inspect_photos

        return inspect_photos(self.backend.analyzer, photos, choices)

    def create_identity(
        self,
        session_id: str,
        name: str,
        photos: list[Path],
        choices: list[int | None] | None = None,
    ) -> Any:
        """Build and save a person's `Identity`; the uploaded photos are then removed (the
        identity keeps its crops and embeddings, not the photos)."""
        from ..identity import Identity

        folder = self.new_person(session_id, name)
        try:
            identity = Identity.from_images(
                [str(p) for p in photos],
                analyzer=self.backend.analyzer,
                face_choices=choices,
                **self.backend.identity_options(),
            )
            identity.save(folder / IDENTITY)
            previews = self.session(session_id) / PREVIEWS
            if previews.is_dir():
                shutil.rmtree(folder / PREVIEWS, ignore_errors=True)
                shutil.move(str(previews), folder / PREVIEWS)
        except (SamefaceError, ValueError) as e:  # name the photos as uploaded, no server paths
            message = str(e)
            for p in photos:
                message = message.replace(str(p), upload_name(p))
            raise UsageError(message) from None
        finally:
            for p in photos:
                remove(p)
            prune(self.session(session_id) / "uploads")
        return identity

    # -- methods ---------------------------------------------------------------------------------

    def personalize(
        self,
        session_id: str,
        name: str,
        method: str,
        settings: dict[str, Any],
        *,
        adapter: str | None = None,
        on_step: Any = None,
        resume: bool = True,
    ) -> Path:
        """Personalise `method` for a saved person (training resumes from its checkpoint).

        Args:
            settings: the form's raw values (checked and typed with the config's fields).
            adapter: encoder methods: the trained folder (default: the only one there is).
            on_step: called after each training step with (step, total, recent loss).

        Raises:
            UsageError: bad settings (every problem in one message), a method that cannot
                run here, or an unknown person.
            TrainingError: cancelled (`cancel`): the checkpoint is kept; running again resumes.
        """
        from ..identity import Identity
        from ..methods import get_method
        from ..training.observe import StepWatcher, watching
        from .forms import parse_settings

        spec = get_method(method)
        why = self.backend.methods().get(spec.name)
        if why:
            raise UsageError(why)
        defaults = self.backend.defaults(spec.name)
        if spec.kind == "encoder":
            choices = self.backend.adapters(spec.name)
            if adapter is None and choices:
                adapter = choices[0]
            if adapter not in choices:
                raise UsageError(f"{adapter}: not a trained {spec.name} folder offered here")
            defaults = defaults | {"adapter": adapter}
        config, problems = parse_settings(spec.name, spec.config_cls, settings, defaults)
        if problems:
            raise UsageError("; ".join(problems))
        person = self._existing(session_id, name)
        identity = Identity.load(person / IDENTITY)
        bank = None
        if getattr(config, "celeb_bank", None):
            from ..data.celebs import CelebrityBank

            bank = CelebrityBank.load(config.celeb_bank)
        out = person / spec.name
        reached = [0, 0]

        def step(i: int, total: int, loss: float) -> None:
            reached[:] = [i, total]
            if on_step is not None:
                on_step(i, total, loss)

        watcher = StepWatcher(on_step=step)
        self._running[session_id] = watcher
        try:
            with self.backend.lock, watching(watcher):
                spec.personalize(
                    identity,
                    self.backend.base,
                    config,
                    out,
                    base_spec=self.backend.base_source,
                    bank=bank,
                    resume=resume,
                    progress=False,
                )
        except TrainingError:
            if not watcher.stop.is_set():
                raise
            raise TrainingError(
                f"cancelled at step {reached[0]}/{reached[1]}; the checkpoint is kept: "
                "personalising again resumes from it"
            ) from None
        finally:
            self._running.pop(session_id, None)
        return out

    def cancel(self, session_id: str) -> bool:
        """Ask the session's running personalisation to stop after its current step (the
        checkpoint is kept). False when nothing is running."""
        watcher = self._running.get(session_id)
        if watcher is None:
            return False
        watcher.stop.set()
        return True

    def generate(
        self,
        session_id: str,
        name: str,
        method: str,
        prompts: list[str],
        *,
        seeds: list[int],
        negative_prompt: str | None = None,
        num_inference_steps: int | None = None,
        guidance_scale: float | None = None,
        options: dict[str, Any] | None = None,
        without_person: bool = False,
        height: int | None = None,
        width: int | None = None,
    ) -> list[Generated]:
        """Images of a personalised person, one per prompt and seed (and, on request, the
        base model's image of the same prompt and seed with "a person" instead).

        Args:
            options: the method's extra call arguments (`MethodSpec.generate_options`, e.g.
                an ID strength); others are refused.
        """
        import torch

        from ..eval.metrics import neutral_prompt
        from ..eval.runner import baseline_pipeline
        from ..imageio import save_image_atomic
        from ..methods import artifact_method, get_method

        spec = get_method(method)
        person = self._existing(session_id, name)
        art = person / spec.name
        if artifact_method(art) != spec.name:
            raise UsageError(f"{name} is not personalised with {spec.name} yet")
        prompts = [p.strip() for p in prompts if p and p.strip()]
        seeds = list(seeds)
        options = {k: v for k, v in (options or {}).items() if v is not None}
        self._check_request(
            spec, prompts, seeds, num_inference_steps, height, width, options, without_person
        )
        call = {
            "negative_prompt": negative_prompt or None,
            "guidance_scale": guidance_scale,
            "height": height,
            "width": width,
        }
        if num_inference_steps:
            call["num_inference_steps"] = int(num_inference_steps)
        images_dir = person / IMAGES
        made: list[Generated] = []
        base = self.backend.base
        with self.backend.lock:
            with spec.pipeline_cls.from_artifact(art, base) as pipe:
                placeholder = getattr(pipe, "placeholder", "<id>")
                for prompt in prompts:
                    for seed in seeds:
                        out = pipe(
                            prompt,
                            **call,
                            **options,
                            generator=torch.Generator(device="cpu").manual_seed(int(seed)),
                            output_type="np",
                        )
                        made.append(
                            self._save(
                                images_dir,
                                out.images[0],
                                spec.name,
                                prompt,
                                seed,
                                call | options,
                                save_image_atomic,
                            )
                        )
            if without_person:
                plain = baseline_pipeline(base)
                paired = []
                for mine in made:  # side by side: each image, then the base model's
                    prompt, seed = mine.settings["prompt"], mine.settings["seed"]
                    out = plain(
                        neutral_prompt(prompt, placeholder),
                        **{k: v for k, v in call.items() if v is not None},
                        generator=torch.Generator(device="cpu").manual_seed(int(seed)),
                        output_type="np",
                    )
                    base_image = self._save(
                        images_dir,
                        out.images[0],
                        spec.name,
                        prompt,
                        seed,
                        call | {"without_person": True},
                        save_image_atomic,
                    )
                    paired += [mine, base_image]
                made = paired
        return made

    def _check_request(self, spec, prompts, seeds, steps, height, width, options, without):
        lim = self.limits
        if not prompts:
            raise UsageError("give at least one prompt")
        if not seeds:
            raise UsageError("give at least one seed")
        if any(not 0 <= int(seed) < 2**63 for seed in seeds):
            raise UsageError("seeds are whole numbers from 0 to 2^63 - 1")
        count = len(prompts) * len(seeds) * (2 if without else 1)
        if count > lim.max_images:
            raise UsageError(
                f"{count} images asked for (prompts × seeds{' × 2' if without else ''}); "
                f"the limit is {lim.max_images} a request"
            )
        if steps is not None and not 1 <= int(steps) <= lim.max_steps:
            raise UsageError(f"steps must be 1..{lim.max_steps}, got {steps}")
        for side, v in (("height", height), ("width", width)):
            if v is not None and not 8 <= int(v) <= lim.max_side:
                raise UsageError(f"{side} must be 8..{lim.max_side}, got {v}")
        unknown = sorted(set(options) - set(spec.generate_options))
        if unknown:
            raise UsageError(f"{spec.name} has no option {', '.join(unknown)}")

    @staticmethod
    def _save(folder, image, method, prompt, seed, call, save) -> Generated:
        pixels = (np.asarray(image) * 255).round().clip(0, 255).astype(np.uint8)
        settings = {"method": method, "prompt": prompt, "seed": int(seed)} | {
            k: v for k, v in call.items() if v is not None
        }
        stem = f"{time.time_ns():x}"
        path = save(pixels, folder / f"{stem}.png")
        from ..fileio import write_json_atomic

        write_json_atomic(folder / f"{stem}.json", settings)
        return Generated(path, settings)

    # -- export and deletion ------------------------------------------------------------------

    def export(self, session_id: str, name: str, method: str, *, webui: bool = False) -> Path:
        """A zip of a person's artifact for `method`: the sameface folder (checkpoints left
        out), or with `webui` the files AUTOMATIC1111 and ComfyUI load (`sameface export`:
        the words and LoRA only, named after the person, with a README of where they go)."""
        from ..methods import artifact_method, get_method

        spec = get_method(method)
        art = self._existing(session_id, name) / spec.name
        if artifact_method(art) != spec.name:
            raise UsageError(f"{name} has no {spec.name} artifact")
        exports = self.session(session_id) / "exports" / name
        if not webui:
            return zip_folder(art, exports / f"{name}-{spec.name}.zip", f"{name}-{spec.name}",
                              skip=("checkpoints",))  # fmt: skip
        from ..interop import export_artifact

        staging = exports / f"{name}-{spec.name}-webui"
        shutil.rmtree(staging, ignore_errors=True)
        try:
            word = re.sub(r"[^A-Za-z0-9_-]+", "_", name).strip("_-") or "identity"
            done = export_artifact(art, staging, name=word)
            (staging / "README.txt").write_text(done.usage() + "\n")
            return zip_folder(staging, exports / f"{name}-{spec.name}-webui.zip", word)
        finally:
            shutil.rmtree(staging, ignore_errors=True)

    def delete_person(self, session_id: str, name: str, also: list[Path] = ()) -> list[str]:
        """Remove everything written for a person: identity, artifacts, checkpoints, images,
        previews, exports, and every copy of any of those files or of their photos in the
        upload root (the server's file cache) and in `also`, matched by content. Returns what
        was removed (relative names)."""
        person = self.person(session_id, name)
        if not person.is_dir():
            raise UsageError(f"no person named {name}")
        exports = self.session(session_id) / "exports" / name
        mine = [f for d in (person, exports) if d.is_dir() for f in d.rglob("*") if f.is_file()]
        hashes = {sha256(f) for f in mine}
        meta = person / IDENTITY / "identity.json"
        if meta.is_file():
            for p in json.loads(meta.read_text()).get("photos") or []:
                if isinstance(p, dict) and isinstance(p.get("sha256"), str):
                    hashes.add(p["sha256"])
        removed = [str(f.relative_to(person.parent.parent)) for f in mine]
        shutil.rmtree(person)
        shutil.rmtree(exports, ignore_errors=True)
        roots = [self.upload_root] if self.upload_root is not None else []
        return removed + [
            f"cache/{p.name}" for p in purge_copies([*roots, *map(Path, also)], hashes)
        ]

    def reports(self) -> list[Path]:
        """Bench reports (`report.html`) under the report folders, newest first."""
        found = []
        for d in self.reports_dirs:
            found += [p for p in d.rglob("report.html") if p.is_file()]
        return sorted(found, key=lambda p: p.stat().st_mtime, reverse=True)

    def readable(self, error: Exception | str) -> str:
        """An error as the page and the API show it: one line, the data dir's path left out."""
        return str(error).replace(str(self.root), "(data)")
