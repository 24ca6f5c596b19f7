"""Learned fields in Blender: training from a camera walk and a speaker, baking listeners with a field.

Data: a short engine-simulated recording walk (``soundstage.field.data.synthetic_walk``:
a binaural listener walking loops in a 6 x 5 x 3 m room while a speaker plays), turned
into a Blender scene: the capture camera keyframed on the walk's poses, a speaker
where the source stood playing the source audio, the recording as a WAV file.

Oracles: the walk's own poses and times (what the capture must hold is known
exactly: camera matrices per frame and ``(frame - first) / fps + offset``); the
engine's model checker (``soundstage.field.checkpoint.load_fields``) for the model
the operator trains; the sidecar's ``backend`` for which renderer ran; and physics
for the rendered tracks (a field render of a source is not silent, is two-channel,
lasts the frame range).
"""

from __future__ import annotations

import importlib
import json
import subprocess
import sys
import types
from pathlib import Path

import numpy as np
import pytest

bpy = pytest.importorskip("bpy")
sf = pytest.importorskip("soundfile")
pytest.importorskip("torch")
field_data = pytest.importorskip("soundstage.field.data")

from modalkit import ESCAPE, TIMER, bind_modal  # noqa: E402

pytestmark = pytest.mark.bpy
REPO = Path(__file__).resolve().parents[1]
SECONDS, FPS = 6.0, 10  # the walk: 60 poses at 10 fps
STEPS = 4  # enough to write a real model; quality is tested in the engine's field tests


@pytest.fixture(autouse=True)
def _reset(ss_ext):
    bpy.ops.wm.read_homefile(app_template="")


@pytest.fixture(scope="module")
def fb(ss_ext):
    """``bridge.fields``, ``addon.fields``, ``bridge.pipeline`` and the bridge's errors."""
    name = ss_ext.__name__
    return types.SimpleNamespace(bridge=importlib.import_module(f"{name}.bridge.fields"),
                                 addon=importlib.import_module(f"{name}.addon.fields"),
                                 pipeline=importlib.import_module(f"{name}.bridge.pipeline"),
                                 errors=importlib.import_module(f"{name}.bridge.errors"))


@pytest.fixture(scope="module")
def walk(tmp_path_factory):
    """A 6 s synthetic recording walk: its folder, poses (60, 4, 4) and times (60,)."""
    folder = tmp_path_factory.mktemp("walk")
    field_data.synthetic_walk(folder, seconds=SECONDS, fps=FPS)
    frames = json.loads((folder / "transforms.json").read_text())["frames"]
    mats = np.array([f["transform_matrix"] for f in frames], float)
    times = np.array([float(Path(f["file_path"]).stem) for f in frames])
    return types.SimpleNamespace(dir=folder, recording=folder / "recording.wav", source=folder / "source.wav",
                                 matrices=mats, times=times,
                                 source_position=np.array(field_data.DEFAULT_SOURCE, float))


def walk_scene(walk):
    """The walk as a Blender scene: camera 'Walker' keyframed on the poses (frame k+1 = pose k), 'Speaker'."""
    from mathutils import Matrix

    scene = bpy.context.scene
    for o in list(scene.objects):
        bpy.data.objects.remove(o)
    scene.render.fps, scene.render.fps_base = FPS, 1.0
    scene.frame_start, scene.frame_end = 1, len(walk.matrices)
    cam = bpy.data.objects.new("Walker", bpy.data.cameras.new("Walker"))
    scene.collection.objects.link(cam)
    for k, m in enumerate(walk.matrices):
        cam.matrix_world = Matrix(m.tolist())
        cam.keyframe_insert("location", frame=k + 1)
        cam.keyframe_insert("rotation_euler", frame=k + 1)
    scene.camera = cam
    spk = bpy.data.objects.new("Speaker", bpy.data.speakers.new("Speaker"))
    scene.collection.objects.link(spk)
    spk.location = walk.source_position.tolist()
    spk.data.sound = bpy.data.sounds.load(str(walk.source))
    scene.frame_set(1)
    return scene, cam, spk


