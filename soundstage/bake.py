"""Bake a job to a WAV file and its JSON sidecar.

This is the engine's public entry point for Blender (through ``bridge/``), the
worker process and the ``soundstage bake`` command.

A bake is safe to interrupt, cheap to repeat and able to run on many machines:

* the timeline is cut into chunks and every source is rendered per chunk
  (``soundstage.chunks``); finished parts go to a work folder as they finish,
  so an interrupted bake (Ctrl-C, SIGKILL, Esc in Blender) continues where it
  stopped with ``resume=True`` (``--resume``);
* parts, late tails and image sources are cached by content
  (``soundstage.cache``): a re-bake after changing one source renders only
  that source;
* parts can run on Dask (``workers=N`` for a local cluster, ``scheduler=ADDR``
  for a real one; ``soundstage.distributed``), with the same output bit for
  bit;
* the WAV and its sidecar are written to temporary files and renamed into place
  only when everything is there, under a lock on the target so two bakes of it
  cannot collide; the previous track stays byte-identical until then.

Options not given as arguments come from the environment, so callers that
cannot pass them (Blender's worker process) still can:
``SOUNDSTAGE_RESUME=1``, ``SOUNDSTAGE_CHUNK_SECONDS``, ``SOUNDSTAGE_WORKERS``,
``SOUNDSTAGE_SCHEDULER``, ``SOUNDSTAGE_WORK_DIR`` (and ``SOUNDSTAGE_CACHE=off``).
"""

from __future__ import annotations

import os
import platform
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from soundstage import __version__
from soundstage.errors import SoundstageError
from soundstage.job import load_job
from soundstage.render import BACKEND, channel_names, make_canceller


@dataclass
class BakeResult:
    """Where the bake went and what the sidecar says.

    Attributes
    ----------
    path : Path
        The WAV file.
    sidecar : Path
        ``<name>.json`` beside it.
    info : dict
        The sidecar's content.
    """

    path: Path
    sidecar: Path
    info: dict


def sidecar_path(wav: Path) -> Path:
    return Path(wav).with_suffix(".json")


def check_writable(path: Path) -> None:
    """Fail early (before rendering) if the output cannot be written."""
    d = Path(path).parent
    if not d.exists():
        try:
            d.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise SoundstageError(f"cannot create output directory {d}: {e.strerror}; choose another --out") from None
    if not os.access(d, os.W_OK | os.X_OK):
        raise SoundstageError(f"output directory {d} is not writable; choose another --out")


# --------------------------------------------------------------------------- options
_TRUE = ("1", "yes", "true", "on")


def _env(name: str) -> str | None:
    v = os.environ.get(name, "").strip()
    return v or None


