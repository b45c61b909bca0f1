"""The native CPU backend against the pure-JAX backend and autodiff, and the backend setting.

The rest of the suite runs under the default setting ("auto", which is the
native backend on CPU when it is built); these tests force each backend and
compare them, and cover what only the native backend has: its build, its
fallbacks and its thread pool.
"""

import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxnet
from jaxnet import _native
import oracle

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# (name, sizes): the seed (its own unrolled build), other sizes the native
# kernels cover (run-time widths), and widths at the bounds.
SIZES = [
    ("seed", jaxnet.SEED_SIZES),
    ("no_hidden", (2, 3)),
    ("width1", (1, 1, 1, 2)),
    ("deep", (4, 7, 5, 6, 3)),
    ("widest", (3, 16, 16, 2)),
]
# 1, an odd batch, and one over several chunks of the thread pool (16384) with a ragged tail.
BATCHES = [1, 37, 2 * 16384 + 13]


def _cases():
    for name, sizes in SIZES:
        for batch in BATCHES:
            for soft in (False, True):
                if batch > 1000 and (soft or name != "seed"):
                    continue  # one big batch per kind is enough
                yield pytest.param(sizes, batch, soft, id=f"{name}-B{batch}-{'soft' if soft else 'int'}")


def _both(fn, *args, **kwargs):
    with jaxnet.backend("native"):
        native = jax.jit(fn)(*args, **kwargs)
    with jaxnet.backend("xla"):
        xla = jax.jit(fn)(*args, **kwargs)
    return native, xla


def _setup(sizes, batch, soft, dtype=jnp.float64, seed=0):
    params = oracle.random_params(jax.random.key(seed), sizes, dtype)
    x, y = oracle.random_batch(jax.random.key(seed + 1), batch, sizes, soft, dtype)
    where = jnp.arange(batch) % 4 != 1
    return params, x, y, where


def test_native_kernels_are_built_and_loaded():
    assert _native.available(), _native.unavailable_reason()


@pytest.mark.parametrize("sizes,batch,soft", list(_cases()))
def test_native_equals_pure_jax_and_autodiff_in_float64(sizes, batch, soft):
    params, x, y, where = _setup(sizes, batch, soft)
    want_loss, want = oracle.value_and_grad(params, x, y)
    (loss, g), (loss_x, g_x) = _both(jaxnet.value_and_grad, params, x, y)
    assert oracle.rel_err(g, want) <= 1e-12 and oracle.rel_err(g, g_x) <= 1e-12
    assert abs(float(loss) - float(want_loss)) <= 1e-12 * max(1.0, abs(float(want_loss)))
    each, each_x = _both(jaxnet.per_example_grads, params, x, y, where=where)
    assert oracle.rel_err(each, each_x) <= 1e-12
    keep = np.asarray(where)
    want_each = oracle.per_example_grads(params, x[keep], y[keep])
    assert oracle.rel_err(jax.tree.map(lambda a: a[keep], each), want_each) <= 1e-12
    assert all(np.all(np.asarray(a)[~keep] == 0) for a in jax.tree.leaves(each))
    masked, masked_x = _both(lambda p, x, y: jaxnet.grad(p, x, y, where=where), params, x, y)
    assert oracle.rel_err(masked, masked_x) <= 1e-12
    (clipped, stats), (clipped_x, stats_x) = _both(lambda p, x, y: jaxnet.clipped_mean_grad(p, x, y, 0.5, where=where), params, x, y)
    assert oracle.rel_err(clipped, clipped_x) <= 1e-12 and oracle.rel_err(stats.norms, stats_x.norms) <= 1e-12


@pytest.mark.parametrize("sizes", [s for _, s in SIZES[:4]], ids=[n for n, _ in SIZES[:4]])
def test_native_float32_within_float32_rounding_of_autodiff(sizes):
    params, x, y, _ = _setup(sizes, 1000, False, jnp.float32)
    want = oracle.grad(jax.tree.map(lambda a: a.astype(jnp.float64), params), x.astype(jnp.float64), y)
    (got, got_x) = _both(jaxnet.grad, params, x, y)
    assert got[0].w.dtype == jnp.float32
    # float32 sums over 1000 examples: a few ulp per term, as the pure-JAX path.
    assert oracle.rel_err(got, want) <= 2e-5 and oracle.rel_err(got_x, want) <= 2e-5
    each, each_x = _both(jaxnet.per_example_grads, params, x, y)
    assert oracle.rel_err(each, each_x) <= 2e-6


def test_native_float16_and_bfloat16_compute_in_float32():
    params, x, y, _ = _setup(jaxnet.SEED_SIZES, 256, False, jnp.float32)
    want, _ = _both(jaxnet.grad, params, x, y)
    for dtype in (jnp.float16, jnp.bfloat16):
        low = jax.tree.map(lambda a: a.astype(dtype), params)
        got, got_x = _both(jaxnet.grad, low, x.astype(dtype), y)
        assert got[0].w.dtype == dtype
        assert oracle.rel_err(got, got_x) <= 1e-2 and oracle.rel_err(got, want) <= 5e-2


