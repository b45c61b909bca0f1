"""Data parallelism on JAX's own sharding: params replicated, the batch split over a mesh axis.

jaxnet's functions need nothing special for this: given a batch sharded
along its first axis, ``jax.jit`` partitions the kernels with XLA's SPMD
partitioner. The mean gradient's per-shard partial sums meet in one
all-reduce of a few hundred numbers, the batch is never all-gathered, and
per-example outputs stay sharded along the batch. This works on meshes
from ``jax.make_mesh`` (Explicit axes) and on meshes with Auto axes.
"""

import jax
import jax.numpy as jnp
from jax.sharding import NamedSharding, PartitionSpec


def batch_mesh(devices=None, axis="data"):
    """A 1-D mesh over ``devices`` (default: all), for :func:`shard_batch`."""
    devices = jax.devices() if devices is None else list(devices)
    return jax.make_mesh((len(devices),), (axis,), devices=devices)


def shard_batch(x, y, mesh=None, axis="data", where=None):
    """Place a batch on ``mesh``, split along its first axis; pad it to fit.

    A batch whose size does not divide by the number of devices on ``axis``
    is padded with zero rows, and the returned ``where`` mask (``(B_padded,)``
    bool) marks the real examples, so every jaxnet function gives the
    unpadded result when it is passed ``where=where``.

    Returns:
      ``(x, y, where)``, each sharded as ``PartitionSpec(axis)``.
    """
    mesh = batch_mesh(axis=axis) if mesh is None else mesh
    x, y = jnp.asarray(x), jnp.asarray(y)
    if x.ndim != 2 or y.shape[:1] != x.shape[:1]:
        raise ValueError(f"shard_batch: x must be (B, d_in) and y (B,) or (B, C) with the same B, got {x.shape} and {y.shape}")
    batch = x.shape[0]
    where = jnp.ones((batch,), bool) if where is None else jnp.asarray(where)
    if where.shape != (batch,) or where.dtype != jnp.bool_:
        raise ValueError(f"shard_batch: where must be a bool mask of shape ({batch},), got {where.shape} {where.dtype}")
    shards = mesh.shape[axis]
    pad = -batch % shards
    if pad:
        x = jnp.concatenate([x, jnp.zeros((pad,) + x.shape[1:], x.dtype)])
        y = jnp.concatenate([y, jnp.zeros((pad,) + y.shape[1:], y.dtype)])
        where = jnp.concatenate([where, jnp.zeros((pad,), bool)])
    sharding = NamedSharding(mesh, PartitionSpec(axis))
    return tuple(jax.device_put(a, sharding) for a in (x, y, where))
