"""Gaussian splat scenes in Blender: import, display, room proxy, drawn rooms, ray casts, camera paths, bake.

Oracles: an independent PLY reader (plyfile) for the real donut capture; the
synthetic room's known geometry (walls at known planes, size 6 x 5 x 3 m)
after a known object transform; the enclosed volume of closed meshes
(divergence theorem) against length x width x height; COLMAP's documented
pose convention (centre = -R^T t, camera +Z forward) and nerfstudio's
camera-to-world matrices; and, for the bake, physics: a closed room adds
reflected energy, so the same shot is louder than in free field.
"""

from __future__ import annotations

import json
import math
import types
from pathlib import Path

import numpy as np
import pytest

bpy = pytest.importorskip("bpy")

from uikit import Recorder  # noqa: E402

splats_engine = pytest.importorskip("soundstage.splats")
pytestmark = pytest.mark.bpy

DONUT = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "splats" / "donut_sh0.ply"


@pytest.fixture(autouse=True)
def _reset(ss_ext):
    bpy.ops.wm.read_homefile(app_template="")


@pytest.fixture(scope="module")
def sb(ss_ext):
    """``bridge.splats`` and ``addon.splats`` of the registered extension."""
    import importlib

    return types.SimpleNamespace(bridge=importlib.import_module(f"{ss_ext.__name__}.bridge.splats"),
                                 addon=importlib.import_module(f"{ss_ext.__name__}.addon.splats"),
                                 modal=importlib.import_module(f"{ss_ext.__name__}.addon.modal"),
                                 engine=importlib.import_module(f"{ss_ext.__name__}.bridge.splat_engine"))


@pytest.fixture(scope="module")
def room_ply(tmp_path_factory):
    """A synthetic 6 x 5 x 3 m splat room (x -3..3, y -2.5..2.5, z 0..3) written as a PLY."""
    scene = splats_engine.make_synthetic_room(density=100, seed=0)
    path = tmp_path_factory.mktemp("splats") / "room.ply"
    splats_engine.write_ply(path, scene.splats)
    return path, scene


def _import(path, **kw):
    assert bpy.ops.soundstage.import_splats(filepath=str(path), **kw) == {"FINISHED"}
    return bpy.context.active_object


def _volume(verts, faces):
    """Signed volume of a closed triangle mesh (divergence theorem); positive for outward normals."""
    v = np.asarray(verts, float)
    f = np.asarray(faces, int)
    return float(np.einsum("ij,ij->i", v[f[:, 0]], np.cross(v[f[:, 1]], v[f[:, 2]])).sum() / 6.0)


def _export_mesh(ss, obj):
    """The job room made from just ``obj`` (the other acoustic meshes unmarked)."""
    for o in bpy.context.scene.objects:
        if o.type == "MESH":
            o.soundstage.acoustic = o == obj
    warnings = []
    room = ss.export.export_room(bpy.context.scene, warnings)
    assert room["type"] == "mesh" and not any("not closed" in w for w in warnings), warnings
    return room


# --------------------------------------------------------------------------- registration
def test_operators_menu_and_file_handler_are_registered(sb):
    for name in ("import_splats", "splat_room", "room_from_outline", "place_source_on_splats",
                 "import_camera_path"):
        assert hasattr(bpy.ops.soundstage, name)
    assert hasattr(bpy.types, "VIEW3D_PT_soundstage_splats")
    assert sb.addon.menu_import in bpy.types.TOPBAR_MT_file_import._dyn_ui_initialize()
    if hasattr(bpy.types, "FileHandler"):
        fh = bpy.types.SOUNDSTAGE_FH_splats
        assert fh.bl_import_operator == "soundstage.import_splats" and ".splat" in fh.bl_file_extensions


