"""Bad input gets a clear error naming the argument, at trace time, before XLA."""

import jax
import jax.numpy as jnp
import pytest

import jaxnet

PARAMS = jaxnet.init(jax.random.key(0), jaxnet.SEED_SIZES)
X = jnp.zeros((4, 2), jnp.float32)
Y = jnp.array([0, 1, 2, 0])

# (id, params, x, y, exception, words the message must contain)
BAD = [
    ("x_rank3", PARAMS, jnp.zeros((4, 2, 1)), Y, ValueError, ["x", "(B, 2)", "(4, 2, 1)"]),
    ("x_features", PARAMS, jnp.zeros((4, 5)), Y, ValueError, ["x", "(B, 2)", "(4, 5)"]),
    ("x_empty", PARAMS, jnp.zeros((0, 2)), jnp.zeros((0,), jnp.int32), ValueError, ["x", "empty"]),
    ("x_complex", PARAMS, X.astype(jnp.complex64), Y, TypeError, ["x", "complex64"]),
    ("batch_mismatch", PARAMS, X, jnp.array([0, 1, 2]), ValueError, ["y", "(4,)", "(3,)"]),
    ("labels_column", PARAMS, X, Y[:, None], ValueError, ["y", "(4,)", "(4, 1)"]),
    ("probs_width", PARAMS, X, jnp.ones((4, 2)) / 2, ValueError, ["y", "(4, 3)", "(4, 2)"]),
    ("float_labels", PARAMS, X, Y.astype(jnp.float32), TypeError, ["y", "integers", "float32"]),
    ("bool_labels", PARAMS, X, Y > 0, TypeError, ["y", "bool"]),
    ("params_not_tuple", PARAMS[0], X, Y, TypeError, ["params[0]", "Dense"]),
    ("params_bias", (PARAMS[0], jaxnet.Dense(PARAMS[1].w, jnp.zeros(3)), PARAMS[2]), X, Y, ValueError, ["params[1].b", "(2,)", "(3,)"]),
    ("params_chain", (PARAMS[0], PARAMS[2]), X, Y, ValueError, ["params[1]", "fan_in 2", "params[0]", "fan_out 3"]),
    ("params_int", (jaxnet.Dense(PARAMS[0].w.astype(jnp.int32), PARAMS[0].b),) + PARAMS[1:], X, Y, TypeError, ["params[0].w", "floating"]),
    ("params_mixed_dtype", (PARAMS[0], jax.tree.map(lambda a: a.astype(jnp.float16), PARAMS[1]), PARAMS[2]), X, Y, TypeError, ["params[1].w", "float16"]),
]

FUNCTIONS = [jaxnet.grad, jaxnet.value_and_grad, jaxnet.per_example_grads, jaxnet.loss, jaxnet.per_example_loss]


@pytest.mark.parametrize("fn", FUNCTIONS, ids=lambda f: f.__name__)
@pytest.mark.parametrize("case", BAD, ids=[c[0] for c in BAD])
def test_bad_input_raises_clear_error(case, fn):
    _, params, x, y, exc, words = case
    with pytest.raises(exc) as info:
        fn(params, x, y)
    message = str(info.value)
    assert fn.__name__ in message
    for word in words:
        assert word in message


def test_errors_raise_at_trace_time_under_jit():
    with pytest.raises(ValueError, match="x must have shape"):
        jax.jit(jaxnet.grad)(PARAMS, jnp.zeros((4, 3)), Y)


def test_forward_checks_x():
    with pytest.raises(ValueError, match=r"forward: x must have shape \(B, 2\)"):
        jaxnet.forward(PARAMS, jnp.zeros((4, 3)))


@pytest.mark.parametrize("sizes", [(3,), (2, 0, 3), (2, 2.5, 3)])
def test_init_rejects_bad_sizes(sizes):
    with pytest.raises(ValueError, match="sizes"):
        jaxnet.init(jax.random.key(0), sizes)
