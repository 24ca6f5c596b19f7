"""Audio reading, resampling and atomic writing.

Oracles: soundfile's own decoding of the real files in shared/data/audio-edge-cases,
an analytic sine for the resampler, and the file system for the atomic writer.
"""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
import soundfile as sf

from soundstage import audio_io
from soundstage.audio_io import atomic_path, read_audio, resample, write_json, write_wav
from soundstage.errors import AudioError, SoundstageError

EDGE = "audio-edge-cases"


@pytest.fixture
def edge(shared_data):
    folder = shared_data / EDGE
    if not folder.is_dir():
        pytest.skip(f"{folder} not found")
    return folder


def _temps(folder):
    return [p.name for p in folder.iterdir() if p.name.startswith(audio_io.TEMP_PREFIX)]


# --- reading real files -------------------------------------------------------------------


@pytest.mark.parametrize(
    "name, channels",
    [
        ("signed_24bit.wav", 1),
        ("mono_int24.wav", 1),
        ("mono_int32.wav", 1),
        ("mono_float64.wav", 1),
        ("ms_adpcm.wav", 1),
        ("stereo_24bit.WAV", 2),
        ("stereo_impulse_response.wav", 2),
        ("rir48000.wav", 1),
        ("impulse_response_0.wav", 1),
        ("digital_silence.wav", 1),
        ("almost_silent.wav", 1),
        ("silence.wav", 1),
    ],
)
def test_real_files_read_as_float32_mono_matching_soundfile(edge, name, channels):
    path = edge / name
    ref, ref_rate = sf.read(str(path), dtype="float64", always_2d=True)
    assert ref.shape[1] == channels
    x, rate = read_audio(path)
    assert x.dtype == np.float32 and x.ndim == 1 and rate == ref_rate
    # Multichannel files are mixed to mono by averaging the channels.
    np.testing.assert_allclose(x, ref.mean(axis=1), atol=1e-7)


def test_digital_silence_is_not_an_error(edge):
    x, _ = read_audio(edge / "digital_silence.wav")
    assert x.size > 0 and not np.any(x)


def test_read_with_resampling_to_target_rate(edge):
    info = sf.info(str(edge / "ms_adpcm.wav"))
    x, rate = read_audio(edge / "ms_adpcm.wav", 48000)
    assert rate == 48000
    assert abs(x.size - info.frames * 48000 / info.samplerate) <= 2


# --- bad inputs -------------------------------------------------------------------------


def test_missing_file_names_path_and_label(tmp_path):
    with pytest.raises(AudioError) as err:
        read_audio(tmp_path / "nope.wav", label="source 'Speaker'")
    msg = str(err.value)
    assert "source 'Speaker'" in msg and "nope.wav" in msg and "not found" in msg and "\n" not in msg


@pytest.mark.parametrize("payload", [b"", b"this is not audio at all" * 40, os.urandom(4096)])
def test_corrupt_or_unsupported_bytes(tmp_path, payload):
    path = tmp_path / "broken.wav"
    path.write_bytes(payload)
    with pytest.raises(AudioError, match=r"broken\.wav.*convert it to WAV") as err:
        read_audio(path)
    assert "\n" not in str(err.value)


def test_folder_is_not_a_file(tmp_path):
    with pytest.raises(AudioError, match="not a file"):
        read_audio(tmp_path)


@pytest.mark.parametrize("name", ["rir48000.wav", "ms_adpcm.wav", "stereo_24bit.WAV", "digital_silence.wav", "signed_24bit.wav"])
@pytest.mark.parametrize("fraction", [0.5, 0.97])
def test_truncated_real_files_are_detected(edge, tmp_path, name, fraction):
    data = (edge / name).read_bytes()
    cut = tmp_path / name
    cut.write_bytes(data[: int(len(data) * fraction)])
    # libsndfile itself opens these without complaint and just reports fewer frames.
    assert 0 < sf.info(str(cut)).frames < sf.info(str(edge / name)).frames
    with pytest.raises(AudioError, match="truncated") as err:
        read_audio(cut, label="source 'Cut'")
    assert name in str(err.value) and "source 'Cut'" in str(err.value)


def test_one_missing_frame_is_detected(edge, tmp_path):
    # mono_int24.wav ends with its data chunk: dropping the last byte loses one 24-bit frame.
    data = (edge / "mono_int24.wav").read_bytes()
    cut = tmp_path / "short.wav"
    cut.write_bytes(data[:-1])
    with pytest.raises(AudioError, match="truncated"):
        read_audio(cut)


