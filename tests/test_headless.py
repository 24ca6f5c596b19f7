"""``headless/render.py``: the batch entry point, run as users run it (a subprocess, plain Python + bpy).

Under real Blender the same script runs with ``blender -b scene.blend -P
headless/render.py -- ...``; the code path is the same after the .blend is
loaded (``split_argv`` is tested for both argument layouts).
"""

from __future__ import annotations

import importlib.util
import json
import math
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

bpy = pytest.importorskip("bpy")
sf = pytest.importorskip("soundfile")
pytest.importorskip("soundstage.bake")

pytestmark = pytest.mark.bpy
# The bpy 4.2 wheel is built without Audaspace: no sound strips can exist there.
needs_audio = pytest.mark.skipif(not bpy.app.build_options.audaspace, reason="this bpy build has no Audaspace")
REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "headless" / "render.py"


@pytest.fixture(autouse=True)
def _reset(ss_ext):
    bpy.ops.wm.read_homefile(app_template="")


def run(blend, *flags, timeout=300):
    cmd = [sys.executable, str(SCRIPT), str(blend), "--", *map(str, flags)]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, cwd=REPO)


def _save(tmp_path, name="shot.blend"):
    path = tmp_path / name
    bpy.ops.wm.save_as_mainfile(filepath=str(path))
    return path


def _strips(scene):
    se = scene.sequence_editor
    if se is None:
        return []
    return [s for s in (se.strips_all if hasattr(se, "strips_all") else se.sequences_all)]


@needs_audio
def test_bake_save_and_reopen(ss_scene, tmp_path):
    scene, cam, spk = ss_scene(frames=24)
    spk.location = (-2.0, 1.0, 0.0)
    bpy.ops.soundstage.add_listener(name="Second")
    blend = _save(tmp_path)
    r = run(blend, "--out", tmp_path / "renders", "--save", "--frames", "3-26", "--format", "stereo")
    assert r.returncode == 0, r.stderr
    for listener in ("Camera", "Second"):
        wav = tmp_path / "renders" / f"Scene_{listener}_stereo.wav"
        x, rate = sf.read(str(wav))
        assert x.shape == (48000, 2)
        assert json.loads(wav.with_suffix(".json").read_text())["frames"] == 48000
    assert "wrote" in r.stderr
    bpy.ops.wm.open_mainfile(filepath=str(blend))
    strips = {s.get("soundstage"): s for s in _strips(bpy.context.scene)}
    assert set(strips) == {"Camera|stereo", "Second|stereo"}
    assert strips["Camera|stereo"].frame_final_start == 3
    assert strips["Camera|stereo"].frame_final_duration == 24


def test_json_progress_and_one_listener(ss_scene, tmp_path):
    ss_scene(frames=12)
    bpy.ops.soundstage.add_listener(name="Other")
    blend = _save(tmp_path)
    r = run(blend, "--out", tmp_path / "o", "--listener", "Other", "--json-progress")
    assert r.returncode == 0, r.stderr
    events = [json.loads(ln) for ln in r.stdout.splitlines() if ln.startswith("{")]
    assert any(e["event"] == "progress" for e in events)
    done = [e for e in events if e["event"] == "done"]
    assert [Path(e["path"]).name for e in done] == ["Scene_Other_binaural.wav"]
    assert not (tmp_path / "o" / "Scene_Camera_binaural.wav").exists()
    # Without --save the .blend on disk is unchanged.
    bpy.ops.wm.open_mainfile(filepath=str(blend))
    assert not _strips(bpy.context.scene)


def test_default_output_folder_is_beside_the_blend(ss_scene, tmp_path):
    ss_scene(frames=6)
    blend = _save(tmp_path)
    r = run(blend)
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "soundstage" / "Scene_Camera_binaural.wav").is_file()


