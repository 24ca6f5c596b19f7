"""Match a sound library folder to region or marker names.

Rule (documented in docs/footage.md): a name and a file stem are split into lower-case
word tokens (at non-letters/digits and camelCase boundaries; pure numbers such as
Blender's ``.001`` suffixes dropped; a trailing plural "s" dropped from words longer
than three letters). A file matches a name when they share a token. Among matches the
best has (1) the same token set, then (2) the most shared tokens over the union
(Jaccard), then (3) the shortest stem, then (4) the alphabetically first path.
Sub-folders are searched too. Names with no shared token are unmatched.
"""

from __future__ import annotations

import re
from pathlib import Path

from soundstage.errors import SoundstageError

AUDIO_SUFFIXES = (".wav", ".flac", ".ogg", ".aif", ".aiff", ".mp3")


def tokens(text: str) -> frozenset:
    """Lower-case word tokens of a name (see the module rule)."""
    text = re.sub(r"([a-z])([A-Z])", r"\1 \2", text)
    out = set()
    for t in re.split(r"[^0-9A-Za-z]+", text.lower()):
        if not t or t.isdigit():
            continue
        t = re.sub(r"\d+$", "", t) or t  # "dog2" -> "dog"
        if len(t) > 3 and t.endswith("s") and not t.endswith("ss"):
            t = t[:-1]
        out.add(t)
    return frozenset(out)


class LibraryMatch(dict):
    """``dict`` name -> path of the matched names, plus ``unmatched`` (list of names)."""

    unmatched: list


def match_library(names, folder) -> LibraryMatch:
    """Pick an audio file of ``folder`` for each name.

    Parameters
    ----------
    names : iterable of str
        Region or marker names.
    folder : path-like
        Sound library folder (searched recursively for .wav .flac .ogg .aif(f) .mp3).

    Returns
    -------
    LibraryMatch
        name -> Path for matched names; ``.unmatched`` lists the others in order.

    Raises
    ------
    SoundstageError
        The folder is missing or holds no audio file.
    """
    root = Path(folder)
    if not root.is_dir():
        raise SoundstageError(f"sound library folder not found: {root}")
    files = sorted(p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in AUDIO_SUFFIXES)
    if not files:
        raise SoundstageError(f"sound library folder {root} holds no audio file ({', '.join(AUDIO_SUFFIXES)})")
    file_tokens = [(p, tokens(p.stem)) for p in files]
    result = LibraryMatch()
    result.unmatched = []
    for name in names:
        nt = tokens(str(name))
        best, best_key = None, None
        for p, ft in file_tokens:
            shared = nt & ft
            if not shared:
                continue
            key = (nt != ft, -len(shared) / len(nt | ft), len(p.stem), str(p))
            if best_key is None or key < best_key:
                best, best_key = p, key
        if best is None:
            result.unmatched.append(str(name))
        else:
            result[str(name)] = best
    return result
