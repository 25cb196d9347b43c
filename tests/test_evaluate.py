"""The ground-truth editing benchmark (maskgan_jax.evaluate): its held-out set, its true images, the
mean-colour baseline, the scoring, and one tiny end-to-end run."""

import dataclasses
import json

import jax
import numpy as np
import optax
import pytest
from scipy import ndimage

from configs import ebst as ebst_config
from maskgan_jax import checkpoint, edit, evaluate, metrics
from maskgan_jax.state import NetState
from tfds_celebamask import labels, synthetic

RESOLUTION = 64


@pytest.fixture(scope="module")
def examples():
    return evaluate.held_out_examples(RESOLUTION, num_per_edit=3)


def _clean_target(example):
    geometry, style = synthetic.sample_face(synthetic.face_rng(evaluate.HELD_OUT_SEED, example.face_index))
    return geometry, style, synthetic.render(geometry, style, RESOLUTION)


# ----------------------------------------------------------------------------- the held-out set


def test_held_out_examples_are_the_seeded_faces_and_their_true_edits(examples):
    assert [e.edit for e in examples] == [k for k in evaluate.EDIT_KINDS for _ in range(3)]
    assert ebst_config.get_config("quickstart").data.synthetic.seed != evaluate.HELD_OUT_SEED
    for example in examples:
        geometry, style, (image, mask) = _clean_target(example)
        assert synthetic.edit_applies(example.edit, geometry)
        donor = synthetic.sample_face(synthetic.face_rng(evaluate.HELD_OUT_SEED, example.face_index + 1))[0]
        true_image, true_labels = synthetic.render(synthetic.EDITS[example.edit](geometry, donor), style, RESOLUTION)
        np.testing.assert_array_equal(example.target_labels, mask)
        np.testing.assert_array_equal(example.wanted_labels, true_labels)
        np.testing.assert_array_equal(example.true_image, true_image)
        np.testing.assert_array_equal(example.target_image, evaluate.jpeg_round_trip(image))
        assert example.edited_region.any()
    # Faces are drawn in order; a face an edit does not apply to is skipped for that edit only.
    for kind in evaluate.EDIT_KINDS:
        indices = [e.face_index for e in examples if e.edit == kind]
        skipped = [i for i in range(indices[-1]) if i not in indices]
        for i in skipped:
            geometry = synthetic.sample_face(synthetic.face_rng(evaluate.HELD_OUT_SEED, i))[0]
            if synthetic.edit_applies(kind, geometry):  # then its labels did not change at this size
                edited = synthetic.EDITS[kind](geometry, synthetic.sample_face(
                    synthetic.face_rng(evaluate.HELD_OUT_SEED, i + 1))[0])
                np.testing.assert_array_equal(synthetic.render_labels(edited, RESOLUTION)[0],
                                              synthetic.render_labels(geometry, RESOLUTION)[0])
    again = evaluate.held_out_examples(RESOLUTION, num_per_edit=3)
    assert all(np.array_equal(a.target_image, b.target_image) for a, b in zip(examples, again))


def test_true_images_change_where_the_edit_does(examples):
    """Labels change only between the edit's classes; the true image changes on every pixel whose
    label changes; outside, it equals the target's render except on a few pixels (anti-aliased borders
    over a changed hidden layer, sub-pixel parts: see the evaluate module docstring)."""
    for example in examples:
        _, _, (image, mask) = _clean_target(example)
        region = example.edited_region
        allowed = [labels.CLASS_ID[name] for name in synthetic.EDIT_CLASSES[example.edit]]
        assert np.isin(mask[region], allowed).all() and np.isin(example.wanted_labels[region], allowed).all()
        changed = (example.true_image != image).any(axis=-1)
        if example.edit == "style_copy":
            continue  # another face's geometry: the whole picture may move
        assert changed[region].all(), example.edit
        assert changed[~region].mean() < 0.05, example.edit
        # ... and only near the edit (shading it casts: hair shadow, lids; measured up to 9 px at 64):
        # nothing far away, such as the background or the clothes, is re-rendered differently.
        distance = ndimage.distance_transform_cdt(~region, metric="chessboard")
        assert distance[changed & ~region].max(initial=0) <= 10, example.edit


# ----------------------------------------------------------------------------- baselines and scores


def test_mean_colour_painter_matches_a_loop_reference():
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(2, 6, 7, 3)).astype(np.uint8)
    labels_t = rng.integers(0, 3, size=(2, 6, 7))
    labels_src = rng.integers(0, 4, size=(2, 6, 7))  # class 3 is in no target
    painted = evaluate.mean_colour_painter(images, labels_t, labels_src)
    for n in range(2):
        for i in range(6):
            for j in range(7):
                cls = labels_src[n, i, j]
                pixels = images[n][labels_t[n] == cls] if (labels_t[n] == cls).any() else images[n].reshape(-1, 3)
                np.testing.assert_array_equal(painted[n, i, j], np.round(pixels.astype(np.float64).mean(axis=0)))


