"""optax integration, the train step, checkpoints and the `jaxnet train` CLI."""

import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import jaxnet
from jaxnet import cli, train
import oracle


def _metrics(out):
    with open(os.path.join(out, "metrics.json")) as f:
        return json.load(f)


@pytest.mark.parametrize("name", sorted(train.OPTIMIZERS))
def test_trajectory_matches_autodiff_training(name):
    """300 steps with jaxnet's gradients and with autodiff of a plain reference agree in float32."""
    tx = train.optimizer(name, 0.02)
    params0 = jaxnet.init(jax.random.key(0))
    data = train.blobs(jax.random.key(1), 2000)
    step = train.make_step(tx)

    @jax.jit
    def reference_step(params, opt_state, x, y):
        loss, grads = jax.value_and_grad(oracle.loss)(params, x, y)
        updates, opt_state = tx.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, loss

    a, sa = params0, tx.init(params0)
    b, sb = params0, tx.init(params0)
    for i in range(300):
        idx = train.batch_indices(jax.random.key(2), i, data.x_train.shape[0], 64)
        x, y = data.x_train[idx], data.y_train[idx]
        a, sa, la = step(a, sa, x, y)
        b, sb, lb = reference_step(b, sb, x, y)
    assert abs(float(la) - float(lb)) <= 1e-4
    for pa, pb in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
        np.testing.assert_allclose(pa, pb, rtol=1e-3, atol=1e-4)
    first = float(oracle.loss(params0, data.x_train, data.y_train))
    assert float(oracle.loss(a, data.x_train, data.y_train)) < 0.6 * first  # it did train


def test_grads_go_straight_into_optax():
    params = jaxnet.init(jax.random.key(0))
    x, y = oracle.random_batch(jax.random.key(1), 16, jaxnet.SEED_SIZES, dtype=jnp.float32)
    tx = optax.chain(optax.clip_by_global_norm(1.0), optax.adamw(1e-3))
    state = tx.init(params)
    updates, state = tx.update(jaxnet.grad(params, x, y), state, params)
    new = optax.apply_updates(params, updates)
    assert jax.tree.structure(new) == jax.tree.structure(params)
    assert isinstance(new[0], jaxnet.Dense)


def test_default_run_reaches_95_percent_on_9_of_10_seeds():
    config = train.RunConfig(steps=800)  # a smaller budget than the CLI default of 2000 steps
    accs = [train.run(config._replace(seed=s)).metrics["test_accuracy"] for s in range(10)]
    assert sum(a >= 0.95 for a in accs) >= 9, accs


def test_resume_gives_the_same_params_as_one_run(tmp_path):
    config = train.RunConfig(steps=120, optimizer="momentum", lr=0.05)
    whole = train.run(config)
    path = str(tmp_path / "ckpt.npz")
    train.run(config._replace(steps=50), checkpoint=path)
    resumed = train.run(config, checkpoint=path, resume=True)
    for a, b in zip(jax.tree.leaves((whole.params, whole.opt_state)), jax.tree.leaves((resumed.params, resumed.opt_state))):
        np.testing.assert_array_equal(a, b)


def test_resume_with_dp_matches_one_run(tmp_path):
    config = train.RunConfig(steps=40, dp_clip=0.5, dp_noise=1.0)
    whole = train.run(config)
    path = str(tmp_path / "ckpt.npz")
    train.run(config._replace(steps=15), checkpoint=path)
    resumed = train.run(config, checkpoint=path, resume=True)
    for a, b in zip(jax.tree.leaves(whole.params), jax.tree.leaves(resumed.params)):
        np.testing.assert_array_equal(a, b)


def test_checkpoint_config_mismatch_is_a_clear_error(tmp_path):
    path = str(tmp_path / "ckpt.npz")
    train.run(train.RunConfig(steps=5), checkpoint=path)
    with pytest.raises(train.CheckpointError, match="optimizer: checkpoint has 'adam', this run has 'sgd'"):
        train.run(train.RunConfig(steps=10, optimizer="sgd"), checkpoint=path, resume=True)
    with pytest.raises(train.CheckpointError, match="sizes"):
        train.run(train.RunConfig(steps=10, sizes=(2, 4, 3)), checkpoint=path, resume=True)


@pytest.mark.parametrize("content", [b"", b"not a zip file", None])
def test_corrupt_checkpoint_is_a_clear_error(tmp_path, content):
    path = tmp_path / "ckpt.npz"
    train.run(train.RunConfig(steps=3), checkpoint=str(path))
    data = path.read_bytes()
    path.write_bytes(content if content is not None else data[: len(data) // 2])  # None: truncated
    with pytest.raises(train.CheckpointError, match="corrupt"):
        train.run(train.RunConfig(steps=5), checkpoint=str(path), resume=True)


def test_checkpoint_is_written_atomically(tmp_path, monkeypatch):
    path = tmp_path / "ckpt.npz"
    params = jaxnet.init(jax.random.key(0))
    tx = optax.adam(1e-3)
    train.save_checkpoint(str(path), params, tx.init(params), 7, {"a": 1})
    before = path.read_bytes()

    def crash(*args, **kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setattr(np, "savez", crash)
    with pytest.raises(RuntimeError):
        train.save_checkpoint(str(path), params, tx.init(params), 8, {"a": 1})
    assert path.read_bytes() == before
    assert os.listdir(tmp_path) == ["ckpt.npz"]
    p, s, step, config = train.load_checkpoint(str(path), params, tx.init(params))
    assert step == 7 and config == {"a": 1}


def test_cli_train_writes_four_files_and_resumes(tmp_path, capsys):
    out = str(tmp_path / "demo")
    assert cli.main(["train", "--steps", "30", "--out", out]) == 0
    assert sorted(os.listdir(out)) == ["checkpoint.npz", "decision_boundary.png", "loss_curve.png", "metrics.json"]
    metrics = _metrics(out)
    assert set(metrics) >= {"test_accuracy", "test_loss", "train_loss", "steps", "examples_per_second"}
    assert 0 <= metrics["test_accuracy"] <= 1 and metrics["steps"] == 30
    assert "held-out accuracy" in capsys.readouterr().out
    assert cli.main(["train", "--steps", "40", "--out", out, "--resume"]) == 0
    assert _metrics(out)["steps"] == 40
    assert cli.main(["train", "--steps", "50", "--out", out, "--resume", "--optimizer", "sgd"]) == 1
    assert "different configuration" in capsys.readouterr().err


def test_cli_train_dp_reports_epsilon(tmp_path, capsys):
    pytest.importorskip("dp_accounting")
    out = str(tmp_path / "dp")
    assert cli.main(["train", "--steps", "20", "--out", out, "--dp-clip", "1.0", "--dp-noise", "1.1"]) == 0
    dp = _metrics(out)["dp"]
    assert 0 < dp["epsilon"] < float("inf")
