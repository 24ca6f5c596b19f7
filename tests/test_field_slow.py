"""Issue 5's "what it must show", on engine-simulated data (slow: minutes each on a 2-core CPU).

* A-NeRF on the held-out last lap of a 120 s synthetic recording walk: MAG at least
  40 % below Mono-Energy, ENV below Stereo-Energy, and worse without the direction
  input. To stay within a few minutes here, both runs skip the convolution refinement
  (which only improves the field); ``benchmarks/bench_field.py`` checks the same with
  the full small preset.
* The impulse-response field at held-out positions: T60 error under 2.5 %, C50 under
  0.6 dB, EDT under 0.016 s (AV-NeRF's SoundSpaces row: 2.47 %, 0.57 dB, 0.016 s).
  EDT as ISO 3382 fits it (a line through the 0 to -10 dB decay); the -10 dB crossing
  that the INRAS / NeRAF line's evaluation code uses is held to the same bound.

Training runs on one torch thread: on a shared 2-core machine two threads that
compete with another process slow training by an order of magnitude, while one
thread costs about 1.5x on an idle one (3-4 minutes for the IR fixture).
"""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

from soundstage.field import data as D  # noqa: E402
from soundstage.field.evaluate import evaluate  # noqa: E402
from soundstage.field.train import TrainOptions, train_fields  # noqa: E402

pytestmark = pytest.mark.slow


def test_anerf_beats_the_baselines_on_a_held_out_lap(tmp_path):
    D.synthetic_walk(tmp_path / "walk", seconds=120.0, seed=0)
    res = {}
    for name, kw in (("field", {}), ("no_direction", {"use_direction": False})):
        train_fields(tmp_path / "walk", tmp_path / f"{name}.pt", TrainOptions(conv=False, steps=1000, threads=1, **kw))
        res[name] = evaluate(tmp_path / f"{name}.pt", tmp_path / "walk")
    ev = res["field"]
    assert ev["clips"] >= 40 and ev["warning"] is None
    mag, env = ev["field"]["mag"], ev["field"]["env"]
    assert mag <= 0.6 * ev["mono_energy"]["mag"], (mag, ev["mono_energy"]["mag"])
    assert env < ev["stereo_energy"]["env"], (env, ev["stereo_energy"]["env"])
    # Also against the baselines given the same delay-compensated source the field uses.
    assert env < ev["aligned"]["stereo_energy"]["env"]
    assert mag <= 0.6 * ev["aligned"]["mono_energy"]["mag"]
    # Without the direction the difference mask cannot tell left from right on the held-out lap.
    assert res["no_direction"]["field"]["mag"] > 1.05 * mag


@pytest.fixture(scope="module")
def ir_scores(tmp_path_factory):
    d = tmp_path_factory.mktemp("irs")
    D.synthetic_irs(d / "irs", n_train=200, n_val=50, seed=0)
    train_fields(d / "irs", d / "ir.pt", TrainOptions(threads=1))
    ev = evaluate(d / "ir.pt", d / "irs")
    assert ev["responses"] == 50 and ev["skipped"] == 0
    return ev


def test_impulse_response_field_t60_and_c50_meet_the_soundspaces_row(ir_scores):
    assert ir_scores["t60_pct"] < 2.5, ir_scores
    assert ir_scores["c50_db"] < 0.6, ir_scores


def test_impulse_response_field_edt_meets_the_soundspaces_row(ir_scores):
    assert ir_scores["edt_s"] < 0.016, ir_scores
    assert ir_scores["edt_crossing_s"] < 0.016, ir_scores
