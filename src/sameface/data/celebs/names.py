"""Celebrity names: parsing name lists, the shipped list, per-name generation seeds."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable
from pathlib import Path

from ...errors import SamefaceError

NAMES_FILE = "celebrities.txt"
# ---- names ------------------------------------------------------------------------------


def _normalise_name(name: str) -> str:
    return " ".join(name.split())


def parse_names(lines: Iterable[str]) -> list[str]:
    """Names from text lines: stripped, blank lines and `#` comments skipped, duplicates
    (ignoring case and spacing) dropped, first spelling kept."""
    out, seen = [], set()
    for line in lines:
        # A comment may follow a name ("Pele  # footballer"); names never contain " #".
        name = _normalise_name(line.split(" #", 1)[0] if not line.lstrip().startswith("#") else "")
        if not name or name.casefold() in seen:
            continue
        seen.add(name.casefold())
        out.append(name)
    return out


def load_celebrity_names(path: str | os.PathLike | None = None) -> list[str]:
    """Load a list of celebrity names, one per line.

    Args:
        path: a UTF-8 text file; default the list shipped with sameface (about 300 actors,
            musicians, athletes, politicians, scientists and historical figures).

    Raises:
        SamefaceError: the file is missing or not UTF-8 text.
    """
    if path is None:
        from importlib.resources import files

        text = files("sameface.data").joinpath(NAMES_FILE).read_text(encoding="utf-8")
    else:
        p = Path(path)
        if not p.is_file():
            raise SamefaceError(f"{p}: names file not found")
        try:
            text = p.read_text(encoding="utf-8")
        except UnicodeDecodeError:
            raise SamefaceError(f"{p}: not a UTF-8 text file of names") from None
    return parse_names(text.splitlines())


def name_seed(name: str, seed: int = 0) -> int:
    """Generation seed for one name: `seed` plus a stable hash of the name.

    Python's `hash()` is salted per process, so a hash of the UTF-8 bytes is used: every
    process, shard and rerun draws the same latents for the same name.
    """
    h = int.from_bytes(hashlib.sha256(name.encode("utf-8")).digest()[:8], "big")
    return (int(seed) + h) % (2**63)
