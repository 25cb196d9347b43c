"""CelebAMask-HQ as a TFDS dataset: face images, merged 19-class part masks, attributes, pose.

The data is never downloaded by code (non-commercial research use only, no redistribution):
the user puts `CelebAMask-HQ.zip` or the unpacked `CelebAMask-HQ/` folder in the manual
directory. The builder reads straight from the zip (no unpacking) or from the folder.

Builder configs are named `{scheme}_{resolution}`:
  * scheme `official`: CelebA's own train/validation/test partition, applied through the
    mapping file's 0-based `orig_idx` (see `official_split`).
  * scheme `first28k`: ids < 28,000 train, the rest test (SEAN and later GAN papers).
  * resolution 64, 128, 256 or 512: image and mask are resized once to resolution^2.

Records are stored as ArrayRecord (the default file format of this builder) and read with
`tfds.data_source(...)` or `builder.as_data_source(split)`; no TensorFlow is needed to build
or read: images and masks are PNG-encoded here with PIL.

The split boundaries, and how they fix the original split script, are documented in `Builder`.
"""

from __future__ import annotations

import collections
import concurrent.futures
import dataclasses
import io
import zipfile
from collections.abc import Iterator, Mapping, Sequence

from absl import logging
from etils import epath
import numpy as np
from PIL import Image
import tensorflow_datasets as tfds

from tfds_celebamask import labels

from tfds_celebamask.layout import (
    ATTRIBUTE_FILE, CELEBA_TRAIN_END, CELEBA_VALIDATION_END, IMAGE_DIR, IMAGES_PER_MASK_FOLDER, MAPPING_FILE,
    MASK_DIR, POSE_FILE, ROOT_NAME, ZIP_NAME)

FIRST28K_TRAIN_END = 28_000

SPLIT_SCHEMES = ("official", "first28k")
RESOLUTIONS = (64, 128, 256, 512)
_MAPPING_HEADER = ("idx", "orig_idx", "orig_file")
_DECODE_THREADS = 8  # PIL decode, resize and PNG encode release the GIL
_IN_FLIGHT_PER_THREAD = 4  # bounds the examples held in memory while decoding

MANUAL_DOWNLOAD_INSTRUCTIONS = f"""\
CelebAMask-HQ cannot be downloaded automatically. Its licence allows non-commercial research
and educational use only, and no redistribution (the images are CelebA's; see the dataset's
README.txt).

1. Open the CelebAMask-HQ repository, https://github.com/switchablenorms/CelebAMask-HQ, and
   follow its README's download links (Google Drive, or Baidu Drive) to `{ZIP_NAME}`
   (about 3 GB). The project page linked from that README points to the same file.
2. Put `{ZIP_NAME}` itself in the manual directory (it is read directly, no need to unpack),
   or unpack it there so that the manual directory holds the `{ROOT_NAME}/` folder.
   If both are present the folder is used.

The `{ROOT_NAME}/` folder (or the zip's top-level folder of that name) must contain:
  {IMAGE_DIR}/<i>.jpg                                  face images, i = 0..29999
  {MASK_DIR}/<i // 2000>/<i:05d>_<part>.png   one binary PNG per visible part
  {MAPPING_FILE}                      idx orig_idx orig_file
  {ATTRIBUTE_FILE}                    the 40 CelebA attributes
  {POSE_FILE}                         yaw, pitch, roll

Build, for example: python -m tfds_celebamask.build --manual_dir=DIR --data_dir=DIR \\
    --config=official_256
"""

_CITATION = """\
@inproceedings{CelebAMask-HQ,
  title={MaskGAN: Towards Diverse and Interactive Facial Image Manipulation},
  author={Lee, Cheng-Han and Liu, Ziwei and Wu, Lingyun and Luo, Ping},
  booktitle={IEEE Conference on Computer Vision and Pattern Recognition (CVPR)},
  year={2020}
}
"""


# --------------------------------------------------------------------------- splits


def official_split(orig_idx: int) -> str:
    """CelebA's partition of a 0-based CelebA index: 'train', 'validation' or 'test'."""
    if orig_idx < CELEBA_TRAIN_END:
        return "train"
    if orig_idx < CELEBA_VALIDATION_END:
        return "validation"
    return "test"


