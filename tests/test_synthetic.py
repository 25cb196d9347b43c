"""Tests of the synthetic face dataset (tfds_celebamask.synthetic and its helper modules)."""

from __future__ import annotations

import dataclasses
import os
import re
import subprocess
import sys

import numpy as np
from PIL import Image
import pytest

from tfds_celebamask import labels
from tfds_celebamask import synthetic

SEED, NUM, SIZE = 3, 12, 64
REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CID = labels.CLASS_ID


def _read_tree(root) -> dict[str, bytes]:
    """{relative path: bytes} of every file under `root`."""
    files = {}
    for folder, _, names in os.walk(root):
        for name in names:
            path = os.path.join(folder, name)
            with open(path, "rb") as f:
                files[os.path.relpath(path, root).replace(os.sep, "/")] = f.read()
    return files


def _face(seed: int, index: int):
    return synthetic.sample_face(synthetic.face_rng(seed, index))


def _merge_in_id_order(masks: dict[int, np.ndarray], shape) -> np.ndarray:
    """Reference CelebAMask-HQ merge: paint parts 1..18 over 0, later ids overwrite."""
    merged = np.zeros(shape, dtype=np.uint8)
    for part_id in sorted(masks):
        merged[masks[part_id]] = part_id
    return merged


def _erode(mask: np.ndarray, steps: int) -> np.ndarray:
    """Pixels whose whole (2 * steps + 1)^2 neighbourhood is in `mask`."""
    out = mask.copy()
    for _ in range(steps):
        padded = np.pad(out, 1, constant_values=False)
        height, width = out.shape
        shifted = [padded[dy : dy + height, dx : dx + width] for dy in range(3) for dx in range(3)]
        out = np.logical_and.reduce(shifted)
    return out


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    root = tmp_path_factory.mktemp("synthetic") / "CelebAMask-HQ"
    synthetic.write_dataset(str(root), NUM, SIZE, SEED)
    return root


@pytest.fixture(scope="module")
def dataset_files(dataset) -> dict[str, bytes]:
    return _read_tree(dataset)


# ----------------------------------------------------------------------------- layout


def test_paths_follow_the_release_naming():
    assert synthetic.image_path(7) == "CelebA-HQ-img/7.jpg"
    assert synthetic.part_path(5, "l_eye") == "CelebAMask-HQ-mask-anno/0/00005_l_eye.png"
    assert synthetic.part_path(2001, "hair") == "CelebAMask-HQ-mask-anno/1/02001_hair.png"
    assert synthetic.part_path(29999, "neck_l") == "CelebAMask-HQ-mask-anno/14/29999_neck_l.png"
    with pytest.raises(ValueError, match="unknown part 'eyes'"):
        synthetic.part_path(0, "eyes")


def test_layout_holds_exactly_the_expected_files(dataset_files):
    part_pattern = re.compile(r"CelebAMask-HQ-mask-anno/0/(\d{5})_(\w+)\.png")
    expected_fixed = {
        "CelebA-HQ-to-CelebA-mapping.txt", "CelebAMask-HQ-attribute-anno.txt",
        "CelebAMask-HQ-pose-anno.txt", "README.txt",
    } | {f"CelebA-HQ-img/{i}.jpg" for i in range(NUM)}
    parts_of = {i: set() for i in range(NUM)}
    for path in set(dataset_files) - expected_fixed:
        match = part_pattern.fullmatch(path)
        assert match, f"unexpected file {path}"
        index, part = int(match.group(1)), match.group(2)
        assert index < NUM and part in labels.PART_NAMES, path
        parts_of[index].add(part)
    assert expected_fixed <= set(dataset_files)
    for i in range(NUM):
        # Every face shows at least these parts at 64 px.
        assert {"skin", "nose", "l_eye", "r_eye", "neck", "cloth"} <= parts_of[i], (i, parts_of[i])


