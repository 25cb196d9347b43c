"""maskgan_jax.paths: local paths become absolute, URIs stay remote, unknown schemes fail loudly."""

import os

import pytest

from maskgan_jax import paths


def test_local_path_is_absolute(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert os.fspath(paths.as_path("run/x")) == os.fspath(tmp_path / "run" / "x")
    assert not paths.is_remote("run/x")


def test_bucket_path_stays_a_bucket_path():
    path = paths.as_path("gs://bucket/run") / "checkpoints" / "dmn"
    assert os.fspath(path) == "gs://bucket/run/checkpoints/dmn"
    assert paths.is_remote(path)
    assert "gs:" not in os.getcwd() and not os.fspath(path).startswith(os.getcwd())


def test_unknown_scheme_names_the_path_and_the_known_schemes():
    with pytest.raises(ValueError, match=r"nosuch://b/run: no storage backend for nosuch://.*gs://"):
        paths.as_path("nosuch://b/run")