# --------------------------------------------------------------------------- import
def test_real_donut_imports_every_gaussian_with_finite_attributes(sb):
    if not DONUT.is_file():
        pytest.skip(f"shared data not found: {DONUT}")
    plyfile = pytest.importorskip("plyfile")
    obj = _import(DONUT)
    assert obj.type == "MESH" and len(obj.data.vertices) == 45_624 and len(obj.data.edges) == 0
    assert obj[sb.bridge.PROP]["count"] == 45_624 and obj[sb.bridge.PROP]["source"] == str(DONUT)
    a = sb.bridge.object_arrays(obj)
    for name, arr in a.items():
        assert np.all(np.isfinite(arr)), name
    # An independent reader of the same file: plyfile, with the Inria conventions applied here.
    v = plyfile.PlyData.read(str(DONUT))["vertex"].data
    np.testing.assert_array_equal(a["positions"], np.column_stack([v["x"], v["y"], v["z"]]).astype(np.float32))
    np.testing.assert_allclose(a["opacities"], 1 / (1 + np.exp(-v["opacity"].astype(np.float64))), atol=1e-6)
    np.testing.assert_allclose(a["scales"], np.exp(np.column_stack([v[f"scale_{i}"] for i in range(3)])),
                               rtol=1e-6)
    q = np.column_stack([v[f"rot_{i}"] for i in range(4)]).astype(np.float64)
    np.testing.assert_allclose(a["rotations"], q / np.linalg.norm(q, axis=1, keepdims=True), atol=1e-6)
    dc = np.column_stack([v[f"f_dc_{i}"] for i in range(3)])
    np.testing.assert_allclose(a["colors"], np.clip(0.5 + 0.28209479177387814 * dc, 0, 1), atol=2e-4)
    # Displayed as points with the emissive splat material; small enough to show them all.
    mod = sb.bridge.display_modifier(obj)
    keys = sb.bridge.display_inputs(mod)
    assert mod.show_viewport and mod[keys["Display Fraction"]] == 1.0
    assert mod[keys["Material"]].name == sb.bridge.DISPLAY_MATERIAL


def _displayed_points(obj):
    dg = bpy.context.evaluated_depsgraph_get()
    counts = [len(i.object.data.points) for i in dg.object_instances
              if i.object.type == "POINTCLOUD" and i.object.original == obj]
    return sum(counts)


def test_viewport_display_modes(sb, room_ply):
    path, scene = room_ply
    n = len(scene.splats)
    obj = _import(path, display="AUTO", max_display_points=5000)
    mod = sb.bridge.display_modifier(obj)
    keys = sb.bridge.display_inputs(mod)
    assert mod[keys["Display Fraction"]] == pytest.approx(5000 / n)
    shown = _displayed_points(obj)
    assert abs(shown - 5000) < 5 * math.sqrt(5000)  # a random subset of about that size
    sb.bridge.add_display(obj, display="POINTS")
    assert _displayed_points(obj) == n
    sb.bridge.add_display(obj, display="BOUNDS")
    assert obj.display_type == "BOUNDS" and not mod.show_viewport and mod.show_render
    assert len(obj.modifiers) == 1  # re-applying reuses the modifier


def test_attributes_round_trip_without_loss(sb):
    rng = np.random.default_rng(1)
    n = 1000
    q = rng.normal(size=(n, 4))
    arrays = {"positions": rng.normal(size=(n, 3)), "scales": rng.uniform(0.001, 0.1, (n, 3)),
              "rotations": q / np.linalg.norm(q, axis=1, keepdims=True), "opacities": rng.uniform(0, 1, n),
              "colors": rng.uniform(0, 1, (n, 3))}
    obj = sb.bridge.create_splat_object(arrays, "S", bpy.context.scene.collection)
    back = sb.bridge.object_arrays(obj)
    for k, v in arrays.items():
        tol = 2e-4 if k == "colors" else 1e-6  # colours pass through Blender's sRGB <-> linear conversion
        np.testing.assert_allclose(back[k], np.asarray(v, np.float32).reshape(back[k].shape), atol=tol, err_msg=k)
    r = sb.bridge.display_radius(arrays["scales"])
    assert r.shape == (n,) and np.all(r > 0) and r.max() <= np.exp(np.log(arrays["scales"]).mean(1)).max()


