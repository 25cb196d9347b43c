"""The DMN convergence study (maskgan_jax.benchmarks.dmn_convergence): its batches flip as the input
pipeline does, and `train` -> `score` runs end to end on the smoke config."""

import json

import numpy as np
import pytest

import paint_fixtures
from configs import ebst as ebst_config
from maskgan_jax import evaluate
from maskgan_jax.benchmarks import dmn_convergence
from tfds_celebamask import labels

RESOLUTION = 64


def test_sample_batch_flips_image_and_labels_like_the_input_pipeline():
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (1, RESOLUTION, RESOLUTION, 3), dtype=np.uint8)
    mask = rng.integers(0, labels.NUM_CLASSES, (1, RESOLUTION, RESOLUTION), dtype=np.uint8)
    flipped_image, flipped_mask = labels.flip_example(image[0], mask[0])
    batch = dmn_convergence.sample_batch(np.random.default_rng(1), image, mask, batch_size=16, random_flip=True)
    assert batch["image"].dtype == np.float32 and batch["mask"].dtype == np.int32
    as_model_input = lambda x: x.astype(np.float32) / np.float32(127.5) - np.float32(1)
    was_flipped = [not np.array_equal(m, mask[0]) for m in batch["mask"]]
    assert 0 < sum(was_flipped) < 16  # both kinds drawn (seeded)
    for image_out, mask_out, flipped in zip(batch["image"], batch["mask"], was_flipped):
        want_image, want_mask = (flipped_image, flipped_mask) if flipped else (image[0], mask[0])
        np.testing.assert_array_equal(mask_out, want_mask)
        np.testing.assert_array_equal(image_out, as_model_input(want_image))


def test_train_then_score_on_the_smoke_config(tmp_path, capsys):
    held_out = evaluate.held_out_examples(RESOLUTION, num_per_edit=1)
    rng = np.random.default_rng(0)
    data = tmp_path / "data.npz"
    np.savez(data, images=rng.integers(0, 256, (8, RESOLUTION, RESOLUTION, 3), dtype=np.uint8),
             masks=rng.integers(0, labels.NUM_CLASSES, (8, RESOLUTION, RESOLUTION), dtype=np.uint8),
             num_per_edit=1,
             bench_images=np.stack([e.target_image for e in held_out]),
             bench_labels_t=np.stack([e.target_labels for e in held_out]),
             bench_labels_src=np.stack([e.wanted_labels for e in held_out]))
    run = tmp_path / "smoke.npz"
    dmn_convergence.train(ebst_config.get_config("smoke"), data, run, num_steps=3, snapshots=[1],
                          max_seconds=float("inf"))
    saved = np.load(run)
    assert sorted(k for k in saved.files if k.startswith("outputs_")) == ["outputs_1", "outputs_3"]
    assert saved["outputs_3"].shape == (len(held_out), RESOLUTION, RESOLUTION, 3)
    assert saved["outputs_3"].dtype == np.uint8
    assert not np.array_equal(saved["outputs_1"], saved["outputs_3"])  # it trained in between
    assert [entry["step"] for entry in json.loads(str(saved["log"]))] == [1, 2, 3]  # smoke logs every 2

    capsys.readouterr()
    records_file = tmp_path / "records.json"
    dmn_convergence.score([run], records_file)
    table = capsys.readouterr().out
    assert "| smoke@3+keep_unedited |" in table
    # Each snapshot's "beats the baselines" verdict; an untrained generator fails it, KID is not evaluated.
    assert "- smoke@3, beats the baselines: FAIL" in table
    assert "- smoke@3+keep_unedited, beats the baselines: FAIL" in table
    assert "[not evaluated (" in table  # mask following needs a parser (below), KID the Inception
    records = json.loads(records_file.read_text())
    methods = {r["method"] for r in records}
    assert methods == {m + suffix for m in ("truth", "unedited", "mean_colour", "colour_fit", "smoke@1", "smoke@3")
                       for suffix in ("", "+keep_unedited")}
    image_psnr = {(r["method"], r["edit"]): r["value"] for r in records
                  if r["metric"] == "psnr" and r["region"] == "all"}
    # Keeping the target outside the edit must help an untrained generator (the blend is the right way round).
    gain = [image_psnr["smoke@3+keep_unedited", kind] - image_psnr["smoke@3", kind] for kind in evaluate.EDIT_KINDS]
    assert min(gain) > 0 and np.mean(gain) > 5, gain
    assert not any(r["metric"].startswith("mask_") for r in records)

    # With a parser, mask following joins the pixel scores (the truth row is its ceiling).
    parser_dir = paint_fixtures.make_workdir(tmp_path, with_mask_vae=False, with_parser=True)
    dmn_convergence.score([run], records_file, parser=str(parser_dir))
    # With a parser only KID is left unevaluated: one criterion per edit kind.
    assert f"[not evaluated ({len(evaluate.EDIT_KINDS)}): KID < mean_colour's / smile" in capsys.readouterr().out
    following = {(r["method"], r["edit"], r["region"]) for r in json.loads(records_file.read_text())
                 if r["metric"] == "mask_pixel_accuracy"}
    assert {("truth", kind, "edited") for kind in evaluate.EDIT_KINDS} <= following
    assert {("smoke@3", kind, "all") for kind in evaluate.EDIT_KINDS} <= following


