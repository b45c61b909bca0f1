"""Parameters of a fully connected ReLU classifier, and their initialisation.

``params`` is a plain PyTree: a tuple of :class:`Dense` layers, one per weight
matrix. ``params[l].w[i, j]`` connects input unit ``i`` of layer ``l`` to its
output unit ``j``, as the seed's ``W_ij``. For the seed network
``(2, 3, 2, 3)`` the tuple is ``((W1, b1), (W2, b2), (V, v0))``.
"""

from typing import NamedTuple

import jax
import jax.numpy as jnp

SEED_SIZES = (2, 3, 2, 3)
"""Layer widths of the seed network: 2 inputs, 3 and 2 ReLU units, 3 classes."""

HIDDEN_BIAS = 0.5
"""Initial bias of every ReLU unit; see :func:`init`."""


class Dense(NamedTuple):
    """One fully connected layer, ``a = h @ w + b``."""

    w: jax.Array  # (fan_in, fan_out), params dtype
    b: jax.Array  # (fan_out,), params dtype


def init(key, sizes=SEED_SIZES, dtype=jnp.float32):
    """Initialise a network with layer widths ``sizes``.

    Weights are He-normal, ``w ~ N(0, 2 / fan_in)``, which keeps the scale of
    the pre-activations roughly constant through ReLU layers. Narrow ReLU
    nets need two more things, because a unit whose pre-activation is negative
    on every input gets no gradient ("dead ReLU") and never recovers:

    - Hidden biases start at ``HIDDEN_BIAS = 0.5`` rather than 0, so each
      unit is active on most of the input space at first and has a margin
      against being pushed dead by early updates. On the three-blob task of
      ``jaxnet train`` (Adam, lr 0.01), a bias of 0.1 left one seed in 20
      with a dead second-layer unit (66% accuracy); 0.5 trained all 20.
    - A ReLU layer fed by ReLU units sees only inputs ``h >= 0``; if all of a
      unit's incoming weights are negative it is dead everywhere (odds 1/8
      per unit for a fan-in of 3). So one randomly chosen incoming weight of
      each such unit is made positive (``|w|``), as in randomised asymmetric
      initialisation (Lu et al., 2019, "Dying ReLU and Initialization").

    The output bias starts at 0.

    Args:
      key: a ``jax.random`` key. It is split once, one subkey per layer.
      sizes: layer widths ``(d_in, hidden..., C)``, at least 2 entries, each a
        positive int. Every layer but the last is followed by ReLU; the last
        feeds the softmax.
      dtype: floating dtype of every leaf.

    Returns:
      A tuple of ``len(sizes) - 1`` :class:`Dense` layers.

    >>> import jax, jaxnet
    >>> params = jaxnet.init(jax.random.key(0))
    >>> [p.w.shape for p in params]
    [(2, 3), (3, 2), (2, 3)]
    """
    sizes = tuple(sizes)
    if len(sizes) < 2:
        raise ValueError(f"init: sizes must have at least 2 entries (d_in, C), got {sizes!r}")
    for n in sizes:
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise ValueError(f"init: every entry of sizes must be a positive int, got {sizes!r}")
    if not jnp.issubdtype(dtype, jnp.floating):
        raise TypeError(f"init: dtype must be a floating dtype, got {jnp.dtype(dtype)}")
    keys = jax.random.split(key, len(sizes) - 1)
    layers = []
    for index, (k, fan_in, fan_out) in enumerate(zip(keys, sizes[:-1], sizes[1:])):
        k_w, k_pos = jax.random.split(k)
        std = jnp.sqrt(2.0 / fan_in)
        w = std * jax.random.normal(k_w, (fan_in, fan_out), jnp.float32)
        is_output = index == len(sizes) - 2
        if index > 0 and not is_output:
            positive = jax.random.randint(k_pos, (fan_out,), 0, fan_in)
            make_positive = jnp.arange(fan_in)[:, None] == positive[None, :]
            w = jnp.where(make_positive, jnp.abs(w), w)
        b = jnp.full((fan_out,), 0.0 if is_output else HIDDEN_BIAS, dtype)
        layers.append(Dense(w.astype(dtype), b))
    return tuple(layers)


def sizes_of(params):
    """Layer widths ``(d_in, ..., C)`` of ``params``."""
    return (params[0].w.shape[0],) + tuple(layer.w.shape[1] for layer in params)
