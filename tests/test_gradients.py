"""jaxnet's hand-written gradients against autodiff of an independent reference, in float64."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import jaxnet
from jaxnet import _reference
import oracle

TOL64 = 1e-10  # relative to each leaf's largest magnitude
TOL32 = 2e-5  # float32 jaxnet against the float64 oracle, batches up to ~100

# (name, sizes): the seed, no hidden layer, width-1 layers, deeper and wider.
SIZES = [
    ("seed", jaxnet.SEED_SIZES),
    ("no_hidden", (2, 3)),
    ("width1", (1, 1, 1, 2)),
    ("width1_in_middle", (3, 1, 4)),
    ("deep_wide", (5, 16, 8, 8, 4)),
    ("wide", (2, 64, 3)),
]
BATCHES = [1, 33]  # batch 1 and an odd batch; other sizes are covered in the tests below



def _case_list():
    for name, sizes in SIZES:
        for batch in BATCHES:
            for soft in (False, True):
                yield pytest.param(sizes, batch, soft, id=f"{name}-B{batch}-{'soft' if soft else 'int'}")


CASES = list(_case_list())


def _setup(sizes, batch, soft, dtype=jnp.float64, seed=0):
    key = jax.random.key(seed)
    params = oracle.random_params(key, sizes, dtype)
    x, y = oracle.random_batch(jax.random.fold_in(key, 7), batch, sizes, soft, dtype)
    return params, x, y


@pytest.mark.parametrize("sizes,batch,soft", CASES)
def test_grad_matches_autodiff_float64(sizes, batch, soft):
    params, x, y = _setup(sizes, batch, soft)
    want_loss, want = oracle.value_and_grad(params, x, y)
    got_loss, got = jax.jit(jaxnet.value_and_grad)(params, x, y)
    assert oracle.rel_err(got, want) <= TOL64
    assert oracle.rel_err(jaxnet.grad(params, x, y), want) <= TOL64
    assert abs(float(got_loss) - float(want_loss)) <= TOL64 * max(1.0, abs(float(want_loss)))
    assert abs(float(jaxnet.loss(params, x, y)) - float(want_loss)) <= TOL64 * max(1.0, abs(float(want_loss)))


@pytest.mark.parametrize("sizes,batch,soft", CASES)
def test_per_example_grads_match_vmapped_autodiff_float64(sizes, batch, soft):
    params, x, y = _setup(sizes, batch, soft)
    want = oracle.per_example_grads(params, x, y)
    got = jax.jit(jaxnet.per_example_grads)(params, x, y)
    assert jax.tree.structure(got) == jax.tree.structure(params)
    assert oracle.rel_err(got, want) <= TOL64
    np.testing.assert_allclose(
        jaxnet.per_example_loss(params, x, y), oracle.per_example_loss(params, x, y), rtol=TOL64, atol=TOL64
    )


@pytest.mark.parametrize("name,sizes", SIZES)
def test_reference_twin_matches_autodiff_float64(name, sizes):
    params, x, y = _setup(sizes, 9, False)
    assert oracle.rel_err(_reference.value_and_grad(params, x, y)[1], oracle.grad(params, x, y)) <= TOL64
    assert oracle.rel_err(_reference.per_example_grads(params, x, y), oracle.per_example_grads(params, x, y)) <= TOL64


def _tie_setup():
    """Seed net with pre-activations exactly 0 in both hidden layers.

    With x = 0 and b1[0] = 0, a1[0] = 0 exactly. Where all of h1 is 0 (x = 0
    and b1 <= 0), a2 = b2, so b2[1] = 0 puts a tie in layer 2 as well.
    """
    params = oracle.random_params(jax.random.key(3), jaxnet.SEED_SIZES)
    (w1, b1), (w2, b2), (v, v0) = params
    b1 = b1.at[0].set(0.0).at[1].set(-0.5).at[2].set(0.0)
    b2 = b2.at[0].set(0.4).at[1].set(0.0)
    params = (jaxnet.Dense(w1, b1), jaxnet.Dense(w2, b2), jaxnet.Dense(v, v0))
    x = jnp.array([[0.0, 0.0], [0.0, 0.0], [0.7, -0.2], [-1.0, 0.5], [0.3, 0.9]])
    y = jnp.array([0, 2, 1, 2, 0])
    return params, x, y


def test_relu_ties_follow_jax_nn_relu():
    params, x, y = _tie_setup()
    pres = _reference.activations(params, x)[2]
    assert (pres[0] == 0).any() and (pres[1] == 0).any(), "the setup must contain exact ties"
    want = oracle.grad(params, x, y)
    assert oracle.rel_err(jaxnet.grad(params, x, y), want) <= TOL64
    assert oracle.rel_err(jaxnet.per_example_grads(params, x, y), oracle.per_example_grads(params, x, y)) <= TOL64

    # The tie convention is visible: a maximum-based ReLU (derivative 0.5 at 0) differs.
    def max_relu_loss(p, x, y):
        h = x
        for w, b in p[:-1]:
            h = jnp.maximum(h @ w + b[None, :], 0.0)
        logits = h @ p[-1].w + p[-1].b[None, :]
        return jnp.mean(optax.losses.softmax_cross_entropy_with_integer_labels(logits, y))

    assert oracle.rel_err(jaxnet.grad(params, x, y), jax.grad(max_relu_loss)(params, x, y)) > 1e-3


@pytest.mark.parametrize("sizes,batch,soft", [(jaxnet.SEED_SIZES, 1, False), (jaxnet.SEED_SIZES, 65, True), ((5, 16, 8, 8, 4), 129, False)])
def test_float32_agrees_with_float64_autodiff(sizes, batch, soft):
    params, x, y = _setup(sizes, batch, soft)
    want = oracle.grad(params, x, y)
    params32 = jax.tree.map(lambda a: a.astype(jnp.float32), params)
    got = jax.jit(jaxnet.grad)(params32, x.astype(jnp.float32), y if not soft else y.astype(jnp.float32))
    assert all(leaf.dtype == jnp.float32 for leaf in jax.tree.leaves(got))
    assert oracle.rel_err(got, want) <= TOL32
    got_pe = jax.jit(jaxnet.per_example_grads)(params32, x.astype(jnp.float32), y if not soft else y.astype(jnp.float32))
    assert oracle.rel_err(got_pe, oracle.per_example_grads(params, x, y)) <= TOL32


def test_seed_net_grad_matches_finite_differences():
    """Central differences of the loss, independent of autodiff."""
    params, x, y = _setup(jaxnet.SEED_SIZES, 16, False, seed=5)
    got = jaxnet.grad(params, x, y)
    eps = 1e-6
    leaves, treedef = jax.tree.flatten(params)
    for index, leaf in enumerate(leaves):
        fd = np.zeros(leaf.shape)
        for pos in np.ndindex(leaf.shape):
            def shifted(delta):
                moved = list(leaves)
                moved[index] = leaf.at[pos].add(delta)
                return float(jaxnet.loss(jax.tree.unflatten(treedef, moved), x, y))
            fd[pos] = (shifted(eps) - shifted(-eps)) / (2 * eps)
        np.testing.assert_allclose(jax.tree.leaves(got)[index], fd, rtol=1e-6, atol=1e-8)


def test_single_example_and_vmap_idiom():
    params, x, y = _setup(jaxnet.SEED_SIZES, 6, False)
    per_example = jax.jit(jaxnet.per_example_grads)(params, x, y)
    vmapped = jax.jit(jax.vmap(jaxnet.grad, in_axes=(None, 0, 0)))(params, x, y)
    assert oracle.rel_err(vmapped, per_example) <= TOL64
    one = jaxnet.grad(params, x[2], y[2])
    assert oracle.rel_err(one, jax.tree.map(lambda g: g[2], per_example)) <= TOL64
    assert jaxnet.loss(params, x[2], y[2]).shape == ()
    assert jaxnet.per_example_loss(params, x[2], y[2]).shape == ()
    assert jaxnet.forward(params, x[2]).shape == (3,)
    # Soft labels for one example: (C,) probabilities.
    soft = jax.nn.one_hot(y, 3, dtype=jnp.float64)
    assert oracle.rel_err(jaxnet.grad(params, x[2], soft[2]), one) <= TOL64


def test_ensemble_via_vmap_over_stacked_params():
    keys = jax.random.split(jax.random.key(11), 4)
    stacked = jax.vmap(lambda k: oracle.random_params(k, jaxnet.SEED_SIZES))(keys)
    _, x, y = _setup(jaxnet.SEED_SIZES, 10, False)
    got = jax.jit(jax.vmap(jaxnet.grad, in_axes=(0, None, None)))(stacked, x, y)
    for e in range(4):
        member = jax.tree.map(lambda a: a[e], stacked)
        assert oracle.rel_err(jax.tree.map(lambda a: a[e], got), oracle.grad(member, x, y)) <= TOL64
    got_pe = jax.vmap(jaxnet.per_example_grads, in_axes=(0, None, None))(stacked, x, y)
    assert jax.tree.leaves(got_pe)[0].shape == (4, 10, 2, 3)


def test_outputs_keep_params_structure_and_dtype():
    params = jaxnet.init(jax.random.key(0), (3, 4, 2), jnp.float32)
    x = jnp.ones((5, 3), jnp.float64)
    y = jnp.array([0, 1, 1, 0, 1])
    grads = jaxnet.grad(params, x, y)
    assert isinstance(grads, tuple) and all(isinstance(g, jaxnet.Dense) for g in grads)
    assert jax.tree.map(lambda a: (a.shape, a.dtype), grads) == jax.tree.map(lambda a: (a.shape, a.dtype), params)
    assert jaxnet.loss(params, x, y).dtype == jnp.float32