def test_score_and_summarise_per_region_and_edit(examples):
    chosen = [examples[0], examples[1], examples[3]]  # smile, smile, hair_longer
    truths = np.stack([e.true_image for e in chosen])
    regions = np.stack([e.edited_region for e in chosen])
    # Off by 10 levels exactly on the edited pixels (truths stay in range: shift down where bright).
    shift = np.where(truths >= 10, -10, 10) * regions[..., None]
    results = (truths.astype(np.int64) + shift).astype(np.uint8)
    scores = evaluate.score(results, chosen)
    np.testing.assert_allclose(scores["edited"][0], 10 * np.log10(255.0 ** 2 / 100.0))
    np.testing.assert_array_equal(scores["unedited"][0], evaluate.MAX_PSNR_DB)  # identical: capped
    np.testing.assert_allclose(scores["all"][0], metrics.psnr(results, truths))
    np.testing.assert_allclose(scores["edited"][1], metrics.ssim(results, truths, regions))
    np.testing.assert_allclose(scores["unedited"][1], metrics.ssim(results, truths, ~regions))

    records = evaluate.summarise("m", scores, chosen)
    assert all(set(r) == {"method", "edit", "region", "psnr", "ssim"} for r in records)
    assert [(r["edit"], r["region"]) for r in records] == [
        (e, g) for e in ("smile", "hair_longer", "overall") for g in evaluate.REGIONS]
    lookup = {(r["edit"], r["region"]): r for r in records}
    np.testing.assert_allclose(lookup["smile", "edited"]["ssim"], scores["edited"][1][:2].mean())
    np.testing.assert_allclose(lookup["overall", "all"]["psnr"], scores["all"][0].mean())
    table = evaluate.markdown_tables(records)
    assert "| m | " in table and "### edited pixels" in table and "overall" in table


# ----------------------------------------------------------------------------- end to end


def _save_generator(workdir, phase, config, seed):
    module = edit.generator_from_config(config)
    image = np.zeros((1, RESOLUTION, RESOLUTION, 3), np.float32)
    mask = np.zeros((1, RESOLUTION, RESOLUTION, labels.NUM_CLASSES), np.float32)
    params = jax.jit(module.init)(jax.random.key(seed), image, mask, mask)["params"]
    state = NetState(params=params, opt_state=optax.adam(1e-3).init(params), batch_stats={})
    manager = checkpoint.create_manager(workdir, phase, config.checkpoint, every_steps=1)
    checkpoint.save(manager, 1, {"generator": state}, {"step": np.int32(1)}, None, config, force=True)
    checkpoint.wait(manager)
    manager.close()


def test_benchmark_of_a_workdir_writes_json_and_markdown(tmp_path, compilation_cache, capsys):
    config = ebst_config.get_config("smoke")
    for seed, phase in enumerate(("dmn", "ebst")):
        _save_generator(tmp_path, phase, config, seed)
    assert evaluate.main([f"--workdir={tmp_path}", "--num_per_edit=1", f"--jax_cache_dir={compilation_cache}"]) == 0
    records = json.loads((tmp_path / evaluate.JSON_FILE).read_text())
    methods = ["unedited", "mean_colour", "dmn", "dmn+keep_unedited", "ebst", "ebst+keep_unedited"]
    assert list(dict.fromkeys(r["method"] for r in records)) == methods
    assert len(records) == len(methods) * (len(evaluate.EDIT_KINDS) + 1) * len(evaluate.REGIONS)
    assert all(np.isfinite(r["psnr"]) and -1 <= r["ssim"] <= 1 for r in records)
    lookup = {(r["method"], r["edit"], r["region"]): r for r in records}
    # The unedited target is right where nothing changed, wrong where the edit changed the labels.
    assert lookup["unedited", "overall", "unedited"]["psnr"] > lookup["unedited", "overall", "edited"]["psnr"]
    # keep_unedited only changes pixels outside the edited region.
    assert lookup["dmn+keep_unedited", "overall", "edited"]["psnr"] == lookup["dmn", "overall", "edited"]["psnr"]
    markdown = (tmp_path / evaluate.MARKDOWN_FILE).read_text()
    assert "| ebst+keep_unedited |" in markdown and markdown.strip() in capsys.readouterr().out
    assert (tmp_path / evaluate.EXAMPLES_FILE).is_file()

    loaded = edit.load_generator(tmp_path, "dmn")
    clash = loaded.config.copy_and_resolve_references()
    clash.data.synthetic.seed = evaluate.HELD_OUT_SEED
    with pytest.raises(ValueError, match="held-out seed"):
        evaluate.run_benchmark({"dmn": dataclasses.replace(loaded, config=clash)}, RESOLUTION, 1)
