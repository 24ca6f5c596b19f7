"""The add-on's Blender side: clean (re)registration, operators, panels, and the modal Bake.

Panels are drawn into a recording layout that checks what Blender would check
at draw time: every ``prop`` names a real RNA property of its data, every
``operator`` exists and every icon is one Blender knows. The modal Bake is
driven by hand with timer and Esc events, since the bpy module has no event loop.
"""

from __future__ import annotations

import time
import types

import pytest

bpy = pytest.importorskip("bpy")

from modalkit import ESCAPE, TIMER, bind_modal  # noqa: E402
from uikit import Recorder  # noqa: E402

pytestmark = pytest.mark.bpy
# The bpy 4.2 wheel is built without Audaspace: no sound strips can exist there.
needs_audio = pytest.mark.skipif(not bpy.app.build_options.audaspace, reason="this bpy build has no Audaspace")


@pytest.fixture(autouse=True)
def _reset(ss_ext):
    bpy.ops.wm.read_homefile(app_template="")


# --------------------------------------------------------------------------- registration
def _registered():
    return (hasattr(bpy.types.Scene, "soundstage"), hasattr(bpy.types.Object, "soundstage"),
            hasattr(bpy.types.Material, "soundstage"), hasattr(bpy.types.WindowManager, "soundstage_bake"),
            hasattr(bpy.types, "SOUNDSTAGE_OT_bake"), hasattr(bpy.types, "VIEW3D_PT_soundstage"),
            hasattr(bpy.types, "MATERIAL_PT_soundstage"))


def test_register_and_unregister_twice_is_clean(ss):
    assert all(_registered())
    for _ in range(2):
        ss.ext.unregister()
        assert not any(_registered())
        ss.ext.register()
        assert all(_registered())
    # Settings stored in the file survive a re-registration (they are ID properties).
    bpy.context.scene.soundstage.channel_base = 40
    ss.ext.unregister()
    ss.ext.register()
    assert bpy.context.scene.soundstage.channel_base == 40


def test_operators_exist(ss):
    for name in ("bake", "add_source", "add_listener", "cancel_bake", "mark_acoustic", "play_preview"):
        assert hasattr(bpy.ops.soundstage, name)


# --------------------------------------------------------------------------- operators
def test_add_source_with_a_file(ss, ss_wav):
    wav = ss_wav("voice.wav")
    bpy.context.scene.cursor.location = (1.0, 2.0, 3.0)
    assert bpy.ops.soundstage.add_source(filepath=str(wav)) == {"FINISHED"}
    obj = bpy.context.active_object
    assert obj.type == "SPEAKER" and obj.name == "voice" and obj.data.sound.filepath == str(wav)
    assert tuple(obj.location) == pytest.approx((1.0, 2.0, 3.0))
    assert ss.export.speaker_start_frame(obj, -1) == bpy.context.scene.frame_current  # NLA sound strip


def test_add_source_errors_and_empty(ss, tmp_path):
    with pytest.raises(RuntimeError, match="missing.wav' not found"):
        bpy.ops.soundstage.add_source(filepath=str(tmp_path / "missing.wav"))
    assert bpy.ops.soundstage.add_source() == {"FINISHED"}  # a speaker to fill in later
    level, text = ss.export.source_status(bpy.context.active_object)
    assert level == "ERROR" and "no sound" in text


def test_add_listener(ss):
    scene = bpy.context.scene
    first_camera = scene.camera
    bpy.ops.soundstage.add_listener(name="Booth")
    booth = scene.objects["Booth"]
    assert booth.type == "CAMERA" and booth.soundstage.listener
    assert first_camera.soundstage.listener  # the implicit listener stays one
    look = booth.matrix_world.to_3x3() @ __import__("mathutils").Vector((0, 0, -1))
    assert tuple(look) == pytest.approx((0.0, 1.0, 0.0), abs=1e-6)
    bpy.data.objects.remove(first_camera)
    assert scene.camera is None
    bpy.ops.soundstage.add_listener(name="Only")
    assert scene.camera == scene.objects["Only"]


def test_mark_acoustic(ss):
    cube = bpy.data.objects["Cube"]
    cube.select_set(True)
    bpy.context.view_layer.objects.active = cube
    bpy.ops.soundstage.mark_acoustic()
    assert cube.soundstage.acoustic
    bpy.ops.soundstage.mark_acoustic(acoustic=False)
    assert not cube.soundstage.acoustic


