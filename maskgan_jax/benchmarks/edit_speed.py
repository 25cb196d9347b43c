"""How fast editing is for a user: the first result of `maskgan-edit` from a cold start and from a
warm compilation cache, and the steady edits per second, at several resolutions. Prints a Markdown table.

    python -m maskgan_jax.benchmarks.edit_speed [--resolutions 64,256,512] [--batch_size 1]
        [--steady_edits 8] [--generator paper|quickstart]

For each resolution a generator checkpoint with random weights (the paper's sizes by default: ngf 64,
4 downsamplings, 4 residual blocks, as the public 512x512 generator) is written as
`maskgan_jax.convert` writes one, with a synthetic face and its masks as PNG files at that size. Then:
- cold: `maskgan-edit` in a fresh process with an empty compilation cache (imports, loading,
  compiling, the edit, writing the PNGs): the CLI's own "first result N s after start" and the
  process's wall time;
- warm: the same command again, with the cache the cold run filled (compilation skipped);
- steady: in this process, `Editor.edit` on batches of --batch_size faces after one untimed call:
  edits per second over --steady_edits edits (median of 3 rounds).
Timings depend on the machine's load; the table names the backend and device count.
"""

from __future__ import annotations

import argparse
import re
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

GENERATORS = {
    "paper": dict(ngf=64, n_downsample=4, n_blocks=4, encoder_widths=(16, 32, 64), n_encoder_deep=3),
    "quickstart": dict(ngf=16, n_downsample=3, n_blocks=2, encoder_widths=(16, 32, 64), n_encoder_deep=3),
}
_FIRST_RESULT = re.compile(r"first result ([0-9.]+) s after start")


def write_inputs(folder: Path, resolution: int, generator: str) -> Path:
    """A random-weight generator checkpoint and face.png / mask.png / wanted.png at `resolution`."""
    import jax

    from maskgan_jax import convert, mask_io
    from maskgan_jax.models import DenseMappingNetwork
    from tfds_celebamask import synthetic

    module = DenseMappingNetwork(**GENERATORS[generator])
    params = jax.jit(module.init)(jax.random.key(0), *[jax.numpy.zeros(s.shape, s.dtype)
                                                       for s in convert._example_inputs(module)])["params"]
    checkpoint = convert.write_params_checkpoint(
        folder / "generator", {"generator": {"params": params}},
        convert.inference_config(module, resolution, f"random weights ({generator} sizes)"))
    geometry, style = synthetic.sample_face(synthetic.face_rng(0, 0))
    image, mask = synthetic.render(geometry, style, resolution)
    _, smiling = synthetic.render(synthetic.EDITS["smile"](geometry), style, resolution)
    mask_io.write_image(folder / "face.png", image)
    mask_io.write_mask(folder / "mask.png", mask)
    mask_io.write_mask(folder / "wanted.png", smiling)
    return Path(str(checkpoint))


def first_result(folder: Path, checkpoint: Path, cache: Path) -> tuple[float, float]:
    """(the CLI's seconds to its first result, the process's wall seconds) of one maskgan-edit run."""
    command = [sys.executable, "-m", "maskgan_jax.edit", f"--checkpoint={checkpoint}", f"--image={folder / 'face.png'}",
               f"--mask={folder / 'mask.png'}", f"--wanted={folder / 'wanted.png'}", f"--out={folder / 'out.png'}",
               f"--jax_cache_dir={cache}"]
    started = time.perf_counter()
    completed = subprocess.run(command, capture_output=True, text=True, check=False)
    wall = time.perf_counter() - started
    if completed.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed:\n{completed.stderr[-2000:]}")
    return float(_FIRST_RESULT.search(completed.stdout).group(1)), wall


def steady_rate(checkpoint: Path, resolution: int, batch_size: int, edits: int) -> float:
    """Edits per second of Editor.edit on batches of `batch_size` (median of 3 rounds of `edits`)."""
    import numpy as np

    from maskgan_jax import edit
    from tfds_celebamask import synthetic

    editor = edit.Editor(edit.load_generator(checkpoint), batch_size=batch_size)
    geometry, style = synthetic.sample_face(synthetic.face_rng(0, 1))
    image, mask = synthetic.render(geometry, style, resolution)
    _, smiling = synthetic.render(synthetic.EDITS["smile"](geometry), style, resolution)
    images, masks, wanted = (np.repeat(a[None], editor.batch_size, axis=0) for a in (image, mask, smiling))
    editor.edit(images, masks, wanted)  # compiles
    rounds = []
    for _ in range(3):
        started, done = time.perf_counter(), 0
        while done < edits:
            editor.edit(images, masks, wanted)
            done += editor.batch_size
        rounds.append(done / (time.perf_counter() - started))
    return statistics.median(rounds)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m maskgan_jax.benchmarks.edit_speed", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--resolutions", default="64,256", help="comma-separated sides, e.g. 64,256,512")
    parser.add_argument("--generator", choices=sorted(GENERATORS), default="paper")
    parser.add_argument("--batch_size", type=int, default=1, help="faces per call for the steady rate")
    parser.add_argument("--steady_edits", type=int, default=8, help="edits per timed round")
    args = parser.parse_args(argv)

    from maskgan_jax import runtime

    runtime.setup()
    import jax

    rows = []
    for resolution in (int(r) for r in args.resolutions.split(",")):
        with tempfile.TemporaryDirectory() as tmp:
            folder = Path(tmp)
            checkpoint = write_inputs(folder, resolution, args.generator)
            cold = first_result(folder, checkpoint, folder / "jax_cache")
            warm = first_result(folder, checkpoint, folder / "jax_cache")
            rate = steady_rate(checkpoint, resolution, args.batch_size, args.steady_edits)
        rows.append(f"| {resolution} | {cold[0]:.1f} ({cold[1]:.1f}) | {warm[0]:.1f} ({warm[1]:.1f}) | {rate:.2f} |")
        print(rows[-1], flush=True)
    devices = jax.devices()
    print(f"\nmaskgan-edit, {args.generator} generator, {devices[0].platform} x {len(devices)} "
          f"({devices[0].device_kind}); steady batch {args.batch_size}")
    print("| resolution | first result cold, s (process wall) | first result warm, s (process wall) | steady edits/s |")
    print("|---|---|---|---|")
    print("\n".join(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