def test_bad_files_are_one_line_errors(sb, tmp_path, room_ply):
    with pytest.raises(RuntimeError, match="nowhere.ply' not found"):
        bpy.ops.soundstage.import_splats(filepath=str(tmp_path / "nowhere.ply"))
    cloud = tmp_path / "cloud.ply"
    cloud.write_text("ply\nformat ascii 1.0\nelement vertex 1\nproperty float x\nproperty float y\n"
                     "property float z\nproperty uchar red\nproperty uchar green\nproperty uchar blue\n"
                     "end_header\n0 0 0 255 0 0\n")
    with pytest.raises(RuntimeError, match="not a Gaussian splat file"):
        bpy.ops.soundstage.import_splats(filepath=str(cloud))
    _, scene = room_ply
    broken = scene.splats.subset(np.arange(300))
    broken.positions = broken.positions.copy()
    broken.positions[7] = np.nan
    bad = tmp_path / "nan.ply"
    splats_engine.write_ply(bad, broken)
    with pytest.raises(RuntimeError, match="Skip Broken Gaussians"):
        bpy.ops.soundstage.import_splats(filepath=str(bad))
    assert not any(sb.bridge.is_splat_object(o) for o in bpy.data.objects)
    obj = _import(bad, drop_nonfinite=True)
    assert len(obj.data.vertices) == 299


def test_worker_process_reads_the_same_arrays(sb, room_ply, ss):
    """Real Blender has no SciPy: there the engine runs in its own environment."""
    try:
        ss.runner.find_engine_python("")
    except Exception:
        pytest.skip("no engine environment (.venv) for the worker")
    path, scene = room_ply
    worker = sb.bridge.call_engine("read", mode="worker", path=str(path))
    here = sb.bridge.call_engine("read", mode="inprocess", path=str(path))
    assert worker["count"] == here["count"] == len(scene.splats)
    for k in sb.engine.SPLAT_FIELDS:
        np.testing.assert_array_equal(worker[k], here[k])
    with pytest.raises(ss.errors.BridgeError, match="no such|not found|cannot open"):
        sb.bridge.call_engine("read", mode="worker", path=str(path) + ".missing")


def test_worker_process_casts_rays_and_builds_rooms_like_the_engine_here(sb, room_ply, ss):
    try:
        ss.runner.find_engine_python("")
    except Exception:
        pytest.skip("no engine environment (.venv) for the worker")
    obj, m = _transformed_room(room_ply)
    o, d = m[:3, 3] + m[:3, :3] @ [0.0, 0.3, 1.5], m[:3, :3] @ [1.0, 0.1, 0.05]
    here = sb.bridge.raycast_splats(obj, o, d, mode="inprocess")
    there = sb.bridge.raycast_splats(obj, o, d, mode="worker")
    assert there["index"] == here["index"]
    np.testing.assert_allclose(there["point"], here["point"], atol=1e-9)
    corners = [[0, 0, 0.2], [4, 0, 0.2], [4, 2, 0.2], [2, 2, 0.2], [2, 5, 0.2], [0, 5, 0.2]]
    args = {"corners": corners, "height": 2.5}
    assert sb.bridge.call_engine("corners", mode="worker", **args) == \
        sb.bridge.call_engine("corners", mode="inprocess", **args)
    with pytest.raises(ss.errors.BridgeError, match="crosses itself"):
        sb.bridge.call_engine("corners", mode="worker", corners=[[0, 0], [1, 1], [1, 0], [0, 1]], floor=0.0,
                              height=2.0)


# --------------------------------------------------------------------------- ray casting
def _transformed_room(room_ply, yaw_deg=30.0, scale=2.0, offset=(10.0, -4.0, 1.0)):
    path, scene = room_ply
    obj = _import(path)
    obj.rotation_euler = (0.0, 0.0, math.radians(yaw_deg))
    obj.scale = scale if isinstance(scale, tuple) else (scale,) * 3
    obj.location = offset
    bpy.context.view_layer.update()
    return obj, np.array(obj.matrix_world)