def add_listener(name, matrix, *, model=None):
    """A still listener camera at ``matrix``; with ``model`` it bakes with that field."""
    from mathutils import Matrix

    cam = bpy.data.objects.new(name, bpy.data.cameras.new(name))
    bpy.context.scene.collection.objects.link(cam)
    cam.matrix_world = Matrix(np.asarray(matrix).tolist())
    cam.soundstage.listener = True
    if model is not None:
        cam.soundstage.acoustics = "FIELD"
        cam.soundstage.field_model = str(model)
    return cam


@pytest.fixture(scope="module")
def trained(fb, walk, tmp_path_factory):
    """A field trained through ``bpy.ops.soundstage.train_field`` (blocking path) on the walk scene."""
    bpy.ops.wm.read_homefile(app_template="")
    walk_scene(walk)
    out = tmp_path_factory.mktemp("model")
    listener = add_listener("Listener", walk.matrices[12])
    model = out / "walk.pt"
    result = bpy.ops.soundstage.train_field(recording=str(walk.recording), source="Speaker", camera="Walker",
                                            model=str(model), steps=STEPS, assign_to=listener.name)
    assigned = (listener.soundstage.acoustics, listener.soundstage.field_model)
    return types.SimpleNamespace(result=result, model=model, capture=fb.bridge.capture_dir(model),
                                 assigned=assigned)


def read_wav(path):
    x, rate = sf.read(str(path), dtype="float64", always_2d=True)
    return x, rate


# --------------------------------------------------------------------------- registration
def test_registered_and_unregister_is_clean(fb, ss):
    assert hasattr(bpy.ops.soundstage, "train_field") and hasattr(bpy.ops.soundstage, "cancel_training")
    for panel in ("VIEW3D_PT_soundstage_field", "DATA_PT_soundstage_camera_acoustics",
                  "VIEW3D_PT_soundstage_listener_acoustics"):
        assert hasattr(bpy.types, panel), panel
    assert bpy.types.DATA_PT_soundstage_camera_acoustics.bl_parent_id == "DATA_PT_soundstage_camera"
    assert bpy.types.VIEW3D_PT_soundstage_listener_acoustics.bl_parent_id == "VIEW3D_PT_soundstage_listeners"
    cam = bpy.context.scene.camera
    assert cam.soundstage.acoustics == "SIMULATOR" and cam.soundstage.field_model == ""
    ss.addon.unregister()
    try:
        assert not hasattr(bpy.types.Scene, "soundstage_field")
        assert not hasattr(bpy.types, "VIEW3D_PT_soundstage_field")
        assert not hasattr(bpy.ops.soundstage, "train_field") or \
            not hasattr(bpy.types, "SOUNDSTAGE_OT_train_field")
    finally:
        ss.addon.register()
    assert hasattr(bpy.types.Scene, "soundstage_field") and hasattr(bpy.types, "VIEW3D_PT_soundstage_field")


def test_panels_draw_with_a_field_listener(fb, walk, tmp_path):
    """The drawing code runs (the bpy module has no window, so call the draw functions with a stand-in layout)."""
    walk_scene(walk)
    cam = add_listener("Listener", walk.matrices[5], model=tmp_path / "missing.pt")
    calls = []

    class Layout:
        def __getattr__(self, name):
            def f(*args, **kw):
                calls.append((name, args, kw))
                return Layout()
            return f

    ctx = types.SimpleNamespace(object=cam, scene=bpy.context.scene)
    assert fb.addon.DATA_PT_soundstage_camera_acoustics.poll(ctx)
    fb.addon.DATA_PT_soundstage_camera_acoustics.draw(types.SimpleNamespace(layout=Layout()), ctx)
    fb.addon.VIEW3D_PT_soundstage_listener_acoustics.draw(types.SimpleNamespace(layout=Layout()), ctx)
    labels = [kw.get("text", "") for name, _a, kw in calls if name == "label"]
    assert "Model file not found" in labels
    known = set(bpy.types.UILayout.bl_rna.functions["label"].parameters["icon"].enum_items.keys())
    icons = {kw["icon"] for _n, _a, kw in calls if "icon" in kw}
    assert icons and icons <= known, icons - known
    props = [a[1] for name, a, _kw in calls if name == "prop"]
    assert props.count("acoustics") == 2 and "field_model" in props


