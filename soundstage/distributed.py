"""Chunked bakes on Dask distributed: a local cluster by default, any scheduler address for a real one.

The graph of one bake, for the parts that are not already done (work folder,
cache):

* one *prepare* task per source: its image sources and late tail (each worker
  looks in its own machine's cache first);
* one *part* task per (source, chunk), depending on its source's prepare task:
  the source's contribution to the chunk's samples.

Part results come back to the baking process, which stores them (work folder,
cache) and stitches them in a fixed order, so the output does not depend on
how many workers there are or which one rendered what.

Workers need the engine installed (the same version: part keys include a digest
of its code) and, by default for a remote scheduler, nothing else: the audio
files and a custom HRTF are sent to them with the job (``ship_files``). With a
shared file system, ``ship_files=False`` lets them read the files in place.
"""

from __future__ import annotations

import contextlib
import logging
import os
import tempfile
import uuid
from collections import OrderedDict
from pathlib import Path

from soundstage.errors import SoundstageError

#: Seconds between checks for cancel while waiting for results.
POLL_S = 0.2
#: Environment of local worker processes. Dask's default also sets
#: MALLOC_TRIM_THRESHOLD_=65536, which makes glibc map and unmap every large
#: numpy buffer: the renderers then spend as long in page faults as in
#: arithmetic (measured: a 30 s, 4-source bake 2.5x slower in a worker).
#: One thread per worker everywhere (BLAS, OpenMP, our FFTs): a worker is a core.
#: None removes a variable (Dask's convention for this setting).
WORKER_ENVIRON = {"MALLOC_TRIM_THRESHOLD_": None, "OMP_NUM_THREADS": 1, "MKL_NUM_THREADS": 1,
                  "OPENBLAS_NUM_THREADS": 1, "SOUNDSTAGE_FFT_THREADS": 1}


def default_workers() -> int:
    """Worker processes of a local cluster when none are asked for: the CPU count, at most 8."""
    return max(1, min(8, os.cpu_count() or 1))


@contextlib.contextmanager
def connect(workers: int | None = None, scheduler: str | None = None):
    """A Dask client: to ``scheduler`` if given, else a fresh ``LocalCluster``.

    Parameters
    ----------
    workers : int, optional
        Worker processes of the local cluster (default: the CPU count, at most 8), one thread each.
    scheduler : str, optional
        Address of a running scheduler (``tcp://host:8786``).

    Yields
    ------
    distributed.Client
    """
    try:
        from distributed import Client, LocalCluster
    except ImportError:  # pragma: no cover - dask is a dependency
        raise SoundstageError("Dask distributed is not installed; install 'distributed' or bake without --workers") \
            from None
    if scheduler:
        import dask

        try:
            # Dask's own setting (DASK_DISTRIBUTED__COMM__TIMEOUTS__CONNECT), 30 s by default.
            client = Client(scheduler, timeout=dask.config.get("distributed.comm.timeouts.connect"))
        except (OSError, TimeoutError) as err:
            raise SoundstageError(f"cannot reach the Dask scheduler at {scheduler} ({err}); check the address "
                                  "and that 'dask scheduler' is running") from None
        try:
            yield client
        finally:
            client.close()
        return
    n = int(workers or default_workers())
    if n < 1:
        raise SoundstageError(f"--workers must be at least 1, got {n}")
    import dask

    with dask.config.set({f"distributed.nanny.pre-spawn-environ.{k}": v for k, v in WORKER_ENVIRON.items()}):
        cluster = LocalCluster(n_workers=n, threads_per_worker=1, processes=True, dashboard_address=None,
                               silence_logs=logging.ERROR)
    client = Client(cluster)
    try:
        yield client
    finally:
        client.close()
        cluster.close()


# --------------------------------------------------------------------------- worker side
#: Part renderers of the jobs this worker process has seen (most recent last).
_RENDERERS: OrderedDict = OrderedDict()


def _shipped_dir() -> Path:
    d = Path(tempfile.gettempdir()) / "soundstage-shipped"
    d.mkdir(parents=True, exist_ok=True)
    return d


def _materialise(doc: dict, files: dict | None) -> dict:
    """Write shipped files to this machine and point the job document at them."""
    if not files:
        return doc
    from soundstage.audio_io import atomic_path

    local = {}
    for path, (digest, data) in files.items():
        target = _shipped_dir() / f"{digest}{Path(path).suffix}"
        if not target.exists():
            with atomic_path(target) as tmp:
                tmp.write_bytes(data)
        local[path] = str(target)
    doc = dict(doc)
    doc["sources"] = [dict(s, audio=local.get(s["audio"], s["audio"])) for s in doc["sources"]]
    lst = dict(doc["listener"])
    if lst.get("hrtf", "default") != "default":
        lst["hrtf"] = local.get(lst["hrtf"], lst["hrtf"])
    doc["listener"] = lst
    return doc


