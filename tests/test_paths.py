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


def test_join_keeps_absolute_paths_and_uris_and_nests_relative_ones(tmp_path):
    assert paths.join("gs://bucket/run", "jax_cache") == paths.as_path("gs://bucket/run/jax_cache")
    assert paths.join("gs://bucket/run", "/cache") == paths.as_path("/cache")
    assert paths.join(tmp_path, "gs://other/cache") == paths.as_path("gs://other/cache")
    assert paths.join(tmp_path, "jax_cache") == paths.as_path(tmp_path / "jax_cache")


def test_scheme():
    assert [paths.scheme(p) for p in ("gs://b/x", "s3://b", "/local", "relative", "C:\\x")] == ["gs", "s3", None,
                                                                                                None, None]


def test_data_dir_keeps_a_bucket_and_makes_a_local_one_absolute(tmp_path, monkeypatch):
    from configs import ebst
    from maskgan_jax import data

    monkeypatch.chdir(tmp_path)
    config = ebst.get_config("smoke")
    config.data.data_dir = "gs://bucket/tfds"
    assert data.data_dir(config, "/unused") == "gs://bucket/tfds"
    config.data.data_dir = None
    assert data.data_dir(config, "gs://bucket/run") == "gs://bucket/run/tensorflow_datasets"
    assert data.data_dir(config, "run") == os.path.join(str(tmp_path), "run", "tensorflow_datasets")
