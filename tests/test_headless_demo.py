"""The sample scene, built and baked the way ``make demo`` does (in a temporary folder).

Oracle: interaural level difference at high frequencies. The drone (noise in
3-9 kHz) crosses from the camera's left to its right; the radio plays below
2 kHz, so the 3.5-9 kHz band carries the drone alone. Its left/right level
difference must go from clearly positive to clearly negative.
"""

from __future__ import annotations

import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

bpy = pytest.importorskip("bpy")
sf = pytest.importorskip("soundfile")
pytest.importorskip("soundstage.bake")

pytestmark = pytest.mark.bpy
REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def _reset(ss_ext):
    bpy.ops.wm.read_homefile(app_template="")


def _band_ild_db(x, rate, lo=3500.0, hi=9000.0):
    spec = np.fft.rfft(x, axis=0)
    f = np.fft.rfftfreq(len(x), 1 / rate)
    e = np.sum(np.abs(spec[(f > lo) & (f < hi)]) ** 2, axis=0)
    return 10 * math.log10(e[0] / e[1])


def test_demo_track_follows_the_camera(tmp_path):
    blend = tmp_path / "sample_room.blend"
    r = subprocess.run([sys.executable, str(REPO / "samples" / "build_sample_scene.py"), "--out", str(blend),
                        "--seconds", "3"], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "audio" / "radio.wav").is_file() and (tmp_path / "audio" / "drone.wav").is_file()
    r = subprocess.run([sys.executable, str(REPO / "headless" / "render.py"), str(blend), "--",
                        "--out", str(tmp_path / "renders"), "--save"], capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr
    wav = tmp_path / "renders" / "SampleRoom_Camera_binaural.wav"
    assert str(wav) in r.stderr  # it says where the files went
    x, rate = sf.read(str(wav))
    assert x.shape == (3 * rate, 2)
    third = len(x) // 3
    first, last = _band_ild_db(x[:third], rate), _band_ild_db(x[-third:], rate)
    assert first > 2.0, f"drone on the camera's left should be louder on the left (ILD {first:.1f} dB)"
    assert last < -2.0, f"drone on the camera's right should be louder on the right (ILD {last:.1f} dB)"

    # The saved .blend has the strip, at the first frame, as long as the range.
    bpy.ops.wm.open_mainfile(filepath=str(blend))
    scene = bpy.context.scene
    assert scene.objects["Room"].soundstage.acoustic
    assert bpy.data.materials["Ceiling"].soundstage.library_name == "ceiling_fissured_tile"
    if not bpy.app.build_options.audaspace:
        pytest.skip("this bpy build has no Audaspace: the track is baked but no strip can be saved")
    se = scene.sequence_editor
    strips = list(se.strips_all if hasattr(se, "strips_all") else se.sequences_all)
    (strip,) = [s for s in strips if s.get("soundstage") == "Camera|binaural"]
    assert strip.frame_final_start == scene.frame_start
    assert strip.frame_final_duration == scene.frame_end - scene.frame_start + 1
    assert Path(bpy.path.abspath(strip.sound.filepath)).resolve() == wav.resolve()