def _renderer(job_id: str, doc: dict, files, use_cache: bool = True):
    from soundstage.cache import default_cache
    from soundstage.chunks import PartRenderer
    from soundstage.job import load_job

    memo = (job_id, use_cache)
    r = _RENDERERS.get(memo)
    if r is None:
        r = PartRenderer(load_job(_materialise(doc, files)), cache=default_cache() if use_cache else None)
        _RENDERERS[memo] = r
        while len(_RENDERERS) > 2:
            _RENDERERS.popitem(last=False)
    else:
        _RENDERERS.move_to_end(memo)
    return r


def prepare_task(job_id: str, doc: dict, files, si: int, use_cache: bool = True):
    """Image sources and late tail of source ``si`` (runs on a worker; its machine's cache when ``use_cache``)."""
    images, tail = _renderer(job_id, doc, files, use_cache).prepare(si)
    return images, tail


def part_task(job_id: str, doc: dict, files, part, prepared, use_cache: bool = True):
    """One part's samples (runs on a worker)."""
    r = _renderer(job_id, doc, files, use_cache)
    r.set_prepared(part.source, *prepared)
    return r.render(part)


# --------------------------------------------------------------------------- client side
def _files_to_ship(job) -> dict:
    from soundstage.cache import file_digest

    paths = {str(s.audio) for s in job.sources}
    if job.output.format == "binaural" and job.listener.hrtf != "default":
        paths.add(str(job.listener.hrtf))
    return {p: (file_digest(p), Path(p).read_bytes()) for p in sorted(paths)}


def run_parts(client, job, job_id: str, parts, *, on_part, cancel=None, ship_files: bool = False,
              use_cache: bool = True):
    """Render ``parts`` on the cluster; call ``on_part(part, samples)`` in this process as each finishes.

    Parameters
    ----------
    client : distributed.Client
    job : Job
    job_id : str
        The job's content digest (``chunks.job_digest``), naming its tasks.
    parts : list of chunks.Part
    on_part : callable(Part, ndarray)
    cancel : callable raising Cancelled, optional
        Polled every ``POLL_S`` seconds; outstanding tasks are cancelled.
    ship_files : bool
        Send the audio (and custom HRTF) files with the job.
    use_cache : bool
        Let workers use their machine's cache for image sources and late tails.
    """
    from distributed import wait

    from soundstage.chunks import job_document

    if not parts:
        return
    check = cancel or (lambda: None)
    # Sent once to every worker (wrapped in lists: Dask would scatter a dict's values one by one).
    doc_f = client.scatter([job_document(job)], broadcast=True, hash=False)[0]
    files_f = client.scatter([_files_to_ship(job)], broadcast=True, hash=False)[0] if ship_files else None
    # Task keys are unique to this run: a scheduler may still be forgetting the
    # tasks of an earlier, cancelled run of the same job.
    run = uuid.uuid4().hex[:12]
    prep = {}
    for si in sorted({p.source for p in parts}):
        prep[si] = client.submit(prepare_task, job_id, doc_f, files_f, si, use_cache,
                                 key=f"soundstage-prepare-{run}-{si}", pure=False)
    futures = {}
    # Source by source: a worker then keeps reusing the source's emitted signal
    # (PartRenderer keeps the last two) instead of reading it again per part.
    for p in sorted(parts, key=lambda p: (p.source, p.chunk)):
        f = client.submit(part_task, job_id, doc_f, files_f, p, prep[p.source], use_cache,
                          key=f"soundstage-part-{run}-{p.source}-{p.chunk}", pure=False)
        futures[f] = p
    pending = set(futures)
    try:
        while pending:
            check()
            try:
                done, pending = wait(pending, timeout=POLL_S, return_when="FIRST_COMPLETED")
            except TimeoutError:  # nothing finished yet: check for cancel again
                continue
            for f in done:
                on_part(futures[f], f.result())  # re-raises a worker's exception here
                f.release()
    except BaseException:
        client.cancel(list(pending) + list(prep.values()))
        raise
    finally:
        for f in prep.values():
            f.release()


__all__ = ["connect", "run_parts", "prepare_task", "part_task", "default_workers"]
