r"""The public gradient functions.

All of them are pure functions of ``(params, x, y)``:

- ``params``: a tuple of :class:`jaxnet.Dense`, as returned by :func:`jaxnet.init`;
- ``x``: ``(B, d_in)`` float, or ``(d_in,)`` for one example;
- ``y``: ``(B,)`` integer class labels in ``[0, C)``, or ``(B, C)`` float
  probabilities (soft labels); ``()`` or ``(C,)`` for one example;
- ``where`` (keyword, optional): ``(B,)`` bool, optax's meaning: examples
  where it is False contribute nothing, means are over the others (NaN if
  none is left), and their rows of per-example outputs are zero.

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

import functools

import jax
import jax.numpy as jnp

from jaxnet import _checks, _kernels, _reference, _validate


def _compiled(impl):
    """``jax.jit`` of ``impl(params, x, y, where, single, *arrays)``, ``single`` static.

    Called on concrete arrays on CPU, it compiles with
    :data:`jaxnet.CPU_COMPILER_OPTIONS` (see :mod:`jaxnet._kernels`). JAX
    accepts compiler options only on a top-level jit, so inside a user's
    ``jax.jit`` or ``jax.vmap`` a plain jit is used, and the user's own
    options apply.
    """

    def impl_checked(params, x, y, where, single, checkify_values, *arrays):
        if checkify_values:
            _checks.in_jit(impl.__name__.lstrip("_"), params, x, y, where)
        return impl(params, x, y, where, single, *arrays)

    nested = jax.jit(impl_checked, static_argnums=(4, 5))
    top_level = {}

    @functools.wraps(impl)
    def call(params, x, y, where, single, *arrays):
        if any(isinstance(leaf, jax.core.Tracer) for leaf in jax.tree.leaves((params, x, y, where, arrays))):
            return nested(params, x, y, where, single, _checks.checkify_enabled(), *arrays)
        backend = jax.default_backend()
        if backend not in top_level:
            options = _kernels.CPU_COMPILER_OPTIONS if backend == "cpu" else None
            top_level[backend] = jax.jit(impl, static_argnums=4, compiler_options=options)
        return top_level[backend](params, x, y, where, single, *arrays)

    return call


def _outputs(tree, dtype, single):
    tree = jax.tree.map(lambda a: a.astype(dtype), tree)
    return jax.tree.map(lambda a: a[0], tree) if single else tree


@_compiled
def _value_and_grad(params, x, y, where, single):
    dtype = params[0].w.dtype
    value, grads = _kernels.value_and_grad(*_validate.prepare(params, x, y, where, single))
    return value.astype(dtype), _outputs(grads, dtype, False)


@_compiled
def _grad(params, x, y, where, single):
    return _outputs(_kernels.grad(*_validate.prepare(params, x, y, where, single)), params[0].w.dtype, False)


@functools.lru_cache(maxsize=None)
def _per_example_grads(chunk_size):
    """The compiled per-example kernel for ``chunk_size`` (None: one pass)."""

    @_compiled
    def _per_example_grads(params, x, y, where, single):
        p, xb, yb, weight = _validate.prepare(params, x, y, where, single)
        if chunk_size is None:
            grads = _kernels.per_example_grads(p, xb, yb, weight)
        else:
            grads = _kernels.per_example_grads_chunked(p, xb, yb, weight, chunk_size)
        return _outputs(grads, params[0].w.dtype, single)

    return _per_example_grads


@_compiled
def _per_example_loss(params, x, y, where, single):
    p, xb, yb, weight = _validate.prepare(params, x, y, where, single)
    losses = _reference.per_example_loss(p, xb, yb)
    losses = losses if weight is None else losses * weight
    return _outputs(losses, params[0].w.dtype, single)


@jax.custom_jvp
def _mean_loss(params, x, y, weight):
    """Mean cross-entropy of prepared inputs, differentiated by the hand-written rule."""
    losses = _reference.per_example_loss(params, x, y)
    if weight is not None:
        losses = losses * weight
    return jnp.sum(losses) / _reference.count(x.shape[0], weight)


@functools.partial(_mean_loss.defjvp, symbolic_zeros=True)
def _mean_loss_jvp(primals, tangents):
    # d loss = <grad_params, d params> + <grad_x, dx> + <grad_y, dy>, with the
    # gradients from the hand-written kernels. Inputs that are not being
    # differentiated arrive as symbolic zeros and cost nothing.
    params, x, y, weight = primals
    d_params, dx, dy, _ = tangents  # the mask is not differentiable
    value, grads = _kernels.value_and_grad(params, x, y, weight)
    tangent = jnp.zeros_like(value)
    for g, t in zip(jax.tree.leaves(grads), jax.tree.leaves(d_params, is_leaf=_is_zero)):
        if not _is_zero(t):
            tangent = tangent + jnp.vdot(g, t)
    if not (_is_zero(dx) and _is_zero(dy)):
        gx, gy = _reference.input_grads(params, x, y, weight)
        if not _is_zero(dx):
            tangent = tangent + jnp.vdot(gx, dx)
        if gy is not None and not _is_zero(dy):
            tangent = tangent + jnp.vdot(gy, dy)
    return value, tangent


def _is_zero(t):
    return isinstance(t, jax.custom_derivatives.SymbolicZero)


@_compiled
def _loss(params, x, y, where, single):
    return _mean_loss(*_validate.prepare(params, x, y, where, single)).astype(params[0].w.dtype)


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


def per_example_loss(params, x, y, *, where=None):
    """Each example's cross-entropy, ``(B,)`` (or ``()`` for one example)."""
    return _per_example_loss(*_validate.batch_of("per_example_loss", params, x, y, where)[:5])


