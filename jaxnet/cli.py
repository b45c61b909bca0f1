"""The ``jaxnet`` command: ``jaxnet check``."""

import argparse
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


def main(argv=None):
    parser = argparse.ArgumentParser(prog="jaxnet", description="Hand-written gradients of a small ReLU classifier.")
    sub = parser.add_subparsers(dest="command", required=True)
    check = sub.add_parser("check", help="compare jaxnet's gradients with autodiff on the default device")
    check.add_argument("--batch", type=int, default=4096, help="examples in the test batch (default 4096)")
    check.add_argument("--dtype", choices=["float32", "float64"], default="float32")
    check.add_argument("--seed", type=int, default=0)
    check.set_defaults(run=_check)
    args = parser.parse_args(argv)
    return args.run(args)


if __name__ == "__main__":
    sys.exit(main())
