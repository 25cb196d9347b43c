"""The face parser: its network, losses and step, the segmentation metrics, and `maskgan-parse` end to end
on a smoke-trained checkpoint (maskgan_jax.parse)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from PIL import Image

from configs import ebst
from maskgan_jax import losses, metrics, objective, ops, parse, train
from maskgan_jax import state as state_lib
from maskgan_jax import steps as steps_lib
from maskgan_jax.models import AttributeClassifier, UNet, registry
from tfds_celebamask import labels, synthetic

# ----------------------------------------------------------------------------- the network


def _param_count(module, size):
    variables = jax.eval_shape(lambda: module.init(jax.random.key(0), jnp.zeros((1, size, size, 3))))
    return sum(int(np.prod(x.shape)) for x in jax.tree_util.tree_leaves(variables))


def test_unet_at_the_reference_size_shapes_and_parameters():
    config = ebst.get_config()
    module = registry.build_network(config, "parser")
    assert isinstance(module, UNet) and module.num_classes == 19
    variables = jax.eval_shape(lambda: registry.init_variables(config, "parser", module, jax.random.key(0)))
    logits = jax.eval_shape(lambda v: module.apply(v, jnp.zeros((2, 512, 512, 3))), variables)
    assert (logits.shape, logits.dtype) == ((2, 512, 512, 19), jnp.float32)
    # Reference widths 16..256: 2,161,955 parameters (conv kernels and biases, norm scales and biases).
    assert sum(int(np.prod(x.shape)) for x in jax.tree_util.tree_leaves(variables)) == 2_161_955
    # The same parameters whatever the norm's form and the upsampling's.
    assert _param_count(UNet(norm="group"), 64) == 2_161_955
    # Non-square inputs (multiples of 16) parse too; other sizes are a clear error.
    assert jax.eval_shape(lambda v: module.apply(v, jnp.zeros((1, 64, 48, 3))), variables).shape == (1, 64, 48, 19)
    with pytest.raises(ValueError, match="multiples of 16, got 64x40"):
        jax.eval_shape(lambda v: module.apply(v, jnp.zeros((1, 64, 40, 3))), variables)


def test_unet_options_are_checked():
    with pytest.raises(ValueError, match="UNet.norm"):
        jax.eval_shape(lambda: UNet(norm="batch").init(jax.random.key(0), jnp.zeros((1, 16, 16, 3))))
    for upsample in ("transpose", "resize"):
        module = UNet(widths=(4, 8), upsample=upsample, norm="none")
        variables = module.init(jax.random.key(0), jnp.zeros((1, 8, 8, 3)))
        assert module.apply(variables, jnp.zeros((2, 8, 8, 3))).shape == (2, 8, 8, 19)
    with pytest.raises(ValueError, match="UNet.layer_forms: expected 'inherit' or one of .* got 'fastest'"):
        jax.eval_shape(lambda: UNet(layer_forms="fastest").init(jax.random.key(0), jnp.zeros((1, 16, 16, 3))))


def test_unet_layer_forms_choose_the_computation_not_the_result():
    """'plain' traces lax convs without the fast forms' custom VJPs, whatever the caller's forms, and
    computes the same logits as 'fast' and 'inherit'."""
    image = jax.random.uniform(jax.random.key(1), (2, 16, 16, 3), minval=-1.0, maxval=1.0)
    variables = UNet(widths=(4, 8, 8)).init(jax.random.key(0), image)
    logits, custom_vjps = {}, {}
    for forms in ("inherit", "fast", "plain"):
        module = UNet(widths=(4, 8, 8), layer_forms=forms)
        with ops.layer_forms("fast"):
            logits[forms] = module.apply(variables, image)
            custom_vjps[forms] = str(jax.make_jaxpr(module.apply)(variables, image)).count("custom_vjp")
    assert custom_vjps["plain"] == 0 and custom_vjps["fast"] == custom_vjps["inherit"] > 0
    np.testing.assert_allclose(logits["plain"], logits["fast"], atol=1e-4)
    np.testing.assert_array_equal(logits["inherit"], logits["fast"])


def test_flip_averaged_parsing_is_mirror_equivariant_and_off_is_the_plain_argmax():
    """With flip averaging the parse of a mirrored face is the mirrored parse with left and right classes
    swapped (a property a single pass lacks); without it, parsing is the argmax of one pass's logits."""
    module = UNet(widths=(4, 8))
    face = jax.random.randint(jax.random.key(1), (2, 16, 16, 3), 0, 256).astype(jnp.uint8)
    variables = module.init(jax.random.key(0), jnp.zeros((1, 16, 16, 3)))
    # Every parameter perturbed (biases included), so a single pass is visibly not mirror-symmetric.
    params = jax.tree_util.tree_map(lambda x: x + 0.3 * jax.random.normal(jax.random.key(2), x.shape),
                                    variables["params"])
    swap = jnp.asarray(labels.flip_permutation())
    averaged = parse.parse_images(module, params, face)
    averaged_mirror = parse.parse_images(module, params, face[:, :, ::-1])
    np.testing.assert_array_equal(averaged_mirror, swap[averaged[:, :, ::-1]])
    single = parse.parse_images(module, params, face, flip_average=False)
    single_mirror = parse.parse_images(module, params, face[:, :, ::-1], flip_average=False)
    assert not np.array_equal(single_mirror, swap[single[:, :, ::-1]])
    logits = module.apply({"params": params}, face.astype(jnp.float32) / 127.5 - 1.0)
    np.testing.assert_array_equal(single, jnp.argmax(logits, axis=-1))


