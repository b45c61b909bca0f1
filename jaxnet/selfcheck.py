"""``jaxnet check``: compare jaxnet's gradients with autodiff on the default device.

A user runs this on a new GPU or TPU. Autodiff (``jax.grad``) appears here
only as the oracle. On accelerators, default matmul precision rounds float32
inputs (TF32, bf16 passes), so the oracle runs at ``precision="highest"``.
"""

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jaxnet import _api, _params

# Largest error relative to each leaf's largest magnitude, per dtype. float32
# sums over a batch of a few thousand lose about sqrt(B) * 6e-8 each.
TOLERANCE = {"float32": 1e-4, "float64": 1e-10}


class CheckResult(NamedTuple):
    device: str
    batch: int
    dtype: str
    max_abs_err: float
    max_rel_err: float
    tolerance: float
    passed: bool


def _oracle_loss(params, x, y):
    h = x
    for layer in params[:-1]:
        h = jax.nn.relu(jnp.matmul(h, layer.w, precision="highest") + layer.b[None, :])
    logits = jnp.matmul(h, params[-1].w, precision="highest") + params[-1].b[None, :]
    log_p = jax.nn.log_softmax(logits, axis=-1)
    return -jnp.take_along_axis(log_p, y[:, None], axis=-1)[:, 0]


def _errors(got, want):
    abs_err, rel_err = 0.0, 0.0
    for g, w in zip(jax.tree.leaves(got), jax.tree.leaves(want)):
        g, w = np.asarray(g, np.float64), np.asarray(w, np.float64)
        err = float(np.max(np.abs(g - w)))
        scale = float(np.max(np.abs(w))) or 1.0
        abs_err, rel_err = max(abs_err, err), max(rel_err, err / scale)
    return abs_err, rel_err


def run(key, batch=4096, dtype=jnp.float32):
    """Check ``grad`` and ``per_example_grads`` of the seed net against autodiff."""
    k_params, k_x, k_y = jax.random.split(key, 3)
    params = _params.init(k_params, _params.SEED_SIZES, dtype)
    x = jax.random.normal(k_x, (batch, _params.SEED_SIZES[0]), dtype)
    y = jax.random.randint(k_y, (batch,), 0, _params.SEED_SIZES[-1])

    want_mean = jax.jit(jax.grad(lambda p: jnp.mean(_oracle_loss(p, x, y))))(params)
    one = lambda p, xi, yi: _oracle_loss(p, xi[None], yi[None])[0]
    want_each = jax.jit(jax.vmap(jax.grad(one), in_axes=(None, 0, 0)))(params, x, y)
    got_mean = jax.jit(_api.grad)(params, x, y)
    got_each = jax.jit(_api.per_example_grads)(params, x, y)

    errs = [_errors(got_mean, want_mean), _errors(got_each, want_each)]
    abs_err, rel_err = max(e[0] for e in errs), max(e[1] for e in errs)
    name = jnp.dtype(dtype).name
    tol = TOLERANCE[name]
    return CheckResult(str(x.devices().pop()), batch, name, abs_err, rel_err, tol, bool(rel_err <= tol))
