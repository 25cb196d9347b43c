"""Frozen networks' weights from local .npz files (VGG19, the FID Inception): one reader, clear errors."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np


def read_npz_weights(path: str, expected: Mapping[str, tuple[int, ...]], what: str,
                     hint: str) -> dict[str, np.ndarray]:
    """Reads the float arrays `expected` names (key -> shape) from the .npz at `path`, as float32.

    Other keys are ignored. `what` names the file in errors (e.g. 'VGG19 weights file'); `hint`
    says how to make one. Raises FileNotFoundError (no file) or ValueError naming the file, the key,
    its shape and the expected one.
    """
    try:
        archive = np.load(path, allow_pickle=False)
    except FileNotFoundError:
        raise FileNotFoundError(f"{what} {path!r} does not exist; {hint}") from None
    except (OSError, ValueError) as error:
        raise ValueError(f"{what} {path!r} is not a readable .npz ({error}); {hint}") from None
    if not isinstance(archive, np.lib.npyio.NpzFile):
        raise ValueError(f"{what} {path!r} holds a single array, not an .npz of named arrays; {hint}")
    arrays = {}
    with archive:
        for key, shape in expected.items():
            if key not in archive.files:
                raise ValueError(f"{what} {path!r} has no key {key!r} (it has {len(archive.files)} keys, "
                                 f"e.g. {sorted(archive.files)[:4]}); {hint}")
            array = archive[key]
            if array.shape != tuple(shape) or not np.issubdtype(array.dtype, np.floating):
                raise ValueError(f"{what} {path!r}: key {key!r} has shape {array.shape} dtype {array.dtype}; "
                                 f"expected float {tuple(shape)}; {hint}")
            arrays[key] = array.astype(np.float32)
    return arrays
