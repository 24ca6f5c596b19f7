"""Scene -> job export with the bpy module: transforms per frame, listeners, sources, room and materials.

Oracles are independent of the exporter: poses composed by hand with
mathutils from the keyframed values (linear interpolation), analytic
look-at directions, and the engine's own job validator.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

bpy = pytest.importorskip("bpy")
from mathutils import Euler, Matrix, Vector  # noqa: E402

pytestmark = pytest.mark.bpy


@pytest.fixture(autouse=True)
def _reset(ss_ext):
    bpy.ops.wm.read_homefile(app_template="")


def _linear(obj):
    """Make every keyframe of ``obj`` linear (Blender's default is Bezier)."""
    ad = obj.animation_data
    curves = []
    action = ad.action
    if hasattr(action, "fcurves") and len(getattr(action, "fcurves", [])):
        curves = list(action.fcurves)
    else:  # Blender 5 layered actions: channelbags hold the F-curves
        for layer in action.layers:
            for strip in layer.strips:
                for bag in strip.channelbags:
                    curves.extend(bag.fcurves)
    for fc in curves:
        for kp in fc.keyframe_points:
            kp.interpolation = "LINEAR"
    assert curves


def _mat(flat):
    return Matrix([flat[0:4], flat[4:8], flat[8:12], flat[12:16]])


def test_positions_per_frame_follow_keyframes(ss, ss_scene):
    scene, cam, spk = ss_scene(frames=11)
    spk.location = (-2.0, 2.0, 0.5)
    spk.keyframe_insert("location", frame=1)
    spk.location = (3.0, 2.0, 0.5)
    spk.keyframe_insert("location", frame=11)
    _linear(spk)
    job = ss.export.export_scene(scene).jobs[0].job
    pos = np.array(job["sources"][0]["position"])
    assert pos.shape == (11, 3)
    t = np.arange(11) / 10.0
    expected = np.stack([-2.0 + 5.0 * t, np.full(11, 2.0), np.full(11, 0.5)], axis=1)
    np.testing.assert_allclose(pos, expected, atol=1e-5)
    # A listener that never moves is sent as one matrix, not eleven copies.
    assert len(job["listener"]["matrix_world"]) == 16
    assert job["frame_start"] == 1 and job["frame_end"] == 11 and job["fps"] == 24


def test_camera_matrix_includes_animated_parent(ss, ss_scene):
    scene, cam, spk = ss_scene(frames=9)
    rig = bpy.data.objects.new("Rig", None)
    scene.collection.objects.link(rig)
    cam.parent = rig
    cam.location = (0.0, 1.0, 0.0)
    cam.rotation_euler = (math.pi / 2, 0.0, 0.0)
    rig.location, rig.rotation_euler = (0.0, 0.0, 0.0), (0.0, 0.0, 0.0)
    rig.keyframe_insert("location", frame=1)
    rig.keyframe_insert("rotation_euler", frame=1)
    rig.location, rig.rotation_euler = (4.0, 0.0, 0.0), (0.0, 0.0, math.pi / 2)
    rig.keyframe_insert("location", frame=9)
    rig.keyframe_insert("rotation_euler", frame=9)
    _linear(rig)
    spk.location = (0.0, 0.0, 5.0)  # away from the camera's path
    job = ss.export.export_scene(scene).jobs[0].job
    mats = job["listener"]["matrix_world"]
    assert len(mats) == 9
    local = Matrix.Translation((0.0, 1.0, 0.0)) @ Euler((math.pi / 2, 0.0, 0.0)).to_matrix().to_4x4()
    for i, flat in enumerate(mats):
        t = i / 8.0
        parent = Matrix.Translation((4.0 * t, 0.0, 0.0)) @ Matrix.Rotation(t * math.pi / 2, 4, "Z")
        expected = parent @ local
        np.testing.assert_allclose(np.array(_mat(flat)), np.array(expected), atol=1e-5)


def test_constraint_and_scale_sampled_from_the_depsgraph(ss, ss_scene):
    """A Track To constraint aims the camera; its scale is not part of the listener's pose."""
    scene, cam, spk = ss_scene(frames=5)
    target = bpy.data.objects.new("Target", None)
    scene.collection.objects.link(target)
    target.location = (-3.0, 4.0, 1.0)
    target.keyframe_insert("location", frame=1)
    target.location = (3.0, 4.0, -1.0)
    target.keyframe_insert("location", frame=5)
    cam.location = (0.0, 0.0, 0.0)
    cam.scale = (2.0, 2.0, 2.0)
    con = cam.constraints.new("TRACK_TO")
    con.target = target
    con.track_axis, con.up_axis = "TRACK_NEGATIVE_Z", "UP_Y"
    spk.location = (0.0, -3.0, 0.0)
    job = ss.export.export_scene(scene).jobs[0].job
    for f, flat in zip(range(1, 6), job["listener"]["matrix_world"]):
        m = _mat(flat)
        scene.frame_set(f)
        aim = (target.matrix_world.translation - Vector((0, 0, 0))).normalized()
        look = -(m.to_3x3() @ Vector((0, 0, 1)))
        assert look.dot(aim) == pytest.approx(1.0, abs=1e-5)
        assert np.allclose(np.linalg.norm(np.array(m.to_3x3()), axis=0), 1.0, atol=1e-6)


def test_driver_moves_a_source(ss, ss_scene):
    scene, cam, spk = ss_scene(frames=6)
    fc = spk.driver_add("location", 0)
    fc.driver.type = "SCRIPTED"
    fc.driver.expression = "frame / 2"  # a simple expression: evaluated without Python scripts enabled
    job = ss.export.export_scene(scene).jobs[0].job
    xs = [p[0] for p in job["sources"][0]["position"]]
    assert xs == pytest.approx([f / 2 for f in range(1, 7)], abs=1e-6)


def test_listeners_scene_camera_by_default_and_marked_cameras(ss, ss_scene):
    scene, cam, spk = ss_scene()
    assert [j.listener for j in ss.export.export_scene(scene).jobs] == [cam.name]
    bpy.ops.soundstage.add_listener(name="Side")
    names = sorted(j.listener for j in ss.export.export_scene(scene).jobs)
    assert names == sorted([cam.name, "Side"])  # adding one kept the scene camera a listener
    only = ss.export.export_scene(scene, listener="Side").jobs
    assert [j.listener for j in only] == ["Side"]
    with pytest.raises(ss.errors.BridgeError, match="no camera called 'Nope'"):
        ss.export.export_scene(scene, listener="Nope")


def test_speaker_settings_map_to_the_source(ss, ss_scene):
    scene, cam, spk = ss_scene(frames=48)
    spk.data.volume = 0.5
    bpy.ops.object.speaker_add(location=(1.0, 3.0, 0.0))
    muted = bpy.context.object
    muted.data.sound = spk.data.sound
    muted.data.muted = True
    # A speaker added the stock way has an NLA sound strip: move it to frame 12.
    bpy.ops.object.speaker_add(location=(-1.0, 3.0, 0.0))
    late = bpy.context.object
    late.name = "Late"
    late.data.sound = spk.data.sound
    late.animation_data.nla_tracks[0].strips[0].frame_start = 12
    ex = ss.export.export_scene(scene)
    srcs = {s["name"]: s for s in ex.jobs[0].job["sources"]}
    assert set(srcs) == {spk.name, "Late"}
    assert srcs[spk.name]["gain_db"] == pytest.approx(20 * math.log10(0.5), abs=1e-3)
    assert srcs[spk.name]["start_frame"] == scene.frame_start
    assert srcs["Late"]["start_frame"] == 12
    assert any(muted.name in w and "muted" in w for w in ex.warnings)


def _room(scene, name="Room", size=(6.0, 5.0, 3.0), location=(0.0, 0.0, 1.0)):
    bpy.ops.mesh.primitive_cube_add(size=1.0, location=location)
    room = bpy.context.object
    room.name = name
    room.scale = size
    room.soundstage.acoustic = True
    return room


def test_room_mesh_and_materials(ss, ss_scene):
    scene, cam, spk = ss_scene()
    room = _room(scene)
    carpet = bpy.data.materials.new("Carpet")
    brick = bpy.data.materials.new("Walls")
    brick.soundstage.mode = "LIBRARY"
    brick.soundstage.library = "brickwork"
    panel = bpy.data.materials.new("Panel")
    panel.soundstage.mode = "CUSTOM"
    panel.soundstage.absorption = (0.5, 0.6, 0.7, 0.8, 0.9, 0.9, 0.9)
    panel.soundstage.scattering = 0.4
    for m in (carpet, brick, panel):
        room.data.materials.append(m)
    # Floor (normal -Z) carpet, ceiling (+Z) panel, the four walls brick.
    for poly in room.data.polygons:
        n = poly.normal
        poly.material_index = 0 if n.z < -0.5 else 2 if n.z > 0.5 else 1
    ex = ss.export.export_scene(scene)
    r = ex.jobs[0].job["room"]
    assert r["type"] == "mesh" and not ex.warnings
    v = np.array(r["vertices"])
    np.testing.assert_allclose(v.min(axis=0), [-3.0, -2.5, -0.5], atol=1e-6)  # world coordinates
    np.testing.assert_allclose(v.max(axis=0), [3.0, 2.5, 2.5], atol=1e-6)
    faces, fm = np.array(r["faces"]), np.array(r["face_materials"])
    assert faces.shape == (12, 3) and fm.shape == (12,)
    mats = r["materials"]
    assert mats[0] == "carpet_cotton" and mats[1] == "brickwork"
    assert mats[2]["absorption"]["125"] == pytest.approx(0.5) and mats[2]["scattering"] == pytest.approx(0.4)
    centroid_z = v[faces].mean(axis=1)[:, 2]
    assert set(fm[centroid_z < -0.4]) == {0} and set(fm[centroid_z > 2.4]) == {2}
    assert set(fm[(centroid_z > -0.4) & (centroid_z < 2.4)]) == {1}


def test_exported_jobs_pass_the_engine_validator(ss, ss_scene, tmp_path):
    """The engine's own ``load_job`` is the oracle for the contract (free field and mesh room)."""
    job_mod = pytest.importorskip("soundstage.job")
    scene, cam, spk = ss_scene()
    job = ss.export.export_scene(scene).jobs[0].job
    loaded = job_mod.load_job(dict(job, output=dict(job["output"], path=str(tmp_path / "x.wav"))))
    assert loaded.n_frames == 24 and loaded.sources[0].positions.shape == (24, 3)
    pytest.importorskip("soundstage.rooms.mesh")
    room = _room(scene)
    room.data.materials.append(bpy.data.materials.new("Carpet"))
    job = ss.export.export_scene(scene).jobs[0].job
    loaded = job_mod.load_job(dict(job, output=dict(job["output"], path=str(tmp_path / "x.wav"))))
    assert loaded.room is not None


def test_material_choice_survives_a_save_by_name(ss, ss_scene, tmp_path):
    """The library choice is stored as a name, so it reads back the same after save/reload."""
    scene, cam, spk = ss_scene()
    room = _room(scene)
    m = bpy.data.materials.new("Anything")
    m.soundstage.mode = "LIBRARY"
    m.soundstage.library = "ceramic_tiles"
    room.data.materials.append(m)
    path = tmp_path / "m.blend"
    bpy.ops.wm.save_as_mainfile(filepath=str(path))
    bpy.ops.wm.open_mainfile(filepath=str(path))
    m = bpy.data.materials["Anything"]
    assert m.soundstage.library_name == "ceramic_tiles" and m.soundstage.library == "ceramic_tiles"


def test_auto_material_is_guessed_from_name_and_shading(ss, ss_scene):
    scene, cam, spk = ss_scene()
    room = _room(scene)
    shiny = bpy.data.materials.new("Material.017")
    if shiny.node_tree is None:  # Blender 4.x; 5.x always has a node tree
        shiny.use_nodes = True
    bsdf = next(n for n in shiny.node_tree.nodes if n.type == "BSDF_PRINCIPLED")
    bsdf.inputs["Metallic"].default_value = 1.0
    room.data.materials.append(shiny)
    r = ss.export.export_scene(scene).jobs[0].job["room"]
    assert r["materials"] == ["hard_surface"]
    assert "metallic" in ss.export.material_summary(shiny)


def test_open_room_mesh_warns_and_says_what_was_done(ss, ss_scene):
    scene, cam, spk = ss_scene()
    room = _room(scene)
    import bmesh

    bm = bmesh.new()
    bm.from_mesh(room.data)
    top = [f for f in bm.faces if f.normal.z > 0.5]
    bmesh.ops.delete(bm, geom=top, context="FACES_ONLY")
    bm.to_mesh(room.data)
    bm.free()
    ex = ss.export.export_scene(scene)
    assert ex.jobs[0].job["room"]["type"] == "mesh"
    (w,) = [w for w in ex.warnings if "Room" in w]
    assert "not closed" in w and "4 open edges" in w and "baked as it is" in w


def test_open_edge_count_oracle(ss):
    tet = np.array([[0, 1, 2], [0, 3, 1], [1, 3, 2], [2, 3, 0]])
    assert ss.export.open_edge_count(tet) == 0
    assert ss.export.open_edge_count(tet[:3]) == 3


def test_mirrored_room_keeps_outward_winding(ss, ss_scene):
    """Negative scale flips triangle winding; the export flips it back so normals still point out."""
    scene, cam, spk = ss_scene()
    room = _room(scene, location=(0.0, 0.0, 0.0))
    room.scale = (-6.0, 5.0, 3.0)
    r = ss.export.export_scene(scene).jobs[0].job["room"]
    v, f = np.array(r["vertices"]), np.array(r["faces"])
    tri = v[f]
    normals = np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])
    outward = np.einsum("ij,ij->i", normals, tri.mean(axis=1))
    assert (outward > 0).all()


