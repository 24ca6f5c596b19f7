"""The content-addressed cache: keys, bound, LRU eviction, the cache command, and re-bakes.

The re-bake tests are the point of the cache: after changing one of four
sources only that source's chunks are rendered, and the result equals a bake
without any cache (the oracle: the engine's uncached bake).
"""

from __future__ import annotations

import json
import os
import time

import numpy as np
import pytest
import soundfile as sf

from bakekit import error_db, moving_scene
from jobkit import write_noise
from soundstage import chunks as C
from soundstage.bake import bake
from soundstage.cache import Cache, parse_size, stable_digest
from soundstage.cli import main


@pytest.fixture
def cache_dir(tmp_path, monkeypatch):
    """A private cache folder for the test (SOUNDSTAGE_CACHE_DIR)."""
    d = tmp_path / "cache"
    monkeypatch.setenv("SOUNDSTAGE_CACHE_DIR", str(d))
    monkeypatch.delenv("SOUNDSTAGE_CACHE", raising=False)
    monkeypatch.delenv("SOUNDSTAGE_CACHE_MAX", raising=False)
    return d


def test_stable_digest_is_canonical_and_exact():
    a = np.arange(6, dtype=np.float32).reshape(2, 3)
    assert stable_digest({"x": 1, "y": [a, "s"]}) == stable_digest({"y": [a.copy(), "s"], "x": 1})
    assert stable_digest(0.1) != stable_digest(float(np.nextafter(0.1, 1.0)))  # one ulp apart
    assert stable_digest(a) != stable_digest(a.astype(np.float64))  # dtype counts
    assert stable_digest(a) != stable_digest(a.reshape(3, 2))  # shape counts
    assert stable_digest(1) != stable_digest(1.0) != stable_digest("1") != stable_digest(True)
    assert stable_digest([1, 2]) != stable_digest((1, 2))
    with pytest.raises(TypeError):
        stable_digest(object())


def test_parse_size():
    assert parse_size("512") == 512
    assert parse_size("4K") == 4096
    assert parse_size("1.5G") == int(1.5 * 1024**3)
    assert parse_size("2GiB") == 2 * 1024**3
    for bad in ("", "lots", "-1G", "nanM"):
        with pytest.raises(ValueError):
            parse_size(bad)


def test_round_trip_and_corrupt_entries(tmp_path):
    c = Cache(tmp_path)
    key = stable_digest("k")
    assert c.get("late", key) is None
    x = np.random.default_rng(0).standard_normal((100, 2)).astype(np.float32)
    c.put("late", key, x)
    np.testing.assert_array_equal(c.get("late", key), x)
    d = {"a": np.arange(3), "b": np.eye(2, dtype=bool)}
    c.put("images", key, d)
    got = c.get("images", key)
    assert set(got) == {"a", "b"} and got["b"].dtype == bool
    c.path("late", key).write_bytes(b"not numpy")
    assert c.get("late", key) is None and not c.path("late", key).exists()  # dropped, rebuilt next time
    assert not list(tmp_path.rglob(".soundstage-tmp-*"))
    with pytest.raises(ValueError):
        c.path("late", "../../etc")


def test_bound_evicts_least_recently_used(tmp_path):
    c = Cache(tmp_path, max_bytes=10_000)
    arr = np.zeros(500, np.float32)  # 2,128 bytes as .npy
    keys = [stable_digest(i) for i in range(4)]
    for i, k in enumerate(keys):
        c.put("part", k, arr)
        t = time.time() - 1000 + 10 * i
        os.utime(c.path("part", k), (t, t))  # written in order, ten seconds apart
    assert c.get("part", keys[0]) is not None  # a hit makes the oldest the most recently used
    c.put("part", stable_digest(99), arr)  # 5 x 2,128 > 10,000: evict down to 9,000
    left = {k for k in keys if c.path("part", k).exists()}
    assert keys[1] not in left and keys[0] in left
    assert c.info()["total_bytes"] <= 10_000


