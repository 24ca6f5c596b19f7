"""Impact sounds in Blender: the click tool, the preview, bakes with impact points, Locate Hit.

Oracles: geometry (the ray meets a known face of a known box: point and
normal); the modal physics of a scaled box (the engine's analysis of a box of
the *world* size, built independently with trimesh, gives the same first mode:
a transform that lost the object's scale would be off by its factor); the
propagation delay ``(frame - frame_start) / fps + distance / c`` and a source on
the left being louder in the left ear (DESIGN.md); and Locate's ranking of
three objects of different materials for a hit rendered on one of them.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import types
from pathlib import Path

import numpy as np
import pytest

bpy = pytest.importorskip("bpy")

from uikit import Recorder  # noqa: E402

pytest.importorskip("soundstage.impact")
sf = pytest.importorskip("soundfile")
trimesh = pytest.importorskip("trimesh")
pytestmark = pytest.mark.bpy

REPO = Path(__file__).resolve().parents[1]
BUDGET = 300  # modal cells: small models keep every test well under a second of analysis
FPS = 24
C = 343.0


@pytest.fixture(scope="module", autouse=True)
def _modal_cache(tmp_path_factory):
    """Modal models (and the bake cache) in a fresh folder: the tests compute what they use."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("SOUNDSTAGE_CACHE_DIR", str(tmp_path_factory.mktemp("impact-cache")))
        yield


@pytest.fixture(autouse=True)
def _reset(ss_ext):
    bpy.ops.wm.read_homefile(app_template="")


@pytest.fixture(scope="module")
def bi(ss_ext):
    """``bridge.impacts``, ``addon.impacts`` and ``bridge.impact_engine`` of the registered extension."""
    import importlib

    return types.SimpleNamespace(bridge=importlib.import_module(f"{ss_ext.__name__}.bridge.impacts"),
                                 addon=importlib.import_module(f"{ss_ext.__name__}.addon.impacts"),
                                 engine=importlib.import_module(f"{ss_ext.__name__}.bridge.impact_engine"),
                                 splats=importlib.import_module(f"{ss_ext.__name__}.bridge.splats"))


def _stage(frames=24, preview_spatial=True):
    """The home file's camera at the origin looking along +Y (right ear +X), nothing else."""
    scene = bpy.context.scene
    for o in list(scene.objects):
        if o.type != "CAMERA":
            bpy.data.objects.remove(o)
    scene.render.fps, scene.render.fps_base = FPS, 1.0
    scene.frame_start, scene.frame_end = 1, frames
    scene.frame_set(1)
    cam = scene.camera
    cam.location = (0.0, 0.0, 0.0)
    cam.rotation_euler = (math.pi / 2, 0.0, 0.0)
    s = scene.soundstage_impacts
    s.budget, s.preview_spatial, s.preview_play = BUDGET, preview_spatial, False
    return scene, cam


def _box(name, size, location, material=None, metallic=0.0, roughness=0.5, color=(0.8, 0.8, 0.8)):
    """A box mesh object (default cube scaled to ``size`` = (x, y, z) metres) with an optional material."""
    bpy.ops.mesh.primitive_cube_add(size=1.0, location=location)
    obj = bpy.context.active_object
    obj.name = name
    obj.scale = size
    if material is not None:
        mat = bpy.data.materials.new(material)
        if mat.node_tree is None:  # Blender 4.x; 5.x materials always have nodes
            mat.use_nodes = True
        bsdf = next(n for n in mat.node_tree.nodes if n.type == "BSDF_PRINCIPLED")
        bsdf.inputs["Metallic"].default_value = metallic
        bsdf.inputs["Roughness"].default_value = roughness
        bsdf.inputs["Base Color"].default_value = (*color, 1.0)
        obj.data.materials.append(mat)
    bpy.context.view_layer.update()
    return obj


def _click(origin, direction, **kw):
    kw.setdefault("wait", True)
    assert bpy.ops.soundstage.impact_click(origin=origin, direction=direction, **kw) == {"FINISHED"}
    return bpy.context.active_object


def _onset(x, fraction=0.05):
    """First sample where the louder channel reaches ``fraction`` of its peak."""
    env = np.abs(x).max(axis=1)
    return int(np.argmax(env >= fraction * env.max()))


