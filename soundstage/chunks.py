"""Chunked bakes: the timeline cut into time chunks, each source rendered per chunk, stitched.

A *part* is one source's contribution to one chunk of output samples [a, b).
Every part is a deterministic function of the whole job (``render.render_source``
with ``time_range``), so parts can be rendered in any order, in any process or
on any machine, and cached by content. The bake is then

* per chunk, the sum of its parts in source order (the same float32 additions,
  in the same order, as a whole render);
* the chunks one after the other;
* for 5.1, the LFE low-pass run over the stitched mix.

which is the whole render sample for sample (tests/test_chunks.py holds them
to -120 dB of the peak; in practice they are identical).

Parts are named by a key, the hash of everything that determines them: the
scene (rate, frames, room, listener path, HRTF file, format, render options),
the source (audio file bytes, gain, start, path, its index, which seeds its
late tail), the chunk and the engine's code. A re-bake after changing one
source finds every other source's parts in the cache.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import time
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from soundstage.cache import code_digest, stable_digest
from soundstage.render import RenderContext, add_lfe, render_source, source_images, source_signal, source_tail

#: Default chunk length, seconds. Part keys depend on the plan, so it does not
#: depend on how the bake runs (in-process or on Dask): both share cached parts.
CHUNK_SECONDS = 20.0


@dataclass(frozen=True)
class Part:
    """One source's contribution to output samples [a, b).

    Attributes
    ----------
    source : int
        Source index in the job.
    chunk : int
        Chunk index in the plan.
    a, b : int
        Output samples.
    key : str
        Content hash (hex) naming the part in caches and work folders.
    """

    source: int
    chunk: int
    a: int
    b: int
    key: str

    @property
    def n(self) -> int:
        return self.b - self.a


def plan_chunks(n_out: int, fs: int, chunk_seconds: float | None = None) -> list[tuple[int, int]]:
    """Cut ``n_out`` output samples into chunks of ``chunk_seconds`` (the last one shorter).

    Parameters
    ----------
    n_out : int
    fs : int
        Sample rate, Hz.
    chunk_seconds : float, optional
        Default ``CHUNK_SECONDS``; 0 or a negative value means one chunk.

    Returns
    -------
    list of (int, int)
        Contiguous [a, b) ranges covering [0, n_out) (one empty range when n_out is 0).
    """
    secs = CHUNK_SECONDS if chunk_seconds is None else float(chunk_seconds)
    if not np.isfinite(secs):
        raise ValueError(f"chunk length must be finite, got {chunk_seconds}")
    size = int(round(secs * fs)) if secs > 0 else n_out
    size = max(size, 1)
    if n_out <= 0:
        return [(0, 0)]
    edges = list(range(0, n_out, size)) + [n_out]
    return list(zip(edges[:-1], edges[1:]))


def parse_chunk_list(text: str, n_chunks: int | None = None) -> list[int]:
    """``"3"``, ``"0,2,5"``, ``"2-4"`` (inclusive) -> sorted chunk indices.

    Raises
    ------
    ValueError
        Not a list of chunk numbers, or (with ``n_chunks``) a number past the last chunk.
    """
    out = set()
    for item in str(text).replace(" ", "").split(","):
        if not item:
            continue
        a, sep, b = item.partition("-")
        lo, hi = int(a), int(b) if sep else int(a)
        if lo < 0 or hi < lo:
            raise ValueError(f"bad chunk range '{item}'")
        out.update(range(lo, hi + 1))
    if not out:
        raise ValueError("no chunk numbers")
    if n_chunks is not None and max(out) >= n_chunks:
        raise ValueError(f"chunk {max(out)} does not exist: the shot has {n_chunks} chunks (0-{n_chunks - 1})")
    return sorted(out)


def job_digest(ctx: RenderContext) -> str:
    """Hash of everything that determines the bake's audio (not where it is written)."""
    return stable_digest("job", ctx.scene_fingerprint(), [ctx.source_fingerprint(i) for i in range(len(ctx.job.sources))])


def part_key(ctx: RenderContext, si: int, a: int, b: int) -> str:
    return stable_digest("part", code_digest(), ctx.scene_fingerprint(), ctx.source_fingerprint(si), int(a), int(b))


def plan_parts(ctx: RenderContext, chunks) -> list[Part]:
    """Every (source, chunk) part of a job, chunk-major."""
    return [Part(si, ci, a, b, part_key(ctx, si, a, b))
            for ci, (a, b) in enumerate(chunks) for si in range(len(ctx.job.sources))]