# ----------------------------------------------------------------------------- losses and objective


def test_class_balance_weights_lift_rare_classes():
    label_map = jnp.array([[[0, 0, 0, 1]]])  # class 0 covers 3/4 of the pixels, class 1 a quarter
    np.testing.assert_allclose(losses.class_balance_weights(label_map, 3, 0.0), np.ones((1, 1, 4)))
    weights = losses.class_balance_weights(label_map, 3, 0.5)
    np.testing.assert_allclose(weights, [[[0.75 ** -0.5] * 3 + [0.25 ** -0.5]]], rtol=1e-6)


def test_weighted_cross_entropy_with_uniform_weights_is_the_plain_one():
    rng = np.random.default_rng(0)
    logits = jnp.asarray(rng.normal(size=(2, 4, 4, 5)), jnp.float32)
    label_map = jnp.asarray(rng.integers(0, 5, (2, 4, 4)))
    plain = losses.mask_cross_entropy(logits, label_map)
    weighted = losses.weighted_mask_cross_entropy(logits, label_map, jnp.full((2, 4, 4), 3.0))
    assert float(weighted) == pytest.approx(float(plain), rel=1e-6)


def test_soft_dice_is_zero_for_a_confident_right_answer_and_counts_present_classes_equally():
    label_map = jnp.array([[[0, 0, 0, 1]]])
    right = 100.0 * jax.nn.one_hot(label_map, 3)
    assert float(losses.soft_dice_loss(right, label_map)) == pytest.approx(0.0, abs=1e-6)
    # Everything predicted as class 0: class 0's Dice is (2*3+1)/(4+3+1), class 1's (0+1)/(0+1+1).
    wrong = 100.0 * jax.nn.one_hot(jnp.zeros_like(label_map), 3)
    want = 1.0 - ((7.0 / 8.0) + (1.0 / 2.0)) / 2.0
    assert float(losses.soft_dice_loss(wrong, label_map)) == pytest.approx(want, rel=1e-5)


def test_parser_objective_weights_its_terms():
    weights = dict(ebst.get_config().loss.weights, parser_cross_entropy=2.0, parser_dice=0.5)
    logits = jnp.zeros((1, 2, 2, 3)).at[..., 1].set(2.0)
    label_map = jnp.ones((1, 2, 2), jnp.int32)
    total, values = objective.weighted_terms(objective.PARSER_TERMS, weights,
                                             objective.ParserInputs(logits=logits, labels=label_map))
    cross_entropy = -np.log(np.exp(2.0) / (np.exp(2.0) + 2.0))
    assert float(values["parser_cross_entropy"]) == pytest.approx(cross_entropy, rel=1e-6)
    assert float(total) == pytest.approx(2.0 * cross_entropy + 0.5 * float(values["parser_dice"]), rel=1e-6)


