"""Training with optax: a jitted train step, synthetic data, and checkpoints.

The step is thin: users bring their own ``optax.GradientTransformation``.

>>> import jax, optax, jaxnet
>>> from jaxnet import train
>>> params = jaxnet.init(jax.random.key(0))
>>> tx = optax.adam(1e-2)
>>> step = train.make_step(tx)
>>> opt_state = tx.init(params)
>>> data = train.blobs(jax.random.key(1), 256)
>>> params, opt_state, loss = step(params, opt_state, data.x_train[:64], data.y_train[:64])
>>> loss.shape
()
"""

import functools
import json
import os
import tempfile
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxnet import _api, _dp, _kernels, _params

OPTIMIZERS = {
    "sgd": optax.sgd,
    "momentum": lambda lr: optax.sgd(lr, momentum=0.9),
    "adam": optax.adam,
}


def optimizer(name, lr):
    """An optax optimiser by name: one of ``OPTIMIZERS``."""
    if name not in OPTIMIZERS:
        raise ValueError(f"optimizer must be one of {sorted(OPTIMIZERS)}, got {name!r}")
    return OPTIMIZERS[name](lr)


def _jit(fn, **kwargs):
    """``jax.jit`` with jaxnet's CPU compiler options when the default backend is CPU."""
    options = _kernels.CPU_COMPILER_OPTIONS if jax.default_backend() == "cpu" else None
    return jax.jit(fn, compiler_options=options, **kwargs)


def make_step(tx, *, l2_norm_clip=None, noise_multiplier=0.0):
    """A jitted optax train step on jaxnet's hand-written gradients.

    Without clipping: ``step(params, opt_state, x, y) -> (params, opt_state, loss)``.
    With ``l2_norm_clip`` (DP-SGD, via :func:`jaxnet.clipped_mean_grad`):
    ``step(params, opt_state, x, y, key)``, the key drawing the noise; the
    returned loss is then the batch's mean loss before the update.

    On CPU the step compiles with :data:`jaxnet.CPU_COMPILER_OPTIONS`.
    """

    if l2_norm_clip is None:

        def step(params, opt_state, x, y):
            loss, grads = _api.value_and_grad(params, x, y)
            updates, opt_state = tx.update(grads, opt_state, params)
            return optax.apply_updates(params, updates), opt_state, loss

    else:

        def step(params, opt_state, x, y, key):
            grads, _ = _dp.clipped_mean_grad(params, x, y, l2_norm_clip, noise_multiplier=noise_multiplier, key=key)
            loss = _api.loss(params, x, y)
            updates, opt_state = tx.update(grads, opt_state, params)
            return optax.apply_updates(params, updates), opt_state, loss

    return _jit(step)


# ------------------------------------------------------------------ data


class Data(NamedTuple):
    x_train: jax.Array  # (N_train, 2) float32
    y_train: jax.Array  # (N_train,) int32
    x_test: jax.Array  # (N_test, 2) float32
    y_test: jax.Array  # (N_test,) int32


BLOB_RADIUS = 2.5
BLOB_STD = 0.7


def blobs(key, n, test_fraction=0.25):
    """Three 2-D Gaussian blobs, one per class, and a held-out split.

    Centres sit at radius ``BLOB_RADIUS`` at 90, 210 and 330 degrees, each
    with standard deviation ``BLOB_STD``: overlapping a little, so the best
    achievable accuracy is about 99%, and separable by the seed net's two
    ReLU hidden layers. Deterministic in ``key``.
    """
    k_y, k_x = jax.random.split(key)
    y = jax.random.randint(k_y, (n,), 0, 3, jnp.int32)
    angles = jnp.deg2rad(jnp.array([90.0, 210.0, 330.0]))
    centres = BLOB_RADIUS * jnp.stack([jnp.cos(angles), jnp.sin(angles)], axis=1)
    x = centres[y] + BLOB_STD * jax.random.normal(k_x, (n, 2), jnp.float32)
    n_test = int(round(n * test_fraction))
    return Data(x[n_test:], y[n_test:], x[:n_test], y[:n_test])


def accuracy(params, x, y):
    """Fraction of examples whose largest logit is the label."""
    return jnp.mean(jnp.argmax(_api.forward(params, x), axis=-1) == y)


def batch_indices(key, step, n, batch_size):
    """Indices of step ``step``'s minibatch: a function of (key, step), so resuming repeats them."""
    return jax.random.randint(jax.random.fold_in(key, step), (batch_size,), 0, n)


# ------------------------------------------------------------------ checkpoints


class CheckpointError(ValueError):
    """A checkpoint that cannot be read or does not fit the run."""