# --------------------------------------------------------------------------- panels


def _draw(cls, **ctx):
    log = []
    fields = dict(scene=bpy.context.scene, window_manager=bpy.context.window_manager, object=None, material=None)
    context = types.SimpleNamespace(**{**fields, **ctx})
    fake = types.SimpleNamespace(layout=Recorder(log))
    if hasattr(cls, "poll"):
        assert cls.poll(context)
    cls.draw(fake, context)
    return log


def _populated_scene(ss, ss_scene, tmp_path):
    scene, cam, spk = ss_scene()
    bpy.ops.soundstage.add_listener(name="Side")
    missing = bpy.data.objects.new("Missing", bpy.data.speakers.new("Missing"))
    scene.collection.objects.link(missing)
    missing.data.sound = bpy.data.sounds.load(str(spk.data.sound.filepath))
    missing.data.sound.filepath = str(tmp_path / "nowhere.wav")
    muted = bpy.data.objects.new("Muted", bpy.data.speakers.new("Muted"))
    scene.collection.objects.link(muted)
    muted.data.muted = True
    bpy.ops.mesh.primitive_cube_add(size=8)
    room = bpy.context.object
    room.soundstage.acoustic = True
    for mode in ("AUTO", "LIBRARY", "CUSTOM"):
        m = bpy.data.materials.new(f"Mat {mode}")
        m.soundstage.mode = mode
        room.data.materials.append(m)
    return scene, cam, spk, missing, muted, room


def test_sidebar_and_property_panels_draw(ss, ss_scene, tmp_path):
    scene, cam, spk, missing, muted, room = _populated_scene(ss, ss_scene, tmp_path)
    p = ss.panels
    log = _draw(p.VIEW3D_PT_soundstage)
    assert ("operator", "soundstage.bake") in log and ("operator", "soundstage.play_preview") in log
    log = _draw(p.VIEW3D_PT_soundstage_listeners)
    assert ("operator", "soundstage.add_listener") in log and ("label", "Side") in log
    log = _draw(p.VIEW3D_PT_soundstage_sources)
    labels = [t for k, t in log if k == "label"]
    assert any("nowhere.wav" in t for t in labels) and any("muted" in t for t in labels)
    assert any(t.startswith("src.wav, from frame 1") for t in labels)
    log = _draw(p.VIEW3D_PT_soundstage_room)
    labels = [t for k, t in log if k == "label"]
    assert any("plasterboard" in t and "auto" in t for t in labels)  # the guess is shown
    assert ("prop", "library") in log and ("prop", "absorption") in log
    scene.soundstage.format = "AMBIX"
    log = _draw(p.VIEW3D_PT_soundstage_output)
    assert ("prop", "ambisonic_order") in log
    assert _draw(p.DATA_PT_soundstage_speaker, object=spk)
    log = _draw(p.DATA_PT_soundstage_camera, object=cam)
    assert ("label", "Track: Scene_Camera_ambix.wav") in log
    assert _draw(p.OBJECT_PT_soundstage_acoustic, object=room)
    for slot in room.material_slots:
        assert _draw(p.MATERIAL_PT_soundstage, material=slot.material)


def test_preferences_draw_says_where_the_engine_is(ss):
    import importlib

    prefs = importlib.import_module(ss.ext.__name__ + ".addon.prefs")
    log = []
    fake = types.SimpleNamespace(layout=Recorder(log), engine_python="", engine_mode="AUTO",
                                 bl_rna=prefs.SoundstagePreferences.bl_rna)
    prefs.SoundstagePreferences.draw(fake, bpy.context)
    labels = " ".join(t for k, t in log if k == "label")
    assert "in-process" in labels or "Worker environment" in labels or "make demo" in labels


# --------------------------------------------------------------------------- the modal Bake
def _modal_operator(ss):
    """An object carrying the Bake operator's methods, as Blender would bind them."""
    return bind_modal(ss.operators.SOUNDSTAGE_OT_bake, bpy, format="SCENE", listener="")