# ----------------------------------------------------------------------------- the step


def test_parser_step_lowers_the_parser_and_classifier_losses_on_a_fixed_batch():
    config = ebst.get_config("smoke")
    config.loss.parser_class_balance = 0.5
    config.loss.weights.parser_dice = 1.0
    config.phases.parser.update(dict(num_steps=100, learning_rate=1e-2))  # no decay within the 6 steps
    networks = state_lib.build_networks(config)
    tx, classifier_tx = state_lib.optimizer(config.phases.parser), state_lib.optimizer(config.phases.parser)
    states = {name: state_lib.new_net_state(state_lib.init_variables(name, networks, config,
                                                                     state_lib.init_rng(name, config)), t)
              for name, t in (("parser", tx), ("classifier", classifier_tx))}
    faces = [synthetic.render(*synthetic.sample_face(synthetic.face_rng(5, i)), config.resolution) for i in (0, 1)]
    batch = {"image": np.stack([image.astype(np.float32) / 127.5 - 1.0 for image, _ in faces]),
             "mask": np.stack([label_map.astype(np.int32) for _, label_map in faces])}
    batch["mask_ref"] = batch["mask"]
    smiling = labels.ATTRIBUTE_NAMES.index("Smiling")
    batch["attributes"] = np.zeros((2, len(labels.ATTRIBUTE_NAMES)), np.int32)
    batch["attributes"][0, smiling] = 1  # one smiling face, one not: the classifier's labels differ
    step = jax.jit(steps_lib.make_parser_step(networks, config, tx, classifier_tx))
    guard = steps_lib.Guard.create()
    totals, classifier_totals = [], []
    for i in range(6):
        states, guard, step_metrics = step(states, guard, batch, i, None)
        totals.append(float(step_metrics["parser/total"]))
        classifier_totals.append(float(step_metrics["classifier/total"]))
    assert sorted(step_metrics) == ["classifier/accuracy", "classifier/classifier_cross_entropy",
                                    "classifier/grad_norm", "classifier/learning_rate", "classifier/total",
                                    "parser/grad_norm", "parser/learning_rate", "parser/parser_cross_entropy",
                                    "parser/parser_dice", "parser/pixel_accuracy", "parser/total"]
    assert int(guard.first_bad_step) == -1
    assert all(b < a for a, b in zip(totals, totals[1:])) and totals[-1] < 0.9 * totals[0], totals
    assert classifier_totals[-1] < classifier_totals[0], classifier_totals
    # The classifier's labels are the batch's 'Smiling' column.
    np.testing.assert_array_equal(np.asarray(steps_lib.attribute_labels(config, batch["attributes"])), [[1], [0]])


def test_classifier_predicts_one_logit_per_attribute_and_refuses_unknown_names():
    classifier = AttributeClassifier(attributes=("Smiling", "Eyeglasses"), widths=(4, 8), stem_stride=2)
    images = np.zeros((3, 8, 8, 3), np.float32)
    variables = classifier.init(jax.random.key(0), images)
    assert classifier.apply(variables, images).shape == (3, 2)
    with pytest.raises(ValueError, match="Smilling"):
        AttributeClassifier(attributes=("Smilling",)).init(jax.random.key(0), images)
    with pytest.raises(ValueError, match="multiples of 4"):  # the stem's 2 x one pooling's 2
        classifier.init(jax.random.key(0), np.zeros((1, 6, 6, 3), np.float32))


# ----------------------------------------------------------------------------- metrics


def test_segmentation_metrics_perfect_prediction():
    truth = np.array([[[0, 1], [2, 2]]])
    confusion = metrics.confusion_matrix(truth, truth, 19)
    assert metrics.pixel_accuracy(confusion) == 1.0
    assert metrics.mean_iou(confusion) == 1.0  # the 16 classes in neither map have no IoU and do not count
    assert np.isnan(metrics.iou_per_class(confusion)[3:]).all()