def test_raycast_hits_the_transformed_wall_and_caches_the_index(sb, tmp_path):
    # Walls turned 25 degrees inside the capture and a non-uniform object scale: the world normal
    # then differs from the naively transformed one, and the distance is stretched unevenly.
    scene = splats_engine.make_synthetic_room(density=100, yaw_deg=25.0, outlier_fraction=0.0, seed=2)
    splats_engine.write_ply(tmp_path / "yawed.ply", scene.splats)
    obj, m = _transformed_room((tmp_path / "yawed.ply", scene), scale=(2.0, 1.0, 1.5))
    yaw = scene.rotation  # capture-from-room rotation
    o_local = yaw @ [0.0, 0.3, 1.5]
    d_local = yaw @ [1.0, 0.1, 0.05]
    o_world = m[:3, :3] @ o_local + m[:3, 3]
    d_world = m[:3, :3] @ d_local
    hit = sb.bridge.raycast_splats(obj, o_world, d_world)
    local = np.linalg.solve(m[:3, :3], hit["point"] - m[:3, 3])
    assert (yaw.T @ local)[0] == pytest.approx(3.0, abs=0.02)  # the room's wall x = 3
    # The wall's world normal from first principles: across two of its transformed tangents, facing the ray.
    wall_normal = np.cross(m[:3, :3] @ yaw[:, 1], m[:3, :3] @ yaw[:, 2])
    wall_normal *= -np.sign(wall_normal @ d_world) / np.linalg.norm(wall_normal)
    assert np.degrees(np.arccos(np.clip(hit["normal"] @ wall_normal, -1, 1))) < 5.0
    assert hit["distance"] == pytest.approx(np.linalg.norm(hit["point"] - o_world))
    # In world units: the local path to the wall, stretched by the object's matrix.
    t_local = (3.0 - (yaw.T @ o_local)[0]) / (yaw.T @ d_local)[0]
    assert hit["distance"] == pytest.approx(np.linalg.norm(m[:3, :3] @ (t_local * d_local)), abs=0.05)
    first = sb.bridge._RAYCASTERS[obj.name][1]
    sb.bridge.raycast_splats(obj, o_world, d_world)
    assert sb.bridge._RAYCASTERS[obj.name][1] is first  # same data: the index is reused
    # Delete the wall's splats: the edit changes the hash, the index is rebuilt, the ray goes out.
    import bmesh

    bm = bmesh.new()
    bm.from_mesh(obj.data)
    wall = yaw[:, 0]
    bmesh.ops.delete(bm, geom=[v for v in bm.verts if np.dot(v.co, wall) > 2.9], context="VERTS")
    bm.to_mesh(obj.data)
    bm.free()
    again = sb.bridge.raycast_splats(obj, o_world, d_world)
    assert sb.bridge._RAYCASTERS[obj.name][1] is not first
    assert again is None or again["distance"] > hit["distance"] + 0.02


def test_place_source_on_splats_puts_a_speaker_in_front_of_the_wall(sb, room_ply):
    obj, m = _transformed_room(room_ply, yaw_deg=0.0, scale=1.0, offset=(0.0, 0.0, 0.0))
    assert bpy.ops.soundstage.place_source_on_splats(origin=(0.0, 0.0, 1.7), direction=(0.0, 1.0, 0.0)) \
        == {"FINISHED"}
    spk = bpy.context.active_object
    assert spk.type == "SPEAKER"
    # The +y wall is at y = 2.5: the speaker stands 5 cm in front of it.
    assert tuple(spk.location) == pytest.approx((0.0, 2.45, 1.7), abs=0.02)
    assert spk.animation_data is not None  # the NLA sound strip Blender makes for speakers
    with pytest.raises(RuntimeError, match="hit no splat"):
        bpy.ops.soundstage.place_source_on_splats(origin=(0.0, 0.0, 50.0), direction=(0.0, 0.0, 1.0))
    assert bpy.ops.soundstage.place_source_on_splats(origin=(0.0, 0.0, 1.7), direction=(-1.0, 0.0, 0.0),
                                                     move_active=True) == {"FINISHED"}
    assert tuple(spk.location) == pytest.approx((-2.95, 0.0, 1.7), abs=0.02)
    assert sum(o.type == "SPEAKER" for o in bpy.data.objects) == 1


