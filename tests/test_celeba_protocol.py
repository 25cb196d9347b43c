"""The CelebAMask-HQ protocol (maskgan_jax.celeba_protocol): its metrics on cases whose answer is known,
the smile edit on a hand-made mask, its input errors, and `python -m maskgan_jax.evaluate --data=...`
end to end on the builder's dummy data with a smoke-size workdir whose parser phase (parser and
attribute classifier) is trained here."""

from __future__ import annotations

import json
import pathlib
import subprocess
import sys

import numpy as np
import pytest
from paint_fixtures import make_workdir
from smoke_runs import REPO, subprocess_env

from maskgan_jax import celeba_protocol as protocol
from maskgan_jax import edit, edit_scores, evaluate, fid, metrics
from maskgan_jax.models import inception
from tfds_celebamask import build as build_lib
from tfds_celebamask import labels
from tfds_celebamask.celebamask_hq import celebamask_hq_dataset_builder as cmhq

NAME = "celebamask_hq/first28k_64"  # dummy data: train ids 0, 1, 2 (smiling), 2001; test 28000 (smiling), 29999
SKIN, MOUTH, U_LIP, L_LIP, NOSE = (labels.CLASS_ID[n] for n in ("skin", "mouth", "u_lip", "l_lip", "nose"))


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory) -> pathlib.Path:
    data_dir = tmp_path_factory.mktemp("tfds")
    build_lib.build("first28k_64", pathlib.Path(cmhq.__file__).parent / "dummy_data", data_dir)
    return data_dir


# ----------------------------------------------------------------------------- metrics with known answers


def test_reconstruction_of_the_real_faces_scores_the_ceiling():
    rng = np.random.default_rng(0)
    reals = rng.integers(0, 256, (40, 16, 16, 3)).astype(np.uint8)
    features = rng.normal(size=(40, 16))
    records = {r["metric"]: r for r in protocol.reconstruction_records("real", reals, reals, 50, features, features)}
    assert records["psnr"]["value"] == edit_scores.MAX_PSNR_DB  # infinite, capped
    assert records["ssim"]["value"] == pytest.approx(1.0)
    assert records["fid"]["value"] == pytest.approx(0.0, abs=1e-6)
    # KID is unbiased: ~0 for identical sets (~5% of a shifted set's here), not exactly 0.
    shifted = protocol.reconstruction_records("g", reals, reals, 50, features + 1.0, features)
    assert abs(records["kid"]["value"]) < 0.1 * shifted[3]["value"] and shifted[2]["value"] > 1.0
    assert all(r["task"] == "reconstruction" and r["method"] == "real" for r in records.values())


def test_reconstruction_psnr_of_a_known_error_and_its_interval():
    reals = np.full((3, 8, 8, 3), 100, np.uint8)
    results = reals.copy()
    results[0] += 5  # mse 25: 10 log10(255^2 / 25) dB; the other two faces exact (capped)
    (psnr, ssim) = protocol.reconstruction_records("g", results, reals, 200)
    expected = [10 * np.log10(255.0 ** 2 / 25.0), edit_scores.MAX_PSNR_DB, edit_scores.MAX_PSNR_DB]
    assert psnr["value"] == pytest.approx(np.mean(expected))
    # Resampled means of 3 faces lie between the smallest and largest face's value.
    assert min(expected) - 1e-9 <= psnr["interval"][0] < psnr["value"] < psnr["interval"][1] <= max(expected) + 1e-9
    assert ssim["value"] < 1.0 and ssim["metric"] == "ssim"
    # Chunked per-face metrics equal the whole batch's.
    chunked = protocol.per_face(metrics.ssim, results, reals, chunk=2)
    np.testing.assert_array_equal(chunked, metrics.ssim(results, reals))


