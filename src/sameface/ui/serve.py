"""Serving the UI safely: loopback unless told otherwise, optional basic auth, no share link,
a queue that gives the model one request at a time, and gradio's files kept in the data dir."""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import UsageError

LOOPBACK = ("127.0.0.1", "localhost", "::1")


@dataclass(frozen=True)
class ServeOptions:
    """How the UI is served.

    Attributes:
        host: the address to bind (loopback by default).
        port: the port (None: gradio's first free one from 7860).
        allow_remote: binding a non-loopback address needs this (a warning is printed).
        auth_file: a file of `user:password` lines for basic auth (None: no auth).
        queue_size: model requests that may wait their turn; more are refused with a
            message. One runs at a time: pipelines install their words and adapters on the
            one shared base model, so a second would have to wait for it anyway.
        share: a public gradio share link (off unless asked; needs the internet).
    """

    host: str = "127.0.0.1"
    port: int | None = None
    allow_remote: bool = False
    auth_file: str | None = None
    queue_size: int = 32
    share: bool = False


def prepare_environment(data_dir: str | os.PathLike) -> Path:
    """Point gradio's upload/file cache into the data dir (so nothing is written outside it)
    and turn its analytics off. Call before gradio is imported. Returns the cache folder."""
    cache = Path(data_dir).resolve() / "cache"
    cache.mkdir(parents=True, exist_ok=True)
    os.environ["GRADIO_TEMP_DIR"] = str(cache)
    os.environ["GRADIO_ANALYTICS_ENABLED"] = "False"
    return cache


def read_auth(path: str | os.PathLike | None) -> list[tuple[str, str]] | None:
    """`user:password` lines of an auth file (blank lines and # comments skipped)."""
    if path is None:
        return None
    try:
        lines = Path(path).read_text().splitlines()
    except OSError as e:
        raise UsageError(f"--auth-file {path}: cannot read ({e.strerror})") from None
    pairs = []
    for n, line in enumerate(lines, 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        user, sep, password = line.partition(":")
        if not sep or not user or not password:
            raise UsageError(f"--auth-file {path}:{n}: expected user:password")
        pairs.append((user, password))
    if not pairs:
        raise UsageError(f"--auth-file {path}: no user:password line")
    return pairs


def check_host(options: ServeOptions) -> str | None:
    """Refuse a non-loopback address without `allow_remote`; the warning to print otherwise."""
    if options.share and not options.allow_remote:
        raise UsageError(
            "--share opens a public link to the UI; pass --allow-remote to do so on purpose "
            "(and consider --auth-file)"
        )
    if options.host in LOOPBACK and not options.share:
        return None
    if not options.allow_remote:
        raise UsageError(
            f"--host {options.host} serves the UI to other machines; pass --allow-remote to do "
            "so on purpose (and consider --auth-file)"
        )
    auth = "with basic auth" if options.auth_file else "WITHOUT authentication"
    where = "on a public share link" if options.share else f"on {options.host}"
    return (
        f"warning: serving {where}, reachable from other machines, {auth}; "
        "uploaded photos are biometric data"
    )


def launch(app: Any, workspace: Any, options: ServeOptions, *, block: bool = True) -> str:
    """Queue and launch `app` (blocking until stopped unless `block=False`); returns the
    local URL."""
    warning = check_host(options)
    if warning:
        print(warning, file=sys.stderr)
    auth = read_auth(options.auth_file)
    app.queue(default_concurrency_limit=1, max_size=options.queue_size)
    _, url, _ = app.launch(
        server_name=options.host,
        server_port=options.port,
        share=options.share,
        auth=auth,
        max_file_size=f"{workspace.limits.max_upload_mb:g}mb",
        allowed_paths=[str(d) for d in workspace.reports_dirs],
        prevent_thread_lock=not block,
        show_error=False,
        quiet=not block,
        footer_links=["api"],
        theme=_theme(),
    )
    return url


def _theme() -> Any:
    """The default theme with the system's fonts: no request for web fonts (offline-first)."""
    import gradio as gr

    return gr.themes.Default(
        font=["system-ui", "sans-serif"], font_mono=["ui-monospace", "monospace"]
    )