def test_place_source_modal_waits_for_a_click_and_escape_cancels(sb):
    op = types.SimpleNamespace()
    for name in ("modal", "_done"):
        setattr(op, name, getattr(sb.addon.SOUNDSTAGE_OT_place_source_on_splats, name).__get__(op))
    status = []
    ctx = types.SimpleNamespace(workspace=types.SimpleNamespace(status_text_set=status.append))
    move = types.SimpleNamespace(type="MOUSEMOVE", value="NOTHING")
    esc = types.SimpleNamespace(type="ESC", value="PRESS")
    assert op.modal(ctx, move) == {"PASS_THROUGH"}
    assert op.modal(ctx, esc) == {"CANCELLED"} and status == [None]


def test_click_in_the_viewport_casts_the_ray_through_the_pixel(sb):
    """The ray under the mouse passes through the world point Blender projects to that pixel."""
    from bpy_extras.view3d_utils import location_3d_to_region_2d
    from mathutils import Matrix, Vector

    eye, target = np.array([1.0, -6.0, 2.0]), np.array([0.5, 1.0, 1.2])
    cam = _look(eye, np.array([0.0, 0.0, 1.5]))
    view = Matrix(np.linalg.inv(cam).tolist())
    w, h, f, near, far = 800, 600, 1.2, 0.1, 100.0  # OpenGL-style perspective
    proj = Matrix(((f * h / w, 0, 0, 0), (0, f, 0, 0), (0, 0, -(far + near) / (far - near),
                   -2 * far * near / (far - near)), (0, 0, -1, 0)))
    rv3d = types.SimpleNamespace(is_perspective=True, view_matrix=view, perspective_matrix=proj @ view,
                                 view_perspective="PERSP")
    window = types.SimpleNamespace(type="WINDOW", x=100, y=50, width=w, height=h, data=rv3d)
    sidebar = types.SimpleNamespace(type="UI", x=100 + w - 200, y=50, width=200, height=h, data=None)
    area = types.SimpleNamespace(type="VIEW_3D", regions=[window, sidebar])
    ctx = types.SimpleNamespace(window=types.SimpleNamespace(screen=types.SimpleNamespace(areas=[area])),
                                workspace=None)
    px = location_3d_to_region_2d(window, rv3d, Vector(target.tolist()))
    click = types.SimpleNamespace(type="LEFTMOUSE", value="PRESS", mouse_x=int(round(px.x)) + 100,
                                  mouse_y=int(round(px.y)) + 50)
    origin, direction = sb.modal.view_ray(ctx, click)
    o, d = np.array(origin), np.array(direction)
    miss = np.linalg.norm(np.cross(target - o, d)) / np.linalg.norm(d)
    assert np.allclose(o, eye) and miss < 0.02 and (target - o) @ d > 0  # within the pixel's rounding
    # The modal operator casts that ray; a click on the sidebar (over the view) is not a click on the splats.
    op = types.SimpleNamespace(origin=None, direction=None)
    op.execute = lambda context: {"FINISHED"}
    for name in ("modal", "_done"):
        setattr(op, name, getattr(sb.addon.SOUNDSTAGE_OT_place_source_on_splats, name).__get__(op))
    on_sidebar = types.SimpleNamespace(type="LEFTMOUSE", value="PRESS", mouse_x=100 + w - 50, mouse_y=300)
    assert sb.modal.view_ray(ctx, on_sidebar) is None
    assert op.modal(ctx, on_sidebar) == {"RUNNING_MODAL"} and op.direction is None
    assert op.modal(ctx, click) == {"FINISHED"} and np.allclose(op.direction, direction)


