"""A whole bake through the bridge (engine in-process): files, strips, cancel and failures.

The physics oracle here is the interaural level difference: a broadband source
on the camera's left is louder in the left channel (DESIGN.md: the camera's
right ear points along its local +X).
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

bpy = pytest.importorskip("bpy")
sf = pytest.importorskip("soundfile")
pytest.importorskip("soundstage.bake")

pytestmark = pytest.mark.bpy
# The bpy 4.2 wheel is built without Audaspace: no sound strips can exist there.
needs_audio = pytest.mark.skipif(not bpy.app.build_options.audaspace, reason="this bpy build has no Audaspace")


@pytest.fixture(autouse=True)
def _reset(ss_ext):
    bpy.ops.wm.read_homefile(app_template="")


def _left_right_db(x):
    # The floor keeps a hard-panned stereo channel (exactly 0) finite: +-100 dB.
    return 10 * math.log10((np.sum(x[:, 0] ** 2) + 1e-10) / (np.sum(x[:, 1] ** 2) + 1e-10))


def _staging_dirs(folder: Path):
    return [p for p in folder.iterdir() if p.name.startswith(".soundstage-tmp")]


@needs_audio
def test_bake_writes_track_sidecar_and_strip(ss, ss_scene, tmp_path):
    scene, cam, spk = ss_scene(frames=24)
    spk.location = (-2.0, 0.5, 0.0)  # on the camera's left (camera looks along +Y, right ear +X)
    bpy.ops.wm.save_as_mainfile(filepath=str(tmp_path / "shot.blend"))
    scene = bpy.context.scene
    session = ss.pipeline.bake_scene(scene, frames=(5, 28))
    (track,) = session.tracks
    out = tmp_path / "soundstage"
    assert track.final == out / "Scene_Camera_binaural.wav"
    x, rate = sf.read(str(track.final))
    assert rate == 48000 and x.shape == (48000, 2)  # exactly 24 frames at 24 fps
    assert (out / "Scene_Camera_binaural.json").is_file()
    assert _left_right_db(x) > 6.0
    (strip,) = ss.timeline.own_strips(scene)
    assert strip.frame_final_start == 5 and strip.frame_final_duration == 24
    assert strip.sound.filepath == "//soundstage/Scene_Camera_binaural.wav"
    assert not _staging_dirs(out)


def test_source_moving_left_to_right_pans_left_to_right(ss, ss_scene, tmp_path):
    scene, cam, spk = ss_scene(frames=48)
    spk.location = (-3.0, 1.0, 0.0)
    spk.keyframe_insert("location", frame=1)
    spk.location = (3.0, 1.0, 0.0)
    spk.keyframe_insert("location", frame=48)
    session = ss.pipeline.bake_scene(scene, out_dir=tmp_path)
    x, _ = sf.read(str(session.tracks[0].final))
    q = len(x) // 4
    assert _left_right_db(x[:q]) > 6.0 and _left_right_db(x[-q:]) < -6.0


@needs_audio
def test_each_listener_gets_its_track_and_channel(ss, ss_scene, tmp_path):
    scene, cam, spk = ss_scene(frames=12)
    spk.location = (2.0, 0.0, 0.0)
    bpy.ops.soundstage.add_listener(name="Back")
    back = bpy.data.objects["Back"]
    back.rotation_euler = (math.pi / 2, 0.0, math.pi)  # looks along -Y: the speaker is on its left
    session = ss.pipeline.bake_scene(scene, out_dir=tmp_path, fmt="stereo")
    by = {t.listener: t for t in session.tracks}
    assert set(by) == {"Camera", "Back"}
    front, rear = (sf.read(str(by[n].final))[0] for n in ("Camera", "Back"))
    assert _left_right_db(front) < -6.0 < 6.0 < _left_right_db(rear)
    strips = {s["soundstage"]: s for s in ss.timeline.own_strips(scene)}
    assert strips["Camera|stereo"].channel != strips["Back|stereo"].channel
    # Only the scene camera's track plays; the other is there, muted.
    assert not strips["Camera|stereo"].mute and strips["Back|stereo"].mute


def test_ambix_is_written_without_a_strip(ss, ss_scene, tmp_path):
    scene, cam, spk = ss_scene(frames=12)
    session = ss.pipeline.bake_scene(scene, out_dir=tmp_path, fmt="ambix")
    x, _ = sf.read(str(session.tracks[0].final))
    assert x.shape[1] == 4 and session.tracks[0].strip is None
    assert not ss.timeline.own_strips(scene)


def _first_bake(ss, ss_scene, tmp_path):
    scene, cam, spk = ss_scene(frames=12)
    session = ss.pipeline.bake_scene(scene, out_dir=tmp_path)
    wav = session.tracks[0].final
    strip = ss.timeline.own_strips(scene)[0]
    return scene, spk, wav, wav.read_bytes(), (strip.name, strip.sound.filepath, strip.frame_final_duration)


def _strip_state(ss, scene):
    (strip,) = ss.timeline.own_strips(scene)
    return strip.name, strip.sound.filepath, strip.frame_final_duration


@needs_audio
def test_cancel_leaves_the_previous_track_intact(ss, ss_scene, tmp_path):
    scene, spk, wav, before, strip_before = _first_bake(ss, ss_scene, tmp_path)
    spk.location = (5.0, 5.0, 0.0)  # the new bake would differ
    session = ss.pipeline.BakeSession(scene, out_dir=tmp_path)
    session.prepare()
    session.cancel()  # Esc at once: the engine gets the request as it starts
    session.start()
    while session.poll() == "running":
        pass
    assert session.state == "cancelled"
    with pytest.raises(ss.errors.BakeCancelled):
        session.finish()
    assert wav.read_bytes() == before
    assert _strip_state(ss, scene) == strip_before
    assert not _staging_dirs(tmp_path)


@needs_audio
def test_engine_error_leaves_the_previous_track_intact(ss, ss_scene, tmp_path):
    scene, spk, wav, before, strip_before = _first_bake(ss, ss_scene, tmp_path)
    cam = scene.camera
    spk.location = cam.location  # the engine refuses a source on top of the listener
    with pytest.raises(ss.errors.BridgeError, match="on top of the listener"):
        ss.pipeline.bake_scene(scene, out_dir=tmp_path)
    assert wav.read_bytes() == before
    assert _strip_state(ss, scene) == strip_before
    assert not _staging_dirs(tmp_path)


def test_bad_scene_fails_before_writing_anything(ss, ss_scene, tmp_path):
    scene, cam, spk = ss_scene(sound=False)
    out = tmp_path / "out"
    with pytest.raises(ss.errors.BridgeError, match="has no sound"):
        ss.pipeline.bake_scene(scene, out_dir=out)
    assert list(out.iterdir()) == []
    assert scene.sequence_editor is None or not ss.timeline.own_strips(scene)


def test_unwritable_output_folder(ss, ss_scene, tmp_path):
    scene, cam, spk = ss_scene()
    (tmp_path / "file").write_text("not a folder")
    with pytest.raises(ss.errors.BridgeError, match="not writable"):
        ss.pipeline.bake_scene(scene, out_dir=tmp_path / "file" / "renders")
    assert (tmp_path / "file").read_text() == "not a folder"


def test_unsaved_file_bakes_to_a_temp_folder_with_a_warning(ss, ss_scene):
    scene, cam, spk = ss_scene(frames=6)
    session = ss.pipeline.bake_scene(scene)
    assert any("not saved" in w for w in session.warnings)
    assert session.tracks[0].final.is_file()
    assert session.tracks[0].final.parent.name.startswith("soundstage-unsaved-")


def test_listener_names_cannot_escape_the_output_folder(ss, ss_scene, tmp_path):
    scene, cam, spk = ss_scene(frames=6)
    cam.name = "../../escape"
    out = tmp_path / "a" / "b"
    session = ss.pipeline.bake_scene(scene, out_dir=out)
    assert session.tracks[0].final.parent == out.resolve()
    assert session.tracks[0].final.name == "Scene_escape_binaural.wav"
    assert not list(tmp_path.rglob("*escape*.wav"))[1:]  # the one file, inside the folder


@needs_audio
def test_bake_operator_runs_blocking_from_scripts(ss, ss_scene, tmp_path):
    scene, cam, spk = ss_scene(frames=6)
    scene.soundstage.output_dir = str(tmp_path)
    scene.soundstage.format = "STEREO"
    assert bpy.ops.soundstage.bake() == {"FINISHED"}
    assert (tmp_path / "Scene_Camera_stereo.wav").is_file()
    assert [s["soundstage"] for s in ss.timeline.own_strips(scene)] == ["Camera|stereo"]
    assert ss.operators.active_session() is None
    spk.data.sound = None
    # A user error is reported as an operator error (Blender raises it as RuntimeError for scripts).
    with pytest.raises(RuntimeError, match="speaker 'Speaker' has no sound"):
        bpy.ops.soundstage.bake()
    assert ss.operators.active_session() is None


def test_without_audio_support_the_files_are_written_and_the_user_told(ss, ss_scene, tmp_path, monkeypatch):
    """A Blender built without Audaspace (the bpy 4.2 wheel) cannot hold sound strips: files only, and a warning."""
    monkeypatch.setattr(ss.timeline, "audio_supported", lambda: False)
    scene, cam, spk = ss_scene(frames=6)
    session = ss.pipeline.bake_scene(scene, out_dir=tmp_path)
    assert session.tracks[0].final.is_file() and session.tracks[0].strip is None
    assert any("no audio support" in w and str(tmp_path) in w for w in session.warnings)
    assert scene.sequence_editor is None or not ss.timeline.own_strips(scene)
