"""Output paths and the material library on the Blender side (bpy-free parts of bridge/)."""

from __future__ import annotations

import importlib
import importlib.util
import json
import os
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def bridge():
    """bridge.paths / materials / errors, imported without bpy."""
    spec = importlib.util.spec_from_file_location("ss_headless_render", REPO / "headless" / "render.py")
    render = sys.modules.get("ss_headless_render")
    if render is None:
        render = importlib.util.module_from_spec(spec)
        sys.modules["ss_headless_render"] = render
        spec.loader.exec_module(render)
    ext = render.load_extension()
    import types

    return types.SimpleNamespace(**{n: importlib.import_module(f"{ext.__name__}.bridge.{n}")
                                    for n in ("paths", "materials", "errors")})


@pytest.mark.parametrize("name", ["../../etc/passwd", "..", ".", "a/../../b", "/abs/path", "C:\\x\\..\\y",
                                  "...hidden", "caméra 1", "", "a\x00b", "..\\..\\win"])
def test_sanitised_names_never_leave_the_folder(bridge, tmp_path, name):
    s = bridge.paths.sanitize(name)
    assert s and "/" not in s and "\\" not in s and ".." not in s and not s.startswith(".")
    target = bridge.paths.safe_join(tmp_path, bridge.paths.output_name(name, name, "binaural"))
    assert target.parent == tmp_path.resolve()


def test_sanitize_keeps_ordinary_names(bridge):
    assert bridge.paths.sanitize("Camera.001") == "Camera.001"
    assert bridge.paths.output_name("Scene", "Cam-A", "5.1") == "Scene_Cam-A_5.1.wav"


@pytest.mark.parametrize("bad", ["../x.wav", "sub/x.wav", "/tmp/x.wav"])
def test_safe_join_refuses_escapes(bridge, tmp_path, bad):
    with pytest.raises(bridge.errors.BridgeError, match="would leave the output folder"):
        bridge.paths.safe_join(tmp_path, bad)


def test_relative_output_dir_of_an_unsaved_file_goes_to_a_temp_dir_with_a_warning(bridge):
    d, warning = bridge.paths.resolve_output_dir("//soundstage/", "", lambda p: p)
    try:
        assert d.is_dir() and "not saved" in warning and str(d) in warning
    finally:
        d.rmdir()


def test_relative_output_dir_resolves_beside_the_blend(bridge, tmp_path):
    blend = tmp_path / "shot.blend"
    abspath = lambda p: str(blend.parent / p[2:]) if p.startswith("//") else p  # noqa: E731 (bpy.path.abspath's rule)
    d, warning = bridge.paths.resolve_output_dir("//soundstage/", str(blend), abspath)
    assert d == (tmp_path / "soundstage").resolve() and warning is None


def test_unwritable_output_dir_is_reported_with_its_path(bridge, tmp_path):
    blocker = tmp_path / "a_file"
    blocker.write_text("x")
    with pytest.raises(bridge.errors.BridgeError, match="a_file.*not writable"):
        bridge.paths.ensure_writable_dir(blocker / "out")


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="root ignores permission bits")
def test_read_only_output_dir_is_reported(bridge, tmp_path):
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o500)
    try:
        with pytest.raises(bridge.errors.BridgeError, match="not writable"):
            bridge.paths.ensure_writable_dir(ro)
    finally:
        ro.chmod(0o700)


def test_ensure_writable_dir_leaves_no_probe_behind(bridge, tmp_path):
    bridge.paths.ensure_writable_dir(tmp_path / "new")
    assert list((tmp_path / "new").iterdir()) == []


# --------------------------------------------------------------------------- material library
def test_library_matches_the_engine_file(bridge):
    """The add-on reads soundstage/data/materials.json itself: same names, same numbers as the engine."""
    engine = pytest.importorskip("soundstage.materials")
    lib = bridge.materials.load_library()
    eng = engine.library()
    assert set(lib) == set(eng)
    for name, m in eng.items():
        assert lib[name].absorption == pytest.approx(tuple(m.absorption))


def test_library_parser_accepts_the_documented_shapes(bridge):
    band = {"125": 0.1, "250": 0.2, "500": 0.3, "1000": 0.4, "2000": 0.5, "4000": 0.6, "8000": 0.7}
    as_list = [{"name": "a", "absorption": band, "category": "c"}]
    as_map = {"a": {"absorption": list(band.values())}}
    wrapped = {"materials": as_list}
    for doc in (as_list, as_map, wrapped):
        lib = bridge.materials.parse_library(doc)
        assert lib["a"].absorption == pytest.approx((0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7))


def test_every_guess_candidate_is_in_the_library(bridge):
    lib = bridge.materials.load_library()
    missing = [c for _k, cands in bridge.materials.NAME_RULES for c in cands if c not in lib]
    assert not missing, f"name rules point at materials the library does not have: {missing}"
    assert bridge.materials.FALLBACK in lib


@pytest.mark.parametrize("name, expected", [
    ("Carpet.001", "carpet"), ("Red Velvet Curtains", "curtains"), ("window_glass", "glass"),
    ("BrickWall", "brick"), ("Concrete floor", "concrete"), ("oak_table", "wood"), ("Ceramic Tiles", "ceramic"),
])
def test_guess_from_name(bridge, name, expected):
    pick, reason = bridge.materials.guess(name)
    assert expected in pick and "name contains" in reason


def test_guess_from_shading_when_the_name_says_nothing(bridge):
    lib = bridge.materials.load_library()
    metal, why = bridge.materials.guess("Material.004", metallic=1.0)
    assert metal == "hard_surface" and "metallic" in why
    glass, why = bridge.materials.guess("Material.004", transmission=1.0)
    assert "glass" in glass
    plain, why = bridge.materials.guess("Material.004", roughness=0.5)
    assert plain == bridge.materials.FALLBACK and "default" in why
    # Harder surfaces absorb less: the metallic guess must absorb less than the default wall on average.
    assert sum(lib[metal].absorption) < sum(lib[plain].absorption)


def test_custom_spec_validates_bands(bridge):
    spec = bridge.materials.custom_spec([0.1] * 7, 0.3, "Panel")
    assert spec["absorption"]["8000"] == 0.1 and spec["scattering"] == 0.3 and spec["name"] == "Panel"
    engine = pytest.importorskip("soundstage.materials")
    assert engine.resolve_material(spec, "test").absorption.tolist() == [0.1] * 7
    with pytest.raises(bridge.errors.BridgeError, match="2000 Hz"):
        bridge.materials.custom_spec([0.1, 0.1, 0.1, 0.1, 1.5, 0.1, 0.1], 0.0)
    json.dumps(spec)
