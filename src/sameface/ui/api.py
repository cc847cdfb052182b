"""The UI's HTTP API: the same workspace calls as the page, as typed endpoints a script can
call with `gradio_client` (docs/ui.md). Errors come back as one readable line (`gr.Error`)."""

# No `from __future__ import annotations`: gradio reads these endpoints' type hints as objects.
import contextlib
from typing import Any

import gradio as gr

from ..errors import SamefaceError
from .files import gradio_cache, served_copy

_ERRORS = (SamefaceError, ValueError, OSError, KeyError)


@contextlib.contextmanager
def _readable(workspace: Any):
    """Expected failures reach the client as one line (`gr.Error`), not a traceback."""
    try:
        yield
    except _ERRORS as e:
        raise gr.Error(workspace.readable(e)) from None


def add_api(workspace: Any, model: dict) -> None:
    """Register the endpoints inside the current `gr.Blocks` (model work in `model`'s
    concurrency group)."""

    def create_identity(
        session: str, name: str, photos: list[gr.FileData], faces: list[int] | None = None
    ) -> dict:
        """Build and save a person's identity from photos; returns what was found."""
        with _readable(workspace):
            workspace.new_person(session, name)  # a bad name costs no upload
            if faces and len(faces) != len(photos):
                raise ValueError(f"{len(faces)} face numbers for {len(photos)} photo(s)")
            moved = workspace.take_uploads(session, [p["path"] for p in photos])
            try:
                reports, _ = workspace.inspect(moved, faces or None)
                bad = [f"{r.name}: {r.error}" for r in reports if r.error]
                if bad:
                    raise ValueError("; ".join(bad))
                identity = workspace.create_identity(session, name, moved, faces or None)
            finally:  # the identity keeps crops and embeddings, never the photos
                for p in moved:
                    p.unlink(missing_ok=True)
            return {
                "name": name,
                "photos": identity.num_photos,
                "outliers": identity.outliers,
                "warnings": [r.warnings for r in reports],
            }

    def personalize(
        session: str, name: str, method: str, settings: dict | None = None, adapter: str = ""
    ) -> str:
        """Personalise a saved person with a method (settings: the method's config fields)."""
        with _readable(workspace):
            workspace.personalize(session, name, method, settings or {}, adapter=adapter or None)
            return f"{name} is personalised with {method}"

    def generate(
        session: str,
        name: str,
        method: str,
        prompts: list[str],
        seeds: list[int],
        negative_prompt: str = "",
        num_inference_steps: int = 0,
        guidance_scale: float = 0.0,
        options: dict | None = None,
        without_person: bool = False,
    ) -> list[gr.FileData]:
        """Images of a personalised person, one per prompt and seed (each image's settings are
        beside it on the server, and in the page's gallery)."""
        with _readable(workspace):
            made = workspace.generate(
                session,
                name,
                method,
                prompts,
                seeds=seeds,
                negative_prompt=negative_prompt or None,
                num_inference_steps=num_inference_steps or None,
                guidance_scale=guidance_scale or None,
                options=options or {},
                without_person=without_person,
            )
            return [gr.FileData(path=served_copy(g.path), orig_name=g.path.name) for g in made]

    def people(session: str) -> list[dict]:
        """The session's people and the methods each is personalised with."""
        with _readable(workspace):
            return workspace.people(session)

    def delete_person(session: str, name: str) -> int:
        """Delete a person and everything written for them; returns the files removed."""
        with _readable(workspace):
            return len(workspace.delete_person(session, name, also=[gradio_cache()]))

    def cancel(session: str) -> str:
        """Stop the session's running personalisation after its current step (checkpoint
        kept: personalising again resumes)."""
        return "stopping" if workspace.cancel(session) else "nothing is running"

    gr.api(cancel, api_name="cancel", queue=False)
    gr.api(create_identity, api_name="create_identity", concurrency_id="faces", concurrency_limit=1)
    gr.api(personalize, api_name="personalize", **model)
    gr.api(generate, api_name="generate", **model)
    gr.api(people, api_name="people", concurrency_limit=None)
    gr.api(delete_person, api_name="delete_person", **model)
