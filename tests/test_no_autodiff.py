"""The gradient path is hand-written: no autodiff trace is ever opened on it."""

import ast
import inspect

import jax
import jax.numpy as jnp
import pytest
from jax._src.interpreters import ad

import jaxnet
from jaxnet import _api, _kernels, _layers, _params, _reference, _validate
import oracle


class AutodiffUsed(Exception):
    pass


@pytest.fixture
def forbid_autodiff(monkeypatch):
    """Every JAX autodiff transform (grad, vjp, jvp, linearize, jacrev...) opens a
    JVPTrace or LinearizeTrace; make both raise, and drop caches so nothing
    traced earlier is reused."""

    def boom(*args, **kwargs):
        raise AutodiffUsed("autodiff trace opened")

    monkeypatch.setattr(ad.JVPTrace, "__init__", boom)
    monkeypatch.setattr(ad.LinearizeTrace, "__init__", boom)
    jax.clear_caches()
    yield
    jax.clear_caches()


def test_detector_catches_autodiff(forbid_autodiff):
    with pytest.raises(AutodiffUsed):
        jax.grad(lambda w: jnp.sum(w**2))(jnp.ones(3))
    with pytest.raises(AutodiffUsed):
        jax.jvp(jnp.sin, (1.0,), (1.0,))


def test_gradient_functions_run_without_autodiff(forbid_autodiff):
    params = oracle.random_params(jax.random.key(0), jaxnet.SEED_SIZES)
    x, y = oracle.random_batch(jax.random.key(1), 9, jaxnet.SEED_SIZES)
    jax.block_until_ready(jaxnet.grad(params, x, y))
    jax.block_until_ready(jax.jit(jaxnet.value_and_grad)(params, x, y))
    jax.block_until_ready(jax.jit(jaxnet.per_example_grads)(params, x, y))
    jax.block_until_ready(jax.jit(jax.vmap(jaxnet.grad, in_axes=(None, 0, 0)))(params, x, y))


AUTODIFF = {"grad", "value_and_grad", "vjp", "jvp", "linearize", "jacrev", "jacfwd", "hessian", "custom_vjp", "linear_transpose"}


def _autodiff_references(source):
    """``jax.<transform>`` attributes and ``from jax import <transform>`` in code (not docstrings)."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Attribute) and node.attr in AUTODIFF:
            base = node.value
            if isinstance(base, ast.Name) and base.id == "jax":
                found.append(f"jax.{node.attr}")
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("jax"):
            found += [f"from {node.module} import {a.name}" for a in node.names if a.name in AUTODIFF]
    return found


def test_static_scan_detects_autodiff():
    assert _autodiff_references("import jax\nf = jax.grad(g)\n") == ["jax.grad"]
    assert _autodiff_references("from jax import vjp\n") == ["from jax import vjp"]


@pytest.mark.parametrize("module", [_api, _kernels, _layers, _reference, _validate, _params])
def test_gradient_modules_do_not_call_autodiff(module):
    assert _autodiff_references(inspect.getsource(module)) == []
