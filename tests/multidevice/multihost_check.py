"""One of 2 processes (argv: process id, port): a global batch over 2 hosts gives the single-process gradient.

Each process holds half the batch; jax.distributed joins them, gloo carries
the CPU collectives, and jax.jit(jaxnet.grad) runs on the global array.
"""

import sys

import jax

process_id, port = int(sys.argv[1]), sys.argv[2]
jax.config.update("jax_cpu_collectives_implementation", "gloo")
jax.config.update("jax_enable_x64", True)
jax.distributed.initialize(coordinator_address=f"localhost:{port}", num_processes=2, process_id=process_id)

import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
from jax.sharding import NamedSharding, PartitionSpec as P  # noqa: E402

import jaxnet  # noqa: E402

assert jax.process_count() == 2 and jax.device_count() == 2
batch = 1000
params = jaxnet.init(jax.random.key(0), jaxnet.SEED_SIZES, jnp.float64)
x = jax.random.normal(jax.random.key(1), (batch, 2), jnp.float64)  # the same on every host
y = jax.random.randint(jax.random.key(2), (batch,), 0, 3)
local = slice(process_id * batch // 2, (process_id + 1) * batch // 2)  # this host's half

mesh = jax.make_mesh((2,), ("data",), devices=jax.devices())
sharding = NamedSharding(mesh, P("data"))
xs = jax.make_array_from_process_local_data(sharding, np.asarray(x[local]), (batch, 2))
ys = jax.make_array_from_process_local_data(sharding, np.asarray(y[local]), (batch,))
with jax.set_mesh(mesh):
    got = jax.jit(jaxnet.grad, out_shardings=NamedSharding(mesh, P()))(params, xs, ys)
want = jaxnet.grad(params, x, y)  # single-process, on this host's own device
for g, w in zip(jax.tree.leaves(got), jax.tree.leaves(want)):
    g = np.asarray(g.addressable_data(0))
    assert np.max(np.abs(g - np.asarray(w))) <= 1e-12 * max(np.max(np.abs(np.asarray(w))), 1.0), (g, w)
print(f"process {process_id}: multi-host OK")