# --------------------------------------------------------------------------- rooms
def test_room_from_splats_matches_the_synthetic_room_in_world_space(sb, ss, room_ply):
    obj, m = _transformed_room(room_ply, yaw_deg=30.0, scale=1.0, offset=(10.0, -4.0, 1.0))
    assert bpy.ops.soundstage.splat_room() == {"FINISHED"}
    room = bpy.context.active_object
    assert room.soundstage.acoustic and room.display_type == "WIRE"
    assert len(room.data.polygons) == 6 and all(len(p.vertices) == 4 for p in room.data.polygons)
    job_room = _export_mesh(ss, room)
    verts = np.asarray(job_room["vertices"])
    # Back in the capture's frame the box is the synthetic room's (x -3..3, y -2.5..2.5, z 0..3).
    local = (verts - m[:3, 3]) @ np.linalg.inv(m[:3, :3]).T
    np.testing.assert_allclose(local.min(0), [-3.0, -2.5, 0.0], atol=0.03)
    np.testing.assert_allclose(local.max(0), [3.0, 2.5, 3.0], atol=0.03)
    assert _volume(verts, job_room["faces"]) == pytest.approx(90.0, rel=0.01)  # outward normals
    # Materials: the library materials the engine guessed, set on Blender materials the panel edits.
    info = json.loads(room[sb.bridge.ROOM_PROP])
    by_surface = {mat.name.rsplit(" ", 1)[-1].lower(): mat for mat in room.data.materials}
    assert set(by_surface) == {"floor", "ceiling", "walls"}
    for surface, mat in by_surface.items():
        assert mat.soundstage.mode == "LIBRARY" and mat.soundstage.library_name == info["materials"][surface]
        assert ss.export.material_spec(mat)[0] == info["materials"][surface]
    lib = ss.materials.load_library()
    assert all(name in lib for name in job_room["materials"])
    # Editing a material in the panel changes what is exported.
    by_surface["floor"].soundstage.library_name = "carpet_cotton"
    assert "carpet_cotton" in _export_mesh(ss, room)["materials"]


@pytest.mark.parametrize("shape", ["plane", "box", "l_loop"])
def test_room_from_outline(sb, ss, shape):
    if shape == "plane":
        bpy.ops.mesh.primitive_plane_add(size=1.0, location=(1.0, 2.0, 0.5))
        drawn = bpy.context.active_object
        drawn.scale = (4.0, 3.0, 1.0)
        expected, top = 4.0 * 3.0 * 2.7, 0.5 + 2.7
    elif shape == "box":
        bpy.ops.mesh.primitive_cube_add(size=1.0, location=(0.0, 0.0, 1.5))
        drawn = bpy.context.active_object
        drawn.scale = (6.0, 5.0, 3.0)
        drawn.rotation_euler = (0.0, 0.0, math.radians(20))  # rotated: a mesh room, not a shoebox
        expected, top = 90.0, 3.0
    else:  # an L-shaped floor drawn as a closed edge loop (no face)
        xy = [(0, 0), (4, 0), (4, 2), (2, 2), (2, 5), (0, 5)]
        mesh = bpy.data.meshes.new("L")
        mesh.from_pydata([(x, y, 0.0) for x, y in xy], [(i, (i + 1) % 6) for i in range(6)], [])
        drawn = bpy.data.objects.new("L", mesh)
        bpy.context.scene.collection.objects.link(drawn)
        bpy.context.view_layer.objects.active = drawn
        expected, top = (4 * 2 + 2 * 3) * 2.7, 2.7
    assert bpy.ops.soundstage.room_from_outline(height=2.7) == {"FINISHED"}
    room = bpy.context.active_object
    assert room is not drawn and room.soundstage.acoustic and not drawn.visible_get()
    job_room = _export_mesh(ss, room)
    verts = np.asarray(job_room["vertices"])
    assert _volume(verts, job_room["faces"]) == pytest.approx(expected, rel=1e-4)
    assert verts[:, 2].max() == pytest.approx(top, abs=1e-4)


