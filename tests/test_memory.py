"""Bounded memory: the mean gradient's peak memory beyond its inputs, measured in a subprocess."""

import json
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _measure(*args):
    code = "import sys, json; sys.path.insert(0, 'benchmarks'); import memory; print(json.dumps(memory.measure(*%r)))" % (args,)
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=600, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_measurement_sees_allocations():
    """Per-example gradients of 2^20 examples write 104 MiB: the method must see them."""
    result = _measure(20, [2, 3, 2, 3], True)
    assert result["peak_beyond_inputs_bytes"] >= 26 * 4 * 2**20 * 0.9


def test_mean_gradient_of_2_26_examples_needs_under_256_mib_beyond_inputs():
    result = _measure(26, [2, 3, 2, 3])
    assert result["input_bytes"] == 2**26 * 12
    assert result["peak_beyond_inputs_bytes"] < 256 * 2**20