def _run_modal(op, ctx, esc=False, draw=None):
    timer, escape = TIMER, ESCAPE
    assert op.start_modal(ctx) == {"RUNNING_MODAL"}
    if draw is not None:  # while running, the sidebar shows progress and a Cancel button
        log = _draw(draw)
        assert ("operator", "soundstage.cancel_bake") in log and ("operator", "soundstage.bake") not in log
        assert any(k == "progress" for k, _ in log)
    if esc:
        assert op.modal(ctx, escape) == {"RUNNING_MODAL"}
    for _ in range(20000):
        result = op.modal(ctx, timer)
        if result != {"PASS_THROUGH"}:
            return result
        time.sleep(0.005)
    raise AssertionError("modal bake never finished")


@needs_audio
def test_modal_bake_reports_progress_and_applies_on_finish(ss, ss_scene, tmp_path):
    pytest.importorskip("soundstage.bake")
    scene, cam, spk = ss_scene(frames=12)
    scene.soundstage.output_dir = str(tmp_path)
    op, ctx, wm, status = _modal_operator(ss)
    assert _run_modal(op, ctx, draw=ss.panels.VIEW3D_PT_soundstage) == {"FINISHED"}
    assert wm.calls[:3] == ["begin", "timer", "modal"] and wm.calls[-2:] == ["timer_removed", "end"]
    assert "update" in wm.calls
    assert any(isinstance(s, str) and "Esc to cancel" in s for s in status) and status[-1] is None
    assert [s["soundstage"] for s in ss.timeline.own_strips(scene)] == ["Camera|binaural"]
    assert "Baked Scene_Camera_binaural.wav" in wm.soundstage_bake.last_result
    assert ss.operators.active_session() is None and not wm.soundstage_bake.running


def _baked_then_long(ss, ss_scene, ss_wav, tmp_path):
    """Bake a short track (the previous one), then give the scene a 10 s range and sound.

    A bake of that range is stopped, in the tests that use it, long before the engine
    could finish. Returns the scene, the speaker, the track's path and its bytes.
    """
    pytest.importorskip("soundstage.bake")
    scene, cam, spk = ss_scene(frames=12)
    scene.soundstage.output_dir = str(tmp_path)
    op, ctx, wm, status = _modal_operator(ss)
    assert _run_modal(op, ctx) == {"FINISHED"}
    wav = tmp_path / "Scene_Camera_binaural.wav"
    before = wav.read_bytes()
    scene.frame_end = 240
    spk.data.sound = bpy.data.sounds.load(str(ss_wav("long.wav", seconds=10.0)))
    return scene, spk, wav, before


@needs_audio
def test_modal_bake_escape_keeps_the_previous_track(ss, ss_scene, ss_wav, tmp_path):
    scene, spk, wav, before = _baked_then_long(ss, ss_scene, ss_wav, tmp_path)
    spk.location = (3.0, 3.0, 0.0)  # a finished bake would now differ from the previous track
    op, ctx, wm, status = _modal_operator(ss)
    assert _run_modal(op, ctx, esc=True) == {"CANCELLED"}
    assert wav.read_bytes() == before
    assert any("cancelled" in m for _k, m in op.reports)
    assert len(ss.timeline.own_strips(scene)) == 1
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".soundstage-tmp")]


@needs_audio
def test_window_closing_mid_bake_stops_the_engine_and_keeps_the_previous_track(ss, ss_scene, ss_wav, tmp_path):
    scene, spk, wav, before = _baked_then_long(ss, ss_scene, ss_wav, tmp_path)
    op, ctx, wm, status = _modal_operator(ss)
    assert op.start_modal(ctx) == {"RUNNING_MODAL"}
    session = ss.operators.active_session()
    op.cancel(ctx)  # what Blender calls when the window closes: returns once the engine has stopped
    assert session.state not in ("running", "done") and ss.operators.active_session() is None
    assert wm.calls[-2:] == ["timer_removed", "end"] and status[-1] is None and not wm.soundstage_bake.running
    assert wav.read_bytes() == before and len(ss.timeline.own_strips(scene)) == 1


def test_modal_bake_user_error_is_reported_not_raised(ss, ss_scene, tmp_path):
    scene, cam, spk = ss_scene(sound=False)
    scene.soundstage.output_dir = str(tmp_path)
    op, ctx, wm, status = _modal_operator(ss)
    assert op.start_modal(ctx) == {"CANCELLED"}
    assert op.reports and op.reports[0][0] == {"ERROR"} and "has no sound" in op.reports[0][1]
    assert ss.operators.active_session() is None and "begin" not in wm.calls
