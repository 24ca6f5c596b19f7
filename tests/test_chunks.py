"""Chunked bakes equal whole bakes.

Every output sample of a source's contribution is a fixed function of the whole
job, so rendering the timeline in chunks and stitching them must give the whole
render back. The oracle is the engine's own whole render (itself held to
analytic physics and pyroomacoustics in test_render_*.py); the tolerance is the
issue's: -120 dB relative to the whole bake's peak. The figures are printed
(``pytest -s``); in practice the stitched bake is bit-identical.
"""

from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf

from bakekit import error_db, moving_scene
from soundstage import chunks as C
from soundstage import dsp
from soundstage.bake import bake
from soundstage.cache import Cache
from soundstage.job import load_job
from soundstage.render import convolve_range, render_job

TOL_DB = -120.0


def test_plan_chunks_covers_the_timeline_contiguously():
    rng = np.random.default_rng(0)
    for _ in range(200):
        n = int(rng.integers(0, 10**6))
        fs = int(rng.choice([8000, 44100, 48000, 96000]))
        secs = float(rng.choice([0.0, 0.01, 0.5, 1.0, 20.0, 1e4]))
        plan = C.plan_chunks(n, fs, secs)
        assert plan[0][0] == 0 and plan[-1][1] == n
        assert all(b0 == a1 for (_, b0), (a1, _) in zip(plan[:-1], plan[1:]))
        if n:
            size = max(int(round(secs * fs)), 1) if secs > 0 else n
            assert all(b - a == size for a, b in plan[:-1]) and 0 < plan[-1][1] - plan[-1][0] <= size


def test_tv_convolve_ranges_stitch_to_the_whole():
    """Any split of the output gives the whole run's samples, which match the slow reference."""
    rng = np.random.default_rng(3)
    n, hop, K, ch, L = 3000, 100.0, 33, 2, 60
    x = rng.standard_normal(n)
    filters = rng.standard_normal((K, ch, L))
    centres = np.arange(K) * hop - 50.0
    shifts = rng.integers(0, 200, K)

    def spectra(k0, k1, nfft):
        return np.fft.rfft(filters[k0:k1], n=nfft, axis=-1)

    whole = dsp.tv_convolve(x, centres, hop, spectra, ch, L, n, shifts=shifts, chunk=4)
    np.testing.assert_allclose(whole, dsp.tv_convolve_reference(x, centres, hop, filters, n, shifts=shifts),
                               atol=1e-4)
    for _ in range(5):
        edges = np.unique(np.concatenate([[0, n], rng.integers(0, n, 6)]))
        pieces = []
        for a, b in zip(edges[:-1], edges[1:]):
            k0, k1, i0, i1 = dsp.tv_span(centres, hop, L, (a, b), shifts)
            i0, i1 = max(i0, 0), min(i1, n)
            # only the needed input, as the direct path supplies it
            pieces.append(dsp.tv_convolve(x[i0:i1], centres, hop, spectra, ch, L, n, shifts=shifts, chunk=4,
                                          out_range=(a, b), x_start=i0))
        np.testing.assert_array_equal(np.concatenate(pieces), whole)


def test_convolve_range_is_a_convolution_and_stitches_exactly():
    rng = np.random.default_rng(5)
    pre, n_out = 700, 50_000
    sig = rng.standard_normal(pre + n_out).astype(np.float32)
    tail = rng.standard_normal((3000, 2)).astype(np.float32) * np.exp(-np.arange(3000) / 600)[:, None].astype(
        np.float32)
    whole = convolve_range(sig, pre, tail, 0, n_out)
    for ch in range(2):  # the slow, obviously correct definition
        ref = np.convolve(sig.astype(np.float64), tail[:, ch].astype(np.float64))[pre : pre + n_out]
        assert np.max(np.abs(whole[:, ch] - ref)) < 1e-5 * np.max(np.abs(ref))
    edges = [0, 1, 999, 17_000, 17_001, 40_000, n_out]
    stitched = np.concatenate([convolve_range(sig, pre, tail, a, b) for a, b in zip(edges[:-1], edges[1:])])
    np.testing.assert_array_equal(stitched, whole)


