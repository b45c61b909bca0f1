"""Shape and dtype checks at the public edge, with errors that name the argument.

Everything here runs at trace time on shapes and dtypes only, so it works the
same on concrete arrays and under ``jax.jit`` / ``jax.vmap``, and a bad call
fails before anything reaches XLA. Nothing is broadcast: every shape must be
exactly the one expected.
"""

from typing import NamedTuple

import jax
import jax.numpy as jnp

from jaxnet import _checks
from jaxnet._params import Dense


class Batch(NamedTuple):
    """Validated inputs, as given (see :func:`prepare` for the compute form)."""

    params: tuple  # tuple of Dense
    x: jax.Array  # (B, d_in) or (d_in,), real
    y: jax.Array  # (B,) / () integer labels, or (B, C) / (C,) float probabilities
    where: jax.Array | None  # (B,) / () bool: False masks an example out
    single: bool  # the caller passed one example; outputs drop the batch axis
    dtype: jnp.dtype  # params dtype, the dtype of every output


def compute_dtype(dtype):
    """float16 and bfloat16 are computed (and accumulated) in float32."""
    return jnp.promote_types(dtype, jnp.float32)


def params_of(fn, params):
    """Check that ``params`` is a chain of :class:`Dense` layers; return it as a tuple."""
    if not isinstance(params, (tuple, list)) or len(params) == 0:
        raise TypeError(
            f"{fn}: params must be a non-empty tuple of jaxnet.Dense(w, b) layers, "
            f"as returned by jaxnet.init; got {type(params).__name__}"
        )
    layers = []
    dtype = None
    for l, layer in enumerate(params):
        if not isinstance(layer, (tuple, list)) or len(layer) != 2:
            raise TypeError(f"{fn}: params[{l}] must be a jaxnet.Dense(w, b), got {type(layer).__name__}")
        w, b = (jnp.asarray(v) if not isinstance(v, jax.Array) else v for v in layer)
        if w.ndim != 2:
            raise ValueError(f"{fn}: params[{l}].w must have shape (fan_in, fan_out), got shape {w.shape}")
        if b.shape != (w.shape[1],):
            raise ValueError(
                f"{fn}: params[{l}].b must have shape ({w.shape[1]},) to match params[{l}].w of "
                f"shape {w.shape}, got shape {b.shape}"
            )
        if l > 0 and w.shape[0] != layers[-1].w.shape[1]:
            raise ValueError(
                f"{fn}: layers do not chain: params[{l}].w has fan_in {w.shape[0]} but "
                f"params[{l - 1}] has fan_out {layers[-1].w.shape[1]}"
            )
        for name, leaf in (("w", w), ("b", b)):
            if not jnp.issubdtype(leaf.dtype, jnp.floating):
                raise TypeError(f"{fn}: params[{l}].{name} must be floating point, got {leaf.dtype}")
            if dtype is None:
                dtype = leaf.dtype
            elif leaf.dtype != dtype:
                raise TypeError(
                    f"{fn}: all params must share one dtype; params[0].w is {dtype} but "
                    f"params[{l}].{name} is {leaf.dtype}"
                )
        layers.append(Dense(w, b))
    return tuple(layers)


def x_of(fn, params, x):
    """Check ``x`` against ``params``: shape (B, d_in) or (d_in,), real numbers, B > 0."""
    d_in = params[0].w.shape[0]
    x = jnp.asarray(x)
    if not (jnp.issubdtype(x.dtype, jnp.floating) or jnp.issubdtype(x.dtype, jnp.integer)):
        raise TypeError(f"{fn}: x must be a real number array, got dtype {x.dtype}")
    if x.ndim not in (1, 2) or x.shape[-1] != d_in:
        raise ValueError(
            f"{fn}: x must have shape (B, {d_in}) or ({d_in},) for these params "
            f"(d_in = {d_in}), got shape {x.shape}"
        )
    if x.ndim == 2 and x.shape[0] == 0:
        raise ValueError(f"{fn}: x is an empty batch, shape {x.shape}; the mean loss of no examples is undefined")
    return x


def cast_params(params, dtype):
    return tuple(Dense(l.w.astype(dtype), l.b.astype(dtype)) for l in params)


def batch_of(fn, params, x, y, where=None):
    """Validate ``(params, x, y, where)`` and return a :class:`Batch`."""
    params = params_of(fn, params)
    classes = params[-1].w.shape[1]
    dtype = params[0].w.dtype

    x = x_of(fn, params, x)
    single = x.ndim == 1
    batch = x.shape[:-1]

    y = jnp.asarray(y)
    if jnp.issubdtype(y.dtype, jnp.integer):
        if y.shape != batch:
            raise ValueError(
                f"{fn}: integer labels y must have shape {batch} to match x of shape {x.shape}, "
                f"got shape {y.shape}"
            )
    elif jnp.issubdtype(y.dtype, jnp.floating):
        if y.shape != batch + (classes,):
            if y.shape == batch:
                raise TypeError(
                    f"{fn}: labels y of shape {y.shape} must be integers (class indices), "
                    f"got dtype {y.dtype}; probabilities need shape {batch + (classes,)}"
                )
            raise ValueError(
                f"{fn}: probability labels y must have shape {batch + (classes,)} to match x of "
                f"shape {x.shape} and {classes} classes, got shape {y.shape}"
            )
    else:
        raise TypeError(
            f"{fn}: y must be integer labels of shape {batch} or floating probabilities of "
            f"shape {batch + (classes,)}, got dtype {y.dtype}"
        )

    if where is not None:
        where = jnp.asarray(where)
        if where.dtype != jnp.bool_ or where.shape != batch:
            raise ValueError(
                f"{fn}: where must be a bool mask of shape {batch} to match x of shape {x.shape}, "
                f"got shape {where.shape} dtype {where.dtype}"
            )
    batch = Batch(params, x, y, where, single, dtype)
    _checks.eager(fn, batch)
    return batch


def prepare(params, x, y, where, single):
    """Compute form of validated inputs.

    Returns ``(params, x, y, weight)``: batched, in the compute dtype, int32
    labels, and ``weight`` None or the (B,) 0/1 mask. Masked rows of x and y
    are zeroed, so that a NaN or an out-of-range label there cannot leak
    into the result.
    """
    cdtype = compute_dtype(params[0].w.dtype)
    if single:
        x, y = x[None], y[None]
        where = None if where is None else where[None]
    y = y.astype(jnp.int32) if jnp.issubdtype(y.dtype, jnp.integer) else y.astype(cdtype)
    x = x.astype(cdtype)
    weight = None
    if where is not None:
        x = jnp.where(where[:, None], x, 0)
        y = jnp.where(where if y.ndim == 1 else where[:, None], y, 0)
        weight = where.astype(cdtype)
    return cast_params(params, cdtype), x, y, weight
