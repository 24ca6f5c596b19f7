"""A chunked bake on Dask: one worker process against two, side by side (and against no Dask).

Scenario (issue 6): four sources moving in a 6 x 5 x 3 m room, a walking and
turning camera, binaural, ``--seconds`` long (default 30), ``--chunk`` second
chunks (default 5): 4 x 6 parts. No cache, a fresh work folder per run, so
every part is rendered each time. Runs, one after another in this process:

* in-process (no Dask), the reference output;
* a local cluster of 1 worker process (one thread each);
* a local cluster of 2 worker processes.

Wall times include starting the cluster; its start-up is also timed on its
own and the speed-up is given with and without it. The outputs must be
bit-identical to the in-process bake.

Run: ``.venv/bin/python benchmarks/bench_dask.py [--seconds 30] [--chunk 5] [--workers 1 2]``
Writes benchmarks/results/dask.json.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile as sf

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))


def cluster_start(n: int) -> float:
    """Seconds to start and stop a local cluster of ``n`` workers (what a Dask bake pays on top)."""
    from soundstage.distributed import connect

    t0 = time.perf_counter()
    with connect(n) as client:
        client.wait_for_workers(n)
        up = time.perf_counter() - t0
    return up


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seconds", type=float, default=30.0)
    ap.add_argument("--chunk", type=float, default=5.0)
    ap.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    args = ap.parse_args(argv)
    from bakekit import moving_scene

    from soundstage.bake import bake
    from soundstage.hrtf import load_hrtf

    load_hrtf("default", 48000)  # processed HRTF cached beforehand, as on any machine that has baked
    with tempfile.TemporaryDirectory(prefix="bench_dask_") as tmp:
        tmp = Path(tmp)
        job = moving_scene(tmp, fmt="binaural", room="shoebox", seconds=args.seconds, n_sources=4, cuts=False,
                           fps=30)
        runs = {}

        def run(label, **kw):
            t0 = time.perf_counter()
            r = bake(job, out=tmp / f"{label}.wav", chunk_seconds=args.chunk, cache=False,
                     work_dir=tmp / f"work-{label}", **kw)
            wall = time.perf_counter() - t0
            runs[label] = {"wall_s": wall, "audio": sf.read(r.path, dtype="float32")[0],
                           "parts": r.info["chunks"]["parts"]}
            print(f"  {label:12s} {wall:7.2f} s", flush=True)

        print(f"{args.seconds:g} s, 4 sources, binaural, shoebox, {args.chunk:g} s chunks; "
              f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs", flush=True)
        run("in-process")
        starts = {}
        for n in args.workers:
            starts[n] = cluster_start(n)
            run(f"{n} worker{'s' if n > 1 else ''}", workers=n)
        ref = runs["in-process"]["audio"]
        identical = {k: bool(np.array_equal(v["audio"], ref)) for k, v in runs.items()}
    labels = {n: f"{n} worker{'s' if n > 1 else ''}" for n in args.workers}
    one = runs[labels[args.workers[0]]]["wall_s"]
    one_net = one - starts[args.workers[0]]
    out = {"seconds": args.seconds, "chunk_s": args.chunk, "parts": runs["in-process"]["parts"],
           "cpus": os.cpu_count(), "load_average": os.getloadavg()[0], "in_process_s": runs["in-process"]["wall_s"],
           "identical_to_in_process": identical, "workers": {}}
    print(f"{'run':12s} {'wall s':>8s} {'cluster start s':>16s} {'speed-up':>9s} {'without start':>14s}  identical")
    print(f"{'in-process':12s} {runs['in-process']['wall_s']:8.2f} {'-':>16s} {'-':>9s} {'-':>14s}  reference")
    for n in args.workers:
        r = runs[labels[n]]
        net = r["wall_s"] - starts[n]
        sp, sp_net = one / r["wall_s"], one_net / net
        print(f"{labels[n]:12s} {r['wall_s']:8.2f} {starts[n]:16.2f} {sp:8.2f}x {sp_net:13.2f}x  "
              f"{identical[labels[n]]}")
        out["workers"][str(n)] = {"wall_s": round(r["wall_s"], 3), "cluster_start_s": round(starts[n], 3),
                                  "speedup_vs_first": round(sp, 3), "speedup_without_start": round(sp_net, 3)}
    print(f"(speed-up relative to {labels[args.workers[0]]}; other processes share these CPUs)")
    res = ROOT / "benchmarks" / "results"
    res.mkdir(parents=True, exist_ok=True)
    (res / "dask.json").write_text(json.dumps(out, indent=2) + "\n")
    return 0 if all(identical.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
