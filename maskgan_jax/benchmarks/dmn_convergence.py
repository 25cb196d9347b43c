r"""How many DMN steps until the generator beats the editing benchmark's baselines?

A convergence study of one config's DMN phase, in three steps that may run on different machines:

    # 1. here (TFDS and the benchmark available): the training split and the benchmark's inputs
    python -m maskgan_jax.benchmarks.dmn_convergence export --config=configs/ebst.py:quickstart \
        --data_dir=DIR --out=conv/data.npz
    # 2. anywhere JAX runs (e.g. an accelerator with no TFDS): train, snapshotting the generator
    python -m maskgan_jax.benchmarks.dmn_convergence train --config=configs/ebst.py:quickstart \
        --data=conv/data.npz --out=conv/run.npz --num_steps=20000 --snapshots=1000,5000,20000
    # 3. here: score every snapshot with the benchmark and print the tables and each snapshot's verdict
    #    (--parser: mask following too; --inception: KID and FID)
    python -m maskgan_jax.benchmarks.dmn_convergence score --runs=conv/run.npz [--parser=RUN] \
        [--inception=inception.npz]

`train` needs only jax, flax, optax, orbax, numpy and ml_collections (no TFDS): it samples batches
from the exported arrays (with the input pipeline's random flip), runs the DMN phase's own jitted step
(`steps.make_dmn_step`) on one device, and at each snapshot edits the benchmark's inputs, keeping
only the uint8 results (a few MB), which `score` rates with the benchmark's own code. The
learning-rate schedule follows --num_steps.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from collections.abc import Iterable

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from maskgan_jax import edit as edit_lib
from maskgan_jax import edit_tiers
from maskgan_jax import runtime
from maskgan_jax.benchmarks.common import load_config
from maskgan_jax import state as state_lib
from maskgan_jax import steps as steps_lib
from tfds_celebamask import labels

NETWORKS = ("generator", "discriminator")


# ----------------------------------------------------------------------------- 1. export


def export(config: ml_collections.ConfigDict, data_dir: str, out: Path, num_per_edit: int) -> None:
    """Writes into one .npz: the training split (uint8 images (N, R, R, 3), masks (N, R, R)), the label
    flip permutation, and the benchmark's inputs (bench_images, bench_labels_t, bench_labels_src)."""
    import tensorflow_datasets as tfds  # not on accelerator images

    import tfds_celebamask
    from maskgan_jax import evaluate
    tfds_celebamask.register()

    source = tfds.data_source(config.data.name, split=config.data.split, data_dir=data_dir, download=False)
    examples = [source[i] for i in range(len(source))]
    held_out = evaluate.held_out_examples(config.resolution, num_per_edit)
    out.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(
        out, images=np.stack([e["image"] for e in examples]),
        masks=np.stack([np.asarray(e["mask"]).reshape(e["mask"].shape[:2]) for e in examples]),
        num_per_edit=num_per_edit,
        bench_images=np.stack([e.target_image for e in held_out]),
        bench_labels_t=np.stack([e.target_labels for e in held_out]),
        bench_labels_src=np.stack([e.wanted_labels for e in held_out]))
    print(f"{out}: {len(examples)} training faces of {config.data.name}; {len(held_out)} benchmark edits")


# ----------------------------------------------------------------------------- 2. train


def sample_batch(rng: np.random.Generator, images: np.ndarray, masks: np.ndarray, batch_size: int,
                 random_flip: bool) -> dict[str, np.ndarray]:
    """A uniformly drawn batch: image float32 (B, R, R, 3) in [-1, 1], mask int32 (B, R, R); each
    example flipped with probability 1/2 by the input pipeline's own `labels.flip_example`."""
    index = rng.integers(0, len(images), batch_size)
    flips = rng.random(batch_size) < 0.5 if random_flip else np.zeros(batch_size, bool)
    pairs = [labels.flip_example(images[i], masks[i]) if flip else (images[i], masks[i])
             for i, flip in zip(index, flips)]
    image = np.stack([image for image, _ in pairs])
    mask = np.stack([mask for _, mask in pairs]).astype(np.int32)
    return {"image": image.astype(np.float32) / np.float32(127.5) - np.float32(1), "mask": mask}