@pytest.mark.parametrize("fmt, subtype, ext", [("FLAC", "PCM_24", "flac"), ("OGG", "VORBIS", "ogg"), ("AIFF", "PCM_24", "aiff"), ("RF64", "FLOAT", "rf64"), ("W64", "FLOAT", "w64")])
def test_truncated_other_containers_are_detected(edge, tmp_path, fmt, subtype, ext):
    x, rate = sf.read(str(edge / "rir48000.wav"))
    full = tmp_path / f"full.{ext}"
    sf.write(str(full), x, rate, format=fmt, subtype=subtype)
    assert read_audio(full)[0].size == x.size
    cut = tmp_path / f"cut.{ext}"
    cut.write_bytes(full.read_bytes()[: int(full.stat().st_size * 0.6)])
    with pytest.raises(AudioError, match="truncated|damaged"):
        read_audio(cut)


def test_empty_file_with_valid_header(tmp_path):
    path = tmp_path / "empty.wav"
    sf.write(str(path), np.zeros((0, 1)), 48000, subtype="PCM_16")
    with pytest.raises(AudioError, match="no samples"):
        read_audio(path)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_samples_name_the_first_bad_time(tmp_path, bad):
    x = np.zeros((48000, 2))
    x[36000, 1] = bad  # 0.75 s, second channel
    x[40000, 0] = bad
    path = tmp_path / "nan.wav"
    sf.write(str(path), x, 48000, subtype="FLOAT")
    with pytest.raises(AudioError, match=r"nan\.wav.*first at 0\.75 s"):
        read_audio(path)


@pytest.mark.parametrize("rate", [4000, 384000])
def test_sample_rate_out_of_range(tmp_path, rate):
    path = tmp_path / f"r{rate}.wav"
    sf.write(str(path), np.zeros(1000), rate, subtype="PCM_16")
    with pytest.raises(AudioError, match=f"sample rate {rate} Hz, outside the supported 8000..192000 Hz"):
        read_audio(path)


# --- resampling -------------------------------------------------------------------------


def _fit_sine(x: np.ndarray, rate: float, freq: float) -> tuple[float, float]:
    """Least-squares amplitude of a sine at ``freq`` and the residual level relative to it (dB)."""
    t = np.arange(x.size) / rate
    basis = np.stack([np.sin(2 * np.pi * freq * t), np.cos(2 * np.pi * freq * t)], axis=1)
    coef, *_ = np.linalg.lstsq(basis, x, rcond=None)
    amp = float(np.hypot(*coef))
    resid = x - basis @ coef
    return amp, 20 * np.log10(np.sqrt(np.mean(resid**2)) * np.sqrt(2) / amp)


