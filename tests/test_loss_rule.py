"""jax.grad / jvp / hessian of jaxnet.loss use the hand-written rule and match autodiff."""

import jax
import jax.numpy as jnp
import pytest

import jaxnet
import oracle

TOL = 1e-10
CASES = [(jaxnet.SEED_SIZES, 7, False), (jaxnet.SEED_SIZES, 130, True), ((3, 5, 2), 4, True), ((5, 16, 8, 8, 4), 9, False)]


def _setup(sizes, batch, soft):
    params = oracle.random_params(jax.random.key(batch), sizes)
    x, y = oracle.random_batch(jax.random.key(1), batch, sizes, soft)
    return params, x, y


@pytest.mark.parametrize("sizes,batch,soft", CASES)
def test_reverse_mode_in_params_x_and_soft_labels(sizes, batch, soft):
    params, x, y = _setup(sizes, batch, soft)
    argnums = (0, 1, 2) if soft else (0, 1)
    value, got = jax.jit(jax.value_and_grad(jaxnet.loss, argnums=argnums))(params, x, y)
    want = jax.grad(oracle.loss, argnums=argnums)(params, x, y)
    assert abs(float(value - oracle.loss(params, x, y))) <= TOL
    for g, w in zip(got, want):
        assert oracle.rel_err(g, w) <= TOL
    # the input cotangents are real, not zeros
    assert float(jnp.abs(got[1]).max()) > 0


@pytest.mark.parametrize("sizes,batch,soft", CASES[:3])
def test_forward_mode(sizes, batch, soft):
    params, x, y = _setup(sizes, batch, soft)
    tangents = oracle.random_params(jax.random.key(99), sizes), jax.random.normal(jax.random.key(98), x.shape)
    dy = jax.random.normal(jax.random.key(97), y.shape) if soft else None
    if soft:
        _, got = jax.jvp(jaxnet.loss, (params, x, y), (*tangents, dy))
        _, want = jax.jvp(oracle.loss, (params, x, y), (*tangents, dy))
    else:
        _, got = jax.jvp(lambda p, x: jaxnet.loss(p, x, y), (params, x), tangents)
        _, want = jax.jvp(lambda p, x: oracle.loss(p, x, y), (params, x), tangents)
    assert abs(float(got - want)) <= TOL * max(1.0, abs(float(want)))


@pytest.mark.parametrize("sizes,batch,soft", [CASES[0], CASES[2]])
def test_hessian(sizes, batch, soft):
    params, x, y = _setup(sizes, batch, soft)
    got = jax.hessian(jaxnet.loss)(params, x, y)
    want = jax.hessian(oracle.loss)(params, x, y)
    assert oracle.rel_err(got, want) <= TOL


def test_grad_of_loss_uses_the_hand_written_rule(monkeypatch):
    """Under jax.grad, the reference forward pass is never differentiated: the rule answers."""
    from jaxnet import _api

    calls = []
    original = _api._kernels.value_and_grad
    monkeypatch.setattr(_api._kernels, "value_and_grad", lambda *a: calls.append(1) or original(*a))
    jax.clear_caches()
    params, x, y = _setup(jaxnet.SEED_SIZES, 5, False)
    jax.grad(jaxnet.loss)(params, x, y)
    assert calls
