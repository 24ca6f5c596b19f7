"""A small, seeded mutation fuzzer for the file readers (tests/test_fuzz_*.py).

``mutations(seed_bytes, n, rng)`` derives ``n`` damaged variants of a valid
file: flipped bits, header fields overwritten with edge values (0, -1, huge,
the file size), truncations, inserted, deleted and duplicated blocks; half of
the edits aim at the first 512 bytes, where the headers are.

``run_reader(code, files)`` loads every file in a child process (a crash in a
C library then fails the test instead of killing it, with the file named) and
reports, per file, ``loaded``, ``refused`` (a ``SoundstageError``, with its
message) or ``crash`` (any other exception, with its traceback).
"""

from __future__ import annotations

import json
import os
import struct
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np

_EDGE_INTS = (0, 1, 2, 0x7F, 0x80, 0xFF, 0x7FFF, 0x8000, 0xFFFF, 0x7FFFFFFF, 0x80000000, 0xFFFFFFFF,
              0xFFFFFFF0, 1 << 20, 1 << 24)


def _where(rng, n: int) -> int:
    if n <= 1:
        return 0
    return int(rng.integers(0, min(n, 512))) if rng.random() < 0.5 else int(rng.integers(0, n))


def mutate(data: bytes, rng: np.random.Generator) -> bytes:
    """One to three random edits of ``data``."""
    b = bytearray(data)
    for _ in range(int(rng.integers(1, 4))):
        op = int(rng.integers(0, 8))
        n = len(b)
        if op == 0 and n:  # flip bits
            for _ in range(int(rng.integers(1, 9))):
                i = _where(rng, n)
                b[i] ^= 1 << int(rng.integers(0, 8))
        elif op == 1 and n:  # edge byte values
            for _ in range(int(rng.integers(1, 5))):
                b[_where(rng, n)] = int(rng.choice([0x00, 0x01, 0x7F, 0x80, 0xFE, 0xFF]))
        elif op == 2 and n >= 4:  # a 32-bit field set to an edge value (either byte order)
            i = min(_where(rng, n) & ~3, n - 4)
            v = int(rng.choice(_EDGE_INTS + (n, n + 1, n - 1, 2 * n)))
            b[i : i + 4] = struct.pack("<I" if rng.random() < 0.5 else ">I", v & 0xFFFFFFFF)
        elif op == 3:  # truncate
            b = b[: int(rng.integers(0, max(n, 1)))] if rng.random() < 0.7 else b[: int(rng.integers(0, 64))]
        elif op == 4:  # insert random bytes
            i = _where(rng, n + 1)
            b[i:i] = rng.integers(0, 256, int(rng.integers(1, 64)), dtype=np.uint8).tobytes()
        elif op == 5 and n:  # delete a block
            i = _where(rng, n)
            del b[i : i + int(rng.integers(1, 64))]
        elif op == 6 and n:  # duplicate a block
            i = _where(rng, n)
            k = int(rng.integers(1, 128))
            b[i:i] = b[i : i + k]
        elif op == 7 and n:  # zero a block
            i = _where(rng, n)
            k = int(rng.integers(1, 256))
            b[i : i + k] = bytes(len(b[i : i + k]))
    return bytes(b)


def write_cases(seeds: dict[str, bytes], n: int, folder: Path, seed: int) -> list[Path]:
    """``n`` mutated files spread over the seed files (named ``<i>-<seed name>``)."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    names = sorted(seeds)
    out = []
    for i in range(n):
        name = names[i % len(names)]
        p = folder / f"{i:04d}-{name}"
        p.write_bytes(mutate(seeds[name], rng))
        out.append(p)
    return out


_HARNESS = """
import json, resource, sys, traceback, warnings
# A damaged header must not make a reader allocate without bound: cap the address space.
resource.setrlimit(resource.RLIMIT_AS, (6 << 30, 6 << 30))
warnings.simplefilter("ignore")
from soundstage.errors import SoundstageError
{setup}
for path in json.loads(sys.argv[1]):
    print(json.dumps({{"file": path, "outcome": "start"}}), flush=True)
    try:
        load(path)
        rec = {{"file": path, "outcome": "loaded"}}
    except SoundstageError as e:
        rec = {{"file": path, "outcome": "refused", "message": str(e)}}
    except BaseException as e:
        rec = {{"file": path, "outcome": "crash", "error": type(e).__name__ + ": " + str(e)[:300],
               "traceback": traceback.format_exc()[-2000:]}}
    print(json.dumps(rec), flush=True)
"""


def run_reader(setup: str, files: list[Path], timeout: float = 600) -> list[dict]:
    """Load ``files`` with ``load(path)`` (defined by ``setup``) in a child process.

    Returns one record per file. A child that dies or hangs becomes a ``crash``
    record for the file it was loading.
    """
    code = _HARNESS.format(setup=textwrap.dedent(setup))
    env = {k: v for k, v in os.environ.items() if k != "SOUNDSTAGE_CACHE"}
    env.setdefault("OMP_NUM_THREADS", "1")
    try:
        p = subprocess.run([sys.executable, "-c", code, json.dumps([str(f) for f in files])], capture_output=True,
                           text=True, timeout=timeout, env=env)
        out, err, rc = p.stdout, p.stderr, p.returncode
    except subprocess.TimeoutExpired as e:
        out, err, rc = (e.stdout or b"").decode() if isinstance(e.stdout, bytes) else (e.stdout or ""), "", "timeout"
    records, current = [], None
    for line in out.splitlines():
        rec = json.loads(line)
        if rec["outcome"] == "start":
            current = rec["file"]
        else:
            records.append(rec)
            current = None
    if current is not None or rc not in (0,):
        if current is not None:
            records.append({"file": current, "outcome": "crash", "error": f"child process ended ({rc})",
                            "traceback": err[-2000:]})
        elif rc != 0:
            records.append({"file": "?", "outcome": "crash", "error": f"child process ended ({rc})",
                            "traceback": err[-2000:]})
    return records


def summary(records: list[dict]) -> str:
    counts = {k: sum(r["outcome"] == k for r in records) for k in ("loaded", "refused", "crash")}
    return ", ".join(f"{v} {k}" for k, v in counts.items())


def crashes(records: list[dict]) -> list[str]:
    """Readable lines for every crash (and every refusal that is not one line)."""
    bad = [f"{Path(r['file']).name}: {r['error']}\n{r.get('traceback', '')}" for r in records if r["outcome"] == "crash"]
    bad += [f"{Path(r['file']).name}: message of {r['message'].count(chr(10)) + 1} lines: {r['message'][:200]!r}"
            for r in records if r["outcome"] == "refused" and ("\n" in r["message"] or not r["message"].strip())]
    return bad
