"""Running the engine: in this process, or as a worker in its own environment.

Real Blender's Python has no torch, scipy or pyroomacoustics, so there the
engine runs as ``python -m soundstage.worker JOB.json --out WAV`` with the
engine environment's interpreter, speaking the JSON-line protocol documented
in ``soundstage/worker.py``. Where ``soundstage`` imports (the bpy module
installed in the engine's environment: tests, ``python headless/render.py``)
the same bake runs in a thread of this process instead.

Both runners look the same to the caller: ``start()``, then ``poll()`` on a
timer (it never blocks) until a terminal event arrives, ``cancel()`` at any
time. Events are dicts as in the worker protocol: ``progress``, ``done``,
``error``, ``cancelled``. Besides a bake, a runner runs the worker's other
tasks (``task="field-render"`` with a ``model``, ``task="field-train"`` with a
training request instead of a job); those need torch, so ``make_runner`` is
told which module must import before it chooses to run in-process.

Finding the engine environment (first that works):
1. the ``SOUNDSTAGE_PYTHON`` environment variable;
2. the add-on preference "Engine Python";
3. ``.venv/bin/python`` (``.venv\\Scripts\\python.exe`` on Windows) of the
   repository the add-on's source lives in, which is where ``make demo`` puts
   it when the extension is installed from (or symlinked to) a checkout.
"""

from __future__ import annotations

import collections
import importlib
import importlib.util
import json
import os
import queue
import subprocess
import threading
import time
import traceback
from pathlib import Path

from .errors import BridgeError

#: The extension root, which is also the repository root when run from a checkout.
EXT_ROOT = Path(__file__).resolve().parents[1]
TERMINAL = ("done", "error", "cancelled")


def engine_importable(module: str = "soundstage.bake") -> bool:
    """True when ``module`` (default ``soundstage.bake``) and its dependencies import here."""
    try:
        if importlib.util.find_spec("soundstage") is None:
            return False
        importlib.import_module(module)
        return True
    except Exception:
        return False


def _venv_python(root: Path) -> Path:
    if os.name == "nt":
        return root / ".venv" / "Scripts" / "python.exe"
    return root / ".venv" / "bin" / "python"


def find_engine_python(preference: str = "") -> Path:
    """The engine environment's interpreter.

    Parameters
    ----------
    preference : str
        The add-on preference "Engine Python" (may be empty).

    Raises
    ------
    BridgeError
        Saying what was tried and how to fix it.
    """
    tried = []
    for label, value in (("SOUNDSTAGE_PYTHON", os.environ.get("SOUNDSTAGE_PYTHON", "")),
                         ("the add-on preference Engine Python", preference),
                         ("the repository's environment", str(_venv_python(EXT_ROOT)))):
        if not value:
            continue
        p = Path(value).expanduser()
        if p.is_dir():  # a venv folder was given: use its interpreter
            p = p / ("Scripts/python.exe" if os.name == "nt" else "bin/python")
        if p.is_file() and os.access(p, os.X_OK):
            return p
        tried.append(f"{label} ({p})")
    where = "; tried " + ", ".join(tried) if tried else ""
    raise BridgeError("Soundstage cannot find its engine environment: run `make demo` in the Soundstage "
                      "repository, or set Edit > Preferences > Add-ons > Soundstage > Engine Python to that "
                      f"environment's python{where}")


