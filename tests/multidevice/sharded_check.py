"""Run with 4 CPU devices (a fresh process): sharded results equal single-device results."""

import jax

jax.config.update("jax_num_cpu_devices", 4)
jax.config.update("jax_enable_x64", True)

import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
from jax.sharding import AxisType, PartitionSpec as P  # noqa: E402

import jaxnet  # noqa: E402


def rel(a, b):
    return max(float(np.max(np.abs(np.asarray(u) - np.asarray(v))) / max(np.max(np.abs(np.asarray(v))), 1e-300)) for u, v in zip(jax.tree.leaves(a), jax.tree.leaves(b)))


assert jax.device_count() == 4
for sizes in [jaxnet.SEED_SIZES, (5, 16, 8, 8, 4)]:
    params = jaxnet.init(jax.random.key(0), sizes, jnp.float64)
    # 1022: padded with a mask; 4 chunks: the wide net streams per shard.
    for batch in [1022] if sizes == jaxnet.SEED_SIZES else [4 * 8192]:
        x = jax.random.normal(jax.random.key(1), (batch, sizes[0]), jnp.float64)
        y = jax.random.randint(jax.random.key(2), (batch,), 0, sizes[-1])
        want = {
            "grad": jaxnet.grad(params, x, y),
            "value_and_grad": jaxnet.value_and_grad(params, x, y),
            "clipped": jaxnet.clipped_mean_grad(params, x, y, 0.5)[0],
        }
        want_each = jaxnet.per_example_grads(params, x, y)
        for axis_type in (AxisType.Explicit, AxisType.Auto):
            mesh = jax.make_mesh((4,), ("data",), axis_types=(axis_type,))
            with jax.set_mesh(mesh):
                xs, ys, where = jaxnet.shard_batch(x, y, mesh)
                assert xs.sharding.spec == P("data") and xs.shape[0] % 4 == 0
                for jit in (True,) if axis_type == AxisType.Auto else (False, True):
                    wrap = jax.jit if jit else (lambda f: f)
                    got = {
                        "grad": wrap(lambda p, x, y, w: jaxnet.grad(p, x, y, where=w))(params, xs, ys, where),
                        "value_and_grad": wrap(lambda p, x, y, w: jaxnet.value_and_grad(p, x, y, where=w))(params, xs, ys, where),
                        "clipped": wrap(lambda p, x, y, w: jaxnet.clipped_mean_grad(p, x, y, 0.5, where=w)[0])(params, xs, ys, where),
                    }
                    for name in want:
                        assert rel(got[name], want[name]) <= 1e-12, (sizes, batch, axis_type, jit, name)
                    each = wrap(lambda p, x, y, w: jaxnet.per_example_grads(p, x, y, where=w))(params, xs, ys, where)
                    for leaf in jax.tree.leaves(each):
                        assert leaf.sharding.spec[0] == "data", leaf.sharding.spec  # stays sharded along the batch
                    assert rel(jax.tree.map(lambda a: np.asarray(a)[:batch], each), want_each) <= 1e-12
                hlo = jax.jit(jaxnet.grad).lower(params, xs, ys).compile().as_text()
                assert "all-gather" not in hlo, "the batch must never be all-gathered"
                # The native kernels run per shard where the layout is known at trace time.
                native = jaxnet.get_backend() != "xla" and axis_type == AxisType.Explicit
                assert ("jaxnet_sums" in hlo) == native, (jaxnet.get_backend(), axis_type, sizes)
print(f"sharded OK ({jaxnet.get_backend()})")
