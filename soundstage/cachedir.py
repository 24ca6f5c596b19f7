"""Where the engine keeps reusable intermediates (processed HRTFs, modal bases, ...).

``$SOUNDSTAGE_CACHE_DIR`` if set, else ``$XDG_CACHE_HOME/soundstage``, else
``~/.cache/soundstage``. Entries are content-addressed: their names are hashes
of everything that determines them, so a stale entry is never used, and any
entry may be deleted at any time.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path


def cache_root() -> Path:
    env = os.environ.get("SOUNDSTAGE_CACHE_DIR")
    if env:
        return Path(env).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg).expanduser() if xdg else Path.home() / ".cache") / "soundstage"


def cache_dir(kind: str) -> Path | None:
    """The folder for one kind of entry, created if needed; None if it cannot be created."""
    d = cache_root() / kind
    try:
        d.mkdir(parents=True, exist_ok=True)
    except OSError:
        return None
    return d if os.access(d, os.W_OK) else None


def file_digest(path, *extra) -> str:
    """SHA-256 of a file's bytes and any extra key parts, hex."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    for e in extra:
        h.update(repr(e).encode())
    return h.hexdigest()
