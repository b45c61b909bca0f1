"""The ``jaxnet`` command: ``jaxnet check`` and ``jaxnet bench``."""

import argparse
import os
import sys


def _check(args):
    import jax

    from jaxnet import selfcheck

    if args.dtype == "float64":
        jax.config.update("jax_enable_x64", True)
    result = selfcheck.run(jax.random.key(args.seed), args.batch, args.dtype)
    print(f"device:        {result.device} ({jax.default_backend()})")
    print(f"batch size:    {result.batch}")
    print(f"dtype:         {result.dtype}")
    print(f"max abs error: {result.max_abs_err:.3e}")
    print(f"max rel error: {result.max_rel_err:.3e}  (tolerance {result.tolerance:.0e}, relative to each leaf's largest entry)")
    print("PASS" if result.passed else "FAIL")
    return 0 if result.passed else 1


def _progress(total):
    """A progress callback: a tqdm bar on a terminal when tqdm is installed, else one line per step."""
    try:
        from tqdm import tqdm
    except ImportError:
        tqdm = None
    if tqdm is not None:
        bar = tqdm(total=total, desc="jaxnet bench", unit="step", disable=None, file=sys.stderr)

        def step(label):
            bar.set_postfix_str(label)
            bar.update(1)

        return step, bar.close
    count = iter(range(1, total + 1))
    return (lambda label: print(f"[{next(count)}/{total}] {label}", file=sys.stderr, flush=True)), (lambda: None)


def _bench(args):
    import jax

    from jaxnet import bench

    mean = tuple(2**p for p in args.mean_powers)
    each = tuple(2**p for p in args.per_example_powers)
    env = bench.environment()
    print(f"jax {env['jax']}, jaxlib {env['jaxlib']}, backend {env['backend']}, device {env['device']} x{env['device_count']}, {env['cpu_count']} CPUs ({env['processor']})")
    step, close = _progress(len(mean) + len(each))
    try:
        rows = bench.run(jax.random.key(args.seed), mean, each, repeats=args.repeats, numpy_baseline=not args.no_numpy, torch_baseline=not args.no_torch, progress=step)
    finally:
        close()
    if bench._torch() is None and not args.no_torch:
        print("note: torch is not importable; skipped the torch rows", file=sys.stderr)
    overhead = bench.eager_overhead(jax.random.key(args.seed))
    print(bench.table(rows))
    print(f"\nun-jitted jaxnet.grad at B=2^10: {overhead['eager'] * 1e6:.0f} us/call; jax.jit(jaxnet.grad): {overhead['jit'] * 1e6:.0f} us/call")
    os.makedirs(args.out, exist_ok=True)
    json_path = os.path.join(args.out, "bench.json")
    bench.write_json(json_path, rows, {"eager_overhead_s": overhead})
    print(f"wrote {json_path}")
    png_path = os.path.join(args.out, "bench.png")
    if bench.plot(png_path, rows):
        print(f"wrote {png_path}")
    return 0


def main(argv=None):
    parser = argparse.ArgumentParser(prog="jaxnet", description="Hand-written gradients of a small ReLU classifier.")
    sub = parser.add_subparsers(dest="command", required=True)
    check = sub.add_parser("check", help="compare jaxnet's gradients with autodiff on the default device")
    check.add_argument("--batch", type=int, default=4096, help="examples in the test batch (default 4096)")
    check.add_argument("--dtype", choices=["float32", "float64"], default="float32")
    check.add_argument("--seed", type=int, default=0)
    check.set_defaults(run=_check)

    bench = sub.add_parser("bench", help="throughput of the batched gradient kernels against baselines")
    bench.add_argument("--mean-powers", type=int, nargs="+", default=[10, 14, 17, 20, 23], metavar="P", help="mean-gradient batch sizes 2^P (default 10 14 17 20 23)")
    bench.add_argument("--per-example-powers", type=int, nargs="*", default=[10, 14, 17, 20], metavar="P", help="per-example batch sizes 2^P (default 10 14 17 20)")
    bench.add_argument("--repeats", type=int, default=7, help="timed calls per method and batch size; the median is reported")
    bench.add_argument("--out", default="bench-out", help="folder for bench.json and bench.png (default bench-out)")
    bench.add_argument("--no-numpy", action="store_true", help="skip the NumPy baseline")
    bench.add_argument("--no-torch", action="store_true", help="skip the torch baselines even if torch is importable")
    bench.add_argument("--seed", type=int, default=0)
    bench.set_defaults(run=_bench)
    args = parser.parse_args(argv)
    return args.run(args)


if __name__ == "__main__":
    sys.exit(main())
