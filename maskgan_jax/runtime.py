"""Process set-up for the entry points (main.py, the CLIs, the benchmarks, the test suite).

Importing `maskgan_jax` changes nothing in the environment; an entry point calls `setup()` first,
before its first JAX computation, because XLA reads XLA_FLAGS when its backend starts (not when
`jax` is imported). Libraries that embed these modules choose their own flags.
"""

from __future__ import annotations

import importlib.metadata
import os

import jax
from absl import logging
from etils import epath

from maskgan_jax import paths

# This jaxlib routes XLA:CPU convolutions to YNNPACK by default, 3-5x slower on the few-channel
# convs of these networks and with fp32 gradients 1e-2 off float64; keeping YNNPACK for matmuls only
# fixes both (shared/design/environment.md; benchmarks/dmn_speed.py measures it).
YNN_FLAG = "--xla_cpu_experimental_ynn_fusion_type"
YNN_VALUE = "individual_dot"
# Distributions that give JAX an accelerator backend (then the CPU flag is not wanted: another
# jaxlib may not know it).
ACCELERATOR_PLUGINS = ("jax-cuda12-plugin", "jax-cuda13-plugin", "jax-rocm7-plugin", "libtpu")


def _installed(distribution: str) -> bool:
    try:
        importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return False
    return True


def backend_started() -> bool:
    """Whether JAX has started its backends (after which XLA_FLAGS no longer take effect)."""
    from jax._src import xla_bridge  # private: JAX has no public query for this
    return xla_bridge.backends_are_initialized()


def cpu_backend_expected() -> bool:
    """Whether JAX will run on the CPU: JAX_PLATFORMS (or jax_platforms) names cpu first, or none is
    named and no accelerator plugin is installed. Decided without starting a backend."""
    platforms = jax.config.jax_platforms or os.environ.get("JAX_PLATFORMS", "")
    if platforms:
        return platforms.split(",")[0].strip() == "cpu"
    return not any(_installed(name) for name in ACCELERATOR_PLUGINS)


def xla_cpu_flags(existing: str) -> str:
    """`existing` XLA_FLAGS with this project's XLA:CPU flag added, unless the user set it already."""
    if YNN_FLAG in existing:
        return existing
    return f"{existing} {YNN_FLAG}={YNN_VALUE}".strip()


def setup(cpu_flags: bool = True) -> None:
    """Sets the XLA:CPU flag (when the backend will be the CPU and `cpu_flags`); idempotent.

    Call before the first JAX computation. Called later, it warns and changes nothing.
    """
    if not cpu_flags or not cpu_backend_expected():
        return
    flags = xla_cpu_flags(os.environ.get("XLA_FLAGS", ""))
    if flags == os.environ.get("XLA_FLAGS", ""):
        return
    if backend_started():
        logging.warning("maskgan_jax.runtime.setup() ran after JAX started its backend: %s is not applied "
                        "(call it before the first JAX computation)", YNN_FLAG)
        return
    os.environ["XLA_FLAGS"] = flags


def enable_compilation_cache(cache_dir: str | os.PathLike | None) -> epath.Path | None:
    """Turns on JAX's persistent compilation cache in `cache_dir` (None or '': leaves it off).

    `cache_dir` is a local folder or any URI etils.epath can write (gs://): JAX reads and writes its
    cache through epath (remote caches are not size-limited). Every compiled program is stored,
    however fast it compiled, so a restart with the same shapes skips compilation. Returns the
    directory used.
    """
    if not cache_dir:
        return None
    path = paths.as_path(cache_dir)
    path.mkdir(parents=True, exist_ok=True)
    jax.config.update("jax_compilation_cache_dir", str(path))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
    return path
