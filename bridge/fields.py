"""Learned acoustic fields from Blender: listeners that bake with a field, and training one from a capture.

Blender's side of ``soundstage.field`` (docs/blender.md, "Learned fields"):

* **Listeners**: a camera whose ``soundstage.acoustics`` is ``FIELD`` bakes
  with its ``field_model`` instead of the simulator. ``listener_models``
  checks the choice before a bake (model file present, binaural output) and
  ``bridge.pipeline.BakeSession`` runs those tracks as the worker's
  ``field-render`` task: same job, same WAV and sidecar, same timeline code.
* **Training**: ``TrainSession`` gathers a capture from the scene on the main
  thread (the camera's evaluated ``matrix_world`` at every frame, pose times
  ``(frame - first frame) / fps + offset`` on the recording's clock, the source
  speaker's position and sound, the recording, optionally the room from the
  acoustic meshes) into a JSON request, and the worker's ``field-train`` task
  (``soundstage.worker.train_field_request``) reads the audio, writes the
  capture and trains, in a thread or a worker process, with progress and
  cancel, exactly like a bake. Blender's own Python has neither soundfile nor
  torch, so nothing here reads audio.

Like ``bridge.pipeline``, every user-fixable problem is a one-line
``BridgeError`` naming the object or file.
"""

from __future__ import annotations

import json
from pathlib import Path

import bpy

from . import export as exporter
from . import paths
from .errors import BakeCancelled, BridgeError
from .runner import make_runner, run_blocking

#: Engine modules the two field tasks need (torch); a runner runs in-process only where they import.
RENDER_MODULE = "soundstage.field.render"
TRAIN_MODULE = "soundstage.field.train"
#: ``format`` tag and version of a training request (``soundstage.worker.train_field_request``).
REQUEST_FORMAT = "soundstage-field-request"
#: Presets of ``soundstage field train`` (docs/field.md, "Training").
PRESETS = ("small", "paper")


# --------------------------------------------------------------------------- listeners
def uses_field(cam) -> bool:
    """True when a camera's bake uses a learned field instead of the simulator."""
    return getattr(getattr(cam, "soundstage", None), "acoustics", "SIMULATOR") == "FIELD"


def listener_model(cam, fmt: str) -> Path | None:
    """The model file a listener camera bakes with, or None for the simulator.

    Parameters
    ----------
    cam : bpy.types.Object
        A camera.
    fmt : str
        The bake's output format.

    Raises
    ------
    BridgeError
        The camera uses a field but has no model, its file is missing, or the
        format is not binaural (a field learns a binaural recording).
    """
    if not uses_field(cam):
        return None
    setting = cam.soundstage.field_model
    if not setting:
        raise BridgeError(f"camera '{cam.name}' uses a learned field but has no model file: pick one in its "
                          "Soundstage Listener panel (or set Acoustics to Simulator)")
    path = Path(bpy.path.abspath(setting))
    if not path.is_file():
        raise BridgeError(f"camera '{cam.name}': field model file '{path}' not found; train one "
                          "(Soundstage > Learned Field) or fix the path in its Soundstage Listener panel")
    if fmt != "binaural":
        raise BridgeError(f"camera '{cam.name}' uses a learned field, which renders binaural only, but the output "
                          f"format is {fmt}; set Format to Binaural or set the camera's Acoustics to Simulator")
    return path.resolve()


def listener_models(cams, fmt: str) -> dict[str, Path | None]:
    """``{camera name: model path or None}`` for the listeners of a bake (checked, see ``listener_model``)."""
    return {c.name: listener_model(c, fmt) for c in cams}


# --------------------------------------------------------------------------- training: what to train on
def default_model_path(scene, camera_name: str) -> Path:
    """``<output folder>/<scene>_<camera>_field.pt`` (the output folder as a bake resolves it)."""
    setting = getattr(getattr(scene, "soundstage", None), "output_dir", "//soundstage/")
    out_dir, _warning = paths.resolve_output_dir(str(setting), bpy.data.filepath, bpy.path.abspath)
    return Path(out_dir) / f"{paths.sanitize(scene.name)}_{paths.sanitize(camera_name)}_field.pt"


