"""A fake Google Cloud Storage for tests: `gs://BUCKET/KEY` stored as ROOT/BUCKET/KEY on local disk.

Both ways a training run reaches a gs:// path see the same bytes:
  - etils.epath (orbax's metadata and commit files, TFDS, the TensorBoard writer, image grids): an
    fsspec filesystem registered for the `gs`/`gcs` protocols, which epath uses when TensorFlow's
    GCS filesystem is off (EPATH_USE_TF=false). Like gcsfs it takes and returns `bucket/key` paths
    and needs no parent folders before a write.
  - TensorStore (orbax's array data): orbax's GCS kvstore spec points TensorStore's file driver at
    the same folder.
Orbax still takes its GCS code paths (a commit file instead of an atomic rename, its GCS deletes);
only the bucket-layout query (hierarchical namespace, a Cloud API call) is answered "flat".
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator
from pathlib import Path

import fsspec
from fsspec.implementations.dirfs import DirFileSystem
from fsspec.implementations.local import LocalFileSystem

PROTOCOLS = ("gs", "gcs")


def local_path(root: Path, uri: str) -> Path:
    """gs://bucket/key -> ROOT/bucket/key."""
    for prefix in ("gs://", "gcs://"):
        if uri.startswith(prefix):
            return root / uri[len(prefix):]
    raise ValueError(f"{uri}: not a gs:// path")


def _filesystem_class(root: Path) -> type:
    class FakeGCSFileSystem(DirFileSystem):
        protocol = PROTOCOLS

        def __init__(self, *args, **kwargs):
            del args, kwargs  # gcsfs options (epath passes finalize_on_close=True)
            super().__init__(path=str(root), fs=LocalFileSystem(auto_mkdir=True))

    return FakeGCSFileSystem


@contextlib.contextmanager
def fake_gcs(root: Path, monkeypatch) -> Iterator[Path]:
    """Serves gs:// paths from `root` while the context is open; yields `root`."""
    from etils.epath import backend as epath_backend
    from etils.epath import gpath
    from orbax.checkpoint._src.path import gcs_utils

    root.mkdir(parents=True, exist_ok=True)
    monkeypatch.setenv("EPATH_USE_TF", "false")  # epath: fsspec, not TensorFlow's GCS filesystem
    gpath._is_tf_installed.cache_clear()  # epath caches its reading of EPATH_USE_TF
    previous = {p: fsspec.registry.get(p) for p in PROTOCOLS}
    for protocol in PROTOCOLS:
        fsspec.register_implementation(protocol, _filesystem_class(root), clobber=True)
    epath_backend.fsspec_backend._get_filesystem.cache_clear()
    monkeypatch.setattr(gcs_utils, "is_hierarchical_namespace_enabled", lambda path: False)
    monkeypatch.setattr(gcs_utils, "get_kvstore_for_gcs",
                        lambda path: {"driver": "file", "path": str(local_path(root, str(path)))})
    try:
        yield root
    finally:
        for protocol, cls in previous.items():
            if cls is None:
                sys.modules["fsspec.registry"]._registry.pop(protocol, None)  # fsspec has no unregister
            else:
                fsspec.register_implementation(protocol, cls, clobber=True)
        epath_backend.fsspec_backend._get_filesystem.cache_clear()
        gpath._is_tf_installed.cache_clear()  # read again once monkeypatch restores EPATH_USE_TF
