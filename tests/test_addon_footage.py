"""Footage and stills in Blender: a tracked marker -> a Speaker's path; image regions -> Speakers.

Oracles: the scene itself. A ball flies through a box room past a camera that
moves (keyframed); its true centre per frame is known. The marker positions
are Blender's own projection of that centre (``world_to_camera_view``), so the
add-on's pixel, frame and camera conventions are checked against Blender's,
not against themselves; noise, wild outliers, a gap and a marker outside the
frame are added as a tracker would make them. The recovered path must come
within 10 cm (median) of the truth. Depth images hold the true z-depth of the
ball's centre; image regions are boxes around projected points at a known
depth.
"""

from __future__ import annotations

import csv
import json
import math
import types
from pathlib import Path

import numpy as np
import pytest

bpy = pytest.importorskip("bpy")
pytest.importorskip("soundstage.footage.lift")
pytestmark = pytest.mark.bpy

W, H = 320, 180
FRAMES = range(1, 49)
RADIUS = 0.15
OUTLIER_FRAMES = (5, 13, 17, 26, 34)  # about 10 % of the 48 frames
GAP = (20, 21, 22)
OUTSIDE = 30


@pytest.fixture(autouse=True)
def _reset(ss_ext):
    bpy.ops.wm.read_homefile(app_template="")


@pytest.fixture(scope="module")
def fb(ss_ext):
    """``bridge.footage`` and ``addon.footage`` of the registered extension."""
    import importlib

    return types.SimpleNamespace(bridge=importlib.import_module(f"{ss_ext.__name__}.bridge.footage"),
                                 addon=importlib.import_module(f"{ss_ext.__name__}.addon.footage"))


@pytest.fixture(scope="module")
def frames_dir(tmp_path_factory):
    """A short PNG image sequence (the footage's stand-in: only its size and length matter)."""
    folder = tmp_path_factory.mktemp("footage")
    img = bpy.data.images.new("frame", W, H)
    rng = np.random.default_rng(0)
    for i in (1, 2, 3, 4):
        img.pixels.foreach_set(rng.random(W * H * 4).astype(np.float32))
        img.filepath_raw = str(folder / f"shot_{i:04d}.png")
        img.file_format = "PNG"
        img.save()
    bpy.data.images.remove(img)
    return folder


def _key(obj, path, frame, value):
    setattr(obj, path, value)
    obj.keyframe_insert(path, frame=frame)


def _fcurves(obj):
    ad = obj.animation_data
    slot = getattr(ad, "action_slot", None)
    if slot is not None:  # Blender 4.4+: layered actions
        from bpy_extras import anim_utils

        return anim_utils.action_get_channelbag_for_slot(ad.action, slot).fcurves
    return ad.action.fcurves


def _linear(obj):
    for fc in _fcurves(obj):
        for kp in fc.keyframe_points:
            kp.interpolation = "LINEAR"


def build_scene(*, animate_camera=True, room=True, shift=(0.04, -0.02)):
    """Box room (8 x 9 x 3 m), a ball (radius 0.15 m) flying through it, a keyframed camera."""
    scene = bpy.context.scene
    for o in list(scene.objects):
        bpy.data.objects.remove(o)
    scene.frame_start, scene.frame_end = FRAMES[0], FRAMES[-1]
    scene.render.resolution_x, scene.render.resolution_y, scene.render.resolution_percentage = W, H, 100
    if room:
        bpy.ops.mesh.primitive_cube_add(size=1.0, location=(0.0, -0.5, 1.5))
        box = bpy.context.active_object
        box.scale = (8.0, 9.0, 3.0)
        box.name = "Room"
    bpy.ops.mesh.primitive_uv_sphere_add(radius=RADIUS, segments=32, ring_count=16, location=(-1.5, 1.0, 1.2))
    ball = bpy.context.active_object
    ball.name = "BallMesh"
    _key(ball, "location", FRAMES[0], (-1.5, 1.0, 1.2))
    _key(ball, "location", FRAMES[-1], (1.5, 0.5, 1.6))
    _linear(ball)
    cam_data = bpy.data.cameras.new("Cam")
    cam_data.lens, cam_data.sensor_width = 30.0, 36.0
    cam_data.shift_x, cam_data.shift_y = shift
    cam = bpy.data.objects.new("Cam", cam_data)
    scene.collection.objects.link(cam)
    scene.camera = cam
    cam.rotation_mode = "XYZ"
    cam.location, cam.rotation_euler = (0.0, -3.5, 1.6), (math.radians(88), 0.0, math.radians(8))
    if animate_camera:
        _key(cam, "location", FRAMES[0], (0.0, -3.5, 1.6))
        _key(cam, "rotation_euler", FRAMES[0], (math.radians(88), 0.0, math.radians(8)))
        _key(cam, "location", FRAMES[-1], (1.2, -3.2, 1.5))
        _key(cam, "rotation_euler", FRAMES[-1], (math.radians(92), 0.0, math.radians(-8)))
    return scene, cam, ball


