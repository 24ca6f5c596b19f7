"""Materials library, custom materials and ISO 9613-1 air absorption.

Oracles: pyroomacoustics' own materials table and its own band resampling code; the
published ISO 9613-1:1993 Table 1.
"""

from __future__ import annotations

import json
import math
import warnings
from pathlib import Path

import numpy as np
import pytest

from soundstage.errors import JobError
from soundstage.materials import (
    BANDS,
    Material,
    air_attenuation,
    library,
    material_names,
    resolve_material,
    scattering_names,
)

REPO = Path(__file__).resolve().parents[1]
WHERE = "room.materials.walls"


def _pra():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import pyroomacoustics as pra
    return pra


def _pra_bands(pra, **kwargs):
    """Coefficients of a pyroomacoustics Material resampled by pyroomacoustics onto 125..8000 Hz."""
    # fs = 16 kHz gives pyroomacoustics exactly the seven bands 125 Hz .. 8 kHz.
    bands = pra.acoustics.OctaveBandsFactory(fs=16000)
    assert tuple(bands.centers) == BANDS
    m = pra.Material(**kwargs)
    m.resample(bands)
    return np.asarray(m.absorption_coeffs, float), np.asarray(m.scattering_coeffs, float)


def test_library_matches_pyroomacoustics_table_for_every_name():
    pra = _pra()
    src = json.loads((Path(pra.__file__).parent / "data" / "materials.json").read_text(encoding="utf-8"))
    pra_abs = {n: e for cat in src["absorption"].values() for n, e in cat.items()}
    lib = library()
    assert set(lib) == set(pra_abs) and material_names() == list(pra_abs)
    extrapolated = 0
    for name, entry in pra_abs.items():
        absorption, scattering = _pra_bands(pra, energy_absorption=name)
        np.testing.assert_allclose(lib[name].absorption, absorption, atol=1e-12, err_msg=name)
        np.testing.assert_array_equal(lib[name].scattering, scattering)  # both zero
        # Measured bands are copied verbatim, not re-computed.
        k = len(entry["coeffs"])
        assert list(lib[name].absorption[:k]) == entry["coeffs"], name
        assert lib[name].description == entry["description"]
        extrapolated += k < len(BANDS)
    assert extrapolated > 0  # the table really has entries that needed extending


def test_scattering_entries_match_pyroomacoustics():
    pra = _pra()
    src = json.loads((Path(pra.__file__).parent / "data" / "materials.json").read_text(encoding="utf-8"))
    pra_sca = {n: e for cat in src["scattering"].values() for n, e in cat.items()}
    assert scattering_names() == list(pra_sca)
    for name in pra_sca:
        _, scattering = _pra_bands(pra, energy_absorption="hard_surface", scattering=name)
        m = resolve_material({"absorption": "hard_surface", "scattering": name}, WHERE)
        np.testing.assert_allclose(m.scattering, scattering, atol=1e-12, err_msg=name)


def test_committed_json_is_what_the_generator_produces(tmp_path):
    import subprocess
    import sys

    out = tmp_path / "materials.json"
    subprocess.run([sys.executable, str(REPO / "tools" / "gen_materials.py"), "--out", str(out)], check=True, capture_output=True)
    committed = json.loads((REPO / "soundstage" / "data" / "materials.json").read_text(encoding="utf-8"))
    assert json.loads(out.read_text(encoding="utf-8")) == committed
    assert "pyroomacoustics" in committed["provenance"]["source"]


def test_unknown_name_suggests_close_names():
    with pytest.raises(JobError) as err:
        resolve_material("brick", WHERE)
    msg = str(err.value)
    assert "\n" not in msg and msg.startswith(WHERE) and "'brickwork'" in msg
    with pytest.raises(JobError, match="'plasterboard'"):
        resolve_material("plasterbord", WHERE)


def test_library_name_resolves_to_shared_immutable_material():
    m = resolve_material("brickwork", WHERE)
    assert m is library()["brickwork"]
    assert m.absorption.shape == (7,) and m.scattering.shape == (7,)
    with pytest.raises(ValueError):
        m.absorption[0] = 0.5


def test_custom_material_round_trip():
    spec = {
        "absorption": {"125": 0.1, "250": 0.15, "500": 0.2, "1000": 0.3, "2000": 0.4, "4000": 0.5, "8000": 0.55},
        "scattering": 0.2,
    }
    m = resolve_material(spec, WHERE)
    np.testing.assert_array_equal(m.absorption, [0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.55])
    np.testing.assert_array_equal(m.scattering, np.full(7, 0.2))
    again = resolve_material(json.loads(json.dumps(m.to_json())), WHERE)
    assert again == m
    # A single number and a list of seven values are accepted too.
    assert np.all(resolve_material({"absorption": 0.3}, WHERE).absorption == 0.3)
    lst = resolve_material({"absorption": [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7], "scattering": [0] * 7}, WHERE)
    np.testing.assert_array_equal(lst.absorption, [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7])