def test_native_relu_ties_follow_jax_nn_relu():
    # Every hidden pre-activation is exactly 0 for x = 0 with zero biases: relu'(0) = 0.
    params = tuple(jaxnet.Dense(l.w, jnp.zeros_like(l.b)) for l in oracle.random_params(jax.random.key(3), jaxnet.SEED_SIZES))
    x, y = jnp.zeros((40, 2)), jnp.arange(40) % 3
    got, got_x = _both(jaxnet.per_example_grads, params, x, y)
    assert oracle.rel_err(got, oracle.per_example_grads(params, x, y)) <= 1e-12
    assert oracle.rel_err(got, got_x) <= 1e-12


def test_native_is_bitwise_repeatable_over_threads():
    params, x, y, _ = _setup(jaxnet.SEED_SIZES, 8 * 16384 + 5, False, jnp.float32)
    with jaxnet.backend("native"):
        f = jax.jit(jaxnet.value_and_grad)
        first = jax.tree.map(np.asarray, f(params, x, y))
        for _ in range(5):
            again = jax.tree.map(np.asarray, f(params, x, y))
            assert all(np.array_equal(a, b) for a, b in zip(jax.tree.leaves(first), jax.tree.leaves(again)))


def test_native_nan_propagates_as_in_pure_jax():
    params, x, y, _ = _setup(jaxnet.SEED_SIZES, 20, False)
    x = x.at[3, 1].set(jnp.nan)
    with jaxnet.value_checks(False):
        got, got_x = _both(jaxnet.per_example_grads, params, x, y)
    for a, b in zip(jax.tree.leaves(got), jax.tree.leaves(got_x)):
        np.testing.assert_array_equal(np.isnan(a), np.isnan(b))
        assert not np.isnan(np.asarray(a)[np.arange(20) != 3]).any()  # it stays in its own example
    assert any(np.isnan(np.asarray(a)[3]).any() for a in jax.tree.leaves(got))


def test_large_logits_stay_finite_on_native():
    params, x, y, _ = _setup(jaxnet.SEED_SIZES, 64, False, jnp.float32)
    big = tuple(jaxnet.Dense(l.w * 300, l.b * 300) for l in params)  # logits ~ 1e4
    with jaxnet.backend("native"):
        loss, g = jaxnet.value_and_grad(big, x, y)
    assert np.isfinite(float(loss)) and all(np.all(np.isfinite(a)) for a in jax.tree.leaves(g))
    assert float(jnp.max(jnp.abs(jaxnet.forward(big, x)))) > 1e3


# ------------------------------------------------------------------ JAX composition


def test_native_under_vmap_over_examples_and_stacked_params():
    params, x, y, _ = _setup(jaxnet.SEED_SIZES, 30, False)
    stacked = jax.tree.map(lambda a: jnp.stack([a, -a, 2 * a]), params)
    with jaxnet.backend("native"):
        each = jax.jit(jax.vmap(jaxnet.grad, in_axes=(None, 0, 0)))(params, x, y)
        ensemble = jax.jit(jax.vmap(jaxnet.grad, in_axes=(0, None, None)))(stacked, x, y)
        batches = jax.vmap(jaxnet.grad, in_axes=(None, 0, 0))(params, x.reshape(3, 10, 2), y.reshape(3, 10))
    assert oracle.rel_err(each, oracle.per_example_grads(params, x, y)) <= 1e-12
    for k in range(3):
        member = jax.tree.map(lambda a: a[k], stacked)
        assert oracle.rel_err(jax.tree.map(lambda a: a[k], ensemble), oracle.grad(member, x, y)) <= 1e-12
        assert oracle.rel_err(jax.tree.map(lambda a: a[k], batches), oracle.grad(params, x[10 * k : 10 * k + 10], y[10 * k : 10 * k + 10])) <= 1e-12


def test_autodiff_of_loss_on_native_uses_the_hand_rule_and_second_order_works():
    params, x, y, _ = _setup(jaxnet.SEED_SIZES, 12, True)
    with jaxnet.backend("native"):
        g = jax.jit(jax.grad(jaxnet.loss))(params, x, y)
        gx = jax.grad(jaxnet.loss, argnums=1)(params, x, y)
        hess = jax.hessian(lambda w: jaxnet.loss((jaxnet.Dense(w, params[0].b),) + params[1:], x, y))(params[0].w)
        lowered = jax.jit(jax.grad(jaxnet.loss)).lower(params, x, y).as_text()
    assert "jaxnet_sums" in lowered
    assert oracle.rel_err(g, oracle.grad(params, x, y)) <= 1e-12
    assert oracle.rel_err(gx, jax.grad(oracle.loss, argnums=1)(params, x, y)) <= 1e-12
    want_h = jax.hessian(lambda w: oracle.loss((jaxnet.Dense(w, params[0].b),) + params[1:], x, y))(params[0].w)
    assert oracle.rel_err(hess, want_h) <= 1e-10


