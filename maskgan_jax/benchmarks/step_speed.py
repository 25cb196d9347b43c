r"""Speed of every phase's full training step: MaskVAE, DMN, EBST stage 1 and EBST stage 2.

    python -m maskgan_jax.benchmarks.step_speed                       # quickstart and paper sizes, CPU defaults
    python -m maskgan_jax.benchmarks.step_speed --variants=paper --resolutions=256,512 \
        --dtypes=float32,bfloat16 --batches=1,2,4,8                   # an accelerator's full table
    python -m maskgan_jax.benchmarks.step_speed --variants=quickstart --batches=8 \
        --set model.generator.ngf=32 --set model.discriminator.ndf=32  # other model shapes

Each step is the one training runs (`train.compile_steps`: the jitted, sharded step with its
donated state, the objective of the config, both optimiser updates), on fresh networks of the
config variant (`configs/ebst.py`: 'paper' is the default config, 'quickstart' and 'smoke' its
variants) at each resolution, compute dtype and per-device batch, over every device JAX finds.
The perceptual term runs through random VGG19 weights of the real shapes where the config weights
it (the paper's), so its cost is counted.

Columns: seconds (median of --repeats calls after one untimed call), images/s, GFLOP per image by
XLA's cost analysis of the compiled step (the global batch's FLOPs / images), the achieved rate,
and its fraction of the machine's: on CPU an fp32 matmul timed in the same run (interleaved with
the steps, so both see the same load); on accelerators the dense peak of that dtype from
`benchmarks.common.ACCELERATOR_PEAK_TFLOPS`. With --input_pipeline, also the images per second
the real input pipeline (grain over synthetic faces in TFDS's layout, built in a temporary folder)
delivers at that size, to compare with the step's images/s: whether data loading keeps up.

Under it, where a row runs the variant's own resolution and global batch, the training budget: each
phase's steps (`config.phases.<phase>.num_steps`) times its step's seconds and GFLOP, and the
minutes the phase would take at the measured speed, at half the matmul rate (the model-quality
issue's target) and at the whole of it: how fast the config can train on this machine when only the
step's efficiency changes (data loading, compilation and checkpoints not counted).
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import jax
import numpy as np

from maskgan_jax import runtime
from maskgan_jax.benchmarks.common import (accelerator_peak_gflops, cost_gflop, load_config, matmul_function,
                                           time_once)

VARIANTS = {"paper": "", "quickstart": "quickstart", "smoke": "smoke"}
PHASE_STAGES = {"maskvae": ("maskvae",), "dmn": ("dmn",), "ebst": ("ebst stage 1", "ebst stage 2"),
                "parser": ("parser",)}
# The fractions of the matmul rate (or accelerator peak) the budget table projects the phases at.
BUDGET_FRACTIONS = (0.5, 1.0)


@dataclasses.dataclass
class Row:
    """One timed step."""

    variant: str
    resolution: int
    dtype: str
    batch_per_device: int
    stage: str
    seconds: float
    gflop: float | None  # the whole global batch
    images: int  # the global batch
    pipeline_images_per_second: float | None = None
    phase: str = ""
    num_steps: int | None = None  # the phase's steps in the config, where the row runs its size and batch


def _random_vgg_params(seed: int = 0) -> dict[str, Any]:
    from maskgan_jax.models.vgg import vgg19_param_shapes  # (only when the config uses VGG19)
    rng = np.random.default_rng(seed)
    return {layer: {"kernel": rng.normal(0.0, np.sqrt(2.0 / (9 * s["kernel"][2])), s["kernel"]).astype(np.float32),
                    "bias": np.zeros(s["bias"], np.float32)}
            for layer, s in vgg19_param_shapes().items()}


def _batch(config, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    size, count = config.resolution, config.data.global_batch_size
    mask = rng.integers(0, config.num_classes, (count, size, size)).astype(np.int32)
    return {"image": rng.uniform(-1, 1, (count, size, size, 3)).astype(np.float32), "mask": mask,
            "mask_ref": np.roll(mask, 1, axis=0), "attributes": rng.integers(0, 2, (count, 40)).astype(np.int32)}


def phase_steps(config, phase: str) -> tuple[list[Callable[[], Any]], list[float | None]]:
    """The phase's compiled stages as zero-argument callables that run one step each (feeding their
    donated states forward), and each stage's GFLOP for the global batch."""
    from maskgan_jax import phases, sharding, state, steps, train  # (after runtime.setup)

    networks = state.build_networks(config)
    mesh = sharding.create_mesh(config.mesh)
    txs = {name: state.optimizer(config.phases[phase]) for name in phases.TRAINED[phase]}
    states, shardings = train.fresh_states(phase, networks, config, txs, mesh)
    replicated = sharding.replicated(mesh)
    guard = jax.device_put(steps.Guard.create(), replicated)
    guard_shardings = jax.tree_util.tree_map(lambda _: replicated, guard)
    batch = jax.device_put(_batch(config), sharding.batch_sharding(mesh))
    vgg = jax.device_put(_random_vgg_params(), replicated) if config.loss.weights.perceptual else None
    step = jax.device_put(np.int32(0), replicated)
    compiled = [fn.lower(states, guard, batch, step, vgg).compile()
                for fn in train.compile_steps(phase, networks, config, txs, shardings, guard_shardings, mesh)]
    carry = {"states": states, "guard": guard}

    def runner(stage_fn):
        def run_once():
            carry["states"], carry["guard"], metrics = stage_fn(carry["states"], carry["guard"], batch, step, vgg)
            return metrics
        return run_once

    return [runner(fn) for fn in compiled], [cost_gflop(fn) for fn in compiled]