def test_out_of_range_absorption_names_the_band():
    spec = {"absorption": {"125": 0.1, "250": 0.1, "500": 0.1, "1000": 1.2, "2000": 0.1, "4000": 0.1, "8000": 0.1}}
    with pytest.raises(JobError, match=r"room\.materials\.walls: absorption at 1000 Hz is 1\.2, outside \[0, 1\]"):
        resolve_material(spec, WHERE)
    with pytest.raises(JobError, match="scattering at 4000 Hz"):
        resolve_material({"absorption": 0.1, "scattering": [0, 0, 0, 0, 0, float("nan"), 0]}, WHERE)
    with pytest.raises(JobError, match="absorption"):
        resolve_material({"absorption": -0.1}, WHERE)


@pytest.mark.parametrize(
    "spec, pattern",
    [
        ({"absorption": {"125": 0.1, "250": 0.1}}, "missing band"),
        ({"absorption": {"125": 0.1, "250": 0.1, "500": 0.1, "1000": 0.1, "2000": 0.1, "4000": 0.1, "8000": 0.1, "16000": 0.1}}, "unknown band '16000'"),
        ({"absorption": [0.1, 0.2]}, "has 2 values"),
        ({"absorption": "0.3"}, "unknown absorption entry"),
        ({"absorption": True}, "must be a number"),
        ({"absorbtion": 0.3}, "unknown key"),
        ({"scattering": 0.3}, "needs 'absorption'"),
        (42, "library name"),
        (None, "library name"),
    ],
)
def test_bad_custom_materials_raise_one_line_job_error(spec, pattern):
    with pytest.raises(JobError, match=pattern) as err:
        resolve_material(spec, WHERE)
    assert str(err.value).startswith(WHERE + ":") and "\n" not in str(err.value)


def test_material_equality_and_hash():
    a = Material("x", np.full(7, 0.1))
    b = Material("x", [0.1] * 7)
    assert a == b and hash(a) == hash(b) and a != Material("x", np.full(7, 0.2))


# ISO 9613-1:1993, Table 1 (pure-tone attenuation coefficient in dB/km at 101.325 kPa),
# values as transcribed in public test scripts (the ITA-Toolbox's
# ita_atmospheric_absorption_iso9613 example, and an independent Python test-suite
# transcription of the scanned table). The table is computed at the exact one-third-octave
# midband frequencies 1000 * 10**(k/10) (ISO 9613-1 note to 6.4), so we evaluate there.
ISO_9613_1_TABLE_1 = [
    # (temperature degC, relative humidity %, nominal frequency Hz, dB/km)
    (20, 50, 50, 7.94e-2),
    (20, 50, 100, 2.94e-1),
    (20, 50, 125, 4.45e-1),
    (20, 70, 125, 3.39e-1),
    (20, 70, 200, 7.76e-1),
    (20, 10, 1000, 1.41e1),
    (20, 70, 1000, 4.98),
    (20, 80, 1000, 5.15),
    (20, 100, 1000, 5.42),
    (20, 10, 4000, 1.09e2),
    (20, 100, 4000, 1.94e1),
    (20, 15, 6300, 1.75e2),
    (20, 80, 10000, 1.05e2),
    (10, 70, 4000, 3.28e1),
    (30, 70, 4000, 2.31e1),
    (0, 10, 1000, 1.40e1),
    (-20, 10, 50, 5.89e-1),
    (50, 10, 8000, 1.55e2),
]


def _exact_midband(nominal: float) -> float:
    k = round(10 * math.log10(nominal / 1000.0))
    return 1000.0 * 10 ** (k / 10)


@pytest.mark.parametrize("temp, rh, f, db_per_km", ISO_9613_1_TABLE_1)
def test_air_attenuation_matches_iso_9613_1_table(temp, rh, f, db_per_km):
    m = air_attenuation(_exact_midband(f), temperature_c=temp, relative_humidity=rh)
    got_db_per_km = 10 * math.log10(math.e) * float(m) * 1000.0
    assert got_db_per_km == pytest.approx(db_per_km, rel=0.05)


def test_air_attenuation_is_an_energy_coefficient_and_vectorised():
    f = np.array([[125.0, 1000.0], [4000.0, 8000.0]])
    m = air_attenuation(f)
    assert m.shape == (2, 2) and np.all(np.diff(m.ravel()) > 0)
    # 1 kHz, 20 degC, 50 %: ISO gives about 4.7 dB/km, i.e. energy decays to 10**(-0.47) over 100 m.
    energy_after_100m = math.exp(-air_attenuation(1000.0) * 100)
    assert 10 * math.log10(energy_after_100m) == pytest.approx(-0.466, abs=0.03)
