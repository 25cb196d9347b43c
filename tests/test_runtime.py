"""Process set-up: importing the package changes nothing; setup() adds the XLA:CPU flag on CPU only."""

import os
import subprocess
import sys
import textwrap

from maskgan_jax import runtime


def _run(code: str, **env: str) -> str:
    environment = {k: v for k, v in os.environ.items() if k not in ("XLA_FLAGS", "JAX_PLATFORMS", "GLIBC_TUNABLES")}
    environment.update(env)
    result = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True,
                            env=environment, check=True)
    return result.stdout.strip()


def test_importing_the_package_leaves_xla_flags_alone():
    code = """
        import os
        import maskgan_jax, maskgan_jax.models, maskgan_jax.train, maskgan_jax.edit
        print(repr(os.environ.get("XLA_FLAGS")))
    """
    assert _run(code) == "None"
    assert _run(code, XLA_FLAGS="--xla_dump_to=/tmp/x") == "'--xla_dump_to=/tmp/x'"


def test_setup_adds_the_cpu_flag_once_and_keeps_the_users():
    code = """
        import os
        from maskgan_jax import runtime
        runtime.setup(); runtime.setup()
        print(os.environ["XLA_FLAGS"])
    """
    assert _run(code, JAX_PLATFORMS="cpu") == f"{runtime.YNN_FLAG}={runtime.YNN_VALUE}"
    assert _run(code, JAX_PLATFORMS="cpu", XLA_FLAGS="--a=1") == f"--a=1 {runtime.YNN_FLAG}={runtime.YNN_VALUE}"
    chosen = f"{runtime.YNN_FLAG}=default"
    assert _run(code, JAX_PLATFORMS="cpu", XLA_FLAGS=chosen) == chosen


def test_setup_leaves_accelerator_runs_alone():
    code = """
        import os
        from maskgan_jax import runtime
        runtime.setup()
        print(repr(os.environ.get("XLA_FLAGS")))
    """
    assert _run(code, JAX_PLATFORMS="cuda") == "None"


def test_setup_after_the_backend_started_changes_nothing():
    code = """
        import os
        import jax.numpy as jnp
        from maskgan_jax import runtime
        jnp.zeros(1).block_until_ready()
        runtime.setup()
        print(repr(os.environ.get("XLA_FLAGS")))
    """
    assert _run(code, JAX_PLATFORMS="cpu") == "None"


def test_the_test_suite_runs_with_the_flag():
    assert runtime.YNN_FLAG in os.environ["XLA_FLAGS"]  # tests/conftest.py calls setup()


def test_no_entry_point_sets_allocator_tunables():
    """setup() leaves GLIBC_TUNABLES alone, and the DMN benchmark runs in that same environment (it
    once re-executed itself with allocator settings that main.py and the CLIs never had)."""
    code = """
        import os
        from maskgan_jax import runtime
        runtime.setup()
        print(repr(os.environ.get("GLIBC_TUNABLES")))
    """
    assert _run(code, JAX_PLATFORMS="cpu") == "None"
    benchmark = """
        from maskgan_jax.benchmarks import dmn_speed
        dmn_speed.main(["--sizes", "32", "--repeats", "1", "--warmup", "0", "--passes", "fwd", "--no-torch",
                        "--matmul-size", "64"])
    """
    out = _run(benchmark, JAX_PLATFORMS="cpu", JAX_DISABLE_MOST_OPTIMIZATIONS="1")
    assert f"XLA_FLAGS='{runtime.YNN_FLAG}={runtime.YNN_VALUE}'; GLIBC_TUNABLES=''" in out
    assert "| JAX fast forms | 32x32 | fwd |" in out