def truth(scene, cam, ball):
    """Per frame: the ball's centre (world), its normalised view position (Blender's projection), z-depth."""
    from bpy_extras.object_utils import world_to_camera_view

    out = {}
    keep = scene.frame_current
    for f in FRAMES:
        scene.frame_set(f)
        c = ball.matrix_world.translation.copy()
        v = world_to_camera_view(scene, cam, c)
        out[f] = (np.array(c), np.array([v.x, v.y]), float(v.z))
    scene.frame_set(keep)
    return out


def make_clip(frames_dir, tr, *, noise_px=1.0, outliers=True, gap=True, outside=True, seed=1):
    """A Movie Clip with a 'Ball' track: the ball's projection + noise, wild outliers, a gap, one marker out."""
    clip = bpy.data.movieclips.load(str(frames_dir / "shot_0001.png"))
    track = clip.tracking.tracks.new(name="Ball", frame=FRAMES[0])
    rng = np.random.default_rng(seed)
    for f in FRAMES:
        if gap and f in GAP:
            continue
        co = tr[f][1] + rng.normal(0.0, noise_px, 2) / np.array([W, H])
        if outliers and f in OUTLIER_FRAMES:
            co = rng.uniform(0.05, 0.95, 2)  # the tracker jumped onto the background
        if outside and f == OUTSIDE:
            co = np.array([1.25, 0.5])
        track.markers.insert_frame(f, co=tuple(co))  # replaces the marker tracks.new made at the first frame
    clip.tracking.tracks.active = track
    return clip, track


def speaker_path(scene, spk):
    keep = scene.frame_current
    out = {}
    for f in FRAMES:
        scene.frame_set(f)
        out[f] = np.array(spk.matrix_world.translation)
    scene.frame_set(keep)
    return out


def median_error(path, tr, frames=FRAMES):
    return float(np.median([np.linalg.norm(path[f] - tr[f][0]) for f in frames]))


# --------------------------------------------------------------------------- registration
def test_operators_and_panel_are_registered(fb):
    assert hasattr(bpy.types, "VIEW3D_PT_soundstage_footage") and hasattr(bpy.types.Scene, "soundstage_footage")
    for name in ("source_from_track", "sources_from_image"):
        assert hasattr(bpy.types, f"SOUNDSTAGE_OT_{name}")
        assert getattr(bpy.ops.soundstage, name).poll() in (True, False)


