"""Shared pytest fixtures.

Keep this file small: one fixture per shared resource, each with a docstring.
"""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """Path to the project's shared real data (``../shared/data`` beside the repository).

    Tests that use it are skipped where that folder is absent; the product itself
    never reads it.
    """
    path = Path(__file__).resolve().parents[2] / "shared" / "data"
    if not path.is_dir():
        pytest.skip(f"shared data folder not found: {path}")
    return path


# --------------------------------------------------------------------------- Blender (bpy module)
# Used by the add-on, bridge, headless and extension tests (tests/test_addon_*,
# test_bridge_*, test_headless*, test_extension*). Each of those modules marks
# itself ``pytest.mark.bpy`` and resets the file with an autouse fixture.

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def ss_ext():
    """The repository root imported as the Soundstage extension package and registered.

    Blender imports the extension as ``bl_ext.<repo>.soundstage``; here it is loaded
    from its path as ``soundstage_addon`` by ``headless/render.py``'s loader, so the
    tests, the headless script and Blender share one copy of ``addon``/``bridge``.
    """
    pytest.importorskip("bpy")
    import importlib.util
    import sys

    spec = importlib.util.spec_from_file_location("ss_headless_render", REPO / "headless" / "render.py")
    render = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("ss_headless_render", render)
    spec.loader.exec_module(render)
    ext = render.load_extension()
    ext.register()
    yield ext
    ext.unregister()


@pytest.fixture(scope="session")
def ss(ss_ext):
    """Namespace of the bridge and add-on modules: ``ss.export``, ``ss.timeline``, ``ss.pipeline``..."""
    import importlib
    import types

    names = ["export", "timeline", "pipeline", "runner", "paths", "materials", "errors"]
    ns = types.SimpleNamespace(**{n: importlib.import_module(f"{ss_ext.__name__}.bridge.{n}") for n in names})
    ns.operators = importlib.import_module(f"{ss_ext.__name__}.addon.operators")
    ns.panels = importlib.import_module(f"{ss_ext.__name__}.addon.panels")
    ns.addon = importlib.import_module(f"{ss_ext.__name__}.addon")
    ns.ext = ss_ext
    return ns


@pytest.fixture
def ss_wav(tmp_path):
    """Factory writing a mono float WAV: ``ss_wav(name, seconds=1.0, rate=48000, kind="noise"|"tone", freq=1000)``."""
    import numpy as np
    import soundfile as sf

    def make(name="src.wav", seconds=1.0, rate=48000, kind="noise", freq=1000.0, seed=0, folder=None):
        n = int(round(seconds * rate))
        if kind == "tone":
            x = 0.3 * np.sin(2 * np.pi * freq * np.arange(n) / rate)
        else:
            x = 0.2 * np.random.default_rng(seed).standard_normal(n)
        path = Path(folder or tmp_path) / name
        sf.write(str(path), x.astype(np.float32), rate, subtype="FLOAT")
        return path

    return make


@pytest.fixture
def ss_scene(ss_wav):
    """Factory for a minimal bakeable scene in the current (reset) file.

    ``ss_scene(frames=24, fps=24)`` keeps the home file's camera (moved to the origin
    looking along +Y, ears level), deletes the cube and adds one speaker 2 m ahead
    playing a noise WAV. Returns ``(scene, camera, speaker)``.
    """
    import math

    import bpy

    def make(frames=24, fps=24, speaker_at=(0.0, 2.0, 0.0), sound=True, seconds=None):
        scene = bpy.context.scene
        for o in list(scene.objects):
            if o.type != "CAMERA":
                bpy.data.objects.remove(o)
        scene.render.fps, scene.render.fps_base = fps, 1.0
        scene.frame_start, scene.frame_end = 1, frames
        scene.frame_set(1)
        cam = scene.camera
        cam.location = (0.0, 0.0, 0.0)
        cam.rotation_euler = (math.pi / 2, 0.0, 0.0)
        data = bpy.data.speakers.new("Speaker")
        spk = bpy.data.objects.new("Speaker", data)
        scene.collection.objects.link(spk)
        spk.location = speaker_at
        if sound:
            wav = ss_wav("src.wav", seconds=seconds or frames / fps)
            data.sound = bpy.data.sounds.load(str(wav))
        return scene, cam, spk

    return make
