"""DP-SGD: per-example clipping fused into the gradient pass, and its noise.

``clipped_mean_grad`` computes what ``optax.contrib.differentially_private_aggregate``
computes from ``per_example_grads``, without forming the per-example
gradients: each example's global gradient norm follows from its deltas and
layer inputs, ``|g_n|^2 = sum_l (|h_l[n]|^2 + 1) |delta_l[n]|^2``, and
clipping scales the deltas by ``min(1, clip / |g_n|)`` before the batch sums.
"""

from typing import NamedTuple

import jax
import jax.numpy as jnp

from jaxnet import _api, _kernels, _validate


class ClipStats(NamedTuple):
    """Per-example clipping statistics."""

    norms: jax.Array  # (B,), params dtype: each example's global gradient L2 norm, before clipping
    num_clipped: jax.Array  # (), int32: examples whose norm exceeded l2_norm_clip


@_api._compiled
def _clipped(params, x, y, where, single, l2_norm_clip):
    dtype = params[0].w.dtype
    p, xb, yb, weight = _validate.prepare(params, x, y, where, single)
    grads, norms = _kernels.clipped_mean_grad(p, xb, yb, l2_norm_clip.astype(xb.dtype), weight)
    stats = ClipStats(norms.astype(dtype), jnp.sum(norms > l2_norm_clip).astype(jnp.int32))
    return _api._outputs(grads, dtype, False), stats._replace(norms=stats.norms[0] if single else stats.norms)


def clipped_mean_grad(params, x, y, l2_norm_clip, *, noise_multiplier=0.0, key=None, where=None):
    """Mean of per-example gradients, each clipped to global L2 norm ``l2_norm_clip``.

    Equal to ``optax.contrib.differentially_private_aggregate(l2_norm_clip, 0.0)``
    applied to ``per_example_grads(params, x, y)``, without materialising the
    per-example gradients.

    With a ``key`` and ``noise_multiplier > 0``, Gaussian noise of standard
    deviation ``l2_norm_clip * noise_multiplier / B`` is added to each
    entry, as optax's aggregate does (DP-SGD, Abadi et al. 2016).

    Args:
      params, x, y: as for :func:`jaxnet.grad`.
      l2_norm_clip: positive scalar.
      noise_multiplier: ratio of the noise standard deviation to the clip norm.
      key: a ``jax.random`` key, required when ``noise_multiplier`` is not 0.
      where: optional (B,) bool mask; masked examples contribute nothing
        (their norm is reported as 0) and B counts only the others.

    Returns:
      ``(grads, ClipStats(norms, num_clipped))``; grads has the params'
      structure and dtype, norms has shape (B,).

    >>> import jax, jax.numpy as jnp, jaxnet
    >>> params = jaxnet.init(jax.random.key(0))
    >>> x, y = jnp.ones((4, 2)), jnp.array([0, 1, 2, 0])
    >>> grads, stats = jaxnet.clipped_mean_grad(params, x, y, 1.0)
    >>> stats.norms.shape
    (4,)
    """
    batch = _validate.batch_of("clipped_mean_grad", params, x, y, where)
    clip = jnp.asarray(l2_norm_clip)
    if clip.shape != () or not jnp.issubdtype(clip.dtype, jnp.number) or jnp.issubdtype(clip.dtype, jnp.complexfloating):
        raise ValueError(f"clipped_mean_grad: l2_norm_clip must be a real scalar, got shape {clip.shape} dtype {clip.dtype}")
    if not isinstance(clip, jax.core.Tracer) and not float(clip) > 0:
        raise ValueError(f"clipped_mean_grad: l2_norm_clip must be positive, got {float(clip)}")
    grads, stats = _clipped(*batch[:5], clip.astype(_validate.compute_dtype(batch.dtype)))
    if key is None:
        if not isinstance(noise_multiplier, jax.core.Tracer) and float(noise_multiplier) != 0:
            raise ValueError("clipped_mean_grad: noise_multiplier is not 0, so a PRNG key is required (key=...)")
        return grads, stats
    n = 1 if batch.single else (batch.x.shape[0] if where is None else jnp.sum(batch.where))
    return add_noise(key, grads, clip * noise_multiplier / n), stats


def add_noise(key, grads, stddev):
    """``grads`` plus independent Gaussian noise of standard deviation ``stddev`` per entry."""
    leaves, treedef = jax.tree.flatten(grads)
    keys = jax.random.split(key, len(leaves))
    noised = [g + (stddev * jax.random.normal(k, g.shape, jnp.float32)).astype(g.dtype) for g, k in zip(leaves, keys)]
    return jax.tree.unflatten(treedef, noised)