# --------------------------------------------------------------------------- conventions
def test_marker_pixels_and_camera_match_blenders_projection(fb, frames_dir):
    """The engine camera built from Blender's camera projects the ball where Blender does (shifted lens)."""
    from soundstage.footage.camera import Camera

    scene, cam, ball = build_scene()
    tr = truth(scene, cam, ball)
    frames = np.array(list(FRAMES))
    sampled = fb.bridge.sample_camera(scene, cam, frames, (W, H))
    camera = Camera.from_json(fb.bridge.camera_json(cam, frames, sampled, (W, H)))
    centres = np.array([tr[f][0] for f in FRAMES])
    uv, front = camera.project(frames, centres)
    want = np.array([fb.bridge.marker_pixels(tr[f][1], (0.0, 0.0), (W, H)) for f in FRAMES])
    assert front.all()
    np.testing.assert_allclose(uv, want, atol=0.05)  # pixels
    # Rays through those pixels pass through the centres (Blender's view frame -> rays).
    for f, p, c in zip(FRAMES, want, centres):
        o, d = fb.bridge.pixel_rays(sampled["matrices"][f - 1], sampled["boxes"][f - 1], [p], (W, H))
        off = (c - o[0]) - ((c - o[0]) @ d[0]) * d[0]
        assert np.linalg.norm(off) < 1e-4


# --------------------------------------------------------------------------- tracked footage
def test_marker_track_becomes_a_speaker_on_the_true_path(fb, frames_dir):
    scene, cam, ball = build_scene()
    tr = truth(scene, cam, ball)
    clip, track = make_clip(frames_dir, tr)
    assert bpy.ops.soundstage.source_from_track(depth="SCENE", depth_offset=RADIUS) == {"FINISHED"}
    spk = bpy.context.active_object
    assert spk.type == "SPEAKER" and spk.name == "Ball"
    curves = [fc for fc in _fcurves(spk) if fc.data_path == "location"]
    assert len(curves) == 3
    for fc in curves:
        keys = [(int(round(kp.co[0])), kp.interpolation) for kp in fc.keyframe_points]
        assert [k[0] for k in keys] == list(FRAMES)  # every frame, the gap and the dropped frames filled
        assert {k[1] for k in keys} == {"LINEAR"}
    err = median_error(speaker_path(scene, spk), tr)
    assert err < 0.10, err
    info = json.loads(spk[fb.bridge.PROP])
    assert info["clip"] == clip.name and info["track"] == "Ball" and info["interpolation"] == "LINEAR"
    # Before cleaning the wild points lie metres off the path; the kept ones are close.
    assert info["raw_max_m"] > 1.0 and info["kept_median_m"] < 0.05
    assert info["outliers"] >= 4


