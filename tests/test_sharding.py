"""Data parallelism over 4 CPU devices (in a subprocess, which owns its device count)."""

import os
import subprocess
import sys

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))


@pytest.mark.parametrize("backend", ["native", "xla"])
def test_sharded_batches_match_single_device_on_explicit_and_auto_meshes(backend):
    env = dict(os.environ, JAX_PLATFORMS="cpu", JAXNET_BACKEND=backend)
    out = subprocess.run([sys.executable, os.path.join(HERE, "multidevice", "sharded_check.py")], capture_output=True, text=True, timeout=900, env=env)
    assert out.returncode == 0, out.stderr[-3000:]
    assert f"sharded OK ({backend})" in out.stdout


def _free_port():
    import socket

    with socket.socket() as s:
        s.bind(("localhost", 0))
        return s.getsockname()[1]


def test_two_processes_with_gloo_give_the_single_process_gradient():
    script = os.path.join(HERE, "multidevice", "multihost_check.py")
    port = str(_free_port())
    env = dict(os.environ, JAX_PLATFORMS="cpu")
    procs = [subprocess.Popen([sys.executable, script, str(i), port], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env) for i in range(2)]
    outs = [p.communicate(timeout=600) for p in procs]
    for i, (p, (out, err)) in enumerate(zip(procs, outs)):
        assert p.returncode == 0, err[-3000:]
        assert f"process {i}: multi-host OK" in out


def test_cli_train_on_several_devices_matches_one(tmp_path):
    import numpy as np

    outs = {}
    for n in (1, 2):
        out = str(tmp_path / f"d{n}")
        cmd = [sys.executable, "-m", "jaxnet.cli", "train", "--steps", "60", "--devices", str(n), "--out", out]
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=dict(os.environ, JAX_PLATFORMS="cpu"))
        assert done.returncode == 0, done.stderr[-3000:]
        with np.load(os.path.join(out, "checkpoint.npz")) as f:
            outs[n] = [f[f"params/{i}"] for i in range(6)]
    for a, b in zip(outs[1], outs[2]):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)