def make_editor(module):
    """Jitted (params, uint8 images, labels_t, labels_src) -> uint8 generated images (N, R, R, 3):
    `edit.edit_images`' result; `score` applies the keep-unedited blend."""

    @jax.jit
    def generate(params, images, labels_t, labels_src):
        result, _ = edit_lib.edit_images(module, params, images, labels_t, labels_src, dilation=0, feather=0)
        return result

    return generate


def train(config: ml_collections.ConfigDict, data: Path, out: Path, num_steps: int, snapshots: Iterable[int],
          max_seconds: float) -> None:
    """Trains the DMN phase for `num_steps` (or until `max_seconds`). At each snapshot step, edits the
    benchmark's inputs; writes their results (outputs_STEP, uint8) and the log to the .npz `out`."""
    config = config.copy_and_resolve_references()
    config.phases.dmn.num_steps = num_steps  # the learning-rate schedule spans this run
    arrays = np.load(data)
    images, masks = arrays["images"], arrays["masks"]
    bench = [jnp.asarray(arrays[k]) for k in ("bench_images", "bench_labels_t", "bench_labels_src")]
    networks = state_lib.build_networks(config)
    generate = make_editor(networks.generator)
    txs = {name: state_lib.optimizer(config.phases.dmn) for name in NETWORKS}
    states = {name: state_lib.new_net_state(
        state_lib.init_variables(name, networks, config, state_lib.init_rng(name, config)), txs[name])
        for name in NETWORKS}  # the same initial networks as main.py's DMN phase
    step_fn = jax.jit(steps_lib.make_dmn_step(networks, config, txs["generator"], txs["discriminator"]),
                      donate_argnums=(0, 1))
    guard = steps_lib.Guard.create()
    rng = np.random.default_rng(config.data.shuffle_seed)
    saved = {"config": np.array(config.to_json()), "device": np.array(jax.devices()[0].device_kind),
             "num_per_edit": arrays["num_per_edit"]}
    snapshots = set(snapshots)
    log = []
    start = time.perf_counter()
    for step in range(1, num_steps + 1):
        batch = sample_batch(rng, images, masks, config.data.global_batch_size, config.data.random_flip)
        states, guard, metrics = step_fn(states, guard, batch, jnp.asarray(step), None)
        elapsed = time.perf_counter() - start
        last = step == num_steps or elapsed > max_seconds
        if step % config.phases.dmn.log_every_steps == 0 or step in snapshots or last:
            log.append({"step": step, "seconds": round(elapsed, 1),
                        **{k: float(v) for k, v in jax.device_get(metrics).items()}})
            print(json.dumps(log[-1]), flush=True)
        if step in snapshots or last:
            saved[f"outputs_{step}"] = np.asarray(generate(states["generator"].params, *bench))
            np.savez_compressed(out, log=np.array(json.dumps(log)), **saved)
        if last:
            break
    if int(guard.first_bad_step) >= 0:
        print(f"non-finite metrics first at step {int(guard.first_bad_step)}", flush=True)


# ----------------------------------------------------------------------------- 3. score


