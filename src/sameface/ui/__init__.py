"""The web UI and its HTTP API (`sameface ui`; the `ui` extra: gradio).

`backend` (what it runs on: the world or a base model), `workspace` (per-session folders and
the work, no gradio), `forms` (settings forms from config dataclasses), `app` and `api` (the
gradio page and endpoints), `serve` (launching it safely). See docs/ui.md.
"""

from __future__ import annotations

import os
from typing import Any


def serve_ui(
    data_dir: str | os.PathLike = "sameface-ui",
    *,
    world: str | os.PathLike | None = None,
    base: str | None = None,
    adapters: str | os.PathLike | None = None,
    reports: list[str | os.PathLike] | None = None,
    options: Any = None,
    limits: Any = None,
    block: bool = True,
    device: str = "cpu",
    dtype: Any = None,
) -> Any:
    """Build the UI over the world (default) or `base`, and serve it.

    Returns:
        (the gradio app, its local URL); with `block=False` it serves until `app.close()`.
    """
    from .serve import ServeOptions, check_host, launch, prepare_environment

    options = options or ServeOptions()
    check_host(options)  # refuse a bad address before anything loads
    cache = prepare_environment(data_dir)
    try:
        import gradio  # noqa: F401
    except ImportError:
        from ..errors import DependencyMissingError

        raise DependencyMissingError(
            "the web UI needs gradio: pip install 'sameface[ui]'"
        ) from None
    from .app import build_app
    from .backend import Backend
    from .workspace import Workspace

    backend = Backend(world=world, base=base, adapters=adapters, device=device, dtype=dtype)
    workspace = Workspace(data_dir, backend, limits, reports_dirs=reports, upload_root=cache)
    app = build_app(workspace)
    return app, launch(app, workspace, options, block=block)