def loss(params, x, y, *, where=None):
    """Mean cross-entropy over the batch, a scalar.

    ``jax.grad(jaxnet.loss)`` and ``jax.value_and_grad(jaxnet.loss)`` work, and
    use the hand-written gradient: ``loss`` carries a ``jax.custom_jvp`` rule
    whose tangent is the hand gradient contracted with the input tangents. So
    forward mode, Hessians and derivatives in ``x`` (and in probability
    labels ``y``) work too.

    >>> import jax, jax.numpy as jnp, jaxnet
    >>> params = jaxnet.init(jax.random.key(0))
    >>> x, y = jnp.ones((4, 2)), jnp.array([0, 1, 2, 0])
    >>> g = jax.grad(jaxnet.loss)(params, x, y)
    >>> bool(jnp.allclose(g[0].w, jaxnet.grad(params, x, y)[0].w))
    True
    """
    return _loss(*_validate.batch_of("loss", params, x, y, where)[:5])


def value_and_grad(params, x, y, *, where=None):
    """``(loss(params, x, y), grad(params, x, y))`` in one pass."""
    return _value_and_grad(*_validate.batch_of("value_and_grad", params, x, y, where)[:5])


def grad(params, x, y, *, where=None):
    """Gradient of :func:`loss` with respect to ``params``.

    Returns a tuple of :class:`Dense` with the shapes and dtype of ``params``,
    ready for ``optax`` (``tx.update(grads, opt_state, params)``).

    >>> import jax, jax.numpy as jnp, jaxnet
    >>> params = jaxnet.init(jax.random.key(0))
    >>> g = jaxnet.grad(params, jnp.ones((8, 2)), jnp.zeros(8, jnp.int32))
    >>> jax.tree.map(jnp.shape, g) == jax.tree.map(jnp.shape, params)
    True
    """
    return _grad(*_validate.batch_of("grad", params, x, y, where)[:5])


def per_example_grads(params, x, y, *, where=None, chunk_size=None):
    """Each example's gradient of its own (unreduced) loss.

    Returns the params tree with a leading ``(B,)`` axis on every leaf: leaf
    ``[n]`` is the gradient of ``per_example_loss(params, x, y)[n]``. This is
    the format ``optax.contrib.differentially_private_aggregate`` takes. For a
    single example ``x`` of shape ``(d_in,)`` there is no leading axis.

    ``chunk_size`` (optional, a positive int) bounds the workspace of the
    pure-JAX kernels: they compute the batch in chunks of that many examples
    with ``lax.map``, with the same result. It pays off for wide nets, where
    it costs 2% at 2^20 examples (2-64-3 net, 2 CPU cores). On the seed net
    the whole batch's workspace is only 4 MiB at 2^20 examples, and on
    XLA:CPU chunks of 2^16 cost half the throughput (the loop's output
    writes run on one thread). The native CPU kernels write every example's
    gradient straight into the output and have no workspace to bound, so
    they ignore it. ``python benchmarks/chunking.py`` measures both.
    """
    batch = _validate.batch_of("per_example_grads", params, x, y, where)
    if chunk_size is not None and (isinstance(chunk_size, bool) or not isinstance(chunk_size, int) or chunk_size < 1):
        raise ValueError(f"per_example_grads: chunk_size must be a positive int or None, got {chunk_size!r}")
    return _per_example_grads(chunk_size)(*batch[:5])
