"""Engine side of the worker protocol: run one bake for a parent process.

Blender's own Python has neither torch nor pyroomacoustics, so the Blender
add-on starts the engine in the project's environment as a child process and
talks to it through this module. Nothing here imports ``bpy``.

Usage::

    python -m soundstage.worker JOB.json [--out PATH] [--format F] [--cancel-on-eof]
    python -m soundstage.worker JOB.json --task field-render --model MODEL.pt [--out PATH] [--cancel-on-eof]
    python -m soundstage.worker REQUEST.json --task field-train [--cancel-on-eof]

Tasks (``--task``, default ``bake``): ``bake`` is ``soundstage bake``;
``field-render`` is ``soundstage field render MODEL JOB`` (same WAV and sidecar);
``field-train`` writes a capture from a training request (``train_field_request``)
and trains a field on it (``soundstage field train``).

Protocol
--------
stdout carries only JSON lines, one event per line, flushed as they happen
(anything else the engine prints is diverted to stderr):

* ``{"event": "start", "pid": 1234, "job": "/abs/job.json"}`` once, first.
* ``{"event": "progress", "fraction": 0.42, "message": "early reflections"}``,
  ``fraction`` in [0, 1], non-decreasing, throttled to a few per second.
* ``{"event": "done", "path": "/abs/out.wav", "sidecar": "/abs/out.json", "info": {...}}``
  then exit status 0. ``info`` is what the sidecar holds. For ``field-train``,
  ``path`` is the model file, ``capture`` the capture folder and ``info`` the
  training summary (``{"fields": [...]}``).
* ``{"event": "error", "message": "one line"}`` then exit status 2 for input the
  user can fix (``SoundstageError``) or 1 for an internal error (the traceback
  goes to stderr).
* ``{"event": "cancelled"}`` then exit status 3.

stdin: a line ``cancel`` asks the bake to stop at its next check; with
``--cancel-on-eof``, stdin closing (the parent died) does the same. SIGTERM and
SIGINT also cancel. A cancelled bake writes nothing: the engine writes its
output atomically only when it has finished, so a previous file at the output
path is left untouched.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import signal
import sys
import threading
import time
import traceback

EXIT_OK, EXIT_INTERNAL, EXIT_USER, EXIT_CANCELLED = 0, 1, 2, 3


class _Channel:
    """Writes protocol events to the real stdout, one JSON object per line."""

    def __init__(self, stream):
        self._stream = stream
        self._lock = threading.Lock()
        self._last_progress = (-1.0, 0.0)  # (fraction, time)

    def emit(self, event: str, **fields) -> None:
        line = json.dumps({"event": event, **fields}, default=str)
        with self._lock:
            try:
                self._stream.write(line + "\n")
                self._stream.flush()
            except (BrokenPipeError, ValueError):  # the parent went away; keep baking quietly
                pass

    def progress(self, fraction: float, message: str = "") -> None:
        fraction = float(min(max(fraction, 0.0), 1.0))
        last_f, last_t = self._last_progress
        now = time.monotonic()
        # Throttle: the engine may report per block; the UI needs a few updates a second.
        if fraction < 1.0 and fraction - last_f < 0.01 and now - last_t < 0.2:
            return
        fraction = max(fraction, last_f)
        self._last_progress = (fraction, now)
        self.emit("progress", fraction=round(fraction, 4), message=str(message))


#: What each task needs to import (a field needs torch; a bake does not).
TASK_MODULES = {"bake": "soundstage.bake", "field-render": "soundstage.field.render",
                "field-train": "soundstage.field.train"}
#: ``format`` tag of a field training request.
TRAIN_REQUEST_FORMAT = "soundstage-field-request"


def run_task(task: str, path, *, out=None, fmt=None, model=None, progress=None, cancel=None) -> dict:
    """Run one task; return the fields of its ``done`` event.

    Shared by this worker and the bridge's in-process runner, so both run a task the same way.

    Parameters
    ----------
    task : {"bake", "field-render", "field-train"}
    path : path
        The job (bake, field-render) or the training request (field-train).
    out, fmt : optional
        Output path and format overrides of a bake; ``out`` also for field-render.
    model : path, optional
        The model file of field-render.
    progress : callable(fraction, message), optional
    cancel : callable, optional

    Returns
    -------
    dict
        ``path``, ``sidecar`` (renders), ``info`` (the sidecar, or the training summary).

    Raises
    ------
    SoundstageError
        Input the user can fix, one line.
    Cancelled
    """
    from soundstage.errors import SoundstageError

    if task == "bake":
        from soundstage.bake import bake

        r = bake(path, out=out, fmt=fmt, progress=progress, cancel=cancel)
    elif task == "field-render":
        from soundstage.field.render import render_field_job

        if not model:
            raise SoundstageError("field-render needs --model MODEL.pt")
        if fmt not in (None, "binaural"):
            raise SoundstageError(f"a learned field renders binaural only, not '{fmt}'")
        r = render_field_job(model, path, out=out, progress=progress, cancel=cancel)
    elif task == "field-train":
        return train_field_request(path, progress=progress, cancel=cancel)
    else:
        raise SoundstageError(f"unknown task '{task}'; use one of {', '.join(sorted(TASK_MODULES))}")
    return {"path": str(r.path), "sidecar": str(r.sidecar), "info": r.info}


def train_field_request(path, *, progress=None, cancel=None) -> dict:
    """Write a capture from a training request and train a recording field on it.

    Blender's Python cannot read audio files or run torch, so the add-on gathers
    what it knows (camera matrices per frame and their times on the recording's
    clock, the speaker's position, file paths, the room) into a JSON request and
    this function, in the engine's environment, reads the audio, checks it
    against the animation, writes the capture
    (``soundstage.field.data.write_capture``) and runs ``train_fields``.

    Request fields (JSON object, ``format`` ``soundstage-field-request``, ``version`` 1):
    ``recording`` (binaural file), ``source_audio`` (what the speaker played),
    ``source_name``, ``source_position`` (3 numbers, m), ``source_start_s``
    (recording time of the source audio's first sample), ``camera`` (name),
    ``matrices`` (P x 16, row-major Blender camera matrices), ``times`` (P seconds on
    the recording's clock), ``frames`` ([first, last]) and ``fps`` (for messages),
    ``room`` (job room or null), ``capture_dir``, ``model`` (.pt), ``resume`` and
    ``options`` (``soundstage.field.train.TrainOptions`` fields: preset, steps, seed...).

    Returns
    -------
    dict
        ``path`` (the model), ``capture`` (the capture folder), ``info``
        (``{"fields": [training summary per field]}``).
    """
    import numpy as np
    import soundfile as sf

    from soundstage.audio_io import read_audio, resample
    from soundstage.errors import AudioError, JobError
    from soundstage.field.data import FIELD_RATE, write_capture
    from soundstage.field.train import TrainOptions, train_fields

    report = progress or (lambda f, m: None)
    try:
        with open(path, encoding="utf-8") as fh:
            req = json.load(fh)
    except (OSError, ValueError) as e:
        raise JobError(f"training request '{path}' cannot be read ({e})") from None
    if not isinstance(req, dict) or req.get("format") != TRAIN_REQUEST_FORMAT or req.get("version") != 1:
        raise JobError(f"'{path}' is not a version 1 field training request")
    try:
        camera = str(req["camera"])
        times = np.asarray(req["times"], float)
        mats = np.asarray(req["matrices"], float).reshape(-1, 4, 4)
        first, last = (int(v) for v in req["frames"])
        fps = float(req["fps"])
        rec_path, src_path = str(req["recording"]), str(req["source_audio"])
        model, capture_dir = str(req["model"]), str(req["capture_dir"])
    except (KeyError, TypeError, ValueError) as e:
        raise JobError(f"training request '{path}' is incomplete or malformed ({type(e).__name__}: {e})") from None
    report(0.0, "reading the recording")
    # read_audio first: the engine's checks (missing, corrupt, truncated, non-finite) with one-line messages.
    read_audio(rec_path, None, label="recording")
    rec, rate = sf.read(rec_path, dtype="float32", always_2d=True)
    name = os.path.basename(rec_path)
    if rec.shape[1] != 2:
        raise AudioError(f"recording '{rec_path}' has {rec.shape[1]} channel(s); a binaural recording has two "
                         "(left, right)")
    duration = len(rec) / rate
    if duration + 1e-6 < times[-1]:
        raise AudioError(
            f"recording '{name}' lasts {duration:.2f} s but camera '{camera}' is animated for {times[-1]:.2f} s "
            f"of it (frames {first}-{last} at {fps:g} fps, recording offset {times[0]:.2f} s); use the whole "
            "recording, shorten the frame range or lower the offset")
    # One rate for both signals (the capture reader resamples to the field's rate anyway).
    if rate != FIELD_RATE:
        rec = resample(rec, rate, FIELD_RATE).astype(np.float32)
    src = read_audio(src_path, FIELD_RATE, label=f"source '{req.get('source_name', 'source')}'")[0]
    report(0.01, "writing the capture")
    write_capture(capture_dir, recording=rec, source_audio=src, sample_rate=FIELD_RATE,
                  source_position=req["source_position"], matrices=mats, times=times, room=req.get("room"),
                  holdout=req.get("holdout", []), source_start_s=float(req.get("source_start_s", 0.0)),
                  name=str(req.get("source_name") or "source"))
    try:
        opts = TrainOptions(**(req.get("options") or {}))
    except TypeError as e:
        raise JobError(f"training request '{path}': bad options ({e})") from None
    res = train_fields(capture_dir, model, opts, resume=bool(req.get("resume")),
                       progress=lambda f, m: report(0.02 + 0.98 * f, m), cancel=cancel)
    return {"path": str(res.path), "capture": str(capture_dir),
            "info": {"fields": [{"source": f.source_name, "kind": f.kind, **f.info} for f in res.fields]}}


def _watch_stdin(cancel: threading.Event, cancel_on_eof: bool) -> None:
    try:
        for line in sys.stdin:
            if line.strip().lower() == "cancel":
                cancel.set()
                return
    except (OSError, ValueError):
        pass
    if cancel_on_eof:
        cancel.set()


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m soundstage.worker",
                                description="Bake one job and report progress as JSON lines (see module docs).")
    p.add_argument("job", help="job JSON file")
    p.add_argument("--out", help="output WAV path (overrides output.path)")
    p.add_argument("--format", dest="fmt", help="output format (overrides output.format)")
    p.add_argument("--cancel-on-eof", action="store_true",
                   help="cancel when stdin closes (set by a parent process that owns the pipe)")
    p.add_argument("--task", choices=sorted(TASK_MODULES), default="bake",
                   help="bake (default), field-render (with --model) or field-train (the file is a request)")
    p.add_argument("--model", help="field-render: the field model file (.pt)")
    return p


def main(argv=None) -> int:
    args = _parser().parse_args(argv)
    # Keep the real stdout for the protocol and send fd 1 to stderr, so prints
    # from the engine or its libraries (even from C) cannot corrupt the stream.
    proto = os.fdopen(os.dup(1), "w", encoding="utf-8", buffering=1)
    sys.stdout.flush()
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    chan = _Channel(proto)

    cancel = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: cancel.set())
    threading.Thread(target=_watch_stdin, args=(cancel, args.cancel_on_eof), daemon=True).start()

    chan.emit("start", pid=os.getpid(), job=os.path.abspath(args.job))
    try:
        from soundstage.errors import Cancelled, SoundstageError
        importlib.import_module(TASK_MODULES[args.task])
    except Exception as e:  # a broken environment: say so in one line
        traceback.print_exc()
        chan.emit("error", message=f"the engine environment cannot import {TASK_MODULES[args.task]} "
                                   f"({type(e).__name__}: {e})")
        return EXIT_INTERNAL
    try:
        result = run_task(args.task, args.job, out=args.out, fmt=args.fmt, model=args.model,
                          progress=chan.progress, cancel=cancel.is_set)
    except Cancelled:
        chan.emit("cancelled")
        return EXIT_CANCELLED
    except SoundstageError as e:
        chan.emit("error", message=str(e).splitlines()[0] if str(e) else type(e).__name__)
        return EXIT_USER
    except Exception as e:
        traceback.print_exc()
        chan.emit("error", message=f"internal error in the engine: {type(e).__name__}: {e}")
        return EXIT_INTERNAL
    chan.emit("done", **result)
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
