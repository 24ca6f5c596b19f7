"""Hit localization (soundstage.impact.locate) and the impact/locate command line.

The recorded hits are synthesised with finer modal models than the locator uses,
convolved with a real measured room impulse response (../shared/data), and
noised at 20 dB SNR; the locator must still name the object.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

trimesh = pytest.importorskip("trimesh")
sf = pytest.importorskip("soundfile")

from soundstage.errors import GeometryError  # noqa: E402
from soundstage.impact.locate import (  # noqa: E402
    SceneError,
    SceneObject,
    hit_signature,
    load_scene,
    locate,
    object_models,
)
from soundstage.impact.materials import get_material  # noqa: E402
from soundstage.impact.synth import synthesize  # noqa: E402

RATE = 48000


@pytest.fixture(autouse=True)
def _private_cache(tmp_path_factory, monkeypatch):
    monkeypatch.setenv("SOUNDSTAGE_CACHE_DIR", str(tmp_path_factory.getbasetemp() / "impact-locate-cache"))


def _scene():
    c = trimesh.creation
    rot = trimesh.transformations.rotation_matrix
    items = [
        ("tray", c.box(extents=[0.30, 0.20, 0.003]), "steel", rot(0.4, [0, 0, 1])),
        ("plank", c.box(extents=[0.50, 0.08, 0.02]), "wood", np.eye(4)),
        ("rod", c.cylinder(radius=0.012, height=0.4, sections=16), "aluminium", rot(1.0, [1, 0, 0])),
        ("block", c.box(extents=[0.12, 0.08, 0.05]), "plastic", np.eye(4)),
    ]
    out = []
    for i, (name, mesh, mat, M) in enumerate(items):
        M = np.array(M, dtype=float)
        M[:3, 3] = [i * 0.7, 0.5 * i, 0.3]
        out.append(SceneObject(name, mesh, M, get_material(mat)))
    return out


def test_hit_signature_finds_damped_sinusoids():
    t = np.arange(RATE) / RATE
    freqs = [220.0, 1234.5, 5000.0, 11111.0]
    x = sum(np.exp(-3 * t) * np.sin(2 * np.pi * f * t) for f in freqs)
    x = np.concatenate([np.zeros(2000), x])
    sig = hit_signature(x + 1e-4 * np.random.default_rng(0).standard_normal(len(x)), RATE)
    for f in freqs:
        assert np.min(np.abs(sig.freqs / f - 1)) < 0.005, f
    assert len(sig.freqs) == len(freqs)


def test_locate_names_the_hit_object_through_a_real_room(shared_data):
    from scipy.signal import fftconvolve

    rir, r = sf.read(shared_data / "audio-edge-cases" / "rir48000.wav", dtype="float64")
    assert r == RATE
    objects = _scene()
    fine = object_models(objects, budget=900)
    models = object_models(objects, budget=500)
    rng = np.random.default_rng(5)
    ranks = []
    for obj, fm in zip(objects, fine):
        for k in range(3):
            pts, face = trimesh.sample.sample_surface(obj.mesh, 1, seed=100 + k)
            dry = synthesize(fm, pts[0], obj.mesh.face_normals[face[0]], force=float(rng.uniform(5, 50)),
                             seed=k, duration=1.5).astype(float)
            wet = fftconvolve(dry, rir)[: len(dry)]
            wet += rng.standard_normal(len(wet)) * np.sqrt(np.mean(wet**2) / 100)  # 20 dB SNR
            res = locate(objects, wet, RATE, models=models)
            names = [s.name for s in res.objects]
            ranks.append(names.index(obj.name))
            assert sum(s.probability for s in res.objects) == pytest.approx(1.0)
    ranks = np.array(ranks)
    assert np.mean(ranks == 0) >= 0.9 and np.all(ranks <= 1), ranks


def test_locate_result_regions_vertex_scores_and_json():
    objects = _scene()[:2]
    models = object_models(objects, budget=300)
    obj = objects[0]
    y = synthesize(models[0], models[0].surface_points[3], models[0].surface_normals[3], duration=1.0)
    res = locate(objects, y, RATE, models=models, n_regions=6)
    top = res.objects[0]
    assert top.name == "tray"
    assert len(top.region_probabilities) == 6
    assert top.region_probabilities.sum() == pytest.approx(top.probability)
    vs = top.vertex_scores()
    assert vs.shape == (len(obj.mesh.vertices),) and np.all((vs >= 0) & (vs <= 1))
    d = res.to_dict(vertex_scores=True)
    json.dumps(d)
    assert d["objects"][0]["name"] == "tray" and len(d["objects"][0]["vertex_scores"]) == len(obj.mesh.vertices)


def test_scaled_object_pose_scales_its_frequencies():
    box = trimesh.creation.box(extents=[0.2, 0.1, 0.05])
    M = np.diag([2.0, 2.0, 2.0, 1.0])
    M[:3, :3] = M[:3, :3] @ trimesh.transformations.rotation_matrix(0.7, [0, 1, 1])[:3, :3]
    a, b = object_models([SceneObject("a", box, np.eye(4), get_material("steel")),
                          SceneObject("b", box, M, get_material("steel"))], budget=300)
    np.testing.assert_allclose(b.frequencies[:4] / a.frequencies[:4], 0.5, rtol=0.02)


def test_load_scene_json_and_glb(tmp_path):
    box = trimesh.creation.box(extents=[0.2, 0.1, 0.05])
    box.export(tmp_path / "box.obj")
    doc = {"objects": [
        {"name": "given", "mesh": "box.obj", "material": "glass", "matrix_world": np.eye(4).ravel().tolist()},
        {"name": "guessed", "mesh": "box.obj", "appearance": {"name": "OakWood"}},
    ]}
    (tmp_path / "scene.json").write_text(json.dumps(doc))
    objs = load_scene(tmp_path / "scene.json")
    assert [o.name for o in objs] == ["given", "guessed"]
    assert objs[0].material.name == "glass" and objs[0].material_reason == "given"
    assert objs[1].material.name == "wood" and "oak" in objs[1].material_reason.lower()

    scene = trimesh.Scene()
    metal = box.copy()
    metal.visual = trimesh.visual.TextureVisuals(material=trimesh.visual.material.PBRMaterial(
        name="Paint", metallicFactor=1.0, roughnessFactor=0.3, baseColorFactor=[200, 200, 205, 255]))
    scene.add_geometry(metal, node_name="pot", transform=trimesh.transformations.translation_matrix([1, 0, 0]))
    scene.export(tmp_path / "scene.glb")
    objs = load_scene(tmp_path / "scene.glb")
    assert len(objs) == 1 and objs[0].name == "pot"
    assert objs[0].material.name in ("steel", "aluminium") and "metallic" in objs[0].material_reason
    np.testing.assert_allclose(objs[0].matrix_world[:3, 3], [1, 0, 0])


@pytest.mark.parametrize("doc,msg", [
    ({}, "objects"), ({"objects": []}, "objects"), ({"objects": [{"name": "x"}]}, "mesh"),
    ({"objects": [{"mesh": "box.obj", "material": "steel", "matrix_world": [1, 2, 3]}]}, "matrix_world"),
])
def test_load_scene_errors(tmp_path, doc, msg):
    trimesh.creation.box().export(tmp_path / "box.obj")
    (tmp_path / "s.json").write_text(json.dumps(doc))
    with pytest.raises(SceneError, match=msg):
        load_scene(tmp_path / "s.json")


def test_load_scene_missing_mesh(tmp_path):
    (tmp_path / "s.json").write_text(json.dumps({"objects": [{"mesh": "nope.obj", "material": "steel"}]}))
    with pytest.raises(GeometryError, match="not found"):
        load_scene(tmp_path / "s.json")


# --- command line ---------------------------------------------------------------------


def test_cli_impact_writes_float_wav_and_sidecar(tmp_path, capsys):
    from soundstage.cli import main

    trimesh.creation.box(extents=[0.3, 0.2, 0.003]).export(tmp_path / "tray.stl")
    out = tmp_path / "hit.wav"
    rc = main(["impact", str(tmp_path / "tray.stl"), "--material", "steel", "--at", "0.05", "0.02", "0.0015",
               "--force", "10", "--out", str(out), "--duration", "0.5", "--budget", "300"])
    assert rc == 0
    data, rate = sf.read(out, dtype="float32")
    info = sf.info(out)
    assert rate == 48000 and info.subtype == "FLOAT" and info.channels == 1 and len(data) == 24000
    assert np.abs(data).max() > 0
    side = json.loads(out.with_suffix(".json").read_text())
    assert side["material"]["name"] == "steel" and side["units"] == "Pa at 1 m"
    assert "wrote" in capsys.readouterr().out
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temp files left


def test_cli_impact_guesses_a_missing_material(tmp_path, capsys):
    from soundstage.cli import main

    trimesh.creation.box(extents=[0.3, 0.2, 0.01]).export(tmp_path / "OakShelf.stl")
    rc = main(["impact", str(tmp_path / "OakShelf.stl"), "--at", "0", "0", "0.005", "--out",
               str(tmp_path / "h.wav"), "--duration", "0.2", "--budget", "200"])
    assert rc == 0
    assert "material: guessed" in capsys.readouterr().out


@pytest.mark.parametrize("args,needle", [
    (["--material", "unobtainium", "--at", "0", "0", "0"], "unobtainium"),
    (["--material", "steel", "--at", "9", "9", "9"], "from the surface"),
    (["--material", "steel", "--at", "0", "0", "0", "--force", "-1"], "force"),
])
def test_cli_impact_bad_input_is_one_line_exit_2(tmp_path, capsys, args, needle):
    from soundstage.cli import main

    trimesh.creation.box(extents=[0.2, 0.2, 0.01]).export(tmp_path / "b.stl")
    out = tmp_path / "x.wav"
    rc = main(["impact", str(tmp_path / "b.stl"), *args, "--out", str(out), "--budget", "200"])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and err[0].startswith("error:") and needle in err[0]
    assert not out.exists()


def test_cli_locate(tmp_path, capsys):
    from soundstage.cli import main
    from soundstage.impact.modal import modal_model

    plank = trimesh.creation.box(extents=[0.5, 0.08, 0.02])
    tray = trimesh.creation.box(extents=[0.3, 0.2, 0.003])
    plank.export(tmp_path / "plank.obj")
    tray.export(tmp_path / "tray.obj")
    doc = {"objects": [{"name": "plank", "mesh": "plank.obj", "material": "wood"},
                       {"name": "tray", "mesh": "tray.obj", "material": "steel"}]}
    (tmp_path / "scene.json").write_text(json.dumps(doc))
    m = modal_model(tray, "steel", budget=300)
    y = synthesize(m, [0.1, 0.05, 0.0015], [0, 0, 1], duration=1.0)
    sf.write(tmp_path / "hit.wav", y, RATE, subtype="FLOAT")
    rc = main(["locate", str(tmp_path / "scene.json"), str(tmp_path / "hit.wav"), "--json",
               str(tmp_path / "out.json"), "--budget", "300"])
    assert rc == 0
    out = capsys.readouterr().out
    assert out.splitlines()[0].split()[1] == "tray"
    d = json.loads((tmp_path / "out.json").read_text())
    assert d["objects"][0]["name"] == "tray" and len(d["objects"][0]["regions"]) == 8
