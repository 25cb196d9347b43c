r"""How well does a MaskVAE config reconstruct the small parts that EBST's simulated edits need?

EBST edits a training mask by stepping in the MaskVAE's latent (`steps.simulated_edits`): M_inter and
M_outer are the decoder's argmax at z_t +- (z_ref - z_t) / lambda_inter. Where the decoder drops the
eyes, brows or mouth, those simulated edits have none either, and stage 1 teaches the generator to
render faces without them. This study trains the MaskVAE phase's own jitted step
(`steps.make_maskvae_step`) on the arrays `dmn_convergence export` writes, then decodes held-out
masks (the editing benchmark's target masks) and prints, per config and snapshot step, the pixel
accuracy, mean IoU and each small part's IoU of the reconstructions (decoder argmax at the posterior
mean), and how often M_inter (built towards another held-out mask) keeps each small part that both
masks have:

    python -m maskgan_jax.benchmarks.mask_vae_study --data=conv/data.npz --num_steps=2000 \
        --snapshots=600,2000 --variant=quickstart: \
        --variant="latent 256:model.mask_vae.latent_dim=256"

Each --variant is `label:field=value,field=value` over configs/ebst.py:quickstart (an empty list: the
quickstart as is). Needs no TFDS; one device.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from maskgan_jax import metrics, runtime
from maskgan_jax import state as state_lib
from maskgan_jax import steps as steps_lib
from maskgan_jax.benchmarks.common import load_config
from maskgan_jax.benchmarks.dmn_convergence import sample_batch
from maskgan_jax.models import one_hot_mask
from tfds_celebamask import labels

# The parts whose loss makes simulated edits coarse (README, the model-quality study).
SMALL_PARTS = ("l_eye", "r_eye", "l_brow", "r_brow", "nose", "mouth", "u_lip", "l_lip")


def parse_variant(text: str) -> tuple[str, list[str]]:
    """'label:field=value,field=value' -> (label, ['field=value', ...])."""
    label, sep, overrides = text.partition(":")
    if not sep or not label:
        raise ValueError(f"--variant {text!r}: expected 'label:field=value,...' (the list may be empty)")
    return label, [item for item in overrides.split(",") if item]


def scores(truth: np.ndarray, predicted: np.ndarray, num_classes: int) -> dict[str, float]:
    """Pixel accuracy, mean IoU (classes present) and per-class IoU of int label maps (N, R, R)."""
    confusion = metrics.confusion_matrix(truth, predicted, num_classes)
    per_class = metrics.iou_per_class(confusion)
    row = {"pixel_accuracy": float(np.trace(confusion) / confusion.sum()), "mean_iou": metrics.mean_iou(confusion)}
    row.update({name: float(per_class[labels.CLASS_NAMES.index(name)]) for name in SMALL_PARTS})
    return row


def parts_kept(masks: np.ndarray, refs: np.ndarray, inter: np.ndarray) -> float:
    """Over SMALL_PARTS and faces where both M_t and M_ref have the part: the fraction where M_inter has it."""
    kept = []
    for name in SMALL_PARTS:
        label = labels.CLASS_ID[name]
        both = np.any(masks == label, axis=(1, 2)) & np.any(refs == label, axis=(1, 2))
        kept.append(np.any(inter == label, axis=(1, 2))[both])
    return float(np.mean(np.concatenate(kept)))


def make_decoders(networks, config: ml_collections.ConfigDict):
    """Jitted (variables, masks (N, R, R) int, refs (N, R, R) int) -> (reconstructions, M_inter), int32."""

    @jax.jit
    def decode(variables, masks, refs):
        vae = networks.mask_vae
        means, _ = vae.apply(variables, one_hot_mask(masks, config.num_classes), False, method=vae.encode)
        logits = vae.apply(variables, means, False, method=vae.decode)
        inter, _ = steps_lib.simulated_edits(networks, config, variables, masks, refs)
        return jnp.argmax(logits, -1).astype(jnp.int32), inter

    return decode


def run_variant(config: ml_collections.ConfigDict, train_masks: np.ndarray, held_out: np.ndarray,
                num_steps: int, snapshots: set[int]) -> list[dict[str, float]]:
    """Trains the MaskVAE phase for num_steps (its schedule spans them); scores each snapshot."""
    config = config.copy_and_resolve_references()
    config.phases.maskvae.num_steps = num_steps
    networks = state_lib.build_networks(config)
    tx = state_lib.optimizer(config.phases.maskvae)
    variables = state_lib.init_variables("mask_vae", networks, config, state_lib.init_rng("mask_vae", config))
    states = {"mask_vae": state_lib.new_net_state(variables, tx)}
    step_fn = jax.jit(steps_lib.make_maskvae_step(networks, config, tx), donate_argnums=(0,))
    decode = make_decoders(networks, config)
    guard = steps_lib.Guard.create()
    rng = np.random.default_rng(config.data.shuffle_seed)
    refs = np.roll(held_out, 1, axis=0)  # each mask's simulated edit heads towards another face's
    placeholder_images = np.zeros(train_masks.shape + (3,), np.uint8)
    rows, start = [], time.perf_counter()
    for step in range(1, num_steps + 1):
        batch = sample_batch(rng, placeholder_images, train_masks, config.data.global_batch_size,
                             config.data.random_flip)
        states, guard, _ = step_fn(states, guard, {"mask": batch["mask"]}, jnp.asarray(step), None)
        if step in snapshots or step == num_steps:
            state = states["mask_vae"]
            recon, inter = decode({"params": state.params, "batch_stats": state.batch_stats}, held_out, refs)
            rows.append({"step": step, "seconds": time.perf_counter() - start,
                         "inter_parts_kept": parts_kept(held_out, refs, np.asarray(inter)),
                         **scores(held_out, np.asarray(recon), config.num_classes)})
    return rows


def print_table(results: dict[str, list[dict[str, float]]]) -> None:
    columns = ("pixel_accuracy", "mean_iou") + SMALL_PARTS + ("inter_parts_kept",)
    print("Reconstructions: pixel accuracy, mean IoU, IoU of each small part; M_inter: fraction of small parts kept")
    print("| variant | step | seconds | " + " | ".join(columns) + " |")
    print("|---|---|---|" + "---|" * len(columns))
    for label, rows in results.items():
        for row in rows:
            print(f"| {label} | {row['step']} | {row['seconds']:.0f} | "
                  + " | ".join(f"{row[c]:.3f}" for c in columns) + " |")


def main(argv: Sequence[str] | None = None) -> int:
    runtime.setup()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True, help=".npz written by `dmn_convergence export`")
    parser.add_argument("--config", default="configs/ebst.py:quickstart")
    parser.add_argument("--variant", action="append", default=[], help="label:field=value,... (repeatable)")
    parser.add_argument("--num_steps", type=int, required=True)
    parser.add_argument("--snapshots", default="", help="comma-separated steps to score (and the last)")
    args = parser.parse_args(argv)
    arrays = np.load(args.data)
    snapshots = {int(s) for s in args.snapshots.split(",") if s}
    results = {}
    for text in args.variant or ["quickstart:"]:
        label, overrides = parse_variant(text)
        config = load_config(args.config, overrides)
        results[label] = run_variant(config, arrays["masks"], arrays["bench_labels_t"], args.num_steps, snapshots)
        print(f"{label}: done in {results[label][-1]['seconds']:.0f} s", flush=True)
    print_table(results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