def test_segmentation_metrics_all_background_prediction():
    truth = np.array([[[0, 0, 0, 1], [0, 0, 2, 2]]])  # 5 background, 1 of class 1, 2 of class 2
    confusion = metrics.confusion_matrix(truth, np.zeros_like(truth), 3)
    assert metrics.pixel_accuracy(confusion) == pytest.approx(5 / 8)
    np.testing.assert_allclose(metrics.iou_per_class(confusion), [5 / 8, 0.0, 0.0])
    assert metrics.mean_iou(confusion) == pytest.approx(5 / 24)


def test_segmentation_metrics_known_confusion():
    truth = np.array([0, 0, 1, 1, 1, 2])
    predicted = np.array([0, 1, 1, 1, 2, 2])
    confusion = metrics.confusion_matrix(truth, predicted, 4)
    np.testing.assert_array_equal(confusion[:3, :3], [[1, 1, 0], [0, 2, 1], [0, 0, 1]])
    assert metrics.pixel_accuracy(confusion) == pytest.approx(4 / 6)
    # class 0: TP 1, FN 1 -> 1/2; class 1: TP 2, FP 1, FN 1 -> 2/4; class 2: TP 1, FP 1 -> 1/2; class 3 absent.
    np.testing.assert_allclose(metrics.iou_per_class(confusion)[:3], [0.5, 0.5, 0.5])
    assert np.isnan(metrics.iou_per_class(confusion)[3])
    assert metrics.mean_iou(confusion) == pytest.approx(0.5)
    # A class predicted but never true has IoU 0, and counts.
    confusion = metrics.confusion_matrix(np.array([0, 0]), np.array([0, 3]), 4)
    assert metrics.iou_per_class(confusion)[3] == 0.0 and metrics.mean_iou(confusion) == pytest.approx(0.25)
    with pytest.raises(ValueError, match=r"labels must be in \[0, 4\)"):
        metrics.confusion_matrix(np.array([0]), np.array([4]), 4)


# ----------------------------------------------------------------------------- the CLI on a trained checkpoint


@pytest.fixture(scope="module")
def trained(tmp_path_factory, smoke_data_dir):
    """A workdir where the smoke config trained only the parser phase (4 steps)."""
    config = ebst.get_config("smoke")
    config.data.data_dir = str(smoke_data_dir)
    for phase in ("maskvae", "dmn", "ebst"):
        config.phases[phase].num_steps = 0
    workdir = tmp_path_factory.mktemp("parser_run")
    results = train.train(config, workdir)
    assert [(r.phase, r.last_step) for r in results] == [("parser", 4)]
    return workdir


@pytest.fixture(scope="module")
def face():
    image, label_map = synthetic.render(*synthetic.sample_face(synthetic.face_rng(7, 1)), 64)
    return image, label_map


def test_load_parser_reads_the_trained_params(trained):
    loaded = parse.load_parser(trained)
    assert loaded.resolution == 64 and loaded.step_dir == trained / "checkpoints" / "parser" / "4"
    assert parse.find_parser_checkpoint(trained / "checkpoints" / "parser") == loaded.step_dir
    assert parse.find_parser_checkpoint(loaded.step_dir) == loaded.step_dir
    widths = tuple(ebst.get_config("smoke").model.parser.widths)
    assert loaded.params["classifier"]["kernel"].shape == (1, 1, widths[0], labels.NUM_CLASSES)


def test_cli_any_size_in_ids_and_palette(tmp_path, trained, face, compilation_cache):
    image, _ = face
    wide = np.asarray(Image.fromarray(image).resize((90, 50), Image.Resampling.BICUBIC))
    Image.fromarray(wide).save(tmp_path / "face.jpg")
    outputs = {}
    for fmt in ("ids", "palette"):
        out = tmp_path / f"mask_{fmt}.png"
        assert parse.main([f"--checkpoint={trained}", f"--image={tmp_path / 'face.jpg'}", f"--out={out}",
                           f"--format={fmt}", f"--jax_cache_dir={compilation_cache}"]) == 0
        assert Image.open(out).mode == ("L" if fmt == "ids" else "RGB")
        outputs[fmt] = parse.mask_io.read_mask(out)
        assert outputs[fmt].shape == (50, 90)
    np.testing.assert_array_equal(outputs["ids"], outputs["palette"])
    # The same as parsing the face edge-padded to a 90x90 square and resized to the model's 64x64 (never
    # squashed), then resizing the labels back to 90x90 (nearest) and cropping the padding away.
    parser = parse.Parser(parse.load_parser(trained), batch_size=1)
    photo = parse.read_face(tmp_path / "face.jpg")
    square = parse.mask_io.resize_image(np.pad(photo, ((20, 20), (0, 0), (0, 0)), mode="edge"), 64)
    at_model_size = parser.parse(square[None])[0]
    np.testing.assert_array_equal(outputs["ids"], parse.resize_labels_to(at_model_size, (90, 90))[20:70])


