"""Pictures: every plot renders under Agg, and the network diagram matches its params.

The diagram is checked on its matplotlib objects (segments, colours, widths),
never on pixels.
"""

import sys

import pytest

matplotlib = pytest.importorskip("matplotlib")
matplotlib.use("Agg")

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.colors import to_rgb  # noqa: E402

import jaxnet  # noqa: E402
from jaxnet import bench, cli, plot, train  # noqa: E402

OTHER_SIZES = (2, 5, 4, 3)
PNG = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


def _params(sizes, seed=0):
    return jaxnet.init(jax.random.key(seed), sizes)


def _batch(n=128, seed=1):
    data = train.blobs(jax.random.key(seed), n, test_fraction=0.0)
    return data.x_train, data.y_train


def _edges(fig):
    """The diagram's LineCollections, layer 1 first."""
    found = {c.get_gid(): c for c in fig.axes[0].collections if str(c.get_gid()).startswith("edges-layer-")}
    return [found[f"edges-layer-{l}"] for l in range(1, len(found) + 1)]


def _units(fig, column):
    (units,) = [c for c in fig.axes[0].collections if c.get_gid() == f"units-layer-{column}"]
    return units


def _labels(fig):
    return {t.get_gid(): t.get_text() for t in fig.axes[0].texts if t.get_gid()}


def _is_png(path):
    with open(path, "rb") as f:
        return f.read(8) == PNG


def _assert_drawn(fig, values):
    """Edges of ``fig`` show ``values`` (params-shaped): one per weight, colour by sign, width by magnitude."""
    edges = _edges(fig)
    assert len(edges) == len(values)
    widths, magnitudes = [], []
    for l, (collection, layer) in enumerate(zip(edges, values)):
        w = np.asarray(layer.w, np.float64)
        flat = w.ravel()
        segments = collection.get_segments()
        assert len(segments) == w.size
        # segment i * d_out + j joins unit i of column l to unit j of column l + 1
        start, end = _units(fig, l).get_offsets(), _units(fig, l + 1).get_offsets()
        for k, segment in enumerate(segments):
            i, j = divmod(k, w.shape[1])
            np.testing.assert_allclose(segment, [start[i], end[j]])
        colours = collection.get_colors()[:, :3]
        for value, colour in zip(flat, colours):
            want = plot.ZERO if value == 0 else plot.POSITIVE if value > 0 else plot.NEGATIVE
            np.testing.assert_allclose(colour, to_rgb(want))
        widths.append(np.broadcast_to(collection.get_linewidths(), flat.shape))
        magnitudes.append(np.abs(flat))
    widths, magnitudes = np.concatenate(widths), np.concatenate(magnitudes)
    # one scale for the whole drawing: width is an increasing affine function of |value|
    slope, offset = np.polyfit(magnitudes, widths, 1)
    assert slope > 0
    np.testing.assert_allclose(widths, offset + slope * magnitudes, atol=1e-9)
    assert widths[np.argmax(magnitudes)] == widths.max()


# ------------------------------------------------------------------ every plot renders


@pytest.mark.parametrize("sizes", [jaxnet.SEED_SIZES, OTHER_SIZES, (4, 8, 3)])
def test_network_renders_to_png(tmp_path, sizes):
    params = _params(sizes)
    plot.save(plot.network(params), tmp_path / "weights.png")
    assert _is_png(tmp_path / "weights.png")
    # any params-shaped tree will do here; real gradients are drawn below
    grads = jax.tree.map(lambda p: -0.1 * p, params)
    plot.save(plot.network(params, grads), tmp_path / "grads.png")
    assert _is_png(tmp_path / "grads.png")


@pytest.mark.parametrize("sizes", [jaxnet.SEED_SIZES, OTHER_SIZES])
def test_decision_boundary_renders_to_png(tmp_path, sizes):
    x, y = _batch()
    plot.save(plot.decision_boundary(_params(sizes), x, y, resolution=30), tmp_path / "boundary.png")
    assert _is_png(tmp_path / "boundary.png")


def test_loss_curve_renders_to_png(tmp_path):
    plot.save(plot.loss_curve([(10, 1.1), (20, 0.6), (30, 0.2)]), tmp_path / "loss.png")
    assert _is_png(tmp_path / "loss.png")


