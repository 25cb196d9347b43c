"""What the benchmarks share: a config file with overrides (argparse scripts), XLA's FLOP count of a
compiled function, a timed call, the machine's matmul rate measured in the same run (CPU), and
accelerators' published peaks."""

from __future__ import annotations

import argparse
import importlib.util
import json
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

# Dense peak TFLOP/s by device kind (a substring of jax.Device.device_kind), from the vendors'
# data sheets: (bfloat16, float32). float32 is the non-tensor-core rate (XLA's default precision
# may use TF32 on NVIDIA, which runs faster than this figure).
ACCELERATOR_PEAK_TFLOPS = {
    "H200": (989.0, 67.0),
    "H100": (989.0, 67.0),
    "A100": (312.0, 19.5),
    "L4": (121.0, 30.3),
    "TPU v6": (918.0, None),
    "TPU v5p": (459.0, None),
    "TPU v5": (197.0, None),  # v5e ("TPU v5 lite")
    "TPU v4": (275.0, None),
}


def cost_gflop(compiled: Any) -> float | None:
    """GFLOP of a compiled function by XLA's cost analysis (None where XLA gives none)."""
    analysis = compiled.cost_analysis()
    if isinstance(analysis, (list, tuple)):  # older jax returned one dict per device
        analysis = analysis[0] if analysis else None
    if not analysis or "flops" not in analysis:
        return None
    return float(analysis["flops"]) / 1e9


def time_once(fn: Callable[[], Any]) -> float:
    """Seconds of one call of `fn`, waiting for its device results."""
    start = time.perf_counter()
    jax.block_until_ready(fn())
    return time.perf_counter() - start


def matmul_function(n: int, device: jax.Device) -> tuple[Callable[[], Any], float]:
    """A jitted fp32 n x n matmul on `device` and its GFLOP (2 n^3)."""
    rng = np.random.default_rng(1)
    a = jax.device_put(rng.standard_normal((n, n), dtype=np.float32), device)
    b = jax.device_put(rng.standard_normal((n, n), dtype=np.float32), device)
    fn = jax.jit(jnp.matmul).lower(a, b).compile()
    return (lambda: fn(a, b)), 2.0 * n ** 3 / 1e9


def accelerator_peak_gflops(device: jax.Device, dtype: str) -> float | None:
    """The device's dense peak in GFLOP/s for 'bfloat16' or 'float32' from the table, or None."""
    for kind, (bf16, fp32) in ACCELERATOR_PEAK_TFLOPS.items():
        if kind in device.device_kind:
            peak = bf16 if dtype == "bfloat16" else fp32
            return None if peak is None else peak * 1e3
    return None


def load_config(spec: str, overrides: list[str]) -> ml_collections.ConfigDict:
    """`path/to/config.py[:arg]` plus `field.path=value` overrides (values parsed as JSON, else strings).

    main.py's `config_flags` needs absl flags; the argparse scripts (benchmarks) load the file
    directly, the same way (its `get_config(arg)`).
    Raises:
      FileNotFoundError: no config file at the path. KeyError: an override names no config field.
    """
    path, _, arg = spec.partition(":")
    if not Path(path).is_file():
        raise FileNotFoundError(f"--config: no config file {path!r} (expected e.g. configs/ebst.py:quickstart)")
    module_spec = importlib.util.spec_from_file_location("run_config", path)
    module = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(module)
    config = module.get_config(arg or None)
    config.lock()  # an override of a field that does not exist is an error, not a new field
    for override in overrides:
        key, _, text = override.partition("=")
        try:
            value = json.loads(text)
        except json.JSONDecodeError:
            value = text
        try:
            config.update_from_flattened_dict({key: value})
        except (KeyError, AttributeError) as error:
            raise KeyError(f"--set {override!r}: {key!r} is not a field of {spec}") from error
    return config


# --------------------------------------------------------------- the colour diagnostics' shared CLI parts


def add_generator_arguments(parser: argparse.ArgumentParser) -> None:
    """--checkpoint and --phase: the generator a diagnostic loads (edit.load_generator)."""
    parser.add_argument("--checkpoint", required=True, help="a run's workdir or checkpoint directory")
    parser.add_argument("--phase", default=None, help="ebst or dmn (default: the most trained)")


def check_class_name(parser: argparse.ArgumentParser, flag: str, name: str) -> None:
    """parser.error unless `name` is one of the 19 class names."""
    from tfds_celebamask import labels

    if name not in labels.CLASS_ID:
        parser.error(f"{flag}={name!r}: expected one of {list(labels.CLASS_NAMES)}")


def example_arrays(examples: Sequence[Any]) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The editing benchmark's examples (evaluate.Example) as arrays: faces and true results, uint8
    (N, H, W, 3), and the faces' and the wanted masks, int32 (N, H, W)."""
    stack = lambda field, dtype: np.stack([getattr(e, field) for e in examples]).astype(dtype)
    return (stack("target_image", np.uint8), stack("true_image", np.uint8), stack("target_labels", np.int32),
            stack("wanted_labels", np.int32))
