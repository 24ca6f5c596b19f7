"""Engine side of the worker protocol: run one bake for a parent process.

Blender's own Python has neither torch nor pyroomacoustics, so the Blender
add-on starts the engine in the project's environment as a child process and
talks to it through this module. Nothing here imports ``bpy``.

Usage::

    python -m soundstage.worker JOB.json [--out PATH] [--format F] [--cancel-on-eof]

Protocol
--------
stdout carries only JSON lines, one event per line, flushed as they happen
(anything else the engine prints is diverted to stderr):

* ``{"event": "start", "pid": 1234, "job": "/abs/job.json"}`` once, first.
* ``{"event": "progress", "fraction": 0.42, "message": "early reflections"}``,
  ``fraction`` in [0, 1], non-decreasing, throttled to a few per second.
* ``{"event": "done", "path": "/abs/out.wav", "sidecar": "/abs/out.json", "info": {...}}``
  then exit status 0. ``info`` is what the sidecar holds.
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
        from soundstage.bake import bake
        from soundstage.errors import Cancelled, SoundstageError
    except Exception as e:  # a broken environment: say so in one line
        traceback.print_exc()
        chan.emit("error", message=f"the engine environment cannot import soundstage ({type(e).__name__}: {e})")
        return EXIT_INTERNAL
    try:
        result = bake(args.job, out=args.out, fmt=args.fmt, progress=chan.progress, cancel=cancel.is_set)
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
    chan.emit("done", path=str(result.path), sidecar=str(result.sidecar), info=result.info)
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
