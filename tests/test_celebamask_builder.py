"""The CelebAMask-HQ builder on its dummy data and on small layouts written here: label maps
against an independent merge, split boundaries, zip vs folder, and every input error.

Builds use the builder's own file format (ArrayRecord) and are read with as_data_source.
"""

from __future__ import annotations

import io
import pathlib
import re
import shutil
import subprocess
import sys
import zipfile

import numpy as np
from PIL import Image
import pytest
import tensorflow_datasets as tfds

from tfds_celebamask import build as build_lib
from tfds_celebamask import labels
from tfds_celebamask.celebamask_hq import celebamask_hq_dataset_builder as cmhq

DUMMY_MANUAL_DIR = pathlib.Path(cmhq.__file__).parent / "dummy_data"
DUMMY_ROOT = DUMMY_MANUAL_DIR / "CelebAMask-HQ"
DUMMY_IDS = (0, 1, 2, 2001, 28000, 29999)


# ----------------------------------------------------------------------------- helpers


def read_split(builder, split: str) -> dict[int, dict]:
    """{image id: example} of one split, read through the ArrayRecord data source."""
    source = builder.as_data_source(split=split)
    examples = [source[i] for i in range(len(source))]
    return {int(ex["image_id"]): ex for ex in examples}


def part_file(root: pathlib.Path, image_id: int, part: str) -> pathlib.Path:
    # Written out from the release's layout, independently of the builder's path helpers.
    return root / "CelebAMask-HQ-mask-anno" / str(image_id // 2000) / f"{image_id:05d}_{part}.png"


def reference_label_map(root: pathlib.Path, image_id: int) -> np.ndarray:
    """Independent merge: class ids in PART_NAMES order, later parts painted over earlier ones."""
    label_map = None
    for class_id, part in enumerate(labels.PART_NAMES, start=1):
        path = part_file(root, image_id, part)
        if not path.exists():
            continue
        pixels = np.array(Image.open(path))
        channel0 = pixels[..., 0] if pixels.ndim == 3 else pixels
        if label_map is None:
            label_map = np.zeros(channel0.shape, np.int64)
        label_map = np.where(channel0 > 0, class_id, label_map)
    return label_map


def nearest_resize(label_map: np.ndarray, size: int) -> np.ndarray:
    """Nearest neighbour sampling at output pixel centres: src = floor((dst + 0.5) * in / out)."""
    rows = np.floor((np.arange(size) + 0.5) * label_map.shape[0] / size).astype(int)
    cols = np.floor((np.arange(size) + 0.5) * label_map.shape[1] / size).astype(int)
    return label_map[rows[:, None], cols[None, :]]


def do_build(manual_dir, data_dir, config="official_64"):
    return build_lib.build(config, manual_dir, data_dir)


def copy_dummy(tmp_path: pathlib.Path) -> pathlib.Path:
    """A writable copy of dummy_data/ (the manual dir); returns its CelebAMask-HQ/ root."""
    manual_dir = tmp_path / "manual"
    shutil.copytree(DUMMY_MANUAL_DIR, manual_dir)
    return manual_dir / "CelebAMask-HQ"


def zip_folder(root: pathlib.Path, zip_path: pathlib.Path) -> None:
    """Zips root/ with root's name as the top-level folder, like the released zip."""
    with zipfile.ZipFile(zip_path, "w") as zf:
        for path in sorted(root.rglob("*")):
            zf.write(path, path.relative_to(root.parent).as_posix())


def write_layout(root: pathlib.Path, images: dict[int, np.ndarray], parts: dict[int, dict[str, np.ndarray]],
                 orig_idx: dict[int, int]) -> None:
    """Writes a CelebAMask-HQ folder in the release's layout. Images are stored as lossless PNG
    data under their .jpg names (PIL reads by content), so pixel checks can be exact."""
    (root / "CelebA-HQ-img").mkdir(parents=True)
    ids = sorted(images)
    for image_id in ids:
        Image.fromarray(images[image_id]).save(root / "CelebA-HQ-img" / f"{image_id}.jpg", format="PNG")
        for part, mask in parts[image_id].items():
            path = part_file(root, image_id, part)
            path.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(mask.astype(np.uint8) * 255).save(path)
    (root / "CelebA-HQ-to-CelebA-mapping.txt").write_text(
        "idx orig_idx orig_file\n" + "".join(f"{i} {orig_idx[i]} {orig_idx[i] + 1:06d}.jpg\n" for i in ids))
    (root / "CelebAMask-HQ-attribute-anno.txt").write_text(
        f"{len(ids)}\n{' '.join(labels.ATTRIBUTE_NAMES)}\n"
        + "".join(f"{i}.jpg " + " ".join(["-1"] * 40) + "\n" for i in ids))
    (root / "CelebAMask-HQ-pose-anno.txt").write_text(
        f"{len(ids)}\nYaw Pitch Raw\n" + "".join(f"{i}.jpg 1.5 -2.25 3\n" for i in ids))


def assert_not_prepared(data_dir: pathlib.Path, config="official_64") -> None:
    """A failed build must leave nothing that TFDS would load as a prepared dataset."""
    fresh = cmhq.Builder(config=config, data_dir=data_dir)
    assert not fresh.is_prepared()
    with pytest.raises(KeyError, match="has not been generated yet"):
        tfds.data_source(f"celebamask_hq/{config}", split="train", data_dir=data_dir, download=False)
    leftovers = [p for p in data_dir.rglob("*") if "incomplete" in p.name or p.name == "dataset_info.json"]
    assert not leftovers


# ----------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def official_64(tmp_path_factory):
    return do_build(DUMMY_MANUAL_DIR, tmp_path_factory.mktemp("official"), "official_64")


@pytest.fixture(scope="module")
def first28k_64(tmp_path_factory):
    return do_build(DUMMY_MANUAL_DIR, tmp_path_factory.mktemp("first28k"), "first28k_64")


# ----------------------------------------------------------------------------- content


def test_builder_defaults_to_array_record(official_64):
    assert official_64.info.file_format.value == "array_record"
    assert "celebamask_hq" in tfds.list_builders(with_community_datasets=False)
    assert [c.name for c in cmhq.Builder.BUILDER_CONFIGS] == [
        f"{s}_{r}" for s in ("official", "first28k") for r in (64, 128, 256, 512)]


def test_label_maps_match_independent_merge(official_64):
    overwritten_pixels = 0
    for split in ("train", "validation", "test"):
        for image_id, ex in read_split(official_64, split).items():
            reference = reference_label_map(DUMMY_ROOT, image_id)
            assert reference.shape == (16, 16)  # the dummy masks are half the 32x32 images
            assert ex["mask"].shape == (64, 64, 1) and ex["mask"].dtype == np.uint8
            np.testing.assert_array_equal(ex["mask"][..., 0], nearest_resize(reference, 64))
            # The dummy data must exercise the overwrite order: count pixels where >1 part is set.
            set_counts = sum(
                (np.array(Image.open(part_file(DUMMY_ROOT, image_id, p))).reshape(16, 16, -1)[..., 0] > 0)
                for p in labels.PART_NAMES if part_file(DUMMY_ROOT, image_id, p).exists())
            overwritten_pixels += int((set_counts > 1).sum())
    assert overwritten_pixels > 50
    # ...and 3-channel part PNGs.
    modes = {Image.open(p).mode for p in DUMMY_ROOT.glob("CelebAMask-HQ-mask-anno/*/*.png")}
    assert modes == {"L", "RGB"}


def test_images_attributes_and_pose_follow_the_files(official_64):
    attribute_rows = (DUMMY_ROOT / "CelebAMask-HQ-attribute-anno.txt").read_text().splitlines()[2:]
    attributes = {int(r.split()[0][:-4]): [v == "1" for v in r.split()[1:]] for r in attribute_rows}
    pose_rows = (DUMMY_ROOT / "CelebAMask-HQ-pose-anno.txt").read_text().splitlines()[2:]
    poses = {int(r.split()[0][:-4]): [float(v) for v in r.split()[1:]] for r in pose_rows}
    seen = set()
    for split in ("train", "validation", "test"):
        for image_id, ex in read_split(official_64, split).items():
            seen.add(image_id)
            assert [bool(ex["attributes"][n]) for n in labels.ATTRIBUTE_NAMES] == attributes[image_id]
            assert ex["pose"].dtype == np.float32
            np.testing.assert_allclose(ex["pose"], poses[image_id], rtol=0, atol=1e-4)
            # 32 -> 64 enlarges (bicubic); the image must still be this id's photo.
            source = np.asarray(Image.open(DUMMY_ROOT / "CelebA-HQ-img" / f"{image_id}.jpg").convert("RGB"))
            assert ex["image"].shape == (64, 64, 3) and ex["image"].dtype == np.uint8
            upsampled = source.repeat(2, 0).repeat(2, 1).astype(float)
            assert np.abs(ex["image"] - upsampled).mean() < 12
    assert seen == set(DUMMY_IDS)


def test_downscaling_is_area_average_and_nearest(tmp_path):
    # 128x128 images with masks at image size (allowed: one mask size for the whole dataset),
    # stored losslessly so that the 2x2 box average can be checked to the rounding.
    rng = np.random.default_rng(0)
    images, parts = {}, {}
    yy, xx = np.mgrid[0:128, 0:128]
    for image_id in (3, 4):
        images[image_id] = rng.integers(0, 256, (128, 128, 3), dtype=np.uint8)
        parts[image_id] = {
            "skin": (yy >= 10 + image_id) & (yy < 100) & (xx >= 20) & (xx < 110),
            "l_eye": (yy >= 40) & (yy < 47) & (xx >= 71) & (xx < 90),  # asymmetric, odd edges
            "hair": (yy < 33) & (xx >= 5 * image_id),
        }
    write_layout(tmp_path / "manual" / "CelebAMask-HQ", images, parts, {3: 10, 4: 20})
    builder = do_build(tmp_path / "manual", tmp_path / "data", "first28k_64")
    examples = read_split(builder, "train")
    assert sorted(examples) == [3, 4]
    for image_id, ex in examples.items():
        box_mean = images[image_id].astype(float).reshape(64, 2, 64, 2, 3).mean(axis=(1, 3))
        assert np.abs(ex["image"] - box_mean).max() <= 1.0
        expected = np.zeros((128, 128), int)
        for class_name in ("skin", "l_eye", "hair"):  # id order 1, 4, 13
            expected[parts[image_id][class_name]] = labels.CLASS_ID[class_name]
        np.testing.assert_array_equal(ex["mask"][..., 0], expected[1::2, 1::2])


# ----------------------------------------------------------------------------- splits


@pytest.mark.parametrize("orig_idx, split", [
    (0, "train"), (162_769, "train"), (162_770, "validation"), (182_636, "validation"),
    (182_637, "test"), (202_598, "test"),
])
def test_official_boundaries_are_zero_based(orig_idx, split):
    # CelebA file 162770.jpg (orig_idx 162769) is the last train image, 162771.jpg the first val.
    assert cmhq.official_split(orig_idx) == split


def test_official_splits_of_dummy_data(official_64):
    # orig_idx: 0 -> 162769, 1 -> 162770, 2 -> 182636, 2001 -> 182637, 28000 -> 5, 29999 -> 202598.
    assert sorted(read_split(official_64, "train")) == [0, 28000]
    assert sorted(read_split(official_64, "validation")) == [1, 2]
    assert sorted(read_split(official_64, "test")) == [2001, 29999]


def test_first28k_splits(first28k_64):
    assert set(first28k_64.info.splits) == {"train", "test"}
    assert sorted(read_split(first28k_64, "train")) == [0, 1, 2, 2001]
    assert sorted(read_split(first28k_64, "test")) == [28000, 29999]
    assert (cmhq.first28k_split(27_999), cmhq.first28k_split(28_000)) == ("train", "test")


def test_empty_split_is_left_out(tmp_path):
    root = copy_dummy(tmp_path)
    keep = {0, 1, 2}  # all below 28000: first28k has no test image
    mapping = (root / "CelebA-HQ-to-CelebA-mapping.txt").read_text().splitlines()
    (root / "CelebA-HQ-to-CelebA-mapping.txt").write_text(
        "\n".join([mapping[0]] + [r for r in mapping[1:] if int(r.split()[0]) in keep]) + "\n")
    builder = do_build(root.parent, tmp_path / "data", "first28k_64")
    assert set(builder.info.splits) == {"train"}
    assert sorted(read_split(builder, "train")) == sorted(keep)


# ----------------------------------------------------------------------------- zip


def test_zip_and_folder_give_the_same_examples(tmp_path, first28k_64):
    manual_dir = tmp_path / "manual_zip"
    manual_dir.mkdir()
    zip_folder(DUMMY_ROOT, manual_dir / "CelebAMask-HQ.zip")
    from_zip = do_build(manual_dir, tmp_path / "data", "first28k_64")
    for split in ("train", "test"):
        folder_examples, zip_examples = read_split(first28k_64, split), read_split(from_zip, split)
        assert sorted(folder_examples) == sorted(zip_examples)
        for image_id, ex in folder_examples.items():
            other = zip_examples[image_id]
            for key in ("image", "mask", "pose"):
                np.testing.assert_array_equal(ex[key], other[key])
            assert ex["attributes"] == other["attributes"]


# ----------------------------------------------------------------------------- errors


def test_missing_manual_dir(tmp_path):
    missing = tmp_path / "no_such_dir"
    with pytest.raises(FileNotFoundError, match=re.escape(str(missing)) + ".*does not exist or is empty"):
        do_build(missing, tmp_path / "data")
    assert_not_prepared(tmp_path / "data")


def test_empty_manual_dir(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="does not exist or is empty"):
        do_build(tmp_path / "empty", tmp_path / "data")
    assert_not_prepared(tmp_path / "data")


def test_manual_dir_without_the_dataset(tmp_path):
    (tmp_path / "manual").mkdir()
    (tmp_path / "manual" / "CelebA-HQ-img").mkdir()  # unpacked one level too deep, say
    with pytest.raises(FileNotFoundError, match=r"expected CelebAMask-HQ\.zip or the unpacked CelebAMask-HQ/"):
        do_build(tmp_path / "manual", tmp_path / "data")
    assert_not_prepared(tmp_path / "data")


def test_corrupt_zip(tmp_path):
    (tmp_path / "manual").mkdir()
    (tmp_path / "manual" / "CelebAMask-HQ.zip").write_bytes(b"not a zip at all")
    with pytest.raises(ValueError, match=r"CelebAMask-HQ\.zip: not a readable zip file"):
        do_build(tmp_path / "manual", tmp_path / "data")
    assert_not_prepared(tmp_path / "data")


def test_zip_without_top_folder(tmp_path):
    (tmp_path / "manual").mkdir()
    with zipfile.ZipFile(tmp_path / "manual" / "CelebAMask-HQ.zip", "w") as zf:
        zf.writestr("CelebA-HQ-to-CelebA-mapping.txt", "idx orig_idx orig_file\n")
    with pytest.raises(FileNotFoundError, match=r"CelebAMask-HQ\.zip:CelebAMask-HQ/CelebA-HQ-to-CelebA-mapping\.txt"):
        do_build(tmp_path / "manual", tmp_path / "data")
    assert_not_prepared(tmp_path / "data")


def test_image_without_any_part_file(tmp_path):
    root = copy_dummy(tmp_path)
    for path in root.glob("CelebAMask-HQ-mask-anno/0/00002_*.png"):
        path.unlink()
    with pytest.raises(FileNotFoundError, match=r"no part mask PNG at all.*00002_<part>\.png"):
        do_build(root.parent, tmp_path / "data")
    assert_not_prepared(tmp_path / "data")


def test_missing_image_file(tmp_path):
    root = copy_dummy(tmp_path)
    (root / "CelebA-HQ-img" / "2001.jpg").unlink()
    with pytest.raises(FileNotFoundError, match=r"no image file.*CelebA-HQ-img/2001\.jpg"):
        do_build(root.parent, tmp_path / "data")
    assert_not_prepared(tmp_path / "data")


def test_truncated_image(tmp_path):
    root = copy_dummy(tmp_path)
    path = root / "CelebA-HQ-img" / "1.jpg"
    path.write_bytes(path.read_bytes()[:300])
    with pytest.raises(ValueError, match=re.escape(str(path)) + ": cannot decode the image"):
        do_build(root.parent, tmp_path / "data")
    assert_not_prepared(tmp_path / "data")


def test_unreadable_part_mask(tmp_path):
    root = copy_dummy(tmp_path)
    path = part_file(root, 29999, "hair")
    path.write_bytes(b"\x89PNG garbage")
    with pytest.raises(ValueError, match=re.escape(str(path)) + ": cannot decode the part mask PNG"):
        do_build(root.parent, tmp_path / "data")
    assert_not_prepared(tmp_path / "data")


def test_part_mask_of_another_size_within_an_image(tmp_path):
    root = copy_dummy(tmp_path)
    path = part_file(root, 0, "nose")
    Image.fromarray(np.full((8, 8), 255, np.uint8)).save(path)
    with pytest.raises(ValueError, match=re.escape(str(path)) + r": part mask is 8x8 .* must share one size"):
        do_build(root.parent, tmp_path / "data")
    assert_not_prepared(tmp_path / "data")


def test_part_masks_of_another_size_across_images(tmp_path):
    root = copy_dummy(tmp_path)
    for path in root.glob("CelebAMask-HQ-mask-anno/14/29999_*.png"):  # consistent within the image
        Image.open(path).resize((8, 8), Image.Resampling.NEAREST).save(path)
    with pytest.raises(ValueError, match=r"29999_\w+\.png: part masks of image 29999 are 8x8 but those of image "
                                         r"28000 are 16x16; all part masks of the dataset must share one size"):
        do_build(root.parent, tmp_path / "data", "first28k_64")
    assert_not_prepared(tmp_path / "data", "first28k_64")


def test_part_masks_with_another_aspect_ratio(tmp_path):
    root = copy_dummy(tmp_path)
    for path in root.glob("CelebAMask-HQ-mask-anno/0/00002_*.png"):
        Image.open(path).resize((16, 8)).save(path)
    expected = r"00002_\w+\.png: part masks are 16x8 \(WxH\) but the image .*2\.jpg is 32x32"
    with pytest.raises(ValueError, match=expected):
        do_build(root.parent, tmp_path / "data")
    assert_not_prepared(tmp_path / "data")


@pytest.mark.parametrize("file_name, line_no, new_line, message", [
    ("CelebA-HQ-to-CelebA-mapping.txt", 1, "idx orig_file orig_idx", "expected the header"),
    ("CelebA-HQ-to-CelebA-mapping.txt", 3, "1 162770", "expected '<idx> <orig_idx> <orig_file>'"),
    ("CelebA-HQ-to-CelebA-mapping.txt", 4, "x 182636 182637.jpg", "expected '<idx> <orig_idx> <orig_file>'"),
    ("CelebAMask-HQ-attribute-anno.txt", 1, "six", "expected the number of rows"),
    ("CelebAMask-HQ-attribute-anno.txt", 1, "7", "announces 7 rows but the file has 6"),
    ("CelebAMask-HQ-attribute-anno.txt", 2, "Smiling Male", "expected the 40 CelebA attribute names"),
    ("CelebAMask-HQ-attribute-anno.txt", 5, "2.jpg " + " ".join(["1"] * 39) + " 0", "values in {-1, 1}"),
    ("CelebAMask-HQ-attribute-anno.txt", 6, "2001.png " + " ".join(["1"] * 40), "an image name like '123.jpg'"),
    ("CelebAMask-HQ-pose-anno.txt", 4, "1.jpg 0.5 nan?? 2", "expected '<i>.jpg yaw pitch roll'"),
    ("CelebAMask-HQ-pose-anno.txt", 8, "29999.jpg 1 2", "expected '<i>.jpg yaw pitch roll'"),
])
def test_annotation_row_that_does_not_parse(tmp_path, file_name, line_no, new_line, message):
    root = copy_dummy(tmp_path)
    path = root / file_name
    lines = path.read_text().splitlines()
    lines[line_no - 1] = new_line
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(ValueError, match=re.escape(f"{path}:{line_no}: ") + ".*" + re.escape(message)):
        do_build(root.parent, tmp_path / "data")
    assert_not_prepared(tmp_path / "data")


def test_annotation_row_missing_for_an_image(tmp_path):
    root = copy_dummy(tmp_path)
    path = root / "CelebAMask-HQ-pose-anno.txt"
    lines = path.read_text().splitlines()
    path.write_text("\n".join(["5"] + lines[1:4] + lines[5:]) + "\n")  # drop the row of 2.jpg
    with pytest.raises(ValueError, match=re.escape(str(path)) + r": no row for 1 image\(s\).*2\.jpg"):
        do_build(root.parent, tmp_path / "data")
    assert_not_prepared(tmp_path / "data")


@pytest.mark.parametrize("mode", ["L", "RGB", "RGBA", "LA"])
def test_part_png_is_read_from_channel_zero(mode):
    channel0 = np.zeros((4, 5), np.uint8)
    channel0[1, 2], channel0[3, 0] = 255, 1  # any non-zero counts as set
    other = np.full((4, 5), 255, np.uint8)  # other channels must be ignored
    channels = {"L": [channel0], "LA": [channel0, other], "RGB": [channel0, other, other],
                "RGBA": [channel0, other, other, other]}[mode]
    pixels = np.stack(channels, -1) if len(channels) > 1 else channels[0]
    buffer = io.BytesIO()
    Image.fromarray(pixels, mode).save(buffer, format="PNG")
    np.testing.assert_array_equal(cmhq.decode_part(buffer.getvalue(), "x.png"), channel0 > 0)


def test_command_line_build(tmp_path):
    command = [sys.executable, "-m", "tfds_celebamask.build", f"--manual_dir={DUMMY_MANUAL_DIR}",
               f"--data_dir={tmp_path}", "--config=official_64"]
    result = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-3000:]
    written = tmp_path / "celebamask_hq" / "official_64" / "1.0.0"
    assert f"Wrote celebamask_hq/official_64/1.0.0 (array_record) at {written}" in result.stdout
    assert "train: 2 examples\n  validation: 2 examples\n  test: 2 examples" in result.stdout
    assert cmhq.Builder(config="official_64", data_dir=tmp_path).is_prepared()