def _impacts():
    return [o for o in bpy.data.objects if o.type == "EMPTY" and o.soundstage_impact.is_impact]


# --------------------------------------------------------------------------- registration
def test_operators_panel_and_defaults(bi):
    for name in ("impact_click", "preview_impact", "select_impact", "locate_hit"):
        assert hasattr(bpy.ops.soundstage, name)
    assert bpy.types.VIEW3D_PT_soundstage_impacts.bl_parent_id == "VIEW3D_PT_soundstage"
    # The raw reader (headless runs, where only addon.properties is registered) fills
    # unset values from IMPACT_DEFAULTS: they must be the property group's defaults.
    props = bi.addon.SoundstageImpactSettings.bl_rna.properties
    for k, v in bi.bridge.IMPACT_DEFAULTS.items():
        if k != "target":
            assert props[k].default == pytest.approx(v) if isinstance(v, float) else props[k].default == v, k
    sprops = bi.addon.SoundstageImpactSceneSettings.bl_rna.properties
    for k, v in bi.bridge.SCENE_DEFAULTS.items():
        assert sprops[k].default == v, k
    # The add-on's table is the engine's, and its file-loaded guesser is the engine's.
    from soundstage.impact import guess_material, material_names

    assert list(bi.bridge.MATERIAL_NAMES) == material_names()
    assert set(bi.bridge._guess.KEYWORDS.values()) == set(material_names())
    for args in (("Oak_Planks.001",), (None, 1.0, 0.3, 0.0, (0.9, 0.6, 0.2)), (None, 0.0, 0.1, 0.9)):
        assert bi.bridge.guess_material(*args) == guess_material(*args)


# --------------------------------------------------------------------------- click
def test_click_keys_an_impact_on_the_face_and_previews_it_from_the_left(bi):
    scene, cam = _stage()
    scene.frame_set(7)
    cube = _box("Block", (0.3, 0.3, 0.3), (-2.0, 1.0, 0.0), material="Brushed Steel")
    e = _click((0.0, 1.05, 0.02), (-1.0, 0.0, 0.0), force=35.0)
    s = e.soundstage_impact
    # The ray meets the box's +x face at x = -2 + 0.15; the arrow points back out (+x).
    assert tuple(e.matrix_world.translation) == pytest.approx((-1.85, 1.05, 0.02), abs=1e-5)
    assert tuple(e.matrix_world.col[2][:3]) == pytest.approx((1.0, 0.0, 0.0), abs=1e-6)
    assert s.is_impact and s.target == cube and e.parent == cube and s.force == pytest.approx(35.0)
    assert s.frame == 7 and bi.bridge.hit_frames(e) == [7]
    assert bi.bridge.impact_material(e)[0] == "steel"  # "Brushed Steel": a name keyword
    assert e.users_collection[0].name == bi.bridge.COLLECTION
    # Preview files: mono pressure at 1 m and the binaural preview from the camera.
    mono, rate = sf.read(str(bi.bridge.PREVIEW_DIR / "Impact.Block.wav"))
    binaural, _ = sf.read(str(bi.bridge.PREVIEW_DIR / "Impact.Block_binaural.wav"))
    assert rate == 48000 and mono.ndim == 1 and np.abs(mono).max() > 0
    rms = np.sqrt(np.mean(binaural**2, axis=0))
    assert rms[0] > 2 * rms[1]  # the block is on the camera's left
    assert "steel" in scene.soundstage_impacts.last_preview
    # The modes are those of a 0.3 m box (its scale is kept): an independent analysis of
    # a trimesh box of the world size gives the same first mode.
    from soundstage.impact import modal_model

    ref = modal_model(trimesh.creation.box((0.3, 0.3, 0.3)), "steel", budget=BUDGET)
    got = json.loads(json.dumps(bi.bridge.preview_task(e, scene, spatial=False).wait()["hits"][0]))
    assert got["f1_hz"] == pytest.approx(ref.frequencies[0], rel=0.02)


