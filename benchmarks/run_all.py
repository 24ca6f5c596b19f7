"""Run every benchmark in this folder, one after another, printing their reports.

    .venv/bin/python benchmarks/run_all.py [NAME ...]

Benchmarks print ratios measured side by side in one run; they are not tests
and assert nothing about time. Results also land in benchmarks/results/.
"""

import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent


def main(argv):
    names = argv or sorted(p.stem for p in HERE.glob("bench_*.py"))
    failed = []
    for name in names:
        path = HERE / f"{name if name.startswith('bench_') else 'bench_' + name}.py"
        print(f"\n=== {path.stem} ===", flush=True)
        if subprocess.run([sys.executable, str(path)]).returncode != 0:
            failed.append(path.stem)
    if failed:
        print(f"\nfailed: {', '.join(failed)}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