def resolve_options(resume=None, chunk_seconds=None, workers=None, scheduler=None, work_dir=None,
                    only_chunks=None) -> dict:
    """Fill options not given from ``SOUNDSTAGE_*`` environment variables; check them.

    Raises
    ------
    SoundstageError
        A value that is not usable, naming the variable or option.
    """
    if resume is None:
        resume = (_env("SOUNDSTAGE_RESUME") or "0").lower() in _TRUE
    if chunk_seconds is None and _env("SOUNDSTAGE_CHUNK_SECONDS"):
        try:
            chunk_seconds = float(_env("SOUNDSTAGE_CHUNK_SECONDS"))
        except ValueError:
            raise SoundstageError(f"SOUNDSTAGE_CHUNK_SECONDS={_env('SOUNDSTAGE_CHUNK_SECONDS')!r} is not a number "
                                  "of seconds") from None
    if chunk_seconds is not None and not (np.isfinite(chunk_seconds) and chunk_seconds >= 0):
        raise SoundstageError(f"chunk length must be a number of seconds >= 0 (0: one chunk), got {chunk_seconds}")
    if workers is None and _env("SOUNDSTAGE_WORKERS"):
        try:
            workers = int(_env("SOUNDSTAGE_WORKERS"))
        except ValueError:
            raise SoundstageError(f"SOUNDSTAGE_WORKERS={_env('SOUNDSTAGE_WORKERS')!r} is not a whole number") \
                from None
    if workers is not None and workers < 0:
        raise SoundstageError(f"workers must be 0 (bake in this process) or more, got {workers}")
    scheduler = scheduler or _env("SOUNDSTAGE_SCHEDULER")
    work_dir = work_dir or _env("SOUNDSTAGE_WORK_DIR")
    if only_chunks is None and _env("SOUNDSTAGE_ONLY_CHUNKS"):
        only_chunks = _env("SOUNDSTAGE_ONLY_CHUNKS")
    if isinstance(only_chunks, str):
        from soundstage.chunks import parse_chunk_list

        try:
            only_chunks = parse_chunk_list(only_chunks)
        except ValueError as err:
            raise SoundstageError(f"only chunks '{only_chunks}': {err}; give numbers such as 3, 0,2,5 or 2-4") \
                from None
    return {"resume": bool(resume), "chunk_seconds": chunk_seconds, "workers": workers, "scheduler": scheduler,
            "work_dir": work_dir, "only_chunks": None if only_chunks is None else sorted(set(only_chunks))}


def _resolve_cache(cache):
    from soundstage.cache import Cache, default_cache

    if cache is None or cache is True:
        return default_cache()
    if cache is False:
        return None
    if isinstance(cache, Cache):
        return cache
    return Cache(cache)  # a folder


# --------------------------------------------------------------------------- bake
def bake(job, *, base_dir=None, out=None, fmt=None, progress=None, cancel=None, resume=None, chunk_seconds=None,
         workers=None, scheduler=None, cache=None, work_dir=None, lock_timeout: float = 0.0,
         only_chunks=None) -> BakeResult:
    """Render ``job`` and write the WAV and its sidecar atomically.

    Parameters
    ----------
    job : dict or path
        The job document (DESIGN.md) or its JSON file.
    base_dir : path, optional
        Where relative paths in the job resolve (default: the job file's
        directory, or the current directory for a dict).
    out : path, optional
        Overrides ``output.path``.
    fmt : str, optional
        Overrides ``output.format``.
    progress : callable(fraction, message), optional
    cancel : callable returning bool, or threading.Event, optional
        Polled between steps; when set the bake raises ``Cancelled`` and no
        output file is written or changed (finished chunks stay in the work
        folder for ``resume``).
    resume : bool, optional
        Reuse the finished chunks an interrupted bake of the same job left in
        its work folder (default ``$SOUNDSTAGE_RESUME``, else False: start over).
    chunk_seconds : float, optional
        Chunk length (default ``chunks.CHUNK_SECONDS``; 0: one chunk per source).
    workers : int, optional
        0 or None: bake in this process; N: on a local Dask cluster of N worker
        processes.
    scheduler : str, optional
        Address of a Dask scheduler to bake on (its workers need the engine).
    cache : Cache, path, bool, optional
        The intermediate cache (default the user's, unless ``SOUNDSTAGE_CACHE=off``;
        False: none).
    work_dir : path, optional
        Where work folders go (default ``cache_root()/work``).
    lock_timeout : float
        Seconds to wait for another bake of the same target to finish.
    only_chunks : list of int or str, optional
        A render-farm chunk task (default ``$SOUNDSTAGE_ONLY_CHUNKS``): render
        only these chunks (``[3]``, ``"0,2,5"``, ``"2-4"``) into the work folder
        and write no track. Many such tasks may share one work folder (give
        ``work_dir`` on shared storage); a final bake with ``resume=True`` then
        assembles the track (docs/farm.md).

    Returns
    -------
    BakeResult
        For ``only_chunks``: ``path`` is the work folder and ``info`` counts the parts.

    Raises
    ------
    SoundstageError
        Bad input, with a one-line message; ``locks.LockedError`` when another
        bake is writing the same target.
    Cancelled
    """
    from soundstage.audio_io import write_json, write_wav
    from soundstage.chunks import PartRenderer, assemble, job_digest, open_store, plan_chunks, plan_parts
    from soundstage.locks import sweep_stale_temps, target_lock

    t0 = time.perf_counter()
    report = progress or (lambda f, m: None)
    check = make_canceller(cancel)
    opts = resolve_options(resume, chunk_seconds, workers, scheduler, work_dir, only_chunks)
    j = load_job(job, base_dir, out=out, fmt=fmt)
    target = Path(j.output.path)
    if opts["only_chunks"] is not None:
        return _bake_chunks(j, opts, cache, report, check, t0)
    check_writable(target)
    lock = target_lock(target).acquire(lock_timeout)
    try:
        sweep_stale_temps(target.parent)
        store_cache = _resolve_cache(cache)
        if store_cache is not None and opts["work_dir"] is None:
            store_cache.sweep_work()
        renderer = PartRenderer(j, cache=store_cache)
        ctx = renderer.ctx
        chunks = plan_chunks(ctx.n_out, ctx.fs, opts["chunk_seconds"])
        parts = plan_parts(ctx, chunks)
        digest = job_digest(ctx)
        store = open_store(ctx, target, digest, chunks, opts["work_dir"])
        ok = False
        try:
            if not opts["resume"]:
                store.clear()
            stats = _render_parts(renderer, parts, store, store_cache, opts, digest, report, check)
            check()
            report(0.97, "writing")
            audio, levels = assemble(ctx, chunks, parts, store)
            if not np.isfinite(audio).all():
                raise RuntimeError("render produced non-finite samples")  # a bug, not a user error
            info = _sidecar(j, ctx, audio, levels, time.perf_counter() - t0, chunks, stats)
            check()
            write_wav(target, audio, j.sample_rate)
            side = sidecar_path(target)
            write_json(side, info)
            ok = True
        finally:
            store.close(remove=ok)
    finally:
        lock.release()
    report(1.0, "done")
    return BakeResult(target, side, info)