def first28k_split(image_id: int) -> str:
    """The split used by SEAN and later papers: CelebA-HQ ids < 28,000 'train', else 'test'."""
    return "train" if image_id < FIRST28K_TRAIN_END else "test"


def split_of(scheme: str, image_id: int, orig_idx: int) -> str:
    """Split name of one image under `scheme` ('official' or 'first28k')."""
    if scheme == "official":
        return official_split(orig_idx)
    if scheme == "first28k":
        return first28k_split(image_id)
    raise ValueError(f"Unknown split scheme {scheme!r}; expected one of {SPLIT_SCHEMES}.")


def split_names(scheme: str) -> tuple[str, ...]:
    """The splits a scheme defines, in order."""
    return ("train", "validation", "test") if scheme == "official" else ("train", "test")


# --------------------------------------------------------------------------- annotations


def _image_id_from_name(token: str, where: str) -> int:
    """'123.jpg' -> 123, or a ValueError naming `where` (file:line)."""
    stem, dot, ext = token.partition(".")
    if dot != "." or ext != "jpg" or not stem.isdigit():
        raise ValueError(f"{where}: expected an image name like '123.jpg', got {token!r}.")
    return int(stem)


def _lines(text: str) -> list[tuple[int, list[str]]]:
    """Non-blank lines of `text` as (1-based line number, whitespace-split tokens)."""
    return [(n, line.split()) for n, line in enumerate(text.splitlines(), 1) if line.strip()]


def parse_mapping(text: str, path: str) -> dict[int, int]:
    """Parses CelebA-HQ-to-CelebA-mapping.txt into {CelebA-HQ id: 0-based CelebA index}.

    Expects a header 'idx orig_idx orig_file', then rows '<idx> <orig_idx> <orig_file>'.
    `path` only names the file in errors.
    """
    rows = _lines(text)
    if not rows or tuple(rows[0][1]) != _MAPPING_HEADER:
        got = " ".join(rows[0][1]) if rows else "an empty file"
        raise ValueError(f"{path}:1: expected the header {' '.join(_MAPPING_HEADER)!r}, got {got!r}.")
    mapping: dict[int, int] = {}
    for line_no, tokens in rows[1:]:
        where = f"{path}:{line_no}"
        if len(tokens) != 3 or not tokens[0].isdigit() or not tokens[1].isdigit():
            raise ValueError(
                f"{where}: expected '<idx> <orig_idx> <orig_file>' with integer idx and orig_idx, "
                f"got {' '.join(tokens)!r}."
            )
        image_id, orig_idx = int(tokens[0]), int(tokens[1])
        if image_id in mapping:
            raise ValueError(f"{where}: image id {image_id} is listed twice.")
        mapping[image_id] = orig_idx
    return mapping


def _parse_count(rows: list[tuple[int, list[str]]], path: str) -> int:
    if not rows or len(rows[0][1]) != 1 or not rows[0][1][0].isdigit():
        got = " ".join(rows[0][1]) if rows else "an empty file"
        raise ValueError(f"{path}:1: expected the number of rows (e.g. '30000'), got {got!r}.")
    return int(rows[0][1][0])


def _check_row_count(expected: int, rows: Sequence, path: str) -> None:
    if expected != len(rows):
        raise ValueError(f"{path}:1: the header announces {expected} rows but the file has {len(rows)}.")


def parse_attributes(text: str, path: str) -> dict[int, np.ndarray]:
    """Parses CelebAMask-HQ-attribute-anno.txt into {image id: bool array (40,)}.

    Expects the row count, the 40 attribute names in `labels.ATTRIBUTE_NAMES` order, then rows
    '<i>.jpg' followed by 40 values in {-1, 1} (1 = attribute present).
    """
    rows = _lines(text)
    count = _parse_count(rows, path)
    if len(rows) < 2 or tuple(rows[1][1]) != labels.ATTRIBUTE_NAMES:
        got = " ".join(rows[1][1]) if len(rows) > 1 else "nothing"
        raise ValueError(
            f"{path}:2: expected the 40 CelebA attribute names in order "
            f"({' '.join(labels.ATTRIBUTE_NAMES[:3])} ...), got {got!r}."
        )
    num_attributes = len(labels.ATTRIBUTE_NAMES)
    attributes: dict[int, np.ndarray] = {}
    for line_no, tokens in rows[2:]:
        where = f"{path}:{line_no}"
        if len(tokens) != 1 + num_attributes or any(v not in ("1", "-1") for v in tokens[1:]):
            raise ValueError(
                f"{where}: expected '<i>.jpg' and {num_attributes} values in {{-1, 1}}, "
                f"got {' '.join(tokens)!r}."
            )
        image_id = _image_id_from_name(tokens[0], where)
        if image_id in attributes:
            raise ValueError(f"{where}: image {tokens[0]} is listed twice.")
        attributes[image_id] = np.array([v == "1" for v in tokens[1:]], dtype=bool)
    _check_row_count(count, attributes, path)
    return attributes


