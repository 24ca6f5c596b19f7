"""Camera path: projection/back-projection conventions, JSON round trip, bad camera files.

The projection is held to Blender's own ``world_to_camera_view`` (bpy module) where
it is installed: nobody here wrote that oracle.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from soundstage.errors import SoundstageError
from soundstage.footage import Camera, read_camera
from soundstage.footage.synthetic import look_at


def _camera(**kw):
    mats = np.stack([look_at([1, 2, 1.5], [4, 3, 1.2]), look_at([1.2, 2.1, 1.6], [4, 1, 2.0])])
    args = dict(lens_mm=35.0, sensor_mm=36.0, resolution=(640, 360))
    args.update(kw)
    return Camera(mats, [10, 11], **args)


def test_axis_point_projects_to_image_centre_and_pinhole_focal():
    cam = _camera()
    m = cam.matrix_world[0]
    ahead = m[:3, 3] - 2.0 * m[:3, 2]  # 2 m along local -Z
    uv, front = cam.project(10, ahead[None])
    assert front[0]
    np.testing.assert_allclose(uv[0], [320, 180], atol=1e-9)
    # 0.1 m to the camera's right and up at 2 m: f * 0.05 px right and up (y down)
    f = 35 / 36 * 640
    p = ahead + 0.1 * m[:3, 0] + 0.1 * m[:3, 1]
    uv, _ = cam.project(10, p[None])
    np.testing.assert_allclose(uv[0], [320 + f * 0.05, 180 - f * 0.05], atol=1e-9)


@pytest.mark.parametrize("kind", ["z", "range"])
def test_back_projection_inverts_projection(kind):
    cam = _camera(shift=(0.1, -0.05))
    rng = np.random.default_rng(1)
    uv = rng.uniform([0, 0], [640, 360], (50, 2))
    frames = rng.choice([10, 11], 50)
    depth = rng.uniform(0.5, 8, 50)
    pts = cam.back_project(frames, uv, depth, kind)
    uv2, front = cam.project(frames, pts)
    assert front.all()
    np.testing.assert_allclose(uv2, uv, atol=1e-7)
    o, d = cam.rays(frames, uv)
    np.testing.assert_allclose(np.linalg.norm(d, axis=1), 1.0)
    if kind == "range":
        np.testing.assert_allclose(np.linalg.norm(pts - o, axis=1), depth)
    else:
        np.testing.assert_allclose(cam.z_depth(frames, pts), depth)


def test_point_behind_camera_is_flagged():
    cam = _camera()
    m = cam.matrix_world[0]
    behind = m[:3, 3] + 1.0 * m[:3, 2]
    _, front = cam.project(10, behind[None])
    assert not front[0]


def test_json_round_trip_and_file(tmp_path):
    cam = _camera(lens_mm=[30.0, 40.0], shift=(0.02, 0.01))
    doc = json.loads(json.dumps(cam.to_json()))
    back = Camera.from_json(doc)
    np.testing.assert_allclose(back.matrix_world, cam.matrix_world)
    np.testing.assert_array_equal(back.frames, [10, 11])
    np.testing.assert_allclose(back.lens_mm, [30, 40])
    assert back.resolution == (640, 360) and back.shift == (0.02, 0.01)
    (tmp_path / "cam.json").write_text(json.dumps(doc))
    assert read_camera(tmp_path / "cam.json").name == cam.name


@pytest.mark.parametrize("doc, words", [
    ({"frames": [], "matrix_world": []}, "no frames"),
    ({"matrix_world": [[1] * 16]}, "no frames"),
    ({"frames": [1, 2], "matrix_world": [[1] * 16]}, "one 16-number"),
    ({"frames": [1], "matrix_world": [np.eye(4).ravel().tolist()], "resolution": "big"}, "resolution"),
    ({"frames": [1], "matrix_world": [np.eye(4).ravel().tolist()], "lens_mm": -5}, "lens_mm"),
    ({"frames": [1], "matrix_world": [[0] * 16]}, "degenerate"),
    ({"frames": [1], "matrix_world": [np.eye(4).ravel().tolist()], "version": 7}, "version"),
    ([1, 2], "JSON object"),
])
def test_bad_camera_documents_are_one_line_errors(doc, words):
    with pytest.raises(SoundstageError) as e:
        Camera.from_json(doc, where="shot_cam.json")
    msg = str(e.value)
    assert "shot_cam.json" in msg and words in msg and "\n" not in msg


def test_camera_file_errors(tmp_path):
    with pytest.raises(SoundstageError, match="not found"):
        read_camera(tmp_path / "missing.json")
    (tmp_path / "bad.json").write_text("{nope")
    with pytest.raises(SoundstageError, match="not valid JSON"):
        read_camera(tmp_path / "bad.json")


def test_frame_without_pose_is_named():
    cam = _camera()
    with pytest.raises(SoundstageError, match="no pose at frame 12"):
        cam.rays(12, [[1, 1]])


@pytest.mark.bpy
@pytest.mark.parametrize("res, shift, lens", [((640, 360), (0.0, 0.0), 35.0), ((400, 600), (0.1, -0.07), 50.0)])
def test_projection_matches_blender_world_to_camera_view(res, shift, lens):
    bpy = pytest.importorskip("bpy")
    from bpy_extras.object_utils import world_to_camera_view
    from mathutils import Matrix, Vector

    bpy.ops.wm.read_homefile(app_template="")
    scene = bpy.context.scene
    scene.render.resolution_x, scene.render.resolution_y = res
    scene.render.resolution_percentage = 100
    data = bpy.data.cameras.new("FootageTest")
    data.lens, data.sensor_width, data.sensor_fit = lens, 36.0, "AUTO"
    data.shift_x, data.shift_y = shift
    obj = bpy.data.objects.new("FootageTest", data)
    scene.collection.objects.link(obj)
    m = look_at([0.5, -1, 1.4], [3, 2, 1.0])
    obj.matrix_world = Matrix(m.tolist())
    bpy.context.view_layer.update()
    cam = Camera(m, [1], lens, 36.0, res, shift)
    rng = np.random.default_rng(3)
    pts = np.array([3, 2, 1.0]) + rng.normal(0, 0.8, (20, 3))
    uv, front = cam.project(1, pts)
    for p, q, fr in zip(pts, uv, front):
        x, y, z = world_to_camera_view(scene, obj, Vector(p.tolist()))
        assert (z > 0) == fr
        np.testing.assert_allclose([x * res[0], (1 - y) * res[1]], q, atol=1e-3)  # Blender: origin bottom-left
        np.testing.assert_allclose(z, cam.z_depth(1, p[None])[0], atol=1e-5)
    bpy.ops.wm.read_homefile(app_template="")