def _bake_chunks(j, opts, cache, report, check, t0) -> BakeResult:
    """A chunk task: render some chunks' parts into a shared work folder, write no track."""
    from soundstage.chunks import PartRenderer, job_digest, open_store, parse_chunk_list, plan_chunks, plan_parts

    store_cache = _resolve_cache(cache)
    renderer = PartRenderer(j, cache=store_cache)
    ctx = renderer.ctx
    chunks = plan_chunks(ctx.n_out, ctx.fs, opts["chunk_seconds"])
    try:
        wanted = parse_chunk_list(",".join(map(str, opts["only_chunks"])), len(chunks))
    except ValueError as err:
        raise SoundstageError(f"only chunks: {err}") from None
    parts = [p for p in plan_parts(ctx, chunks) if p.chunk in wanted]
    digest = job_digest(ctx)
    store = open_store(ctx, Path(j.output.path), digest, chunks, opts["work_dir"], shared=True)
    stats = _render_parts(renderer, parts, store, store_cache, dict(opts, resume=True), digest, report, check)
    report(1.0, "done")
    info = {"work_dir": str(store.path), "chunks_total": len(chunks), "only_chunks": wanted,
            "chunks": dict(stats, count=len(chunks)), "wall_time_s": round(time.perf_counter() - t0, 3)}
    return BakeResult(store.path, store.path / "manifest.json", info)