def parse_pose(text: str, path: str) -> dict[int, np.ndarray]:
    """Parses CelebAMask-HQ-pose-anno.txt into {image id: float32 [yaw, pitch, roll]}.

    Expects the row count, a 3-name header line ('Yaw Pitch Raw' in the release), then rows
    '<i>.jpg yaw pitch roll' (degrees).
    """
    rows = _lines(text)
    count = _parse_count(rows, path)
    if len(rows) < 2 or len(rows[1][1]) != 3:
        got = " ".join(rows[1][1]) if len(rows) > 1 else "nothing"
        raise ValueError(f"{path}:2: expected the header 'Yaw Pitch Raw', got {got!r}.")
    poses: dict[int, np.ndarray] = {}
    for line_no, tokens in rows[2:]:
        where = f"{path}:{line_no}"
        try:
            if len(tokens) != 4:
                raise ValueError
            angles = np.array([float(v) for v in tokens[1:]], dtype=np.float32)
        except ValueError:
            raise ValueError(
                f"{where}: expected '<i>.jpg yaw pitch roll' with 3 numbers, got {' '.join(tokens)!r}."
            ) from None
        if not np.all(np.isfinite(angles)):
            raise ValueError(f"{where}: pose angles must be finite, got {' '.join(tokens[1:])!r}.")
        image_id = _image_id_from_name(tokens[0], where)
        if image_id in poses:
            raise ValueError(f"{where}: image {tokens[0]} is listed twice.")
        poses[image_id] = angles
    _check_row_count(count, poses, path)
    return poses


# --------------------------------------------------------------------------- file layout


def image_path(image_id: int) -> str:
    """Path of an image relative to the CelebAMask-HQ root."""
    return f"{IMAGE_DIR}/{image_id}.jpg"


def part_path(image_id: int, part: str) -> str:
    """Path of one part PNG relative to the CelebAMask-HQ root."""
    return f"{MASK_DIR}/{image_id // IMAGES_PER_MASK_FOLDER}/{image_id:05d}_{part}.png"


class _FolderRoot:
    """Reads the unpacked CelebAMask-HQ/ folder."""

    def __init__(self, root: epath.Path):
        self.root = root

    def display(self, relative: str) -> str:
        return str(self.root / relative)

    def read_bytes(self, relative: str) -> bytes:
        try:
            return (self.root / relative).read_bytes()
        except FileNotFoundError:
            raise FileNotFoundError(f"{self.display(relative)}: file not found.") from None
        except OSError as e:
            raise ValueError(f"{self.display(relative)}: cannot read the file ({e}).") from e

    def exists(self, relative: str) -> bool:
        return (self.root / relative).exists()

    def list_files(self, folder: str) -> set[str]:
        """Every file under root/folder (two levels deep at most), relative to root."""
        found = set()
        base = self.root / folder
        if not base.is_dir():
            return found
        for entry in base.iterdir():
            if entry.is_dir():
                found.update(f"{folder}/{entry.name}/{child.name}" for child in entry.iterdir())
            else:
                found.add(f"{folder}/{entry.name}")
        return found

    def close(self) -> None:
        pass