def test_room_from_outline_errors(sb):
    mesh = bpy.data.meshes.new("wall")
    mesh.from_pydata([(0, 0, 0), (1, 0, 0), (1, 0, 1), (0, 0, 1)], [], [(0, 1, 2, 3)])  # vertical
    obj = bpy.data.objects.new("wall", mesh)
    bpy.context.scene.collection.objects.link(obj)
    bpy.context.view_layer.objects.active = obj
    with pytest.raises(RuntimeError, match="no horizontal face"):
        bpy.ops.soundstage.room_from_outline()
    with pytest.raises(RuntimeError, match="select a splat object"):
        bpy.ops.soundstage.splat_room()


# --------------------------------------------------------------------------- camera paths
def _look(eye, target):
    """Blender camera matrix looking from eye to target, Z up (first principles)."""
    f = np.asarray(target, float) - eye
    f /= np.linalg.norm(f)
    r = np.cross(f, (0, 0, 1))
    r /= np.linalg.norm(r)
    u = np.cross(r, f)
    m = np.eye(4)
    m[:3, 0], m[:3, 1], m[:3, 2], m[:3, 3] = r, u, -f, eye
    return m


def test_nerfstudio_camera_path_becomes_an_animated_listener(sb, tmp_path):
    times = [0.0, 0.5, 1.0, 2.0]
    mats = [_look(np.array([t, -1.0, 1.6]), np.array([t + 0.5, 3.0, 1.2 + 0.2 * t])) for t in times]
    entries = [{"file_path": f"frames/{t}.png", "camera_to_world": m.reshape(-1).tolist()}
               for t, m in zip(times, mats)]
    doc = {"camera_path": entries, "render_width": 1920, "render_height": 1080}
    for e in entries:
        e["fl_x"] = 1600.0
    path = tmp_path / "transforms_scale_train.json"
    path.write_text(json.dumps(doc))
    scene = bpy.context.scene
    scene.render.fps, scene.render.fps_base, scene.frame_start = 24, 1.0, 1
    assert bpy.ops.soundstage.import_camera_path(filepath=str(path)) == {"FINISHED"}
    cam = bpy.context.active_object
    assert cam.type == "CAMERA" and cam.soundstage.listener
    assert cam.data.lens == pytest.approx(1600 / 1920 * 36) and cam.data.sensor_fit == "HORIZONTAL"
    frames = [1 + round(t * 24) for t in times]  # times in the file names set the frames
    assert scene.frame_end == frames[-1]
    for f, m in zip(frames, mats):
        scene.frame_set(f)
        np.testing.assert_allclose(np.array(cam.matrix_world), m, atol=1e-5)
    scene.frame_set(7)  # between keys: interpolated, not held
    x = cam.matrix_world.translation.x
    assert 0.0 < x < 0.5
    assert sb.bridge.is_splat_object(cam) is False


