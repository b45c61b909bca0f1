"""Fast gradient kernels, and the choice between them.

Two formulations compute the same delta recursion as :mod:`jaxnet._reference`:

- **matrix form** (the reference itself) for wide layers, where XLA's dots pay off;
- **unrolled form** for narrow nets (at most ``UNROLL_MAX_PARAMS`` parameters,
  the seed net has 26): every unit is its own row vector over the batch and
  every weight a scalar, so the forward and backward pass are broadcast
  multiply-adds that XLA fuses into one loop. Tiny dots (inner dimension 2 or
  3) lower poorly on XLA:CPU, and broadcast-multiply-add is the faster form
  on GPUs too (jax-ml/jax#33004).

Why the unrolled mean gradient is shaped as it is (measured on 2 CPU cores,
jax 0.10.2, seed net, B = 2^20, see benchmarks/RESULTS.md):

- ``x`` is transposed once to feature-major and folded into ``LANES = 128``
  lanes, ``(d_in, LANES, B / LANES)``. All gradient sums (26 for the seed
  net, plus the loss) are then one *variadic* ``lax.reduce`` over the minor
  axis, which XLA compiles to a single fusion that reads x and y once and
  never writes an activation, a delta or a per-example gradient. 26 separate
  ``jnp.sum`` calls instead became 26 kernels that each recompute or re-read
  the forward pass (2-3x slower).
- Summing within each lane and then across the 128 lanes keeps float32
  accumulation error near 1e-7 relative; one sequential sum over 2^20
  elements was off by 1e-4.
- XLA:CPU's default fusion emitter writes scalar code for a 26-output reduce
  (about 4x jax.grad). With ``xla_cpu_enable_fast_math`` (which, with XLA's
  default sub-flags, still honours NaN, Inf, division and functions, and so
  only lets additions be reassociated) the same fusion is vectorised (about
  20x). :data:`CPU_COMPILER_OPTIONS` holds that option; the public functions
  compile with it when called outside a user's ``jax.jit``, and users can
  pass it to their own ``jax.jit``.

Per-example gradients write each layer's inputs and deltas batch-major
once (an ``optimization_barrier`` stops XLA from recomputing the whole pass
for every output element), then the outer products.
"""

import jax
import jax.numpy as jnp
from jax import lax

from jaxnet import _backend, _native, _reference
from jaxnet._params import Dense

UNROLL_MAX_PARAMS = 160
"""Nets with at most this many parameters take the unrolled form."""

LANES = 128
"""Independent partial sums per gradient entry in the unrolled mean gradient."""

CHUNK = 2**13
"""Examples per step when the matrix form streams a large batch."""

CPU_COMPILER_OPTIONS = {"xla_cpu_enable_fast_math": True}
"""``jax.jit(..., compiler_options=CPU_COMPILER_OPTIONS)`` vectorises the unrolled reduce on CPU."""


def use_unrolled(params):
    return sum(l.w.size + l.b.size for l in params) <= UNROLL_MAX_PARAMS


# ------------------------------------------------------------------ unrolled form


def _unrolled_pass(params, cols, label, with_loss, weight=None):
    """Forward and backward pass with one array per unit, all of one shape.

    Args:
      cols: ``d_in`` arrays, the input features.
      label: an int array of labels, or a list of ``C`` probability arrays.
      weight: None, or a 0/1 array masking examples out (``where``).

    Returns:
      ``(layers, loss)``: ``layers[l] = (inputs, deltas)`` as lists of arrays,
      and the per-example loss (or None).
    """
    hs, pres = [cols], []
    for l, (w, b) in enumerate(params):
        a = [sum(cols[i] * w[i, j] for i in range(len(cols))) + b[j] for j in range(w.shape[1])]
        pres.append(a)
        if l < len(params) - 1:
            cols = [jnp.maximum(aj, 0) for aj in a]  # h = relu(a)
            hs.append(cols)
    logits = pres[-1]
    top = logits[0]
    for z in logits[1:]:
        top = jnp.maximum(top, z)
    exps = [jnp.exp(z - top) for z in logits]
    total = sum(exps)
    if isinstance(label, list):  # probabilities: delta_s = yhat_s * sum_t y_t - y_s
        mass = sum(label)
        delta = [e * (mass / total) - ys for e, ys in zip(exps, label)]
        loss = (top + jnp.log(total)) * mass - sum(ys * z for ys, z in zip(label, logits)) if with_loss else None
    else:  # integer labels: delta_s = yhat_s - 1(s = label)
        inv = 1 / total
        delta = [e * inv - (label == s).astype(e.dtype) for s, e in enumerate(exps)]
        picked = sum(jnp.where(label == s, z, 0) for s, z in enumerate(logits))
        loss = top + jnp.log(total) - picked if with_loss else None
    if weight is not None:  # a masked example has zero delta, so no gradient, and no loss
        delta = [d * weight for d in delta]
        loss = loss * weight if with_loss else None
    layers = [None] * len(params)
    for l in reversed(range(len(params))):
        layers[l] = (hs[l], delta)
        if l > 0:
            w = params[l].w
            # delta_prev_j = 1(a_j > 0) * sum_k w_jk delta_k
            delta = [
                jnp.where(pres[l - 1][j] > 0, sum(w[j, k] * delta[k] for k in range(len(delta))), 0)
                for j in range(w.shape[0])
            ]
    return layers, loss


