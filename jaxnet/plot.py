"""Pictures: the network diagram, training curves, decision boundaries and benchmark throughput.

- :func:`network`: the net as a diagram, drawn from live params, or from a
  gradient of them to show where learning signal flows;
- :func:`loss_curve` and :func:`decision_boundary`: a training run;
- :func:`throughput`: a ``jaxnet bench`` run.

matplotlib is an optional extra (``pip install 'jaxnet[plot]'``), imported
only when a function here is called; without it every function raises
:class:`MissingMatplotlib`. Every function returns a
``matplotlib.figure.Figure`` and takes an optional ``ax`` to draw into;
:func:`save` writes a figure to a file.
"""

import numpy as np


class MissingMatplotlib(ImportError):
    """matplotlib is not installed; ``pip install 'jaxnet[plot]'``."""


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



# ------------------------------------------------------------------ network diagram

POSITIVE = "#0072B2"
"""Colour of positive weights (or gradients) in :func:`network`: Okabe-Ito blue."""

NEGATIVE = "#D55E00"
"""Colour of negative weights (or gradients) in :func:`network`: Okabe-Ito vermillion."""

ZERO = "#999999"
"""Colour of zero weights (or gradients) in :func:`network`, drawn thin and dashed."""

ZERO_TOLERANCE = 1e-6
"""In :func:`network`, ``|value| <= ZERO_TOLERANCE * max|value|`` counts as zero."""


def _layers(fn, name, tree, like=None):
    """``tree`` as a list of float64 ``(w, b)`` NumPy pairs; errors name ``name``.

    Without ``like``, ``tree`` must be a chain of layers ``w: (d_in, d_out)``,
    ``b: (d_out,)``. With ``like`` (checked layers), every shape must equal
    ``like``'s.
    """
    expected = "a tuple of jaxnet.Dense(w, b) layers, as returned by jaxnet.init"
    if like is not None:
        expected = "a params-shaped tuple of jaxnet.Dense(w, b), as returned by jaxnet.grad"
    if not isinstance(tree, (tuple, list)) or len(tree) == 0:
        raise ValueError(f"{fn}: {name} must be {expected}; got {type(tree).__name__}")
    if like is not None and len(tree) != len(like):
        raise ValueError(f"{fn}: {name} has {len(tree)} layers but params has {len(like)}; {name} must be {expected}")
    layers = []
    for l, layer in enumerate(tree):
        if not isinstance(layer, (tuple, list)) or len(layer) != 2:
            raise ValueError(f"{fn}: {name}[{l}] must be a jaxnet.Dense(w, b), got {type(layer).__name__}")
        try:
            w, b = (np.asarray(v).astype(np.float64) for v in layer)
        except (TypeError, ValueError) as e:
            raise ValueError(f"{fn}: {name}[{l}] must hold real arrays ({e})") from None
        if like is not None:
            for leaf, value, want in (("w", w, like[l][0].shape), ("b", b, like[l][1].shape)):
                if value.shape == want:
                    continue
                hint = ""
                if value.shape[1:] == want:
                    # per_example_grads adds a leading batch axis; a diagram shows one tree
                    hint = (
                        "; it looks like per-example gradients: pass one example's, "
                        "jax.tree.map(lambda g: g[i], grads), or the mean, jaxnet.grad"
                    )
                raise ValueError(f"{fn}: {name}[{l}].{leaf} has shape {value.shape}, expected {want} as params[{l}].{leaf}{hint}")
        else:
            if w.ndim != 2:
                raise ValueError(f"{fn}: {name}[{l}].w must have shape (d_in, d_out), got {w.shape}")
            if b.shape != (w.shape[1],):
                raise ValueError(f"{fn}: {name}[{l}].b must have shape ({w.shape[1]},) to match w of shape {w.shape}, got {b.shape}")
            if l > 0 and w.shape[0] != layers[-1][0].shape[1]:
                raise ValueError(
                    f"{fn}: layers of {name} do not chain: {name}[{l}].w has d_in {w.shape[0]} "
                    f"but {name}[{l - 1}].w has d_out {layers[-1][0].shape[1]}"
                )
        if not (np.all(np.isfinite(w)) and np.all(np.isfinite(b))):
            raise ValueError(f"{fn}: {name}[{l}] holds NaN or inf; there is nothing to draw")
        layers.append((w, b))
    return layers


