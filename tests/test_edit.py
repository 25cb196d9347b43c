"""Editing from checkpoints (maskgan_jax.edit) and the mask files it reads (maskgan_jax.mask_io).

A tiny checkpoint is written per module through maskgan_jax.checkpoint: the smoke config's generator
(64 px) with its Adam state and a second network, in phases dmn and ebst of one workdir.
"""

import jax
import numpy as np
import optax
import pytest
from jax.sharding import NamedSharding, PartitionSpec
from PIL import Image

from configs import ebst as ebst_config
from maskgan_jax import checkpoint, edit, framing, mask_io
from maskgan_jax.state import NetState
from tfds_celebamask import labels, synthetic

RESOLUTION = 64


def _save(workdir, phase, config, networks, step=1):
    manager = checkpoint.create_manager(workdir, phase, config.checkpoint, every_steps=1)
    checkpoint.save(manager, step, networks, {"step": np.int32(step)}, None, config, force=True)
    checkpoint.wait(manager)
    manager.close()


def _generator_state(config, seed, shift=0.0):
    module = edit.generator_from_config(config)
    image = np.zeros((1, RESOLUTION, RESOLUTION, 3), np.float32)
    mask = np.zeros((1, RESOLUTION, RESOLUTION, labels.NUM_CLASSES), np.float32)
    params = jax.jit(module.init)(jax.random.key(seed), image, mask, mask)["params"]
    params = jax.tree_util.tree_map(lambda p: p + shift, params)
    return NetState(params=params, opt_state=optax.adam(1e-3).init(params), batch_stats={})


@pytest.fixture(scope="module")
def config():
    return ebst_config.get_config("smoke")


@pytest.fixture(scope="module")
def workdir(tmp_path_factory, config):
    """A workdir with a dmn and an ebst checkpoint (different params) and a discriminator-like item."""
    path = tmp_path_factory.mktemp("edit_workdir")
    other = NetState(params={"w": np.ones((3, 3), np.float32)}, opt_state=None, batch_stats={})
    states = {"dmn": _generator_state(config, 0), "ebst": _generator_state(config, 0, shift=0.25)}
    for phase, state in states.items():
        _save(path, phase, config, {"generator": state, "discriminator": other})
    return path, states


@pytest.fixture(scope="module")
def editor(workdir):
    path, _ = workdir
    return edit.Editor(edit.load_generator(path), batch_size=2)


@pytest.fixture(scope="module")
def face():
    """A synthetic face at 64 px, its mask and the mask of the same face smiling."""
    geometry, style = synthetic.sample_face(synthetic.face_rng(99, 3))
    image, mask = synthetic.render(geometry, style, RESOLUTION)
    _, smiling = synthetic.render(synthetic.EDITS["smile"](geometry), style, RESOLUTION)
    return image, mask, smiling


def _equal_trees(a, b):
    return all(jax.tree_util.tree_leaves(jax.tree_util.tree_map(lambda x, y: np.array_equal(x, y), a, b)))


# ----------------------------------------------------------------------------- loading


def test_find_generator_checkpoint_takes_the_newest_phase_or_the_one_named(workdir):
    path, _ = workdir
    assert edit.find_generator_checkpoint(path) == path / "checkpoints" / "ebst" / "1"
    assert edit.find_generator_checkpoint(path, "dmn") == path / "checkpoints" / "dmn" / "1"
    assert edit.find_generator_checkpoint(path / "checkpoints" / "dmn") == path / "checkpoints" / "dmn" / "1"
    assert edit.find_generator_checkpoint(path / "checkpoints" / "dmn" / "1") == path / "checkpoints" / "dmn" / "1"


def test_load_generator_reads_the_params_replicated_on_every_device(workdir):
    path, states = workdir
    for phase in ("dmn", "ebst"):
        loaded = edit.load_generator(path, phase)
        assert loaded.resolution == RESOLUTION
        assert _equal_trees(loaded.params, states[phase].params)
        for leaf in jax.tree_util.tree_leaves(loaded.params):
            assert isinstance(leaf.sharding, NamedSharding) and leaf.sharding.spec == PartitionSpec()
            assert leaf.sharding.mesh.devices.size == len(jax.local_devices())


