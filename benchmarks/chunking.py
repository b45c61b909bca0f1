"""The throughput cost of bounding memory: streamed mean gradients and chunked per-example gradients.

    python benchmarks/chunking.py [--power 20] [--sizes 2 3 2 3] [--chunk-power 16] [--repeats 9]

For one net and one batch of 2^P examples, times side by side (interleaved
calls, medians, compilation excluded, ``block_until_ready``):

- the mean gradient as jaxnet computes it (``jax.jit(jaxnet.grad)``: wide nets
  stream over chunks of ``jaxnet._kernels.CHUNK`` examples, the seed net is one
  fused pass) against the same matrix-form gradient over the whole batch at
  once (``whole batch``: workspace grows with B);
- ``jax.jit(jaxnet.per_example_grads)`` with and without ``chunk_size``,
  under each backend that covers the net.

As ``jaxnet bench`` does, it first makes glibc keep freed memory
(:func:`jaxnet.bench.keep_freed_memory`), so that outputs land on warm
pages; ``--fresh-pages`` leaves the defaults. It prints one line per
method: examples/s, the ratio to the unbounded method of its group, and
XLA's temp buffer.
"""

import argparse
import functools
import sys


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--power", type=int, default=20, help="batch of 2^P examples (default 20)")
    parser.add_argument("--sizes", type=int, nargs="+", default=[2, 3, 2, 3], help="layer widths (default 2 3 2 3)")
    parser.add_argument("--chunk-power", type=int, default=16, help="per_example_grads chunk_size=2^P (default 16)")
    parser.add_argument("--repeats", type=int, default=9)
    parser.add_argument("--fresh-pages", action="store_true", help="leave glibc's malloc at its defaults")
    args = parser.parse_args(argv)

    import jax
    import jax.numpy as jnp

    import jaxnet
    from jaxnet import _kernels, _native, _reference, bench

    kept = False if args.fresh_pages else bench.keep_freed_memory()
    n, sizes = 2**args.power, tuple(args.sizes)
    params = jaxnet.init(jax.random.key(0), sizes)
    x = jax.random.normal(jax.random.key(1), (n, sizes[0]), jnp.float32)
    y = jax.random.randint(jax.random.key(2), (n,), 0, sizes[-1], jnp.int32)
    xy = (params, x, y)
    chunked = functools.partial(jaxnet.per_example_grads, chunk_size=2**args.chunk_power)
    whole = lambda p, x, y: _reference.value_and_grad(p, x, y, None, x.shape[0])[1]
    backends = ["xla"] + (["native"] if jax.default_backend() == "cpu" and _native.available() and _native.supports(params, x.dtype) else [])

    groups = {"mean": [bench._jax_method("jaxnet.grad, xla", jaxnet.grad, xy, backend="xla")]}
    if not _kernels.use_unrolled(params):  # the matrix form streams; compare it with one whole-batch pass
        groups["mean"].append(bench._jax_method("whole batch, xla", whole, xy))
    for b in backends:
        groups[f"per_example, {b}"] = [
            bench._jax_method(f"per_example_grads, {b}", jaxnet.per_example_grads, xy, backend=b),
            bench._jax_method(f"chunk_size=2^{args.chunk_power}, {b}", chunked, xy, backend=b),
        ]
    print(f"sizes {'-'.join(map(str, sizes))}, B = 2^{args.power}, {jax.devices()[0].device_kind}, jax {jax.__version__}, freed memory {'kept' if kept else 'returned to the OS'}")
    for group, methods in groups.items():
        medians = bench._time_interleaved(methods, args.repeats)
        base = medians[methods[0].name]
        for m in methods:
            temp = m.costs[2]
            temp = f"{temp / 2**20:.1f} MiB" if temp is not None else "–"
            print(f"{group:20s} {m.name:28s} {n / medians[m.name] / 1e6:8.2f} M/s  {base / medians[m.name]:5.2f}x  temp {temp}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
