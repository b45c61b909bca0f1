"""Value checks: labels in range, no NaN or inf in x, probabilities or params.

Shapes and dtypes are always checked (``_validate``). Values cost a pass
over the data and, outside ``jit``, a device-to-host sync, so:

- **eager** (default on): when a public function gets concrete arrays it
  checks them first and raises ``ValueError`` naming the argument. Turn it
  off with ``jaxnet.value_checks(False)`` (a call, or a ``with`` block), or
  ``JAXNET_VALUE_CHECKS=0`` in the environment.
- **inside jit** values are unknown at trace time, so nothing is checked by
  default. ``jaxnet.checked(fn)`` runs ``fn`` (jitted or not) with the same
  checks compiled in through ``jax.experimental.checkify`` and raises if one
  fails.

Without checks, bad values give wrong numbers silently: an integer label
outside ``[0, C)`` matches no class, so its example's gradient pulls every
logit down as if it had no label; NaN or inf in x or params spreads to the
loss and gradients.
"""

import functools
import os

import jax
import jax.numpy as jnp
from jax.experimental import checkify

_STATE = {"eager": os.environ.get("JAXNET_VALUE_CHECKS", "1") != "0"}

# Whether jaxnet functions being traced compile the checks in. It must be part
# of JAX's trace context: otherwise jax.jit's trace cache would hand a trace
# made under `checked` (with checkify checks) to a plain call, or the reverse.
# JAX offers no public way to declare such a setting; this internal one has
# been stable, and without it `checked` still works on functions traced
# afresh.
try:
    from jax._src.config import bool_state as _bool_state

    _CHECKIFY = _bool_state(
        "jaxnet_checkify_values", False, "jaxnet: compile value checks in (set by jaxnet.checked)", include_in_trace_context=True
    )
except (ImportError, TypeError):  # pragma: no cover - depends on the JAX version
    _CHECKIFY = None
    _STATE["checkify"] = False


class value_checks:
    """Turn jaxnet's eager value checks on or off; restores the old setting on ``with`` exit.

    >>> import jaxnet
    >>> with jaxnet.value_checks(False):
    ...     pass  # no value checks in here
    """

    def __init__(self, enabled):
        self._previous = _STATE["eager"]
        _STATE["eager"] = bool(enabled)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        _STATE["eager"] = self._previous


def checked(fn):
    """``fn`` with jaxnet's value checks compiled in; raises if any fails.

    Works on jitted functions: ``jaxnet.checked(jax.jit(step))(params, ...)``.
    The checks are compiled in when jaxnet's functions are traced under
    ``checked``; traces with and without them are cached apart.
    """

    @functools.wraps(fn)
    def run(*args, **kwargs):
        if _CHECKIFY is not None:
            with _CHECKIFY(True):
                err, out = checkify.checkify(fn)(*args, **kwargs)
        else:  # pragma: no cover
            previous, _STATE["checkify"] = _STATE["checkify"], True
            try:
                err, out = checkify.checkify(fn)(*args, **kwargs)
            finally:
                _STATE["checkify"] = previous
        err.throw()
        return out

    return run


def checkify_enabled():
    return _CHECKIFY.value if _CHECKIFY is not None else _STATE["checkify"]


def _specs(params, x, y):
    """``(argument, message, failed)`` per check; ``failed(params, x, y, keep)`` is a scalar bool.

    Only dtypes and shapes decide which checks apply, so this runs on tracers too.
    """
    specs = []
    if jnp.issubdtype(y.dtype, jnp.integer):
        classes = params[-1].w.shape[1]
        specs.append(("y", f"integer labels must lie in [0, {classes})", lambda p, x, y, keep: jnp.any(keep & ((y < 0) | (y >= classes)))))
    else:
        specs.append(("y", "probability labels must be finite and >= 0", lambda p, x, y, keep: jnp.any(keep[..., None] & ~(jnp.isfinite(y) & (y >= 0)))))
    if jnp.issubdtype(x.dtype, jnp.floating):
        specs.append(("x", "x must be finite (no NaN or inf)", lambda p, x, y, keep: jnp.any(keep[..., None] & ~jnp.isfinite(x))))
    specs.append(("params", "params must be finite (no NaN or inf)", lambda p, x, y, keep: ~jnp.all(jnp.stack([jnp.all(jnp.isfinite(l)) for l in jax.tree.leaves(p)]))))
    return specs


def _failures(params, x, y, where):
    keep = jnp.ones(x.shape[:-1], bool) if where is None else where
    return [failed(params, x, y, keep) for _, _, failed in _specs(params, x, y)]


_failures_jit = jax.jit(_failures)


def eager(fn, batch):
    """Check values now, if enabled and every array is concrete."""
    if not _STATE["eager"]:
        return
    arrays = (batch.params, batch.x, batch.y, batch.where)
    if any(isinstance(a, jax.core.Tracer) for a in jax.tree.leaves(arrays)):
        return
    for (arg, message, _), failed in zip(_specs(*arrays[:3]), jax.device_get(_failures_jit(*arrays))):
        if failed:
            raise ValueError(f"{fn}: {message}; check {arg} (turn value checks off with jaxnet.value_checks(False))")


def in_jit(fn, params, x, y, where):
    """Compile the checks in, for :func:`checked` (checkify)."""
    for (arg, message, _), failed in zip(_specs(params, x, y), _failures(params, x, y, where)):
        checkify.check(~failed, f"{fn}: {message}; check {arg}")