def test_cli_folder_batch(tmp_path, trained, face, compilation_cache):
    image, _ = face
    (tmp_path / "faces").mkdir()
    sizes = {"a": (64, 64), "b": (100, 80), "c": (33, 47)}
    for stem, (width, height) in sizes.items():
        Image.fromarray(image).resize((width, height)).save(tmp_path / "faces" / f"{stem}.png")
    (tmp_path / "faces" / "notes.txt").write_text("not an image")
    out = tmp_path / "masks"
    assert parse.main([f"--checkpoint={trained}", f"--image={tmp_path / 'faces'}", f"--out={out}",
                       "--batch_size=2", f"--jax_cache_dir={compilation_cache}"]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["a.png", "b.png", "c.png"]
    for stem, (width, height) in sizes.items():
        assert parse.mask_io.read_mask(out / f"{stem}.png").shape == (height, width)


def _run_cli(monkeypatch, capsys, args):
    monkeypatch.setattr("sys.argv", ["maskgan-parse", *args])
    with pytest.raises(SystemExit) as exit_info:
        parse.run()
    return exit_info.value.code, capsys.readouterr().err


def test_cli_bad_inputs_exit_2_naming_the_file(tmp_path, trained, monkeypatch, capsys, compilation_cache):
    common = [f"--checkpoint={trained}", f"--jax_cache_dir={compilation_cache}"]
    corrupt = tmp_path / "corrupt.jpg"
    corrupt.write_bytes(b"\xff\xd8 this is not a JPEG")
    code, err = _run_cli(monkeypatch, capsys, [*common, f"--image={corrupt}", f"--out={tmp_path / 'o.png'}"])
    assert code == 2 and f"{corrupt}: not a readable image" in err
    missing = tmp_path / "missing.png"
    code, err = _run_cli(monkeypatch, capsys, [*common, f"--image={missing}", f"--out={tmp_path / 'o.png'}"])
    assert code == 2 and f"{missing}: no such image file" in err
    code, err = _run_cli(monkeypatch, capsys, [f"--checkpoint={tmp_path}", f"--image={corrupt}",
                                               f"--out={tmp_path / 'o.png'}"])
    assert code == 2 and "no finished checkpoint found" in err


def test_evaluate_on_held_out_faces(trained, compilation_cache, capsys):
    assert parse.main([f"--checkpoint={trained}", "--evaluate", "--num_faces=3",
                       f"--jax_cache_dir={compilation_cache}"]) == 0
    printed = capsys.readouterr().out
    assert "pixel accuracy" in printed and "mean IoU" in printed and "l_eye" in printed
    assert parse.main([f"--checkpoint={trained}", "--evaluate", "--num_faces=3", "--no-flip_average",
                       f"--jax_cache_dir={compilation_cache}"]) == 0
    parser = parse.Parser(parse.load_parser(trained), batch_size=4)
    scores = parse.evaluate(parser, num_faces=3)
    assert 0.0 <= scores["mean_iou"] <= scores["pixel_accuracy"] + 1.0 and 0.0 <= scores["pixel_accuracy"] <= 1.0
    assert set(scores["iou"]) == set(labels.CLASS_NAMES)
    with pytest.raises(ValueError, match="seed the checkpoint's synthetic training faces"):
        parse.evaluate(parser, num_faces=3, seed=ebst.get_config("smoke").data.synthetic.seed)
