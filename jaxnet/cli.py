"""The ``jaxnet`` command: ``check``, ``bench``, ``train`` and ``draw``."""

import argparse
import os
import sys


def _check(args):
    import jax

    from jaxnet import selfcheck

    if args.dtype == "float64":
        jax.config.update("jax_enable_x64", True)
    from jaxnet import _backend, _native

    backends = ["xla"]
    if jax.default_backend() == "cpu" and _native.available():
        backends.insert(0, "native")
    passed = True
    for name in backends:
        with _backend.backend(name):
            result = selfcheck.run(jax.random.key(args.seed), args.batch, args.dtype)
        passed &= result.passed
        print(f"backend:       {name}")
        print(f"device:        {result.device} ({jax.default_backend()})")
        print(f"batch size:    {result.batch}")
        print(f"dtype:         {result.dtype}")
        print(f"max abs error: {result.max_abs_err:.3e}")
        print(f"max rel error: {result.max_rel_err:.3e}  (tolerance {result.tolerance:.0e}, relative to each leaf's largest entry)")
        print("PASS" if result.passed else "FAIL")
    return 0 if passed else 1


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
    dp = tuple(2**p for p in args.dp_powers)
    env = bench.environment()
    env["keep_freed_memory"] = bench.keep_freed_memory() if not args.fresh_pages else False
    print(f"jax {env['jax']}, jaxlib {env['jaxlib']}, backend {env['backend']}, device {env['device']} x{env['device_count']}, {env['cpu_count']} CPUs ({env['processor']}), freed memory {'kept' if env['keep_freed_memory'] else 'returned to the OS'}")
    step, close = _progress(len(mean) + len(each) + len(dp))
    try:
        rows = bench.run(jax.random.key(args.seed), mean, each, dp, repeats=args.repeats, numpy_baseline=not args.no_numpy, torch_baseline=not args.no_torch, progress=step)
    finally:
        close()
    if bench._torch() is None and not args.no_torch:
        print("note: torch is not importable; skipped the torch rows", file=sys.stderr)
    overhead = bench.eager_overhead(jax.random.key(args.seed))
    print(bench.table(rows))
    print("\njaxnet.grad per call (seed net, median):")
    for batch, times in overhead.items():
        print(f"  B=2^{batch.bit_length() - 1}: " + ", ".join(f"{name} {t * 1e6:.0f} us" for name, t in times.items()))
    os.makedirs(args.out, exist_ok=True)
    json_path = os.path.join(args.out, "bench.json")
    bench.write_json(json_path, rows, {"call_overhead_s": {str(b): t for b, t in overhead.items()}, "keep_freed_memory": env["keep_freed_memory"]})
    print(f"wrote {json_path}")
    png_path = os.path.join(args.out, "bench.png")
    if bench.plot(png_path, rows):
        print(f"wrote {png_path}")
    return 0


def _train(args):
    import json

    from jaxnet import plot, train

    if args.dp_noise and args.dp_clip is None:
        print("jaxnet train: --dp-noise needs --dp-clip", file=sys.stderr)
        return 2
    if args.devices > 1:
        import jax

        # On CPU, split the host into N devices; must happen before JAX starts its backend.
        jax.config.update("jax_num_cpu_devices", args.devices)
    config = train.RunConfig(
        steps=args.steps, batch_size=args.batch_size, optimizer=args.optimizer, lr=args.lr, seed=args.seed,
        dp_clip=args.dp_clip, dp_noise=args.dp_noise, devices=args.devices,
    )
    os.makedirs(args.out, exist_ok=True)
    checkpoint = os.path.join(args.out, "checkpoint.npz")
    try:
        from tqdm import tqdm
    except ImportError:
        tqdm = None
    bar = tqdm(total=config.steps, desc="jaxnet train", unit="step", disable=None, file=sys.stderr) if tqdm else None
    done = [0]

    def progress(step, loss):
        if bar is not None:
            bar.update(step - done[0])
            bar.set_postfix(loss=f"{loss:.4f}")
        done[0] = step

    try:
        result = train.run(config, checkpoint=checkpoint, resume=args.resume, progress=progress)
    except (train.CheckpointError, ValueError) as e:
        print(f"jaxnet train: {e}", file=sys.stderr)
        return 1
    finally:
        if bar is not None:
            bar.close()
    metrics = dict(result.metrics)
    if config.dp_clip is not None:
        eps = train.epsilon(config.steps, config.batch_size, result.data.x_train.shape[0], config.dp_noise, args.dp_delta)
        metrics["dp"] = {"l2_norm_clip": config.dp_clip, "noise_multiplier": config.dp_noise, "delta": args.dp_delta, "epsilon": eps}
        if eps is None:
            print("note: install dp-accounting (pip install 'jaxnet[dp]') to report epsilon", file=sys.stderr)
        else:
            print(f"DP-SGD: epsilon = {eps:.3g} at delta = {args.dp_delta:g}")
    with open(os.path.join(args.out, "metrics.json"), "w") as f:
        json.dump(metrics, f, indent=2)
    try:
        plot.save(plot.loss_curve(result.losses), os.path.join(args.out, "loss_curve.png"))
        plot.save(plot.decision_boundary(result.params, result.data.x_test, result.data.y_test), os.path.join(args.out, "decision_boundary.png"))
    except plot.MissingMatplotlib:
        print("note: matplotlib is not installed, skipped the plots (pip install 'jaxnet[plot]')", file=sys.stderr)
    print(f"held-out accuracy: {metrics['test_accuracy']:.4f}  (test loss {metrics['test_loss']:.4f}, {config.steps} steps)")
    print(f"wrote {args.out}/: checkpoint.npz, metrics.json, loss_curve.png, decision_boundary.png")
    return 0


