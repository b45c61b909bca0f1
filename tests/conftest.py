"""Strict JAX for every test: float64 available, no silent rank promotion.

Tests that want float32 say so explicitly; jaxnet's outputs follow the
params' dtype, so enabling x64 here changes no default inside the library.
"""

import jax

jax.config.update("jax_enable_x64", True)
jax.config.update("jax_numpy_rank_promotion", "raise")

# Scripts run in their own processes by test_sharding.py (they own their device
# count, or join a multi-process run); never import them here.
collect_ignore_glob = ["multidevice/*"]
