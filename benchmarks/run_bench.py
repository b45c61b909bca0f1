"""Throughput benchmark of jaxnet's gradient kernels; the same as ``jaxnet bench``.

    python benchmarks/run_bench.py [--out DIR] [--mean-powers P ...] [--per-example-powers P ...]

The harness lives in :mod:`jaxnet.bench`, so an installed copy benchmarks
itself with ``jaxnet bench``. Results of recorded runs: benchmarks/RESULTS.md.
"""

import sys

from jaxnet.cli import main

if __name__ == "__main__":
    sys.exit(main(["bench", *sys.argv[1:]]))
