"""CelebAMask-HQ's on-disk layout and CelebA's partition: the one source for the builder, which
reads the release, and the synthetic faces, which are written in it. Plain constants (no imports)."""

ROOT_NAME = "CelebAMask-HQ"  # the folder the release's zip unpacks to
ZIP_NAME = "CelebAMask-HQ.zip"
IMAGE_DIR = "CelebA-HQ-img"  # <i>.jpg
MASK_DIR = "CelebAMask-HQ-mask-anno"  # <i // IMAGES_PER_MASK_FOLDER>/<i:05d>_<part>.png
MAPPING_FILE = "CelebA-HQ-to-CelebA-mapping.txt"
ATTRIBUTE_FILE = "CelebAMask-HQ-attribute-anno.txt"
POSE_FILE = "CelebAMask-HQ-pose-anno.txt"
IMAGES_PER_MASK_FOLDER = 2000  # part PNGs of image i live in CelebAMask-HQ-mask-anno/{i // 2000}/

# CelebA's official partition in 0-based CelebA indices (orig_idx): [0, 162770) train,
# [162770, 182637) validation, [182637, 202599) test.
CELEBA_TRAIN_END = 162_770
CELEBA_VALIDATION_END = 182_637
CELEBA_SIZE = 202_599