def test_images_are_jpeg_rgb_and_masks_binary_png(dataset):
    for i in range(NUM):
        with Image.open(dataset / f"CelebA-HQ-img/{i}.jpg") as image:
            assert (image.format, image.mode, image.size) == ("JPEG", "RGB", (SIZE, SIZE))
    pngs = sorted((dataset / "CelebAMask-HQ-mask-anno/0").iterdir())
    assert pngs
    for path in pngs:
        with Image.open(path) as mask:
            assert (mask.format, mask.mode, mask.size) == ("PNG", "L", (SIZE, SIZE)), path
            values = set(np.unique(np.asarray(mask)).tolist())
        assert values <= {0, 255} and 255 in values, (path, values)


def test_mapping_file_gives_80_10_10_official_splits():
    text = synthetic.mapping_text(1000)
    lines = text.splitlines()
    assert lines[0] == "idx orig_idx orig_file"
    counts = {"train": 0, "val": 0, "test": 0}
    seen = set()
    for i, line in enumerate(lines[1:]):
        idx, orig, orig_file = line.split(" ")
        assert int(idx) == i and orig_file == f"{int(orig) + 1:06d}.jpg"
        orig = int(orig)
        assert orig not in seen and 0 <= orig < 202_599
        seen.add(orig)
        counts["train" if orig < 162_770 else "val" if orig < 182_637 else "test"] += 1
    assert counts == {"train": 800, "val": 100, "test": 100}
    with pytest.raises(ValueError, match="face index"):
        synthetic.orig_index(synthetic.MAX_FACES)


def test_attribute_and_pose_files_have_the_release_format(dataset_files):
    attr = dataset_files["CelebAMask-HQ-attribute-anno.txt"].decode("ascii").splitlines()
    assert attr[0] == str(NUM)
    assert attr[1].split() == list(labels.ATTRIBUTE_NAMES)
    assert len(attr) == NUM + 2
    for i, line in enumerate(attr[2:]):
        tokens = line.split(" ")
        assert tokens[0] == f"{i}.jpg" and len(tokens) == 41
        assert set(tokens[1:]) <= {"1", "-1"}
    pose = dataset_files["CelebAMask-HQ-pose-anno.txt"].decode("ascii").splitlines()
    assert pose[:2] == [str(NUM), "Yaw Pitch Raw"] and len(pose) == NUM + 2
    for i, line in enumerate(pose[2:]):
        name, yaw, pitch, roll = line.split(" ")
        geometry, _ = _face(SEED, i)
        assert name == f"{i}.jpg"
        np.testing.assert_allclose(
            [float(yaw), float(pitch), float(roll)],
            np.degrees([geometry.yaw, geometry.pitch, geometry.roll]), atol=1e-4,
        )


def test_refuses_to_write_over_an_existing_dataset(dataset):
    with pytest.raises(FileExistsError, match="already holds"):
        synthetic.write_dataset(str(dataset), 1, SIZE, SEED)


# ----------------------------------------------------------------------------- reproducibility


def test_same_seed_same_bytes_different_seed_different_images(tmp_path, dataset_files):
    synthetic.write_dataset(str(tmp_path / "again"), NUM, SIZE, SEED)
    again = _read_tree(tmp_path / "again")
    assert set(again) == set(dataset_files)
    assert all(again[path] == dataset_files[path] for path in again)
    synthetic.write_dataset(str(tmp_path / "other"), NUM, SIZE, SEED + 1)
    other = _read_tree(tmp_path / "other")
    for i in range(NUM):
        path = f"CelebA-HQ-img/{i}.jpg"
        assert other[path] != dataset_files[path], path


def test_workers_do_not_change_the_bytes(tmp_path):
    synthetic.write_dataset(str(tmp_path / "one"), 4, 32, SEED)
    synthetic.write_dataset(str(tmp_path / "two"), 4, 32, SEED, workers=2)
    assert _read_tree(tmp_path / "one") == _read_tree(tmp_path / "two")


