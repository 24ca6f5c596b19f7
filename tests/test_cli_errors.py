"""Bad input: exit status 2, exactly one line on stderr naming the problem, no output file."""

import json
import shutil
import subprocess
import sys

import numpy as np
import pytest
import soundfile as sf

from jobkit import camera_matrix, make_job, write_impulse
from soundstage.cli import main

SHOEBOX = {"type": "shoebox", "min": [0, 0, 0], "max": [6, 5, 3], "material": "brickwork"}


def run_cli(tmp_path, job, capsys):
    path = tmp_path / "job.json"
    path.write_text(json.dumps(job))
    code = main(["bake", str(path), "--quiet"])
    err = capsys.readouterr().err.strip().splitlines()
    return code, err


def assert_clean_failure(tmp_path, job, capsys, *needles):
    code, err = run_cli(tmp_path, job, capsys)
    assert code == 2
    assert len(err) == 1 and err[0].startswith("error: "), err
    for n in needles:
        assert n.lower() in err[0].lower(), (n, err[0])
    out = tmp_path / "out.wav"
    assert not out.exists() and not out.with_suffix(".json").exists()
    assert not list(tmp_path.glob(".soundstage-tmp-*"))
    return err[0]


@pytest.fixture
def good(tmp_path):
    imp = write_impulse(tmp_path / "imp.wav", seconds=0.5)
    return make_job(imp, [3, 2, 1.5], camera_matrix([1, 1, 1.5]), room=dict(SHOEBOX), frames=12,
                    out=tmp_path / "out.wav")


def test_good_job_writes_wav_and_sidecar(tmp_path, good, capsys):
    code, err = run_cli(tmp_path, good, capsys)
    assert code == 0, err
    data, fs = sf.read(tmp_path / "out.wav")
    assert fs == 48000 and data.shape == (int(12 / 24 * 48000), 4)
    side = json.loads((tmp_path / "out.json").read_text())
    assert side["channels"] == ["ACN0", "ACN1", "ACN2", "ACN3"] and side["frames"] == len(data)
    assert set(side) >= {"format", "sample_rate", "peak", "sources", "wall_time_s", "realtime_factor", "backend"}


def test_missing_audio(tmp_path, good, capsys):
    good["sources"][0]["audio"] = str(tmp_path / "nope.wav")
    assert_clean_failure(tmp_path, good, capsys, "nope.wav", "Speaker")


@pytest.mark.parametrize("content", [b"", b"RIFF\x10\x00\x00\x00WAVEjunkjunkjunk", bytes(range(256)) * 8])
def test_corrupt_or_empty_bytes(tmp_path, good, capsys, content):
    p = tmp_path / "bad.wav"
    p.write_bytes(content)
    good["sources"][0]["audio"] = str(p)
    assert_clean_failure(tmp_path, good, capsys, "bad.wav")