def test_throughput_renders_to_png(tmp_path):
    rows = [
        bench.Row(task, method, batch, batch / rate, rate, None, None, None, None)
        for task in ("mean", "per_example")
        for method, rate in (("jaxnet", 4e7), ("jax.grad", 1e7), ("read roofline", 8e7))
        for batch in (2**10, 2**14)
    ]
    env = {"backend": "cpu", "device": "cpu", "cpu_count": 2, "jax": jax.__version__}
    plot.save(plot.throughput(rows, env), tmp_path / "bench.png")
    assert _is_png(tmp_path / "bench.png")


def test_plots_draw_into_a_given_axes(tmp_path):
    fig, axes = plt.subplots(1, 3)
    params = _params(jaxnet.SEED_SIZES)
    assert plot.network(params, ax=axes[0]) is fig
    assert plot.loss_curve([(1, 1.0), (2, 0.5)], ax=axes[1]) is fig
    assert plot.decision_boundary(params, *_batch(), ax=axes[2], resolution=30) is fig
    plot.save(fig, tmp_path / "three.png")
    assert _is_png(tmp_path / "three.png")


# ------------------------------------------------------------------ the diagram shows the params


@pytest.mark.parametrize("sizes", [jaxnet.SEED_SIZES, OTHER_SIZES, (3, 2)])
def test_edges_show_the_weights(sizes):
    params = _params(sizes, seed=3)
    _assert_drawn(plot.network(params), params)


@pytest.mark.parametrize("sizes", [jaxnet.SEED_SIZES, OTHER_SIZES])
def test_edges_show_the_gradient_when_given(sizes):
    params = _params(sizes)
    grads = jaxnet.grad(params, *_batch())
    _assert_drawn(plot.network(params, grads), grads)


def test_one_example_of_per_example_grads_is_drawn():
    params = _params(jaxnet.SEED_SIZES)
    each = jaxnet.per_example_grads(params, *_batch(8))
    one = jax.tree.map(lambda g: g[3], each)
    _assert_drawn(plot.network(params, one), one)


def test_a_dead_unit_has_faint_dashed_edges():
    params = list(_params(jaxnet.SEED_SIZES))
    # h1_2 never fires: no gradient reaches its incoming weights, none leaves through h1_2
    params[0] = params[0]._replace(b=params[0].b.at[1].set(-50.0))
    params = tuple(params)
    grads = jaxnet.grad(params, *_batch())
    assert np.all(np.asarray(grads[0].w[:, 1]) == 0) and np.all(np.asarray(grads[1].w[1, :]) == 0)
    fig = plot.network(params, grads)
    _assert_drawn(fig, grads)
    for collection, g in zip(_edges(fig)[:2], grads[:2]):
        zero = np.asarray(g.w).ravel() == 0
        widths = np.broadcast_to(collection.get_linewidths(), zero.shape)
        colours = collection.get_colors()
        dashed = np.array([dashes is not None for _, dashes in collection.get_linestyles()])
        assert zero.any() and np.all(dashed == zero)
        assert np.all(widths[zero] == widths.min()) and np.all(widths[~zero] > widths.min())
        # fainter than every live edge
        assert colours[zero, 3].max() < colours[~zero, 3].min()
    assert _labels(fig)["h1_2"] == "$h^{1}_{2}$"


def test_units_are_labelled_as_in_the_seed():
    fig = plot.network(_params(jaxnet.SEED_SIZES))
    labels = _labels(fig)
    names = ["x_1", "x_2", "h1_1", "h1_2", "h1_3", "h2_1", "h2_2", "yhat_1", "yhat_2", "yhat_3"]
    assert sorted(labels) == sorted(names)
    assert labels["x_2"] == "$x_{2}$" and labels["h2_1"] == "$h^{2}_{1}$" and labels["yhat_3"] == "$\\hat{y}_{3}$"
    # biases are written under their units: all hidden biases start at 0.5
    notes = [t.get_text() for t in fig.axes[0].texts if t.get_text().startswith("b=")]
    assert notes.count("b=0.50") == 5 and notes.count("b=0.00") == 3


def test_wide_layers_drop_labels_and_edges_fade():
    narrow = plot.network(_params(jaxnet.SEED_SIZES))
    wide = plot.network(_params((4, 40, 3)), max_labels=12)
    names = _labels(wide)
    assert not any(name.startswith("h1_") for name in names)
    alpha = lambda fig: max(c.get_colors()[:, 3].max() for c in _edges(fig))
    assert alpha(wide) < alpha(narrow) == 1.0


