"""Independent reference: optax's cross-entropy on a plain forward pass, for autodiff.

Nothing here imports jaxnet's maths. ``jax.nn.relu`` is used deliberately:
its derivative at 0 is 0, as jaxnet's; ``jnp.maximum(a, 0)`` would give 0.5.
"""

import jax
import jax.numpy as jnp
import numpy as np
import optax


def logits(params, x):
    h = x
    for w, b in params[:-1]:
        h = jax.nn.relu(h @ w + b[None, :])
    w, b = params[-1]
    return h @ w + b[None, :]


def per_example_loss(params, x, y):
    z = logits(params, x)
    if jnp.issubdtype(y.dtype, jnp.integer):
        return optax.losses.softmax_cross_entropy_with_integer_labels(z, y)
    return optax.losses.softmax_cross_entropy(z, y)


def loss(params, x, y):
    return jnp.mean(per_example_loss(params, x, y))


grad = jax.jit(jax.grad(loss))
value_and_grad = jax.jit(jax.value_and_grad(loss))
# One example's loss, vmapped: the oracle for per-example gradients.
per_example_grads = jax.jit(
    jax.vmap(jax.grad(lambda p, x, y: per_example_loss(p, x[None], y[None])[0]), in_axes=(None, 0, 0))
)


def random_params(key, sizes, dtype=jnp.float64):
    """Params with non-trivial biases, so no unit of a small net is dead on every input."""
    import jaxnet

    params = jaxnet.init(key, sizes, dtype)
    keys = jax.random.split(jax.random.fold_in(key, 1), len(params))
    return tuple(
        jaxnet.Dense(l.w, (0.3 * jax.random.normal(k, l.b.shape)).astype(dtype)) for k, l in zip(keys, params)
    )


def random_batch(key, batch, sizes, soft=False, dtype=jnp.float64):
    kx, ky = jax.random.split(key)
    x = jax.random.normal(kx, (batch, sizes[0]), dtype)
    if soft:
        # Unnormalised soft labels exercise the general delta yhat * sum(y) - y.
        y = jax.random.uniform(ky, (batch, sizes[-1]), dtype, 0.0, 1.0)
    else:
        y = jax.random.randint(ky, (batch,), 0, sizes[-1])
    return x, y


def rel_err(got, want):
    """Largest error of each leaf relative to that leaf's largest magnitude."""
    errs = []
    for g, w in zip(jax.tree.leaves(got), jax.tree.leaves(want)):
        g, w = np.asarray(g, np.float64), np.asarray(w, np.float64)
        assert g.shape == w.shape, (g.shape, w.shape)
        scale = np.max(np.abs(w)) if w.size and np.max(np.abs(w)) > 0 else 1.0
        errs.append(np.max(np.abs(g - w)) / scale if w.size else 0.0)
    return max(errs)
