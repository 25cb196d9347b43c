"""A params-only copy of a trained run, to share or to deploy:

    python -m maskgan_jax.export --checkpoint=RUN --out=DIR [--phase=ebst|dmn]

DIR holds one checkpoint step with the generator's params, the MaskVAE's params and BatchNorm
statistics, the face parser's and the attribute classifier's params when the run has them, and the
run's config: no optimiser
state, no discriminator, no blender, no data iterator (a few MB instead of a whole step directory).
Everything that loads a run loads DIR: `maskgan-edit --checkpoint=DIR`, `maskgan-parse
--checkpoint=DIR`, `maskgan_jax.load_editor(DIR, parser=DIR)`. --checkpoint and --out take any
etils.epath path (gs://...); DIR is written to a temporary sibling and renamed when complete, and an
existing DIR is refused.
"""

from __future__ import annotations

import argparse
import json
import os
from collections.abc import Sequence
from typing import Any

import jax
import numpy as np

from maskgan_jax import cli, convert, edit, runtime
from maskgan_jax.phases import GENERATOR_PHASES


def _on_host(tree: Any) -> Any:
    """Device arrays -> NumPy (orbax then writes one replica-free copy)."""
    return jax.tree_util.tree_map(np.asarray, tree)


def collect_items(checkpoint: str | os.PathLike, phase: str | None = None) -> tuple[dict[str, Any], dict[str, Any],
                                                                                      int, list[str]]:
    """The networks of a run to export: (items, config JSON, step, notes).

    items: {'generator': {'params'}, and when present 'mask_vae': {'params', 'batch_stats'},
    'parser': {'params'}, 'classifier': {'params'}}, as NumPy. config: the generator checkpoint's stored
    config, as stored. step: the generator's step. notes: what was absent, for the summary.
    """
    from maskgan_jax import classify, parse  # they import edit; only the exporter needs them all

    loaded = edit.load_generator(checkpoint, phase)
    config = json.loads((loaded.step_dir / edit.CONFIG_ITEM / "metadata").read_text())
    items = {edit.GENERATOR_ITEM: {"params": _on_host(loaded.params)}}
    notes = []
    try:
        vae = edit.load_mask_vae(checkpoint, loaded.mesh)
        items[edit.MASK_VAE_ITEM] = _on_host(dict(vae.variables))
    except FileNotFoundError:
        notes.append("no MaskVAE")
    try:
        face_parser = parse.load_parser(checkpoint, loaded.mesh)
        items[parse.PARSER_ITEM] = {"params": _on_host(face_parser.params)}
    except FileNotFoundError:
        notes.append("no parser")
    try:
        items[classify.CLASSIFIER_ITEM] = {"params": _on_host(classify.load_classifier(checkpoint).params)}
    except FileNotFoundError:
        notes.append("no attribute classifier")
    return items, config, int(loaded.step_dir.name), notes


def export(checkpoint: str | os.PathLike, out: str | os.PathLike, phase: str | None = None) -> tuple[Any, list[str]]:
    """Writes the params-only copy of `checkpoint` at `out`; returns (out, names of the items written)."""
    items, config, step, _ = collect_items(checkpoint, phase)
    written = convert.write_params_checkpoint(out, items, config, step=step)
    return written, sorted(items)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m maskgan_jax.export",
                                     description="A params-only copy of a trained MaskGAN run (generator, and the "
                                                 "MaskVAE and parser when present) that every loader reads.")
    parser.add_argument("--checkpoint", required=True, help="training workdir, phase or step directory (gs:// ok)")
    parser.add_argument("--out", required=True, help="the directory to create (must not exist; gs:// ok)")
    parser.add_argument("--phase", choices=GENERATOR_PHASES, default=None,
                        help="with a workdir: the generator's phase (default: the newest, ebst before dmn)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    runtime.setup()
    args = build_parser().parse_args(argv)
    out, names = export(args.checkpoint, args.out, args.phase)
    print(f"{out}: {', '.join(names)} (params only); load it with maskgan-edit --checkpoint={out}")
    return 0


def run() -> None:
    """Console script `maskgan-export` (also `python -m maskgan_jax.export`)."""
    cli.run("python -m maskgan_jax.export", main)


if __name__ == "__main__":
    run()