def test_no_acoustic_mesh_means_free_field(ss, ss_scene):
    scene, cam, spk = ss_scene()
    bpy.ops.mesh.primitive_cube_add(size=10)  # not marked
    assert ss.export.export_scene(scene).jobs[0].job["room"] == {"type": "free_field"}
    room = _room(scene)
    scene.soundstage.use_room = False
    assert ss.export.export_scene(scene).jobs[0].job["room"] == {"type": "free_field"}
    assert room.soundstage.acoustic


# --------------------------------------------------------------------------- bad input
def test_speaker_without_sound(ss, ss_scene):
    scene, cam, spk = ss_scene(sound=False)
    with pytest.raises(ss.errors.BridgeError, match="speaker 'Speaker' has no sound"):
        ss.export.export_scene(scene)


def test_missing_sound_file_is_named(ss, ss_scene, tmp_path):
    scene, cam, spk = ss_scene()
    spk.data.sound.filepath = str(tmp_path / "gone.wav")
    with pytest.raises(ss.errors.BridgeError, match=r"speaker 'Speaker'.*gone\.wav.*not found"):
        ss.export.export_scene(scene)


def test_no_camera(ss, ss_scene):
    scene, cam, spk = ss_scene()
    bpy.data.objects.remove(cam)
    with pytest.raises(ss.errors.BridgeError, match="no camera to listen from"):
        ss.export.export_scene(scene)


def test_no_sources(ss, ss_scene):
    scene, cam, spk = ss_scene()
    spk.data.muted = True
    with pytest.raises(ss.errors.BridgeError, match="no sound source"):
        ss.export.export_scene(scene)


def test_packed_sound_is_written_out(ss, ss_scene, tmp_path):
    scene, cam, spk = ss_scene()
    spk.data.sound.pack()
    original = spk.data.sound.filepath
    spk.data.sound.filepath = str(tmp_path / "not_there.wav")  # only the packed bytes remain
    staging = tmp_path / "staging"
    staging.mkdir()
    job = ss.export.export_scene(scene, staging_dir=staging).jobs[0].job
    audio = job["sources"][0]["audio"]
    assert audio.startswith(str(staging)) and open(audio, "rb").read(4) == b"RIFF"
    assert original
