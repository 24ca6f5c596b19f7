"""Fuzz pass over the splat PLY reader: damaged files load or are refused in one line, never crash.

Seeds: small Inria-layout splat files written by the project's own writer
(binary little and big endian, ASCII; SH degrees 0 and 1, with and without an
extra property) and a slice of the real capture in ../shared/data/splats when
present. 400 seeded mutations (tests/fuzzkit.py) read by
``soundstage.splats.read_ply`` in a child process. A file that loads must hold
finite, consistent arrays.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from fuzzkit import crashes, run_reader, summary, write_cases

CASES = 400


def _splats(n, degree, extra, rng):
    from soundstage.splats import Splats

    q = rng.standard_normal((n, 4)).astype(np.float32)
    q /= np.linalg.norm(q, axis=1, keepdims=True)
    rest = rng.standard_normal((n, 3, 3)).astype(np.float32) * 0.1 if degree == 1 else None
    return Splats(positions=rng.uniform(-2, 2, (n, 3)).astype(np.float32),
                  scales=rng.uniform(0.01, 0.1, (n, 3)).astype(np.float32), rotations=q,
                  opacities=rng.uniform(0.1, 1, n).astype(np.float32), colors=rng.uniform(0, 1, (n, 3)).astype(np.float32),
                  sh_rest=rest, sh_degree=degree,
                  extra={"nx": np.zeros(n, np.float32)} if extra else {})


def _seeds(folder):
    from soundstage.splats import write_ply

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    seeds = {}
    for name, kw, degree, extra in (("le.ply", {}, 0, False), ("be.ply", {"byte_order": ">"}, 1, True),
                                    ("ascii.ply", {"ascii": True}, 1, False)):
        write_ply(folder / name, _splats(40, degree, extra, rng), **kw)
        seeds[name] = (folder / name).read_bytes()
    real = Path(__file__).resolve().parents[2] / "shared" / "data" / "splats" / "donut_sh0.ply"
    if real.is_file():
        data = real.read_bytes()
        head_end = data.index(b"end_header\n") + len(b"end_header\n")
        header = data[:head_end].decode("ascii")
        n = int(next(line.split()[2] for line in header.splitlines() if line.startswith("element vertex")))
        stride = (len(data) - head_end) // n
        keep = 50  # the real header with its vertex count cut to 50 records
        seeds["donut.ply"] = header.replace(f"element vertex {n}", f"element vertex {keep}").encode() + \
            data[head_end : head_end + keep * stride]
    return seeds


_SETUP = """
    import numpy as np
    from soundstage.splats import read_ply
    def load(path):
        s = read_ply(path)
        n = len(s)
        for name in ("positions", "scales", "rotations", "colors"):
            a = getattr(s, name)
            assert a.shape[0] == n and np.isfinite(a).all(), name
        assert s.opacities.shape == (n,) and np.isfinite(s.opacities).all()
"""


def test_read_ply_never_crashes_on_damaged_files(tmp_path):
    seeds = _seeds(tmp_path / "seeds")
    files = write_cases(seeds, CASES, tmp_path / "cases", seed=7)
    (tmp_path / "intact").mkdir()
    intact = [tmp_path / "intact" / n for n in seeds]
    for f in intact:
        f.write_bytes(seeds[f.name])
    assert {r["outcome"] for r in run_reader(_SETUP, intact)} == {"loaded"}  # the fuzz starts from good files
    records = run_reader(_SETUP, files)
    print(f"read_ply over {len(files)} damaged files: {summary(records)}")
    assert len(records) == len(files)
    bad = crashes(records)
    assert not bad, "\n\n".join(bad[:5])
