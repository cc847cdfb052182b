"""A sameface UI server for the API and browser tests: in this process, on a free loopback
port, over the shipped world, with its data in a temporary folder."""

from __future__ import annotations

import contextlib
from pathlib import Path

from .conftest import free_port

SCREENSHOTS = Path(__file__).resolve().parent.parent / "test-artifacts" / "ui"
"""Where the browser tests leave their screenshots (a CI artifact; ignored by git)."""


@contextlib.contextmanager
def running_ui(data_dir: Path, **kwargs):
    """Serve the UI; yields (base url, the gradio app)."""
    from sameface.ui import serve_ui
    from sameface.ui.serve import ServeOptions

    options = ServeOptions(port=free_port(), **kwargs.pop("options", {}))
    app, url = serve_ui(data_dir, options=options, block=False, **kwargs)
    try:
        yield url.rstrip("/"), app
    finally:
        app.close()


def world_people() -> dict[str, list[Path]]:
    from sameface.demo import load_world

    return load_world().reference_people()
