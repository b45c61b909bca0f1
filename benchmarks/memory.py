"""Peak memory of jaxnet's mean gradient beyond its inputs, for a batch of 2^P examples.

    python benchmarks/memory.py [--power 26] [--sizes 2 3 2 3] [--json]

Runs in this process: makes x (float32) and integer labels, compiles
``jax.jit(jaxnet.grad)``, then resets the kernel's peak-RSS mark
(/proc/self/clear_refs, Linux) and runs the gradient once. The figure is peak RSS
during the call minus RSS before it, so it counts the kernel's workspace and
outputs, not the inputs or compilation.
"""

import argparse
import json
import sys


def _status(field):
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    raise RuntimeError(f"{field} not in /proc/self/status")


def measure(power, sizes, per_example=False):
    import jax
    import jax.numpy as jnp
    import numpy as np

    import jaxnet

    n = 2**power
    params = jaxnet.init(jax.random.key(0), tuple(sizes))
    # Inputs are made on the host, so that no device temporaries of their
    # making sit freed-but-resident in XLA's allocator, ready to hide the
    # kernel's own allocations. On CPU jnp.asarray may alias the NumPy buffer,
    # and such an aliased input cost about 300 MiB of RSS at its first use
    # (measured at 2^26); `+ 0` makes XLA-owned copies, and the host arrays go.
    rng = np.random.default_rng(0)
    x = jax.block_until_ready(jnp.asarray(rng.standard_normal((n, sizes[0]), dtype=np.float32)) + 0)
    y = jax.block_until_ready(jnp.asarray(rng.integers(0, sizes[-1], n, dtype=np.int32)) + 0)
    fn = jaxnet.per_example_grads if per_example else jaxnet.grad
    compiled = jax.jit(fn).lower(params, x, y).compile()
    # No warm-up call: its freed buffers would stay resident and be reused.
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")  # reset VmHWM to the current RSS
    before = _status("VmRSS")
    jax.block_until_ready(compiled(params, x, y))
    peak = _status("VmHWM")
    return {
        "examples": n,
        "sizes": list(sizes),
        "input_bytes": x.nbytes + y.nbytes,
        "peak_beyond_inputs_bytes": peak - before,
        "xla_temp_bytes": compiled.memory_analysis().temp_size_in_bytes,
    }


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--power", type=int, default=26)
    parser.add_argument("--sizes", type=int, nargs="+", default=[2, 3, 2, 3])
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args(argv)
    result = measure(args.power, args.sizes)
    if args.json:
        print(json.dumps(result))
    else:
        mib = lambda b: b / 2**20
        print(
            f"B = 2^{args.power}, sizes {tuple(args.sizes)}: inputs {mib(result['input_bytes']):.0f} MiB, "
            f"peak RSS beyond inputs {mib(result['peak_beyond_inputs_bytes']):.1f} MiB, "
            f"XLA temp {mib(result['xla_temp_bytes']):.2f} MiB"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