def score(runs: list[Path], out: Path | None, parser: str | None = None, inception: str | None = None,
          realism_per_edit: int = 20) -> None:
    """Scores every snapshot of every run next to the benchmark's reference rows, each also with
    --keep_unedited (`edit`'s blend, applied here to the rounded result: within half a level of `edit`'s
    own), with the benchmark's pixel scores; given a trained parser (a workdir, phase or step
    directory), its mask following; given the FID Inception (.npz of `convert_inception`), KID and FID of
    the snapshots and the mean-colour painter on the first `realism_per_edit` faces of each kind (the
    quickstart benchmark's sample). Prints the benchmark's tables and each snapshot's "beats the
    baselines" verdict, and writes the records to `out` when given."""
    from maskgan_jax import edit_report, evaluate

    generated = {}
    for run in runs:
        saved = np.load(run)
        print(f"{run}: trained on {saved['device']}; last log {json.loads(str(saved['log']))[-1]}")
        num_per_edit = int(saved["num_per_edit"])
        resolution = int(json.loads(str(saved["config"]))["resolution"])
        for key in sorted((k for k in saved.files if k.startswith("outputs_")), key=lambda k: int(k.split("_")[1])):
            generated[f"{run.stem}@{key.split('_')[1]}"] = saved[key]
    examples = evaluate.held_out_examples(resolution, num_per_edit)
    rows = {name: images for name, images in evaluate.reference_rows(examples).items()
            if name in (evaluate.TRUTH, evaluate.UNEDITED, evaluate.MEAN_COLOUR, evaluate.COLOUR_FIT)}
    rows.update(generated)
    rows = evaluate.with_keep_unedited(rows, examples, *edit_lib.default_margins(resolution))
    parse = None if parser is None else evaluate.load_parse_fn(
        parser, resolution, evaluate.HELD_OUT_SEED, batch_size=64)[0]
    features = None
    if inception is not None:
        skipped = []
        features = evaluate.load_features(inception, skipped)
        if features is None:
            raise FileNotFoundError(skipped[0])
    realism = [name + suffix for name in (evaluate.MEAN_COLOUR, *generated) for suffix in ("", edit_tiers.KEEP_SUFFIX)]
    records = evaluate.score_rows(rows, examples, parse, features, realism_methods=realism,
                                  realism_per_edit=realism_per_edit, num_resamples=200)
    if out is not None:
        out.write_text(json.dumps(records, indent=1) + "\n")
    print(edit_report.markdown_tables(records))
    print(snapshot_verdicts(records, list(generated)))


def snapshot_verdicts(records: list[dict], snapshots: list[str]) -> str:
    """The benchmark's "beats the baselines" tier for each snapshot, plain and composited: the quickstart's
    bar (without `score`'s --inception, KID's criteria are listed as not evaluated)."""
    from maskgan_jax import evaluate

    kinds = [kind for kind in evaluate.EDIT_KINDS if any(r["edit"] == kind for r in records)]
    verdicts = [edit_tiers.beats_the_baselines(name + suffix, records, kinds)
                for name in snapshots for suffix in ("", edit_tiers.KEEP_SUFFIX)]
    return "\n".join(["", f"### {edit_tiers.BEATS_BASELINES}", "", edit_tiers.format_verdicts(verdicts)])


def main(argv: list[str] | None = None) -> int:
    runtime.setup()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    for name in ("export", "train"):
        command = sub.add_parser(name)
        command.add_argument("--config", required=True, help="configs/ebst.py[:variant]")
        command.add_argument("--set", action="append", default=[], help="config override field=value (repeatable)")
        command.add_argument("--out", type=Path, required=True)
    sub.choices["export"].add_argument("--data_dir", required=True, help="TFDS data dir holding config.data.name")
    sub.choices["export"].add_argument("--num_per_edit", type=int, default=50)
    sub.choices["train"].add_argument("--data", type=Path, required=True, help=".npz written by `export`")
    sub.choices["train"].add_argument("--num_steps", type=int, required=True)
    sub.choices["train"].add_argument("--snapshots", default="", help="comma-separated steps to keep")
    sub.choices["train"].add_argument("--max_seconds", type=float, default=float("inf"))
    scorer = sub.add_parser("score")
    scorer.add_argument("--runs", type=Path, nargs="+", required=True)
    scorer.add_argument("--out", type=Path, default=None, help="JSON records (optional)")
    scorer.add_argument("--parser", default=None, help="a trained parser (workdir, phase or step directory): "
                                                       "adds mask following")
    scorer.add_argument("--inception", default=None, help="the FID Inception .npz (make inception-weights): "
                                                          "adds KID and FID")
    scorer.add_argument("--realism_per_edit", type=int, default=20,
                        help="faces per edit kind that KID/FID read (with --inception)")
    args = parser.parse_args(argv)
    if args.command == "score":
        score(args.runs, args.out, args.parser, args.inception, args.realism_per_edit)
        return 0
    config = load_config(args.config, args.set)
    if args.command == "export":
        export(config, args.data_dir, args.out, args.num_per_edit)
    else:
        snapshots = [int(s) for s in args.snapshots.split(",") if s]
        train(config, args.data, args.out, args.num_steps, snapshots, args.max_seconds)
    return 0


if __name__ == "__main__":
    sys.exit(main())
