"""CelebAMask-HQ label facts: class ids, part file names, palette and left/right pairs.

The one source for every other module (builder, synthetic faces, input pipeline, editing).
Label maps are integer arrays with values in [0, NUM_CLASSES); 0 is background.
"""

from __future__ import annotations

import numpy as np

# Class names in id order. Parts are painted in this order (1..18) over background,
# a later part overwriting an earlier one, to build the label map.
CLASS_NAMES: tuple[str, ...] = (
    "background", "skin", "nose", "eye_g", "l_eye", "r_eye", "l_brow", "r_brow",
    "l_ear", "r_ear", "mouth", "u_lip", "l_lip", "hair", "hat", "ear_r", "neck_l",
    "neck", "cloth",
)
NUM_CLASSES = len(CLASS_NAMES)  # 19
CLASS_ID = {name: i for i, name in enumerate(CLASS_NAMES)}

# Part names as they appear in CelebAMask-HQ-mask-anno file names, in merge order (ids 1..18).
PART_NAMES: tuple[str, ...] = CLASS_NAMES[1:]

# RGB colour per class id, for showing masks (the CelebAMask-HQ palette).
PALETTE = np.array(
    [
        (0, 0, 0), (204, 0, 0), (76, 153, 0), (204, 204, 0), (51, 51, 255),
        (204, 0, 204), (0, 255, 255), (255, 204, 204), (102, 51, 0), (255, 0, 0),
        (102, 204, 0), (255, 255, 0), (0, 0, 153), (0, 0, 204), (255, 51, 153),
        (0, 204, 204), (0, 51, 0), (255, 153, 51), (0, 204, 0),
    ],
    dtype=np.uint8,
)

# Left/right are the person's own: a horizontal flip swaps these classes.
FLIP_PAIRS: tuple[tuple[str, str], ...] = (("l_eye", "r_eye"), ("l_brow", "r_brow"), ("l_ear", "r_ear"))


def flip_permutation() -> np.ndarray:
    """Label permutation applied by a horizontal flip: int32 array (NUM_CLASSES,), new = perm[old]."""
    perm = np.arange(NUM_CLASSES, dtype=np.int32)
    for left, right in FLIP_PAIRS:
        perm[CLASS_ID[left]], perm[CLASS_ID[right]] = CLASS_ID[right], CLASS_ID[left]
    return perm


_FLIP_PERMUTATION = flip_permutation()


def flip_example(image: np.ndarray, mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mirrors image (H, W, C) and label map mask (H, W[, 1]) left-right.

    The person's left becomes their right, so l_eye/r_eye, l_brow/r_brow and l_ear/r_ear swap.
    """
    return image[:, ::-1], _FLIP_PERMUTATION[mask[:, ::-1]].astype(mask.dtype)


# The 40 CelebA attribute columns, in file order.
ATTRIBUTE_NAMES: tuple[str, ...] = (
    "5_o_Clock_Shadow", "Arched_Eyebrows", "Attractive", "Bags_Under_Eyes", "Bald", "Bangs",
    "Big_Lips", "Big_Nose", "Black_Hair", "Blond_Hair", "Blurry", "Brown_Hair",
    "Bushy_Eyebrows", "Chubby", "Double_Chin", "Eyeglasses", "Goatee", "Gray_Hair",
    "Heavy_Makeup", "High_Cheekbones", "Male", "Mouth_Slightly_Open", "Mustache",
    "Narrow_Eyes", "No_Beard", "Oval_Face", "Pale_Skin", "Pointy_Nose", "Receding_Hairline",
    "Rosy_Cheeks", "Sideburns", "Smiling", "Straight_Hair", "Wavy_Hair", "Wearing_Earrings",
    "Wearing_Hat", "Wearing_Lipstick", "Wearing_Necklace", "Wearing_Necktie", "Young",
)
