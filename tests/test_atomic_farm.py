"""Render-farm chunk tasks: chunks rendered by separate processes, then one bake assembles the track.

This is how a farm manager (docs/farm.md: Flamenco) runs a bake: one task per
chunk, all writing into a shared work folder, none writing the track; a last
task with ``--resume`` finds every chunk done and writes the track. The oracle
is an ordinary bake of the same job: the samples must be identical.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from bakekit import moving_scene

REPO = Path(__file__).resolve().parents[1]
ENV = {k: v for k, v in os.environ.items() if not k.startswith("SOUNDSTAGE_")}


def _cli(*args):
    return subprocess.Popen([sys.executable, "-m", "soundstage.cli", *map(str, args)], env=ENV,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_chunk_tasks_in_parallel_then_assembly(tmp_path):
    job = moving_scene(tmp_path, fmt="binaural", room="shoebox", seconds=1.5, n_sources=2)
    (tmp_path / "job.json").write_text(json.dumps(job))
    work = tmp_path / "shared-work"
    common = ("--chunk-seconds", "0.5", "--no-cache", "--work-dir", work)
    tasks = [_cli("bake", tmp_path / "job.json", "--only-chunks", c, *common, "--json-progress") for c in ("0", "1-2")]
    for t in tasks:
        out, err = t.communicate(timeout=300)
        assert t.returncode == 0, err
        done = json.loads(out.strip().splitlines()[-1])
        assert done["event"] == "done" and done["rendered"] == 2 * len(done["chunks"])
    assert not (tmp_path / "out.wav").exists()  # chunk tasks write no track
    final = _cli("bake", tmp_path / "job.json", "--resume", *common, "--quiet")
    out, err = final.communicate(timeout=300)
    assert final.returncode == 0, err
    info = json.loads((tmp_path / "out.json").read_text())
    assert info["chunks"]["resumed"] == 6 and info["chunks"]["rendered"] == 0
    ref = _cli("bake", tmp_path / "job.json", "--out", tmp_path / "ref.wav", "--no-cache", "--chunk-seconds", "0.5",
               "--work-dir", tmp_path / "w2", "--quiet")
    assert ref.wait(300) == 0
    np.testing.assert_array_equal(sf.read(tmp_path / "out.wav", dtype="float32")[0],
                                  sf.read(tmp_path / "ref.wav", dtype="float32")[0])
    assert not any(work.iterdir())  # the assembling bake removed the shared work folder
    bad = _cli("bake", tmp_path / "job.json", "--only-chunks", "7", *common)
    _, err = bad.communicate(timeout=300)
    assert bad.returncode == 2 and err.strip() == "error: only chunks: chunk 7 does not exist: the shot has 3 " \
                                                  "chunks (0-2)"


@pytest.mark.bpy
def test_headless_chunk_tasks_then_resume(ss_ext, ss_scene, tmp_path):
    """The same through headless/render.py, the command a farm runs with Blender."""
    bpy = pytest.importorskip("bpy")
    bpy.ops.wm.read_homefile(app_template="")
    ss_scene(frames=48)
    blend = tmp_path / "shot.blend"
    bpy.ops.wm.save_as_mainfile(filepath=str(blend))
    script = REPO / "headless" / "render.py"

    def run(*flags):
        return subprocess.run([sys.executable, str(script), str(blend), "--", *map(str, flags)], env=ENV,
                              capture_output=True, text=True, timeout=300, cwd=REPO)

    common = ("--out", tmp_path / "renders", "--format", "stereo", "--chunk-seconds", "0.5",
              "--work-dir", tmp_path / "work")
    for chunks in ("0-1", "2-3"):
        r = run(*common, "--only-chunks", chunks)
        assert r.returncode == 0, r.stderr
        assert f"chunks {chunks} of 'Camera' are in" in r.stderr
    assert not (tmp_path / "renders" / "Scene_Camera_stereo.wav").exists()
    assert not [p for p in (tmp_path / "renders").iterdir() if p.name.startswith(".soundstage")]  # staging gone
    r = run(*common, "--resume")
    assert r.returncode == 0, r.stderr
    info = json.loads((tmp_path / "renders" / "Scene_Camera_stereo.json").read_text())
    assert info["chunks"]["count"] == 4 and info["chunks"]["resumed"] == 4 and info["chunks"]["rendered"] == 0
    r = run("--out", tmp_path / "plain", "--format", "stereo", "--chunk-seconds", "0.5")
    assert r.returncode == 0, r.stderr
    np.testing.assert_array_equal(sf.read(tmp_path / "renders" / "Scene_Camera_stereo.wav", dtype="float32")[0],
                                  sf.read(tmp_path / "plain" / "Scene_Camera_stereo.wav", dtype="float32")[0])
