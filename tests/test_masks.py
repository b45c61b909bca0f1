"""`where` masks: masked examples contribute nothing, as with optax's `where`."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxnet
import oracle

TOL = 1e-10
CASES = [(jaxnet.SEED_SIZES, 300, False), (jaxnet.SEED_SIZES, 37, True), ((5, 16, 8, 8, 4), 21, False)]


def _setup(sizes, batch, soft):
    params = oracle.random_params(jax.random.key(batch), sizes)
    x, y = oracle.random_batch(jax.random.key(1), batch, sizes, soft)
    where = jax.random.bernoulli(jax.random.key(2), 0.6, (batch,))
    # Garbage in masked rows must not leak: NaN features, out-of-range labels.
    x = jnp.where(where[:, None], x, jnp.nan)
    if not soft:
        y = jnp.where(where, y, 99)
    return params, x, y, where


@pytest.mark.parametrize("sizes,batch,soft", CASES)
def test_masked_means_equal_means_over_the_kept_examples(sizes, batch, soft):
    params, x, y, where = _setup(sizes, batch, soft)
    keep = np.asarray(where)
    xk, yk = x[keep], y[keep]
    loss, grads = jax.jit(jaxnet.value_and_grad)(params, x, y, where=where)
    assert oracle.rel_err(grads, oracle.grad(params, xk, yk)) <= TOL
    assert abs(float(loss - oracle.loss(params, xk, yk))) <= TOL
    assert abs(float(jaxnet.loss(params, x, y, where=where) - oracle.loss(params, xk, yk))) <= TOL
    assert oracle.rel_err(jax.grad(jaxnet.loss)(params, x, y, where=where), oracle.grad(params, xk, yk)) <= TOL
    clipped, stats = jaxnet.clipped_mean_grad(params, x, y, 0.1, where=where)
    want, want_stats = jaxnet.clipped_mean_grad(params, xk, yk, 0.1)
    assert oracle.rel_err(clipped, want) <= TOL
    np.testing.assert_allclose(stats.norms[keep], want_stats.norms, rtol=TOL)
    assert int(stats.num_clipped) == int(want_stats.num_clipped)


@pytest.mark.parametrize("sizes,batch,soft", CASES)
def test_masked_rows_of_per_example_outputs_are_zero(sizes, batch, soft):
    params, x, y, where = _setup(sizes, batch, soft)
    keep = np.asarray(where)
    each = jax.jit(jaxnet.per_example_grads)(params, x, y, where=where)
    want = oracle.per_example_grads(params, x[keep], y[keep])
    for g, w in zip(jax.tree.leaves(each), jax.tree.leaves(want)):
        assert (np.asarray(g)[~keep] == 0).all()
        assert oracle.rel_err(g[keep], w) <= TOL
    losses = jaxnet.per_example_loss(params, x, y, where=where)
    assert (np.asarray(losses)[~keep] == 0).all()
    np.testing.assert_allclose(losses[keep], oracle.per_example_loss(params, x[keep], y[keep]), rtol=TOL)


@pytest.mark.parametrize("where", [jnp.ones(4), jnp.ones((4, 1), bool), jnp.ones(3, bool)])
def test_bad_mask_is_rejected(where):
    params = jaxnet.init(jax.random.key(0))
    with pytest.raises(ValueError, match=r"grad: where must be a bool mask of shape \(4,\)"):
        jaxnet.grad(params, jnp.ones((4, 2)), jnp.zeros(4, jnp.int32), where=where)
