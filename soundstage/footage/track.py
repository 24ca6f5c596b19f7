"""2-D marker tracks: pixel positions of the sounding object per frame.

Pixel convention: x right, y down, origin at the top-left corner, pixel centres at
+0.5 (see ``soundstage.footage.camera``). A gap is a missing frame or a NaN row.
"""

from __future__ import annotations

import csv
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from soundstage.errors import SoundstageError


@dataclass
class Track:
    """One tracked marker.

    Parameters
    ----------
    frames : array_like of int, shape (N,)
        Frame numbers, strictly increasing after construction (sorted).
    uv : array_like, shape (N, 2)
        Pixel positions; NaN rows are gaps.
    name : str
    depth : array_like, shape (N,), optional
        Depth per row when the track carries it (CSV ``depth`` column), metres; NaN = none.
    """

    frames: np.ndarray
    uv: np.ndarray
    name: str = ""
    depth: np.ndarray | None = None

    def __post_init__(self):
        frames = np.atleast_1d(np.asarray(self.frames)).astype(int)
        uv = np.asarray(self.uv, dtype=float).reshape(-1, 2)
        if len(frames) != len(uv):
            raise SoundstageError(f"track '{self.name}': {len(frames)} frames but {len(uv)} positions")
        if len(set(frames.tolist())) != len(frames):
            dup = int(frames[np.flatnonzero(np.diff(np.sort(frames)) == 0)[0]])
            raise SoundstageError(f"track '{self.name}': frame {dup} appears twice; keep one position per frame")
        order = np.argsort(frames, kind="stable")
        self.frames, self.uv = frames[order], uv[order]
        if self.depth is not None:
            d = np.asarray(self.depth, dtype=float).reshape(-1)
            if len(d) != len(frames):
                raise SoundstageError(f"track '{self.name}': {len(d)} depth values for {len(frames)} frames")
            self.depth = d[order]

    def __len__(self) -> int:
        return len(self.frames)

    @property
    def valid(self) -> np.ndarray:
        """Rows with a finite position, shape (N,) bool."""
        return np.isfinite(self.uv).all(axis=1)

    def gaps(self) -> list[tuple[int, int]]:
        """Inclusive frame ranges inside the track's span with no usable position."""
        good = self.frames[self.valid]
        if len(good) == 0:
            return []
        have = set(good.tolist())
        out, start = [], None
        for f in range(int(good[0]), int(good[-1]) + 1):
            if f not in have and start is None:
                start = f
            elif f in have and start is not None:
                out.append((start, f - 1))
                start = None
        return out


def _cell(row: dict, key: str, path: Path, line: int, *, integer=False, optional=False):
    text = (row.get(key) or "").strip()
    if text == "" or text.lower() == "nan":
        if optional or key in ("x", "y"):
            return math.nan
        raise SoundstageError(f"{path}: row {line}: '{key}' is empty; give a number")
    try:
        value = float(text)
    except ValueError:
        raise SoundstageError(f"{path}: row {line}: '{key}' = {text!r} is not a number") from None
    if integer:
        if not math.isfinite(value) or value != int(value):
            raise SoundstageError(f"{path}: row {line}: frame {text!r} is not a whole number")
        return int(value)
    if math.isinf(value):
        raise SoundstageError(f"{path}: row {line}: '{key}' = {text!r} is infinite; leave it empty for a gap")
    return value


def read_track_csv(path, name: str | None = None) -> list[Track] | Track:
    """Read a marker track from CSV.

    Columns (header required, any order, case-insensitive): ``frame``, ``x``, ``y``
    (pixels, origin top-left, y down); optional ``name`` (several markers in one
    file) and ``depth`` (metres). Empty or ``nan`` x/y/depth cells are gaps.

    Parameters
    ----------
    path : path-like
    name : str, optional
        With a ``name`` column: return only this marker.

    Returns
    -------
    Track
        When the file holds one marker (or ``name`` is given).
    list of Track
        When it holds several named markers (file order).

    Raises
    ------
    SoundstageError
        One line naming the file and row: missing file or header columns, a cell that is
        not a number, a frame given twice, no rows.
    """
    p = Path(path)
    if not p.is_file():
        raise SoundstageError(f"track file not found: {p}")
    try:
        text = p.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as e:
        raise SoundstageError(f"{p}: cannot read the track ({e})") from None
    reader = csv.DictReader(text.splitlines())
    header = [h.strip().lower() for h in (reader.fieldnames or [])]
    missing = [c for c in ("frame", "x", "y") if c not in header]
    if missing:
        raise SoundstageError(f"{p}: header must name the columns frame,x,y (optional name,depth); "
                              f"missing {', '.join(missing)}")
    reader.fieldnames = header
    rows: dict[str, list] = {}
    has_depth = "depth" in header
    for line, row in enumerate(reader, start=2):
        if None in row:
            raise SoundstageError(f"{p}: row {line}: more cells than header columns")
        if all((v or "").strip() == "" for v in row.values()):
            continue  # blank line
        frame = _cell(row, "frame", p, line, integer=True)
        x = _cell(row, "x", p, line)
        y = _cell(row, "y", p, line)
        d = _cell(row, "depth", p, line, optional=True) if has_depth else math.nan
        key = (row.get("name") or "").strip()
        entry = rows.setdefault(key, [])
        if any(e[0] == frame for e in entry):
            raise SoundstageError(f"{p}: row {line}: frame {frame} appears twice"
                                  + (f" for marker '{key}'" if key else ""))
        entry.append((frame, x, y, d))
    if not rows:
        raise SoundstageError(f"{p}: no rows after the header")
    tracks = []
    for key, entry in rows.items():
        a = np.asarray(entry, dtype=float)
        tracks.append(Track(a[:, 0].astype(int), a[:, 1:3], key or p.stem, a[:, 3] if has_depth else None))
    if name is not None:
        for t in tracks:
            if t.name == name:
                return t
        raise SoundstageError(f"{p}: no marker named '{name}'; markers: {', '.join(t.name for t in tracks)}")
    return tracks[0] if len(tracks) == 1 else tracks
