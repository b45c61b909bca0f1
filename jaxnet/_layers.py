r"""The seed's chain rule, one rule pair per operation.

Each operation keeps its forward rule and its local backward rule side by
side, so one can be checked against the other at a glance. ``delta`` is the
derivative of one example's cross-entropy with respect to a pre-activation.

The network, for one example (the seed's notation, 0-based here)::

    a1_j = sum_i W1_ij x_i + b1_j         h1 = relu(a1)
    a2_k = sum_j W2_jk h1_j + b2_k        h2 = relu(a2)
    a3_s = sum_k V_ks h2_k + v0_s         yhat = softmax(a3)
    loss = -sum_s y_s log yhat_s          (cross-entropy, the seed's -L)

and its gradients, the seed's formulas with the sign of -L and the sums in the
right places::

    delta3_s = yhat_s * sum_t y_t - y_s                    (= yhat_s - y_s, one-hot y)
    dV_ks    = h2_k delta3_s                dv0_s = delta3_s
    delta2_k = 1(a2_k > 0) sum_s V_ks delta3_s
    dW2_jk   = h1_j delta2_k                db2_k = delta2_k
    delta1_j = 1(a1_j > 0) sum_k W2_jk delta2_k
    dW1_ij   = x_i delta1_j                 db1_j = delta1_j

Batched, ``h`` and ``delta`` gain a leading batch axis and the weight
gradients become ``h.T @ delta``.
"""

import jax
import jax.numpy as jnp
from jax import lax

# Full float32 (or float64) products everywhere: on GPUs the default matmul
# precision rounds inputs to TF32 or bf16, which would make the "plain twin"
# inexact.
_HIGHEST = lax.Precision.HIGHEST


def dense(h, w, b):
    """``a = h @ w + b``.  h: (B, fan_in), w: (fan_in, fan_out), b: (fan_out,)."""
    return jnp.matmul(h, w, precision=_HIGHEST) + b[None, :]


def dense_backward(h, w, delta):
    """Mean gradients of a dense layer and the delta it sends back.

    Returns ``(dw, db, back)`` with ``dw = h.T @ delta``, ``db = sum(delta)``
    and ``back = delta @ w.T`` (before the ReLU mask of the layer below).
    """
    dw = jnp.matmul(h.T, delta, precision=_HIGHEST, out_sharding=_replicated_if_batch_sharded(h))
    db = jnp.sum(delta, axis=0)
    return dw, db, dense_back(w, delta)


def _replicated_if_batch_sharded(h):
    """On a mesh with Explicit axes, a dot contracting over a sharded batch
    must be told its output sharding: the weight gradient is replicated."""
    spec = getattr(jax.typeof(h).sharding, "spec", None)
    if spec and spec[0] is not None:
        return jax.sharding.PartitionSpec()
    return None


def dense_back(w, delta):
    """``back = delta @ w.T``, the delta a dense layer sends to its input."""
    return jnp.matmul(delta, w.T, precision=_HIGHEST)


def dense_backward_per_example(h, delta):
    """Per-example gradients: ``dw[n] = outer(h[n], delta[n])``, ``db[n] = delta[n]``."""
    return h[:, :, None] * delta[:, None, :], delta


def relu(a):
    """``h = max(a, 0)``."""
    return jnp.maximum(a, 0)


def relu_backward(a, back):
    """``delta = back * 1(a > 0)``: 0 at a tie, the convention of ``jax.nn.relu``."""
    return jnp.where(a > 0, back, 0)


def softmax_cross_entropy(logits, y):
    """Per-example cross-entropy.  logits: (B, C); y: (B,) int or (B, C) float.

    With probability labels the loss is ``-sum_s y_s log softmax(a)_s``, which
    is ``logsumexp(a) * sum_s y_s - sum_s y_s a_s``.
    """
    lse = jax.nn.logsumexp(logits, axis=-1)
    if jnp.issubdtype(y.dtype, jnp.integer):
        picked = jnp.take_along_axis(logits, y[:, None], axis=-1)[:, 0]
        return lse - picked
    return lse * jnp.sum(y, axis=-1) - jnp.sum(y * logits, axis=-1)


def softmax_cross_entropy_label_grad(logits):
    """Derivative of the loss in probability labels: ``-log softmax(a)``, (B, C)."""
    return -jax.nn.log_softmax(logits, axis=-1)


def softmax_cross_entropy_backward(logits, y):
    """``delta3 = softmax(a) * sum_t y_t - y``, per example, shape (B, C)."""
    yhat = jax.nn.softmax(logits, axis=-1)
    if jnp.issubdtype(y.dtype, jnp.integer):
        return yhat - jax.nn.one_hot(y, logits.shape[-1], dtype=logits.dtype)
    return yhat * jnp.sum(y, axis=-1, keepdims=True) - y