def test_click_on_nothing_adds_nothing(bi):
    _stage()
    _box("Block", (0.3, 0.3, 0.3), (-2.0, 1.0, 0.0))
    before = set(bpy.data.objects.keys())
    with pytest.raises(RuntimeError, match="hit no object"):
        bpy.ops.soundstage.impact_click(origin=(0.0, 0.0, 0.0), direction=(0.0, 0.0, 1.0), wait=True)
    with pytest.raises(RuntimeError, match="no ray"):
        bpy.ops.soundstage.impact_click(wait=True)
    assert set(bpy.data.objects.keys()) == before and not _impacts()


def test_object_without_material_shows_its_guess(bi):
    _stage(preview_spatial=False)
    glass = _box("WineGlass", (0.08, 0.08, 0.2), (0.0, 2.0, 0.0))
    block = _box("Block", (0.2, 0.2, 0.2), (0.5, 2.0, 0.0))
    name, reason = bi.bridge.object_material(glass)
    assert name == "glass" and "no material" in reason and "WineGlass" in reason
    name, reason = bi.bridge.object_material(block)
    assert "no material" in reason and "weak default" in reason  # shown, so the user can fix it
    e = _click((0.5, 0.0, 0.0), (0.0, 1.0, 0.0))
    assert e.soundstage_impact.target == block
    assert "no material" in bi.bridge.impact_material(e)[1]
    # Choosing a material overrides the guess, on the object or on the impact itself.
    block.soundstage_impact.material = "wood"
    assert bi.bridge.impact_material(e) == ("wood", "from 'Block': chosen")
    e.soundstage_impact.material = "brass"
    assert bi.bridge.impact_material(e)[0] == "brass"
    log = _draw(bi, block)
    assert any(kind == "label" and "wood" in text for kind, text in log)


def test_open_mesh_is_modelled_as_a_shell_and_says_so(bi, ss, tmp_path):
    scene, _ = _stage(preview_spatial=False)
    bpy.ops.mesh.primitive_plane_add(size=0.4, location=(0.0, 2.0, 0.0), rotation=(math.pi / 2, 0.0, 0.0))
    plate = bpy.context.active_object
    plate.name = "SteelSheet"
    e = _click((0.05, 0.0, 0.05), (0.0, 1.0, 0.0))
    assert "shell" in e.soundstage_impact.notes  # the engine's note reaches the impact (and the report)
    session = ss.pipeline.bake_scene(scene, out_dir=tmp_path, mode="inprocess")
    assert any(w.startswith(f"impact '{e.name}'") and "shell" in w for w in session.warnings)


def test_missing_target_is_a_one_line_error_naming_the_impact(bi, ss, tmp_path):
    scene, _ = _stage()
    cube = _box("Block", (0.3, 0.3, 0.3), (-2.0, 1.0, 0.0))
    e = _click((0.0, 1.0, 0.0), (-1.0, 0.0, 0.0), preview=False)
    bpy.data.objects.remove(cube)
    with pytest.raises(ss.errors.BridgeError, match=r"^impact 'Impact\.Block' has no target object") as err:
        ss.pipeline.bake_scene(scene, out_dir=tmp_path, mode="inprocess")
    assert "\n" not in str(err.value)
    assert not list(tmp_path.glob("*.wav"))  # nothing half-written
    assert any("no target" in text for kind, text in _draw(bi, e))


# --------------------------------------------------------------------------- bakes
def test_bake_puts_the_hit_at_its_frame_on_the_left_and_retiming_moves_it(bi, ss, tmp_path):
    scene, cam = _stage(frames=24)
    scene.frame_set(5)
    _box("SteelCube", (0.3, 0.3, 0.3), (-2.0, 1.0, 0.0), material="Steel")
    e = _click((0.0, 1.0, 0.0), (-1.0, 0.0, 0.0), preview=False)
    dist = float(np.linalg.norm(np.array(e.matrix_world.translation)))

    def bake(name):
        session = ss.pipeline.bake_scene(scene, out_dir=tmp_path / name, mode="inprocess")
        x, rate = sf.read(str(session.tracks[0].final))
        return x, rate

    x, rate = bake("a")
    assert x.shape == (48000, 2)
    expected = (5 - 1) / FPS + dist / C
    assert abs(_onset(x) / rate - expected) < 1 / FPS
    assert np.all(np.abs(x[: int((expected - 0.01) * rate)]) < 1e-6 * np.abs(x).max())  # silence before
    rms = np.sqrt(np.mean(x**2, axis=0))
    assert rms[0] > 2 * rms[1]  # left ear louder: the cube is on the camera's left
    # Re-timed with the Frame field: the keys move and the onset with them.
    e.soundstage_impact.frame = 15
    assert bi.bridge.hit_frames(e) == [15]
    y, _ = bake("b")
    assert (_onset(y) - _onset(x)) / rate == pytest.approx(10 / FPS, abs=1 / FPS)
    # Re-timed in the Dope Sheet: dragging the key is the same thing.
    fc = bi.bridge._hit_curve(e)
    fc.keyframe_points[0].co[0] = 11
    fc.update()
    assert e.soundstage_impact.frame == 11