class _ZipRoot:
    """Reads the CelebAMask-HQ/ folder inside CelebAMask-HQ.zip without unpacking it."""

    def __init__(self, zip_path: epath.Path):
        self.zip_path = zip_path
        self._file = zip_path.open("rb")
        try:
            self._zip = zipfile.ZipFile(self._file)
        except zipfile.BadZipFile as e:
            self._file.close()
            raise ValueError(f"{zip_path}: not a readable zip file ({e}).") from e
        self._names = set(self._zip.namelist())

    def display(self, relative: str) -> str:
        return f"{self.zip_path}:{ROOT_NAME}/{relative}"

    def read_bytes(self, relative: str) -> bytes:
        try:
            return self._zip.read(f"{ROOT_NAME}/{relative}")
        except KeyError:
            raise FileNotFoundError(f"{self.display(relative)}: no such member in the zip.") from None
        except (zipfile.BadZipFile, OSError, EOFError) as e:
            raise ValueError(f"{self.display(relative)}: cannot read this zip member ({e}).") from e

    def exists(self, relative: str) -> bool:
        return f"{ROOT_NAME}/{relative}" in self._names

    def list_files(self, folder: str) -> set[str]:
        prefix = f"{ROOT_NAME}/{folder}/"
        start = len(ROOT_NAME) + 1
        return {n[start:] for n in self._names if n.startswith(prefix) and not n.endswith("/")}

    def close(self) -> None:
        self._zip.close()
        self._file.close()


def _open_root(manual_dir: epath.Path) -> _FolderRoot | _ZipRoot:
    """The CelebAMask-HQ source inside manual_dir: the unpacked folder if present, else the zip."""
    folder, zip_path = manual_dir / ROOT_NAME, manual_dir / ZIP_NAME
    if folder.is_dir():
        return _FolderRoot(folder)
    if zip_path.exists():
        return _ZipRoot(zip_path)
    present = sorted(p.name for p in manual_dir.iterdir()) if manual_dir.is_dir() else []
    raise FileNotFoundError(
        f"{manual_dir}: expected {ZIP_NAME} or the unpacked {ROOT_NAME}/ folder in the manual "
        f"directory, found {present[:10]}.\n{MANUAL_DOWNLOAD_INSTRUCTIONS}"
    )


def _read_text(root: _FolderRoot | _ZipRoot, relative: str) -> str:
    if not root.exists(relative):
        raise FileNotFoundError(f"{root.display(relative)}: annotation file not found.\n{MANUAL_DOWNLOAD_INSTRUCTIONS}")
    data = root.read_bytes(relative)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise ValueError(f"{root.display(relative)}: not a UTF-8 text file ({e}).") from e


# --------------------------------------------------------------------------- pixels


def decode_image(data: bytes, where: str) -> Image.Image:
    """JPEG/PNG bytes -> RGB PIL image, or a ValueError naming `where`."""
    try:
        image = Image.open(io.BytesIO(data))
        image.load()  # decode now so a truncated file fails here, not later
    except (OSError, SyntaxError, ValueError) as e:
        raise ValueError(f"{where}: cannot decode the image ({e}).") from e
    return image.convert("RGB")


def decode_part(data: bytes, where: str) -> np.ndarray:
    """A part PNG -> bool array (H, W): channel 0 of a 1-, 2-, 3- or 4-channel PNG, non-zero = set."""
    try:
        image = Image.open(io.BytesIO(data))
        image.load()
    except (OSError, SyntaxError, ValueError) as e:
        raise ValueError(f"{where}: cannot decode the part mask PNG ({e}).") from e
    if image.mode == "P":  # palette indices are not intensities
        image = image.convert("RGB")
    pixels = np.asarray(image)
    if pixels.ndim == 3:
        pixels = pixels[..., 0]
    return pixels != 0


def merge_parts(parts: Mapping[int, np.ndarray], shape: tuple[int, int]) -> np.ndarray:
    """Paints bool part masks over background 0 in class-id order (later ids overwrite earlier).

    Args:
      parts: {class id in 1..18: bool array `shape`}.
      shape: (H, W) of the label map.
    Returns:
      uint8 label map (H, W) with values in [0, 19).
    """
    label_map = np.zeros(shape, dtype=np.uint8)
    for class_id in sorted(parts):
        label_map[parts[class_id]] = class_id
    return label_map


