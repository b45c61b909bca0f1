"""The benchmark harness runs end to end on tiny batches and reports every row."""

import json
import subprocess
import sys

import jax
import pytest

from jaxnet import bench, cli


def test_bench_rows_table_and_json(tmp_path):
    rows = bench.run(jax.random.key(0), mean_batches=(256,), per_example_batches=(128,), dp_batches=(256,), repeats=2, torch_baseline=False)
    methods = {(r.task, r.method) for r in rows}
    for task, names in {
        "mean": ["jaxnet, native", "jaxnet, xla", "jaxnet, xla + CPU options", "jaxnet, un-jitted", "jax.grad", "read roofline", "numpy"],
        "per_example": ["jaxnet, native", "jaxnet, xla", "jaxnet, xla + CPU options", "jaxnet, un-jitted", "jaxnet, xla, chunk_size=2^16", "jax.vmap(jax.grad)", "write roofline"],
        "dp": ["jaxnet.clipped_mean_grad, native", "jaxnet.clipped_mean_grad, xla", "per_example_grads + optax aggregate"],
    }.items():
        for name in names:
            assert (task, name) in methods
    assert all(r.examples_per_s > 0 and r.seconds > 0 for r in rows)
    text = bench.table(rows)
    assert text.count("\n") == len(rows) + 1 and "| mean | jax.grad | 2^8 | " in text
    path = tmp_path / "b.json"
    bench.write_json(path, rows)
    payload = json.loads(path.read_text())
    assert payload["environment"]["jax"] == jax.__version__ and len(payload["rows"]) == len(rows)


def test_numpy_baseline_matches_jaxnet():
    import numpy as np

    import jaxnet

    params = jaxnet.init(jax.random.key(0))
    x = jax.random.normal(jax.random.key(1), (300, 2))
    y = jax.random.randint(jax.random.key(2), (300,), 0, 3)
    got = bench._numpy_mean([(np.asarray(l.w), np.asarray(l.b)) for l in params], np.asarray(x), np.asarray(y))
    for (gw, gb), want in zip(got, jaxnet.grad(params, x, y)):
        np.testing.assert_allclose(gw, want.w, atol=1e-6)
        np.testing.assert_allclose(gb, want.b, atol=1e-6)


def test_cli_bench_writes_outputs(tmp_path, capsys):
    code = cli.main(["bench", "--mean-powers", "7", "--per-example-powers", "--dp-powers", "--repeats", "1", "--no-numpy", "--fresh-pages", "--out", str(tmp_path)])
    assert code == 0
    out = capsys.readouterr().out
    assert "| mean | jaxnet, native | 2^7 |" in out and "| mean | jaxnet, xla | 2^7 |" in out
    assert (tmp_path / "bench.json").exists()


_KEEP_FREED = """
import sys, numpy as np
from jaxnet import bench

def rss():
    with open("/proc/self/status") as f:
        return next(int(l.split()[1]) * 1024 for l in f if l.startswith("VmRSS:"))

kept = bench.keep_freed_memory() if sys.argv[1] == "keep" else False
before = rss()
a = np.ones(2**24)  # 128 MiB, above glibc's largest default mmap threshold
del a
print(kept, (rss() - before) / 2**20)
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc and /proc are Linux's")
def test_keep_freed_memory_keeps_a_freed_array_resident():
    # With glibc's defaults a freed 128 MiB array goes back to the kernel; the
    # benchmark's setting keeps it, so the next call reuses warm pages.
    def run(mode):
        out = subprocess.run([sys.executable, "-c", _KEEP_FREED, mode], capture_output=True, text=True, check=True)
        kept, grown = out.stdout.split()
        return kept == "True", float(grown)

    kept, grown = run("keep")
    default_kept, default_grown = run("default")
    assert kept and grown > 100, grown
    assert not default_kept and default_grown < 10, default_grown
