"""Data parallelism over 4 CPU devices (in a subprocess, which owns its device count)."""

import os
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))


def test_sharded_batches_match_single_device_on_explicit_and_auto_meshes():
    env = dict(os.environ, JAX_PLATFORMS="cpu")
    out = subprocess.run([sys.executable, os.path.join(HERE, "multidevice", "sharded_check.py")], capture_output=True, text=True, timeout=900, env=env)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "sharded OK" in out.stdout