def test_bake_synthesises_hits_off_the_main_thread_and_escape_stops_it(bi, ss, tmp_path):
    """prepare() (main thread) only gathers the hits; start()/poll() synthesise them; Esc cancels."""
    scene, _ = _stage(frames=12, preview_spatial=False)
    _box("SteelCube", (0.3, 0.3, 0.3), (-2.0, 1.0, 0.0), material="Steel")
    _click((0.0, 1.0, 0.0), (-1.0, 0.0, 0.0), preview=False)
    session = ss.pipeline.BakeSession(scene, out_dir=tmp_path / "a", mode="inprocess")
    session.prepare()
    hits = list(session.staging.rglob("*.wav"))
    assert session._impacts is not None and session._impacts.count == 1 and not hits  # nothing synthesised yet
    tracks = session.run()
    assert tracks[0].final.is_file()
    x, _ = sf.read(str(tracks[0].final))
    assert np.abs(x).max() > 0  # the hit synthesised during start()/poll() is heard
    # Esc while synthesising: the session ends cancelled and writes no track.
    try:
        ss.runner.find_engine_python("")
    except ss.errors.BridgeError:
        return
    e2 = _box("WoodBlock", (0.3, 0.3, 0.3), (2.0, 1.0, 0.0), material="Wood")
    _click((0.0, 1.0, 0.0), (1.0, 0.0, 0.0), preview=False)
    session = ss.pipeline.BakeSession(scene, out_dir=tmp_path / "b", mode="worker")
    session.prepare()
    session.start()  # returns at once: the worker synthesises
    assert session.state == "running" and "impact" in session.message
    session.cancel()
    import time

    deadline = time.monotonic() + 30
    while session.poll() == "running" and time.monotonic() < deadline:
        time.sleep(0.02)
    assert session.state == "cancelled", (session.state, session.error, e2.name)
    with pytest.raises(ss.errors.BakeCancelled):
        session.finish()
    assert not list((tmp_path / "b").glob("*.wav"))


def test_moving_duplicated_and_multi_keyed_impacts_become_sources(bi, ss):
    scene, _ = _stage(frames=12, preview_spatial=False)
    cube = _box("Pan", (0.3, 0.3, 0.05), (0.0, 2.0, 0.0), material="Steel Pan")
    e = _click((0.02, 2.01, 1.0), (0.0, 0.0, -1.0), preview=False)
    # The pan moves 1 m along +x over the shot: the parented impact point goes with it.
    for f, x in ((1, 0.0), (12, 1.0)):
        cube.location.x = x
        cube.keyframe_insert("location", index=0, frame=f)
    bpy.ops.object.select_all(action="DESELECT")
    e.select_set(True)
    bpy.context.view_layer.objects.active = e
    bpy.ops.object.duplicate()
    dup = bpy.context.active_object
    assert dup is not e and bi.bridge.is_impact(dup)
    dup.soundstage_impact.frame = 4
    bi.bridge.key_hit(e, 9)  # a second hit of the same point
    ex = ss.export.export_scene(scene, frames=(1, 12), engine=("inprocess", ""))
    src = {s["name"]: s for s in ex.jobs[0].job["sources"]}
    assert set(src) == {e.name, f"{e.name}@9", dup.name}
    assert src[e.name]["start_frame"] == 1 and src[f"{e.name}@9"]["start_frame"] == 9
    assert src[dup.name]["start_frame"] == 4
    track = np.asarray(src[e.name]["position"])
    assert track.shape == (12, 3)
    assert track[0] == pytest.approx((0.02, 2.01, 0.025), abs=1e-4)
    assert track[-1] == pytest.approx((1.02, 2.01, 0.025), abs=1e-4)
    a, _ = sf.read(src[e.name]["audio"])
    b, _ = sf.read(src[f"{e.name}@9"]["audio"])
    assert len(b) < len(a)  # the later hit only needs to ring until the range's end
    assert not np.allclose(a[: len(b)], b)  # a different seed: not a copy


