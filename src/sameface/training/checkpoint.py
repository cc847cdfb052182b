"""Atomic, resumable checkpoints: each one a folder of safetensors + JSON, renamed into place."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

from ..errors import ArtifactError, TrainingError

PREFIX = "checkpoint-"


class CheckpointManager:
    """Write and find training checkpoints under `folder`.

    A checkpoint is `folder/checkpoint-<step>/{state.safetensors, state.json}`. It is written
    into a temporary folder and renamed into place, so a run killed mid-write leaves the
    previous checkpoint intact and no partial one. Only the newest `keep` are kept.

    Args:
        folder: where checkpoints live (created on first save).
        keep: how many checkpoints to keep.
    """

    def __init__(self, folder: str | os.PathLike, keep: int = 2):
        if keep < 1:
            raise ValueError(f"keep must be >= 1, got {keep}")
        self.folder = Path(folder)
        self.keep = keep

    def steps(self) -> list[int]:
        """Steps of the complete checkpoints present, ascending."""
        if not self.folder.is_dir():
            return []
        out = []
        for p in self.folder.iterdir():
            complete = (p / "state.json").is_file() and (p / "state.safetensors").is_file()
            if p.name.startswith(PREFIX) and p.name[len(PREFIX) :].isdigit() and complete:
                out.append(int(p.name[len(PREFIX) :]))
        return sorted(out)

    def save(self, step: int, tensors: dict[str, Any], state: dict) -> Path:
        """Write checkpoint `step` atomically and prune old ones."""
        from ..tensorfile import save_safetensors

        self.folder.mkdir(parents=True, exist_ok=True)
        final = self.folder / f"{PREFIX}{step}"
        tmp = Path(tempfile.mkdtemp(prefix=f".{PREFIX}{step}.tmp-", dir=self.folder))
        try:
            save_safetensors(tensors, tmp / "state.safetensors")
            (tmp / "state.json").write_text(
                json.dumps(state | {"step": step}, indent=1, sort_keys=True)
            )
            for f in (
                "state.safetensors",
                "state.json",
            ):  # on disk before the rename makes it "complete"
                _fsync(tmp / f)
            if final.exists():
                shutil.rmtree(final)
            os.replace(tmp, final)
        finally:
            if tmp.exists():
                shutil.rmtree(tmp, ignore_errors=True)
        for old in self.steps()[: -self.keep]:
            shutil.rmtree(self.folder / f"{PREFIX}{old}", ignore_errors=True)
        return final

    def load_latest(self) -> tuple[dict[str, Any], dict] | None:
        """(tensors, state) of the newest readable checkpoint, or None when there is none.

        A damaged newest checkpoint (e.g. after a power cut) is skipped for the one before it.
        """
        from ..tensorfile import read_safetensors

        errors = []
        for step in reversed(self.steps()):
            path = self.folder / f"{PREFIX}{step}"
            try:
                # Optimiser state may legitimately be large; only the file's structure is checked.
                tensors, _ = read_safetensors(
                    path / "state.safetensors", finite=False, max_abs=None
                )
                return tensors, json.loads((path / "state.json").read_text())
            except (OSError, ValueError) as e:  # ArtifactError is a ValueError
                errors.append(f"{path.name}: {e}")
        if errors:
            raise ArtifactError(
                f"no readable checkpoint in {self.folder} ({'; '.join(errors)}); delete them to start over"
            )
        return None

    @staticmethod
    def due(step: int, every: int, total: int) -> bool:
        """A periodic checkpoint is due after `step` (none after the last step: the run saves its result)."""
        return bool(every) and step % every == 0 and step < total

    def interrupted(self, step: int, total: int) -> TrainingError:
        """The error a loop raises after saving its state on Ctrl-C."""
        return TrainingError(
            f"interrupted at step {step}/{total}; checkpoint saved in {self.folder}; "
            "run the same command again to resume"
        )

    def clear(self) -> None:
        """Remove every checkpoint (after a finished run)."""
        if self.folder.is_dir():
            shutil.rmtree(self.folder, ignore_errors=True)


def _fsync(path: Path) -> None:
    with open(path, "rb") as f:
        os.fsync(f.fileno())