def _lane_columns(a, lanes):
    """(n, F) batch-major -> F arrays of shape (lanes, n // lanes)."""
    folded = a.T.reshape(a.shape[1], lanes, a.shape[0] // lanes)
    return [folded[i] for i in range(a.shape[1])]


@jax.custom_jvp
def _lane_reduce(terms):
    """Sum each (lanes, n) term over its minor axis, all in one variadic reduce."""
    zeros = tuple(jnp.zeros((), t.dtype) for t in terms)
    return lax.reduce(terms, zeros, lambda a, b: tuple(u + v for u, v in zip(a, b)), (1,))


@_lane_reduce.defjvp
def _lane_reduce_jvp(primals, tangents):
    # The sum is linear. XLA's variadic reduce has no derivative rule of its
    # own, so the tangent uses plain sums: second-order use of jaxnet.loss
    # (Hessians, forward-over-reverse) runs through here.
    (terms,), (dterms,) = primals, tangents
    return _lane_reduce(terms), tuple(jnp.sum(t, axis=1) for t in dterms)


def _lane_sums(params, x, y, lanes, with_loss, l2_norm_clip=None, weight=None):
    """Sums over the batch of every gradient term (and the loss), one fused reduce.

    With ``l2_norm_clip``, each example's deltas are first scaled by
    ``min(1, clip / norm)`` and its gradient norm is returned as well.
    """
    cols = _lane_columns(x, lanes)
    label = y.reshape(lanes, -1) if y.ndim == 1 else _lane_columns(y, lanes)
    lane_weight = None if weight is None else weight.reshape(lanes, -1)
    layers, loss = _unrolled_pass(params, cols, label, with_loss, lane_weight)
    norms = None
    if l2_norm_clip is not None:
        # |outer(h, delta)|^2 + |delta|^2 = (|h|^2 + 1) |delta|^2, per layer.
        sq = sum((sum(h * h for h in inputs) + 1) * sum(d * d for d in delta) for inputs, delta in layers)
        norms, scale = _reference.clip_multipliers(sq, l2_norm_clip)
        layers = [(inputs, [d * scale for d in delta]) for inputs, delta in layers]
        norms = norms.reshape(-1)  # lane-major order is batch order
    terms = []
    for inputs, delta in layers:
        terms += [h * d for h in inputs for d in delta] + list(delta)
    if with_loss:
        terms.append(loss)
    sums = _lane_reduce(tuple(terms))
    # One (terms, lanes) array and one reduce: 26 separate lane sums were 26
    # kernel launches, which dominated the cost at small batches.
    return jnp.sum(jnp.stack(sums), axis=1), norms


def _unrolled_sums(params, x, y, with_loss, l2_norm_clip=None, weight=None):
    """All gradient sums over the batch, divided by the example count, and the clip norms if asked."""
    batch = x.shape[0]
    main = batch - batch % LANES
    w = (lambda sl: None) if weight is None else (lambda sl: weight[sl])
    parts = []
    if main:
        head = slice(0, main)
        parts.append(_lane_sums(params, x[head], y[head], LANES, with_loss, l2_norm_clip, w(head)))
    if main < batch:  # the last batch % LANES examples, one lane each
        tail = slice(main, batch)
        parts.append(_lane_sums(params, x[tail], y[tail], batch - main, with_loss, l2_norm_clip, w(tail)))
    sums = sum(p[0] for p in parts) / _reference.count(batch, weight)
    norms = jnp.concatenate([p[1] for p in parts]) if l2_norm_clip is not None else None
    return sums, norms


def _unflatten(params, sums):
    grads, offset = [], 0
    for layer in params:
        n_w, n_b = layer.w.size, layer.b.size
        grads.append(Dense(sums[offset : offset + n_w].reshape(layer.w.shape), sums[offset + n_w : offset + n_w + n_b]))
        offset += n_w + n_b
    return tuple(grads)


def _unrolled_value_and_grad(params, x, y, with_loss=True, weight=None):
    sums, _ = _unrolled_sums(params, x, y, with_loss, weight=weight)
    return (sums[-1] if with_loss else None), _unflatten(params, sums)


def _unrolled_clipped(params, x, y, l2_norm_clip, weight=None):
    sums, norms = _unrolled_sums(params, x, y, False, l2_norm_clip, weight)
    return _unflatten(params, sums), norms


def _unrolled_per_example(params, x, y, weight=None):
    cols = [x[:, i] for i in range(x.shape[1])]
    label = y if y.ndim == 1 else [y[:, s] for s in range(y.shape[1])]
    layers, _ = _unrolled_pass(params, cols, label, False, weight)
    inputs = [x] + [jnp.stack(h, axis=-1) for h, _ in layers[1:]]
    deltas = [jnp.stack(d, axis=-1) for _, d in layers]
    # Materialise the (B, width) inputs and deltas once; without the barrier
    # XLA fuses the whole pass into every output element and recomputes it.
    inputs, deltas = lax.optimization_barrier((inputs, deltas))
    return tuple(Dense(h[:, :, None] * d[:, None, :], d) for h, d in zip(inputs, deltas))


# ------------------------------------------------------------------ streaming


def _streamed(fn, x, y, weight):
    """Sum of ``fn(x_chunk, y_chunk, weight_chunk)`` over chunks of ``CHUNK`` examples.

    The matrix form's workspace grows with the batch (its activations and
    deltas are (B, width)); a loop over fixed-size chunks keeps it at one
    chunk's. The unrolled form needs none of this: it is one fused pass with
    no per-example buffers.

    When ``CHUNK`` divides the batch, chunk ``i`` takes examples ``i, i +
    steps, i + 2 steps, ...``: a view ``(CHUNK, steps)`` of the batch axis
    indexed along its minor axis. A batch sharded over devices then splits
    along the major axis, so every device streams through its own shard and
    nothing is gathered (sums do not care about order). Otherwise the chunks
    are contiguous slices, and a sharded batch may be gathered.
    """
    batch = x.shape[0]
    steps, rest = divmod(batch, CHUNK)
    if steps <= 1:
        return fn(x, y, weight)
    if rest == 0:
        view = lambda a: None if a is None else a.reshape((CHUNK, steps) + a.shape[1:])
        take = lambda a, i: None if a is None else lax.dynamic_index_in_dim(a, i, axis=1, keepdims=False)
        xv, yv, wv = view(x), view(y), view(weight)
        chunk = lambda i: fn(take(xv, i), take(yv, i), take(wv, i))
    else:
        take = lambda a, i: None if a is None else lax.dynamic_slice_in_dim(a, i * CHUNK, CHUNK)
        chunk = lambda i: fn(take(x, i), take(y, i), take(weight, i))
    total = lax.fori_loop(1, steps, lambda i, acc: jax.tree.map(jnp.add, acc, chunk(i)), chunk(0))
    if rest:
        tail = slice(steps * CHUNK, batch)
        total = jax.tree.map(jnp.add, total, fn(x[tail], y[tail], None if weight is None else weight[tail]))
    return total


def _matrix_value_and_grad(params, x, y, weight):
    n = _reference.count(x.shape[0], weight)
    return _streamed(lambda xc, yc, wc: _reference.value_and_grad(params, xc, yc, wc, n), x, y, weight)


# ------------------------------------------------------------------ native CPU kernels


def _axis_names(shard):
    return None if shard is None else shard[1]


def _native_sums(params, x, y, weight, with_loss, clip, shard):
    """Raw sums over the whole batch (and the norms), per shard when the batch is sharded."""
    args = [params, x, y] + ([] if weight is None else [weight]) + ([] if clip is None else [clip])

    def local(params, x, y, *rest):
        w = rest[0] if weight is not None else None
        c = rest[-1] if clip is not None else None
        sums, norms = _native.sums(params, x, y, w, with_loss, c)
        return (sums if shard is None else lax.psum(sums, _axis_names(shard))), norms

    in_batch = (False, True, True) + ((True,) if weight is not None else ()) + ((False,) if clip is not None else ())
    return _backend.per_shard(local, shard, in_batch, (False, True))(*args)


def _native_ops(shard):
    """The native kernels for one layout, each with the pure-JAX twin's derivative and batching rules."""

    def value_and_grad(params, x, y, weight):
        sums, _ = _native_sums(params, x, y, weight, True, None, shard)
        sums = sums / _reference.count(x.shape[0], weight)
        return sums[-1], _unflatten(params, sums)

    def grad(params, x, y, weight):
        sums, _ = _native_sums(params, x, y, weight, False, None, shard)
        return _unflatten(params, sums / _reference.count(x.shape[0], weight))

    def per_example(params, x, y, weight):
        if weight is None:
            return _backend.per_shard(lambda p, x, y: _native.per_example(p, x, y, None), shard, (False, True, True), True)(params, x, y)
        return _backend.per_shard(_native.per_example, shard, (False, True, True, True), True)(params, x, y, weight)

    def clipped(params, x, y, l2_norm_clip, weight):
        sums, norms = _native_sums(params, x, y, weight, False, l2_norm_clip, shard)
        return _unflatten(params, sums / _reference.count(x.shape[0], weight)), norms

    return {
        "value_and_grad": _backend.composable(value_and_grad, _xla_value_and_grad),
        "grad": _backend.composable(grad, _xla_grad),
        "per_example": _backend.composable(per_example, _xla_per_example_grads),
        "clipped": _backend.composable(clipped, _xla_clipped_mean_grad),
    }


_NATIVE_OPS = {}


def _native_op(name, params, x):
    """The native op ``name`` if the backend setting and the inputs allow it, else None."""
    use, shard = _backend.choose(params, x)
    if not use:
        return None
    key = None if shard is None else (shard[0], shard[1])
    if key not in _NATIVE_OPS:
        _NATIVE_OPS[key] = _native_ops(shard)
    return _NATIVE_OPS[key][name]


# ------------------------------------------------------------------ pure JAX


# Every function takes validated inputs (x: (B, d_in), y: (B,) int or (B, C),
# compute dtype) and ``weight``: None, or a (B,) 0/1 mask; means are then
# over the unmasked examples.


def _xla_value_and_grad(params, x, y, weight=None):
    if use_unrolled(params):
        return _unrolled_value_and_grad(params, x, y, weight=weight)
    return _matrix_value_and_grad(params, x, y, weight)


def _xla_grad(params, x, y, weight=None):
    if use_unrolled(params):
        return _unrolled_value_and_grad(params, x, y, with_loss=False, weight=weight)[1]
    return _matrix_value_and_grad(params, x, y, weight)[1]


def _xla_per_example_grads(params, x, y, weight=None):
    if use_unrolled(params):
        return _unrolled_per_example(params, x, y, weight)
    return _reference.per_example_grads(params, x, y, weight)


def _xla_clipped_mean_grad(params, x, y, l2_norm_clip, weight=None):
    if use_unrolled(params):
        return _unrolled_clipped(params, x, y, l2_norm_clip, weight)
    return _reference.clipped_mean_grad(params, x, y, l2_norm_clip, weight)


# ------------------------------------------------------------------ dispatch


def value_and_grad(params, x, y, weight=None):
    """Mean loss and gradient."""
    op = _native_op("value_and_grad", params, x) or _xla_value_and_grad
    return op(params, x, y, weight)


def grad(params, x, y, weight=None):
    """Mean gradient, without the loss."""
    op = _native_op("grad", params, x) or _xla_grad
    return op(params, x, y, weight)


def per_example_grads(params, x, y, weight=None):
    """Params tree with a leading (B,) axis on every leaf; masked rows are zero."""
    op = _native_op("per_example", params, x) or _xla_per_example_grads
    return op(params, x, y, weight)


def clipped_mean_grad(params, x, y, l2_norm_clip, weight=None):
    """Mean of clipped per-example gradients, and the (B,) per-example norms."""
    op = _native_op("clipped", params, x)
    if op is None:
        return _xla_clipped_mean_grad(params, x, y, l2_norm_clip, weight)
    return op(params, x, y, jnp.asarray(l2_norm_clip, x.dtype), weight)


def per_example_grads_chunked(params, x, y, weight, chunk_size):
    """:func:`per_example_grads` over chunks of ``chunk_size`` examples (``lax.map``).

    The outputs are the same; the workspace (each layer's stacked inputs and
    deltas) is one chunk's instead of the batch's. The native kernel writes
    every example's gradient straight into the output and has no workspace
    to bound, so it ignores the chunking.
    """
    op = _native_op("per_example", params, x)
    if op is not None:
        return op(params, x, y, weight)
    batch = x.shape[0]
    steps, rest = divmod(batch, chunk_size)
    if steps <= 1:
        return _xla_per_example_grads(params, x, y, weight)
    main = steps * chunk_size
    fold = lambda a: None if a is None else a[:main].reshape((steps, chunk_size) + a.shape[1:])
    out = lax.map(lambda c: _xla_per_example_grads(params, *c), (fold(x), fold(y), fold(weight)))
    out = jax.tree.map(lambda a: a.reshape((main,) + a.shape[2:]), out)
    if rest:
        tail = _xla_per_example_grads(params, x[main:], y[main:], None if weight is None else weight[main:])
        out = jax.tree.map(lambda a, b: jnp.concatenate([a, b]), out, tail)
    return out