# --------------------------------------------------------------------------- the capture
def test_request_holds_the_walk_poses_times_and_room(fb, walk, tmp_path):
    scene, cam, spk = walk_scene(walk)
    bpy.ops.mesh.primitive_cube_add(size=2.0, location=(3.0, 2.5, 1.0))
    box = bpy.context.object
    box.scale = (3.0, 2.5, 1.5)
    box.soundstage.acoustic = True
    notes = []
    req = fb.bridge.build_request(scene, recording=str(walk.recording), offset=0.25,
                                  model=str(tmp_path / "m.pt"), steps=100, warnings=notes)
    assert req["camera"] == "Walker" and req["source_name"] == "Speaker"  # scene camera, the only speaker
    np.testing.assert_allclose(np.array(req["matrices"]).reshape(-1, 4, 4), walk.matrices, atol=1e-5)
    np.testing.assert_allclose(req["times"], walk.times + 0.25, atol=1e-9)  # (frame - 1) / fps + offset
    np.testing.assert_allclose(req["source_position"], walk.source_position, atol=1e-6)
    assert req["source_start_s"] == pytest.approx(0.25)  # the speaker starts at the first frame
    v = np.array(req["room"]["vertices"])
    np.testing.assert_allclose(v.min(0), [0, 0, -0.5], atol=1e-6)
    np.testing.assert_allclose(v.max(0), [6, 5, 2.5], atol=1e-6)
    assert req["options"] == {"preset": "small", "seed": 0, "steps": 100, "checkpoint_every": 10}
    assert Path(req["model"]) == tmp_path / "m.pt" and Path(req["capture_dir"]) == tmp_path / "m_capture"
    assert notes == []
    # The recording may be a sound datablock instead of a file path.
    snd = bpy.data.sounds.load(str(walk.recording))
    req = fb.bridge.build_request(scene, recording_sound=snd.name, camera="Walker", source="Speaker",
                                  model=str(tmp_path / "m.pt"))
    assert Path(req["recording"]) == walk.recording.resolve() and "steps" not in req["options"]


def test_train_operator_writes_a_checked_model_and_the_capture(trained, walk):
    from soundstage.field.checkpoint import load_fields
    from soundstage.field.data import read_capture

    assert trained.result == {"FINISHED"}
    fields = load_fields(trained.model)  # the engine's checks: format, version, shapes, finite weights
    assert len(fields) == 1 and fields[0].kind == "anerf" and fields[0].source_name == "Speaker"
    np.testing.assert_allclose(fields[0].source_position, walk.source_position, atol=1e-6)
    assert fields[0].info["steps"] == STEPS
    cap = read_capture(trained.capture)
    np.testing.assert_allclose(cap.pose_times, walk.times, atol=1e-4)
    np.testing.assert_allclose(cap.pose_matrices, walk.matrices, atol=1e-5)
    assert cap.holdout == []  # trained on the whole walk
    assert trained.assigned == ("FIELD", str(trained.model))


