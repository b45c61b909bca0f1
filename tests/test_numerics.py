"""Numerical edge cases: huge logits, half precision, float64, determinism, random nets."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

import jaxnet
import oracle


def test_large_logits_stay_finite_in_float32():
    params = jaxnet.init(jax.random.key(0))
    x = jax.random.normal(jax.random.key(1), (500, 2), jnp.float32)
    y = jax.random.randint(jax.random.key(2), (500,), 0, 3)
    scaled = jax.tree.map(lambda a: a * 60.0, params)  # three layers: logits grow ~60^3
    logits = jaxnet.forward(scaled, x)
    assert float(jnp.abs(logits).max()) >= 1e4
    for fn in (jaxnet.grad, jax.jit(jaxnet.grad), jaxnet.per_example_grads, jax.jit(jaxnet.per_example_grads)):
        assert all(bool(jnp.isfinite(g).all()) for g in jax.tree.leaves(fn(scaled, x, y)))
    loss, grads = jaxnet.value_and_grad(scaled, x, y)
    assert bool(jnp.isfinite(loss)) and float(loss) > 100  # confidently wrong somewhere: a large, finite loss
    # and it agrees with float64 autodiff
    want = oracle.grad(jax.tree.map(lambda a: a.astype(jnp.float64), scaled), x.astype(jnp.float64), y)
    assert oracle.rel_err(grads, want) <= 1e-4


@pytest.mark.parametrize("dtype", [jnp.float16, jnp.bfloat16])
def test_half_precision_params_and_inputs(dtype):
    """Computed and accumulated in float32, returned in the params' dtype."""
    params32 = jaxnet.init(jax.random.key(0))
    params = jax.tree.map(lambda a: a.astype(dtype), params32)
    x = jax.random.normal(jax.random.key(1), (257, 2)).astype(dtype)
    y = jax.random.randint(jax.random.key(2), (257,), 0, 3)
    # The float32 result on the same (rounded) values is the reference.
    want = jaxnet.grad(jax.tree.map(lambda a: a.astype(jnp.float32), params), x.astype(jnp.float32), y)
    tol = {jnp.float16: 2e-3, jnp.bfloat16: 1.6e-2}[dtype]  # one rounding of the output: 2^-10, 2^-7 (relative)
    for fn in (jaxnet.grad, jax.jit(jaxnet.grad)):
        got = fn(params, x, y)
        assert all(g.dtype == dtype for g in jax.tree.leaves(got))
        assert oracle.rel_err(got, want) <= tol
    each = jaxnet.per_example_grads(params, x, y)
    assert all(g.dtype == dtype for g in jax.tree.leaves(each))
    assert jaxnet.loss(params, x, y).dtype == dtype


def test_float64_under_x64():
    params = jaxnet.init(jax.random.key(0), dtype=jnp.float64)
    x = jax.random.normal(jax.random.key(1), (10, 2), jnp.float64)
    y = jnp.arange(10) % 3
    assert all(g.dtype == jnp.float64 for g in jax.tree.leaves(jaxnet.grad(params, x, y)))


def test_repeated_calls_are_bitwise_identical_on_cpu():
    params = jaxnet.init(jax.random.key(0))
    x = jax.random.normal(jax.random.key(1), (4099, 2), jnp.float32)
    y = jax.random.randint(jax.random.key(2), (4099,), 0, 3)
    for fn in (jaxnet.grad, jax.jit(jaxnet.grad), jax.jit(jaxnet.per_example_grads)):
        first = jax.tree.leaves(fn(params, x, y))
        for _ in range(3):
            assert all(np.array_equal(a, b) for a, b in zip(first, jax.tree.leaves(fn(params, x, y))))


@st.composite
def nets(draw):
    sizes = tuple(draw(st.lists(st.integers(1, 5), min_size=2, max_size=4)))
    batch = draw(st.integers(1, 140))
    soft = draw(st.booleans())
    seed = draw(st.integers(0, 2**16))
    return sizes, batch, soft, seed


@settings(max_examples=15, deadline=None, derandomize=True)
@given(nets())
def test_property_hand_gradients_equal_autodiff(case):
    sizes, batch, soft, seed = case
    params = oracle.random_params(jax.random.key(seed), sizes)
    x, y = oracle.random_batch(jax.random.key(seed + 1), batch, sizes, soft)
    assert oracle.rel_err(jaxnet.grad(params, x, y), oracle.grad(params, x, y)) <= 1e-10
    assert oracle.rel_err(jaxnet.per_example_grads(params, x, y), oracle.per_example_grads(params, x, y)) <= 1e-10
