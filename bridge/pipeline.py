"""One bake, from the scene to strips on the timeline.

``BakeSession`` is used the same way by the modal Bake operator (``poll`` on a
timer, Esc calls ``cancel``), by the operator's blocking ``execute`` and by
``headless/render.py`` (``run`` loops over ``poll``):

1. ``prepare()`` on the main thread: check the output folder, export one job
   per listener (``bridge.export``) and write the job files into a staging
   folder inside the output folder. Every user-fixable problem raises
   ``BridgeError`` here, before anything runs.
2. ``start()`` then ``poll()`` until it returns a final state: impact hits
   gathered by the export are synthesised first (``bridge.impacts``; modal
   analysis can take seconds, so never on the main thread), then the engine
   bakes the jobs one after the other (``bridge.runner``) into the staging folder;
   a listener whose camera uses a learned field runs the worker's
   ``field-render`` task with its model instead (``bridge.fields``).
3. ``finish()`` on the main thread: only when every job succeeded are the
   files moved into place (``os.replace``) and the strips replaced
   (``bridge.timeline``). On error or cancel, ``finish()`` deletes the staging
   folder and leaves the previous tracks and strips exactly as they were.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import bpy

from . import export as exporter
from . import fields, paths, timeline
from .errors import BakeCancelled, BridgeError
from .runner import make_runner, run_blocking

#: Formats that make sense as a Blender sound strip (2 channels, headphones/speakers).
STRIP_FORMATS = ("binaural", "stereo")


@dataclass
class Track:
    """One listener's bake."""

    listener: str
    fmt: str
    job_path: Path
    staged: Path
    final: Path
    info: dict = field(default_factory=dict)
    strip: str | None = None
    #: The learned field's model file, or None for the simulator.
    model: Path | None = None


