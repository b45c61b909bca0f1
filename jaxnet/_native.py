"""The native CPU kernels (``jaxnet/csrc/*.cc``), called through the XLA FFI.

The shared library is built at install time when a C++17 compiler is
present (``setup.py``). It holds two handlers, registered here for the CPU
platform on first use:

- ``jaxnet_sums``: one pass over ``x`` and ``y`` summing every gradient
  entry and the loss, or the clipped per-example gradients and their norms;
- ``jaxnet_per_example``: each example's gradient, written straight into the
  params-shaped, batch-leading leaves.

Both cover nets of 1 to :data:`MAX_LAYERS` layers, each at most
:data:`MAX_WIDTH` units wide, in float32 or float64; the seed sizes have
their own fully unrolled build. Functions here take validated inputs and
are the raw calls: :mod:`jaxnet._kernels` gives them their derivative,
batching and sharding rules.

If the library is missing (no compiler at install time) jaxnet says so in
one line, once, and runs the pure-JAX kernels.
"""

import ctypes
import glob
import logging
import os

import jax
import jax.numpy as jnp
import numpy as np

MAX_LAYERS = 6
MAX_WIDTH = 16
LIBRARY_ENV = "JAXNET_NATIVE_LIBRARY"
"""Environment variable: path of the shared library to load instead of the installed one."""

_log = logging.getLogger("jaxnet")
_STATE = {"loaded": None, "error": None, "noticed": False}


def _library_path():
    if os.environ.get(LIBRARY_ENV):
        return os.environ[LIBRARY_ENV]
    found = sorted(glob.glob(os.path.join(os.path.dirname(os.path.abspath(__file__)), "_jaxnet_cpu*.so")))
    return found[0] if found else None


def _load():
    if _STATE["loaded"] is not None:
        return _STATE["loaded"]
    path = _library_path()
    try:
        if path is None:
            raise OSError("it was not built (no C++17 compiler at install time?)")
        lib = ctypes.CDLL(path)
        for name in ("jaxnet_sums", "jaxnet_per_example"):
            jax.ffi.register_ffi_target(name, jax.ffi.pycapsule(getattr(lib, name)), platform="cpu")
        _smoke_test()
        _STATE["loaded"] = True
    except Exception as e:  # a missing or stale library must not break jaxnet: it falls back
        _STATE["loaded"], _STATE["error"] = False, f"{path}: {type(e).__name__}: {e}" if path else str(e)
    return _STATE["loaded"]


def _smoke_test():
    """One tiny call on the CPU device, so that a library built against an
    incompatible jaxlib (an FFI version it does not accept) shows up here,
    once, and jaxnet falls back, rather than failing inside a user's jit."""
    from jaxnet._params import Dense

    with jax.default_device(jax.devices("cpu")[0]), jax.ensure_compile_time_eval():
        params = tuple(Dense(jnp.zeros((a, b), jnp.float32), jnp.zeros((b,), jnp.float32)) for a, b in ((2, 3), (3, 2), (2, 3)))
        x, y = jnp.zeros((3, 2), jnp.float32), jnp.zeros((3,), jnp.int32)
        total = jax.jit(lambda p, x, y: sums(p, x, y, None, True)[0][-1])(params, x, y)
    if not abs(float(total) - 3 * np.log(3)) < 1e-5:  # zero params: every example's loss is log 3
        raise RuntimeError(f"the native kernels returned a wrong loss ({float(total)}) on a known input")


def available():
    """Whether the native CPU kernels are built and loaded."""
    return _load()


def unavailable_reason():
    """Why :func:`available` is False (None if it is True)."""
    return None if _load() else _STATE["error"]


def notice_fallback():
    """Say once, in one line, that the native kernels are missing."""
    if not _STATE["noticed"]:
        _STATE["noticed"] = True
        _log.warning("jaxnet: native CPU kernels unavailable (%s); using the pure-JAX kernels", unavailable_reason())


def supports(params, dtype):
    """Whether the native kernels cover these layer sizes and this compute dtype."""
    sizes = [params[0].w.shape[0]] + [layer.w.shape[1] for layer in params]
    return (
        1 <= len(params) <= MAX_LAYERS
        and all(1 <= s <= MAX_WIDTH for s in sizes)
        and jnp.dtype(dtype) in (jnp.dtype(jnp.float32), jnp.dtype(jnp.float64))
    )


def _sizes(params):
    return np.array([params[0].w.shape[0]] + [layer.w.shape[1] for layer in params], np.int64)


def _flat(params):
    return jnp.concatenate([a.reshape(-1) for layer in params for a in (layer.w, layer.b)])


def _labels(y):
    return y.astype(jnp.int32) if jnp.issubdtype(y.dtype, jnp.integer) else y


def _empty(dtype):
    return jnp.zeros((0,), dtype)


def sums(params, x, y, weight, with_loss, clip=None):
    """Raw sums over the batch: ``(P + 1,)`` (gradient entries in params order, then the loss), and ``(B,)`` norms.

    With ``clip`` (a scalar), each example's gradient is clipped to L2 norm
    ``clip`` before summing and the norms are returned; otherwise the norms
    are ``(0,)``.
    """
    dtype = x.dtype
    n_params = sum(layer.w.size + layer.b.size for layer in params)
    out = (
        jax.ShapeDtypeStruct((n_params + 1,), dtype),
        jax.ShapeDtypeStruct((x.shape[0] if clip is not None else 0,), dtype),
    )
    clip = _empty(dtype) if clip is None else jnp.asarray(clip, dtype).reshape(())
    weight = _empty(dtype) if weight is None else weight
    call = jax.ffi.ffi_call("jaxnet_sums", out)
    return call(_flat(params), x, _labels(y), weight, clip, sizes=_sizes(params), with_loss=np.int64(bool(with_loss)))


def per_example(params, x, y, weight):
    """Per-example gradients: the params tree with a leading ``(B,)`` axis."""
    dtype, batch = x.dtype, x.shape[0]
    out = []
    for layer in params:
        out += [jax.ShapeDtypeStruct((batch,) + layer.w.shape, dtype), jax.ShapeDtypeStruct((batch,) + layer.b.shape, dtype)]
    weight = _empty(dtype) if weight is None else weight
    leaves = jax.ffi.ffi_call("jaxnet_per_example", out)(_flat(params), x, _labels(y), weight, sizes=_sizes(params))
    return tuple(type(layer)(leaves[2 * i], leaves[2 * i + 1]) for i, layer in enumerate(params))
