"""One way to turn a user's path into a path object: local folders and remote stores alike.

Every path a user gives (workdir, checkpoints, data_dir, images, outputs) goes through `as_path`, so a
`gs://bucket/run` workdir stays a bucket path end to end instead of becoming a local folder named
`gs:` (what `pathlib.Path(...).absolute()` makes of it).
"""

from __future__ import annotations

import os
import re

from etils import epath

# "scheme://..." as RFC 3986 spells a scheme; a Windows drive ("C:\\") has no "//".
_URI = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*)://")


def is_remote(path: str | os.PathLike) -> bool:
    """Whether `path` is a URI (gs://, s3://, ...) rather than a local path."""
    return bool(_URI.match(os.fspath(path)))


def as_path(path: str | os.PathLike) -> epath.Path:
    """`path` as an `epath.Path`: local paths made absolute (with `~` expanded), URIs kept as they are.

    Raises:
      ValueError: `path` names a URI scheme that etils.epath has no backend for; the error names the
        path and the schemes it knows, rather than writing to a local folder named after the scheme.
    """
    text = os.fspath(path)
    match = _URI.match(text)
    if match is None:
        return epath.Path(os.path.abspath(os.path.expanduser(text)))
    try:
        return epath.Path(text)
    except KeyError:
        from etils.epath import register  # only needed to word the error

        known = ", ".join(sorted(register._URI_PREFIXES_TO_CLS))  # pylint: disable=protected-access
        raise ValueError(
            f"{text}: no storage backend for {match.group(1)}:// paths; etils.epath knows {known}"
        ) from None


def join(base: str | os.PathLike, path: str | os.PathLike) -> epath.Path:
    """`path` under `base` when it is relative; an absolute path or a URI stands on its own."""
    text = os.fspath(path)
    if is_remote(text) or os.path.isabs(os.path.expanduser(text)):
        return as_path(text)
    return as_path(base) / text


def scheme(path: str | os.PathLike) -> str | None:
    """The URI scheme of `path` ('gs', 's3', ...), or None for a local path."""
    match = _URI.match(os.fspath(path))
    return match.group(1) if match else None
