r"""The public gradient functions.

All of them are pure functions of ``(params, x, y)``:

- ``params``: a tuple of :class:`jaxnet.Dense`, as returned by :func:`jaxnet.init`;
- ``x``: ``(B, d_in)`` float, or ``(d_in,)`` for one example;
- ``y``: ``(B,)`` integer class labels in ``[0, C)``, or ``(B, C)`` float
  probabilities (soft labels); ``()`` or ``(C,)`` for one example.

``x`` and probability labels are cast to the params' dtype, and every output
has the params' dtype. float16 and bfloat16 are computed and accumulated in
float32. The loss is the softmax **cross-entropy** ``-sum_s y_s log yhat_s``
(the negative of the seed's log-likelihood ``L``), so gradients point uphill
in the loss and an optimiser minimises it. The maths is in
:mod:`jaxnet._layers`.

No function here uses autodiff: the gradients are the hand-written delta
recursion, run by the fastest kernel for the backend and layer widths
(:mod:`jaxnet._kernels`).
"""

import jax

from jaxnet import _kernels, _reference, _validate
from jaxnet._params import Dense


def forward(params, x):
    """Logits of the network.

    Args:
      params: tuple of :class:`Dense`.
      x: ``(B, d_in)`` or ``(d_in,)``.

    Returns:
      ``(B, C)`` (or ``(C,)``) logits in the params' dtype.

    >>> import jax, jax.numpy as jnp, jaxnet
    >>> params = jaxnet.init(jax.random.key(0))
    >>> jaxnet.forward(params, jnp.zeros((4, 2))).shape
    (4, 3)
    """
    params = _validate.params_of("forward", params)
    x = _validate.x_of("forward", params, x)
    dtype = params[0].w.dtype
    cdtype = _validate.compute_dtype(dtype)
    logits = _reference.forward(_validate.cast_params(params, cdtype), jax.numpy.atleast_2d(x.astype(cdtype)))
    return (logits[0] if x.ndim == 1 else logits).astype(dtype)


def per_example_loss(params, x, y):
    """Each example's cross-entropy, ``(B,)`` (or ``()`` for one example)."""
    batch = _validate.batch_of("per_example_loss", params, x, y)
    losses = _reference.per_example_loss(batch.params, batch.x, batch.y).astype(batch.dtype)
    return losses[0] if batch.single else losses


def loss(params, x, y):
    """Mean cross-entropy over the batch, a scalar."""
    batch = _validate.batch_of("loss", params, x, y)
    losses = _reference.per_example_loss(batch.params, batch.x, batch.y)
    return (losses.sum() / batch.x.shape[0]).astype(batch.dtype)


def value_and_grad(params, x, y):
    """``(loss(params, x, y), grad(params, x, y))`` in one pass."""
    batch = _validate.batch_of("value_and_grad", params, x, y)
    value, grads = _kernels.value_and_grad(batch.params, batch.x, batch.y)
    return value.astype(batch.dtype), _cast(grads, batch.dtype)


def grad(params, x, y):
    """Gradient of :func:`loss` with respect to ``params``.

    Returns a tuple of :class:`Dense` with the shapes and dtype of ``params``,
    ready for ``optax`` (``tx.update(grads, opt_state, params)``).

    >>> import jax, jax.numpy as jnp, jaxnet
    >>> params = jaxnet.init(jax.random.key(0))
    >>> g = jaxnet.grad(params, jnp.ones((8, 2)), jnp.zeros(8, jnp.int32))
    >>> jax.tree.map(jnp.shape, g) == jax.tree.map(jnp.shape, params)
    True
    """
    return value_and_grad(params, x, y)[1]


def per_example_grads(params, x, y):
    """Each example's gradient of its own (unreduced) loss.

    Returns the params tree with a leading ``(B,)`` axis on every leaf: leaf
    ``[n]`` is the gradient of ``per_example_loss(params, x, y)[n]``. This is
    the format ``optax.contrib.differentially_private_aggregate`` takes. For a
    single example ``x`` of shape ``(d_in,)`` there is no leading axis.
    """
    batch = _validate.batch_of("per_example_grads", params, x, y)
    grads = _cast(_kernels.per_example_grads(batch.params, batch.x, batch.y), batch.dtype)
    return jax.tree.map(lambda g: g[0], grads) if batch.single else grads


def _cast(grads, dtype):
    return tuple(Dense(g.w.astype(dtype), g.b.astype(dtype)) for g in grads)
