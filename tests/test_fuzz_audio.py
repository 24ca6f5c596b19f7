"""Fuzz pass over the audio reader: damaged files load or are refused in one line, never crash.

Seeds: small valid files in every container and sample format the engine
takes (WAV float/PCM 16/24, RF64-free WAV, FLAC, Ogg Vorbis, AIFF, W64) and,
where present, the project's real edge-case recordings. 400 seeded mutations
(tests/fuzzkit.py), each read by ``read_audio`` in a child process.
"""

from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf

from fuzzkit import crashes, run_reader, summary, write_cases

CASES = 400
_SETUP = """
    import numpy as np
    from soundstage.audio_io import read_audio
    def load(path):
        x = read_audio(path, 48000)[0]
        assert x.dtype.name == "float32" and x.ndim == 1 and len(x) > 0
        assert np.isfinite(x).all()
"""


def _seeds(folder, shared_root):
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    x = (0.3 * rng.standard_normal((2400, 2))).astype(np.float32)
    specs = [("f32.wav", "WAV", "FLOAT", 1), ("pcm16.wav", "WAV", "PCM_16", 2), ("pcm24.wav", "WAV", "PCM_24", 1),
             ("x.flac", "FLAC", "PCM_16", 2), ("x.ogg", "OGG", "VORBIS", 1), ("x.aiff", "AIFF", "PCM_16", 2),
             ("x.w64", "W64", "FLOAT", 1)]
    seeds = {}
    for name, fmt, sub, ch in specs:
        p = folder / name
        sf.write(p, x[:, :ch], 24000, format=fmt, subtype=sub)
        seeds[name] = p.read_bytes()
    edge = shared_root / "audio-edge-cases"
    if edge.is_dir():
        for p in sorted(edge.iterdir()):
            if p.stat().st_size < 250_000:
                seeds[p.name] = p.read_bytes()
    return seeds


def test_read_audio_never_crashes_on_damaged_files(tmp_path):
    from pathlib import Path

    shared = Path(__file__).resolve().parents[2] / "shared" / "data"
    seeds = _seeds(tmp_path / "seeds", shared)
    files = write_cases(seeds, CASES, tmp_path / "cases", seed=6)
    made = sorted((tmp_path / "seeds").iterdir())
    assert {r["outcome"] for r in run_reader(_SETUP, made)} == {"loaded"}  # the fuzz starts from good files
    records = run_reader(_SETUP, files)
    print(f"read_audio over {len(files)} damaged files: {summary(records)}")
    assert len(records) == len(files)
    bad = crashes(records)
    assert not bad, "\n\n".join(bad[:5])