def test_unpaired_fid_resamples_equal_the_fid_of_the_drawn_copies():
    """Each resample's FID is fid.fid_from_features of the sets with every face repeated as often as drawn."""
    rng = np.random.default_rng(3)
    results, reals = rng.normal(size=(6, 4)), rng.normal(0.5, 1.5, size=(9, 4))
    counts = edit_scores.resample_counts(6, 5, (1,))
    real_counts = edit_scores.resample_counts(9, 5, (2,))
    resampled = edit_scores.fid_resampled_unpaired(results, reals, counts, real_counts)
    for value, c1, c2 in zip(resampled, counts, real_counts):
        expected = fid.fid_from_features(np.repeat(results, c1, axis=0), np.repeat(reals, c2, axis=0))
        assert value == pytest.approx(expected, rel=1e-6, abs=1e-9)
    record = protocol.unpaired_fid_record("smile_transfer", "g", results, reals, 100)
    assert record["value"] == pytest.approx(fid.fid_from_features(results, reals))
    assert record["interval"][0] < record["interval"][1]


def test_segmentation_scores_are_the_parse_evaluation_of_the_summed_confusion():
    masks = np.array([[[0, 1], [1, 1]], [[2, 2], [0, 0]]], np.uint8)
    parsed = masks.copy()
    parsed[1, 0, 0] = 0  # one pixel of class 2 parsed as background
    accuracy, mean_iou = protocol.segmentation_records("g", masks, parsed, 50)
    assert accuracy["value"] == pytest.approx(7 / 8)
    # IoU: background 3/4 (3 right, 1 false positive), class 1 3/3, class 2 1/2.
    assert mean_iou["value"] == pytest.approx((3 / 4 + 1 + 1 / 2) / 3)
    perfect = protocol.segmentation_records("g", masks, masks, 50)
    assert [r["value"] for r in perfect] == [1.0, 1.0] and perfect[0]["interval"] == [1.0, 1.0]
    # More faces than one chunk (64): the same as one confusion matrix over them all.
    rng = np.random.default_rng(1)
    masks, parsed = (rng.integers(0, labels.NUM_CLASSES, (70, 4, 4)).astype(np.uint8) for _ in range(2))
    confusion = metrics.confusion_matrix(masks, parsed, labels.NUM_CLASSES)
    accuracy, mean_iou = protocol.segmentation_records("g", masks, parsed, 50)
    assert accuracy["value"] == pytest.approx(metrics.pixel_accuracy(confusion))
    assert mean_iou["value"] == pytest.approx(metrics.mean_iou(confusion))


def test_classifier_accuracy_on_known_labels():
    predicted = np.array([True, True, False, False, True])
    wanted = np.array([True, False, False, True, True])
    right = protocol.classifier_accuracy(predicted, wanted)
    np.testing.assert_array_equal(right, [True, False, True, False, True])
    r = protocol.fraction_record("smile_transfer", "real", "classifier_accuracy", right, 100)
    assert r["value"] == pytest.approx(0.6) and 0.0 <= r["interval"][0] <= 0.6 <= r["interval"][1] <= 1.0
    with pytest.raises(ValueError, match="differ"):
        protocol.classifier_accuracy(predicted, wanted[:3])


# ----------------------------------------------------------------------------- the smile edit


def test_paste_mouth_on_a_hand_made_mask():
    target = np.full((5, 6), SKIN, np.uint8)
    target[0, :] = NOSE
    target[3, 1:5] = [U_LIP, MOUTH, MOUTH, L_LIP]  # a closed mouth, one row
    donor = np.full((5, 6), SKIN, np.uint8)
    donor[2, 1:5] = U_LIP
    donor[3, 1:5] = [MOUTH, MOUTH, MOUTH, MOUTH]  # a wider, open mouth, one row higher
    donor[4, 2:4] = L_LIP
    donor[0, 0] = NOSE  # not a mouth class: not pasted
    wanted = protocol.paste_mouth(target, donor)
    expected = target.copy()
    expected[2, 1:5] = U_LIP
    expected[3, 1:5] = MOUTH
    expected[4, 2:4] = L_LIP
    np.testing.assert_array_equal(wanted, expected)
    # A target mouth pixel outside the donor's mouth region becomes skin.
    target[1, 5] = L_LIP
    assert protocol.paste_mouth(target, donor)[1, 5] == SKIN
    with pytest.raises(ValueError, match="differ"):
        protocol.paste_mouth(target, donor[:4])


