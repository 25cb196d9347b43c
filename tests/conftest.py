"""Shared pytest set-up: 8 host CPU devices for sharding tests, and fast compiles."""

import os

# Must precede JAX's start: sharding tests build meshes of up to 8 CPU devices.
os.environ.setdefault("XLA_FLAGS", "")
if "xla_force_host_platform_device_count" not in os.environ["XLA_FLAGS"]:
    os.environ["XLA_FLAGS"] += " --xla_force_host_platform_device_count=8"
os.environ.setdefault("JAX_PLATFORMS", "cpu")

import maskgan_jax  # noqa: E402,F401  (sets the XLA:CPU flags before JAX starts)
import jax  # noqa: E402

# Tests run tiny shapes once each: compile time dominates, so skip most XLA optimisations.
jax.config.update("jax_disable_most_optimizations", True)