# --------------------------------------------------------------------------- baking with a field
@pytest.mark.filterwarnings("ignore::soundstage.field.checkpoint.OutsideTrainedArea")
def test_bake_field_and_simulator_listeners_in_one_scene(fb, walk, trained, tmp_path):
    scene, _cam, _spk = walk_scene(walk)
    add_listener("Listener", walk.matrices[12], model=trained.model)
    add_listener("Sim", walk.matrices[12])
    far = walk.matrices[12].copy()
    far[:3, 3] += [0.0, 0.0, 30.0]
    add_listener("Far", far, model=trained.model)
    session = fb.pipeline.BakeSession(scene, out_dir=tmp_path / "out", frames=(1, 20))
    session.run()
    info = {}
    for name in ("Listener", "Sim", "Far"):
        wav = tmp_path / "out" / f"Scene_{name}_binaural.wav"
        x, rate = read_wav(wav)
        assert x.shape == (2 * 48000, 2) and rate == 48000  # 20 frames at 10 fps, binaural
        assert np.sqrt(np.mean(x ** 2)) > 1e-4, name  # not silent
        info[name] = json.loads(wav.with_suffix(".json").read_text())
    assert info["Listener"]["backend"] == "field:anerf" and info["Far"]["backend"] == "field:anerf"
    assert not info["Sim"]["backend"].startswith("field")
    # The sidecar's notes become warnings: the far listener is outside the trained area.
    assert any(w.startswith("Far: ") and "outside the trained area" in w for w in session.warnings), \
        session.warnings
    assert not any(w.startswith("Listener: ") and "outside" in w for w in session.warnings)


def test_headless_render_bakes_a_field_listener_through_the_worker(walk, trained, tmp_path):
    """headless/render.py goes through BakeSession; with --engine worker the field renders in a worker process."""
    walk_scene(walk)
    add_listener("Listener", walk.matrices[30], model=trained.model)
    blend = tmp_path / "walk.blend"
    bpy.context.scene.frame_end = 10
    bpy.ops.wm.save_as_mainfile(filepath=str(blend))
    cmd = [sys.executable, str(REPO / "headless" / "render.py"), str(blend), "--", "--out", str(tmp_path / "h"),
           "--engine", "worker", "--engine-python", sys.executable]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=240, cwd=REPO)
    assert r.returncode == 0, r.stderr
    wav = tmp_path / "h" / "Scene_Listener_binaural.wav"
    x, _ = read_wav(wav)
    assert x.shape[1] == 2 and np.sqrt(np.mean(x ** 2)) > 1e-4
    assert json.loads(wav.with_suffix(".json").read_text())["backend"] == "field:anerf"


# --------------------------------------------------------------------------- bad input, one line each
def _bake_error(fb, scene, tmp_path, **kw):
    out = tmp_path / "out"
    with pytest.raises(fb.errors.BridgeError) as e:
        fb.pipeline.BakeSession(scene, out_dir=out, frames=(1, 5), **kw).run()
    msg = str(e.value)
    assert "\n" not in msg and "Traceback" not in msg
    assert not out.exists() or [p.name for p in out.iterdir() if p.suffix == ".wav"] == []
    return msg


def test_missing_model_file_is_one_line_naming_camera_and_file(fb, walk, tmp_path):
    scene, _c, _s = walk_scene(walk)
    add_listener("Listener", walk.matrices[3], model=tmp_path / "gone.pt")
    msg = _bake_error(fb, scene, tmp_path)
    assert "camera 'Listener'" in msg and "gone.pt" in msg and "not found" in msg
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").glob(".soundstage-tmp-*"))
    # No model path at all.
    bpy.data.objects["Listener"].soundstage.field_model = ""
    assert "has no model file" in _bake_error(fb, scene, tmp_path)
    # The operator reports it (the bpy module turns an ERROR report into RuntimeError).
    bpy.data.objects["Listener"].soundstage.field_model = str(tmp_path / "gone.pt")
    with pytest.raises(RuntimeError, match=r"Error: camera 'Listener': field model file '.*gone.pt' not found"):
        bpy.ops.soundstage.bake()


