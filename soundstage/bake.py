"""Bake a job to a WAV file and its JSON sidecar.

This is the engine's public entry point for Blender (through ``bridge/``), the
worker process and the ``soundstage bake`` command.
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
from soundstage.render import render_job


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


def bake(job, *, base_dir=None, out=None, fmt=None, progress=None, cancel=None) -> BakeResult:
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
        file is written or changed.

    Returns
    -------
    BakeResult

    Raises
    ------
    SoundstageError
        Bad input, with a one-line message.
    Cancelled
    """
    from soundstage.audio_io import write_json, write_wav

    t0 = time.perf_counter()
    j = load_job(job, base_dir, out=out, fmt=fmt)
    check_writable(j.output.path)
    res = render_job(j, progress=progress, cancel=cancel)
    audio = res.audio
    if not np.isfinite(audio).all():
        raise RuntimeError("render produced non-finite samples")  # a bug, not a user error
    wall = time.perf_counter() - t0
    duration = len(audio) / j.sample_rate
    peak = float(np.max(np.abs(audio))) if audio.size else 0.0
    info = {
        "format": j.output.format,
        "sample_rate": j.sample_rate,
        "channels": res.channels,
        "frames": int(len(audio)),
        "duration_s": round(duration, 6),
        "frame_start": j.frame_start,
        "frame_end": j.frame_end,
        "fps": j.fps,
        "peak": round(peak, 6),
        "peak_dbfs": round(20 * np.log10(max(peak, 1e-12)), 2),
        "sources": {name: {"level_dbfs": lv} for name, lv in res.source_levels_db.items()},
        "listener": j.listener.name,
        "hrtf": j.listener.hrtf if j.output.format == "binaural" else None,
        "room": j.room_spec.get("type", "free_field"),
        "wall_time_s": round(wall, 3),
        "realtime_factor": round(duration / wall, 2) if wall > 0 else None,
        "backend": res.backend,
        "engine": f"soundstage {__version__}",
        "python": platform.python_version(),
        "notes": res.notes + (["peak above 0 dBFS: lower source gains to avoid clipping on integer export"]
                              if peak > 1.0 else []),
    }
    if j.output.format == "ambix":
        info["ambisonic_order"] = j.output.ambisonic_order
        info["normalisation"] = "SN3D"
        info["channel_order"] = "ACN"
    write_wav(j.output.path, audio, j.sample_rate)
    side = sidecar_path(j.output.path)
    write_json(side, info)
    return BakeResult(Path(j.output.path), side, info)
