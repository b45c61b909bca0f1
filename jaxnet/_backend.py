"""Which kernels compute the gradients: the native CPU kernels or pure JAX (XLA).

The setting is one of:

- ``"auto"`` (default): the native kernels on CPU when they are built and
  cover the net, the pure-JAX kernels otherwise;
- ``"xla"``: always the pure-JAX kernels;
- ``"native"``: the native kernels; an error if they are not built or the
  default backend is not CPU. Nets or dtypes they do not cover (more than
  6 layers, a layer wider than 16 units, or not float32/float64 in the
  compute dtype) still fall back to pure JAX.

Set it with ``jaxnet.backend(name)`` (a call, or a ``with`` block that
restores the old setting), ``jax.config.update("jaxnet_backend", name)`` or
``JAXNET_BACKEND=name`` in the environment. The setting is part of JAX's
trace context, so ``jax.jit(jaxnet.grad)`` traces once per setting and
never reuses a trace made under another.

The choice is made at trace time, from what is known there:

- the platform: ``jax.default_backend()``;
- the batch's layout. With one device, or a batch sharded along explicit
  mesh axes (``jax.make_mesh``'s default), the native kernels run per shard
  inside ``jax.shard_map`` and the sums are ``psum``-ed, so nothing is
  gathered. When several devices are visible and the batch's sharding is
  not visible at trace time (``Auto`` mesh axes under ``jit``), XLA's
  partitioner decides the layout after tracing, and an opaque native call
  would be gathered onto every device: ``"auto"`` and ``"native"`` then use
  the pure-JAX kernels, which the partitioner splits along the batch.

Native calls keep JAX semantics: differentiating them (``jax.jvp``,
Hessians) and ``jax.vmap`` over them use the pure-JAX kernels' rules, which
compute the same function.
"""

import jax
from jax.sharding import AxisType, PartitionSpec as P

from jaxnet import _native

BACKENDS = ("auto", "xla", "native")

try:
    from jax._src.config import enum_state as _enum_state

    _SETTING = _enum_state(
        "jaxnet_backend", BACKENDS, "auto", "jaxnet: which gradient kernels to use (auto, xla, native)", include_in_jit_key=True, include_in_trace_context=True
    )
except (ImportError, TypeError):  # pragma: no cover - depends on the JAX version
    _SETTING = None
    _FALLBACK = {"value": "auto"}


def get_backend():
    """The current setting: ``"auto"``, ``"xla"`` or ``"native"``."""
    return _SETTING.value if _SETTING is not None else _FALLBACK["value"]


def _set(name):
    if _SETTING is not None:
        jax.config.update("jaxnet_backend", name)
    else:  # pragma: no cover
        _FALLBACK["value"] = name


class backend:
    """Choose jaxnet's gradient kernels: ``"auto"``, ``"xla"`` or ``"native"``.

    A call sets it; a ``with`` block restores the old setting on exit.

    >>> import jaxnet
    >>> with jaxnet.backend("xla"):
    ...     jaxnet.get_backend()
    'xla'
    """

    def __init__(self, name):
        if name not in BACKENDS:
            raise ValueError(f"backend: name must be one of {BACKENDS}, got {name!r}")
        self._previous = get_backend()
        _set(name)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        _set(self._previous)


# ------------------------------------------------------------------ the choice


def _layout(x):
    """``("local", None)``, ``("sharded", (mesh, axes))`` or ``("unknown", None)`` for the batch x."""
    sharding = getattr(jax.typeof(x), "sharding", None)
    mesh = getattr(sharding, "mesh", None)
    if mesh is None or mesh.empty or mesh.size == 1:
        mesh = jax.sharding.get_abstract_mesh()
        if mesh.empty or mesh.size == 1:
            return ("local", None) if jax.device_count() == 1 else ("unknown", None)
        sharding = None
    axis_types = dict(zip(mesh.axis_names, mesh.axis_types))
    batch_axes = sharding.spec[0] if sharding is not None and len(sharding.spec) else None
    if batch_axes is not None:
        return "sharded", (mesh, batch_axes)
    if any(t == AxisType.Auto and mesh.shape[name] > 1 for name, t in axis_types.items()):
        return "unknown", None
    return "local", None  # replicated along explicit axes, or per shard inside a shard_map


def choose(params, x):
    """``(use_native, shard)`` for these validated inputs, at trace time.

    ``shard`` is None, or ``(mesh, batch_axes)`` to run the native kernels
    per shard.
    """
    setting = get_backend()
    if setting == "xla":
        return False, None
    if not _native.available():
        if setting == "native":
            raise RuntimeError(f"jaxnet backend 'native': the native CPU kernels are unavailable: {_native.unavailable_reason()}")
        if jax.default_backend() == "cpu":
            _native.notice_fallback()
        return False, None
    if jax.default_backend() != "cpu":
        if setting == "native":
            raise RuntimeError(f"jaxnet backend 'native' runs on CPU only, and the default backend is {jax.default_backend()!r}")
        return False, None
    if not _native.supports(params, x.dtype):
        return False, None
    layout, shard = _layout(x)
    if layout == "unknown":
        return False, None
    return True, shard


# ------------------------------------------------------------------ composition


def composable(native, xla):
    """``native`` with the derivative and batching rules of ``xla``, the same function in pure JAX.

    Both take ``(params, x, y, weight, *arrays)``; ``weight`` may be None.
    """

    @jax.custom_batching.custom_vmap
    def batched(*args):
        return native(*args)

    @batched.def_vmap
    def _batched_rule(axis_size, in_batched, *args):
        in_axes = jax.tree.map(lambda b: 0 if b else None, tuple(in_batched))
        out = jax.vmap(xla, in_axes=in_axes)(*args)
        return out, jax.tree.map(lambda _: True, out)

    @jax.custom_jvp
    def call(*args):
        return batched(*args)

    @call.defjvp
    def _call_jvp(primals, tangents):
        return jax.jvp(xla, primals, tangents)

    return call


def per_shard(fn, shard, in_batch, out_batch):
    """``fn`` run per shard of the batch along ``shard = (mesh, batch_axes)``.

    ``in_batch``: one bool per argument, True where it is split along the
    batch (leading) axis, False where it is replicated; ``out_batch`` the
    same for the outputs, or one bool for all of them.
    ``fn`` must itself reduce (``psum``) what it sums over the batch.
    """
    if shard is None:
        return fn
    mesh, axes = shard
    spec = lambda batched: P(axes) if batched else P()
    out_specs = spec(out_batch) if isinstance(out_batch, bool) else tuple(spec(b) for b in out_batch)
    return jax.shard_map(fn, mesh=mesh, in_specs=tuple(spec(b) for b in in_batch), out_specs=out_specs, check_vma=False)
