"""The extension package through Blender's own tooling: build, validate, install, enable, bake, disable.

``blender_ext.py`` (Blender's bl_pkg CLI, shipped in the bpy wheel) builds and
validates; ``bpy.ops.extensions.package_install_files`` installs the zip as
Blender's UI does. The install runs in a child process with its own
``BLENDER_USER_RESOURCES`` so nothing touches the real user configuration.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import zipfile
from pathlib import Path

import pytest

pytest.importorskip("bpy")
pytestmark = pytest.mark.bpy
REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def built_zip(tmp_path_factory):
    out = tmp_path_factory.mktemp("dist")
    r = subprocess.run([sys.executable, str(REPO / "tools" / "build_extension.py"), "--out", str(out)],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    (zip_path,) = out.glob("*.zip")
    assert "built and validated" in r.stdout
    return zip_path


def test_zip_holds_the_add_on_and_engine_but_no_development_files(built_zip):
    names = zipfile.ZipFile(built_zip).namelist()
    for required in ("blender_manifest.toml", "__init__.py", "addon/operators.py", "bridge/export.py",
                     "headless/render.py", "soundstage/worker.py", "soundstage/bake.py",
                     "soundstage/data/materials.json"):
        assert required in names, required
    for banned in ("tests/", "samples/", "benchmarks/", "tools/", "docs/", ".git", "__pycache__", ".venv",
                   "Makefile", "pyproject.toml", ".egg-info"):
        assert not [n for n in names if banned in n], banned
    assert built_zip.name == "soundstage-0.1.0.zip"


def test_blender_validator_is_really_checking(tmp_path):
    """A manifest Blender rejects fails the same tool the build uses (so a pass means something)."""
    sys.path.insert(0, str(REPO / "tools"))
    try:
        import build_extension
    finally:
        sys.path.pop(0)
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "__init__.py").write_text("def register(): pass\ndef unregister(): pass\n")
    text = (REPO / "blender_manifest.toml").read_text()
    (bad / "blender_manifest.toml").write_text(text.replace('type = "add-on"', 'type = "plugin"'))
    r = subprocess.run([sys.executable, str(build_extension.find_blender_ext()), "validate", str(bad)],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode != 0 and "type" in (r.stdout + r.stderr)


INSTALL_SCRIPT = textwrap.dedent('''
    import json, math, sys
    import bpy
    import addon_utils
    import numpy as np, soundfile as sf

    zip_path, wav_dir = sys.argv[1], sys.argv[2]
    out = {}
    bpy.ops.extensions.package_install_files(filepath=zip_path, repo="user_default", enable_on_install=True)
    mod = "bl_ext.user_default.soundstage"
    out["enabled"] = mod in {a.module for a in bpy.context.preferences.addons}
    out["ops"] = sorted(n for n in ("bake", "add_source", "add_listener", "mark_acoustic", "cancel_bake",
                                    "play_preview") if hasattr(bpy.ops.soundstage, n))
    out["cycles"] = []
    for _ in range(2):
        addon_utils.disable(mod, default_set=True)
        off = (hasattr(bpy.types.Scene, "soundstage"), hasattr(bpy.types.Object, "soundstage"),
               "SOUNDSTAGE_OT_bake" in dir(bpy.types), "VIEW3D_PT_soundstage" in dir(bpy.types))
        addon_utils.enable(mod, default_set=True)
        on = (hasattr(bpy.types.Scene, "soundstage"), "SOUNDSTAGE_OT_bake" in dir(bpy.types))
        out["cycles"].append([list(off), list(on)])

    # Bake through the installed add-on in worker mode: the path real Blender takes.
    prefs = bpy.context.preferences.addons[mod].preferences
    prefs.engine_mode = "WORKER"
    prefs.engine_python = sys.executable
    bpy.ops.wm.read_homefile(app_template="")
    scene = bpy.context.scene
    scene.frame_end = 12
    cam = scene.camera
    cam.location, cam.rotation_euler = (0, 0, 0), (math.pi / 2, 0, 0)
    wav = wav_dir + "/src.wav"
    sf.write(wav, (0.1 * np.random.default_rng(0).standard_normal(24000)).astype(np.float32), 48000)
    bpy.data.objects.remove(scene.objects["Cube"])
    spk = bpy.data.objects.new("Voice", bpy.data.speakers.new("Voice"))
    scene.collection.objects.link(spk)
    spk.location = (-1.0, 1.0, 0.0)
    spk.data.sound = bpy.data.sounds.load(wav)
    scene.soundstage.output_dir = wav_dir + "/renders"
    out["bake"] = sorted(bpy.ops.soundstage.bake())
    se = scene.sequence_editor
    strips = list(se.strips_all if hasattr(se, "strips_all") else se.sequences_all) if se else []
    out["strips"] = [s.get("soundstage") for s in strips]
    addon_utils.disable(mod, default_set=True)
    out["audio"] = bool(bpy.app.build_options.audaspace)
    out["after_disable"] = hasattr(bpy.types.Scene, "soundstage")
    print("RESULT " + json.dumps(out))
''')


def test_install_enable_bake_and_disable_through_blender(built_zip, tmp_path):
    script = tmp_path / "install.py"
    script.write_text(INSTALL_SCRIPT)
    env = dict(os.environ, BLENDER_USER_RESOURCES=str(tmp_path / "blender_user"))
    env.pop("SOUNDSTAGE_PYTHON", None)
    # Run outside the repository so the engine can only come from the installed extension's worker.
    r = subprocess.run([sys.executable, str(script), str(built_zip), str(tmp_path)], capture_output=True,
                       text=True, timeout=300, env=env, cwd=tmp_path)
    lines = [ln for ln in r.stdout.splitlines() if ln.startswith("RESULT ")]
    assert r.returncode == 0 and lines, r.stdout[-3000:] + r.stderr[-3000:]
    res = json.loads(lines[0][len("RESULT "):])
    assert res["enabled"]
    assert res["ops"] == sorted(["bake", "add_source", "add_listener", "mark_acoustic", "cancel_bake",
                                 "play_preview"])
    for off, on in res["cycles"]:  # disabling removes everything, enabling brings it back, twice
        assert off == [False, False, False, False] and on == [True, True]
    assert res["bake"] == ["FINISHED"]
    assert res["strips"] == (["Camera|binaural"] if res["audio"] else [])  # the 4.2 wheel has no Audaspace
    assert (tmp_path / "renders" / "Scene_Camera_binaural.wav").is_file()
    assert not res["after_disable"]
    installed = tmp_path / "blender_user" / "extensions" / "user_default" / "soundstage"
    assert (installed / "blender_manifest.toml").is_file() and not (installed / "tests").exists()