@pytest.mark.parametrize("case, pattern", [
    ("no_camera", "no camera to listen from"),
    ("no_sound", "speaker 'Speaker' has no sound"),
    ("missing_file", r"sound file '.*vanished\.wav' not found"),
    ("open_room", None),
])
def test_bad_input_exits_2_with_one_line(ss_scene, tmp_path, case, pattern):
    scene, cam, spk = ss_scene(frames=6, sound=case != "no_sound")
    if case == "no_camera":
        bpy.data.objects.remove(cam)
    if case == "missing_file":
        spk.data.sound.filepath = str(tmp_path / "vanished.wav")
    if case == "open_room":
        bpy.ops.mesh.primitive_cube_add(size=6, location=(0, 0, 0))
        box = bpy.context.object
        box.name = "Box"
        box.soundstage.acoustic = True
        import bmesh

        bm = bmesh.new()
        bm.from_mesh(box.data)
        bmesh.ops.delete(bm, geom=[f for f in bm.faces if f.normal.z > 0.5], context="FACES_ONLY")
        bm.to_mesh(box.data)
        bm.free()
    blend = _save(tmp_path)
    out = tmp_path / "renders"
    r = run(blend, "--out", out)
    if case == "open_room":  # not an error: a warning that says what was done
        assert r.returncode == 0, r.stderr
        assert "warning: room mesh 'Box' is not closed" in r.stderr and "baked as it is" in r.stderr
        return
    assert r.returncode == 2
    err = [ln for ln in r.stderr.splitlines() if ln.startswith("error:")]
    assert len(err) == 1 and re.search(pattern, err[0]), r.stderr
    assert "Traceback" not in r.stderr
    assert not out.exists() or list(out.iterdir()) == []  # nothing half-written, no staging left


def test_unwritable_output_and_bad_arguments(ss_scene, tmp_path):
    ss_scene(frames=6)
    blend = _save(tmp_path)
    (tmp_path / "blocker").write_text("x")
    r = run(blend, "--out", tmp_path / "blocker" / "renders")
    assert r.returncode == 2 and "not writable" in r.stderr and "Traceback" not in r.stderr
    r = run(tmp_path / "missing.blend")
    assert r.returncode == 2 and "missing.blend' not found" in r.stderr
    r = run(blend, "--frames", "ten")
    assert r.returncode == 2 and "--frames" in r.stderr
    r = run(blend, "--frames", "20-10")
    assert r.returncode == 2 and "empty" in r.stderr


def test_render_video_muxes_the_baked_track(ss_scene, tmp_path):
    aud = pytest.importorskip("aud")
    scene, cam, spk = ss_scene(frames=6)
    spk.location = (-2.0, 1.0, 0.0)
    scene.render.engine = "CYCLES"
    scene.cycles.samples = 1
    scene.cycles.device = "CPU"
    scene.render.resolution_x, scene.render.resolution_y, scene.render.resolution_percentage = 32, 18, 100
    blend = _save(tmp_path)
    r = run(blend, "--out", tmp_path / "r", "--render-video")
    assert r.returncode == 0, r.stderr
    mp4 = tmp_path / "r" / "Scene_Camera_binaural.mp4"
    wav, _ = sf.read(str(tmp_path / "r" / "Scene_Camera_binaural.wav"))
    movie = np.asarray(aud.Sound(str(mp4)).data())  # Blender's own decoder reads the muxed audio back
    n = min(len(movie), len(wav))
    assert n > 0.9 * len(wav)
    a, b = movie[:n], wav[:n]
    corr = np.sum(a[:, 0] * b[:, 0]) / math.sqrt(np.sum(a[:, 0] ** 2) * np.sum(b[:, 0] ** 2))
    assert corr > 0.9  # the baked track, not the speakers' own playback (muted during the render)
    ild = [10 * math.log10(np.sum(x[:, 0] ** 2) / np.sum(x[:, 1] ** 2)) for x in (a, b)]
    assert ild[0] == pytest.approx(ild[1], abs=1.0)
    bpy.ops.wm.open_mainfile(filepath=str(blend))
    assert not bpy.context.scene.objects["Speaker"].data.muted  # settings restored (and not saved anyway)


def test_argument_layouts_of_blender_and_python():
    spec = importlib.util.spec_from_file_location("ss_render_args", SCRIPT)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    before, after, plain = mod.split_argv(["/usr/bin/blender", "-b", "s.blend", "-P", str(SCRIPT), "--", "--save"])
    assert (before, after, plain) == ([], ["--save"], False)
    before, after, plain = mod.split_argv([str(SCRIPT), "s.blend", "--", "--out", "x"])
    assert (before, after, plain) == (["s.blend"], ["--out", "x"], True)
    assert mod.parse_frames("5-20") == (5, 20) and mod.parse_frames("7") == (7, 7)


def test_worker_engine_as_under_real_blender(ss_scene, tmp_path):
    """Real Blender's Python has no engine: the same script then bakes through the worker process."""
    ss_scene(frames=6)
    blend = _save(tmp_path)
    r = run(blend, "--out", tmp_path / "w", "--engine", "worker", "--engine-python", sys.executable)
    assert r.returncode == 0, r.stderr
    assert "with the worker engine" in r.stderr
    assert (tmp_path / "w" / "Scene_Camera_binaural.wav").is_file()