def test_corrupt_model_gives_the_engines_checkpoint_message(fb, walk, tmp_path):
    scene, _c, _s = walk_scene(walk)
    bad = tmp_path / "broken.pt"
    bad.write_bytes(b"PK\x03\x04 this is not a torch file" * 10)
    add_listener("Listener", walk.matrices[3], model=bad)
    msg = _bake_error(fb, scene, tmp_path)
    assert "broken.pt" in msg and "corrupt" in msg


def test_field_listener_with_a_non_binaural_format(fb, walk, trained, tmp_path):
    scene, _c, _s = walk_scene(walk)
    add_listener("Listener", walk.matrices[3], model=trained.model)
    msg = _bake_error(fb, scene, tmp_path, fmt="ambix")
    assert "camera 'Listener'" in msg and "binaural only" in msg and "ambix" in msg
    scene.soundstage.format = "STEREO"
    assert "binaural only" in _bake_error(fb, scene, tmp_path)


def test_recording_shorter_than_the_camera_animation(fb, walk, tmp_path):
    scene, _c, _s = walk_scene(walk)
    short = tmp_path / "short.wav"
    x, rate = sf.read(str(walk.recording), dtype="float32")
    sf.write(str(short), x[: int(2.0 * rate)], rate)
    session = fb.bridge.TrainSession(scene, recording=str(short), model=str(tmp_path / "m.pt"), steps=2)
    with pytest.raises(fb.errors.BridgeError) as e:
        session.run()
    msg = str(e.value)
    assert "short.wav" in msg and "camera 'Walker'" in msg and "lasts 2.00 s" in msg and "\n" not in msg
    assert not (tmp_path / "m.pt").exists()
    with pytest.raises(RuntimeError, match="lasts 2.00 s"):
        bpy.ops.soundstage.train_field(recording=str(short), model=str(tmp_path / "m.pt"), steps=2)


@pytest.mark.parametrize("case, pattern", [
    ("no_speaker", "no source speaker in scene 'Scene'"),
    ("wrong_speaker", "no speaker called 'Nope'"),
    ("no_recording", "no recording"),
    ("missing_recording", "recording file '.*absent.wav' not found"),
    ("resume_without_checkpoint", "no training checkpoint '.*m.train.pt'"),
    ("not_pt", "should end in .pt"),
])
def test_training_input_errors(fb, walk, tmp_path, case, pattern):
    import re

    scene, _cam, spk = walk_scene(walk)
    kw = dict(recording=str(walk.recording), model=str(tmp_path / "m.pt"), steps=2)
    if case == "no_speaker":
        bpy.data.objects.remove(spk)
    elif case == "wrong_speaker":
        kw["source"] = "Nope"
    elif case == "no_recording":
        kw["recording"] = ""
    elif case == "missing_recording":
        kw["recording"] = str(tmp_path / "absent.wav")
    elif case == "resume_without_checkpoint":
        kw["resume"] = True
    elif case == "not_pt":
        kw["model"] = str(tmp_path / "m.bin")
    with pytest.raises(fb.errors.BridgeError) as e:
        fb.bridge.TrainSession(scene, **kw).prepare()
    assert re.search(pattern, str(e.value)) and "\n" not in str(e.value), str(e.value)
    with pytest.raises(RuntimeError, match=pattern):
        bpy.ops.soundstage.train_field(**kw)


def test_training_cancel_then_resume(fb, walk, tmp_path):
    """Esc stops a worker's training between steps, writes no model, keeps the checkpoint; Resume finishes it."""
    scene, _c, _s = walk_scene(walk)
    model = tmp_path / "m.pt"
    kw = dict(recording=str(walk.recording), model=str(model), steps=5)
    # The cancelled run in a worker process (as in real Blender: Esc reaches it through its stdin).
    session = fb.bridge.TrainSession(scene, mode="worker", python=sys.executable, **kw)
    session.prepare()
    assert session.runner_kind == "worker"
    session.start()
    import time

    t0 = time.monotonic()
    # Cancel once training (not data preparation) has passed its first checkpoint (every step here).
    while session.poll() == "running" and not fb.bridge.checkpoint_path(model).is_file():
        assert time.monotonic() - t0 < 60
        time.sleep(0.02)
    session.cancel()
    while session.poll() == "running":
        time.sleep(0.02)
    with pytest.raises(fb.errors.BakeCancelled) as e:
        session.finish()
    assert "Resume continues" in str(e.value) and not model.exists()
    resumed = fb.bridge.TrainSession(scene, resume=True, **kw)
    result = resumed.run()
    assert model.is_file() and result["info"]["fields"][0]["steps"] == 5
    assert result["info"]["fields"][0]["steps_run"] < 5  # it continued, it did not start over


