"""Impact-sound speed: modal analysis, synthesis, click-to-preview latency.

* Modal analysis (voxelise, assemble, eigensolve; cache off) of 10,000-triangle
  objects: a ceramic torus, a solid steel cylinder and a thin-walled glass cup.
  Target: under 10 s each on the 2-core machine.
* Synthesis of a 2-s hit at 48 kHz from a cached model: target >= 100 x real time;
  side by side with the slow one-mode-at-a-time reference.
* Click-to-preview latency: ``impact(path, at)`` from a mesh file to a written WAV,
  warm (modal model cached) and cold (first click on an object).
* ``--blender``: the same latency through Blender's click operator
  (``soundstage.impact_click`` with the bpy module: ray cast, impact Empty, mesh
  read, synthesis, binaural preview from the camera, WAV written), with the
  engine in-process (bpy module in the engine's environment) and as the one-shot
  worker real Blender uses.

    .venv/bin/python benchmarks/bench_impact.py [--blender]
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import trimesh  # noqa: E402

from soundstage.audio_io import write_wav  # noqa: E402
from soundstage.impact import synth  # noqa: E402
from soundstage.impact.hit import impact  # noqa: E402
from soundstage.impact.modal import modal_model  # noqa: E402


def objects_10k():
    c = trimesh.creation
    return [
        ("ceramic torus", c.torus(major_radius=0.08, minor_radius=0.025, major_sections=100, minor_sections=50),
         "ceramic"),
        ("steel cylinder (solid)", c.cylinder(radius=0.04, height=0.12, sections=2500), "steel"),
        ("glass cup (thin wall)", c.annulus(r_min=0.036, r_max=0.04, height=0.10, sections=1250), "glass"),
    ]


def main():
    print(f"cores: {os.cpu_count()}")
    print("modal analysis (cache off, default budget):")
    models = []
    for name, mesh, mat in objects_10k():
        t = time.perf_counter()
        m = modal_model(mesh, mat, cache=False, name=name)
        dt = time.perf_counter() - t
        models.append(m)
        print(f"  {name:22s} {len(mesh.faces):6d} triangles  {m.info['cells']:5d} cells {m.info['dofs']:6d} DOF  "
              f"{m.n_modes:3d} modes {m.frequencies[0]:7.0f}..{m.frequencies[-1]:6.0f} Hz  "
              f"{dt:5.2f} s (voxelise {m.info['voxelise_s']:.2f}, eigen {m.info['eigen_s']:.2f})  "
              f"{'OK' if dt < 10 else 'OVER 10 s'}")

    print("synthesis of a 2-s hit at 48 kHz (model in memory):")
    m = models[0]
    p, n = m.surface_points[0], m.surface_normals[0]
    times = []
    for i in range(20):
        t = time.perf_counter()
        synth.synthesize(m, p, n, duration=2.0, seed=i)
        times.append(time.perf_counter() - t)
    med = float(np.median(times))
    print(f"  {m.n_modes} modes: median {1000 * med:.2f} ms -> {2.0 / med:.0f} x real time "
          f"({'OK' if 2.0 / med >= 100 else 'UNDER 100 x'})")
    # Side by side: the same sum of damped sinusoids, fast (blocked matrix product)
    # and reference (one mode at a time).
    amps = np.exp(1j * np.arange(64)) * 1e-3
    lam = -50.0 + 2j * np.pi * np.linspace(100, 15000, 64)
    t = time.perf_counter()
    a = synth.modal_sum(amps, lam, 96000, 48000.0)
    tf = time.perf_counter() - t
    t = time.perf_counter()
    b = synth.modal_sum_reference(amps, lam, 96000, 48000.0)
    tr = time.perf_counter() - t
    print(f"  64 modes x 2 s: fast {1000 * tf:.1f} ms, reference {1000 * tr:.1f} ms ({tr / tf:.1f} x), "
          f"max difference {np.abs(a - b).max() / np.abs(b).max():.1e} of peak")

    print("click-to-preview latency (mesh file -> WAV on disk):")
    with tempfile.TemporaryDirectory() as d:
        os.environ["SOUNDSTAGE_CACHE_DIR"] = str(Path(d) / "cache")
        path = Path(d) / "torus.ply"
        objects_10k()[0][1].export(path)
        for label in ("cold (modal analysis)", "warm (cached modes)", "warm (cached modes)"):
            t = time.perf_counter()
            res = impact(path, [0.105, 0.0, 0.0], material="ceramic", duration=2.0)
            write_wav(Path(d) / "hit.wav", res.audio, res.sample_rate)
            dt = time.perf_counter() - t
            print(f"  {label:22s} {1000 * dt:7.0f} ms  (load {1000 * res.info['load_s']:.0f} ms, modes "
                  f"{1000 * res.info['modal_s']:.0f} ms, synthesis {1000 * res.info['synth_s']:.0f} ms)")
    return 0


def blender_click_latency() -> int:
    """Click-to-preview through the operator, first click (modal analysis) and cached, per engine mode."""
    import importlib.util
    import math

    import bpy

    spec = importlib.util.spec_from_file_location("ss_render", ROOT / "headless" / "render.py")
    render = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(render)
    ext = render.load_extension()
    ext.register()
    impacts = importlib.import_module(f"{ext.__name__}.bridge.impacts")
    print(f"click-to-preview in Blender (bpy {bpy.app.version_string}), 10,000-triangle ceramic torus, "
          "binaural preview from the camera:")
    try:
        for mode in ("inprocess", "worker"):
            with tempfile.TemporaryDirectory() as d:
                os.environ["SOUNDSTAGE_CACHE_DIR"] = str(Path(d) / "cache")
                bpy.ops.wm.read_homefile(app_template="")
                scene = bpy.context.scene
                for o in list(scene.objects):
                    if o.type != "CAMERA":
                        bpy.data.objects.remove(o)
                scene.camera.location = (0.0, -1.0, 0.0)
                scene.camera.rotation_euler = (math.pi / 2, 0.0, 0.0)
                bpy.ops.mesh.primitive_torus_add(major_radius=0.08, minor_radius=0.025, major_segments=100,
                                                 minor_segments=50, location=(0.0, 0.0, 0.0))
                torus = bpy.context.active_object
                mat = bpy.data.materials.new("Porcelain")
                torus.data.materials.append(mat)
                scene.soundstage_impacts.preview_play = False
                prefs = types_prefs(mode)
                for label in ("first click (modal analysis)", "cached modes", "cached modes"):
                    t = time.perf_counter()
                    empty = impacts.create_impact(scene, impacts.raycast(scene, (0.0, -1.0, 0.0), (0.0, 1.0, 0.0)),
                                                  frame=1)
                    t_click = time.perf_counter() - t
                    result = impacts.preview_task(empty, scene, mode=mode, python=prefs).wait()
                    impacts.finish_preview(result, empty, play_sound=False)
                    if mode == "worker" and label.startswith("first"):
                        label = "first click + worker start"
                    dt = time.perf_counter() - t
                    hit = result["hits"][0]
                    print(f"  {mode:9s} {label:30s} {1000 * dt:7.0f} ms  (ray cast + Empty {1000 * t_click:.0f} ms, "
                          f"engine step {1000 * hit['seconds']:.0f} ms, {hit['modes']} modes, cache {hit['cache']})")
    finally:
        ext.unregister()
    return 0


def types_prefs(mode: str) -> str:
    """The engine Python for the worker mode (this interpreter), empty otherwise."""
    return sys.executable if mode == "worker" else ""


if __name__ == "__main__":
    if "--blender" in sys.argv[1:]:
        sys.exit(blender_click_latency())
    sys.exit(main())