def _render_parts(renderer, parts, store, cache, opts, digest, report, check) -> dict:
    """Render every part not already in ``store`` or ``cache``; return counts."""
    ctx = renderer.ctx
    n_ch = ctx.n_channels
    total = max(sum(p.n for p in parts), 1)
    stats = {"parts": len(parts), "resumed": 0, "cached": 0, "rendered": 0}
    todo = []
    for p in parts:
        if opts["resume"] and store.has(p, n_ch):
            stats["resumed"] += 1
            continue
        hit = cache.get("part", p.key) if cache is not None else None
        if isinstance(hit, np.ndarray) and hit.shape == (p.n, n_ch) and hit.dtype == np.float32:
            store.put(p, hit)
            stats["cached"] += 1
            continue
        todo.append(p)
    done = [total - sum(p.n for p in todo)]
    report(0.02 + 0.93 * done[0] / total, f"{len(parts) - len(todo)} of {len(parts)} parts already done")

    def finished(p, y):
        store.put(p, y)
        if cache is not None:
            cache.put("part", p.key, y)
        stats["rendered"] += 1
        done[0] += p.n
        report(0.02 + 0.93 * done[0] / total, f"{ctx.job.sources[p.source].name}: chunk {p.chunk + 1} done")

    if not todo:
        return stats
    if opts["workers"] or opts["scheduler"]:
        from soundstage.distributed import connect, run_parts

        report(0.02 + 0.93 * done[0] / total, "starting Dask" if not opts["scheduler"] else
               f"connecting to {opts['scheduler']}")
        with connect(opts["workers"], opts["scheduler"]) as client:
            stats["workers"] = len(client.scheduler_info().get("workers", {}))
            run_parts(client, ctx.job, digest, todo, on_part=finished, cancel=check,
                      ship_files=bool(opts["scheduler"]), use_cache=cache is not None)
        return stats
    # In this process, source by source, so each source's signal, images and tail are built once.
    for p in sorted(todo, key=lambda p: (p.source, p.chunk)):
        check()
        base, name = done[0], ctx.job.sources[p.source].name

        def sub(frac, msg, _b=base, _p=p, _n=name):
            report(0.02 + 0.93 * (_b + frac * _p.n) / total, f"{_n}: {msg}")

        finished(p, renderer.render(p, cancel=check, report=sub))
    return stats


def _sidecar(j, ctx, audio, levels, wall, chunks, stats) -> dict:
    duration = len(audio) / j.sample_rate
    peak = float(np.max(np.abs(audio))) if audio.size else 0.0
    room = j.room
    notes = list(dict.fromkeys(getattr(room, "notes", []) if room is not None else []))
    info = {
        "format": j.output.format,
        "sample_rate": j.sample_rate,
        "channels": channel_names(ctx.decoder),
        "frames": int(len(audio)),
        "duration_s": round(duration, 6),
        "frame_start": j.frame_start,
        "frame_end": j.frame_end,
        "fps": j.fps,
        "peak": round(peak, 6),
        "peak_dbfs": round(20 * np.log10(max(peak, 1e-12)), 2),
        "sources": {name: {"level_dbfs": lv} for name, lv in levels.items()},
        "listener": j.listener.name,
        "hrtf": j.listener.hrtf if j.output.format == "binaural" else None,
        "room": j.room_spec.get("type", "free_field"),
        "wall_time_s": round(wall, 3),
        "realtime_factor": round(duration / wall, 2) if wall > 0 else None,
        "backend": BACKEND + ("+dask" if "workers" in stats else ""),
        "engine": f"soundstage {__version__}",
        "python": platform.python_version(),
        "chunks": {"count": len(chunks), "seconds": round((chunks[0][1] - chunks[0][0]) / j.sample_rate, 6),
                   "parts": stats["parts"], "rendered": stats["rendered"], "from_cache": stats["cached"],
                   "resumed": stats["resumed"]},
        "notes": notes + (["peak above 0 dBFS: lower source gains to avoid clipping on integer export"]
                          if peak > 1.0 else []),
    }
    if "workers" in stats:
        info["chunks"]["dask_workers"] = stats["workers"]
    if j.output.format == "ambix":
        info["ambisonic_order"] = j.output.ambisonic_order
        info["normalisation"] = "SN3D"
        info["channel_order"] = "ACN"
    return info