# ------------------------------------------------------------------ the setting


def test_backend_setting_selects_the_kernels_under_one_jit_and_restores():
    params, x, y, _ = _setup(jaxnet.SEED_SIZES, 64, False)
    f = jax.jit(jaxnet.grad)
    assert jaxnet.get_backend() == "auto"
    with jaxnet.backend("xla"):
        assert "jaxnet_sums" not in f.lower(params, x, y).as_text()
        xla = f(params, x, y)
    with jaxnet.backend("native"):
        assert "jaxnet_sums" in f.lower(params, x, y).as_text()
        native = f(params, x, y)
    assert jaxnet.get_backend() == "auto"
    assert "jaxnet_sums" in f.lower(params, x, y).as_text()  # auto on CPU with the library built
    # The same jitted function gave each setting its own trace: results differ in the last bits.
    assert oracle.rel_err(native, xla) <= 1e-12
    with pytest.raises(ValueError, match="backend: name must be one of"):
        jaxnet.backend("cuda")


def test_nets_outside_the_native_bounds_fall_back_to_pure_jax():
    params, x, y, _ = _setup((2, 17, 3), 20, False)  # a layer wider than 16 units
    with jaxnet.backend("native"):
        lowered = jax.jit(jaxnet.grad).lower(params, x, y).as_text()
        got = jaxnet.grad(params, x, y)
    assert "jaxnet_sums" not in lowered
    assert oracle.rel_err(got, oracle.grad(params, x, y)) <= 1e-12


def test_chunk_size_is_moot_on_native_and_gives_the_same_result():
    params, x, y, _ = _setup(jaxnet.SEED_SIZES, 1000, False)
    with jaxnet.backend("native"):
        chunked = jaxnet.per_example_grads(params, x, y, chunk_size=128)
        whole = jaxnet.per_example_grads(params, x, y)
    assert all(np.array_equal(a, b) for a, b in zip(jax.tree.leaves(chunked), jax.tree.leaves(whole)))


def _run(code, **env):
    full_env = dict(os.environ, JAX_PLATFORMS="cpu", **env)
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, env=full_env)


SCRIPT = """
import jax, jax.numpy as jnp, jaxnet
params = jaxnet.init(jax.random.key(0))
x, y = jnp.ones((8, 2)), jnp.zeros(8, jnp.int32)
print("lowered native:", "jaxnet_sums" in jax.jit(jaxnet.grad).lower(params, x, y).as_text())
print("grad ok:", bool(jnp.all(jnp.isfinite(jaxnet.grad(params, x, y)[0].w))))
"""


def test_missing_library_falls_back_with_a_one_line_notice():
    out = _run(SCRIPT, JAXNET_NATIVE_LIBRARY="/nonexistent/_jaxnet_cpu.so")
    assert out.returncode == 0, out.stderr
    assert "lowered native: False" in out.stdout and "grad ok: True" in out.stdout
    notices = [line for line in out.stderr.splitlines() if "native CPU kernels unavailable" in line]
    assert len(notices) == 1 and "Traceback" not in out.stderr, out.stderr
    forced = _run(SCRIPT, JAXNET_NATIVE_LIBRARY="/nonexistent/_jaxnet_cpu.so", JAXNET_BACKEND="native")
    assert forced.returncode != 0 and "backend 'native': the native CPU kernels are unavailable" in forced.stderr


def test_environment_variable_sets_the_backend():
    out = _run(SCRIPT, JAXNET_BACKEND="xla")
    assert out.returncode == 0, out.stderr
    assert "lowered native: False" in out.stdout and "grad ok: True" in out.stdout


def test_install_without_a_compiler_still_succeeds(tmp_path):
    # setup.py's build step with a compiler that always fails: no error, a one-line message, no library.
    env = dict(os.environ, CC="false", CXX="false", LDSHARED="false", LDCXXSHARED="false")
    out = subprocess.run(
        [sys.executable, "setup.py", "-q", "build_ext", "--build-lib", str(tmp_path / "lib"), "--build-temp", str(tmp_path / "tmp")],
        cwd=ROOT, capture_output=True, text=True, timeout=300, env=env,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    assert "could not build the native CPU kernels" in out.stdout + out.stderr
    assert not list((tmp_path / "lib").rglob("*.so"))


def test_cli_check_compares_every_backend_with_autodiff(capsys):
    from jaxnet import cli

    assert cli.main(["check", "--batch", "300"]) == 0
    out = capsys.readouterr().out
    assert "backend:       native" in out and "backend:       xla" in out
    assert out.count("PASS") == 2 and "FAIL" not in out