def _stitch(job, cache, edges):
    """Render each source per chunk with the chunk machinery and stitch."""
    renderer = C.PartRenderer(job, cache=cache)
    ctx = renderer.ctx
    plan = list(zip(edges[:-1], edges[1:]))
    parts = C.plan_parts(ctx, plan)
    store = C.MemoryStore()
    for p in sorted(parts, key=lambda p: (p.source, p.chunk)):
        store.put(p, renderer.render(p))
    audio, levels = C.assemble(ctx, plan, parts, store)
    return audio, levels


@pytest.mark.parametrize("room", ["free", "shoebox"])
@pytest.mark.parametrize("fmt", ["binaural", "ambix", "5.1", "stereo"])
def test_chunked_equals_whole(tmp_path, fmt, room):
    job = load_job(moving_scene(tmp_path, fmt=fmt, room=room, seconds=1.5, order=2))
    cache = Cache(tmp_path / "cache")  # the whole render stores the late tails the chunks reuse
    whole = render_job(job, cache=cache)
    n = job.n_samples
    hop = job.sample_rate / job.fps
    # Odd places: one sample, just before and after both cuts, a chunk shorter than the HRIR.
    cut_src, cut_cam = int(hop * (len(job.sources[0].positions) // 2)), int(hop * (len(job.sources[0].positions) * 3 // 4))
    edges = sorted({0, 1, 100, cut_src - 1, cut_src + 1, cut_cam, cut_cam + 37, n - 5000, n})
    audio, levels = _stitch(job, cache, edges)
    err = error_db(audio, whole.audio)
    print(f"chunked vs whole, {fmt}, {room}: {err:.1f} dB")
    assert audio.shape == whole.audio.shape
    assert err <= TOL_DB
    assert levels == whole.source_levels_db


def test_time_range_of_51_settles_the_lfe(tmp_path):
    """render_job(time_range) on its own: the LFE low-pass starts early enough to match."""
    job = load_job(moving_scene(tmp_path, fmt="5.1", room="free", seconds=1.0, cuts=False))
    whole = render_job(job).audio
    a, b = 20_000, 31_000
    part = render_job(job, time_range=(a, b)).audio
    assert part.shape == (b - a, 6)
    assert error_db(part, whole[a:b]) <= TOL_DB
    assert np.max(np.abs(whole[a:b, 3])) > 1e-3 * np.max(np.abs(whole))  # the LFE carries something


def test_bake_in_chunks_writes_the_whole_bake(tmp_path):
    job = moving_scene(tmp_path, fmt="stereo", room="free", seconds=1.0)
    one = bake(job, out=tmp_path / "one.wav", chunk_seconds=0, cache=False, work_dir=tmp_path / "w")
    many = bake(job, out=tmp_path / "many.wav", chunk_seconds=0.13, cache=False, work_dir=tmp_path / "w")
    assert one.info["chunks"]["count"] == 1 and many.info["chunks"]["count"] == 8
    x1, fs1 = sf.read(one.path, dtype="float32")
    x2, fs2 = sf.read(many.path, dtype="float32")
    assert fs1 == fs2 == 48000 and x1.shape == x2.shape == (48000, 2)
    assert error_db(x2, x1) <= TOL_DB
    assert one.info["sources"] == many.info["sources"]
    assert not any((tmp_path / "w").iterdir())  # work folders go when their bake completes


def test_direct_path_ranges_are_bit_exact(tmp_path):
    """The direct path of a range is the very same float32 numbers as the whole run's.

    Stricter than the issue's -120 dB: it catches a range that reads the wrong
    neighbouring control points (an error near -140 dB, far under the tolerance).
    """
    from soundstage.direct import render_direct
    from soundstage.render import RenderContext, source_signal

    job = load_job(moving_scene(tmp_path, fmt="binaural", room="free", seconds=1.0, n_sources=1))
    ctx = RenderContext(job)
    sig, pre = source_signal(ctx, 0)
    kw = dict(fps=job.fps, fs=ctx.fs, c=ctx.c, n_out=ctx.n_out, decoder=ctx.decoder, hrtf=ctx.hrtf)
    src = job.sources[0]
    whole = render_direct(sig, pre, src.positions, ctx.lis_pos, ctx.lis_rot, **kw)
    edges = [0, 239, 240, 241, 12_345, 24_000, 36_001, ctx.n_out]
    parts = [render_direct(sig, pre, src.positions, ctx.lis_pos, ctx.lis_rot, time_range=(a, b), **kw)
             for a, b in zip(edges[:-1], edges[1:])]
    np.testing.assert_array_equal(np.concatenate(parts), whole)
