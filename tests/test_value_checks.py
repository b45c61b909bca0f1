"""Bad values: eager checks by default, checkify inside jit, and what happens without."""

import jax
import jax.numpy as jnp
import pytest
from jax.experimental import checkify

import jaxnet
import oracle

PARAMS = jaxnet.init(jax.random.key(0))
X = jax.random.normal(jax.random.key(1), (6, 2), jnp.float32)
Y = jnp.array([0, 1, 2, 0, 1, 2])
SOFT = jax.nn.one_hot(Y, 3)

BAD = [
    ("label_too_big", PARAMS, X, Y.at[2].set(3), "labels must lie in [0, 3)", "y"),
    ("label_negative", PARAMS, X, Y.at[0].set(-1), "labels must lie in [0, 3)", "y"),
    ("x_nan", PARAMS, X.at[1, 0].set(jnp.nan), Y, "x must be finite", "x"),
    ("x_inf", PARAMS, X.at[4, 1].set(jnp.inf), Y, "x must be finite", "x"),
    ("params_nan", (PARAMS[0]._replace(b=PARAMS[0].b.at[1].set(jnp.nan)),) + PARAMS[1:], X, Y, "params must be finite", "params"),
    ("probs_negative", PARAMS, X, SOFT.at[0, 0].set(-0.5), "probability labels must be finite and >= 0", "y"),
    ("probs_nan", PARAMS, X, SOFT.at[3, 2].set(jnp.nan), "probability labels must be finite and >= 0", "y"),
]
FUNCTIONS = [jaxnet.grad, jaxnet.value_and_grad, jaxnet.per_example_grads, jaxnet.loss, jaxnet.per_example_loss]


@pytest.mark.parametrize("case", BAD, ids=[c[0] for c in BAD])
def test_eager_checks_name_the_argument(case):
    _, params, x, y, message, arg = case
    for fn in FUNCTIONS:
        with pytest.raises(ValueError, match=rf"{fn.__name__}: .*{message.replace('[', '.').replace(')', '.')}.*check {arg}"):
            fn(params, x, y)
    with pytest.raises(ValueError, match=message.replace("[", ".").replace(")", ".")):
        jaxnet.clipped_mean_grad(params, x, y, 1.0)


@pytest.mark.parametrize("case", BAD, ids=[c[0] for c in BAD])
def test_checked_mode_catches_bad_values_inside_jit(case):
    _, params, x, y, message, arg = case
    step = jaxnet.checked(jax.jit(lambda p, x, y: jaxnet.value_and_grad(p, x, y)))
    with pytest.raises(checkify.JaxRuntimeError, match=f"value_and_grad: .*check {arg}"):
        step(params, x, y)


def test_checked_mode_passes_good_values_and_returns_the_result():
    step = jaxnet.checked(jax.jit(jaxnet.grad))
    got = step(PARAMS, X, Y)
    assert oracle.rel_err(got, jax.jit(jaxnet.grad)(PARAMS, X, Y)) <= 1e-6


def test_without_checks_an_out_of_range_label_is_silently_wrong():
    """Documented behaviour: the check is what stands between a bad label and a wrong gradient."""
    y = Y.at[2].set(7)
    with jaxnet.value_checks(False):
        wrong = jaxnet.grad(PARAMS, X, y)  # no error
        assert jax.jit(jaxnet.grad)(PARAMS, X, y) is not None
    # The example with label 7 is treated as "no class": the result differs from any valid label.
    for label in range(3):
        assert oracle.rel_err(wrong, jaxnet.grad(PARAMS, X, Y.at[2].set(label))) > 1e-3
    with pytest.raises(ValueError):  # the setting was restored on exit
        jaxnet.grad(PARAMS, X, y)


def test_masked_rows_are_not_checked():
    where = jnp.array([True, True, False, True, True, True])
    jaxnet.grad(PARAMS, X.at[2, 0].set(jnp.nan), Y.at[2].set(9), where=where)


def test_checked_and_plain_traces_are_cached_apart():
    plain = jax.jit(jaxnet.per_example_grads)
    bad_y = Y.at[0].set(5)
    plain(PARAMS, X, bad_y)  # traced and cached without checks: no error inside jit
    with pytest.raises(checkify.JaxRuntimeError, match="labels must lie in"):
        jaxnet.checked(plain)(PARAMS, X, bad_y)
    plain(PARAMS, X, bad_y)  # and the plain trace still has no checks in it
