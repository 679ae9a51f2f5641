"""Run every benchmark in turn (`make bench`). Each prints its own ratios.

    python -m bench.run_all [--quick]

``--quick`` skips the 5M-record memory runs and shortens the load runs.
"""

from __future__ import annotations

import subprocess
import sys

BENCHES: list[tuple[str, list[str], list[str]]] = [
    # (module, normal args, --quick args)
    ("bench.bench_numbering", [], ["--records", "200000"]),
    ("bench.bench_rating", [], ["--repeat", "1"]),
    ("bench.bench_scan", [], ["--skip-memory"]),
    ("bench.bench_detect", [], ["--skip-memory", "--records", "200000"]),
    ("bench.bench_authorize", [], ["--seconds", "2"]),
    ("bench.bench_ingest", [], ["50000"]),
]


def main() -> int:
    quick = "--quick" in sys.argv[1:]
    failed = []
    for module, args, quick_args in BENCHES:
        print(f"\n=== {module} {' '.join(quick_args if quick else args)}", flush=True)
        code = subprocess.call([sys.executable, "-m", module, *(quick_args if quick else args)])
        if code != 0:
            failed.append(module)
    if failed:
        print(f"\nfailed: {', '.join(failed)}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
