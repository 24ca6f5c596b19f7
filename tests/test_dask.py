"""Bakes on Dask distributed give the same file as a bake in this process.

The oracle is the in-process bake (itself equal to the whole render,
test_chunks.py). A local cluster of two worker processes and a cluster reached
by its scheduler address (files shipped to the workers, as for machines without
a shared disk) must give bit-identical samples, and cancelling stops the
workers without touching the previous track.
"""

from __future__ import annotations

import logging
import threading

import numpy as np
import pytest
import soundfile as sf

from bakekit import moving_scene
from soundstage.bake import bake
from soundstage.errors import Cancelled

pytest.importorskip("distributed")


def _samples(path):
    return sf.read(path, dtype="float32")[0]


@pytest.fixture(scope="module")
def scene(tmp_path_factory):
    folder = tmp_path_factory.mktemp("dask")
    job = moving_scene(folder, fmt="binaural", room="shoebox", seconds=1.5, n_sources=2)
    here = bake(job, out=folder / "here.wav", chunk_seconds=0.5, cache=False, work_dir=folder / "w")
    return folder, job, _samples(here.path)


def test_local_cluster_of_two_workers_is_bit_identical(scene):
    folder, job, here = scene
    res = bake(job, out=folder / "two.wav", chunk_seconds=0.5, workers=2, cache=False, work_dir=folder / "w")
    assert res.info["chunks"]["dask_workers"] == 2 and res.info["chunks"]["rendered"] == 6
    assert res.info["backend"].endswith("+dask")
    np.testing.assert_array_equal(_samples(res.path), here)


def test_scheduler_address_ships_files_and_one_worker_matches(scene, tmp_path):
    from distributed import LocalCluster

    folder, job, here = scene
    with LocalCluster(n_workers=1, threads_per_worker=1, processes=True, dashboard_address=None,
                      silence_logs=logging.ERROR) as cluster:
        res = bake(job, out=tmp_path / "one.wav", chunk_seconds=0.5, scheduler=cluster.scheduler_address,
                   cache=False, work_dir=tmp_path / "w")
        assert res.info["chunks"]["dask_workers"] == 1
        np.testing.assert_array_equal(_samples(res.path), here)

        # Cancel after the first part: the previous track stays, the finished parts wait for --resume.
        target = tmp_path / "one.wav"
        before = target.read_bytes()
        stop = threading.Event()

        def progress(fraction, message):
            if "done" in message and "chunk" in message:
                stop.set()

        job2 = dict(job, sources=[dict(s, gain_db=-3.0) for s in job["sources"]])
        with pytest.raises(Cancelled):
            bake(job2, out=target, chunk_seconds=0.5, scheduler=cluster.scheduler_address, cache=False,
                 work_dir=tmp_path / "w", cancel=stop, progress=progress)
        assert target.read_bytes() == before
        res = bake(job2, out=target, chunk_seconds=0.5, scheduler=cluster.scheduler_address, cache=False,
                   work_dir=tmp_path / "w", resume=True)
        assert res.info["chunks"]["resumed"] >= 1
        ref = bake(job2, out=tmp_path / "ref.wav", chunk_seconds=0.5, cache=False, work_dir=tmp_path / "w")
        np.testing.assert_array_equal(_samples(target), _samples(ref.path))


def test_unreachable_scheduler_is_one_line(tmp_path):
    import dask

    from soundstage.errors import SoundstageError

    job = moving_scene(tmp_path, fmt="stereo", room="free", seconds=0.2, n_sources=1, cuts=False)
    with dask.config.set({"distributed.comm.timeouts.connect": "1s"}):
        with pytest.raises(SoundstageError, match="cannot reach the Dask scheduler at tcp://127.0.0.1:9"):
            bake(job, scheduler="tcp://127.0.0.1:9", cache=False, work_dir=tmp_path / "w")
