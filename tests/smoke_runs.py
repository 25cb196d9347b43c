"""Shared by the training-loop tests: smoke configs, restoring a run's networks, subprocess runs of
main.py (one process, or two processes on 127.0.0.1 through jax.distributed)."""

import os
import socket
import subprocess
import sys
from pathlib import Path

import jax
import numpy as np

from configs import ebst
from maskgan_jax import checkpoint as ckpt

REPO = Path(__file__).resolve().parents[1]


def smoke_config(data_dir):
    config = ebst.get_config("smoke")
    config.data.data_dir = str(data_dir)
    return config


def final_networks(workdir, phase, names):
    """Every array of the named networks' final checkpoint of `phase`, as NumPy, restored onto this
    process's first device whatever mesh wrote it (orbax needs a target with shardings for that)."""
    directory, step = ckpt.find_latest(workdir, phase)
    device = jax.sharding.SingleDeviceSharding(jax.devices()[0])
    networks = {}
    with ckpt.ocp.StandardCheckpointer() as checkpointer:
        for name in names:
            metadata = checkpointer.metadata(directory / str(step) / name).item_metadata
            target = jax.tree_util.tree_map(
                lambda m: jax.ShapeDtypeStruct(m.shape, m.dtype, sharding=device), metadata)
            restored = checkpointer.restore(directory / str(step) / name, target)
            networks[name] = jax.tree_util.tree_map(np.asarray, restored)
    return step, networks


def assert_trees_equal(a, b):
    leaves_a, leaves_b = jax.tree_util.tree_leaves_with_path(a), jax.tree_util.tree_leaves(b)
    assert len(leaves_a) == len(leaves_b)
    for (path, x), y in zip(leaves_a, leaves_b):
        np.testing.assert_array_equal(x, y, err_msg=jax.tree_util.keystr(path))


def subprocess_env(compilation_cache, devices):
    env = dict(os.environ)
    env["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={devices}"
    env["JAX_PLATFORMS"] = "cpu"
    env["JAX_COMPILATION_CACHE_DIR"] = str(compilation_cache)
    env["JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS"] = "0"
    env["JAX_DISABLE_MOST_OPTIMIZATIONS"] = "1"
    return env


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_two_processes(tmp_path, name, args, compilation_cache):
    """main.py as 2 processes x 4 CPU devices on 127.0.0.1. Logs go to files: a full stderr pipe would
    block one process inside a collective and hang both. Returns [(process, log path)]."""
    port = free_port()
    started = []
    for i in range(2):
        log_path = tmp_path / f"{name}_{i}.log"
        with open(log_path, "w") as log:
            started.append((subprocess.Popen(
                [sys.executable, "main.py", *args, f"--coordinator_address=127.0.0.1:{port}", "--num_processes=2",
                 f"--process_id={i}"], cwd=REPO, env=subprocess_env(compilation_cache, 4),
                stdout=subprocess.DEVNULL, stderr=log), log_path))
    return started


def wait_for_success(started):
    for process, log_path in started:
        process.wait(timeout=900)
        assert process.returncode == 0, log_path.read_text()[-3000:]


def run_two_processes(tmp_path, name, args, compilation_cache):
    wait_for_success(start_two_processes(tmp_path, name, args, compilation_cache))


def run_main_smoke(workdir, data_dir, compilation_cache):
    """`main.py --config=configs/ebst.py:smoke` end to end, uninterrupted, on 8 CPU devices (as the
    in-process runs get from conftest)."""
    result = subprocess.run(
        [sys.executable, "main.py", "--config=configs/ebst.py:smoke", f"--workdir={workdir}",
         f"--config.data.data_dir={data_dir}"],
        cwd=REPO, env=subprocess_env(compilation_cache, 8), capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stderr[-4000:]
    return workdir
