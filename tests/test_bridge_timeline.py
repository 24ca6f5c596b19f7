"""Strips on the Video Sequencer: placement, own channel, replacing only Soundstage's strips."""

from __future__ import annotations

import pytest

bpy = pytest.importorskip("bpy")

pytestmark = [pytest.mark.bpy, pytest.mark.skipif(not bpy.app.build_options.audaspace,
                                                   reason="this bpy build has no Audaspace: no sound strips")]


@pytest.fixture(autouse=True)
def _reset(ss_ext):
    bpy.ops.wm.read_homefile(app_template="")


def _strips(scene):
    se = scene.sequence_editor
    return list(se.strips_all if hasattr(se, "strips_all") else se.sequences_all)


def _collection(scene):
    se = scene.sequence_editor_create()
    return se.strips if hasattr(se, "strips") else se.sequences


def test_strip_starts_at_the_frame_and_lasts_the_file(ss, ss_wav):
    scene = bpy.context.scene
    scene.render.fps = 24
    wav = ss_wav("t.wav", seconds=2.0)  # 48 frames at 24 fps
    strip = ss.timeline.place_track(scene, wav, "Camera", "binaural", 7)
    assert strip.frame_final_start == 7
    assert strip.frame_final_duration == 48
    assert strip.channel == 30
    assert strip.name == "SS:Camera:binaural" and strip["soundstage"] == "Camera|binaural"
    assert not strip.mute


def test_channel_base_and_user_strips_are_respected(ss, ss_wav):
    scene = bpy.context.scene
    user_wav = ss_wav("user.wav", seconds=1.0)
    user = _collection(scene).new_sound("Dialogue", str(user_wav), 30, 1)
    coll = _collection(scene)
    params = coll.bl_rna.functions["new_effect"].parameters.keys()
    kw = {"length": 10} if "length" in params else {"frame_end": 11}  # 5.x vs 4.x signature
    color = coll.new_effect("Grade", "COLOR", 31, frame_start=1, **kw)
    ours = ss.timeline.place_track(scene, ss_wav("a.wav"), "Camera", "binaural", 1)
    assert ours.channel == 32  # first channel >= 30 with nothing on it
    other = ss.timeline.place_track(scene, ss_wav("b.wav"), "Camera", "stereo", 1)
    assert other.channel == 33  # a channel of its own per (listener, format)
    assert user.channel == 30 and color.channel == 31


def test_rebake_replaces_only_its_own_strip(ss, ss_wav):
    scene = bpy.context.scene
    user = _collection(scene).new_sound("Music", str(ss_wav("music.wav")), 2, 1)
    user["soundstage"] = 5  # a user's unrelated property that looks like ours must not confuse it
    first = ss.timeline.place_track(scene, ss_wav("v1.wav", seconds=1.0), "Camera", "binaural", 1)
    keep = ss.timeline.place_track(scene, ss_wav("side.wav", seconds=1.0), "Side", "binaural", 1)
    channel, old_sound = first.channel, first.sound.name
    second = ss.timeline.place_track(scene, ss_wav("v2.wav", seconds=2.0), "Camera", "binaural", 1)
    names = sorted(s.name for s in _strips(scene))
    assert names == sorted(["Music", "SS:Camera:binaural", "SS:Side:binaural"])
    assert second.channel == channel  # same channel as before
    assert second.frame_final_duration == 2 * scene.render.fps
    assert old_sound not in bpy.data.sounds  # the replaced strip's Sound is gone, not left as an orphan
    assert keep.name in [s.name for s in _strips(scene)]
    assert [s.name for s in ss.timeline.own_strips(scene, "Camera", "binaural")] == ["SS:Camera:binaural"]


def test_relative_path_when_the_blend_is_saved(ss, ss_wav, tmp_path):
    bpy.ops.wm.save_as_mainfile(filepath=str(tmp_path / "shot.blend"))
    out = tmp_path / "soundstage"
    out.mkdir()
    wav = ss_wav("Scene_Camera_binaural.wav", folder=out)
    strip = ss.timeline.place_track(bpy.context.scene, wav, "Camera", "binaural", 1)
    assert strip.sound.filepath == "//soundstage/Scene_Camera_binaural.wav"


def test_no_free_channel_is_a_clear_error(ss, ss_wav):
    scene = bpy.context.scene
    wav = ss_wav("x.wav", seconds=0.1)
    coll = _collection(scene)
    for ch in range(120, 129):
        coll.new_sound(f"u{ch}", str(wav), ch, 1)
    with pytest.raises(ss.errors.BridgeError, match="no free Video Sequencer channel"):
        ss.timeline.place_track(scene, wav, "Camera", "binaural", 1, base_channel=120)
