"""DP-SGD: fused clipping equals optax's aggregate on per-example gradients."""


import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import jaxnet
import oracle

# (sizes, batch, soft, clip): clip small enough that most examples are clipped, or large enough that none are.
CASES = [
    (jaxnet.SEED_SIZES, 300, False, 0.05),
    (jaxnet.SEED_SIZES, 37, True, 0.3),
    (jaxnet.SEED_SIZES, 64, False, 1e6),
    ((3, 6, 4), 129, False, 0.1),
    ((5, 16, 8, 8, 4), 50, True, 0.2),
]


def _aggregate(clip, per_example, key=jax.random.key(0), noise=0.0):
    tx = optax.contrib.differentially_private_aggregate(clip, noise, key=key)
    updates, _ = tx.update(per_example, tx.init(None))
    return updates


@pytest.mark.parametrize("sizes,batch,soft,clip", CASES)
def test_clipped_mean_equals_optax_aggregate_float64(sizes, batch, soft, clip):
    params = oracle.random_params(jax.random.key(batch), sizes)
    x, y = oracle.random_batch(jax.random.key(2), batch, sizes, soft)
    per_example = oracle.per_example_grads(params, x, y)
    want = _aggregate(clip, per_example)
    got, stats = jax.jit(jaxnet.clipped_mean_grad)(params, x, y, clip)
    assert oracle.rel_err(got, want) <= 1e-10
    want_norms = jax.vmap(optax.tree.norm)(per_example)
    np.testing.assert_allclose(stats.norms, want_norms, rtol=1e-10)
    assert int(stats.num_clipped) == int(jnp.sum(want_norms > clip))
    # each case exercises what it is meant to: clipping, or none at a huge clip
    assert (int(stats.num_clipped) == 0) == (clip == 1e6)


def test_per_example_grads_feed_optax_aggregate_directly():
    params = jaxnet.init(jax.random.key(0))
    x, y = oracle.random_batch(jax.random.key(1), 33, jaxnet.SEED_SIZES, dtype=jnp.float32)
    updates = _aggregate(0.5, jaxnet.per_example_grads(params, x, y))
    assert jax.tree.structure(updates) == jax.tree.structure(params)
    got, _ = jaxnet.clipped_mean_grad(params, x, y, 0.5)
    assert oracle.rel_err(got, updates) <= 1e-5


def test_noise_has_optax_scale_and_needs_a_key():
    params = jaxnet.init(jax.random.key(0), (2, 64, 3))  # many entries for a std estimate
    x, y = oracle.random_batch(jax.random.key(1), 50, (2, 64, 3), dtype=jnp.float32)
    clean, _ = jaxnet.clipped_mean_grad(params, x, y, 1.0)
    noisy, _ = jaxnet.clipped_mean_grad(params, x, y, 1.0, noise_multiplier=2.0, key=jax.random.key(5))
    diff = np.concatenate([np.ravel(a - b) for a, b in zip(jax.tree.leaves(noisy), jax.tree.leaves(clean))])
    assert abs(diff.std() / (1.0 * 2.0 / 50) - 1) < 0.1  # 387 entries: std within 10%
    again, _ = jaxnet.clipped_mean_grad(params, x, y, 1.0, noise_multiplier=2.0, key=jax.random.key(5))
    assert all((a == b).all() for a, b in zip(jax.tree.leaves(noisy), jax.tree.leaves(again)))
    with pytest.raises(ValueError, match="key"):
        jaxnet.clipped_mean_grad(params, x, y, 1.0, noise_multiplier=1.0)


@pytest.mark.parametrize("clip", [0.0, -1.0, jnp.ones(2)])
def test_bad_clip_is_rejected(clip):
    params = jaxnet.init(jax.random.key(0))
    with pytest.raises(ValueError, match="l2_norm_clip"):
        jaxnet.clipped_mean_grad(params, jnp.ones((3, 2)), jnp.zeros(3, jnp.int32), clip)
