"""Fuzz pass over the SOFA (HRTF) reader: damaged files load or are refused in one line, never crash.

Seeds: a small SimpleFreeFieldHRIR file derived from the shipped MIT KEMAR
set (every 8th direction, 128 taps; written uncompressed and compressed) and
the shipped file itself. Seeded mutations (tests/fuzzkit.py) are loaded by
``load_hrtf`` in a child process, so a crash inside HDF5/netCDF fails the test
with the file named instead of killing pytest. A file that loads must give
finite responses.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from fuzzkit import crashes, run_reader, summary, write_cases

SMALL_CASES = 150
FULL_CASES = 10


def _small_sofa(folder):
    import sofar

    from soundstage.hrtf import _default_path

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        s = sofar.read_sofa(str(_default_path()), verify=False, verbose=False)
        idx = np.arange(0, s.Data_IR.shape[0], 8)
        s.Data_IR = s.Data_IR[idx, :, :128]
        s.SourcePosition = s.SourcePosition[idx]
        s.Data_Delay = np.zeros((1, 2))
        seeds = {}
        for name, comp in (("raw.sofa", 0), ("zip.sofa", 4)):
            sofar.write_sofa(str(folder / name), s, compression=comp)
            seeds[name] = (folder / name).read_bytes()
    return seeds


_SETUP = """
    import numpy as np
    from soundstage.hrtf import load_hrtf
    def load(path):
        h = load_hrtf(path, 48000)
        assert np.isfinite(h.hrirs).all() and np.isfinite(h.ear_delays).all(), "non-finite HRIRs"
"""


def test_load_hrtf_never_crashes_on_damaged_files(tmp_path, monkeypatch):
    from soundstage.hrtf import _default_path

    monkeypatch.setenv("SOUNDSTAGE_CACHE_DIR", str(tmp_path / "cache"))  # no damaged HRTF reaches a real cache
    (tmp_path / "seeds").mkdir()
    seeds = _small_sofa(tmp_path / "seeds")
    assert {r["outcome"] for r in run_reader(_SETUP, [tmp_path / "seeds" / n for n in seeds])} == {"loaded"}
    small = write_cases(seeds, SMALL_CASES, tmp_path / "small", seed=60)
    full = write_cases({"kemar.sofa": _default_path().read_bytes()}, FULL_CASES, tmp_path / "full", seed=61)
    records = run_reader(_SETUP, small + full)
    print(f"load_hrtf over {len(small) + len(full)} damaged files: {summary(records)}")
    assert len(records) == len(small) + len(full)
    bad = crashes(records)
    assert not bad, "\n\n".join(bad[:5])


STRUCTURED_CASES = 80


def _structured(folder, n, seed):
    """Well-formed SOFA files with odd contents: the damage the container check cannot see."""
    import sofar
    from sofar.io import _write_sofa  # sofar's writer without its consistency check (the point here)

    import copy

    from soundstage.hrtf import _default_path

    rng = np.random.default_rng(seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        base = sofar.read_sofa(str(_default_path()), verify=False, verbose=False)
    idx = np.arange(0, base.Data_IR.shape[0], 8)
    base.Data_IR = base.Data_IR[idx, :, :128]
    base.SourcePosition = base.SourcePosition[idx]
    base.Data_Delay = np.zeros((1, 2))
    files = []
    for i in range(n):
        s = copy.deepcopy(base)
        s.protected = False  # lets read-only fields (the convention name) be changed
        for _ in range(int(rng.integers(1, 3))):
            k = int(rng.integers(0, 12))
            if k == 0:
                s.Data_SamplingRate = float(rng.choice([0.0, -44100.0, np.nan, np.inf, 1.0, 1e7, 8000.0]))
            elif k == 1:
                a = s.Data_IR
                a.flat[rng.integers(0, a.size, 5)] = rng.choice([np.nan, np.inf, -np.inf, 1e30])
            elif k == 2:
                s.Data_IR = np.zeros_like(s.Data_IR)
            elif k == 3:
                s.Data_IR = s.Data_IR[:, :1] if rng.random() < 0.5 else np.concatenate([s.Data_IR, s.Data_IR[:, :1]], 1)
            elif k == 4:
                s.Data_IR = s.Data_IR[:, :, : int(rng.choice([1, 2, 3]))]
            elif k == 5:
                s.SourcePosition[rng.integers(0, len(s.SourcePosition))] = np.nan
            elif k == 6:
                s.SourcePosition[:] = s.SourcePosition[0]  # every direction the same
            elif k == 7:
                keep = int(rng.choice([1, 2, 3]))
                s.SourcePosition, s.Data_IR = s.SourcePosition[:keep], s.Data_IR[:keep]
            elif k == 8:
                s.SourcePosition[:, 2] = 0.0  # radius zero
                s.SourcePosition[:, 1] = rng.uniform(-400, 400, len(s.SourcePosition))  # elevation out of range
            elif k == 9:
                s.Data_Delay = np.array([[float(rng.choice([1e9, -50.0, np.nan])), 0.0]])
            elif k == 10:
                s.ReceiverPosition = np.zeros_like(np.asarray(s.ReceiverPosition, float))  # ears in one place
            else:
                s.GLOBAL_SOFAConventions = str(rng.choice(["GeneralFIR", "SimpleFreeFieldHRTF", "", "X" * 300]))
        p = folder / f"s{i:03d}.sofa"
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                s.verify(issue_handling="ignore")  # fills in sofar's dimension table; problems are kept
                _write_sofa(str(p), s, compression=0, verify=False)
        except Exception:  # sofar cannot even write it (e.g. dimensions that disagree): nothing to test
            continue
        files.append(p)
    return files


def test_load_hrtf_refuses_odd_contents_in_one_line(tmp_path, monkeypatch):
    monkeypatch.setenv("SOUNDSTAGE_CACHE_DIR", str(tmp_path / "cache"))
    (tmp_path / "s").mkdir()
    files = _structured(tmp_path / "s", STRUCTURED_CASES, seed=62)
    assert len(files) > STRUCTURED_CASES // 2
    records = run_reader(_SETUP, files)
    print(f"load_hrtf over {len(files)} odd SOFA files: {summary(records)}")
    assert len(records) == len(files)
    bad = crashes(records)
    assert not bad, "\n\n".join(bad[:5])


# Regression: found by this fuzz pass (inf raised OverflowError, 1 Hz made soxr allocate without bound).
@pytest.mark.parametrize("rate", [1.0, np.inf])
def test_sofa_sampling_rate_out_of_range_is_refused(tmp_path, monkeypatch, rate):
    import copy

    import sofar
    from sofar.io import _write_sofa

    from soundstage.hrtf import _default_path

    monkeypatch.setenv("SOUNDSTAGE_CACHE_DIR", str(tmp_path / "cache"))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        s = copy.deepcopy(sofar.read_sofa(str(_default_path()), verify=False, verbose=False))
        s.Data_IR = s.Data_IR[::8, :, :128]
        s.SourcePosition = s.SourcePosition[::8]
        s.Data_SamplingRate = rate
        s.verify(issue_handling="ignore")
        _write_sofa(str(tmp_path / "odd.sofa"), s, compression=0, verify=False)
    records = run_reader(_SETUP, [tmp_path / "odd.sofa"])
    assert records[0]["outcome"] == "refused", records[0].get("error")