def test_depth_image_sequence_gives_the_path(fb, frames_dir, tmp_path):
    """EXR depth maps (true z-depth of the ball's centre, half the clip's size) read through bpy.data.images."""
    scene, cam, ball = build_scene()
    tr = truth(scene, cam, ball)
    make_clip(frames_dir, tr, outliers=False)
    folder = tmp_path / "depth"
    folder.mkdir()
    img = bpy.data.images.new("depth", W // 2, H // 2, float_buffer=True)
    # Depth is data: without Non-Color a new float image is saved sRGB-encoded (4.321 stored as 1.886,
    # checked by reading the file back with bpy 4.5 and 5.0 both ways), unlike a render's Z pass.
    # (Measured: the file format must be set after the pixels; set before, a generated image saves its
    # generated fill instead.)
    img.colorspace_settings.name = "Non-Color"
    for f in FRAMES:
        img.pixels.foreach_set(np.full(W // 2 * H // 2 * 4, tr[f][2], np.float32))
        img.filepath_raw = str(folder / f"depth_{f + 100:04d}.exr")  # numbered like a render starting at 101
        img.file_format = "OPEN_EXR"
        img.save()
    bpy.data.images.remove(img)
    assert bpy.ops.soundstage.source_from_track(depth="IMAGES", depth_path=str(folder), depth_kind="Z",
                                                depth_frame_offset=-100) == {"FINISHED"}
    err = median_error(speaker_path(scene, bpy.context.active_object), tr)
    assert err < 0.05, err
    # Without the offset no file belongs to the track's frames: one line that says so.
    rep = fb.bridge
    with pytest.raises(rep.BridgeError, match="no file for the track's frames 1-48"):
        rep.source_from_track(bpy.context, depth="IMAGES", depth_path=str(folder))


def test_csv_track_with_the_speaker_chosen(fb, tmp_path, ss_wav):
    scene, cam, ball = build_scene()
    tr = truth(scene, cam, ball)
    path = tmp_path / "ball.csv"
    with path.open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["frame", "x", "y"])
        for f in FRAMES:
            x, y = fb.bridge.marker_pixels(tr[f][1], (0, 0), (W, H))
            w.writerow([f, f"{x:.3f}", f"{y:.3f}"] if f not in GAP else [f, "", ""])
    bpy.ops.object.speaker_add(location=(0, 0, 0))
    spk = bpy.context.active_object
    spk.name = "Mine"
    wav = ss_wav("ball.wav", seconds=0.2)
    assert bpy.ops.soundstage.source_from_track(csv_path=str(path), speaker="Mine", sound=str(wav),
                                                depth_offset=RADIUS) == {"FINISHED"}
    assert bpy.context.active_object == spk and spk.data.sound is not None
    assert median_error(speaker_path(scene, spk), tr) < 0.05
    assert not [o for o in scene.objects if o.type == "SPEAKER" and o != spk]


# --------------------------------------------------------------------------- bad input: one line, nothing made
def _refused(fb, match, **kw):
    before = set(bpy.data.objects)
    with pytest.raises(fb.bridge.BridgeError, match=match) as e:
        fb.bridge.source_from_track(bpy.context, **kw)
    assert "\n" not in str(e.value)
    assert set(bpy.data.objects) == before  # nothing half-made
    # The operator says the same line as an error report (a script sees it as RuntimeError), cancelled.
    with pytest.raises(RuntimeError) as op:
        bpy.ops.soundstage.source_from_track(**kw)
    assert str(e.value) in str(op.value)
    assert set(bpy.data.objects) == before
    return str(e.value)


def test_clip_without_a_solve_and_a_still_camera_is_refused(fb, frames_dir):
    scene, cam, ball = build_scene(animate_camera=False)
    tr = truth(scene, cam, ball)
    clip, _ = make_clip(frames_dir, tr)
    msg = _refused(fb, "has no camera solve", depth="SCENE")
    assert clip.name in msg and "Solve Camera Motion" in msg and "'Cam'" in msg
    # A locked-off shot is fine when the user says so.
    assert bpy.ops.soundstage.source_from_track(static_camera=True, depth_offset=RADIUS) == {"FINISHED"}


def test_no_depth_at_the_marker_says_where(fb, frames_dir):
    scene, cam, ball = build_scene(room=False)
    tr = truth(scene, cam, ball)
    make_clip(frames_dir, tr, outliers=False, gap=False, outside=False)
    bpy.data.objects.remove(ball)  # nothing left to hit
    msg = _refused(fb, "frame 1", depth="SCENE")
    assert "no depth" in msg and "(" in msg  # the pixel


def test_some_frames_without_depth_are_filled_and_reported(fb, frames_dir):
    scene, cam, ball = build_scene(room=False)
    tr = truth(scene, cam, ball)
    make_clip(frames_dir, tr, outliers=True, gap=False, outside=False)
    spk, rep = fb.bridge.source_from_track(bpy.context, depth="SCENE", depth_offset=RADIUS)
    note = next(n for n in rep["notes"] if "no depth at the marker" in n)
    assert "frame 5 (pixel" in note
    assert median_error(speaker_path(scene, spk), tr) < 0.10


def test_missing_files_and_bad_choices_are_one_line(fb, frames_dir, tmp_path):
    scene, cam, ball = build_scene()
    tr = truth(scene, cam, ball)
    make_clip(frames_dir, tr)
    _refused(fb, "not found", csv_path=str(tmp_path / "nope.csv"))
    _refused(fb, "sound file .* not found", sound=str(tmp_path / "nope.wav"))
    _refused(fb, "library folder .* not found", library=str(tmp_path / "nolib"))
    _refused(fb, "depth images .* not found", depth="IMAGES", depth_path=str(tmp_path / "nodepth"))
    _refused(fb, "no reconstructed point", depth="BUNDLE")
    _refused(fb, "no track called 'Dog'", track="Dog")
    _refused(fb, "no Speaker called 'Nope'", speaker="Nope")


# --------------------------------------------------------------------------- stills
def _engine_regions():
    import soundstage.footage as engine

    if not hasattr(engine, "sources_from_image"):
        pytest.skip("the engine's sources_from_image has not landed yet")


def test_image_regions_become_speakers_at_their_centres(fb, tmp_path):
    """Boxes, a mask and a segmentation image around projected points at a known z-depth."""
    _engine_regions()
    from bpy_extras.object_utils import world_to_camera_view

    scene, cam, ball = build_scene()
    scene.frame_set(10)
    m = np.array(cam.matrix_world)
    # Three points in front of the camera at z-depth 3, 4 and 5 m.
    local = np.array([[-0.8, 0.2, -3.0], [0.5, -0.3, -4.0], [1.5, 0.6, -5.0]])
    pts = local @ m[:3, :3].T + m[:3, 3]
    px = []
    for p in pts:
        v = world_to_camera_view(scene, cam, __import__("mathutils").Vector(p.tolist()))
        px.append(fb.bridge.marker_pixels((v.x, v.y), (0, 0), (W, H)))
    depth = np.full((H, W), np.nan)
    labels = np.zeros((H, W), np.int64)
    boxes = []
    for k, ((x, y), z) in enumerate(zip(px, (3.0, 4.0, 5.0))):
        x0, y0, x1, y1 = int(x) - 6, int(y) - 6, int(x) + 7, int(y) + 7
        depth[y0:y1, x0:x1] = z
        labels[y0:y1, x0:x1] = k + 1
        boxes.append([x0, y0, x1, y1])
    np.save(tmp_path / "depth.npy", depth)
    np.save(tmp_path / "labels.npy", labels)
    regions = json.dumps([{"name": "Dog", "box": boxes[0]}, {"name": "Car", "box": boxes[1]}])
    assert bpy.ops.soundstage.sources_from_image(depth=str(tmp_path / "depth.npy"), regions_json=regions,
                                                 frame=10) == {"FINISHED"}
    for name, p in (("Dog", pts[0]), ("Car", pts[1])):
        spk = scene.objects[name]
        assert spk.type == "SPEAKER"
        assert np.linalg.norm(np.array(spk.location) - p) < 0.05
    assert bpy.ops.soundstage.sources_from_image(depth=str(tmp_path / "depth.npy"),
                                                 segmentation=str(tmp_path / "labels.npy"),
                                                 label_names='{"3": "Bird"}', frame=10) == {"FINISHED"}
    assert np.linalg.norm(np.array(scene.objects["Bird"].location) - pts[2]) < 0.05
    assert np.linalg.norm(np.array(scene.objects["Label 1"].location) - pts[0]) < 0.05
    with pytest.raises(RuntimeError, match="box .* must be"):
        bpy.ops.soundstage.sources_from_image(depth=str(tmp_path / "depth.npy"),
                                              regions_json='[{"name": "Bad", "box": [5, 5, 2, 9]}]')
    with pytest.raises(RuntimeError, match="no image datablock or file called"):
        bpy.ops.soundstage.sources_from_image(depth=str(tmp_path / "none.exr"), regions_json=regions)


def test_worker_process_gives_the_same_path(fb, frames_dir, monkeypatch):
    """Real Blender has no SciPy: the engine then runs in its own environment (one-shot worker)."""
    import sys

    monkeypatch.setenv("SOUNDSTAGE_PYTHON", sys.executable)
    scene, cam, ball = build_scene()
    tr = truth(scene, cam, ball)
    make_clip(frames_dir, tr)
    a, rep_a = fb.bridge.source_from_track(bpy.context, depth_offset=RADIUS, mode="inprocess")
    path_a = speaker_path(scene, a)
    b, rep_b = fb.bridge.source_from_track(bpy.context, depth_offset=RADIUS, mode="worker")
    path_b = speaker_path(scene, b)
    assert rep_a["figures"] == rep_b["figures"]
    assert max(np.linalg.norm(path_a[f] - path_b[f]) for f in FRAMES) < 1e-6