def test_colmap_path_parented_to_a_transformed_splat_object(sb, tmp_path, room_ply):
    from scipy.spatial.transform import Rotation

    eyes = np.array([[0.0, 0.0, 1.5], [0.5, 0.2, 1.5], [1.0, 0.3, 1.6]])
    target = np.array([0.0, 3.0, 1.5])
    lines = []
    for i, eye in enumerate(eyes):
        b = _look(eye, target)
        rot = np.vstack([b[:3, 0], -b[:3, 1], -b[:3, 2]])  # COLMAP rows: camera +X right, +Y down, +Z forward
        t = -rot @ eye
        xyzw = Rotation.from_matrix(rot).as_quat()
        lines += [f"{i + 1} {xyzw[3]!r} {xyzw[0]!r} {xyzw[1]!r} {xyzw[2]!r} {t[0]!r} {t[1]!r} {t[2]!r} 1 "
                  f"frame_{i + 1}.png", ""]
    model = tmp_path / "sparse" / "0"
    model.mkdir(parents=True)
    (model / "images.txt").write_text("\n".join(lines) + "\n")
    (model / "cameras.txt").write_text("1 PINHOLE 1000 750 800 800 500 375\n")
    obj, m = _transformed_room(room_ply, yaw_deg=90.0, scale=1.0, offset=(1.0, 2.0, 0.0))
    assert bpy.ops.soundstage.import_camera_path(filepath=str(tmp_path)) == {"FINISHED"}
    cam = bpy.context.active_object
    assert cam.parent == obj
    scene = bpy.context.scene
    for i, eye in enumerate(eyes):
        scene.frame_set(scene.frame_start + i)
        world = np.array(cam.matrix_world)
        np.testing.assert_allclose(world[:3, 3], m[:3, :3] @ eye + m[:3, 3], atol=1e-5)
        look = -world[:3, 2]
        want = m[:3, :3] @ (target - eye)
        assert look @ want / np.linalg.norm(want) == pytest.approx(1.0, abs=1e-6)
    assert cam.data.lens == pytest.approx(800 / 1000 * 36)
    with pytest.raises(RuntimeError, match="not found"):
        bpy.ops.soundstage.import_camera_path(filepath=str(tmp_path / "nothing.json"))


# --------------------------------------------------------------------------- bake
def test_bake_in_a_room_fitted_to_splats(sb, ss, ss_scene, room_ply):
    pytest.importorskip("soundstage.bake")
    sf = pytest.importorskip("soundfile")
    scene, cam, spk = ss_scene(frames=12)
    cam.location = (0.0, -1.0, 1.5)
    spk.location = (0.5, 1.5, 1.2)
    scene.soundstage.reflection_order = 1
    path, _ = room_ply
    _import(path)
    assert bpy.ops.soundstage.splat_room() == {"FINISHED"}
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        scene.soundstage.output_dir = str(Path(tmp) / "room")
        assert bpy.ops.soundstage.bake() == {"FINISHED"}  # the Bake button, as a script runs it
        room_track, rate = sf.read(str(Path(tmp) / "room" / "Scene_Camera_binaural.wav"))
        scene.soundstage.use_room = False
        free = ss.pipeline.bake_scene(scene, out_dir=Path(tmp) / "free")
        free_track, _ = sf.read(str(free.tracks[0].final))
    assert room_track.shape == free_track.shape == (24000, 2) and rate == 48000
    assert np.all(np.isfinite(room_track))
    # Same source, same path: walls only add reflected energy (3 dB is far below what a
    # plastered 6 x 5 x 3 m room adds, and far above the level noise of identical direct sound).
    gain_db = 10 * math.log10(np.sum(room_track ** 2) / np.sum(free_track ** 2))
    assert gain_db > 3.0


# --------------------------------------------------------------------------- panel


def _draw(sb, obj):
    log = []
    ctx = types.SimpleNamespace(scene=bpy.context.scene, active_object=obj)
    sb.addon.VIEW3D_PT_soundstage_splats.draw(types.SimpleNamespace(layout=Recorder(log, prop_text=True)), ctx)
    return log


def test_panel_draws_for_splats_outlines_and_nothing(sb, room_ply):
    assert ("operator", "soundstage.import_splats") in _draw(sb, None)
    obj = _import(room_ply[0])
    log = _draw(sb, obj)
    for op in ("soundstage.splat_room", "soundstage.place_source_on_splats", "soundstage.import_camera_path"):
        assert ("operator", op) in log
    assert ("prop", "Point Scale") in log and ("prop", "Display Fraction") in log
    bpy.ops.mesh.primitive_plane_add()
    assert ("operator", "soundstage.room_from_outline") in _draw(sb, bpy.context.active_object)