def test_cli_writes_the_same_files_and_reports_the_rate(tmp_path):
    command = [sys.executable, "-m", "tfds_celebamask.synthetic", f"--out={tmp_path / 'cli'}"]
    result = subprocess.run(
        command + ["--num=3", "--size=32", "--seed=5"],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert re.search(r"wrote 3 faces \(32x32\) .* \d+ faces/min", result.stdout), result.stdout
    synthetic.write_dataset(str(tmp_path / "api"), 3, 32, 5)
    assert _read_tree(tmp_path / "cli") == _read_tree(tmp_path / "api")
    again = subprocess.run(command + ["--num=3"], cwd=REPO_ROOT, capture_output=True, text=True, timeout=120)
    assert again.returncode == 2 and "already holds" in again.stderr


def test_sampling_and_rendering_are_deterministic():
    g1, s1 = _face(9, 4)
    g2, s2 = _face(9, 4)
    assert (g1, s1) == (g2, s2)
    assert _face(9, 5) != (g1, s1)
    image1, labels1 = synthetic.render(g1, s1, 48)
    image2, labels2 = synthetic.render(g2, s2, 48)
    np.testing.assert_array_equal(image1, image2)
    np.testing.assert_array_equal(labels1, labels2)


# ----------------------------------------------------------------------------- labels and masks


def test_render_returns_uint8_image_and_label_map():
    geometry, style = _face(SEED, 0)
    image, label_map = synthetic.render(geometry, style, 40)
    assert image.shape == (40, 40, 3) and image.dtype == np.uint8
    assert label_map.shape == (40, 40) and label_map.dtype == np.uint8
    assert label_map.max() < labels.NUM_CLASSES
    with pytest.raises(ValueError, match="size must be"):
        synthetic.render(geometry, style, 4)


def test_part_pngs_merged_in_id_order_equal_the_rendered_labels(dataset):
    for i in range(NUM):
        geometry, style = _face(SEED, i)
        image, label_map = synthetic.render(geometry, style, SIZE)
        masks = {}
        for part_id, part in enumerate(labels.PART_NAMES, start=1):
            path = dataset / synthetic.part_path(i, part)
            if path.exists():
                pixels = np.asarray(Image.open(path))
                masks[part_id] = (pixels[..., 0] if pixels.ndim == 3 else pixels) != 0
        np.testing.assert_array_equal(_merge_in_id_order(masks, (SIZE, SIZE)), label_map, err_msg=f"face {i}")
        # A PNG exists exactly for the parts that show in the label map.
        assert set(masks) == set(np.unique(label_map).tolist()) - {0}
        decoded = np.asarray(Image.open(dataset / f"CelebA-HQ-img/{i}.jpg"), dtype=np.float64)
        assert np.abs(decoded - image).mean() < 6.0  # JPEG q90 of the rendered image


def test_part_masks_overlap_and_hold_hidden_regions():
    # Find a face with a hat over hair: the hair mask must continue under the hat.
    for i in range(200):
        geometry, style = _face(SEED, i)
        if geometry.has_hat and geometry.has_hair:
            break
    rendered = synthetic.render_parts(geometry, style, SIZE)
    hair, hat = rendered.masks[CID["hair"] - 1], rendered.masks[CID["hat"] - 1]
    assert (hair & hat).any()
    merged = _merge_in_id_order({k + 1: m for k, m in enumerate(rendered.masks)}, (SIZE, SIZE))
    np.testing.assert_array_equal(merged, rendered.labels)


def test_attributes_in_the_file_match_the_geometry(dataset_files):
    rows = dataset_files["CelebAMask-HQ-attribute-anno.txt"].decode("ascii").splitlines()[2:]
    for i, row in enumerate(rows):
        geometry, style = _face(SEED, i)
        values = np.array([int(v) for v in row.split()[1:]])
        np.testing.assert_array_equal(values, synthetic.attributes(geometry, style))


def test_attributes_follow_geometry_and_the_rendered_labels():
    column = {name: k for k, name in enumerate(labels.ATTRIBUTE_NAMES)}
    undefined = [column[n] for n in labels.ATTRIBUTE_NAMES if n not in synthetic.DEFINED_ATTRIBUTES]
    seen = {name: set() for name in ("Eyeglasses", "Wearing_Hat", "Bald", "Smiling", "Mouth_Slightly_Open")}
    for i in range(60):
        geometry, style = _face(SEED, i)
        attr = synthetic.attributes(geometry, style)
        assert attr.dtype == np.int8 and set(attr.tolist()) <= {-1, 1}
        assert (attr[undefined] == -1).all()
        label_map, _ = synthetic.render_labels(geometry, 96)
        shown = set(np.unique(label_map).tolist())
        expect = {
            "Eyeglasses": geometry.has_glasses,
            "Wearing_Hat": geometry.has_hat,
            "Wearing_Earrings": geometry.has_earrings,
            "Wearing_Necklace": geometry.has_necklace,
            "Bald": not geometry.has_hair,
            "Bangs": geometry.has_hair and geometry.bangs,
            "Smiling": geometry.smile > 0.5,
            "Mouth_Slightly_Open": geometry.mouth_open > 0.3,
        }
        for name, value in expect.items():
            assert attr[column[name]] == (1 if value else -1), (i, name)
        # Cross-check with what the renderer drew.
        assert (attr[column["Eyeglasses"]] == 1) == (CID["eye_g"] in shown), i
        assert (attr[column["Wearing_Hat"]] == 1) == (CID["hat"] in shown), i
        assert (attr[column["Bald"]] == 1) == (CID["hair"] not in shown), i
        if attr[column["Mouth_Slightly_Open"]] == 1:
            assert CID["mouth"] in shown, i
        for name in seen:
            seen[name].add(int(attr[column[name]]))
    # The sample covers both values of each checked attribute.
    assert all(values == {-1, 1} for values in seen.values()), seen
    edited = synthetic.attributes(synthetic.edit_add_hat(synthetic.edit_smile(geometry)), style)
    assert edited[column["Wearing_Hat"]] == 1 and edited[column["Smiling"]] == 1


# ----------------------------------------------------------------------------- edits


@pytest.mark.parametrize("name", [n for n in synthetic.EDITS if n != "style_copy"])
def test_edit_changes_only_its_classes(name):
    allowed = {CID[c] for c in synthetic.EDIT_CLASSES[name]}
    checked = 0
    for i in range(40):
        geometry, _ = _face(SEED, i)
        if not synthetic.edit_applies(name, geometry):
            continue
        edited = synthetic.EDITS[name](geometry)
        assert isinstance(edited, synthetic.Geometry) and edited != geometry
        before, _ = synthetic.render_labels(geometry, SIZE)
        after, _ = synthetic.render_labels(edited, SIZE)
        changed = before != after
        assert changed.any(), (name, i)
        touched = set(np.unique(before[changed]).tolist()) | set(np.unique(after[changed]).tolist())
        assert touched <= allowed, (name, i, sorted(labels.CLASS_NAMES[c] for c in touched - allowed))
        # The edit moves the class it is about in the expected direction.
        count = lambda label_map, *names: sum(int((label_map == CID[n]).sum()) for n in names)
        grows = {
            "smile": ("mouth",), "hair_longer": ("hair",), "larger_eyes": ("l_eye", "r_eye"),
            "add_glasses": ("eye_g",), "add_hat": ("hat",),
        }
        if name == "hair_shorter":
            assert count(after, "hair") < count(before, "hair"), i
        elif name == "smile":  # the mouth opens (an already open one may only change shape)
            assert count(after, "mouth") >= max(count(before, "mouth"), 1), i
        else:
            assert count(after, *grows[name]) > count(before, *grows[name]), (name, i)
        checked += 1
    assert checked >= 5, (name, checked)


def test_edits_that_do_not_apply_are_reported():
    geometry, _ = _face(SEED, 0)
    with_hat = synthetic.edit_add_hat(geometry)
    assert synthetic.edit_applies("add_hat", geometry) == (not geometry.has_hat)
    assert not synthetic.edit_applies("add_hat", with_hat)
    assert not synthetic.edit_applies("smile", synthetic.edit_smile(geometry))
    bald = dataclasses.replace(geometry, has_hair=False)
    assert not synthetic.edit_applies("hair_longer", bald)
    assert not synthetic.edit_applies("hair_shorter", bald)
    with pytest.raises(KeyError, match="unknown edit"):
        synthetic.edit_applies("frown", geometry)


def test_style_copy_renders_the_donor_shapes_in_this_style():
    geometry_a, style_a = _face(SEED, 1)
    geometry_b, style_b = _face(SEED, 2)
    copied = synthetic.EDITS["style_copy"](geometry_a, donor=geometry_b)
    assert copied == geometry_b
    image_ab, labels_ab = synthetic.render(copied, style_a, SIZE)
    image_b, labels_b = synthetic.render(geometry_b, style_b, SIZE)
    np.testing.assert_array_equal(labels_ab, labels_b)
    assert np.abs(image_ab.astype(int) - image_b).mean() > 10
    with pytest.raises(ValueError, match="donor"):
        synthetic.edit_style_copy(geometry_a)


# ----------------------------------------------------------------------------- looks


def test_colour_varies_inside_regions():
    """Not a palette lookup: interior pixels of a class vary in colour."""
    for i in range(6):
        geometry, style = _face(SEED, i)
        image, label_map = synthetic.render(geometry, style, SIZE)
        luminance = image.astype(np.float64) @ np.array([0.299, 0.587, 0.114])
        for name, min_std in (("skin", 4.0), ("background", 3.0), ("cloth", 3.0), ("hair", 3.0)):
            inside = _erode(label_map == CID[name], 1)
            if inside.sum() < 30:
                continue
            assert luminance[inside].std() > min_std, (i, name, luminance[inside].std())
            assert len(np.unique(image[inside], axis=0)) > 20, (i, name)


def test_borders_are_anti_aliased():
    geometry, style = _face(SEED, 0)
    image, label_map = synthetic.render(geometry, style, SIZE)
    skin_in, background_in = _erode(label_map == CID["skin"], 2), _erode(label_map == 0, 2)
    skin_colour = image[skin_in].mean(axis=0)
    # Pixels on the face edge next to hair or background: their colour is between the two sides
    # for some of them (partial coverage), not all equal to the skin interior.
    edge = (label_map == CID["skin"]) & ~_erode(label_map == CID["skin"], 1)
    assert edge.sum() > 20 and background_in.any()
    assert np.abs(image[edge].astype(np.float64) - skin_colour).sum(axis=1).mean() > 15


def _interior(label_map: np.ndarray, name: str, steps: int = 2) -> np.ndarray:
    return _erode(label_map == CID[name], steps)


def test_added_regions_take_a_look_fixed_by_the_visible_style():
    geometry, style = _face(SEED, 5)
    size = 160
    # Style fields that the hat, the glasses and the mouth inside must not depend on.
    hidden_changes = dict(
        hair=(0.9, 0.1, 0.1), lip=(0.1, 0.9, 0.1), background_top=(0.0, 0.0, 1.0), iris=(0.0, 1.0, 1.0)
    )
    restyled = dataclasses.replace(style, **hidden_changes, skin=(0.2, 0.7, 0.2), brow=(0.9, 0.9, 0.1))

    # Hat: the cloth's colour; other style fields do not reach its interior.
    with_hat = synthetic.edit_add_hat(geometry)
    image, label_map = synthetic.render(with_hat, style, size)
    hat = _interior(label_map, "hat")
    assert hat.sum() > 50
    image_restyled, _ = synthetic.render(
        with_hat, dataclasses.replace(style, **hidden_changes, skin=(0.2, 0.7, 0.2)), size
    )
    np.testing.assert_array_equal(image[hat], image_restyled[hat])
    recloth, _ = synthetic.render(with_hat, dataclasses.replace(style, cloth=(1.0, 0.0, 1.0)), size)
    assert np.abs(recloth[hat].astype(int) - image[hat]).mean() > 20

    # Glasses: frames in the brow colour over the visible skin; hidden fields do not matter.
    with_glasses = synthetic.edit_add_glasses(geometry)
    image, label_map = synthetic.render(with_glasses, style, size)
    glasses = _interior(label_map, "eye_g", 1)
    assert glasses.sum() > 10
    image_restyled, _ = synthetic.render(with_glasses, dataclasses.replace(style, **hidden_changes), size)
    np.testing.assert_array_equal(image[glasses], image_restyled[glasses])
    rebrow, _ = synthetic.render(with_glasses, dataclasses.replace(style, brow=(0.9, 0.9, 0.1)), size)
    assert np.abs(rebrow[glasses].astype(int) - image[glasses]).max() > 50

    # Open mouth and teeth: a fixed look, whatever the style.
    smiling = synthetic.edit_smile(geometry)
    image, label_map = synthetic.render(smiling, style, size)
    mouth = _interior(label_map, "mouth", 1)
    assert mouth.sum() > 5
    image_restyled, _ = synthetic.render(smiling, restyled, size)
    np.testing.assert_array_equal(image[mouth], image_restyled[mouth])


# ----------------------------------------------------------------------------- accessory rates


def test_accessory_rates_change_only_who_wears_the_accessory():
    rates = synthetic.accessory_rates({"hat": 1.0})
    assert rates == {**synthetic.ACCESSORY_RATES, "hat": 1.0}
    for index in range(20):
        default = synthetic.sample_face(synthetic.face_rng(SEED, index))
        hatted = synthetic.sample_face(synthetic.face_rng(SEED, index), rates)
        assert hatted[0].has_hat
        assert dataclasses.replace(hatted[0], has_hat=default[0].has_hat) == default[0]
        assert hatted[1] == default[1]
    hatless = synthetic.accessory_rates({"hat": 0.0})
    assert not any(synthetic.sample_face(synthetic.face_rng(SEED, i), hatless)[0].has_hat for i in range(20))


@pytest.mark.parametrize("overrides, message", [({"scarf": 0.2}, "unknown accessory 'scarf'"),
                                                ({"hat": 1.5}, r"where\.hat: 1\.5 is not a probability")])
def test_accessory_rates_name_what_is_wrong(overrides, message):
    with pytest.raises(ValueError, match=message):
        synthetic.accessory_rates(overrides, where="where")


def test_accessory_rates_reach_the_files_and_the_cli(tmp_path):
    synthetic.write_dataset(str(tmp_path / "api"), 4, 32, SEED, rates={"hat": 1.0})
    masks = tmp_path / "api" / "CelebAMask-HQ-mask-anno" / "0"
    assert all((masks / f"{i:05d}_hat.png").is_file() for i in range(4))
    readme = (tmp_path / "api" / "README.txt").read_text()
    assert f"--seed={SEED} --accessory_rate=hat=1\n" in readme
    command = [sys.executable, "-m", "tfds_celebamask.synthetic", "--num=4", "--size=32", f"--seed={SEED}"]
    result = subprocess.run(command + [f"--out={tmp_path / 'cli'}", "--accessory_rate=hat=1"],
                            cwd=REPO_ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert _read_tree(tmp_path / "cli") == _read_tree(tmp_path / "api")
    bad = subprocess.run(command + [f"--out={tmp_path / 'bad'}", "--accessory_rate=hat"],
                         cwd=REPO_ROOT, capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2 and "'hat' is not NAME=P" in bad.stderr
