"""Throughput harness for the batched gradient kernels (``jaxnet bench``).

Every row of one run sees the same data. For each batch size the methods are
interleaved, repeat by repeat, so that machine noise hits them alike, and the
median time is reported. Compilation is done ahead of time (``lower`` then
``compile``), timed separately and never counted; every timed call ends in
``block_until_ready``. ``jaxnet bench`` first calls :func:`keep_freed_memory`,
so that every call's outputs land on warm pages.

Rows, for the mean gradient:
  - ``jaxnet, native``: ``jax.jit(jaxnet.grad)`` under ``jaxnet.backend("native")``,
    batch-major ``x`` as users pass it (on CPU, when the native kernels are built);
  - ``jaxnet, xla``: the same under ``jaxnet.backend("xla")``, the pure-JAX kernels;
  - ``jaxnet, xla + CPU options``: the pure-JAX kernels under
    ``jax.jit(..., compiler_options=jaxnet.CPU_COMPILER_OPTIONS)`` (on CPU);
  - ``jaxnet, un-jitted``: ``jaxnet.grad`` called as is under the default
    backend, validation included;
  - ``jax.grad``: ``jax.jit(jax.grad)`` of a plain reference loss (the baseline);
  - ``numpy``: the delta recursion written by hand in NumPy;
  - ``torch``: torch autograd, only if torch is already importable;
  - ``read roofline``: a jitted kernel that only reads x and y.
for DP-SGD clipping (``dp``; "× autodiff" is then the ratio to the optax path):
  - ``jaxnet.clipped_mean_grad`` (fused): native, xla, and xla with the CPU options;
  - ``per_example_grads + optax aggregate``: optax's path, no noise;
and for per-example gradients the same four ``jaxnet`` rows for
``jaxnet.per_example_grads``, the pure-JAX kernels with ``chunk_size``, and:
  - ``jax.vmap(jax.grad)``: the baseline;
  - ``torch.func``: ``vmap(grad)``, only if torch is importable;
  - ``write roofline``: a jitted kernel that only writes the per-example
    output bytes (every gradient leaf with a leading batch axis).
"""

import ctypes
import functools
import json
import os
import platform
import statistics
import sys
import time
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxnet import _api, _backend, _dp, _kernels, _native, _params

MEAN_BATCHES = (2**10, 2**14, 2**17, 2**20, 2**22)
PER_EXAMPLE_BATCHES = (2**10, 2**14, 2**17, 2**20)
DP_BATCHES = (2**14, 2**20)
PER_EXAMPLE_CHUNK = 2**16
DP_CLIP = 1.0


class Row(NamedTuple):
    task: str  # "mean" or "per_example"
    method: str
    batch: int
    seconds: float  # median of the timed calls
    examples_per_s: float
    compile_s: float | None
    flops: float | None  # XLA cost_analysis, when XLA reports it
    bytes_accessed: float | None
    temp_bytes: int | None  # XLA memory_analysis


# ---------------------------------------------------------------- baselines


def _reference_loss(params, x, y):
    h = x
    for layer in params[:-1]:
        h = jax.nn.relu(h @ layer.w + layer.b[None, :])
    logits = h @ params[-1].w + params[-1].b[None, :]
    return optax.losses.softmax_cross_entropy_with_integer_labels(logits, y)


def _autodiff_mean(params, x, y):
    return jax.grad(lambda p: jnp.mean(_reference_loss(p, x, y)))(params)


def _autodiff_per_example(params, x, y):
    one = lambda p, xi, yi: _reference_loss(p, xi[None], yi[None])[0]
    return jax.vmap(jax.grad(one), in_axes=(None, 0, 0))(params, x, y)


def _optax_dp(params, x, y):
    # optax's DP-SGD path: per-example gradients, then the aggregate (no noise).
    tx = optax.contrib.differentially_private_aggregate(DP_CLIP, 0.0, key=jax.random.key(0))
    return tx.update(_api.per_example_grads(params, x, y), tx.init(params))[0]


def _fused_dp(params, x, y):
    return _dp.clipped_mean_grad(params, x, y, DP_CLIP)[0]


def _read_roofline(params, x, y):
    # Reads every input byte once; a contiguous 1-D sum is the fastest read XLA:CPU emits.
    return jnp.sum(x.reshape(-1)) + jnp.sum(y).astype(x.dtype)