def test_smile_pairs_take_smiling_donors_in_turn():
    targets, donors = protocol.smile_pairs(np.array([True, False, False, True, False]))
    np.testing.assert_array_equal(targets, [1, 2, 4])
    np.testing.assert_array_equal(donors, [0, 3, 0])
    for smiling in ([True, True], [False], []):
        assert [len(a) for a in protocol.smile_pairs(np.array(smiling, bool))] == [0, 0]


# ----------------------------------------------------------------------------- input errors


def test_open_split_reads_the_split_and_names_each_bad_input(data_dir, tmp_path):
    source = protocol.open_split(NAME, "test", str(data_dir))
    faces = protocol.load_faces(source, 64)
    assert sorted(faces.image_ids.tolist()) == [28000, 29999]
    assert faces.smiling[faces.image_ids == 28000].all() and not faces.smiling[faces.image_ids == 29999].any()
    assert faces.masks.shape == (2, 64, 64) and faces.masks.max() < labels.NUM_CLASSES
    assert len(protocol.load_faces(protocol.open_split(NAME, "train+test", str(data_dir)), 64, 5).images) == 5
    with pytest.raises(ValueError, match="generators' 128x128"):
        protocol.load_faces(source, 128)
    with pytest.raises(ValueError, match="no split 'validation'.*'test', 'train'"):
        protocol.open_split(NAME, "validation", str(data_dir))
    with pytest.raises(ValueError, match="celebamask_hq/<config>.*official_512"):
        protocol.open_split("celebamask_hq/official_65", "test", str(data_dir))
    with pytest.raises(FileNotFoundError, match="(?s)not built.*tfds_celebamask.build .*--config=official_64"):
        protocol.open_split("celebamask_hq/official_64", "test", str(tmp_path / "empty"))
    # The command checks the data before it reads any checkpoint.
    with pytest.raises(ValueError, match="no split 'val'"):
        evaluate.main([f"--workdir={tmp_path / 'none'}", f"--data={NAME}", "--split=val", f"--data_dir={data_dir}"])
    with pytest.raises(SystemExit):
        evaluate.main([f"--out={tmp_path}", f"--data={NAME}", f"--data_dir={data_dir}"])  # no checkpoints


# ----------------------------------------------------------------------------- end to end


def _random_inception(path: pathlib.Path) -> pathlib.Path:
    """Random FID-Inception weights (as tests/test_fid.py's CLI test): the real network, untrained."""
    rng = np.random.default_rng(7)
    weights = {}
    for layer, spec in inception.conv_layers().items():
        fan_in = np.prod(spec["kernel"][:3])
        weights[f"{layer}/kernel"] = rng.normal(0, np.sqrt(2.0 / fan_in), spec["kernel"]).astype(np.float32)
        weights[f"{layer}/bias"] = np.zeros(spec["bias"], np.float32)
    np.savez(path, **weights)
    return path


def _train_parser_phase(workdir: pathlib.Path, data_dir: pathlib.Path, compilation_cache) -> None:
    """`main.py` with the smoke config's parser phase only (parser and attribute classifier; 2 steps, one
    checkpoint) on the dummy train split, on one CPU device (compiling for 8 costs more than the run)."""
    overrides = dict(**{f"phases.{phase}.num_steps": 0 for phase in ("maskvae", "dmn", "ebst")},
                     **{f"phases.parser.{field}": 2 for field in ("num_steps", "log_every_steps", "image_every_steps",
                                                                  "checkpoint_every_steps")},
                     **{"data.name": NAME, "data.data_dir": data_dir, "data.split": "train",
                        "data.synthetic.num_faces": 0})
    result = subprocess.run(
        [sys.executable, "main.py", "--config=configs/ebst.py:smoke", f"--workdir={workdir}",
         *(f"--config.{key}={value}" for key, value in overrides.items())],
        cwd=REPO, env=subprocess_env(compilation_cache, 1), capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-4000:]
    assert "classifier/accuracy" in result.stderr  # the classifier trained beside the parser


