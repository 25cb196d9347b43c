"""Shared pytest set-up: 8 host CPU devices for sharding tests, and fast compiles."""

import os

# Must precede JAX's start: sharding tests build meshes of up to 8 CPU devices.
os.environ.setdefault("XLA_FLAGS", "")
if "xla_force_host_platform_device_count" not in os.environ["XLA_FLAGS"]:
    os.environ["XLA_FLAGS"] += " --xla_force_host_platform_device_count=8"
os.environ.setdefault("JAX_PLATFORMS", "cpu")

import jax

from maskgan_jax import runtime

runtime.setup()  # the entry points' XLA:CPU flag, before JAX starts its backend

# Tests run tiny shapes once each: compile time dominates, so skip most XLA optimisations.
jax.config.update("jax_disable_most_optimizations", True)

import pathlib

import pytest


@pytest.fixture(scope="session")
def compilation_cache(tmp_path_factory) -> pathlib.Path:
    """A persistent compilation cache shared by this session's runs and subprocesses (identical steps
    compile once)."""
    path = tmp_path_factory.mktemp("jax_cache")
    jax.config.update("jax_compilation_cache_dir", str(path))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    return path


@pytest.fixture(scope="session")
def smoke_data_dir(tmp_path_factory) -> pathlib.Path:
    """The smoke config's synthetic dataset, built once per session; returns its TFDS data_dir."""
    from configs import ebst
    from maskgan_jax import data

    workdir = tmp_path_factory.mktemp("smoke_data")
    data.prepare_dataset(ebst.get_config("smoke"), workdir)
    return workdir / data.TFDS_FOLDER


@pytest.fixture(scope="session")
def full_run(tmp_path_factory, smoke_data_dir, compilation_cache) -> pathlib.Path:
    """The workdir of one uninterrupted `main.py` smoke run (every phase), shared by the training tests
    of this session (each xdist worker makes its own)."""
    import smoke_runs

    return smoke_runs.run_main_smoke(tmp_path_factory.mktemp("full_run"), smoke_data_dir, compilation_cache)
