"""Content-addressed cache of the engine's expensive intermediates.

Entries live under ``soundstage.cachedir.cache_root()``, one folder per kind,
each file named by the hash of everything that determines it, so a stale entry
is never used and any entry may be deleted at any time:

=========  ======================================================================
kind       what
=========  ======================================================================
``hrtf``   processed, resampled HRTFs (written by ``soundstage.hrtf``)
``images`` image sources of one source in every frame (``.npz``)
``late``   the late-reverberation tail of one source (``.npy``)
``part``   the rendered contribution of one source to one time chunk (``.npy``)
``modal``  modal models of impact objects (written by ``soundstage.impact``)
``work``   finished chunks of bakes in progress or interrupted (``--resume``);
           not an LRU entry: removed when its bake completes
=========  ======================================================================

Keys hash the inputs *and* the engine's code (``code_digest``), so changing the
renderer invalidates old entries without version bumps.

The cache is bounded: ``$SOUNDSTAGE_CACHE_MAX`` bytes (suffixes K, M, G, T
allowed; default 4G). After each write, if the total is above the bound, the
least recently used entries (by access time; a hit refreshes it) are deleted
until the total is under 90 % of it. ``SOUNDSTAGE_CACHE=off`` disables it.
``soundstage cache info`` and ``soundstage cache clear [--kind K]`` inspect and
empty it.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from soundstage.cachedir import cache_root
from soundstage.errors import SoundstageError
from soundstage.locks import TEMP_PREFIX, is_locked, sweep_stale_temps

#: Default size bound, bytes.
DEFAULT_MAX_BYTES = 4 * 1024**3
#: Eviction brings the total down to this fraction of the bound.
EVICT_TO = 0.9
#: Kinds that are never evicted by size (they are removed by their owners).
UNEVICTED = ("work",)
#: Known kinds, for ``cache info`` (others found on disk are listed too).
KINDS = ("hrtf", "images", "late", "part", "modal", "work")
#: Abandoned work folders (interrupted bakes nobody resumed) older than this are swept, seconds.
WORK_MAX_AGE_S = 7 * 24 * 3600.0

_SUFFIX = {"": 1, "K": 1024, "M": 1024**2, "G": 1024**3, "T": 1024**4}


def parse_size(text: str) -> int:
    """``"512M"`` -> bytes; plain numbers are bytes.

    Raises
    ------
    ValueError
        Not a size.
    """
    t = str(text).strip().upper().removesuffix("B").removesuffix("I")
    unit = t[-1:] if t[-1:] in _SUFFIX and t[-1:] else ""
    number = t[: len(t) - len(unit)] if unit else t
    value = float(number)
    if not np.isfinite(value) or value < 0:
        raise ValueError(f"not a size: {text!r}")
    return int(value * _SUFFIX[unit])


# --------------------------------------------------------------------------- digests
def _feed(h, obj) -> None:
    """Feed a canonical, type-tagged serialisation of ``obj`` to the hash ``h``."""
    if obj is None or isinstance(obj, (bool, int, str)):
        h.update(f"{type(obj).__name__}:{obj!r};".encode())
    elif isinstance(obj, float):
        h.update(f"float:{obj!r};".encode())  # repr is exact and round-trips
    elif isinstance(obj, (np.integer, np.floating, np.bool_)):
        _feed(h, obj.item())
    elif isinstance(obj, bytes):
        h.update(f"bytes:{len(obj)}:".encode())
        h.update(obj)
    elif isinstance(obj, os.PathLike):
        _feed(h, ("path", os.fspath(obj)))
    elif isinstance(obj, np.ndarray):
        a = np.ascontiguousarray(obj)
        h.update(f"ndarray:{a.dtype.str}:{a.shape};".encode())
        h.update(a.tobytes())
    elif isinstance(obj, dict):
        h.update(f"dict:{len(obj)}{{".encode())
        for k in sorted(obj, key=lambda k: (type(k).__name__, str(k))):
            _feed(h, k)
            _feed(h, obj[k])
        h.update(b"}")
    elif isinstance(obj, (list, tuple)):
        h.update(f"{type(obj).__name__}:{len(obj)}[".encode())
        for v in obj:
            _feed(h, v)
        h.update(b"]")
    else:
        raise TypeError(f"cannot hash a {type(obj).__name__} for a cache key")


def stable_digest(*parts) -> str:
    """SHA-256 (hex) of nested dicts, lists, numbers, strings, paths and arrays.

    Equal inputs give equal digests in every process and on every machine
    (no ``hash()`` randomisation, dict order ignored, floats exact, arrays by
    dtype, shape and bytes).
    """
    h = hashlib.sha256()
    _feed(h, list(parts))
    return h.hexdigest()


@functools.lru_cache(maxsize=256)
def _file_digest(path: str, size: int, mtime_ns: int) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def file_digest(path) -> str:
    """SHA-256 (hex) of a file's bytes, remembered per (path, size, modification time)."""
    p = os.path.realpath(path)
    st = os.stat(p)
    return _file_digest(p, st.st_size, st.st_mtime_ns)


