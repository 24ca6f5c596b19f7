"""The processed-HRTF disk cache returns exactly what building from the file gives."""

import numpy as np

from soundstage import hrtf as H


def test_disk_cache_round_trip_and_corrupt_entry(tmp_path, monkeypatch):
    monkeypatch.setenv("SOUNDSTAGE_CACHE_DIR", str(tmp_path))
    H._load_cached.cache_clear()
    built = H.load_hrtf("default", 32000)
    entries = list((tmp_path / "hrtf").glob("*.npz"))
    assert len(entries) == 1
    H._load_cached.cache_clear()
    cached = H.load_hrtf("default", 32000)
    assert cached is not built
    for k in ("directions", "hrirs", "ear_delays"):
        np.testing.assert_array_equal(getattr(cached, k), getattr(built, k))
    assert cached.lead == built.lead and cached.name == built.name
    hr1, d1 = built.interpolate([[0.3, 0.8, 0.1]])
    hr2, d2 = cached.interpolate([[0.3, 0.8, 0.1]])
    np.testing.assert_array_equal(hr1, hr2)
    # a corrupt entry is rebuilt, not fatal
    entries[0].write_bytes(b"garbage")
    H._load_cached.cache_clear()
    again = H.load_hrtf("default", 32000)
    np.testing.assert_array_equal(again.hrirs, built.hrirs)
    H._load_cached.cache_clear()
