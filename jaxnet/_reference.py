"""The plain twin: forward pass and gradients in matrix form, batch-major.

Every fast path in :mod:`jaxnet._kernels` is tested against these functions,
and they against autodiff. They take validated inputs: x of shape (B, d_in)
in the compute dtype and y of shape (B,) int or (B, C) float.
"""

import jax.numpy as jnp

from jaxnet import _layers
from jaxnet._params import Dense


def activations(params, x):
    """Inputs ``h`` and pre-activations ``a`` of every layer.

    Returns ``(hs, logits, pres)``: ``hs[l]`` is the (B, fan_in) input of layer
    ``l`` (``hs[0] = x``), ``pres[l]`` the pre-activation of hidden layer ``l``
    and ``logits`` the (B, C) output.
    """
    hs, pres = [x], []
    h = x
    for layer in params[:-1]:
        a = _layers.dense(h, layer.w, layer.b)
        h = _layers.relu(a)
        pres.append(a)
        hs.append(h)
    logits = _layers.dense(h, params[-1].w, params[-1].b)
    return hs, logits, pres


def forward(params, x):
    """Logits, (B, C)."""
    return activations(params, x)[1]


def per_example_loss(params, x, y):
    """Unreduced cross-entropy, (B,)."""
    return _layers.softmax_cross_entropy(forward(params, x), y)


def count(batch, weight):
    """Number of examples a mean is over: B, or the unmasked ones."""
    return batch if weight is None else jnp.sum(weight)


def _deltas(params, x, y, weight=None):
    hs, logits, pres = activations(params, x)
    delta = _layers.softmax_cross_entropy_backward(logits, y)
    if weight is not None:  # masked examples (where=False) have zero delta
        delta = delta * weight[:, None]
    return hs, logits, pres, delta


def value_and_grad(params, x, y, weight=None, n=None):
    """Mean loss and its gradient, the delta recursion in matrix form.

    ``n`` (default: the example count) is what the sums are divided by; a
    caller streaming over chunks passes the whole batch's count.
    """
    hs, logits, pres, delta = _deltas(params, x, y, weight)
    n = count(x.shape[0], weight) if n is None else n
    losses = _layers.softmax_cross_entropy(logits, y)
    loss = jnp.sum(losses if weight is None else losses * weight) / n
    delta = delta / n
    grads = [None] * len(params)
    for l in reversed(range(len(params))):
        dw, db, back = _layers.dense_backward(hs[l], params[l].w, delta)
        grads[l] = Dense(dw, db)
        if l > 0:
            delta = _layers.relu_backward(pres[l - 1], back)
    return loss, tuple(grads)


def per_example_grads(params, x, y, weight=None):
    """Each example's own gradient: every leaf gains a leading (B,) axis."""
    hs, logits, pres, delta = _deltas(params, x, y, weight)
    grads = [None] * len(params)
    for l in reversed(range(len(params))):
        grads[l] = Dense(*_layers.dense_backward_per_example(hs[l], delta))
        if l > 0:
            back = _layers.dense_back(params[l].w, delta)
            delta = _layers.relu_backward(pres[l - 1], back)
    return tuple(grads)


def input_grads(params, x, y, weight=None):
    """Derivatives of the mean loss in the inputs.

    Returns ``(dx, dy)``: dx of shape (B, d_in) is ``delta1 @ W1.T / B``; dy
    of shape (B, C) is ``-log softmax(a) / B`` for probability labels, None
    for integer labels.
    """
    hs, logits, pres, delta = _deltas(params, x, y, weight)
    n = count(x.shape[0], weight)
    for l in reversed(range(1, len(params))):
        delta = _layers.relu_backward(pres[l - 1], _layers.dense_back(params[l].w, delta))
    dx = _layers.dense_back(params[0].w, delta) / n
    if jnp.issubdtype(y.dtype, jnp.integer):
        return dx, None
    dy = _layers.softmax_cross_entropy_label_grad(logits) / n
    return dx, dy if weight is None else dy * weight[:, None]


def clip_multipliers(sq_norms, l2_norm_clip):
    """``min(1, clip / norm)`` per example, 1 where the norm is 0 or NaN (as optax)."""
    norms = jnp.sqrt(sq_norms)
    return norms, jnp.where(norms > l2_norm_clip, l2_norm_clip / norms, 1)


def clipped_mean_grad(params, x, y, l2_norm_clip, weight=None, n=None):
    """Mean of per-example gradients clipped to global L2 norm, and the norms.

    Example n's gradient for layer l is ``outer(h_l[n], delta_l[n])`` and
    ``delta_l[n]``, so its squared norm is ``(|h_l[n]|^2 + 1) |delta_l[n]|^2``
    summed over layers: the per-example gradients are never formed.
    """
    hs, logits, pres, delta = _deltas(params, x, y, weight)
    deltas = [None] * len(params)
    for l in reversed(range(len(params))):
        deltas[l] = delta
        if l > 0:
            delta = _layers.relu_backward(pres[l - 1], _layers.dense_back(params[l].w, delta))
    sq = sum((jnp.sum(h * h, axis=1) + 1) * jnp.sum(d * d, axis=1) for h, d in zip(hs, deltas))
    norms, scale = clip_multipliers(sq, l2_norm_clip)
    n = count(x.shape[0], weight) if n is None else n
    grads = []
    for h, d, layer in zip(hs, deltas, params):
        dw, db, _ = _layers.dense_backward(h, layer.w, d * (scale / n)[:, None])
        grads.append(Dense(dw, db))
    return tuple(grads), norms