def _unit_label(layer, unit, last):
    """The seed's name of unit ``unit`` (0-based) of column ``layer``: x_i, h1_j, h2_k, ..., yhat_s."""
    if layer == 0:
        return f"x_{unit + 1}", f"$x_{{{unit + 1}}}$"
    if layer == last:
        return f"yhat_{unit + 1}", f"$\\hat{{y}}_{{{unit + 1}}}$"
    return f"h{layer}_{unit + 1}", f"$h^{{{layer}}}_{{{unit + 1}}}$"


def _tint(value, scale):
    """Node face colour: white for 0, towards the sign's colour as |value| nears ``scale``."""
    from matplotlib.colors import to_rgb

    if abs(value) <= ZERO_TOLERANCE * scale:
        return (1.0, 1.0, 1.0)
    # at most 60% of the full colour, so the black label inside stays readable
    t = 0.15 + 0.45 * min(abs(value) / scale, 1.0)
    colour = np.array(to_rgb(POSITIVE if value > 0 else NEGATIVE))
    return tuple((1 - t) * np.ones(3) + t * colour)


def network(params, grads=None, ax=None, *, max_labels=12, title=None):
    """The net as a diagram: one column of units per layer, one edge per weight.

    Columns are the inputs ``x_i``, the hidden layers ``h1_j``, ``h2_k``, ...
    and the outputs ``yhat_s``, numbered from 1 and top to bottom as in the
    seed. Edges show the weights (or, with ``grads``, the gradient):

    - colour is the sign: blue (``POSITIVE``, Okabe-Ito #0072B2) for > 0,
      vermillion (``NEGATIVE``, #D55E00) for < 0, a colour pair that stays
      apart under the common colour-vision deficiencies;
    - width is proportional to the magnitude, relative to the largest
      magnitude in the drawing (from 0.4 to 6 points, less for wide nets);
    - a zero (``|value| <= ZERO_TOLERANCE * max``) is thin, dashed and grey
      (``ZERO``), so with ``grads`` a dead ReLU unit, whose every incoming and
      outgoing gradient is 0, shows as a fan of grey dashes, and a vanishing
      path as hairlines.

    Units past the inputs are filled by their bias (or its gradient), tinted
    towards the sign's colour by magnitude relative to the largest in the
    drawing, white for 0, and labelled ``b=...`` below (``g=...``, the
    bias's gradient, with ``grads``). With many edges, all edges fade (alpha
    ``sqrt(60 / n_edges)``, at least 0.15) and thin; layers wider than
    ``max_labels`` units, and units too small for text, lose their labels.

    The edges of layer ``l`` (1-based) are one
    ``matplotlib.collections.LineCollection`` with gid ``"edges-layer-l"``,
    whose segment ``i * d_out + j`` is ``params[l - 1].w[i, j]``, drawn from
    column ``l - 1`` to column ``l``. The units of column ``l`` (0-based) are
    one scatter collection with gid ``"units-layer-l"``; each label is a text
    whose gid is its name (``"x_1"``, ``"h1_2"``, ``"yhat_3"``).

    Args:
      params: tuple of ``Dense(w: (d_in, d_out), b: (d_out,))``, any widths.
      grads: ``None``, or a params-shaped tree to draw in place of ``params``:
        a mean gradient (``jaxnet.grad``) or one example's gradient (take
        example ``i`` of ``each = jaxnet.per_example_grads(...)`` with
        ``jax.tree.map(lambda g: g[i], each)``). jaxnet's gradients are
        those of the loss (cross-entropy): descent moves against them.
      ax: a matplotlib Axes to draw into; default a new figure, 6 x 4 in
        for the seed net, larger for deep or wide nets.
      max_labels: widest layer whose units are still labelled.
      title: the axes title; default says what is drawn.

    Returns:
      The ``matplotlib.figure.Figure``.

    Raises:
      MissingMatplotlib: matplotlib is not installed.
      ValueError: ``params`` is not a chain of layers, ``grads`` does not
        match it, or either holds NaN or inf.
    """
    layers = _layers("network", "params", params)
    shown = layers if grads is None else _layers("network", "grads", grads, like=layers)
    sizes = [layers[0][0].shape[0]] + [w.shape[1] for w, _ in layers]
    last, widest = len(layers), max(sizes)
    own_figure = ax is None
    fig, ax = _axes(ax, (max(6.0, 1.5 * len(sizes)), min(12.0, max(4.0, 0.25 * widest))))
    if own_figure:
        fig.subplots_adjust(left=0.02, right=0.98, bottom=0.02, top=0.92)
    from matplotlib.collections import LineCollection
    from matplotlib.colors import to_rgba
    from matplotlib.lines import Line2D

    ys = [((n - 1) / 2 - np.arange(n)) for n in sizes]  # unit 1 on top, every column centred on 0
    w_scale = max(float(np.abs(w).max()) for w, _ in shown) or 1.0
    b_scale = max(float(np.abs(b).max()) for _, b in shown) or 1.0
    n_edges = sum(w.size for w, _ in shown)
    # overlapping edges of a wide net merge into a blot; fading keeps the structure visible
    alpha = float(np.clip(np.sqrt(60.0 / n_edges), 0.15, 1.0))
    lw_min, lw_max = 0.4, max(1.5, 6.0 * alpha)
    for l, (w, _) in enumerate(shown):
        d_in, d_out = w.shape
        segments = [[(l, ys[l][i]), (l + 1, ys[l + 1][j])] for i in range(d_in) for j in range(d_out)]
        values = w.ravel()
        zero = np.abs(values) <= ZERO_TOLERANCE * w_scale
        widths = lw_min + (lw_max - lw_min) * np.abs(values) / w_scale
        colours = [
            to_rgba(ZERO, 0.6 * alpha) if z else to_rgba(POSITIVE if v > 0 else NEGATIVE, alpha)
            for v, z in zip(values, zero)
        ]
        styles = ["--" if z else "-" for z in zero]
        edges = LineCollection(segments, colors=colours, linewidths=widths, linestyles=styles, zorder=1)
        edges.set_gid(f"edges-layer-{l + 1}")
        edges.set_label(f"edges-layer-{l + 1}")
        edges.set_capstyle("round")
        ax.add_collection(edges)

    # marker size is in points: fit the units to the axes' size in points
    box = ax.get_position()
    height_pt = fig.get_figheight() * box.height * 72
    width_pt = fig.get_figwidth() * box.width * 72
    diameter = float(np.clip(min(0.55 * height_pt / (widest + 1.5), 0.3 * width_pt / len(sizes)), 3.0, 32.0))
    font = float(np.clip(0.4 * diameter, 5.0, 11.0))
    # below ~14 pt a label no longer fits inside its unit
    labelled = diameter >= 14.0
    for l, n in enumerate(sizes):
        if l == 0:
            faces = [(0.93, 0.93, 0.93)] * n
        else:
            faces = [_tint(v, b_scale) for v in shown[l - 1][1]]
        units = ax.scatter(np.full(n, l), ys[l], s=diameter**2, c=faces, edgecolors="#333333", linewidths=0.8, zorder=3)
        units.set_gid(f"units-layer-{l}")
        if n > max_labels or not labelled:
            continue
        for i in range(n):
            name, text = _unit_label(l, i, last)
            ax.text(l, ys[l][i], text, ha="center", va="center", fontsize=font, zorder=4, gid=name)
            if l > 0:
                b = shown[l - 1][1][i]
                note = f"b={b:.2f}" if grads is None else f"g={b:.2g}"
                ax.annotate(
                    note, (l, ys[l][i]), xytext=(0, -diameter / 2 - 1), textcoords="offset points",
                    ha="center", va="top", fontsize=0.75 * font, color="#333333", zorder=4,
                )
    captions = ["inputs"] + [f"hidden {l}" for l in range(1, last)] + ["outputs"]
    for l, caption in enumerate(captions):
        ax.text(l, -widest / 2 - 0.35, f"{caption} ({sizes[l]})", ha="center", va="top", fontsize=9, color="#333333")

    what = "w" if grads is None else "g"
    handles = [
        Line2D([], [], color=POSITIVE, lw=3, label=f"${what} > 0$"),
        Line2D([], [], color=NEGATIVE, lw=3, label=f"${what} < 0$"),
        Line2D([], [], color=ZERO, lw=1, ls="--", label=f"${what} = 0$"),
    ]
    ax.legend(handles=handles, loc="upper center", bbox_to_anchor=(0.5, 1.0), ncol=3, frameon=False, fontsize=8)
    ax.set_xlim(-0.5, last + 0.5)
    # the legend sits in the top tenth of the axes, above the widest column
    low, high = -widest / 2 - 0.9, widest / 2 + 0.4
    ax.set_ylim(low, high + (high - low) / 9)
    ax.set_axis_off()
    if title is None:
        arch = "-".join(map(str, sizes))
        title = f"net {arch}: weights, width ∝ |w|" if grads is None else f"net {arch}: loss gradient g, width ∝ |g|"
    ax.set_title(title, fontsize=10)
    return fig


def save(fig, path, dpi=100):
    """Write ``fig`` to ``path`` and close it."""
    fig.savefig(path, dpi=dpi)
    _pyplot().close(fig)