# --------------------------------------------------------------------------- rendering parts
class PartRenderer:
    """Renders parts of one job, keeping what parts of one source share.

    The emitted signal of the last ``keep_signals`` sources is kept, image
    sources and late tails are computed once per source (through ``cache``
    when given), so rendering a source's chunks one after the other costs
    about what rendering the source whole costs.

    Parameters
    ----------
    job : Job
    cache : soundstage.cache.Cache, optional
    audio_loader : callable, optional
        As for ``render.render_job``.
    """

    def __init__(self, job, cache=None, audio_loader=None, keep_signals: int = 2):
        self.job = job
        self.ctx = RenderContext(job)
        self.cache = cache
        self.audio_loader = audio_loader
        self._signals: OrderedDict = OrderedDict()
        self._keep = keep_signals
        self._prep: dict[int, tuple] = {}

    def signal(self, si: int):
        if si in self._signals:
            self._signals.move_to_end(si)
            return self._signals[si]
        value = source_signal(self.ctx, si, self.audio_loader)
        self._signals[si] = value
        while len(self._signals) > self._keep:
            self._signals.popitem(last=False)
        return value

    def prepare(self, si: int):
        """(images, tail) of source ``si``: the per-source intermediates every chunk needs."""
        if si not in self._prep:
            self._prep[si] = (source_images(self.ctx, si, self.cache), source_tail(self.ctx, si, self.cache))
        return self._prep[si]

    def set_prepared(self, si: int, images, tail) -> None:
        """Use intermediates computed elsewhere (e.g. by another Dask worker)."""
        self._prep[si] = (images, tail)

    def render(self, part: Part, cancel=None, report=None) -> np.ndarray:
        """The part's samples, float32 of shape (b - a, n_channels).

        ``cancel`` raises ``Cancelled`` when polled after a stop request;
        ``report(fraction, message)`` follows the part's steps.
        """
        report = report or (lambda f, m: None)
        report(0.0, "reading audio")
        sig, pre = self.signal(part.source)
        report(0.02, "image sources and late tail")
        images, tail = self.prepare(part.source)
        return render_source(self.ctx, part.source, sig, pre, images=images, tail=tail,
                             time_range=(part.a, part.b), cancel=cancel, report=report)


# --------------------------------------------------------------------------- storing parts
class MemoryStore:
    """Finished parts kept in memory (when no work folder can be used)."""

    resumable = False

    def __init__(self):
        self._parts: dict[str, np.ndarray] = {}
        self.path = None

    def has(self, part: Part, n_channels: int) -> bool:
        return part.key in self._parts

    def put(self, part: Part, arr: np.ndarray) -> None:
        self._parts[part.key] = arr

    def get(self, part: Part) -> np.ndarray:
        return self._parts[part.key]

    def clear(self) -> None:
        self._parts.clear()

    def close(self, remove: bool) -> None:
        self._parts.clear()


class WorkDir:
    """Finished parts of one bake on disk, so an interrupted bake can be resumed.

    The folder holds ``<part key>.npy`` files (each written atomically) and a
    ``manifest.json`` describing the bake. It is locked (``<folder>.lock``)
    while a bake uses it and removed when the bake completes.

    Parameters
    ----------
    path : Path
        The folder (created).
    manifest : dict
        Written to ``manifest.json``.
    """

    resumable = True

    #: With ``exclusive=False`` (chunk tasks of a render farm, each rendering
    #: some chunks into a shared folder) there is no lock, nothing is cleared
    #: and the folder is kept: the final bake (``resume``) assembles and removes it.

    def __init__(self, path: Path, manifest: dict, exclusive: bool = True):
        from soundstage.cache import work_lock_path
        from soundstage.locks import FileLock

        self.path = Path(path)
        self.exclusive = exclusive
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.lock = FileLock(work_lock_path(self.path), what=f"work folder '{self.path}'")
        if exclusive:
            self.lock.acquire()
        try:
            self.path.mkdir(parents=True, exist_ok=True)
            from soundstage.audio_io import write_json

            write_json(self.path / "manifest.json", manifest)
        except BaseException:
            self.lock.release()
            raise

    def _file(self, part: Part) -> Path:
        return self.path / f"{part.key}.npy"

    def has(self, part: Part, n_channels: int) -> bool:
        """Whether a complete, readable part is there (a bad one is removed)."""
        f = self._file(part)
        if not f.is_file():
            return False
        try:
            arr = np.load(f, mmap_mode="r", allow_pickle=False)
            ok = arr.shape == (part.n, n_channels) and arr.dtype == np.float32
        except (OSError, ValueError, EOFError):
            ok = False
        if not ok:
            with contextlib.suppress(OSError):
                f.unlink()
        return ok

    def put(self, part: Part, arr: np.ndarray) -> None:
        from soundstage.audio_io import atomic_path

        with atomic_path(self._file(part)) as tmp:
            with open(tmp, "wb") as fh:
                np.save(fh, np.ascontiguousarray(arr, dtype=np.float32), allow_pickle=False)
        with contextlib.suppress(OSError):
            os.utime(self.path)  # keeps an active folder from being swept as abandoned

    def get(self, part: Part) -> np.ndarray:
        return np.load(self._file(part), allow_pickle=False)

    def finished_files(self) -> list[Path]:
        """The part files present (not temporary files being written)."""
        from soundstage.locks import TEMP_PREFIX

        return [f for f in self.path.glob("*.npy") if not f.name.startswith(TEMP_PREFIX)]

    def clear(self) -> None:
        for f in self.path.iterdir():
            if f.name != "manifest.json":
                with contextlib.suppress(OSError):
                    f.unlink()

    def close(self, remove: bool) -> None:
        """Release the folder; remove it when the bake completed or left nothing to resume."""
        if not self.exclusive:
            return
        if remove or not self.finished_files():
            shutil.rmtree(self.path, ignore_errors=True)
        self.lock.release()


