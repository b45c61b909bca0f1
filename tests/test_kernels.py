"""The fast kernels against their plain twin, and the choice between them."""

import jax
import jax.numpy as jnp
import pytest

import jaxnet
from jaxnet import _kernels, _reference
import oracle

TOL64 = 1e-12

# Sizes the unrolled form is used for (compile time grows with the parameter count).
SIZES = [jaxnet.SEED_SIZES, (2, 3), (1, 1, 1, 2), (3, 6, 4)]
# Below the lane count, whole lanes only, and whole lanes plus a remainder.
BATCHES = [1, _kernels.LANES, 3 * _kernels.LANES + 44]


@pytest.mark.parametrize("soft", [False, True], ids=["int", "soft"])
@pytest.mark.parametrize("batch", BATCHES)
@pytest.mark.parametrize("sizes", SIZES, ids=str)
def test_unrolled_kernels_match_reference_twin(sizes, batch, soft):
    params = oracle.random_params(jax.random.key(batch), sizes)
    x, y = oracle.random_batch(jax.random.key(1), batch, sizes, soft)
    want_loss, want = _reference.value_and_grad(params, x, y)
    got_loss, got = jax.jit(_kernels._unrolled_value_and_grad)(params, x, y)
    assert oracle.rel_err(got, want) <= TOL64
    assert abs(float(got_loss - want_loss)) <= TOL64 * abs(float(want_loss))
    got_each = jax.jit(_kernels._unrolled_per_example)(params, x, y)
    assert oracle.rel_err(got_each, _reference.per_example_grads(params, x, y)) <= TOL64


def test_kernel_choice_by_size():
    assert _kernels.use_unrolled(jaxnet.init(jax.random.key(0), jaxnet.SEED_SIZES))
    assert not _kernels.use_unrolled(jaxnet.init(jax.random.key(0), (5, 16, 8, 8, 4)))


def test_public_api_on_seed_net_with_lane_remainder_matches_autodiff():
    params = oracle.random_params(jax.random.key(2), jaxnet.SEED_SIZES)
    x, y = oracle.random_batch(jax.random.key(3), 2 * _kernels.LANES + 5, jaxnet.SEED_SIZES)
    assert oracle.rel_err(jaxnet.grad(params, x, y), oracle.grad(params, x, y)) <= 1e-10
    assert oracle.rel_err(jax.jit(jaxnet.grad)(params, x, y), oracle.grad(params, x, y)) <= 1e-10


def test_float32_large_batch_accumulates_accurately():
    """2^18 float32 examples: lane-split sums stay within 1e-5 of float64 autodiff."""
    params = oracle.random_params(jax.random.key(4), jaxnet.SEED_SIZES)
    x, y = oracle.random_batch(jax.random.key(5), 2**18, jaxnet.SEED_SIZES)
    want = oracle.grad(params, x, y)
    p32 = jax.tree.map(lambda a: a.astype(jnp.float32), params)
    for fn in (jaxnet.grad, jax.jit(jaxnet.grad)):
        assert oracle.rel_err(fn(p32, x.astype(jnp.float32), y), want) <= 1e-5


def test_nan_input_propagates_under_cpu_compiler_options():
    """The CPU options keep IEEE NaN semantics: a NaN example poisons the mean, never vanishes."""
    params = jaxnet.init(jax.random.key(6))
    x = jax.random.normal(jax.random.key(7), (300, 2), jnp.float32).at[17, 0].set(jnp.nan)
    y = jax.random.randint(jax.random.key(8), (300,), 0, 3)
    want = oracle.grad(params, x, y)  # autodiff: NaN wherever the NaN reaches
    assert bool(jnp.isnan(want[-1].b).all())
    with jaxnet.value_checks(False):  # the eager checks would (rightly) refuse this x
        for fn in (jaxnet.grad, jax.jit(jaxnet.grad, compiler_options=jaxnet.CPU_COMPILER_OPTIONS)):
            got = fn(params, x, y)
            for g, w in zip(jax.tree.leaves(got), jax.tree.leaves(want)):
                assert (jnp.isnan(g) == jnp.isnan(w)).all()


@pytest.mark.parametrize("batch", [3 * _kernels.CHUNK, 2 * _kernels.CHUNK + 77])
def test_streamed_matrix_form_matches_one_pass(batch):
    sizes = (5, 16, 8, 8, 4)
    params = oracle.random_params(jax.random.key(0), sizes)
    x, y = oracle.random_batch(jax.random.key(1), batch, sizes, soft=True)
    where = jax.random.bernoulli(jax.random.key(2), 0.7, (batch,))
    weight = where.astype(x.dtype)
    want_loss, want = _reference.value_and_grad(params, x, y, weight)
    got_loss, got = jax.jit(_kernels.value_and_grad)(params, x, y, weight)
    assert oracle.rel_err(got, want) <= TOL64
    assert abs(float(got_loss - want_loss)) <= TOL64 * abs(float(want_loss))


def test_mean_gradient_workspace_does_not_grow_with_the_batch():
    """XLA's temp buffer for jax.jit(jaxnet.grad) is the same at 2^16 and 2^22 examples."""
    for sizes in (jaxnet.SEED_SIZES, (2, 64, 3)):
        params = jaxnet.init(jax.random.key(0), sizes)
        temp = []
        for batch in (2**16, 2**22):
            x = jax.ShapeDtypeStruct((batch, sizes[0]), jnp.float32)
            y = jax.ShapeDtypeStruct((batch,), jnp.int32)
            temp.append(jax.jit(jaxnet.grad).lower(params, x, y).compile().memory_analysis().temp_size_in_bytes)
        assert temp[1] <= temp[0] + 2**16, (sizes, temp)


@pytest.mark.parametrize("sizes,batch,chunk", [(jaxnet.SEED_SIZES, 1000, 128), (jaxnet.SEED_SIZES, 1024, 256), ((5, 16, 8, 8, 4), 300, 64)])
def test_chunked_per_example_grads_equal_one_pass(sizes, batch, chunk):
    params = oracle.random_params(jax.random.key(0), sizes)
    x, y = oracle.random_batch(jax.random.key(1), batch, sizes)
    where = jax.random.bernoulli(jax.random.key(2), 0.8, (batch,))
    want = jaxnet.per_example_grads(params, x, y, where=where)
    got = jax.jit(jaxnet.per_example_grads, static_argnames="chunk_size")(params, x, y, where=where, chunk_size=chunk)
    assert oracle.rel_err(got, want) <= TOL64


@pytest.mark.parametrize("chunk", [0, -3, 2.5, True])
def test_bad_chunk_size_is_rejected(chunk):
    params = jaxnet.init(jax.random.key(0))
    with pytest.raises(ValueError, match="chunk_size must be a positive int"):
        jaxnet.per_example_grads(params, jnp.ones((4, 2)), jnp.zeros(4, jnp.int32), chunk_size=chunk)
