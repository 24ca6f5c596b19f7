"""The job: the JSON contract between Blender (or any caller) and the engine.

``load_job`` turns a job document (schema version 1, see DESIGN.md and
docs/job-format.md) into a validated ``Job``. Every problem raises ``JobError``
with one line naming the field (as a JSON path such as ``sources[1].position``),
the object, or the file, and what to do about it.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from soundstage.ambisonics import FORMATS
from soundstage.errors import JobError

SCHEMA_VERSION = 1
MIN_RATE, MAX_RATE = 8000, 192000
#: The longest timeline a job may span. Poses are held per frame in memory (one 4x4
#: matrix each), so an absurd frame_end must be refused before anything is allocated;
#: a million frames is over 11 hours at 24 fps.
MAX_FRAMES = 1_000_000
#: A source closer than this to the listener is "on top of" it (metres).
MIN_DISTANCE = 0.1


@dataclass
class Source:
    """One sound source.

    Attributes
    ----------
    name : str
    audio : Path
        Absolute path of the source's audio file.
    positions : ndarray, shape (F, 3)
        World position per frame, metres.
    gain_db : float
    start_frame : int
        Frame at which the audio's first sample plays.
    """

    name: str
    audio: Path
    positions: np.ndarray
    gain_db: float = 0.0
    start_frame: int = 1


@dataclass
class Listener:
    """The listening camera.

    Attributes
    ----------
    name : str
    matrices : ndarray, shape (F, 4, 4)
        Blender ``matrix_world`` per frame (camera looks along local -Z, up +Y).
    hrtf : str
        "default" or an absolute path of a SOFA file.
    """

    name: str
    matrices: np.ndarray
    hrtf: str = "default"


@dataclass
class Output:
    format: str
    path: Path
    ambisonic_order: int = 1


@dataclass
class RenderOptions:
    """Quality knobs (optional ``"render"`` object of the job).

    Attributes
    ----------
    reflection_order : int
        Image sources rendered explicitly per frame (0 to 3); later energy is
        rendered as the statistical late tail.
    late_reverb : bool
    air_absorption : bool
    sh_order : int
        Order of the ambisonic intermediate for reflections (1 to 3).
    seed : int
        Seed of the late-tail noise (bakes are deterministic).
    """

    reflection_order: int = 2
    late_reverb: bool = True
    air_absorption: bool = True
    sh_order: int = 3
    seed: int = 0


@dataclass
class Job:
    sample_rate: int
    fps: float
    frame_start: int
    frame_end: int
    speed_of_sound: float
    room_spec: dict
    room: Any  # soundstage.rooms.base.Room or None for free field
    listener: Listener
    sources: list[Source]
    output: Output
    render: RenderOptions = field(default_factory=RenderOptions)
    base_dir: Path = Path(".")

    @property
    def n_frames(self) -> int:
        return self.frame_end - self.frame_start + 1

    @property
    def n_samples(self) -> int:
        """Output length: exactly the timeline range (frames / fps seconds)."""
        return int(round(self.n_frames * self.sample_rate / self.fps))


# --------------------------------------------------------------------------- helpers
def _fail(where: str, msg: str) -> None:
    raise JobError(f"{where}: {msg}")


def _number(value, where: str, *, lo=None, hi=None, integer=False, lo_open=False) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        _fail(where, f"expected a number, got {json.dumps(value)[:40]}")
    if integer and (not float(value).is_integer()):
        _fail(where, f"expected a whole number, got {value}")
    if not math.isfinite(value):
        _fail(where, f"must be finite, got {value}")
    if lo is not None and (value <= lo if lo_open else value < lo):
        _fail(where, f"must be {'>' if lo_open else '>='} {lo}, got {value}")
    if hi is not None and value > hi:
        _fail(where, f"must be <= {hi}, got {value}")
    return int(value) if integer else float(value)


def _array(value, where: str, inner: int, n_frames: int) -> np.ndarray:
    """A per-frame array: one item of ``inner`` numbers, or ``n_frames`` of them."""
    try:
        a = np.asarray(value, dtype=float)
    except (TypeError, ValueError):
        _fail(where, f"expected {inner} numbers or a list of {n_frames} such lists")
    if a.ndim == 1 and a.shape[0] == inner:
        a = np.broadcast_to(a, (n_frames, inner)).copy()
    elif a.ndim == 2 and a.shape[1] == inner:
        if a.shape[0] != n_frames:
            _fail(
                where,
                f"has {a.shape[0]} entries but the frame range has {n_frames} "
                "(one per frame from frame_start to frame_end)",
            )
    else:
        _fail(where, f"expected {inner} numbers or a list of {n_frames} such lists, got shape {a.shape}")
    bad = ~np.isfinite(a)
    if bad.any():
        f = int(np.argwhere(bad)[0][0])
        _fail(where, f"non-finite value (NaN or Inf) at entry {f}")
    return a


def _path(value, where: str, base_dir: Path) -> Path:
    if not isinstance(value, str) or not value.strip():
        _fail(where, "expected a file path")
    p = Path(os.path.expanduser(value))
    return p if p.is_absolute() else (base_dir / p)


def _check_keys(obj: dict, allowed: set, where: str) -> None:
    extra = sorted(set(obj) - allowed)
    if extra:
        import difflib

        hints = [difflib.get_close_matches(k, allowed, n=1) for k in extra]
        hint = "; ".join(f"'{k}' (did you mean '{h[0]}'?)" if h else f"'{k}'" for k, h in zip(extra, hints))
        _fail(where, f"unknown field {hint}")


# --------------------------------------------------------------------------- loading
def read_job_document(source) -> tuple[dict, Path]:
    """Read a job from a path or take a dict; return (document, base directory)."""
    if isinstance(source, dict):
        return source, Path.cwd()
    p = Path(source)
    if not p.exists():
        raise JobError(f"job file not found: {p}")
    try:
        doc = json.loads(p.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise JobError(f"{p}: not valid JSON ({e})") from None
    if not isinstance(doc, dict):
        raise JobError(f"{p}: a job is a JSON object")
    return doc, p.resolve().parent


def load_job(source, base_dir=None, *, out=None, fmt=None) -> Job:
    """Load and validate a job.

    Parameters
    ----------
    source : dict or path
        The job document or its JSON file.
    base_dir : path, optional
        Directory relative paths resolve against (default: the job file's
        directory, or the current directory for a dict).
    out, fmt : optional
        Override ``output.path`` and ``output.format``.

    Returns
    -------
    Job

    Raises
    ------
    JobError
        One line naming the problem.
    """
    doc, default_base = read_job_document(source)
    base = Path(base_dir) if base_dir is not None else default_base
    _check_keys(
        doc,
        {"version", "sample_rate", "fps", "frame_start", "frame_end", "speed_of_sound", "room", "listener",
         "sources", "output", "render", "name", "comment"},
        "job",
    )
    if doc.get("version") != SCHEMA_VERSION:
        _fail("version", f"this engine reads job version {SCHEMA_VERSION}, got {doc.get('version')!r}")
    rate = _number(doc.get("sample_rate", 48000), "sample_rate", integer=True)
    if not MIN_RATE <= rate <= MAX_RATE:
        _fail("sample_rate", f"{rate} Hz is outside {MIN_RATE}-{MAX_RATE} Hz")
    fps = _number(doc.get("fps", 24), "fps", lo=0, lo_open=True, hi=1000)
    fs_ = _number(doc.get("frame_start", 1), "frame_start", integer=True)
    fe = _number(doc.get("frame_end", fs_), "frame_end", integer=True)
    if fe < fs_:
        _fail("frame_end", f"{fe} is before frame_start {fs_}")
    n_frames = fe - fs_ + 1
    if n_frames > MAX_FRAMES:
        _fail("frame_end", f"frames {fs_}-{fe} are {n_frames} frames; a job spans at most {MAX_FRAMES:,} "
                           "(check frame_start and frame_end, or split the bake)")
    c = _number(doc.get("speed_of_sound", 343.0), "speed_of_sound", lo=1.0, hi=10000.0)

    render = _render_options(doc.get("render", {}))
    listener = _listener(doc.get("listener"), n_frames, base)
    sources = _sources(doc.get("sources"), n_frames, fs_, base)
    output = _output(doc.get("output"), base, out, fmt)

    room_spec = doc.get("room", {"type": "free_field"})
    from soundstage.rooms.factory import room_from_spec

    room = room_from_spec(room_spec, "room")

    job = Job(rate, fps, fs_, fe, c, room_spec, room, listener, sources, output, render, base)
    _check_geometry(job)
    return job


def _render_options(r) -> RenderOptions:
    if not isinstance(r, dict):
        _fail("render", "expected an object")
    _check_keys(r, {"reflection_order", "late_reverb", "air_absorption", "sh_order", "seed"}, "render")
    o = RenderOptions()
    if "reflection_order" in r:
        o.reflection_order = _number(r["reflection_order"], "render.reflection_order", lo=0, hi=3, integer=True)
    if "sh_order" in r:
        o.sh_order = _number(r["sh_order"], "render.sh_order", lo=1, hi=3, integer=True)
    if "seed" in r:
        o.seed = _number(r["seed"], "render.seed", lo=0, integer=True)
    for k in ("late_reverb", "air_absorption"):
        if k in r:
            if not isinstance(r[k], bool):
                _fail(f"render.{k}", "expected true or false")
            setattr(o, k, r[k])
    return o


def _listener(lst, n_frames: int, base: Path) -> Listener:
    if not isinstance(lst, dict):
        _fail("listener", "missing: a job needs a listener object with a matrix_world")
    _check_keys(lst, {"name", "matrix_world", "hrtf"}, "listener")
    name = str(lst.get("name", "Camera"))
    where = f"listener '{name}'.matrix_world"
    if "matrix_world" not in lst:
        _fail(where, "missing")
    m = _array(lst["matrix_world"], where, 16, n_frames).reshape(n_frames, 4, 4)
    rot = m[:, :3, :3]
    scale = np.linalg.norm(rot, axis=1)  # column norms
    if np.any(scale < 1e-9):
        f = int(np.argwhere(np.any(scale < 1e-9, axis=1))[0][0])
        _fail(where, f"degenerate rotation (zero scale) at frame entry {f}")
    dets = np.linalg.det(rot)
    if np.any(np.abs(dets) < 1e-12):
        f = int(np.argwhere(np.abs(dets) < 1e-12)[0][0])
        _fail(where, f"degenerate (flat) matrix at frame entry {f}")
    if np.any(np.abs(m[:, 3, :] - [0, 0, 0, 1]) > 1e-6):
        _fail(where, "last row must be 0 0 0 1 (a row-major 4x4 world matrix)")
    hrtf = lst.get("hrtf", "default")
    if hrtf != "default":
        hrtf = str(_path(hrtf, f"listener '{name}'.hrtf", base))
    return Listener(name, m, hrtf)


def _sources(srcs, n_frames: int, frame_start: int, base: Path) -> list[Source]:
    if not isinstance(srcs, list) or not srcs:
        _fail("sources", "a job needs at least one source")
    out, names = [], set()
    for i, s in enumerate(srcs):
        w = f"sources[{i}]"
        if not isinstance(s, dict):
            _fail(w, "expected an object")
        _check_keys(s, {"name", "audio", "position", "gain_db", "start_frame"}, w)
        name = str(s.get("name", f"source{i}"))
        w = f"source '{name}'"
        if name in names:
            _fail(w, "two sources have this name; names must be unique")
        names.add(name)
        if "audio" not in s:
            _fail(f"{w}.audio", "missing: give the path of the sound to play")
        audio = _path(s["audio"], f"{w}.audio", base)
        if not audio.is_file():
            _fail(f"{w}.audio", f"audio file not found: {audio}; check the path")
        if "position" not in s:
            _fail(f"{w}.position", "missing")
        pos = _array(s["position"], f"{w}.position", 3, n_frames)
        gain = _number(s.get("gain_db", 0.0), f"{w}.gain_db", lo=-200, hi=60)
        start = _number(s.get("start_frame", frame_start), f"{w}.start_frame", integer=True)
        out.append(Source(name, audio, pos, gain, start))
    return out


def _output(o, base: Path, out_override, fmt_override) -> Output:
    if o is None:
        o = {}
    elif not isinstance(o, dict):
        _fail("output", f"must be an object like {{\"format\": \"binaural\", \"path\": \"out.wav\"}}, "
                        f"got {type(o).__name__} {o!r:.40}")
    o = dict(o)
    _check_keys(o, {"format", "ambisonic_order", "path"}, "output")
    if fmt_override is not None:
        o["format"] = fmt_override
    if out_override is not None:
        o["path"] = str(out_override)
    fmt = o.get("format", "binaural")
    if fmt not in FORMATS:
        import difflib

        hint = difflib.get_close_matches(str(fmt), FORMATS, n=1)
        _fail("output.format", f"unknown format {fmt!r}; use one of {', '.join(FORMATS)}"
              + (f" (did you mean '{hint[0]}'?)" if hint else ""))
    order = _number(o.get("ambisonic_order", 1), "output.ambisonic_order", lo=1, hi=3, integer=True)
    path = _path(o.get("path", f"out_{fmt}.wav"), "output.path", base)
    if path.suffix.lower() != ".wav":
        _fail("output.path", f"{path.name}: output is a .wav file")
    return Output(fmt, path, order)


def _check_geometry(job: Job) -> None:
    """Sources inside the room and never on top of the listener."""
    lis = job.listener.matrices[:, :3, 3]
    room = job.room
    if room is not None:
        inside = room.contains(lis)
        if not inside.all():
            f = int(np.argwhere(~inside)[0][0])
            _fail(f"listener '{job.listener.name}'",
                  f"is outside the room at frame {job.frame_start + f} (position {np.round(lis[f], 3).tolist()})")
    for s in job.sources:
        d = np.linalg.norm(s.positions - lis, axis=1)
        if np.any(d < MIN_DISTANCE):
            f = int(np.argmin(d))
            _fail(f"source '{s.name}'",
                  f"is on top of the listener at frame {job.frame_start + f} ({d[f]:.3f} m apart; "
                  f"keep it at least {MIN_DISTANCE} m away)")
        if room is not None:
            inside = room.contains(s.positions)
            if not inside.all():
                f = int(np.argwhere(~inside)[0][0])
                _fail(f"source '{s.name}'",
                      f"is outside the room at frame {job.frame_start + f} "
                      f"(position {np.round(s.positions[f], 3).tolist()}); move it inside the walls")