def work_folder(root: Path, target: Path, digest: str) -> Path:
    """``<root>/<target stem>-<digest[:20]>``: one folder per target name and job content."""
    stem = "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in Path(target).stem)[:80] or "bake"
    return Path(root) / f"{stem}-{digest[:20]}"


def open_store(ctx: RenderContext, target: Path, digest: str, chunks, work_root=None, shared: bool = False):
    """A ``WorkDir`` for this bake, or a ``MemoryStore`` when none can be used.

    ``work_root`` defaults to ``cache_root()/work``. A work folder in use by another
    bake of the same content (its lock is held) is left to it. ``shared``: a
    chunk task's non-exclusive use (see ``WorkDir``); a folder that cannot be
    used is then an error, since the parts would be lost.
    """
    from soundstage.cachedir import cache_root
    from soundstage.errors import SoundstageError
    from soundstage.locks import LockedError

    root = Path(work_root) if work_root is not None else cache_root() / "work"
    manifest = {"job": digest, "target": str(target), "format": ctx.fmt, "sample_rate": ctx.fs,
                "frames": ctx.n_out, "sources": [s.name for s in ctx.job.sources],
                "chunks": [list(c) for c in chunks], "engine_code": code_digest(), "created": time.time(),
                "pid": os.getpid()}
    folder = work_folder(root, target, digest)
    if shared:
        try:
            return WorkDir(folder, manifest, exclusive=False)
        except OSError as err:
            raise SoundstageError(f"cannot use work folder '{folder}': {err.strerror or err}; "
                                  "give a writable --work-dir") from None
    try:
        return WorkDir(folder, manifest)
    except (OSError, LockedError, SoundstageError):
        return MemoryStore()


# --------------------------------------------------------------------------- stitching
def assemble(ctx: RenderContext, chunks, parts: list[Part], store) -> tuple[np.ndarray, dict]:
    """Stitch finished parts into the output.

    Returns
    -------
    audio : ndarray of float32, shape (n_out, n_channels)
    levels : dict
        RMS level (dBFS) of each source's contribution over the whole output.
    """
    n_src = len(ctx.job.sources)
    out = np.zeros((ctx.n_out, ctx.n_channels), dtype=np.float32)
    energy = np.zeros(n_src)
    by_chunk: dict[int, list[Part]] = {}
    for p in parts:
        by_chunk.setdefault(p.chunk, []).append(p)
    for ci, (a, b) in enumerate(chunks):
        mix = np.zeros((b - a, ctx.n_channels), dtype=np.float32)
        for p in sorted(by_chunk.get(ci, []), key=lambda p: p.source):
            y = store.get(p)
            energy[p.source] += float(np.sum(y.astype(np.float64) ** 2))
            mix += y  # source order, as in render_job: the same float32 sums
        out[a:b] = mix
    if ctx.fmt == "5.1":
        add_lfe(out, ctx.fs)
    levels = {}
    for si, src in enumerate(ctx.job.sources):
        rms = float(np.sqrt(energy[si] / (ctx.n_out * ctx.n_channels))) if ctx.n_out else 0.0
        levels[src.name] = round(20 * np.log10(max(rms, 1e-12)), 2)
    return out, levels


__all__ = ["CHUNK_SECONDS", "Part", "plan_chunks", "plan_parts", "parse_chunk_list", "part_key", "job_digest", "PartRenderer",
           "WorkDir", "MemoryStore", "open_store", "work_folder", "assemble", "job_document"]


def job_document(job) -> dict:
    """A job document that ``load_job`` turns back into ``job`` (absolute paths, arrays per frame).

    Used to send a loaded job to other processes and machines.
    """
    o = job.render
    doc = {
        "version": 1, "sample_rate": job.sample_rate, "fps": job.fps, "frame_start": job.frame_start,
        "frame_end": job.frame_end, "speed_of_sound": job.speed_of_sound, "room": job.room_spec,
        "listener": {"name": job.listener.name, "hrtf": job.listener.hrtf,
                     "matrix_world": np.asarray(job.listener.matrices, float).reshape(-1, 16)},
        "sources": [{"name": s.name, "audio": str(s.audio), "position": np.asarray(s.positions, float),
                     "gain_db": s.gain_db, "start_frame": s.start_frame} for s in job.sources],
        "output": {"format": job.output.format, "ambisonic_order": job.output.ambisonic_order,
                   "path": str(job.output.path)},
        "render": {"reflection_order": o.reflection_order, "late_reverb": o.late_reverb,
                   "air_absorption": o.air_absorption, "sh_order": o.sh_order, "seed": o.seed},
    }
    return doc