# --------------------------------------------------------------------------- the modal operator
def _modal_train(fb, **props):
    """An object carrying the Train Field operator's methods, as Blender binds them, and a stand-in context."""
    defaults = dict(recording="", recording_sound="", source="", camera="", offset=0.0, use_room=True, model="",
                    preset="SMALL", steps=0, seed=0, resume=False, assign_to="")
    return bind_modal(fb.addon.SOUNDSTAGE_OT_train_field, bpy, **{**defaults, **props})


def _drive(op, ctx, esc=False):
    import time

    timer = TIMER
    if esc:
        assert op.modal(ctx, ESCAPE) == {"RUNNING_MODAL"}
    t0 = time.monotonic()
    while time.monotonic() - t0 < 120:
        result = op.modal(ctx, timer)
        if result != {"PASS_THROUGH"}:
            return result
        time.sleep(0.01)
    raise AssertionError("modal training never finished")


def test_modal_training_shows_progress_and_escape_cancels(fb, walk, tmp_path):
    scene, _c, _s = walk_scene(walk)
    model = tmp_path / "m.pt"
    op, ctx, wm, status = _modal_train(fb, recording=str(walk.recording), model=str(model), steps=2)
    assert op.start_modal(ctx) == {"RUNNING_MODAL"}
    # While it runs the sidebar panel offers Cancel, not Train, and a progress bar.
    calls = []

    class Layout:
        def __getattr__(self, name):
            def f(*args, **kw):
                calls.append((name, args))
                return Layout()
            return f

    fb.addon.VIEW3D_PT_soundstage_field.draw(types.SimpleNamespace(layout=Layout()), bpy.context)
    ops = [a[0] for name, a in calls if name == "operator"]
    assert ops == ["soundstage.cancel_training"] and any(name == "progress" for name, _a in calls)
    assert _drive(op, ctx) == {"FINISHED"}
    assert model.is_file() and wm.calls[:3] == ["begin", "timer", "modal"] and wm.calls[-2:] == ["timer_removed", "end"]
    assert any(isinstance(s, str) and "Esc to cancel" in s for s in status) and status[-1] is None
    assert "Trained field 'Speaker'" in wm.soundstage_field_train.last_result
    assert fb.addon.active_training() is None
    # Esc right after the start: nothing written, the operator says so.
    model.unlink()
    op, ctx, wm, status = _modal_train(fb, recording=str(walk.recording), model=str(model), steps=50)
    assert op.start_modal(ctx) == {"RUNNING_MODAL"}
    assert _drive(op, ctx, esc=True) == {"CANCELLED"}
    assert not model.exists() and any("training cancelled" in m for _k, m in op.reports)
    assert fb.addon.active_training() is None and not wm.soundstage_field_train.running


def test_modal_training_input_error_is_reported_not_raised(fb, walk, tmp_path):
    walk_scene(walk)
    op, ctx, wm, _status = _modal_train(fb, recording=str(tmp_path / "absent.wav"), model=str(tmp_path / "m.pt"))
    assert op.start_modal(ctx) == {"CANCELLED"}
    assert op.reports[0][0] == {"ERROR"} and "absent.wav" in op.reports[0][1]
    assert fb.addon.active_training() is None and "begin" not in wm.calls