def test_raw_settings_match_registered_ones(bi):
    """Headless bakes register only addon.properties: the stored values must read the same."""
    _stage()
    cube = _box("Block", (0.3, 0.3, 0.3), (-2.0, 1.0, 0.0))
    e = _click((0.0, 1.0, 0.0), (-1.0, 0.0, 0.0), preview=False, force=12.5)
    e.soundstage_impact.material = "glass"
    e.soundstage_impact.gain_db = -3.0
    raw = bi.bridge._raw_group(e, bi.bridge.OBJECT_PROP)
    rna = bi.bridge.impact_settings(e)
    for k in ("is_impact", "force", "material_name", "gain_db", "frame_value"):
        assert raw[k] == pytest.approx(rna[k]) if isinstance(rna[k], float) else raw[k] == rna[k], k
    assert raw["target"] == cube


def test_headless_bake_includes_impacts(bi, tmp_path):
    scene, _ = _stage(frames=12)
    scene.frame_set(3)
    _box("SteelCube", (0.3, 0.3, 0.3), (-2.0, 1.0, 0.0), material="Steel")
    e = _click((0.0, 1.0, 0.0), (-1.0, 0.0, 0.0), preview=False)
    dist = float(np.linalg.norm(np.array(e.matrix_world.translation)))
    blend = tmp_path / "hit.blend"
    bpy.ops.wm.save_as_mainfile(filepath=str(blend))
    env = dict(os.environ)
    r = subprocess.run([sys.executable, str(REPO / "headless" / "render.py"), str(blend), "--",
                        "--out", str(tmp_path / "out")], capture_output=True, text=True, timeout=300, cwd=REPO,
                       env=env)
    assert r.returncode == 0, r.stderr
    x, rate = sf.read(str(tmp_path / "out" / "Scene_Camera_binaural.wav"))
    assert abs(_onset(x) / rate - ((3 - 1) / FPS + dist / C)) < 1 / FPS


# --------------------------------------------------------------------------- locate
def test_locate_ranks_the_struck_object_first_and_paints_it_hottest(bi, tmp_path):
    scene, _ = _stage()
    objs = {"SteelBar": _box("SteelBar", (0.4, 0.04, 0.04), (-0.6, 2.0, 0.0), material="Steel", metallic=1.0),
            "OakBoard": _box("OakBoard", (0.5, 0.12, 0.02), (0.0, 2.0, 0.5), material="Oak"),
            "GlassBlock": _box("GlassBlock", (0.1, 0.1, 0.1), (0.6, 2.0, 0.0), material="Glass")}
    # Analysed as evaluated (subdivided), painted on its 8 base vertices.
    objs["GlassBlock"].modifiers.new("Subdivision", "SUBSURF").levels = 1
    # The recording: a hit on the oak board, rendered binaurally from the camera (preview path).
    e = _click((0.1, 0.0, 0.5), (0.0, 1.0, 0.0), force=15.0)
    e.soundstage_impact.seed = 7
    rec = bi.bridge.preview_task(e, scene).wait()["hits"][0]["preview"]["path"]
    bpy.data.objects.remove(e)
    assert bpy.ops.soundstage.locate_hit(filepath=rec) == {"FINISHED"}
    result = json.loads(scene.soundstage_impacts.locate_result)
    ranking = [o["name"] for o in result["objects"]]
    assert ranking[0] == "OakBoard" and set(ranking) == set(objs)
    assert result["objects"][0]["material"] == "wood"
    heat = {}
    for name, o in objs.items():
        attr = o.data.color_attributes[bi.bridge.HEAT_ATTRIBUTE]
        assert attr.domain == "POINT" and attr.data_type == "FLOAT_COLOR"
        rgba = np.empty(len(o.data.vertices) * 4, np.float32)
        attr.data.foreach_get("color", rgba)
        heat[name] = rgba.reshape(-1, 4)[:, 3].max()  # alpha carries the heat value
    assert max(heat, key=heat.get) == "OakBoard"
    log = _draw(bi, None)
    assert any(kind == "label" and text.startswith("1. OakBoard") for kind, text in log)