def save_checkpoint(path, params, opt_state, step, config):
    """Write params, optimiser state, step and config to ``path`` (.npz), atomically.

    The file is written to a temporary file in the same folder and renamed,
    so a crash never leaves a half-written checkpoint. ``config`` is a
    JSON-serialisable dict.
    """
    arrays = {"step": np.asarray(step, np.int64), "config": np.asarray(json.dumps(config, sort_keys=True))}
    for i, leaf in enumerate(jax.tree.leaves(params)):
        arrays[f"params/{i}"] = np.asarray(leaf)
    for i, leaf in enumerate(jax.tree.leaves(opt_state)):
        arrays[f"opt_state/{i}"] = np.asarray(leaf)
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=".checkpoint-", suffix=".npz")
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez(f, **arrays)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def _read(path):
    """Every array of checkpoint ``path``, its config dict and its step."""
    try:
        with open(path, "rb") as fh, np.load(fh, allow_pickle=False) as f:
            data = {k: f[k] for k in f.files}
        saved = json.loads(str(data["config"]))
        step = int(data["step"])
    except FileNotFoundError:
        raise CheckpointError(f"checkpoint {path} does not exist") from None
    except Exception as e:  # zip, npy header, JSON and key errors all mean the same to the user
        raise CheckpointError(f"checkpoint {path} is corrupt or not a jaxnet checkpoint ({type(e).__name__}: {e})") from None
    return data, saved, step


def load_checkpoint(path, params_like, opt_state_like, config=None):
    """Read a checkpoint written by :func:`save_checkpoint`.

    ``params_like`` and ``opt_state_like`` give the tree structure, shapes
    and dtypes expected (for example a fresh ``init`` and ``tx.init``). If
    ``config`` is given, every key of it except ``steps`` must match the
    checkpoint's. Returns ``(params, opt_state, step, config)``.

    Raises:
      CheckpointError: the file is missing, corrupt, or does not fit.
    """
    data, saved, step = _read(path)
    if config is not None:
        # steps may grow on resume, and the device count does not change the maths
        diff = {k: (saved.get(k), v) for k, v in config.items() if k not in ("steps", "devices") and saved.get(k) != v}
        if diff:
            detail = ", ".join(f"{k}: checkpoint has {a!r}, this run has {b!r}" for k, (a, b) in sorted(diff.items()))
            raise CheckpointError(f"checkpoint {path} was written by a different configuration ({detail})")

    def restore(prefix, like):
        leaves, treedef = jax.tree.flatten(like)
        out = []
        for i, leaf in enumerate(leaves):
            name = f"{prefix}/{i}"
            if name not in data:
                raise CheckpointError(f"checkpoint {path} lacks {name}; it does not fit this model and optimiser")
            value = data[name]
            if value.shape != np.shape(leaf) or value.dtype != np.asarray(leaf).dtype:
                raise CheckpointError(
                    f"checkpoint {path}: {name} has shape {value.shape} {value.dtype}, expected "
                    f"{np.shape(leaf)} {np.asarray(leaf).dtype}"
                )
            out.append(jnp.asarray(value))
        extra = sum(1 for k in data if k.startswith(prefix + "/")) - len(leaves)
        if extra:
            raise CheckpointError(f"checkpoint {path} has {extra} more {prefix} arrays than this model and optimiser")
        return jax.tree.unflatten(treedef, out)

    return restore("params", params_like), restore("opt_state", opt_state_like), step, saved


def load_params(path):
    """The params of a checkpoint written by :func:`run` (``jaxnet train``), with no model at hand.

    The expected trees are rebuilt from the layer widths, optimiser and
    learning rate in the checkpoint's own config, then read as
    :func:`load_checkpoint` reads them. Returns ``(params, config)``: a tuple
    of ``Dense(w: (d_in, d_out), b: (d_out,))`` and the run's config dict.

    Raises:
      CheckpointError: the file is missing or corrupt, its config lacks
        ``sizes``, ``optimizer`` or ``lr`` (as one saved from Python without
        them), or its arrays do not fit that config.
    """
    _, saved, _ = _read(path)
    try:
        sizes = tuple(saved["sizes"])
        params_like = _params.init(jax.random.key(0), sizes)
        opt_state_like = optimizer(saved["optimizer"], saved["lr"]).init(params_like)
    except (KeyError, TypeError, ValueError) as e:
        raise CheckpointError(
            f"checkpoint {path} has no usable run configuration (sizes, optimizer, lr) ({type(e).__name__}: {e})"
        ) from None
    params, _, _, _ = load_checkpoint(path, params_like, opt_state_like)
    return params, saved