def test_truncated_audio(tmp_path, good, capsys, shared_data):
    src = shared_data / "audio-edge-cases" / "rir48000.wav"
    raw = src.read_bytes()
    p = tmp_path / "cut.wav"
    p.write_bytes(raw[: len(raw) // 2])
    good["sources"][0]["audio"] = str(p)
    assert_clean_failure(tmp_path, good, capsys, "cut.wav", "truncated")


def test_zero_length_audio(tmp_path, good, capsys):
    p = tmp_path / "empty.wav"
    sf.write(p, np.zeros(0, np.float32), 48000, subtype="FLOAT")
    good["sources"][0]["audio"] = str(p)
    assert_clean_failure(tmp_path, good, capsys, "empty.wav", "empty")


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_nan_or_inf_samples(tmp_path, good, capsys, bad):
    x = np.zeros(1000, np.float32)
    x[500] = bad
    p = tmp_path / "nan.wav"
    sf.write(p, x, 48000, subtype="FLOAT")
    good["sources"][0]["audio"] = str(p)
    assert_clean_failure(tmp_path, good, capsys, "nan.wav")


@pytest.mark.parametrize("rate", [4000, 384000])
def test_audio_rate_out_of_range(tmp_path, good, capsys, rate):
    p = tmp_path / "rate.wav"
    sf.write(p, np.zeros(100, np.float32), rate, subtype="FLOAT")
    good["sources"][0]["audio"] = str(p)
    assert_clean_failure(tmp_path, good, capsys, "rate.wav", str(rate))


@pytest.mark.parametrize("rate", [4000, 250000])
def test_job_rate_out_of_range(tmp_path, good, capsys, rate):
    good["sample_rate"] = rate
    assert_clean_failure(tmp_path, good, capsys, "sample_rate")


def test_source_outside_room(tmp_path, good, capsys):
    good["sources"][0]["position"] = [7, 2, 1.5]
    assert_clean_failure(tmp_path, good, capsys, "Speaker", "outside the room")


def test_source_on_top_of_listener(tmp_path, good, capsys):
    good["sources"][0]["position"] = [1.0, 1.02, 1.5]
    assert_clean_failure(tmp_path, good, capsys, "Speaker", "on top of the listener")


@pytest.mark.parametrize("a", [1.5, -0.1])
def test_absorption_out_of_range(tmp_path, good, capsys, a):
    good["room"]["material"] = {"absorption": a}
    assert_clean_failure(tmp_path, good, capsys, "room.material")


def test_non_finite_matrix(tmp_path, good, capsys):
    m = good["listener"]["matrix_world"]
    m[3] = float("nan")
    path = tmp_path / "job.json"
    path.write_text(json.dumps(good).replace("NaN", "NaN"))
    assert_clean_failure(tmp_path, good, capsys, "matrix_world", "non-finite")


def test_unknown_material_suggests_names(tmp_path, good, capsys):
    good["room"]["material"] = "brick"
    line = assert_clean_failure(tmp_path, good, capsys, "brick")
    assert "brickwork" in line


def test_junk_sofa(tmp_path, good, capsys):
    p = tmp_path / "junk.sofa"
    p.write_bytes(b"not a sofa file at all" * 10)
    good["listener"]["hrtf"] = str(p)
    good["output"]["format"] = "binaural"
    assert_clean_failure(tmp_path, good, capsys, "junk.sofa")


def test_unsupported_sofa_convention(tmp_path, good, capsys):
    sofar = pytest.importorskip("sofar")
    s = sofar.Sofa("SimpleFreeFieldHRTF")
    s.Data_Real = np.ones((2, 2, 3))
    s.Data_Imag = np.zeros((2, 2, 3))
    s.N = np.array([0.0, 100.0, 200.0])
    s.SourcePosition = np.array([[0, 0, 1.0], [90, 0, 1.0]])
    p = tmp_path / "tf.sofa"
    sofar.write_sofa(str(p), s)
    good["listener"]["hrtf"] = str(p)
    good["output"]["format"] = "binaural"
    assert_clean_failure(tmp_path, good, capsys, "tf.sofa", "SimpleFreeFieldHRTF")


def test_unknown_field_and_bad_json(tmp_path, good, capsys):
    good["sourcez"] = []
    assert_clean_failure(tmp_path, good, capsys, "sourcez")
    p = tmp_path / "job.json"
    p.write_text("{not json")
    assert main(["bake", str(p)]) == 2
    assert capsys.readouterr().err.count("\n") == 1


def test_installed_command_exit_code(tmp_path, good):
    """The console script itself: exit 2, one line, no traceback."""
    exe = shutil.which("soundstage") or str(__import__("pathlib").Path(sys.executable).parent / "soundstage")
    good["sources"][0]["audio"] = str(tmp_path / "missing.wav")
    p = tmp_path / "job.json"
    p.write_text(json.dumps(good))
    r = subprocess.run([exe, "bake", str(p)], capture_output=True, text=True)
    assert r.returncode == 2
    assert r.stderr.count("\n") == 1 and "Traceback" not in r.stderr