def test_locate_errors_are_one_line(bi, tmp_path):
    _stage()
    with pytest.raises(RuntimeError, match="no visible mesh"):
        bpy.ops.soundstage.locate_hit(filepath=str(tmp_path / "x.wav"))
    _box("Block", (0.3, 0.3, 0.3), (0.0, 2.0, 0.0))
    with pytest.raises(RuntimeError, match="not found"):
        bpy.ops.soundstage.locate_hit(filepath=str(tmp_path / "missing.wav"))


# --------------------------------------------------------------------------- splats, worker, UI
def test_click_on_splats_makes_an_impact_on_the_capture(bi):
    scene, _ = _stage(preview_spatial=False)
    rng = np.random.default_rng(0)
    # A 30 cm box of opaque gaussians (surface samples) 2 m ahead.
    n = 3000
    p = rng.uniform(-0.15, 0.15, (n, 3))
    axis = rng.integers(0, 3, n)
    p[np.arange(n), axis] = np.sign(rng.uniform(-1, 1, n)) * 0.15
    q = np.tile([1.0, 0.0, 0.0, 0.0], (n, 1))
    scales = np.full((n, 3), 0.01)
    scales[np.arange(n), axis] = 0.001  # flat gaussians lying on the faces, as a capture has them
    arrays = {"positions": p, "scales": scales, "rotations": q, "opacities": np.full(n, 0.95),
              "colors": np.tile([0.6, 0.6, 0.62], (n, 1))}
    obj = bi.splats.create_splat_object(arrays, "Capture", scene.collection)
    obj.location = (0.0, 2.0, 0.0)
    # A room proxy fitted around the capture (as Room from Splats makes) is looked through.
    room = _box("Capture Room", (1.0, 1.0, 1.0), (0.0, 2.0, 0.0))
    room[bi.splats.ROOM_PROP] = json.dumps({"notes": []})
    bpy.context.view_layer.update()
    e = _click((0.0, 0.0, 0.0), (0.0, 1.0, 0.0))
    assert e.soundstage_impact.target == obj
    assert e.matrix_world.translation.y == pytest.approx(1.85, abs=0.03)
    assert tuple(e.matrix_world.col[2][:3]) == pytest.approx((0.0, -1.0, 0.0), abs=0.05)  # facing the camera
    assert "convex hull" in e.soundstage_impact.notes
    assert "on 'Capture'" in scene.soundstage_impacts.last_preview


def test_worker_synthesises_the_same_hit_as_in_process(bi, ss):
    try:
        ss.runner.find_engine_python("")
    except ss.errors.BridgeError:
        pytest.skip("no engine environment (.venv) for the worker")
    scene, _ = _stage()
    _box("Block", (0.3, 0.3, 0.3), (-2.0, 1.0, 0.0), material="Steel")
    e = _click((0.0, 1.0, 0.0), (-1.0, 0.0, 0.0), preview=False)
    arrays = {}
    req = bi.bridge.hit_request(e, scene, bpy.context.evaluated_depsgraph_get(), 0, arrays, duration=0.3)
    kw = {"hits": [req], "budget": BUDGET}
    here = bi.bridge.call_engine("synth", arrays, mode="inprocess", **kw)
    there = bi.bridge.call_engine("synth", arrays, mode="worker", **kw)
    np.testing.assert_allclose(there["audio0"], here["audio0"], rtol=1e-5, atol=1e-9)
    with pytest.raises(ss.errors.BridgeError, match="impact 'Impact.Block' on 'Block'.*from the surface"):
        bad = dict(req, point=[-1.0, 1.0, 0.0])
        bi.bridge.call_engine("synth", arrays, mode="worker", hits=[bad], budget=BUDGET)
    # One worker serves every request (no start-up per click), survives a user error,
    # and a cancelled request (the worker is stopped) starts a new one.
    first = bi.bridge.server("")
    assert first.alive() and bi.bridge.call_engine("synth", arrays, mode="worker", **kw)["hits"][0]["modes"] > 0
    assert bi.bridge.server("") is first
    task = bi.bridge.EngineTask("synth", arrays, kw, mode="worker", background=True)
    task.cancel()
    with pytest.raises(ss.errors.BridgeError, match="cancelled"):
        task.wait()
    again = bi.bridge.call_engine("synth", arrays, mode="worker", **kw)
    assert bi.bridge.server("") is not first and again["hits"][0]["modes"] == here["hits"][0]["modes"]