def checkpoint_path(model: Path) -> Path:
    """The resumable training checkpoint beside a model file (``<stem>.train.pt``, as the engine writes it)."""
    model = Path(model)
    return model.with_name(model.stem + ".train.pt")


def capture_dir(model: Path) -> Path:
    """Where the capture a model is trained on is written (beside the model, kept for ``soundstage field eval``)."""
    model = Path(model)
    return model.with_name(model.stem + "_capture")


def find_camera(scene, name: str = ""):
    """The capture camera: ``name`` or the scene camera.

    Raises
    ------
    BridgeError
    """
    if name:
        obj = scene.objects.get(name)
        if obj is None or obj.type != "CAMERA":
            cams = ", ".join(f"'{o.name}'" for o in scene.objects if o.type == "CAMERA") or "none"
            raise BridgeError(f"no camera called '{name}' in scene '{scene.name}' for the capture (cameras: {cams})")
        return obj
    if scene.camera is None or scene.camera.type != "CAMERA":
        raise BridgeError(f"scene '{scene.name}' has no scene camera: pick the capture camera whose animation "
                          "follows the recording walk")
    return scene.camera


def find_source(scene, name: str = ""):
    """The source speaker: ``name``, else the scene's only unmuted speaker.

    Raises
    ------
    BridgeError
        No such speaker, no speaker at all, or several to choose from.
    """
    if name:
        obj = scene.objects.get(name)
        if obj is None or obj.type != "SPEAKER":
            raise BridgeError(f"no speaker called '{name}' in scene '{scene.name}': the source speaker must be a "
                              "Speaker object playing what the loudspeaker played")
        return obj
    speakers = sorted((o for o in scene.objects if o.type == "SPEAKER" and not o.data.muted), key=lambda o: o.name)
    if not speakers:
        raise BridgeError(f"no source speaker in scene '{scene.name}': add a Speaker where the loudspeaker stood, "
                          "playing what it played (Soundstage > Add Source)")
    if len(speakers) > 1:
        names = ", ".join(f"'{o.name}'" for o in speakers)
        raise BridgeError(f"scene '{scene.name}' has several speakers ({names}); pick the source speaker")
    return speakers[0]


def recording_file(filepath: str, sound_name: str, work_dir: Path) -> Path:
    """The binaural recording's file: a path, or a sound datablock's file (a packed one is written out).

    Raises
    ------
    BridgeError
        Neither given, or the file is missing.
    """
    if filepath:
        path = Path(bpy.path.abspath(filepath))
        if not path.is_file():
            raise BridgeError(f"recording file '{path}' not found; pick the binaural recording of the walk")
        return path.resolve()
    if sound_name:
        snd = bpy.data.sounds.get(sound_name)
        if snd is None:
            raise BridgeError(f"no sound called '{sound_name}' in this file for the recording")
        if snd.packed_file is not None:
            out = Path(work_dir) / "audio" / f"{paths.sanitize(snd.name)}{Path(snd.filepath).suffix or '.wav'}"
            out.parent.mkdir(parents=True, exist_ok=True)
            out.write_bytes(bytes(snd.packed_file.data))
            return out
        path = Path(bpy.path.abspath(snd.filepath, library=snd.library))
        if not snd.filepath or not path.is_file():
            raise BridgeError(f"recording: sound '{snd.name}' points to '{path}', which is not found; relink it")
        return path.resolve()
    raise BridgeError("no recording: pick the binaural recording of the walk (a WAV file or a sound in this file)")