def test_resampled_sine_keeps_frequency_and_amplitude():
    rate_in, rate_out, f, amp = 44100, 48000, 1000.0, 0.5
    t = np.arange(2 * rate_in) / rate_in
    x = amp * np.sin(2 * np.pi * f * t)
    y = resample(x, rate_in, rate_out)
    assert abs(y.size - 2 * rate_out) <= 1
    core = y[rate_out // 4 : -rate_out // 4]  # away from the edges' filter transients
    offset = rate_out // 4
    got_amp, resid_db = _fit_sine(core, rate_out, f)
    # The fit is at exactly 1 kHz and time 0 = sample 0: a frequency or timing error would
    # leave a large residual. soxr's VHQ leaves about -187 dB here, HQ -134 dB, LQ -119 dB.
    assert resid_db < -140
    assert abs(20 * np.log10(got_amp / amp)) < 0.1
    # And the phase lines up with the original time axis (no delay from the filter).
    t_out = (np.arange(core.size) + offset) / rate_out
    np.testing.assert_allclose(core, amp * np.sin(2 * np.pi * f * t_out), atol=1e-4)


def test_resample_multichannel_and_dtype():
    x = np.random.default_rng(0).standard_normal((4410, 3)).astype(np.float32)
    y = resample(x, 44100, 48000)
    assert y.shape[1] == 3 and y.dtype == np.float32 and abs(y.shape[0] - 4800) <= 1
    np.testing.assert_allclose(y[:, 1], resample(x[:, 1], 44100, 48000), atol=1e-6)
    assert resample(x, 48000, 48000) is x


# --- atomic writing ---------------------------------------------------------------------


def test_write_wav_round_trip_and_no_temp_left(tmp_path):
    data = np.random.default_rng(1).uniform(-1, 1, (1000, 2)).astype(np.float32)
    path = tmp_path / "out.wav"
    assert write_wav(path, data, 48000) == "WAV"
    back, rate = sf.read(str(path), dtype="float32", always_2d=True)
    assert rate == 48000 and sf.info(str(path)).subtype == "FLOAT" and sf.info(str(path)).format == "WAV"
    np.testing.assert_array_equal(back, data)
    assert _temps(tmp_path) == []
    write_wav(tmp_path / "mono.wav", data[:, 0], 22050)
    assert sf.info(str(tmp_path / "mono.wav")).channels == 1


def test_write_wav_switches_to_rf64_above_threshold(tmp_path):
    data = np.zeros((100, 2), np.float32)  # 800 bytes of samples
    assert audio_io.wav_container(800, max_riff_bytes=800) == "WAV"
    assert audio_io.wav_container(801, max_riff_bytes=800) == "RF64"
    assert write_wav(tmp_path / "small.wav", data, 48000, max_riff_bytes=800) == "WAV"
    assert write_wav(tmp_path / "big.wav", data, 48000, max_riff_bytes=799) == "RF64"
    assert sf.info(str(tmp_path / "big.wav")).format == "RF64"
    assert read_audio(tmp_path / "big.wav")[0].size == 100
    # The default threshold is what a 4 GiB RIFF can hold.
    assert audio_io.wav_container(2**32) == "RF64" and audio_io.wav_container(2**31) == "WAV"


def test_failure_mid_write_keeps_previous_file(tmp_path, monkeypatch):
    path = tmp_path / "out.wav"
    old = np.full((500, 2), 0.25, np.float32)
    write_wav(path, old, 48000)
    before = path.read_bytes()

    real_write = sf.SoundFile.write
    calls = {"n": 0}

    def failing_write(self, data):
        calls["n"] += 1
        if calls["n"] == 2:
            raise OSError(28, "No space left on device")
        return real_write(self, data)

    monkeypatch.setattr(sf.SoundFile, "write", failing_write)
    with pytest.raises(OSError, match="No space"):
        write_wav(path, np.zeros((1000, 2), np.float32), 48000, block_frames=100)
    assert calls["n"] == 2  # it really failed mid-way, after writing a block
    assert path.read_bytes() == before
    assert _temps(tmp_path) == []


def test_atomic_path_exception_removes_temp(tmp_path):
    target = tmp_path / "x.json"
    target.write_text("old")
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            assert tmp.parent == tmp_path and tmp.name.startswith(".soundstage-tmp-")
            tmp.write_text("half")
            raise RuntimeError("boom")
    assert target.read_text() == "old" and _temps(tmp_path) == []


def test_written_file_gets_normal_permissions(tmp_path):
    write_json(tmp_path / "a.json", {"a": 1})
    mode = (tmp_path / "a.json").stat().st_mode & 0o777
    assert mode == 0o666 & ~audio_io._UMASK


def test_missing_target_folder_names_it(tmp_path):
    with pytest.raises(SoundstageError, match="folder .*no_such_dir.* does not exist") as err:
        write_wav(tmp_path / "no_such_dir" / "out.wav", np.zeros(10, np.float32), 48000)
    assert "\n" not in str(err.value)
    with pytest.raises(SoundstageError, match="no_such_dir"):
        write_json(tmp_path / "no_such_dir" / "out.json", {})


@pytest.mark.skipif(hasattr(os, "geteuid") and os.geteuid() == 0, reason="root can write anywhere")
def test_unwritable_folder_names_it(tmp_path):
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o555)
    try:
        with pytest.raises(SoundstageError, match="not writable"):
            write_json(ro / "x.json", {})
    finally:
        ro.chmod(0o755)


def test_write_json_converts_numpy_and_refuses_nan(tmp_path):
    path = tmp_path / "side.json"
    write_json(path, {"peak": np.float32(0.5), "frames": np.int64(10), "levels": np.array([1.0, 2.0]), "path": tmp_path})
    text = path.read_text()
    assert text.endswith("\n") and text.startswith("{\n  ")
    assert json.loads(text) == {"peak": 0.5, "frames": 10, "levels": [1.0, 2.0], "path": str(tmp_path)}
    with pytest.raises(ValueError):
        write_json(path, {"peak": float("nan")})
    assert json.loads(path.read_text())["frames"] == 10 and _temps(tmp_path) == []


def test_write_wav_rejects_non_finite(tmp_path):
    with pytest.raises(ValueError):
        write_wav(tmp_path / "x.wav", np.array([0.0, np.nan]), 48000)
    assert not (tmp_path / "x.wav").exists() and _temps(tmp_path) == []