def pipeline_rate(config, num_batches: int) -> float:
    """Images per second the real input pipeline delivers over synthetic faces at config.resolution
    (global batches of at least 2: the pipeline's mask_ref needs another example)."""
    from maskgan_jax import data, input_pipeline, sharding  # (imports TFDS)

    with tempfile.TemporaryDirectory() as workdir:
        config = config.copy_and_resolve_references()
        config.data.name = f"celebamask_hq/official_{config.resolution}"
        config.data.data_dir = None
        config.data.global_batch_size = max(2, config.data.global_batch_size)
        config.data.num_shards = None
        config.data.synthetic.num_faces = max(4 * config.data.global_batch_size, 40)
        data.prepare_dataset(config, Path(workdir))
        iterator = input_pipeline.create_iterator(data.pipeline_config(config, "dmn", Path(workdir)),
                                                  sharding.create_mesh(config.mesh), sharding.BATCH_AXES)
        jax.block_until_ready(next(iterator))
        start = time.perf_counter()
        for _ in range(num_batches):
            jax.block_until_ready(next(iterator))
        return num_batches * config.data.global_batch_size / (time.perf_counter() - start)


def run(args: argparse.Namespace) -> tuple[list[Row], float | None, jax.Device]:
    device = jax.devices()[0]
    matmul = matmul_function(args.matmul_size, device) if device.platform == "cpu" else None
    matmul_seconds = []
    rows = []
    for variant in args.variants:
        base = load_config(f"{args.config}:{VARIANTS[variant]}", args.set)
        for resolution in args.resolutions or [base.resolution]:
            for dtype in args.dtypes:
                for per_device in args.batches or [max(1, base.data.global_batch_size // jax.device_count())]:
                    config = base.copy_and_resolve_references()
                    config.resolution = resolution
                    config.model.compute_dtype = dtype
                    config.data.global_batch_size = per_device * jax.device_count()
                    rate = pipeline_rate(config, args.pipeline_batches) if args.input_pipeline else None
                    own_shape = (resolution == base.resolution
                                 and config.data.global_batch_size == base.data.global_batch_size)
                    for phase in args.phases:
                        stages, gflops = phase_steps(config, phase)
                        samples = [[] for _ in stages]
                        for stage in stages:
                            time_once(stage)  # compiled already; the first call allocates
                        for _ in range(args.repeats):
                            if matmul:
                                matmul_seconds.append(time_once(matmul[0]))
                            for stage, seconds in zip(stages, samples):
                                seconds.append(time_once(stage))
                        for name, seconds, gflop in zip(PHASE_STAGES[phase], samples, gflops):
                            rows.append(Row(variant, resolution, dtype, per_device, name, statistics.median(seconds),
                                            gflop, config.data.global_batch_size, rate, phase,
                                            config.phases[phase].num_steps if own_shape else None))
                        print(f"  {variant} {resolution} {dtype} b{per_device} {phase}: done", file=sys.stderr)
    matmul_rate = matmul[1] / statistics.median(matmul_seconds) if matmul and matmul_seconds else None
    return rows, matmul_rate, device


def format_table(rows: Sequence[Row], matmul_rate: float | None, device: jax.Device) -> str:
    """Markdown table; the fraction column is of the CPU matmul rate or the accelerator's dense peak."""
    baseline = "matmul" if matmul_rate else "peak"
    lines = [f"| config | size | dtype | batch/device | step | seconds | images/s | GFLOP/image | GFLOP/s | "
             f"fraction of {baseline} | pipeline images/s |", "|---" * 11 + "|"]
    for r in rows:
        reference = matmul_rate or accelerator_peak_gflops(device, r.dtype)
        rate = r.gflop / r.seconds if r.gflop is not None else None
        fraction = f"{rate / reference:.2f}" if rate is not None and reference else "-"
        pipeline = f"{r.pipeline_images_per_second:.1f}" if r.pipeline_images_per_second else "-"
        per_image = f"{r.gflop / r.images:.3g}" if r.gflop is not None else "-"
        achieved = f"{rate:.0f}" if rate is not None else "-"
        lines.append(f"| {r.variant} | {r.resolution} | {r.dtype} | {r.batch_per_device} | {r.stage} | "
                     f"{r.seconds:.3f} | {r.images / r.seconds:.1f} | {per_image} | {achieved} | {fraction} | "
                     f"{pipeline} |")
    return "\n".join(lines)


def format_budget(rows: Sequence[Row], matmul_rate: float | None, device: jax.Device) -> str:
    """Markdown table of each phase's training time at the config's own steps, size and batch: as
    measured, and at `BUDGET_FRACTIONS` of the matmul rate (CPU) or dense peak; a total per config.
    Empty when no row runs its config's own shape."""
    phases: dict[tuple, dict[str, list[Row]]] = {}
    for r in rows:
        if r.num_steps is not None:
            phases.setdefault((r.variant, r.resolution, r.dtype), {}).setdefault(r.phase, []).append(r)
    if not phases:
        return ""
    at = " | ".join(f"minutes at {f:g} of {'matmul' if matmul_rate else 'peak'}" for f in BUDGET_FRACTIONS)
    lines = [f"| config | size | dtype | phase | steps | seconds/step | GFLOP/step | TFLOP | minutes as measured | "
             f"{at} |", "|---" * (9 + len(BUDGET_FRACTIONS)) + "|"]
    for (variant, resolution, dtype), by_phase in phases.items():
        reference = matmul_rate or accelerator_peak_gflops(device, dtype)
        totals = [0.0] * (2 + len(BUDGET_FRACTIONS))
        for phase, stage_rows in by_phase.items():
            steps = stage_rows[0].num_steps
            seconds = sum(r.seconds for r in stage_rows)
            gflop = sum(r.gflop for r in stage_rows) if all(r.gflop is not None for r in stage_rows) else None
            minutes = [steps * seconds / 60] + [steps * gflop / (f * reference) / 60 if gflop and reference
                                                else float("nan") for f in BUDGET_FRACTIONS]
            tflop = steps * gflop / 1e3 if gflop is not None else float("nan")
            totals = [t + v for t, v in zip(totals, [tflop, *minutes])]
            lines.append(f"| {variant} | {resolution} | {dtype} | {phase} | {steps} | {seconds:.3f} | "
                         f"{gflop if gflop is not None else float('nan'):.2f} | {tflop:.1f} | "
                         + " | ".join(f"{m:.1f}" for m in minutes) + " |")
        lines.append(f"| {variant} | {resolution} | {dtype} | **all** | | | | {totals[0]:.1f} | "
                     + " | ".join(f"**{m:.1f}**" for m in totals[1:]) + " |")
    return "\n".join(lines)


def _csv(kind):
    return lambda text: [kind(x) for x in text.split(",") if x]


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m maskgan_jax.benchmarks.step_speed",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="configs/ebst.py", help="config file (variants by name below)")
    parser.add_argument("--variants", type=_csv(str), default=["quickstart", "paper"],
                        help=f"comma-separated, of {sorted(VARIANTS)}")
    parser.add_argument("--resolutions", type=_csv(int), default=[], help="default: each variant's own")
    parser.add_argument("--dtypes", type=_csv(str), default=["float32"], help="float32,bfloat16")
    parser.add_argument("--batches", type=_csv(int), default=[],
                        help="per-device batch sizes (default: each variant's own, the one training runs)")
    parser.add_argument("--phases", type=_csv(str), default=list(PHASE_STAGES), help=",".join(PHASE_STAGES))
    parser.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE",
                        help="config override for every variant, e.g. --set model.generator.ngf=32 (repeatable)")
    parser.add_argument("--repeats", type=int, default=3, help="timed calls per step (median)")
    parser.add_argument("--matmul_size", type=int, default=2048, help="CPU baseline: n x n fp32 matmul")
    parser.add_argument("--input_pipeline", action="store_true", help="also time the input pipeline")
    parser.add_argument("--pipeline_batches", type=int, default=20, help="batches timed with --input_pipeline")
    args = parser.parse_args(argv)
    for name, values, allowed in (("--variants", args.variants, VARIANTS), ("--phases", args.phases, PHASE_STAGES),
                                  ("--dtypes", args.dtypes, ("float32", "bfloat16"))):
        unknown = [v for v in values if v not in allowed]
        if unknown:
            parser.error(f"{name}: unknown {unknown}; expected some of {sorted(allowed)}")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    runtime.setup()
    args = parse_args(argv)
    rows, matmul_rate, device = run(args)
    print(f"Full training steps on {jax.device_count()} x {device.platform}: {device.device_kind}; "
          f"jax {jax.__version__}")
    if matmul_rate:
        print(f"{args.matmul_size}^2 fp32 matmul: {matmul_rate:.0f} GFLOP/s (median, interleaved with the steps)")
    print()
    print(format_table(rows, matmul_rate, device))
    budget = format_budget(rows, matmul_rate, device)
    if budget:
        print("\nTraining budget at each config's own size and batch (steps x step; data loading, compilation "
              "and checkpoints not counted):\n")
        print(budget)
    return 0


if __name__ == "__main__":
    sys.exit(main())