def test_load_generator_errors(tmp_path, config, workdir):
    path, _ = workdir
    with pytest.raises(ValueError, match=r"trained at 64x64 .* resolution 128 was requested"):
        edit.load_generator(path, resolution=128)
    # A workdir whose only phase (maskvae) stores no generator.
    vae_only = tmp_path / "vae_only"
    _save(vae_only, "maskvae", config, {"mask_vae": NetState({"w": np.zeros(2, np.float32)}, None, {})})
    with pytest.raises(FileNotFoundError, match="no finished checkpoint with a generator"):
        edit.load_generator(vae_only)
    with pytest.raises(FileNotFoundError, match="has no 'generator' item"):
        edit.load_generator(vae_only / "checkpoints" / "maskvae")
    with pytest.raises(FileNotFoundError, match="no finished checkpoint found"):
        edit.load_generator(tmp_path)
    # A config whose generator is wider than the stored params.
    mismatched = tmp_path / "mismatched"
    wider = config.copy_and_resolve_references()
    wider.model.generator.ngf = 8
    _save(mismatched, "dmn", wider, {"generator": _generator_state(config, 0)})
    with pytest.raises(ValueError, match="do not match"):
        edit.load_generator(mismatched)


# ----------------------------------------------------------------------------- the edit


def _reference_alpha(labels_t, labels_src, dilation, feather):
    """Brute force: grow the changed pixels by dilation + feather (Chebyshev), then average each
    (2 feather + 1)^2 window with coordinates clamped into the image."""
    n, h, w = labels_t.shape
    changed = labels_t != labels_src
    grow = dilation + feather
    grown = np.zeros_like(changed)
    for b, i, j in zip(*np.nonzero(changed)):
        grown[b, max(0, i - grow):i + grow + 1, max(0, j - grow):j + grow + 1] = True
    alpha = np.zeros((n, h, w))
    for b in range(n):
        for i in range(h):
            for j in range(w):
                rows = np.clip(np.arange(i - feather, i + feather + 1), 0, h - 1)
                cols = np.clip(np.arange(j - feather, j + feather + 1), 0, w - 1)
                alpha[b, i, j] = grown[b][np.ix_(rows, cols)].mean()
    return alpha


@pytest.mark.parametrize("dilation,feather", [(0, 0), (1, 0), (0, 2), (2, 1)])
def test_keep_unedited_alpha_matches_the_reference(dilation, feather):
    rng = np.random.default_rng(dilation * 10 + feather)
    labels_t = rng.integers(0, 3, size=(2, 12, 11))
    labels_src = np.where(rng.random((2, 12, 11)) < 0.03, (labels_t + 1) % 3, labels_t)
    labels_src[0, 0, 10] = (labels_t[0, 0, 10] + 1) % 3  # a change at the border
    alpha = np.asarray(edit.keep_unedited_alpha(labels_t, labels_src, dilation, feather))[..., 0]
    np.testing.assert_allclose(alpha, _reference_alpha(labels_t, labels_src, dilation, feather), atol=1e-6)


def test_editor_matches_the_generator_and_keep_unedited_keeps_the_target(workdir, editor, face):
    path, states = workdir
    image, mask, smiling = face
    images = np.stack([image, image[:, ::-1], image])  # 3 faces: padded to the batch size
    labels_t = np.stack([mask, mask[:, ::-1], mask])
    labels_src = np.stack([smiling, mask[:, ::-1], smiling])
    result, kept = editor.edit(images, labels_t, labels_src)
    assert result.shape == kept.shape == (3, RESOLUTION, RESOLUTION, 3) and result.dtype == np.uint8

    module = editor.loaded.module
    one_hot = lambda m: np.eye(labels.NUM_CLASSES, dtype=np.float32)[m]
    generated = module.apply({"params": states["ebst"].params}, images.astype(np.float32) / 127.5 - 1,
                             one_hot(labels_t), one_hot(labels_src))
    expected = np.clip(np.round((np.asarray(generated, np.float64) + 1) * 127.5), 0, 255)
    assert np.abs(result.astype(np.float64) - expected).max() <= 1

    alpha = _reference_alpha(labels_t, labels_src, editor.dilation, editor.feather)
    np.testing.assert_array_equal(kept[alpha == 0], images[alpha == 0])
    np.testing.assert_array_equal(kept[alpha == 1], result[alpha == 1])
    np.testing.assert_array_equal(kept[1], images[1])  # the unchanged mask keeps the whole face