class InProcessRunner:
    """Runs ``soundstage.bake.bake`` in a background thread of this process."""

    kind = "in-process"

    def __init__(self):
        self._events: queue.Queue = queue.Queue()
        self._cancel = threading.Event()
        self._thread: threading.Thread | None = None
        self.finished = False

    def start(self, job_path: Path, out_path: Path | None = None, *, task: str = "bake",
              model: Path | None = None) -> None:
        """Run ``task`` (``soundstage.worker.run_task``) on a job or request file in a thread."""
        self._thread = threading.Thread(target=self._run, args=(Path(job_path), out_path, task, model), daemon=True)
        self._thread.start()

    def _run(self, job_path: Path, out_path, task: str, model) -> None:
        from soundstage.errors import Cancelled, SoundstageError
        from soundstage.worker import run_task

        def progress(fraction, message=""):
            self._events.put({"event": "progress", "fraction": float(fraction), "message": str(message)})

        try:
            r = run_task(task, job_path, out=None if out_path is None else Path(out_path),
                         model=None if model is None else str(model), progress=progress, cancel=self._cancel.is_set)
        except Cancelled:
            self._events.put({"event": "cancelled"})
        except SoundstageError as e:
            self._events.put({"event": "error", "message": str(e).splitlines()[0] if str(e) else type(e).__name__})
        except Exception as e:  # a bug: keep the traceback on stderr, one line for the user
            traceback.print_exc()
            self._events.put({"event": "error", "message": f"internal error in the engine: {type(e).__name__}: {e}"})
        else:
            self._events.put({"event": "done", **r})

    def poll(self) -> list[dict]:
        out = []
        while True:
            try:
                ev = self._events.get_nowait()
            except queue.Empty:
                return out
            out.append(ev)
            if ev["event"] in TERMINAL:
                self.finished = True

    def cancel(self) -> None:
        self._cancel.set()

    def join(self, timeout: float | None = None) -> None:
        if self._thread is not None:
            self._thread.join(timeout)


class SubprocessRunner:
    """Runs ``python -m soundstage.worker`` in the engine's environment."""

    kind = "worker"
    #: Seconds to wait after a cancel request before terminating the worker.
    CANCEL_GRACE_S = 15.0

    def __init__(self, python: Path):
        self.python = Path(python)
        self._events: queue.Queue = queue.Queue()
        self._stderr = collections.deque(maxlen=40)
        self._proc: subprocess.Popen | None = None
        self._seen_terminal = False
        self._cancel_requested = False
        self._cancel_time = 0.0
        self._readers: list[threading.Thread] = []
        self.finished = False

    def command(self, job_path: Path, out_path: Path | None = None, *, task: str = "bake",
                model: Path | None = None) -> list[str]:
        cmd = [str(self.python), "-m", "soundstage.worker", str(job_path)]
        if out_path is not None:
            cmd += ["--out", str(out_path)]
        if task != "bake":
            cmd += ["--task", task]
        if model is not None:
            cmd += ["--model", str(model)]
        return cmd + ["--cancel-on-eof"]

    def _env(self) -> dict:
        env = {k: v for k, v in os.environ.items() if k not in ("PYTHONHOME", "PYTHONPATH")}
        # Prefer the engine shipped beside the add-on, so worker and add-on speak the same protocol.
        if (EXT_ROOT / "soundstage" / "worker.py").is_file():
            env["PYTHONPATH"] = str(EXT_ROOT)
        env["PYTHONUNBUFFERED"] = "1"
        return env

    def start(self, job_path: Path, out_path: Path | None = None, *, task: str = "bake",
              model: Path | None = None) -> None:
        """Start ``python -m soundstage.worker`` on a job or request file (``task`` as in the worker)."""
        try:
            self._proc = subprocess.Popen(
                self.command(job_path, out_path, task=task, model=model), stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                stderr=subprocess.PIPE, text=True, encoding="utf-8", errors="replace", bufsize=1,
                env=self._env(), cwd=str(Path(job_path).parent),
            )
        except OSError as e:
            raise BridgeError(f"cannot start the engine with {self.python} ({e.strerror or e}); "
                              "fix Engine Python in the Soundstage add-on preferences") from None
        for target in (self._read_stdout, self._read_stderr):
            t = threading.Thread(target=target, daemon=True)
            t.start()
            self._readers.append(t)
        if self._cancel_requested:  # cancelled before it started: tell it at once
            self.cancel()

    def _read_stdout(self) -> None:
        for line in self._proc.stdout:
            line = line.strip()
            if not line:
                continue
            try:
                ev = json.loads(line)
            except ValueError:  # not ours: keep it with the diagnostics
                self._stderr.append(line)
                continue
            if isinstance(ev, dict) and "event" in ev:
                if ev["event"] in TERMINAL:
                    self._seen_terminal = True
                self._events.put(ev)

    def _read_stderr(self) -> None:
        for line in self._proc.stderr:
            if line.strip():
                self._stderr.append(line.rstrip())

    def poll(self) -> list[dict]:
        out = []
        while True:
            try:
                out.append(self._events.get_nowait())
            except queue.Empty:
                break
        if any(ev["event"] in TERMINAL for ev in out):
            self._reap()
            self.finished = True
        elif self._proc is not None and self._proc.poll() is not None:
            # Exited: let the readers drain what is left, then decide.
            for t in self._readers:
                t.join(timeout=5)
            while True:
                try:
                    out.append(self._events.get_nowait())
                except queue.Empty:
                    break
            if not any(ev["event"] in TERMINAL for ev in out):
                out.append(self._exit_event(self._proc.returncode))
            self.finished = True
        elif self._cancel_requested and time.monotonic() - self._cancel_time > self.CANCEL_GRACE_S:
            # The engine checks for cancel between steps; one that does not
            # answer in time is stopped the hard way (it writes nothing either way).
            self._proc.terminate()
            self._cancel_time = float("inf")
        return out

    def _exit_event(self, code: int) -> dict:
        if code == 3 or (self._cancel_requested and code in (-15, -2, -9)):
            return {"event": "cancelled"}
        tail = next((ln for ln in reversed(self._stderr) if ln.strip()), "")
        hint = ""
        if "No module named" in tail:
            hint = (f"; {self.python} is not the Soundstage engine environment (run `make demo` in the "
                    "repository, or fix Engine Python in the add-on preferences)")
        return {"event": "error", "message": f"the engine worker stopped (exit status {code}): {tail}{hint}"}

    def _reap(self) -> None:
        if self._proc is not None:
            try:
                self._proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()

    def cancel(self) -> None:
        self._cancel_requested = True
        self._cancel_time = time.monotonic()
        if self._proc is None or self._proc.poll() is not None:
            return
        try:
            self._proc.stdin.write("cancel\n")
            self._proc.stdin.flush()
        except (OSError, ValueError):
            self._proc.terminate()

    def join(self, timeout: float | None = None) -> None:
        if self._proc is not None:
            try:
                self._proc.wait(timeout)
            except subprocess.TimeoutExpired:
                pass

    @property
    def stderr_tail(self) -> list[str]:
        return list(self._stderr)


