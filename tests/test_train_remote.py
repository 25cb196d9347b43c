"""Training into a remote workdir: a gs:// workdir (a fake bucket, tests/fake_gcs.py) trains and resumes
from the bucket, and schemes that orbax cannot write fail before anything is written."""

import os
import sys

import pytest
from smoke_runs import assert_trees_equal, final_networks, smoke_config

from maskgan_jax import checkpoint as ckpt
from maskgan_jax import train


def test_gs_workdir_trains_and_resumes_from_the_bucket(tmp_path, smoke_data_dir, compilation_cache, monkeypatch):
    """A gs:// workdir (a fake bucket: tests/fake_gcs.py) holds the checkpoints, TensorBoard events and
    grids; a run stopped inside each phase resumes from the bucket to the networks of an uninterrupted
    run into a local folder, and nothing lands in a local folder named 'gs:'. (MaskVAE and DMN, 4 steps
    each: the resume test above covers every phase.)"""
    from fake_gcs import fake_gcs

    del compilation_cache
    monkeypatch.chdir(tmp_path)  # where a scheme mistaken for a folder would appear
    config = smoke_config(smoke_data_dir)
    config.phases.maskvae.update(dict(num_steps=4, checkpoint_every_steps=2, log_every_steps=2, image_every_steps=4))
    config.phases.ebst.num_steps = 0
    config.phases.parser.num_steps = 0
    train.train(config, tmp_path / "local")

    stops = {("maskvae", 2), ("dmn", 2)}
    current = {}
    original_train_phase = train.train_phase

    def tracking_train_phase(phase, *args, **kwargs):
        current["phase"] = phase
        return original_train_phase(phase, *args, **kwargs)

    def requested(self, manager, step, poll_all_processes):
        del self, manager, poll_all_processes
        if (current["phase"], step) in stops:
            stops.remove((current["phase"], step))
            return True
        return False

    monkeypatch.setattr(train, "train_phase", tracking_train_phase)
    monkeypatch.setattr(train.StopRequest, "requested", requested)
    with fake_gcs(tmp_path / "bucket_root", monkeypatch) as root:
        runs = [[(r.phase, r.last_step, r.preempted) for r in train.train(config, "gs://bucket/run")]
                for _ in range(3)]
        assert runs == [[("maskvae", 2, True)], [("maskvae", 4, False), ("dmn", 2, True)],
                        [("maskvae", 4, False), ("dmn", 4, False)]]
        for phase, names in (("maskvae", ["mask_vae"]), ("dmn", ["generator", "discriminator"])):
            step_local, local = final_networks(tmp_path / "local", phase, names)
            step_gs, from_bucket = final_networks("gs://bucket/run", phase, names)
            assert step_local == step_gs == 4
            assert_trees_equal(local, from_bucket)
        assert ckpt.read_config("gs://bucket/run", "dmn")["resolution"] == 64
    run = root / "bucket" / "run"
    assert {p.name for p in (run / "checkpoints" / "dmn").iterdir()} >= {"2", "4"}
    assert (run / "checkpoints" / "dmn" / "4" / "generator").is_dir()
    assert list((run / "tensorboard" / "dmn").glob("events.out.tfevents.*"))
    assert (run / "images" / "dmn_0000004.png").is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bucket_root", "local"]  # no 'gs:' folder


def test_workdir_on_a_scheme_orbax_cannot_write_fails_before_writing(tmp_path, smoke_data_dir, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ValueError, match=r"--workdir=s3://bucket/run: orbax writes checkpoints to local folders "
                                         r"and gs:// only"):
        train.train(smoke_config(smoke_data_dir), "s3://bucket/run")
    with pytest.raises(ValueError, match=r"ftp://host/run: no storage backend for ftp://"):
        train.train(smoke_config(smoke_data_dir), "ftp://host/run")
    assert list(tmp_path.iterdir()) == []


def test_phase_directory_keeps_a_gs_workdir_remote():
    assert os.fspath(ckpt.phase_directory("gs://bucket/run", "dmn")) == "gs://bucket/run/checkpoints/dmn"
    local = os.path.abspath("relative/run/checkpoints/dmn")
    assert ckpt.phase_directory("relative/run", "dmn") == ckpt.epath.Path(local)


def test_gs_workdir_without_a_gcs_filesystem_names_the_extra(tmp_path, smoke_data_dir, monkeypatch):
    """Without TensorFlow's GCS filesystem (EPATH_USE_TF=false here) epath needs gcsfs for gs://; gcsfs
    is made unimportable, so the test holds whether or not it is installed."""
    from etils.epath import gpath

    monkeypatch.setitem(sys.modules, "gcsfs", None)  # `import gcsfs` raises ImportError
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("EPATH_USE_TF", "false")
    gpath._is_tf_installed.cache_clear()
    try:
        with pytest.raises(ImportError, match=r"--workdir=gs://bucket/run: no filesystem for gs:// .*\[gcs\]"):
            train.train(smoke_config(smoke_data_dir), "gs://bucket/run")
    finally:
        monkeypatch.undo()
        gpath._is_tf_installed.cache_clear()
    assert list(tmp_path.iterdir()) == []