def test_editor_rejects_bad_labels_and_shapes(editor, face):
    image, mask, _ = face
    bad = mask.copy()
    bad[5, 7] = 19
    with pytest.raises(ValueError, match=r"labels_src\[0\]: pixel \(x=7, y=5\) has label 19"):
        editor.edit(image[None], mask[None], bad[None])
    with pytest.raises(ValueError, match=r"expected uint8 \(N, 64, 64, 3\)"):
        editor.edit(image[None, :32], mask[None, :32], mask[None, :32])


# ----------------------------------------------------------------------------- mask files


def test_read_mask_understands_label_ids_and_palette_colours(tmp_path, face):
    _, mask, _ = face
    mask_io.write_mask(tmp_path / "ids.png", mask)
    mask_io.write_mask(tmp_path / "colours.png", mask, palette=True)
    Image.fromarray(np.repeat(mask[..., None], 3, axis=-1)).save(tmp_path / "grey_rgb.png")
    Image.fromarray(mask.astype(np.uint16)).save(tmp_path / "ids16.png")
    indexed = Image.fromarray(mask, mode="P")
    indexed.putpalette(labels.PALETTE.reshape(-1).tolist())
    indexed.save(tmp_path / "indexed.png")
    for name in ("ids", "colours", "grey_rgb", "ids16", "indexed"):
        np.testing.assert_array_equal(mask_io.read_mask(tmp_path / f"{name}.png"), mask, err_msg=name)
    assert Image.open(tmp_path / "colours.png").getpixel((0, 0)) == tuple(labels.PALETTE[mask[0, 0]])


def test_read_mask_names_the_bad_pixel(tmp_path, face):
    _, mask, _ = face
    colours = mask_io.colour_labels(mask).copy()
    colours[9, 4] = (1, 2, 3)
    mask_io.write_image(tmp_path / "bad_colour.png", colours)
    with pytest.raises(ValueError, match=r"bad_colour.png: pixel \(x=4, y=9\) has colour \(1, 2, 3\)"):
        mask_io.read_mask(tmp_path / "bad_colour.png")
    ids = mask.copy()
    ids[2, 6] = 19
    Image.fromarray(ids).save(tmp_path / "bad_id.png")
    with pytest.raises(ValueError, match=r"pixel \(x=6, y=2\) has label 19, outside 0..18"):
        mask_io.read_mask(tmp_path / "bad_id.png")
    with pytest.raises(ValueError, match="unknown class 'lips'"):
        mask_io.parse_classes("mouth,lips")
    assert mask_io.parse_classes("mouth, u_lip,l_lip") == (10, 11, 12)


def test_transfer_classes_takes_their_regions_from_the_other_mask():
    skin, u_lip, l_lip, hair = 1, 11, 12, 13
    target = np.array([
        [0, 0, 0, 0, 0, 0],
        [0, 1, 1, 1, 1, 0],
        [0, 1, 11, 11, 1, 0],
        [0, 1, 12, 12, 1, 0],
        [0, 1, 1, 1, 1, 0],
        [0, 0, 0, 0, 0, 0]], np.uint8)
    other = np.zeros_like(target)
    other[0, 0] = hair  # not transferred
    other[3, 2:5] = u_lip
    other[4, 2:5] = l_lip
    expected = np.array([
        [0, 0, 0, 0, 0, 0],
        [0, 1, 1, 1, 1, 0],
        [0, 1, 1, 1, 1, 0],
        [0, 1, 11, 11, 11, 0],
        [0, 1, 12, 12, 12, 0],
        [0, 0, 0, 0, 0, 0]], np.uint8)
    np.testing.assert_array_equal(mask_io.transfer_classes(target, other, (u_lip, l_lip)), expected)
    assert skin in expected