# ------------------------------------------------------------------ a whole run


class RunConfig(NamedTuple):
    steps: int = 2000
    batch_size: int = 128
    optimizer: str = "adam"
    lr: float = 0.01
    seed: int = 0
    sizes: tuple = _params.SEED_SIZES
    n_examples: int = 4000
    dp_clip: float | None = None
    dp_noise: float = 0.0
    devices: int = 1  # shard each batch over this many devices (data parallel)

    def as_dict(self):
        d = self._asdict()
        d["sizes"] = list(self.sizes)
        return d


class RunResult(NamedTuple):
    params: tuple
    opt_state: object
    losses: list  # (step, train loss) every ``log_every`` steps
    metrics: dict
    data: Data


def run(config, *, checkpoint=None, resume=False, progress=None, log_every=10):
    """Train the net on :func:`blobs` as ``config`` says; optionally checkpoint and resume.

    ``progress(step, loss)`` is called every ``log_every`` steps.
    """
    import time

    if config.steps < 0 or config.batch_size < 1 or config.n_examples < 8:
        raise ValueError(f"steps must be >= 0, batch_size >= 1 and n_examples >= 8, got {config}")
    key = jax.random.key(config.seed)
    k_init, k_data, k_batches, k_noise = jax.random.split(key, 4)
    data = blobs(k_data, config.n_examples)
    tx = optimizer(config.optimizer, config.lr)
    params = _params.init(k_init, config.sizes)
    opt_state = tx.init(params)
    start = 0
    if resume:
        params, opt_state, start, _ = load_checkpoint(checkpoint, params, opt_state, config.as_dict())
        if start > config.steps:
            raise CheckpointError(f"checkpoint {checkpoint} is at step {start}, past --steps {config.steps}")
    dp = config.dp_clip is not None
    step_fn = make_step(tx, l2_norm_clip=config.dp_clip, noise_multiplier=config.dp_noise) if dp else make_step(tx)
    n_train = data.x_train.shape[0]
    sharding = None
    if config.devices > 1:
        if config.devices > jax.device_count():
            raise ValueError(f"devices: asked for {config.devices}, but only {jax.device_count()} are visible")
        if config.batch_size % config.devices:
            raise ValueError(f"batch_size {config.batch_size} must divide by devices {config.devices}")
        from jaxnet._shard import batch_mesh

        mesh = batch_mesh(jax.devices()[: config.devices])
        sharding = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec("data"))

    @functools.partial(_jit, out_shardings=None if sharding is None else (sharding, sharding))
    def take(step):
        idx = batch_indices(k_batches, step, n_train, config.batch_size)
        return data.x_train[idx], data.y_train[idx]

    losses = []
    began = time.perf_counter()
    for step in range(start, config.steps):
        x, y = take(step)
        args = (jax.random.fold_in(k_noise, step),) if dp else ()
        params, opt_state, loss = step_fn(params, opt_state, x, y, *args)
        if (step + 1) % log_every == 0 or step + 1 == config.steps:
            loss = float(loss)
            losses.append((step + 1, loss))
            if progress:
                progress(step + 1, loss)
    jax.block_until_ready(params)
    elapsed = time.perf_counter() - began
    if checkpoint is not None:
        save_checkpoint(checkpoint, params, opt_state, config.steps, config.as_dict())
    trained = config.steps - start
    metrics = {
        "test_accuracy": float(accuracy(params, data.x_test, data.y_test)),
        "test_loss": float(_api.loss(params, data.x_test, data.y_test)),
        "train_loss": float(_api.loss(params, data.x_train, data.y_train)),
        "steps": config.steps,
        "examples_per_second": trained * config.batch_size / elapsed if elapsed > 0 and trained else 0.0,
    }
    return RunResult(params, opt_state, losses, metrics, data)


def epsilon(steps, batch_size, n_train, noise_multiplier, delta):
    """DP-SGD epsilon at ``delta`` from dp-accounting's RDP accountant, or None without it.

    The accountant assumes Poisson sampling at rate ``batch_size / n_train``;
    ``run`` samples fixed-size batches uniformly, so the figure is the usual
    approximation, not a proof.
    """
    try:
        import dp_accounting
    except ImportError:
        return None
    if noise_multiplier <= 0:
        return float("inf")
    event = dp_accounting.SelfComposedDpEvent(
        dp_accounting.PoissonSampledDpEvent(batch_size / n_train, dp_accounting.GaussianDpEvent(noise_multiplier)), steps
    )
    accountant = dp_accounting.rdp.RdpAccountant()
    accountant.compose(event)
    return float(accountant.get_epsilon(delta))
