"""Pictures: training curves, decision boundaries and benchmark throughput.

matplotlib is an optional extra (``pip install 'jaxnet[plot]'``), imported
only when a function here is called. Every function returns a
``matplotlib.figure.Figure`` and takes an optional ``ax`` to draw into.
"""

import numpy as np


class MissingMatplotlib(ImportError):
    pass


def _pyplot():
    try:
        import matplotlib

        if matplotlib.get_backend().lower() not in ("agg", "pdf", "svg") and not _has_display():
            matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise MissingMatplotlib("jaxnet.plot needs matplotlib: pip install 'jaxnet[plot]'") from None
    return plt


def _has_display():
    import os

    return bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))


def _axes(ax, size=(6, 4.5)):
    if ax is not None:
        return ax.figure, ax
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=size)
    return fig, ax


def loss_curve(losses, ax=None):
    """Training loss against step.  losses: sequence of (step, loss)."""
    fig, ax = _axes(ax)
    steps, values = zip(*losses) if losses else ((), ())
    ax.plot(steps, values, lw=1.2)
    ax.set_xlabel("step")
    ax.set_ylabel("train loss (cross-entropy)")
    ax.set_yscale("log")
    ax.grid(True, which="both", alpha=0.3)
    ax.set_title("training loss")
    return fig


def decision_boundary(params, x, y, ax=None, resolution=200):
    """Predicted class over the plane, with the examples on top.

    params: a 2-input net; x: (N, 2); y: (N,) int labels.
    """
    from jaxnet import _api

    x, y = np.asarray(x), np.asarray(y)
    if x.ndim != 2 or x.shape[1] != 2:
        raise ValueError(f"decision_boundary: x must have shape (N, 2), got {x.shape}")
    fig, ax = _axes(ax, (5.5, 5))
    lo, hi = x.min(0) - 1.0, x.max(0) + 1.0
    gx, gy = np.meshgrid(np.linspace(lo[0], hi[0], resolution), np.linspace(lo[1], hi[1], resolution))
    grid = np.stack([gx.ravel(), gy.ravel()], axis=1).astype(np.float32)
    classes = np.asarray(_api.forward(params, grid)).argmax(-1).reshape(gx.shape)
    n_classes = int(max(classes.max(), y.max())) + 1
    cmap = _pyplot().get_cmap("tab10")
    ax.contourf(gx, gy, classes, levels=np.arange(n_classes + 1) - 0.5, colors=[cmap(i) for i in range(n_classes)], alpha=0.25)
    for c in range(n_classes):
        sel = y == c
        ax.scatter(x[sel, 0], x[sel, 1], s=6, color=cmap(c), label=f"class {c}")
    ax.set_xlabel("x_1")
    ax.set_ylabel("x_2")
    ax.set_title("decision boundary")
    ax.legend(fontsize=8, loc="best")
    return fig


def throughput(rows, environment=None, ax=None):
    """Benchmark throughput against batch size, one panel per task (or into ``ax``).

    rows: :class:`jaxnet.bench.Row` records.
    """
    tasks = [t for t in ("mean", "per_example", "dp") if any(r.task == t for r in rows)]
    if ax is not None:
        fig, axes = ax.figure, [ax] * len(tasks)
    else:
        plt = _pyplot()
        fig, axes = plt.subplots(1, len(tasks), figsize=(6 * len(tasks), 4.5), squeeze=False)
        axes = list(axes[0])
    for ax_, task in zip(axes, tasks):
        for method in dict.fromkeys(r.method for r in rows if r.task == task):
            pts = sorted((r.batch, r.examples_per_s / 1e6) for r in rows if r.task == task and r.method == method)
            ax_.plot(*zip(*pts), "--" if "roofline" in method else "-o", label=method)
        ax_.set_xscale("log", base=2)
        ax_.set_yscale("log")
        ax_.set_xlabel("batch size B")
        ax_.set_ylabel("M examples / s")
        ax_.set_title(f"{task.replace('_', '-')} gradient")
        ax_.grid(True, which="both", alpha=0.3)
        ax_.legend(fontsize=8)
    if environment:
        fig.suptitle(f"jaxnet on {environment['backend']} ({environment['device']}, {environment['cpu_count']} CPUs), jax {environment['jax']}")
    fig.tight_layout()
    return fig


def save(fig, path, dpi=100):
    """Write ``fig`` to ``path`` and close it."""
    fig.savefig(path, dpi=dpi)
    _pyplot().close(fig)