def _write_roofline(params, x, y):
    # Writes per-example outputs shaped like per_example_grads, from one input column.
    col = x[:, 0]
    shaped = lambda shape: jnp.broadcast_to(col.reshape((-1,) + (1,) * len(shape)), (x.shape[0],) + shape)
    return tuple(_params.Dense(shaped(l.w.shape), shaped(l.b.shape)) for l in params)


def _numpy_mean(params, x, y):
    """The delta recursion by hand in NumPy, float32."""
    hs, pres, h = [x], [], x
    for w, b in params[:-1]:
        a = h @ w + b
        h = np.maximum(a, 0)
        pres.append(a)
        hs.append(h)
    z = h @ params[-1][0] + params[-1][1]
    z = np.exp(z - z.max(axis=1, keepdims=True))
    delta = z / z.sum(axis=1, keepdims=True)
    delta[np.arange(len(y)), y] -= 1
    delta /= len(y)
    grads = []
    for l in reversed(range(len(params))):
        w = params[l][0]
        grads.append((hs[l].T @ delta, delta.sum(0)))
        if l:
            delta = (delta @ w.T) * (pres[l - 1] > 0)
    return grads[::-1]


def _torch():
    try:
        import torch  # noqa: F401
    except ImportError:
        return None
    return torch


def _torch_methods(torch, params, x, y):
    tp = [(torch.tensor(np.asarray(w), requires_grad=True), torch.tensor(np.asarray(b), requires_grad=True)) for w, b in params]
    tx, ty = torch.from_numpy(np.asarray(x)), torch.from_numpy(np.asarray(y)).long()

    def loss(p, xb, yb):
        h = xb
        for w, b in p[:-1]:
            h = torch.relu(h @ w + b)
        return torch.nn.functional.cross_entropy(h @ p[-1][0] + p[-1][1], yb)

    def mean():
        return torch.autograd.grad(loss(tp, tx, ty), [t for layer in tp for t in layer])

    flat = {f"{l}.{n}": t.detach() for l, layer in enumerate(tp) for n, t in zip("wb", layer)}

    def one(p, xi, yi):
        layers = [(p[f"{l}.w"], p[f"{l}.b"]) for l in range(len(tp))]
        return loss(layers, xi[None], yi[None])

    per_example = torch.func.vmap(torch.func.grad(one), in_dims=(None, 0, 0))
    return mean, lambda: per_example(flat, tx, ty)


# ---------------------------------------------------------------- timing


def keep_freed_memory():
    """Make glibc keep freed memory in the process, so that every call reuses warm pages.

    Per-example rows write 104 bytes per example into new output arrays, so
    their speed is set by where the allocator puts those arrays. With glibc's
    defaults, an array above its adaptive mmap threshold (at most 32 MiB) gets
    fresh pages from the kernel on every call, and each first touch is a page
    fault; below it, freed memory is reused, unless a free trims it back to
    the kernel. Which one a call gets depends on what the calls before it
    allocated, so interleaved rows swung by 2-4x between runs (the write
    roofline measured 27-112 M/s at 2^20 on 2 cores). Raising both
    thresholds puts every call in the steady state of a training loop, which
    reuses the previous step's memory. Returns whether it took effect (False
    off glibc). Call it once, before timing.
    """
    try:
        libc = ctypes.CDLL("libc.so.6")
        m_trim_threshold, m_mmap_threshold = -1, -3  # glibc's mallopt parameter numbers
        return bool(libc.mallopt(m_mmap_threshold, 2**30)) and bool(libc.mallopt(m_trim_threshold, 2**31 - 1))
    except (OSError, AttributeError):
        return False


def _xla_costs(compiled):
    flops = bytes_accessed = temp = None
    try:
        cost = compiled.cost_analysis()
        if isinstance(cost, (list, tuple)):
            cost = cost[0] if cost else None
        if cost:
            flops, bytes_accessed = cost.get("flops"), cost.get("bytes accessed")
    except Exception:  # cost analysis is optional in XLA; a missing one is not an error
        pass
    try:
        temp = compiled.memory_analysis().temp_size_in_bytes
    except Exception:
        pass
    return flops, bytes_accessed, temp


class _Method(NamedTuple):
    name: str
    call: object  # () -> result, blocks until ready
    compile_s: float | None
    costs: tuple