def make_runner(mode: str = "auto", python: str = "", needs: str = "soundstage.bake"):
    """A runner for this environment.

    Parameters
    ----------
    mode : {"auto", "inprocess", "worker"}
        ``auto`` runs in-process when the engine imports here, else a worker.
    python : str
        Engine Python preference, used for the worker.
    needs : str
        The module the task needs (``soundstage.field.render`` for a field: torch).
    """
    if mode not in ("auto", "inprocess", "worker"):
        raise BridgeError(f"unknown engine mode '{mode}' (auto, inprocess or worker)")
    if mode == "inprocess" or (mode == "auto" and engine_importable(needs)):
        if not engine_importable(needs):
            raise BridgeError(f"the Soundstage engine ({needs}) does not import in this Python; use the worker mode")
        return InProcessRunner()
    return SubprocessRunner(find_engine_python(python))


__all__ = ["InProcessRunner", "SubprocessRunner", "make_runner", "find_engine_python", "engine_importable",
           "EXT_ROOT"]


def run_blocking(session, progress=None, poll_interval: float = 0.05):
    """Drive a bridge session (``BakeSession``, ``TrainSession``) to its end from a script.

    Prepares it if new, starts it, polls until it stops, calling
    ``progress(fraction, message)`` whenever either changes; Ctrl-C cancels it and
    waits for the runner to stop. Returns ``session.finish()``, which raises
    ``BakeCancelled`` or ``BridgeError`` as the session ended.
    """
    if session.state == "new":
        session.prepare()
    session.start()
    last = None
    try:
        while session.poll() == "running":
            if progress is not None and (session.fraction, session.message) != last:
                last = (session.fraction, session.message)
                progress(session.fraction, session.message)
            time.sleep(poll_interval)
    except KeyboardInterrupt:
        session.cancel()
        while session.poll() == "running":
            time.sleep(poll_interval)
    if progress is not None and session.state == "done":
        progress(1.0, "done")
    return session.finish()