@pytest.mark.filterwarnings("ignore:Matrix is ill-conditioned")  # FID of 14 stand-in features: rank-deficient
def test_score_with_an_inception_adds_kid_of_the_snapshots_and_the_painter(tmp_path, monkeypatch):
    """--inception wires the benchmark's KID/FID in: for the snapshots and the mean-colour painter (plain and
    composited), not the other rows; a stand-in feature extractor (each image's mean colour, tiled) keeps it
    fast. A missing Inception file is an error that names it."""
    held_out = evaluate.held_out_examples(RESOLUTION, num_per_edit=2)  # KID needs two faces of a kind
    run = tmp_path / "run.npz"
    rng = np.random.default_rng(0)
    np.savez(run, config=np.array(ebst_config.get_config("smoke").to_json()), device=np.array("cpu"),
             num_per_edit=2, log=np.array(json.dumps([{"step": 1}])),
             outputs_1=rng.integers(0, 256, (len(held_out), RESOLUTION, RESOLUTION, 3), dtype=np.uint8))
    stand_in = lambda images: np.tile(images.reshape(len(images), -1, 3).mean(axis=1), (1, 683))[:, :2048]
    monkeypatch.setattr(evaluate, "load_features", lambda path, skipped, batch_size=25: stand_in)
    records_file = tmp_path / "records.json"
    dmn_convergence.score([run], records_file, inception="stand-in.npz", realism_per_edit=2)
    with_kid = {r["method"] for r in json.loads(records_file.read_text()) if r["metric"] == "kid"}
    assert with_kid == {m + suffix for m in ("mean_colour", "run@1") for suffix in ("", "+keep_unedited")}

    monkeypatch.undo()
    with pytest.raises(FileNotFoundError, match="missing.npz"):
        dmn_convergence.score([run], None, inception=str(tmp_path / "missing.npz"))


def test_load_config_applies_overrides_and_names_bad_ones():
    config = dmn_convergence.load_config("configs/ebst.py:quickstart",
                                         ["phases.dmn.learning_rate=1e-3", "model.generator.ngf=32"])
    assert config.phases.dmn.learning_rate == 1e-3 and config.model.generator.ngf == 32
    with pytest.raises(KeyError, match="model.generator.nfg"):
        dmn_convergence.load_config("configs/ebst.py:quickstart", ["model.generator.nfg=32"])
    with pytest.raises(FileNotFoundError, match="configs/nope.py"):
        dmn_convergence.load_config("configs/nope.py", [])
