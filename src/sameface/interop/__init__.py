"""Interop with the tools people already use: sameface's artifacts in AUTOMATIC1111 and
ComfyUI (`export`, `webui`). See docs/interop.md."""

from __future__ import annotations

from .export import Export, export_artifact

__all__ = ["Export", "export_artifact"]
