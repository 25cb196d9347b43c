"""The MaskVAE study (maskgan_jax.benchmarks.mask_vae_study): its scores on hand-made label maps, and a
two-step run of the smoke config end to end."""

import numpy as np
import pytest

from maskgan_jax.benchmarks import mask_vae_study
from tfds_celebamask import labels

EYE, MOUTH, SKIN = labels.CLASS_ID["l_eye"], labels.CLASS_ID["mouth"], labels.CLASS_ID["skin"]


def test_parse_variant_reads_label_and_overrides_and_names_bad_input():
    assert mask_vae_study.parse_variant("wide:model.mask_vae.base_width=32,seed=1") == (
        "wide", ["model.mask_vae.base_width=32", "seed=1"])
    assert mask_vae_study.parse_variant("as is:") == ("as is", [])
    with pytest.raises(ValueError, match="'model.x=1'"):
        mask_vae_study.parse_variant("model.x=1")


def test_parts_kept_counts_only_parts_both_masks_have():
    masks = np.full((2, 4, 4), SKIN)
    masks[:, 0, 0] = EYE
    masks[0, 3, 3] = MOUTH  # face 0 has a mouth, its reference (face 1) does not: not counted
    refs = masks[::-1].copy()
    inter = np.full((2, 4, 4), SKIN)
    inter[0, 1, 1] = EYE  # face 0 keeps its eye (elsewhere), face 1 loses it
    assert mask_vae_study.parts_kept(masks, refs, inter) == pytest.approx(0.5)


def test_scores_of_the_truth_and_of_a_mask_without_eyes():
    truth = np.full((1, 8, 8), SKIN)
    truth[0, 2:4, 2:4] = EYE
    perfect = mask_vae_study.scores(truth, truth, labels.NUM_CLASSES)
    assert perfect["pixel_accuracy"] == perfect["mean_iou"] == perfect["l_eye"] == 1.0
    no_eyes = mask_vae_study.scores(truth, np.full_like(truth, SKIN), labels.NUM_CLASSES)
    assert no_eyes["l_eye"] == 0.0 and no_eyes["pixel_accuracy"] == pytest.approx(60 / 64)


def test_two_steps_of_the_smoke_config_print_the_table(tmp_path, capsys):
    rng = np.random.default_rng(0)
    masks = rng.integers(0, labels.NUM_CLASSES, (6, 64, 64), dtype=np.uint8)
    np.savez(tmp_path / "data.npz", masks=masks, bench_labels_t=masks[:3])
    assert mask_vae_study.main([f"--data={tmp_path / 'data.npz'}", "--config=configs/ebst.py:smoke",
                                "--num_steps=2", "--snapshots=1", "--variant=tiny:"]) == 0
    rows = [line for line in capsys.readouterr().out.splitlines() if line.startswith("| tiny |")]
    assert [row.split(" | ")[1] for row in rows] == ["1", "2"]
    assert all(len(row.split("|")) == 2 + 3 + 2 + len(mask_vae_study.SMALL_PARTS) + 1 for row in rows)
