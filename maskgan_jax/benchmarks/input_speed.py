r"""Cost of the training input pipeline per batch, under each way of reading: what the loop pays.

    python -m maskgan_jax.benchmarks.input_speed                      # the quickstart's data
    python -m maskgan_jax.benchmarks.input_speed --resolution=256 --num_faces=200

Builds synthetic faces in TFDS's layout (a temporary folder), then times `--batches` global batches
of `input_pipeline.create_iterator` (the iterator `main.py` reads, flips and mask_ref included) for
each reading mode, after one untimed epoch (so a cache is full, as in every epoch after a run's
first). Columns: wall milliseconds per batch, CPU milliseconds per batch (every thread of this
process: on a machine whose cores the training step already fills, this is the time the step
loses), images per second. The first row, grain's own defaults (16 read-ahead threads, a
500-example buffer, nothing cached), is the baseline, measured in the same run.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import jax

from maskgan_jax import runtime
from maskgan_jax.benchmarks.common import load_config

# (label, read_threads, prefetch_buffer_size, cache_decoded)
MODES = (
    ("grain defaults (baseline)", 16, 500, False),
    ("on demand", 0, 0, False),
    ("cached, 16 threads / 500", 16, 500, True),
    ("cached, on demand", 0, 0, True),
)


def time_mode(config, workdir: Path, num_batches: int) -> tuple[float, float]:
    """(wall, CPU) seconds per global batch of the iterator `config` describes, after one epoch."""
    from maskgan_jax import data, input_pipeline, sharding  # (imports TFDS)

    pipeline = data.pipeline_config(config, "dmn", workdir)
    iterator = input_pipeline.create_iterator(pipeline, sharding.create_mesh(config.mesh), sharding.BATCH_AXES)
    for _ in range(config.data.synthetic.num_faces // config.data.global_batch_size + 1):
        jax.block_until_ready(next(iterator))
    wall, cpu = time.perf_counter(), time.process_time()
    for _ in range(num_batches):
        jax.block_until_ready(next(iterator))
    return (time.perf_counter() - wall) / num_batches, (time.process_time() - cpu) / num_batches


def run(args: argparse.Namespace, config) -> list[tuple[str, float, float, float]]:
    """(label, wall s, CPU s, images/s) per mode of MODES, on `config` at args.resolution (0: its own)."""
    from maskgan_jax import data  # (imports TFDS)

    config = config.copy_and_resolve_references()
    resolution = args.resolution or config.resolution
    config.resolution = resolution
    config.data.name = f"celebamask_hq/official_{resolution}"
    config.data.data_dir = None
    config.data.synthetic.num_faces = args.num_faces
    rows = []
    with tempfile.TemporaryDirectory() as workdir:
        data.prepare_dataset(config, Path(workdir))
        for label, threads, buffer, cached in MODES:
            config.data.update(dict(read_threads=threads, prefetch_buffer_size=buffer, cache_decoded=cached))
            wall, cpu = time_mode(config, Path(workdir), args.batches)
            rows.append((label, wall, cpu, config.data.global_batch_size / wall))
    return rows


def format_table(rows, resolution: int, batch: int) -> str:
    lines = [f"| reading ({resolution} px, global batch {batch}) | wall ms / batch | CPU ms / batch | images/s |",
             "|---|---|---|---|"]
    lines += [f"| {label} | {wall * 1e3:.1f} | {cpu * 1e3:.1f} | {rate:.0f} |" for label, wall, cpu, rate in rows]
    return "\n".join(lines)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m maskgan_jax.benchmarks.input_speed",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="configs/ebst.py:quickstart", help="config file[:variant]")
    parser.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE",
                        help="config override, e.g. --set data.global_batch_size=16 (repeatable)")
    parser.add_argument("--resolution", type=int, default=0, help="face size (default: the config's)")
    parser.add_argument("--num_faces", type=int, default=400, help="synthetic faces written (an epoch)")
    parser.add_argument("--batches", type=int, default=200, help="batches timed per mode")
    args = parser.parse_args(argv)
    if args.num_faces < 2 or args.batches < 1:
        parser.error(f"--num_faces={args.num_faces} and --batches={args.batches}: expected at least 2 and 1")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    runtime.setup()
    args = parse_args(argv)
    config = load_config(args.config, args.set)
    rows = run(args, config)
    print(f"Input pipeline on {jax.process_count()} process(es), {args.num_faces} synthetic faces, "
          f"{args.batches} batches per mode after one untimed epoch")
    print()
    print(format_table(rows, args.resolution or config.resolution, config.data.global_batch_size))
    return 0


if __name__ == "__main__":
    sys.exit(main())