class BakeSession:
    """A bake of one scene: prepare, start, poll until finished, finish.

    Parameters
    ----------
    scene : bpy.types.Scene
        The context scene.
    out_dir : str or Path, optional
        Output folder (default: the scene's Soundstage setting, ``//soundstage/``).
    fmt : str, optional
        Output format (default: the scene's setting).
    frames : (int, int), optional
        Inclusive frame range (default: the scene's).
    listener : str, optional
        Bake only this camera.
    mode : {"auto", "inprocess", "worker"}
        How to run the engine (``bridge.runner.make_runner``).
    python : str
        Engine Python for the worker mode.
    """

    def __init__(self, scene, *, out_dir=None, fmt=None, frames=None, listener=None, mode="auto", python=""):
        self.scene_name = scene.name
        self.out_dir_setting = out_dir
        self.fmt = fmt
        self.frames = frames
        self.listener = listener
        self.mode = mode
        self.python = python
        self.tracks: list[Track] = []
        self.warnings: list[str] = []
        self.state = "new"  # new, prepared, running, done, error, cancelled, finished
        self.error = ""
        self.fraction = 0.0
        self.message = ""
        self.frame_start = 1
        self.out_dir: Path | None = None
        self.staging: Path | None = None
        self._index = 0
        self._cancel_requested = False
        self._runner = None
        self._impacts = None  # bridge.impacts.PendingSynthesis, run by start()/poll() before the first track
        self.runner_kind = ""

    @property
    def scene(self):
        scene = bpy.data.scenes.get(self.scene_name)
        if scene is None:
            raise BridgeError(f"scene '{self.scene_name}' no longer exists")
        return scene

    # ------------------------------------------------------------------ 1. prepare
    def prepare(self) -> None:
        """Export the jobs; raises ``BridgeError`` before anything is written to the output folder."""
        scene = self.scene
        settings = getattr(scene, "soundstage", None)
        setting = self.out_dir_setting
        if setting is None:
            setting = getattr(settings, "output_dir", "//soundstage/")
        out_dir, warning = paths.resolve_output_dir(str(setting), bpy.data.filepath, bpy.path.abspath)
        if warning:
            self.warnings.append(warning)
        self.out_dir = paths.ensure_writable_dir(out_dir)
        fmt = self.fmt or exporter.scene_format(scene)
        # Check the names before any work: two cameras must not share a file.
        cams = exporter.find_listeners(scene, self.listener)
        finals = {}
        for c in cams:
            name = paths.output_name(scene.name, c.name, fmt)
            if name in finals:
                raise BridgeError(f"cameras '{finals[name]}' and '{c.name}' would both write {name}; rename one")
            finals[name] = c.name
        models = fields.listener_models(cams, fmt)
        self.staging = paths.make_staging_dir(self.out_dir)
        try:
            ex = exporter.export_scene(scene, fmt=fmt, frames=self.frames, listener=self.listener,
                                       staging_dir=self.staging, engine=(self.mode, self.python),
                                       defer_impacts=True)
            self._impacts = ex.pending_impacts
            self.warnings.extend(ex.warnings)
            self.frame_start = ex.frame_start
            for ej in ex.jobs:
                name = paths.output_name(scene.name, ej.listener, fmt)
                final = paths.safe_join(self.out_dir, name)
                staged = paths.safe_join(self.staging, name)
                job = dict(ej.job)
                job["output"] = dict(job["output"], path=str(staged))
                job_path = self.staging / (Path(name).stem + ".job.json")
                job_path.write_text(json.dumps(job), encoding="utf-8")
                self.tracks.append(Track(ej.listener, fmt, job_path, staged, final, model=models[ej.listener]))
            self._runner_factory = lambda t: make_runner(self.mode, self.python,
                                                         needs=fields.RENDER_MODULE if t.model else "soundstage.bake")
            # Fail now (not in the middle) if the engine cannot be found.
            self._runner = self._runner_factory(self.tracks[0])
            self.runner_kind = self._runner.kind
        except BaseException:
            paths.remove_staging_dir(self.staging)
            self.staging = None
            raise
        self.state = "prepared"

    # ------------------------------------------------------------------ 2. run
    def start(self) -> None:
        if self.state != "prepared":
            raise RuntimeError(f"start() in state {self.state}")
        self.state = "running"
        if self._impacts is not None:
            # Modal analysis of new objects takes seconds: off the main thread, polled like the engine.
            self.message = f"synthesising {self._impacts.count} impact hit(s)"
            try:
                self._impacts.start()
            except BridgeError as e:
                self.error, self.state = str(e), "error"
            return
        self._start_track(0)

    def _start_track(self, i: int) -> None:
        self._index = i
        t = self.tracks[i]
        if i > 0:
            self._runner = self._runner_factory(t)
        self.message = f"{t.listener}: starting"
        if self._cancel_requested:  # Esc before the engine started: it stops at its first check
            self._runner.cancel()
        if t.model is not None:
            self._runner.start(t.job_path, t.staged, task="field-render", model=t.model)
        else:
            self._runner.start(t.job_path, t.staged)

    def poll(self) -> str:
        """Drain engine events; return the state (``running`` until done, error or cancelled)."""
        if self.state != "running":
            return self.state
        if self._impacts is not None:
            try:
                finished = self._impacts.poll()
            except BridgeError as e:
                self._impacts = None
                if self._cancel_requested:
                    self.state = "cancelled"
                else:
                    self.error, self.state = str(e), "error"
                return self.state
            if not finished:
                return self.state
            self.warnings.extend(self._impacts.notes)
            self._impacts = None
            self._start_track(0)
        n = len(self.tracks)
        for ev in self._runner.poll():
            kind = ev.get("event")
            t = self.tracks[self._index]
            if kind == "progress":
                self.fraction = (self._index + float(ev.get("fraction", 0.0))) / n
                self.message = f"{t.listener}: {ev.get('message', '')}".rstrip(": ")
            elif kind == "done":
                t.info = ev.get("info") or {}
                for note in t.info.get("notes", []) or []:
                    # The bridge already warned about open meshes by object name.
                    if "not closed" in note and any("is not closed" in w for w in self.warnings):
                        continue
                    self.warnings.append(f"{t.listener}: {note}")
                if self._index + 1 < n:
                    self._start_track(self._index + 1)
                else:
                    self.fraction, self.message, self.state = 1.0, "done", "done"
                return self.state
            elif kind == "error":
                self.error = f"{t.listener}: {ev.get('message', 'the engine failed')}" if n > 1 else \
                    str(ev.get("message", "the engine failed"))
                self.state = "error"
                return self.state
            elif kind == "cancelled":
                self.state = "cancelled"
                return self.state
        return self.state

    def cancel(self) -> None:
        """Ask the engine to stop; ``poll`` then reports ``cancelled``.

        Before ``start()`` the request is remembered and handed to the engine
        as it starts, so it stops at its first check and writes nothing.
        """
        self._cancel_requested = True
        if self._impacts is not None and self.state == "running":
            self._impacts.cancel()
        elif self._runner is not None and self.state == "running":
            self._runner.cancel()

    # ------------------------------------------------------------------ 3. finish
    def finish(self) -> list[Track]:
        """Apply a successful bake (files, strips); otherwise clean up and raise.

        Raises
        ------
        BridgeError
            The bake failed (the engine's message).
        BakeCancelled
            The user cancelled.
        """
        try:
            if self.state == "error":
                raise BridgeError(self.error)
            if self.state == "cancelled":
                raise BakeCancelled("bake cancelled; the previous tracks are unchanged")
            if self.state != "done":
                raise RuntimeError(f"finish() in state {self.state}")
            self._apply()
            self.state = "finished"
            return self.tracks
        finally:
            if self._runner is not None:
                self._runner.join(timeout=10)
            if self.staging is not None:
                paths.remove_staging_dir(self.staging)
                self.staging = None

    def _apply(self) -> None:
        scene = self.scene
        settings = getattr(scene, "soundstage", None)
        base = int(getattr(settings, "channel_base", 30))
        several = len(self.tracks) > 1
        strips = timeline.audio_supported()
        if not strips and any(t.fmt in STRIP_FORMATS for t in self.tracks):
            self.warnings.append("this Blender build has no audio support (Audaspace), so no Sequencer strips "
                                 f"were added; the tracks are in {self.out_dir}")
        for t in self.tracks:
            if strips and t.fmt in STRIP_FORMATS:
                # Old strips (and their Sounds, which may hold the old file open) go first.
                timeline.remove_own_strips(scene, t.listener, t.fmt)
            staged_sidecar = paths.sidecar_of(t.staged)
            paths.commit_file(t.staged, t.final)
            if staged_sidecar.exists():
                paths.commit_file(staged_sidecar, paths.sidecar_of(t.final))
            if strips and t.fmt in STRIP_FORMATS:
                cam = scene.camera.name if scene.camera is not None else None
                strip = timeline.place_track(scene, t.final, t.listener, t.fmt, self.frame_start,
                                             base_channel=base, mute=several and t.listener != cam)
                t.strip = strip.name

    # ------------------------------------------------------------------ all at once
    def run(self, progress=None, poll_interval: float = 0.05) -> list[Track]:
        """Prepare (if needed), bake and finish, blocking; ``progress(fraction, message)`` is called on changes."""
        return run_blocking(self, progress, poll_interval)


def bake_scene(scene, **kwargs) -> BakeSession:
    """Bake ``scene`` blocking (keyword arguments as ``BakeSession`` plus ``progress``); return the session."""
    progress = kwargs.pop("progress", None)
    session = BakeSession(scene, **kwargs)
    session.run(progress=progress)
    return session