def resize_image(image: Image.Image, resolution: int) -> Image.Image:
    """Resizes to resolution^2 once: BOX (exact area average, antialiased) when shrinking,
    BICUBIC when enlarging (only small synthetic data is ever enlarged)."""
    size = (resolution, resolution)
    if image.size == size:
        return image
    shrinking = image.width >= resolution and image.height >= resolution
    return image.resize(size, Image.Resampling.BOX if shrinking else Image.Resampling.BICUBIC)


def resize_label_map(label_map: np.ndarray, resolution: int) -> np.ndarray:
    """Nearest-neighbour resize of a uint8 label map (H, W) to (resolution, resolution)."""
    if label_map.shape == (resolution, resolution):
        return label_map
    resized = Image.fromarray(label_map).resize((resolution, resolution), Image.Resampling.NEAREST)
    return np.asarray(resized)


def _png_bytes(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


@dataclasses.dataclass(frozen=True)
class _Record:
    """What the annotation files say about one image."""

    image_id: int
    orig_idx: int
    attributes: np.ndarray  # bool (40,)
    pose: np.ndarray  # float32 (3,) yaw, pitch, roll
    parts: tuple[tuple[int, str], ...]  # (class id, relative path) of the part PNGs present


def _load_example(root, record: _Record, resolution: int) -> tuple[dict, tuple[int, int]]:
    """Reads, merges and resizes one example. Returns (TFDS example, source mask size (W, H))."""
    image_where = root.display(image_path(record.image_id))
    image = decode_image(root.read_bytes(image_path(record.image_id)), image_where)

    parts: dict[int, np.ndarray] = {}
    first_where, mask_shape = None, None
    for class_id, relative in record.parts:
        where = root.display(relative)
        mask = decode_part(root.read_bytes(relative), where)
        if mask_shape is None:
            first_where, mask_shape = where, mask.shape
        elif mask.shape != mask_shape:
            raise ValueError(
                f"{where}: part mask is {mask.shape[1]}x{mask.shape[0]} (WxH) but {first_where} "
                f"of the same image is {mask_shape[1]}x{mask_shape[0]}; all part PNGs of an image "
                "must share one size."
            )
        parts[class_id] = mask
    mask_h, mask_w = mask_shape
    # Masks may be smaller than the image (512 vs 1024 in the release), never of another shape.
    if mask_w * image.height != mask_h * image.width:
        raise ValueError(
            f"{first_where}: part masks are {mask_w}x{mask_h} (WxH) but the image {image_where} is "
            f"{image.width}x{image.height}; expected masks with the image's aspect ratio."
        )
    label_map = resize_label_map(merge_parts(parts, mask_shape), resolution)
    example = {
        "image": _png_bytes(resize_image(image, resolution)),
        "mask": _png_bytes(Image.fromarray(label_map)),
        "image_id": record.image_id,
        "attributes": dict(zip(labels.ATTRIBUTE_NAMES, record.attributes.tolist())),
        "pose": record.pose,
    }
    return example, (mask_w, mask_h)


def read_records(root) -> list[_Record]:
    """Parses the annotation files and indexes the part PNGs; checks that every image listed in
    the mapping file has an image file, at least one part PNG, an attribute row and a pose row."""
    mapping = parse_mapping(_read_text(root, MAPPING_FILE), root.display(MAPPING_FILE))
    attributes = parse_attributes(_read_text(root, ATTRIBUTE_FILE), root.display(ATTRIBUTE_FILE))
    poses = parse_pose(_read_text(root, POSE_FILE), root.display(POSE_FILE))
    if not mapping:
        raise ValueError(f"{root.display(MAPPING_FILE)}: lists no images.")
    for name, table in ((ATTRIBUTE_FILE, attributes), (POSE_FILE, poses)):
        missing = sorted(set(mapping) - set(table))
        if missing:
            raise ValueError(
                f"{root.display(name)}: no row for {len(missing)} image(s) listed in {MAPPING_FILE}, "
                f"e.g. {', '.join(f'{i}.jpg' for i in missing[:5])}."
            )

    image_files = root.list_files(IMAGE_DIR)
    mask_files = root.list_files(MASK_DIR)
    missing_images = [i for i in sorted(mapping) if image_path(i) not in image_files]
    if missing_images:
        raise FileNotFoundError(
            f"{len(missing_images)} image(s) listed in {MAPPING_FILE} have no image file, e.g. "
            + ", ".join(root.display(image_path(i)) for i in missing_images[:5])
        )
    records, without_parts = [], []
    for image_id in sorted(mapping):
        parts = tuple(
            (class_id, part_path(image_id, part))
            for class_id, part in enumerate(labels.PART_NAMES, 1)
            if part_path(image_id, part) in mask_files
        )
        if not parts:
            without_parts.append(image_id)
        records.append(_Record(image_id, mapping[image_id], attributes[image_id], poses[image_id], parts))
    if without_parts:
        examples = ", ".join(root.display(part_path(i, "<part>")) for i in without_parts[:5])
        raise FileNotFoundError(
            f"{len(without_parts)} image(s) have no part mask PNG at all (expected at least one of "
            f"{examples}, with <part> one of {', '.join(labels.PART_NAMES)})."
        )
    return records


# --------------------------------------------------------------------------- builder


@dataclasses.dataclass
class CelebAMaskHQConfig(tfds.core.BuilderConfig):
    """A split scheme ('official' or 'first28k') and the stored resolution (square side)."""

    split_scheme: str = "official"
    resolution: int = 512


def _make_configs() -> list[CelebAMaskHQConfig]:
    descriptions = {
        "official": "CelebA's train/validation/test partition through orig_idx",
        "first28k": "ids < 28000 train, ids >= 28000 test",
    }
    return [
        CelebAMaskHQConfig(
            name=f"{scheme}_{resolution}",
            description=f"{descriptions[scheme]}; {resolution}x{resolution} images and masks.",
            split_scheme=scheme,
            resolution=resolution,
        )
        for scheme in SPLIT_SCHEMES
        for resolution in RESOLUTIONS
    ]


class Builder(tfds.core.GeneratorBasedBuilder):
    """CelebAMask-HQ: 30,000 faces with hand-annotated 19-class part masks (manual download).

    Each example: `image` uint8 (R, R, 3); `mask` uint8 (R, R, 1) label ids 0..18
    (`labels.CLASS_NAMES`), merged from the part PNGs in id order 1..18 (a later part overwrites
    an earlier one) and resized with nearest neighbour; `image_id` int64 (the CelebA-HQ id, the
    jpg's file name); `attributes` {name: bool} for the 40 CelebA attributes; `pose` float32
    [yaw, pitch, roll] in degrees.

    Splits with no image are left out (with a warning). The default file format is ArrayRecord:
    read with `builder.as_data_source(split)` or `tfds.data_source(...)`.

    Split boundaries, and how the original split script gets them wrong
    --------------------------------------------------------------------
    CelebA's `list_eval_partition.txt` puts files 000001.jpg..162770.jpg in train,
    162771.jpg..182637.jpg in validation and 182638.jpg..202599.jpg in test (1-based file numbers).
    The mapping file's `orig_idx` is 0-based (`orig_file` = orig_idx + 1), so in `orig_idx` terms
    the partition is: orig_idx < 162770 train, orig_idx < 182637 validation, else test.
    The CelebAMask-HQ repository's `face_parsing/Data_preprocessing/g_partition.py` tests the
    0-based `orig_idx` against the 1-based file numbers (`x >= 162771` -> val, `x >= 182638` ->
    test), which sends orig_idx 162770 (CelebA's first validation image) to train and orig_idx
    182637 (CelebA's first test image) to validation. It also takes the CelebA-HQ id from the
    row's position (`enumerate`) rather than from the `idx` column while reading the file with
    `header=None`, so whether ids and rows line up depends on how the header line is handled.
    Here the CelebA-HQ id is the row's own `idx`, `orig_idx` comes from the same row, and both
    boundaries are 0-based; the counts the script reports (24,183 / 2,993 / 2,824) can therefore
    differ from ours by at most one image per boundary.
    """

    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "First release."}
    MANUAL_DOWNLOAD_INSTRUCTIONS = MANUAL_DOWNLOAD_INSTRUCTIONS
    BUILDER_CONFIGS = _make_configs()
    DEFAULT_BUILDER_CONFIG_NAME = "official_512"

    def __init__(self, *, file_format=None, **kwargs):
        # ArrayRecord needs no TensorFlow and gives random access for grain.
        super().__init__(file_format=file_format or "array_record", **kwargs)

    def _info(self) -> tfds.core.DatasetInfo:
        resolution = self.builder_config.resolution
        features = tfds.features.FeaturesDict({
            "image": tfds.features.Image(
                shape=(resolution, resolution, 3), encoding_format="png",
                doc="RGB face, resized once (area average when shrinking).",
            ),
            "mask": tfds.features.Image(
                shape=(resolution, resolution, 1), encoding_format="png",
                doc=tfds.features.Documentation(
                    desc="Part label map, labels.CLASS_NAMES ids, nearest-neighbour resized.",
                    value_range="0..18",
                ),
            ),
            "image_id": tfds.features.Scalar(np.int64, doc="CelebA-HQ id: <image_id>.jpg."),
            "attributes": tfds.features.FeaturesDict(
                {name: tfds.features.Scalar(np.bool_) for name in labels.ATTRIBUTE_NAMES},
                doc="The 40 CelebA attributes (True where the file says 1).",
            ),
            "pose": tfds.features.Tensor(shape=(3,), dtype=np.float32, doc="yaw, pitch, roll in degrees."),
        })
        return self.dataset_info_from_configs(
            features=features,
            homepage="https://github.com/switchablenorms/CelebAMask-HQ",
            citation=_CITATION,
            description=(
                "CelebAMask-HQ: 30,000 CelebA-HQ faces with hand-annotated masks of 18 face parts "
                "and accessories (19 classes with background), CelebA's 40 attributes and head "
                "pose. Non-commercial research use only."
            ),
            license="Non-commercial research and educational use only; no redistribution.",
        )

    def _split_generators(self, dl_manager: tfds.download.DownloadManager):
        try:
            manual_dir = epath.Path(dl_manager.manual_dir)
        except AssertionError as e:  # TFDS: missing or empty manual dir
            raise FileNotFoundError(str(e)) from e
        root = _open_root(manual_dir)
        try:
            records = read_records(root)
        finally:
            root.close()
        by_split: dict[str, list[_Record]] = collections.defaultdict(list)
        for record in records:
            by_split[split_of(self.builder_config.split_scheme, record.image_id, record.orig_idx)].append(record)
        generators = {}
        for split in split_names(self.builder_config.split_scheme):
            if by_split[split]:
                generators[split] = self._generate_examples(manual_dir, by_split[split])
            else:
                logging.warning("%s: split %r has no image; it is left out.", self.builder_config.name, split)
        return generators

    def _generate_examples(self, manual_dir: epath.Path, records: list[_Record]):
        """Yields (image id, example), decoding in a thread pool; checks that every image's part
        masks have the size of the first image's."""
        resolution = self.builder_config.resolution
        root = _open_root(manual_dir)
        try:
            dataset_mask_size, first_id = None, None
            for record, (example, mask_size) in _map_bounded(
                lambda r: _load_example(root, r, resolution), records
            ):
                if dataset_mask_size is None:
                    dataset_mask_size, first_id = mask_size, record.image_id
                elif mask_size != dataset_mask_size:
                    raise ValueError(
                        f"{root.display(record.parts[0][1])}: part masks of image {record.image_id} are "
                        f"{mask_size[0]}x{mask_size[1]} but those of image {first_id} are "
                        f"{dataset_mask_size[0]}x{dataset_mask_size[1]}; all part masks of the "
                        "dataset must share one size."
                    )
                yield record.image_id, example
        finally:
            root.close()


def _map_bounded(fn, items: Sequence) -> Iterator[tuple]:
    """Yields (item, fn(item)) in order, at most _DECODE_THREADS * _IN_FLIGHT_PER_THREAD pending."""
    window = _DECODE_THREADS * _IN_FLIGHT_PER_THREAD
    with concurrent.futures.ThreadPoolExecutor(max_workers=_DECODE_THREADS) as pool:
        pending: collections.deque = collections.deque()
        try:
            for item in items:
                pending.append((item, pool.submit(fn, item)))
                if len(pending) >= window:
                    item_done, future = pending.popleft()
                    yield item_done, future.result()
            while pending:
                item_done, future = pending.popleft()
                yield item_done, future.result()
        finally:
            for _, future in pending:
                future.cancel()