def test_background_preview_is_played_by_the_timer(bi):
    scene, _ = _stage(preview_spatial=False)
    _box("Block", (0.3, 0.3, 0.3), (-2.0, 1.0, 0.0))
    e = _click((0.0, 1.0, 0.0), (-1.0, 0.0, 0.0), preview=False)
    op = types.SimpleNamespace(report=lambda *a: None)
    assert bi.addon.start_preview(op, bpy.context, e, wait=False)
    assert "synthesising" in scene.soundstage_impacts.last_preview
    import time

    for _ in range(300):
        if bi.addon.poll_previews() is None:
            break
        time.sleep(0.05)
    assert not bi.addon._pending and "modes from" in scene.soundstage_impacts.last_preview
    if bpy.app.timers.is_registered(bi.addon.poll_previews):
        bpy.app.timers.unregister(bi.addon.poll_previews)


def test_modal_click_waits_and_escape_cancels(bi):
    op = types.SimpleNamespace()
    for name in ("modal", "_done"):
        setattr(op, name, getattr(bi.addon.SOUNDSTAGE_OT_impact_click, name).__get__(op))
    status = []
    ctx = types.SimpleNamespace(workspace=types.SimpleNamespace(status_text_set=status.append),
                                window=types.SimpleNamespace(screen=types.SimpleNamespace(areas=[])))
    assert op.modal(ctx, types.SimpleNamespace(type="MOUSEMOVE", value="NOTHING")) == {"PASS_THROUGH"}
    # A click outside any 3D viewport is not a hit: keep waiting.
    assert op.modal(ctx, types.SimpleNamespace(type="LEFTMOUSE", value="PRESS", mouse_x=5, mouse_y=5)) \
        == {"RUNNING_MODAL"}
    assert op.modal(ctx, types.SimpleNamespace(type="ESC", value="PRESS")) == {"CANCELLED"} and status == [None]


def _draw(bi, obj):
    log = []
    ctx = types.SimpleNamespace(scene=bpy.context.scene, active_object=obj)
    bi.addon.VIEW3D_PT_soundstage_impacts.draw(types.SimpleNamespace(layout=Recorder(log, prop_text=True)), ctx)
    return log


def test_panel_lists_impacts_with_frame_target_material_and_force(bi):
    _stage(preview_spatial=False)
    assert ("operator", "soundstage.impact_click") in _draw(bi, None)
    cube = _box("SteelCube", (0.3, 0.3, 0.3), (-2.0, 1.0, 0.0), material="Steel")
    e = _click((0.0, 1.0, 0.0), (-1.0, 0.0, 0.0))
    log = _draw(bi, e)
    for entry in (("operator", "soundstage.locate_hit"), ("operator", "soundstage.preview_impact"),
                  ("operator", "soundstage.select_impact"), ("prop", "target"), ("prop", "N"),
                  ("label", "SteelCube: steel")):
        assert entry in log, entry
    assert any(k == "label" and "material name 'Steel' contains 'steel'" in t for k, t in log)
    log = _draw(bi, cube)
    assert ("prop", "") in log and any(k == "label" and t.startswith("steel: auto") for k, t in log)
    assert bpy.ops.soundstage.select_impact(name=e.name) == {"FINISHED"}
    assert bpy.context.active_object == e and bpy.context.scene.frame_current == 1