def _jax_method(name, fn, args, compiler_options=None, backend=None):
    """``jax.jit(fn)``, compiled ahead of time under ``jaxnet.backend(backend)`` if given."""
    start = time.perf_counter()
    with _backend.backend(backend or _backend.get_backend()):
        compiled = jax.jit(fn, compiler_options=compiler_options).lower(*args).compile()
    compile_s = time.perf_counter() - start
    call = lambda: jax.block_until_ready(compiled(*args))
    return _Method(name, call, compile_s, _xla_costs(compiled))


def _own_jit_method(name, fn, args):
    """A public function called as is: it validates, then runs its own compiled kernel."""
    start = time.perf_counter()
    jax.block_until_ready(fn(*args))
    compile_s = time.perf_counter() - start
    return _Method(name, lambda: jax.block_until_ready(fn(*args)), compile_s, (None,) * 3)


def _time_interleaved(methods, repeats):
    for m in methods:  # warm-up: first call after compilation pays allocation and caching costs
        m.call()
    times = {m.name: [] for m in methods}
    for _ in range(repeats):
        for m in methods:
            start = time.perf_counter()
            m.call()
            times[m.name].append(time.perf_counter() - start)
    return {name: statistics.median(ts) for name, ts in times.items()}


def _repeats_for(batch, base):
    return base if batch <= 2**20 else max(3, base // 2)


def run(
    key,
    mean_batches=MEAN_BATCHES,
    per_example_batches=PER_EXAMPLE_BATCHES,
    dp_batches=DP_BATCHES,
    sizes=_params.SEED_SIZES,
    repeats=7,
    numpy_baseline=True,
    torch_baseline=True,
    progress=None,
):
    """Run the grid; return a list of :class:`Row`. ``progress(str)`` is called per step."""
    torch = _torch() if torch_baseline else None
    k_params, k_data = jax.random.split(key)
    params = _params.init(k_params, sizes, jnp.float32)
    rows = []
    tasks = [("mean", b) for b in mean_batches] + [("per_example", b) for b in per_example_batches]
    tasks += [("dp", b) for b in dp_batches]
    for task, batch in tasks:
        if progress:
            progress(f"{task} B=2^{batch.bit_length() - 1}")
        kx, ky = jax.random.split(jax.random.fold_in(k_data, batch))
        x = jax.random.normal(kx, (batch, sizes[0]), jnp.float32)
        y = jax.random.randint(ky, (batch,), 0, sizes[-1], jnp.int32)
        args = (params, x, y)
        cpu_options = _kernels.CPU_COMPILER_OPTIONS if jax.default_backend() == "cpu" else None
        native = jax.default_backend() == "cpu" and _native.available()

        def backends(name, fn):
            rows = [_jax_method(f"{name}, native", fn, args, backend="native")] if native else []
            return rows + [
                _jax_method(f"{name}, xla", fn, args, backend="xla"),
                _jax_method(f"{name}, xla + CPU options", fn, args, cpu_options, backend="xla"),
            ]

        if task == "mean":
            methods = backends("jaxnet", _api.grad) + [
                _own_jit_method("jaxnet, un-jitted", _api.grad, args),
                _jax_method("jax.grad", _autodiff_mean, args),
                _jax_method("read roofline", _read_roofline, args),
            ]
            if numpy_baseline:
                np_args = ([(np.asarray(l.w), np.asarray(l.b)) for l in params], np.asarray(x), np.asarray(y))
                methods.append(_Method("numpy", lambda a=np_args: _numpy_mean(*a), None, (None,) * 3))
        elif task == "dp":
            methods = backends("jaxnet.clipped_mean_grad", _fused_dp) + [
                _jax_method("per_example_grads + optax aggregate", _optax_dp, args),
                _jax_method("read roofline", _read_roofline, args),
            ]
        else:
            chunked = functools.partial(_api.per_example_grads, chunk_size=PER_EXAMPLE_CHUNK)
            methods = backends("jaxnet", _api.per_example_grads) + [
                _own_jit_method("jaxnet, un-jitted", _api.per_example_grads, args),
                _jax_method(f"jaxnet, xla, chunk_size=2^{PER_EXAMPLE_CHUNK.bit_length() - 1}", chunked, args, backend="xla"),
                _jax_method("jax.vmap(jax.grad)", _autodiff_per_example, args),
                _jax_method("write roofline", _write_roofline, args),
            ]
        if torch is not None and task != "dp":
            mean_fn, per_example_fn = _torch_methods(torch, params, x, y)
            methods.append(_Method("torch" if task == "mean" else "torch.func", mean_fn if task == "mean" else per_example_fn, None, (None,) * 3))
        medians = _time_interleaved(methods, _repeats_for(batch, repeats))
        for m in methods:
            t = medians[m.name]
            rows.append(Row(task, m.name, batch, t, batch / t, m.compile_s, *m.costs))
    return rows


# ---------------------------------------------------------------- reporting

BASELINE = {"mean": "jax.grad", "per_example": "jax.vmap(jax.grad)", "dp": "per_example_grads + optax aggregate"}
ROOFLINE = {"mean": "read roofline", "per_example": "write roofline", "dp": "read roofline"}


def _version(package):
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(package)
    except PackageNotFoundError:
        return None


def _cpu_model():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def environment():
    return {
        "jax": jax.__version__,
        "jaxlib": _version("jaxlib"),
        "optax": _version("optax"),
        "backend": jax.default_backend(),
        "device": str(jax.devices()[0].device_kind),
        "device_count": jax.device_count(),
        "cpu_count": os.cpu_count(),
        "processor": _cpu_model(),
        "python": platform.python_version(),
        "jaxnet_native": _native.available(),
        "jaxnet_backend": _backend.get_backend(),
    }


def _lookup(rows):
    return {(r.task, r.method, r.batch): r for r in rows}


def table(rows):
    """Markdown table: examples/s, ratio to the autodiff baseline, fraction of the roofline."""
    by = _lookup(rows)
    lines = [
        "| task | method | B | M examples/s | × baseline | of roofline | compile s | XLA flops | XLA bytes | temp MiB |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    fmt = lambda v, f: "–" if v is None else format(v, f)
    for r in rows:
        base = by.get((r.task, BASELINE[r.task], r.batch))
        roof = by.get((r.task, ROOFLINE[r.task], r.batch))
        ratio = r.examples_per_s / base.examples_per_s if base else None
        frac = r.examples_per_s / roof.examples_per_s if roof else None
        temp = r.temp_bytes / 2**20 if r.temp_bytes is not None else None
        lines.append(
            f"| {r.task} | {r.method} | 2^{r.batch.bit_length() - 1} | {r.examples_per_s / 1e6:.1f} | "
            f"{fmt(ratio, '.2f')} | {fmt(frac, '.0%')} | {fmt(r.compile_s, '.2f')} | {fmt(r.flops, '.3g')} | "
            f"{fmt(r.bytes_accessed, '.3g')} | {fmt(temp, '.1f')} |"
        )
    return "\n".join(lines)


def eager_overhead(key, batches=(2**10, 2**20), repeats=21):
    """Seconds per call of ``jaxnet.grad`` un-jitted (with and without value checks) and jitted."""
    from jaxnet import _checks

    params = _params.init(key, _params.SEED_SIZES)
    jitted = jax.jit(_api.grad)
    out = {}
    for batch in batches:
        x = jax.random.normal(jax.random.fold_in(key, batch), (batch, 2), jnp.float32)
        y = jax.random.randint(jax.random.fold_in(key, batch + 1), (batch,), 0, 3, jnp.int32)

        def unchecked(*args):
            with _checks.value_checks(False):
                return _api.grad(*args)

        methods = [
            _Method("un-jitted, value checks on", lambda: jax.block_until_ready(_api.grad(params, x, y)), None, ()),
            _Method("un-jitted, value checks off", lambda: jax.block_until_ready(unchecked(params, x, y)), None, ()),
            _Method("jax.jit", lambda: jax.block_until_ready(jitted(params, x, y)), None, ()),
        ]
        out[batch] = _time_interleaved(methods, repeats)
    return out


def write_json(path, rows, extra=None):
    payload = {"environment": environment(), "rows": [r._asdict() for r in rows], **(extra or {})}
    with open(path, "w") as f:
        json.dump(payload, f, indent=2)


def plot(path, rows):
    """PNG of throughput against batch size. Returns False (with a note) without matplotlib."""
    from jaxnet import plot as _plot

    try:
        _plot.save(_plot.throughput(rows, environment()), path)
    except _plot.MissingMatplotlib as e:
        print(f"jaxnet bench: skipping the plot; {e}", file=sys.stderr)
        return False
    return True