def test_bad_params_and_grads_are_clear_errors():
    params = _params(jaxnet.SEED_SIZES)
    with pytest.raises(ValueError, match="params must be"):
        plot.network("not params")
    with pytest.raises(ValueError, match="do not chain"):
        plot.network((params[0], params[2]))
    with pytest.raises(ValueError, match=r"params\[1\].b"):
        plot.network((params[0], params[1]._replace(b=jnp.zeros(3)), params[2]))
    with pytest.raises(ValueError, match="NaN or inf"):
        plot.network((params[0]._replace(w=params[0].w.at[0, 0].set(jnp.nan)),) + params[1:])
    with pytest.raises(ValueError, match="grads has 2 layers"):
        plot.network(params, params[:2])
    each = jaxnet.per_example_grads(params, *_batch(8))
    with pytest.raises(ValueError, match=r"grads\[0\].w has shape \(8, 2, 3\).*per-example"):
        plot.network(params, each)


def test_missing_matplotlib_is_a_clear_error(monkeypatch, tmp_path, capsys):
    params = _params(jaxnet.SEED_SIZES)
    # None in sys.modules makes `import matplotlib` fail; monkeypatch restores it
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    with pytest.raises(plot.MissingMatplotlib, match=r"pip install 'jaxnet\[plot\]'"):
        plot.network(params)
    with pytest.raises(plot.MissingMatplotlib):
        plot.loss_curve([(1, 1.0)])
    assert cli.main(["draw", "--out", str(tmp_path / "net.png")]) == 1
    err = capsys.readouterr().err
    assert err.startswith("jaxnet draw: ") and "matplotlib" in err and "Traceback" not in err
    assert not (tmp_path / "net.png").exists()


# ------------------------------------------------------------------ checkpoints and `jaxnet draw`


def test_a_run_checkpoint_is_read_and_drawn(tmp_path, capsys):
    path = str(tmp_path / "ckpt.npz")
    # what `jaxnet train` runs, short
    config = train.RunConfig(steps=3, batch_size=16, n_examples=64, optimizer="momentum")
    result = train.run(config, checkpoint=path)
    params, saved = train.load_params(path)
    assert saved["optimizer"] == "momentum" and saved["sizes"] == list(jaxnet.SEED_SIZES)
    for got, want in zip(jax.tree.leaves(params), jax.tree.leaves(result.params)):
        np.testing.assert_array_equal(got, want)
    out = tmp_path / "trained.png"
    assert cli.main(["draw", "--checkpoint", path, "--grads", "--batch", "128", "--out", str(out)]) == 0
    assert _is_png(out) and path in capsys.readouterr().out


def test_load_params_needs_a_run_config(tmp_path):
    params = _params(jaxnet.SEED_SIZES)
    opt_state = train.optimizer("adam", 0.01).init(params)
    bare = str(tmp_path / "bare.npz")
    train.save_checkpoint(bare, params, opt_state, 0, {"lr": 0.01})
    with pytest.raises(train.CheckpointError, match="no usable run configuration"):
        train.load_params(bare)
    other = str(tmp_path / "other.npz")
    train.save_checkpoint(other, params, opt_state, 0, train.RunConfig(sizes=OTHER_SIZES).as_dict())
    with pytest.raises(train.CheckpointError, match="params/0 has shape"):
        train.load_params(other)


def test_cli_draw_writes_a_png(tmp_path, capsys):
    out = tmp_path / "net.png"
    assert cli.main(["draw", "--out", str(out)]) == 0
    assert _is_png(out) and "wrote" in capsys.readouterr().out
    out = tmp_path / "sub" / "grads.png"
    assert cli.main(["draw", "--out", str(out), "--grads", "--batch", "128", "--seed", "2"]) == 0
    assert _is_png(out)


@pytest.mark.parametrize("content", [None, b"not a checkpoint"])
def test_cli_draw_bad_checkpoint_is_a_clear_error(tmp_path, capsys, content):
    path = tmp_path / "ckpt.npz"
    if content is not None:
        path.write_bytes(content)
    assert cli.main(["draw", "--checkpoint", str(path), "--out", str(tmp_path / "net.png")]) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"jaxnet draw: checkpoint {path}") and err.count("\n") == 1
    assert not (tmp_path / "net.png").exists()