def _draw(args):
    import jax

    import jaxnet
    from jaxnet import plot, train

    try:
        if args.checkpoint:
            params, _ = train.load_params(args.checkpoint)
            source = args.checkpoint
        else:
            params = jaxnet.init(jax.random.key(args.seed), jaxnet.SEED_SIZES)
            source = f"init, seed {args.seed}"
        grads = None
        if args.grads:
            # fold_in: the batch must not reuse the key that drew the weights
            data = train.blobs(jax.random.fold_in(jax.random.key(args.seed), 1), args.batch, test_fraction=0.0)
            grads = jaxnet.grad(params, data.x_train, data.y_train)
        fig = plot.network(params, grads)
        folder = os.path.dirname(os.path.abspath(args.out))
        os.makedirs(folder, exist_ok=True)
        plot.save(fig, args.out, dpi=args.dpi)
    except (plot.MissingMatplotlib, train.CheckpointError, ValueError, OSError) as e:
        print(f"jaxnet draw: {e}", file=sys.stderr)
        return 1
    what = f"mean gradient on {args.batch} blob examples" if args.grads else "weights"
    print(f"wrote {args.out} ({what}; params from {source})")
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
    bench.add_argument("--mean-powers", type=int, nargs="+", default=[10, 14, 17, 20, 22], metavar="P", help="mean-gradient batch sizes 2^P (default 10 14 17 20 22)")
    bench.add_argument("--per-example-powers", type=int, nargs="*", default=[10, 14, 17, 20], metavar="P", help="per-example batch sizes 2^P (default 10 14 17 20)")
    bench.add_argument("--dp-powers", type=int, nargs="*", default=[14, 20], metavar="P", help="DP-SGD clipping batch sizes 2^P (default 14 20)")
    bench.add_argument("--repeats", type=int, default=7, help="timed calls per method and batch size; the median is reported")
    bench.add_argument("--out", default="bench-out", help="folder for bench.json and bench.png (default bench-out)")
    bench.add_argument("--no-numpy", action="store_true", help="skip the NumPy baseline")
    bench.add_argument("--no-torch", action="store_true", help="skip the torch baselines even if torch is importable")
    bench.add_argument("--seed", type=int, default=0)
    bench.add_argument("--fresh-pages", action="store_true", help="leave glibc's malloc at its defaults, so large outputs may get fresh pages (page faults) on every call; see bench.keep_freed_memory")
    bench.set_defaults(run=_bench)

    from jaxnet.train import OPTIMIZERS, RunConfig

    defaults = RunConfig()
    train = sub.add_parser("train", help="train the seed net on three 2-D Gaussian blobs with optax")
    train.add_argument("--steps", type=int, default=defaults.steps, help=f"total optimiser steps (default {defaults.steps})")
    train.add_argument("--batch-size", type=int, default=defaults.batch_size, help=f"examples per step (default {defaults.batch_size})")
    train.add_argument("--optimizer", choices=sorted(OPTIMIZERS), default=defaults.optimizer)
    train.add_argument("--lr", type=float, default=defaults.lr, help=f"learning rate (default {defaults.lr})")
    train.add_argument("--seed", type=int, default=defaults.seed, help="seeds data, initialisation, batches and noise")
    train.add_argument("--out", default="runs/demo", help="output folder (default runs/demo)")
    train.add_argument("--resume", action="store_true", help="continue from OUT/checkpoint.npz up to --steps")
    train.add_argument("--dp-clip", type=float, default=None, help="DP-SGD: clip each example's gradient to this L2 norm")
    train.add_argument("--dp-noise", type=float, default=0.0, help="DP-SGD: noise multiplier (std = clip * noise / batch)")
    train.add_argument("--devices", type=int, default=1, help="shard each batch over N devices (on CPU, splits the host into N)")
    train.add_argument("--dp-delta", type=float, default=1e-5, help="DP-SGD: delta for the reported epsilon")
    train.set_defaults(run=_train)

    draw = sub.add_parser("draw", help="draw the net as a diagram: weights, or their gradient with --grads (needs matplotlib)")
    draw.add_argument("--out", default="network.png", help="image file to write; its suffix picks the format (default network.png)")
    draw.add_argument("--checkpoint", default=None, metavar="PATH", help="draw the params of a checkpoint written by 'jaxnet train' (default: a fresh init)")
    draw.add_argument("--seed", type=int, default=0, help="seeds the fresh init and the --grads batch (default 0)")
    draw.add_argument("--grads", action="store_true", help="draw the mean loss gradient on a batch of blob examples instead of the weights")
    draw.add_argument("--batch", type=int, default=512, help="examples in the --grads batch (default 512)")
    draw.add_argument("--dpi", type=int, default=100, help="resolution of a raster image (default 100)")
    draw.set_defaults(run=_draw)
    args = parser.parse_args(argv)
    return args.run(args)


if __name__ == "__main__":
    sys.exit(main())
