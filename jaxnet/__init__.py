"""jaxnet: hand-written loss gradients of a small ReLU classifier, in pure JAX.

>>> import jax, jax.numpy as jnp, jaxnet
>>> params = jaxnet.init(jax.random.key(0), jaxnet.SEED_SIZES)
>>> x, y = jnp.zeros((5, 2)), jnp.array([0, 1, 2, 1, 0])
>>> loss, grads = jaxnet.value_and_grad(params, x, y)
>>> grads[0].w.shape
(2, 3)
"""

from jaxnet._backend import backend, get_backend
from jaxnet._api import forward, grad, loss, per_example_grads, per_example_loss, value_and_grad
from jaxnet._checks import checked, value_checks
from jaxnet._dp import ClipStats, add_noise, clipped_mean_grad
from jaxnet._kernels import CPU_COMPILER_OPTIONS
from jaxnet._params import SEED_SIZES, Dense, init
from jaxnet._shard import batch_mesh, shard_batch

__all__ = [
    "CPU_COMPILER_OPTIONS",
    "SEED_SIZES",
    "ClipStats",
    "Dense",
    "add_noise",
    "backend",
    "batch_mesh",
    "checked",
    "clipped_mean_grad",
    "forward",
    "get_backend",
    "grad",
    "init",
    "loss",
    "per_example_grads",
    "per_example_loss",
    "shard_batch",
    "value_and_grad",
    "value_checks",
]
__version__ = "0.1.0"