def build_request(scene, *, camera: str = "", source: str = "", recording: str = "", recording_sound: str = "",
                  offset: float = 0.0, use_room: bool = True, model: str = "", preset: str = "small",
                  steps: int = 0, seed: int = 0, resume: bool = False, frames: tuple[int, int] | None = None,
                  warnings: list | None = None) -> dict:
    """Gather a training request from the scene (main thread; writes only the capture folder's audio copies).

    Parameters
    ----------
    scene : bpy.types.Scene
        The context scene.
    camera, source : str
        Capture camera (default: the scene camera) and source speaker (default: the only one).
    recording, recording_sound : str
        The binaural recording: a file path, or else the name of a sound datablock.
    offset : float
        Recording time of the first frame, seconds.
    use_room : bool
        Send the acoustic meshes as the capture's room (scene features).
    model : str
        Model file (.pt) to write; default ``default_model_path``.
    preset, steps, seed : training options (``steps`` 0: the preset's).
    resume : bool
        Continue from the model's training checkpoint.
    frames : (int, int), optional
        Inclusive range of the walk (default: the scene's).
    warnings : list, optional
        Receives notes (a still camera, a moving speaker).

    Returns
    -------
    dict
        The request (``soundstage.worker.train_field_request`` documents the fields).
    """
    notes = warnings if warnings is not None else []
    cam = find_camera(scene, camera)
    spk = find_source(scene, source)
    if preset not in PRESETS:
        raise BridgeError(f"unknown training preset '{preset}'; use one of {', '.join(PRESETS)}")
    model_path = Path(bpy.path.abspath(model)) if model else default_model_path(scene, cam.name)
    if model_path.suffix != ".pt":
        raise BridgeError(f"model file '{model_path}' should end in .pt")
    paths.ensure_writable_dir(model_path.parent)
    if resume and not checkpoint_path(model_path).is_file():
        raise BridgeError(f"no training checkpoint '{checkpoint_path(model_path)}' to resume from; train without "
                          "Resume (a checkpoint is written while training runs)")
    a, b = exporter.frame_range(scene, frames)
    if b <= a:
        raise BridgeError(f"frames {a}-{b}: a capture needs at least two frames of the camera walk")
    fps = float(exporter.scene_fps(scene))
    work = capture_dir(model_path)
    rec = recording_file(recording, recording_sound, work)
    src_audio = exporter.sound_file(spk, work)
    track = exporter.sample_transforms(scene, [cam, spk], range(a, b + 1))
    poses = track[cam.name]["pose"]
    positions = track[spk.name]["position"]
    moved = max(sum((p - q) ** 2 for p, q in zip(pos, positions[0])) ** 0.5 for pos in positions)
    if moved > 0.05:
        notes.append(f"speaker '{spk.name}' moves by {moved:.2f} m in frames {a}-{b}; a recording field learns "
                     f"one source position, its position at frame {a}")
    cam_moved = max(sum((p[k] - poses[0][k]) ** 2 for k in (3, 7, 11)) ** 0.5 for p in poses)
    if cam_moved < 0.05:
        notes.append(f"camera '{cam.name}' hardly moves in frames {a}-{b}: the field learns only around "
                     "where it stands")
    room = None
    if use_room:
        original = scene.frame_current
        try:
            scene.frame_set(a)
            room = exporter.export_room(scene, notes)
        finally:
            scene.frame_set(original)
        if room.get("type") == "free_field":
            room = None
    start_frame = exporter.speaker_start_frame(spk, scene.frame_start)
    steps = int(steps)
    options = {"preset": preset, "seed": int(seed)}
    if steps > 0:
        options["steps"] = steps
        # A checkpoint about every tenth of the run (the engine's default is every 250 steps).
        options["checkpoint_every"] = max(1, min(250, steps // 10))
    return {
        "format": REQUEST_FORMAT, "version": 1,
        "recording": str(rec), "source_audio": str(src_audio),
        "source_name": spk.name, "source_position": list(positions[0]),
        "source_start_s": (start_frame - a) / fps + float(offset),
        "camera": cam.name, "matrices": poses, "times": [(f - a) / fps + float(offset) for f in range(a, b + 1)],
        "frames": [a, b], "fps": fps, "room": room,
        # Train on the whole walk: an artist wants every second of it in the field.
        "holdout": [],
        "capture_dir": str(work), "model": str(model_path), "resume": bool(resume), "options": options,
    }


# --------------------------------------------------------------------------- training: running it
class TrainSession:
    """Training a field from the scene: prepare, start, poll until finished, finish (like ``BakeSession``).

    Parameters
    ----------
    scene : bpy.types.Scene
    mode, python : str
        How to run the engine (``bridge.runner.make_runner``).
    **request
        Keyword arguments of ``build_request``.
    """

    def __init__(self, scene, *, mode: str = "auto", python: str = "", **request):
        self.scene_name = scene.name
        self.mode, self.python = mode, python
        self.request_args = request
        self.request: dict = {}
        self.request_path: Path | None = None
        self.model: Path | None = None
        self.warnings: list[str] = []
        self.state = "new"  # new, prepared, running, done, error, cancelled, finished
        self.error = ""
        self.fraction = 0.0
        self.message = ""
        self.result: dict = {}
        self.runner_kind = ""
        self._runner = None
        self._cancel_requested = False

    @property
    def scene(self):
        scene = bpy.data.scenes.get(self.scene_name)
        if scene is None:
            raise BridgeError(f"scene '{self.scene_name}' no longer exists")
        return scene

    def prepare(self) -> None:
        """Gather the request on the main thread and write it; raises ``BridgeError`` before anything runs."""
        self.request = build_request(self.scene, warnings=self.warnings, **self.request_args)
        self.model = Path(self.request["model"])
        work = Path(self.request["capture_dir"])
        work.mkdir(parents=True, exist_ok=True)
        self.request_path = work / "request.json"
        tmp = self.request_path.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(self.request), encoding="utf-8")
        tmp.replace(self.request_path)
        self._runner = make_runner(self.mode, self.python, needs=TRAIN_MODULE)
        self.runner_kind = self._runner.kind
        self.state = "prepared"

    def start(self) -> None:
        if self.state != "prepared":
            raise RuntimeError(f"start() in state {self.state}")
        self.state = "running"
        self.message = "starting"
        if self._cancel_requested:
            self._runner.cancel()
        self._runner.start(self.request_path, None, task="field-train")

    def poll(self) -> str:
        """Drain the engine's events; return the state (``running`` until done, error or cancelled)."""
        if self.state != "running":
            return self.state
        for ev in self._runner.poll():
            kind = ev.get("event")
            if kind == "progress":
                self.fraction = float(ev.get("fraction", 0.0))
                self.message = str(ev.get("message", ""))
            elif kind == "done":
                self.result = ev
                self.fraction, self.message, self.state = 1.0, "done", "done"
            elif kind == "error":
                self.error, self.state = str(ev.get("message", "the engine failed")), "error"
            elif kind == "cancelled":
                self.state = "cancelled"
            if self.state != "running":
                break
        return self.state

    def cancel(self) -> None:
        """Ask training to stop (at its next step); ``poll`` then reports ``cancelled``."""
        self._cancel_requested = True
        if self._runner is not None and self.state == "running":
            self._runner.cancel()

    def finish(self) -> dict:
        """The ``done`` event of a successful run; otherwise raise.

        Raises
        ------
        BridgeError
            Training failed (the engine's one-line message).
        BakeCancelled
            The user cancelled; the training checkpoint (if one was written) lets Resume continue.
        """
        try:
            if self.state == "error":
                raise BridgeError(self.error)
            if self.state == "cancelled":
                ck = checkpoint_path(self.model)
                tail = f"; Resume continues from '{ck.name}'" if ck.is_file() else ""
                raise BakeCancelled(f"training cancelled, '{self.model.name}' was not written{tail}")
            if self.state != "done":
                raise RuntimeError(f"finish() in state {self.state}")
            self.state = "finished"
            return self.result
        finally:
            if self._runner is not None:
                self._runner.join(timeout=10)

    def run(self, progress=None, poll_interval: float = 0.05) -> dict:
        """Prepare (if needed), train and finish, blocking; ``progress(fraction, message)`` on changes."""
        return run_blocking(self, progress, poll_interval)

    def summary(self) -> str:
        """One line for the UI after success."""
        fields = (self.result.get("info") or {}).get("fields") or [{}]
        f = fields[0]
        return (f"Trained field '{f.get('source', '?')}' ({f.get('steps', '?')} steps, "
                f"{f.get('seconds', 0):.0f} s on {f.get('device', '?')}) into {self.model}")