def test_protocol_end_to_end_on_the_dummy_data(data_dir, tmp_path, compilation_cache, capsys):
    """A workdir with a generator only: the protocol runs and says what it skips. After its parser phase
    (parser and classifier): the JSON and the table hold every figure of the three tasks."""
    workdir = make_workdir(tmp_path, with_mask_vae=False)
    # Batch 2: the Inception pads no set of 6 or 2 faces (a batch of 16 would run 8x the images).
    base = [f"--workdir={workdir}", f"--data={NAME}", f"--data_dir={data_dir}", "--bootstrap=50", "--batch_size=2",
            f"--jax_cache_dir={compilation_cache}"]
    assert evaluate.main(base + ["--split=test", f"--inception={tmp_path / 'missing.npz'}"]) == 0
    out = capsys.readouterr().out
    assert "2 faces of celebamask_hq/first28k_64 split 'test' (1 smiling)" in out
    assert "segmentation skipped" in out and "smile classification skipped" in out and "KID and FID skipped" in out
    records = json.loads((workdir / protocol.JSON_FILE).read_text())["records"]
    assert [(r["task"], r["method"], r["metric"]) for r in records] == [
        ("reconstruction", "dmn", "psnr"), ("reconstruction", "dmn", "ssim")]
    # The reconstruction is the generator on each face's own mask, as the editor computes it here.
    faces = protocol.load_faces(protocol.open_split(NAME, "test", str(data_dir)), 64)
    editor = edit.Editor(edit.load_generator(workdir, "dmn"), batch_size=2)
    results, _ = editor.edit(faces.images, faces.masks, faces.masks)
    assert records[0]["value"] == pytest.approx(np.mean(metrics.psnr(results, faces.images)))

    # train+test: 6 faces, 4 smiling, so two smile edits (an FID needs two results); test alone has one.

    _train_parser_phase(workdir, data_dir, compilation_cache)
    npz = _random_inception(tmp_path / "inception.npz")
    assert evaluate.main(base + ["--split=train+test", f"--inception={npz}"]) == 0
    out = capsys.readouterr().out
    records = json.loads((workdir / protocol.JSON_FILE).read_text())["records"]
    keys = [(r["task"], r["method"], r["metric"]) for r in records]
    smile = [("smile_transfer", m, metric) for m in ("dmn", "dmn+keep_unedited")
             for metric in ("classified_smiling", "fid")]
    assert sorted(keys) == sorted([
        ("reconstruction", "dmn", "psnr"), ("reconstruction", "dmn", "ssim"), ("reconstruction", "dmn", "fid"),
        ("reconstruction", "dmn", "kid"), ("segmentation", "real", "pixel_accuracy"),
        ("segmentation", "real", "mean_iou"), ("segmentation", "dmn", "pixel_accuracy"),
        ("segmentation", "dmn", "mean_iou"), ("smile_transfer", "real", "classifier_accuracy"),
        ("smile_transfer", "real_smiling", "classified_smiling"),
        ("smile_transfer", "real_not_smiling", "classified_smiling"), *smile])
    for r in records:
        assert r["value"] is not None and r["interval"] is not None, r
        if (r["task"], r["metric"]) != ("smile_transfer", "fid"):  # 2 results resampled: no interval need hold it
            low, high = r["interval"]
            assert low <= r["value"] <= high, r
    lookup = {key: r["value"] for key, r in zip(keys, records)}
    assert lookup["reconstruction", "dmn", "fid"] > 0 and lookup["smile_transfer", "dmn", "fid"] > 0
    assert 0 <= lookup["segmentation", "dmn", "mean_iou"] <= 1
    # The fractions are over the 4 smiling faces, the 2 non-smiling targets, the 2 edits, the 6 faces.
    assert lookup["smile_transfer", "real_smiling", "classified_smiling"] in (0, 0.25, 0.5, 0.75, 1)
    for method in ("real_not_smiling", "dmn", "dmn+keep_unedited"):
        assert lookup["smile_transfer", method, "classified_smiling"] in (0, 0.5, 1)
    assert lookup["smile_transfer", "real", "classifier_accuracy"] * 6 == pytest.approx(
        round(lookup["smile_transfer", "real", "classifier_accuracy"] * 6))
    markdown = (workdir / protocol.MARKDOWN_FILE).read_text()
    for _, _, _, title in protocol._TABLES:
        assert title in markdown, title
    assert "6 faces of celebamask_hq/first28k_64 split 'train+test' (4 smiling)" in out
    assert "Protocol run time" in out and "skipped" not in out