#: Engine files whose code or data determine rendered audio.
_CODE_FILES = ("render.py", "direct.py", "early.py", "late.py", "dsp.py", "ambisonics.py", "hrtf.py",
               "materials.py", "poses.py", "job.py", "audio_io.py", "chunks.py", "data/materials.json")


@functools.lru_cache(maxsize=1)
def code_digest() -> str:
    """Digest of the engine code that renders audio (part of every key)."""
    pkg = Path(__file__).resolve().parent
    h = hashlib.sha256()
    files = [pkg / f for f in _CODE_FILES] + sorted((pkg / "rooms").glob("*.py"))
    for f in files:
        h.update(f.name.encode())
        with contextlib.suppress(OSError):
            h.update(f.read_bytes())
    return h.hexdigest()[:16]


# --------------------------------------------------------------------------- the cache
@dataclass
class KindInfo:
    kind: str
    entries: int
    bytes: int


class Cache:
    """A content-addressed store of arrays under one root folder.

    Parameters
    ----------
    root : path-like, optional
        Default ``cache_root()``.
    max_bytes : int, optional
        Size bound; default ``$SOUNDSTAGE_CACHE_MAX`` or 4 GiB.

    Every method survives a missing, read-only or corrupt cache: a read that
    fails is a miss (and the bad entry is removed), a write that fails is
    skipped. The cache only ever costs or saves time.
    """

    def __init__(self, root=None, max_bytes: int | None = None):
        self.root = Path(root) if root is not None else cache_root()
        if max_bytes is None:
            env = os.environ.get("SOUNDSTAGE_CACHE_MAX", "")
            try:
                max_bytes = parse_size(env) if env.strip() else DEFAULT_MAX_BYTES
            except ValueError:
                max_bytes = DEFAULT_MAX_BYTES
        self.max_bytes = int(max_bytes)
        self.hits = 0
        self.misses = 0

    def __repr__(self) -> str:
        return f"Cache({str(self.root)!r}, max_bytes={self.max_bytes})"

    # -- paths ------------------------------------------------------------------
    def path(self, kind: str, key: str, ext: str = ".npy") -> Path:
        if not kind.isidentifier() or not all(ch in "0123456789abcdef" for ch in key):
            raise ValueError(f"bad cache kind/key {kind!r}/{key!r}")
        return self.root / kind / f"{key}{ext}"

    # -- arrays -----------------------------------------------------------------
    def get(self, kind: str, key: str):
        """The array (``.npy``) or dict of arrays (``.npz``) stored under ``key``, or None."""
        for ext in (".npy", ".npz"):
            p = self.path(kind, key, ext)
            try:
                if ext == ".npy":
                    value = np.load(p, allow_pickle=False)
                else:
                    with np.load(p, allow_pickle=False) as z:
                        value = {k: z[k] for k in z.files}
            except FileNotFoundError:
                continue
            except (OSError, ValueError, EOFError, KeyError):
                with contextlib.suppress(OSError):
                    p.unlink()  # corrupt: drop it, it is rebuilt
                continue
            with contextlib.suppress(OSError):
                os.utime(p)  # least recently *used*, not written
            self.hits += 1
            return value
        self.misses += 1
        return None

    def put(self, kind: str, key: str, value) -> Path | None:
        """Store an array (``.npy``) or a dict of arrays (``.npz``) atomically; evict if over the bound."""
        from soundstage.audio_io import atomic_path

        is_dict = isinstance(value, dict)
        p = self.path(kind, key, ".npz" if is_dict else ".npy")
        try:
            p.parent.mkdir(parents=True, exist_ok=True)
            with atomic_path(p) as tmp:
                with open(tmp, "wb") as f:
                    if is_dict:
                        np.savez(f, **value)
                    else:
                        np.save(f, np.asarray(value), allow_pickle=False)
        except (OSError, SoundstageError):  # full disk, read-only cache: only costs time
            return None
        self.evict()
        return p

    # -- accounting ---------------------------------------------------------------
    def _entries(self, kinds=None):
        """(kind, path, size, last use) of every entry, skipping temporary files."""
        out = []
        try:
            dirs = [d for d in os.scandir(self.root) if d.is_dir(follow_symlinks=False)]
        except OSError:
            return out
        for d in dirs:
            if kinds is not None and d.name not in kinds:
                continue
            if d.name == "work":
                for w in _scan(d.path):
                    if w.is_dir(follow_symlinks=False):
                        size = sum(f.stat().st_size for f in _scan(w.path) if f.is_file(follow_symlinks=False))
                        st = w.stat()
                        out.append(("work", Path(w.path), size, st.st_mtime))
                continue
            for f in _scan(d.path):
                if f.name.startswith(TEMP_PREFIX) or not f.is_file(follow_symlinks=False):
                    continue
                try:
                    st = f.stat(follow_symlinks=False)
                except OSError:
                    continue
                out.append((d.name, Path(f.path), st.st_size, max(st.st_atime, st.st_mtime)))
        return out

    def info(self) -> dict:
        """Entries and bytes per kind, the total, the bound and the root."""
        per: dict[str, KindInfo] = {k: KindInfo(k, 0, 0) for k in KINDS}
        for kind, _, size, _ in self._entries():
            ki = per.setdefault(kind, KindInfo(kind, 0, 0))
            ki.entries += 1
            ki.bytes += size
        total = sum(k.bytes for k in per.values())
        return {"root": str(self.root), "max_bytes": self.max_bytes, "total_bytes": total,
                "kinds": {k: {"entries": v.entries, "bytes": v.bytes} for k, v in per.items()}}

    def evict(self, target: int | None = None) -> list[Path]:
        """Delete least recently used entries while the total is above the bound.

        Returns the files removed. Work folders are never evicted (see ``sweep_work``).
        """
        kinds = {d.name for d in _scan(self.root) if d.is_dir(follow_symlinks=False)} - set(UNEVICTED)
        entries = self._entries(kinds)  # work folders are not even sized: this runs after every write
        total = sum(e[2] for e in entries)
        if target is None:
            if total <= self.max_bytes:
                return []
            target = int(self.max_bytes * EVICT_TO)
        removed = []
        for kind, p, size, _ in sorted(entries, key=lambda e: e[3]):
            if total <= target:
                break
            try:
                p.unlink()
            except FileNotFoundError:
                pass  # another process evicted it first
            except OSError:
                continue
            total -= size
            removed.append(p)
        for d in {p.parent for p in removed}:
            sweep_stale_temps(d)
        return removed

    def clear(self, kind: str | None = None) -> tuple[int, int]:
        """Delete every entry (of one kind); returns (entries, bytes) removed.

        Work folders of bakes running right now (their lock is held) are kept.
        """
        n = b = 0
        kinds = None if kind is None else {kind}
        for k, p, size, _ in self._entries(kinds):
            if k == "work":
                if is_locked(work_lock_path(p)):
                    continue
                shutil.rmtree(p, ignore_errors=True)
            else:
                try:
                    p.unlink()
                except OSError:
                    continue
            n += 1
            b += size
        for d in (self.root / k for k in (kinds or KINDS)):
            sweep_stale_temps(d, older_than=0.0)
        return n, b

    def sweep_work(self, max_age: float = WORK_MAX_AGE_S) -> list[Path]:
        """Remove abandoned work folders untouched for ``max_age`` seconds (and not locked).

        Also sweeps the temporary files that writers killed mid-write left in
        the cache's folders (``locks.sweep_stale_temps``).
        """
        removed = []
        now = time.time()
        for d in _scan(self.root):
            if d.is_dir(follow_symlinks=False):
                removed += sweep_stale_temps(d.path)
        for _, p, _, mtime in self._entries({"work"}):
            if now - mtime >= max_age and not is_locked(work_lock_path(p)):
                shutil.rmtree(p, ignore_errors=True)
                with contextlib.suppress(OSError):
                    work_lock_path(p).unlink()
                removed.append(p)
        return removed


def work_lock_path(work_dir) -> Path:
    """The lock file of a work folder: ``<folder>.lock`` beside it."""
    work_dir = Path(work_dir)
    return work_dir.parent / f"{work_dir.name}.lock"


def _scan(path):
    try:
        return list(os.scandir(path))
    except OSError:
        return []


def cache_enabled() -> bool:
    """False when ``$SOUNDSTAGE_CACHE`` is ``off``, ``0``, ``no`` or ``false``."""
    return os.environ.get("SOUNDSTAGE_CACHE", "on").strip().lower() not in ("off", "0", "no", "false")


def default_cache() -> Cache | None:
    """The user's cache, or None when disabled."""
    return Cache() if cache_enabled() else None


def format_bytes(n: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TiB"  # pragma: no cover