def test_transfer_classes_fills_vacated_pixels_from_the_nearest_kept_pixel():
    rng = np.random.default_rng(3)
    target = rng.integers(0, 4, size=(9, 10)).astype(np.uint8)
    other = rng.integers(0, 4, size=(9, 10)).astype(np.uint8)
    wanted = mask_io.transfer_classes(target, other, (2,))
    kept = np.argwhere(target != 2)
    for i, j in np.argwhere((target == 2) & (other != 2)):
        distances = ((kept - (i, j)) ** 2).sum(axis=1)
        nearest_labels = {int(target[a, b]) for a, b in kept[distances == distances.min()]}
        assert wanted[i, j] in nearest_labels
    np.testing.assert_array_equal(wanted[other == 2], 2)
    np.testing.assert_array_equal(wanted[(target != 2) & (other != 2)], target[(target != 2) & (other != 2)])


# ----------------------------------------------------------------------------- the command line


def test_cli_one_face_by_attribute_transfer_comes_back_at_the_photo_size(tmp_path, workdir, face,
                                                                          compilation_cache):
    path, _ = workdir
    image, mask, smiling = face
    big_image = mask_io.resize_image(image, 96)
    big_mask = mask_io.resize_labels(mask, 96)
    big_smiling = mask_io.resize_labels(smiling, 96)
    mask_io.write_image(tmp_path / "face.png", big_image)
    mask_io.write_mask(tmp_path / "face_mask.png", big_mask, palette=True)
    mask_io.write_mask(tmp_path / "smiling.png", big_smiling)
    out = tmp_path / "out" / "smile.png"
    assert edit.main([f"--checkpoint={path}", "--phase=dmn", f"--image={tmp_path / 'face.png'}",
                      f"--mask={tmp_path / 'face_mask.png'}", "--transfer=mouth,u_lip,l_lip",
                      f"--from={tmp_path / 'smiling.png'}", f"--out={out}", "--keep_unedited",
                      f"--jax_cache_dir={compilation_cache}"]) == 0
    result = mask_io.read_image(out)
    assert result.shape == (96, 96, 3)
    wanted = mask_io.transfer_classes(big_mask, big_smiling, (10, 11, 12))
    # Outside the edited region (grown by the margins scaled to 96 px) the photo's own pixels, exactly.
    alpha = framing.keep_unedited_alpha(big_mask, wanted, 3, 3)[..., 0]
    assert (alpha == 0).any()
    np.testing.assert_array_equal(result[alpha == 0], big_image[alpha == 0])
    grid = mask_io.read_image(out.with_name("smile_grid.png"))
    assert grid.shape == (RESOLUTION, 4 * RESOLUTION, 3)
    np.testing.assert_array_equal(mask_io.labels_from_colours(grid[:, 2 * RESOLUTION:3 * RESOLUTION]),
                                  mask_io.resize_labels(wanted, RESOLUTION))


