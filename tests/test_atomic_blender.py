"""Esc in Blender mid-bake keeps the previous track, and a resumed bake continues from the finished chunks.

Drives the bridge's ``BakeSession`` as the modal Bake operator does (poll,
then ``cancel`` for Esc) with the engine in this process; the chunk options
reach the engine through the environment, as they do from headless/render.py.
"""

from __future__ import annotations

import json
import time

import numpy as np
import pytest

bpy = pytest.importorskip("bpy")
sf = pytest.importorskip("soundfile")

pytestmark = pytest.mark.bpy


@pytest.fixture(autouse=True)
def _reset(ss_ext):
    bpy.ops.wm.read_homefile(app_template="")


def _bake(ss, scene, out):
    session = ss.pipeline.BakeSession(scene, out_dir=out, fmt="binaural", mode="inprocess")
    session.run()
    return session


def test_esc_keeps_the_track_and_resume_continues(ss, ss_scene, tmp_path, monkeypatch):
    monkeypatch.setenv("SOUNDSTAGE_CHUNK_SECONDS", "0.25")
    monkeypatch.setenv("SOUNDSTAGE_WORK_DIR", str(tmp_path / "work"))
    monkeypatch.setenv("SOUNDSTAGE_CACHE", "off")  # resume from the work folder alone
    monkeypatch.delenv("SOUNDSTAGE_RESUME", raising=False)
    scene, cam, spk = ss_scene(frames=96)  # 4 s: 16 chunks
    first = _bake(ss, scene, tmp_path / "renders")
    wav = first.tracks[0].final
    before = wav.read_bytes()

    spk.location = (1.5, 2.0, 0.0)  # the next bake differs
    session = ss.pipeline.BakeSession(scene, out_dir=tmp_path / "renders", fmt="binaural", mode="inprocess")
    session.prepare()
    session.start()
    deadline = time.monotonic() + 120
    while session.poll() == "running" and time.monotonic() < deadline:
        if session.fraction > 0.3:  # about five of the 16 parts are done
            session.cancel()  # Esc
        time.sleep(0.005)
    assert session.state == "cancelled", session.state
    with pytest.raises(ss.errors.BakeCancelled):
        session.finish()
    assert wav.read_bytes() == before  # byte for byte

    monkeypatch.setenv("SOUNDSTAGE_RESUME", "1")
    resumed = _bake(ss, scene, tmp_path / "renders")
    info = json.loads(wav.with_suffix(".json").read_text())
    assert info["chunks"]["count"] == 16 and info["chunks"]["resumed"] >= 3
    assert info["chunks"]["resumed"] + info["chunks"]["rendered"] == 16
    assert resumed.state == "finished"
    monkeypatch.delenv("SOUNDSTAGE_RESUME")
    fresh = _bake(ss, scene, tmp_path / "fresh")
    np.testing.assert_array_equal(sf.read(wav, dtype="float32")[0],
                                  sf.read(fresh.tracks[0].final, dtype="float32")[0])