def test_info_counts_every_kind_including_hrtf_and_clear_by_kind(cache_dir, capsys):
    from soundstage import hrtf as H

    H._load_cached.cache_clear()
    H.load_hrtf("default", 16000)  # the HRTF module writes its own entries; the cache accounts for them
    H._load_cached.cache_clear()
    c = Cache()
    c.put("late", stable_digest(1), np.ones(10, np.float32))
    info = c.info()
    assert info["kinds"]["hrtf"]["entries"] == 1 and info["kinds"]["hrtf"]["bytes"] > 100_000
    assert info["kinds"]["late"]["entries"] == 1
    assert info["total_bytes"] == sum(v["bytes"] for v in info["kinds"].values())
    assert main(["cache", "info", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["kinds"]["hrtf"]["entries"] == 1
    assert main(["cache", "info"]) == 0
    text = capsys.readouterr().out
    assert "hrtf" in text and str(cache_dir) in text
    assert main(["cache", "clear", "--kind", "late"]) == 0
    assert "removed 1 late entries" in capsys.readouterr().out
    assert Cache().info()["kinds"]["late"]["entries"] == 0 and Cache().info()["kinds"]["hrtf"]["entries"] == 1
    assert main(["cache", "clear"]) == 0
    assert Cache().info()["total_bytes"] == 0
    with pytest.raises(SystemExit) as exc:
        main(["cache", "clear", "--kind", "nonsense"])
    assert exc.value.code == 2
    assert "invalid choice: 'nonsense'" in capsys.readouterr().err


def test_work_folders_are_not_evicted_and_busy_ones_not_cleared(tmp_path):
    from soundstage.cache import work_lock_path
    from soundstage.locks import FileLock

    c = Cache(tmp_path, max_bytes=1)
    busy, idle = tmp_path / "work" / "a-1", tmp_path / "work" / "b-2"
    for w in (busy, idle):
        w.mkdir(parents=True)
        (w / "x.npy").write_bytes(b"0" * 1000)
    c.put("part", stable_digest(1), np.zeros(10, np.float32))  # over the bound: evicts parts, not work
    assert busy.exists() and idle.exists()
    with FileLock(work_lock_path(busy)):
        assert c.clear("work") == (1, 1000)
    assert busy.exists() and not idle.exists()
    old = time.time() - 30 * 86400
    os.utime(busy, (old, old))
    dead = tmp_path / "part" / ".soundstage-tmp-killed.npy"  # a writer killed mid-write
    dead.write_bytes(b"half")
    os.utime(dead, (old, old))
    assert set(c.sweep_work()) == {busy, dead} and not busy.exists() and not dead.exists()


def _four_sources(tmp_path):
    return moving_scene(tmp_path, fmt="binaural", room="shoebox", seconds=1.0, n_sources=4, cuts=False)


def test_rebake_after_changing_one_source_renders_only_that_source(tmp_path, cache_dir):
    job = _four_sources(tmp_path)
    first = bake(job, chunk_seconds=0.5, work_dir=tmp_path / "w")
    assert first.info["chunks"]["rendered"] == 8 and first.info["chunks"]["from_cache"] == 0
    # Same job again: nothing is rendered.
    again = bake(job, chunk_seconds=0.5, work_dir=tmp_path / "w")
    assert again.info["chunks"]["rendered"] == 0 and again.info["chunks"]["from_cache"] == 8
    # New audio for source 2 only.
    job["sources"][2]["audio"] = write_noise(tmp_path / "other.wav", seconds=1.0, seed=42)
    changed = bake(job, chunk_seconds=0.5, work_dir=tmp_path / "w")
    assert changed.info["chunks"]["rendered"] == 2 and changed.info["chunks"]["from_cache"] == 6
    assert changed.info["sources"]["src2"] != first.info["sources"]["src2"]
    # The oracle: the same job without any cache.
    ref = bake(job, out=tmp_path / "ref.wav", chunk_seconds=0.5, cache=False, work_dir=tmp_path / "w")
    x, _ = sf.read(changed.path, dtype="float32")
    y, _ = sf.read(ref.path, dtype="float32")
    assert error_db(x, y) <= -120
    assert changed.info["sources"] == ref.info["sources"]


def test_scene_changes_reuse_nothing_but_the_output_path_does_not_matter(tmp_path, cache_dir):
    job = moving_scene(tmp_path, fmt="stereo", room="free", seconds=0.5, n_sources=2, cuts=False)
    bake(job, chunk_seconds=0.25)
    moved = bake(job, out=tmp_path / "elsewhere" / "x.wav", chunk_seconds=0.25)
    assert moved.info["chunks"]["from_cache"] == 4  # where the file goes is not part of the key
    job["render"] = {"seed": 7}
    assert bake(job, chunk_seconds=0.25).info["chunks"]["rendered"] == 4
    job["speed_of_sound"] = 340.0
    assert bake(job, chunk_seconds=0.25).info["chunks"]["rendered"] == 4


def test_keys_change_with_the_engine_code(tmp_path, monkeypatch):
    from soundstage.job import load_job
    from soundstage.render import RenderContext

    job = load_job(moving_scene(tmp_path, fmt="stereo", room="free", seconds=0.2, n_sources=1, cuts=False))
    k1 = C.part_key(RenderContext(job), 0, 0, 100)
    assert k1 == C.part_key(RenderContext(job), 0, 0, 100)
    monkeypatch.setattr(C, "code_digest", lambda: "another-engine")
    assert C.part_key(RenderContext(job), 0, 0, 100) != k1


def test_cache_off_writes_no_entries(tmp_path, cache_dir, monkeypatch):
    monkeypatch.setenv("SOUNDSTAGE_CACHE", "off")
    job = moving_scene(tmp_path, fmt="binaural", room="shoebox", seconds=0.3, n_sources=1, cuts=False)
    bake(job, work_dir=tmp_path / "w")
    assert Cache(cache_dir).info()["kinds"]["part"]["entries"] == 0
    assert Cache(cache_dir).info()["kinds"]["late"]["entries"] == 0