def test_cli_folder_batch_with_wanted_masks(tmp_path, workdir, face, compilation_cache):
    path, _ = workdir
    image, mask, smiling = face
    for folder in ("images", "masks", "wanted"):
        (tmp_path / folder).mkdir()
    for stem in ("a", "b", "c"):
        mask_io.write_image(tmp_path / "images" / f"{stem}.jpg", image)
        mask_io.write_mask(tmp_path / "masks" / f"{stem}.png", mask)
        mask_io.write_mask(tmp_path / "wanted" / f"{stem}.png", smiling, palette=True)
    out = tmp_path / "out"
    assert edit.main([f"--checkpoint={path / 'checkpoints' / 'ebst'}", f"--image={tmp_path / 'images'}",
                      f"--mask={tmp_path / 'masks'}", f"--wanted={tmp_path / 'wanted'}", f"--out={out}",
                      f"--jax_cache_dir={compilation_cache}", "--resolution=64"]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["a.png", "a_grid.png", "b.png", "b_grid.png", "c.png",
                                                      "c_grid.png"]


def test_cli_rejects_an_image_and_mask_of_different_sizes(tmp_path, workdir, face, compilation_cache):
    path, _ = workdir
    image, mask, smiling = face
    mask_io.write_image(tmp_path / "face.png", mask_io.resize_image(image, 80))
    mask_io.write_mask(tmp_path / "mask.png", mask)
    mask_io.write_mask(tmp_path / "wanted.png", smiling)
    with pytest.raises(ValueError, match=r"its mask is 64x64 but .*the image is 80x80"):
        edit.main([f"--checkpoint={path}", f"--image={tmp_path / 'face.png'}", f"--mask={tmp_path / 'mask.png'}",
                   f"--wanted={tmp_path / 'wanted.png'}", f"--out={tmp_path / 'out'}",
                   f"--jax_cache_dir={compilation_cache}"])


def test_cli_over_a_tfds_split(tmp_path, workdir, smoke_data_dir, compilation_cache):
    path, _ = workdir
    out = tmp_path / "out"
    assert edit.main([f"--checkpoint={path}", "--tfds=celebamask_hq/official_64", f"--data_dir={smoke_data_dir}",
                      "--split=train", "--num=3", "--transfer=hair", f"--out={out}",
                      f"--jax_cache_dir={compilation_cache}"]) == 0
    results = sorted(p for p in out.iterdir() if not p.stem.endswith("_grid"))
    assert len(results) == 3
    assert all(mask_io.read_image(p).shape == (RESOLUTION, RESOLUTION, 3) for p in results)


def test_writing_an_output_again_replaces_it_whole(tmp_path, face):
    image, mask, _ = face
    mask_io.write_image(tmp_path / "out" / "result.png", image)
    mask_io.write_image(tmp_path / "out" / "result.png", image[::-1])  # a rerun of the same command
    np.testing.assert_array_equal(mask_io.read_image(tmp_path / "out" / "result.png"), image[::-1])
    mask_io.write_mask(tmp_path / "out" / "mask.png", mask)
    mask_io.write_mask(tmp_path / "out" / "mask.png", mask[::-1], palette=True)
    np.testing.assert_array_equal(mask_io.read_mask(tmp_path / "out" / "mask.png"), mask[::-1])
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["mask.png", "result.png"]


def test_cli_norm_statistics_flag_reaches_the_editor(tmp_path, workdir, face, compilation_cache):
    path, _ = workdir
    image, mask, smiling = face
    mask_io.write_image(tmp_path / "face.png", image)
    mask_io.write_mask(tmp_path / "face_mask.png", mask)
    mask_io.write_mask(tmp_path / "smiling.png", smiling)
    loaded = edit.load_generator(path, phase="dmn")
    for mode in ("edit", "face"):
        out = tmp_path / f"out_{mode}.png"
        assert edit.main([f"--checkpoint={path}", "--phase=dmn", f"--image={tmp_path / 'face.png'}",
                          f"--mask={tmp_path / 'face_mask.png'}", f"--wanted={tmp_path / 'smiling.png'}",
                          f"--out={out}", f"--norm_statistics={mode}", f"--jax_cache_dir={compilation_cache}"]) == 0
        expected, _ = edit.Editor(loaded, batch_size=1, norm_statistics=mode).edit(image[None], mask[None],
                                                                                  smiling[None])
        assert np.abs(mask_io.read_image(out).astype(int) - expected[0].astype(int)).max() <= 1, mode
    assert np.abs(mask_io.read_image(tmp_path / "out_edit.png").astype(int)
                  - mask_io.read_image(tmp_path / "out_face.png").astype(int)).max() > 1
    with pytest.raises(SystemExit):
        edit.main([f"--checkpoint={path}", f"--image={tmp_path / 'face.png'}", "--norm_statistics=source",
                   f"--out={tmp_path / 'x.png'}"])
