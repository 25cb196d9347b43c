"""The run's dataset: makes sure it is built (synthetic faces or a manual CelebAMask-HQ download),
and derives the input pipeline's config from the run config."""

from __future__ import annotations

import os
import shutil
import tempfile

import jax
import ml_collections
from absl import logging
from etils import epath

from maskgan_jax import paths
from maskgan_jax.phases import PHASES

SYNTHETIC_FOLDER = "synthetic_faces"
TFDS_FOLDER = "tensorflow_datasets"


def data_dir(config: ml_collections.ConfigDict, workdir: str | os.PathLike) -> str | None:
    """The TFDS data dir, as TFDS takes it (a string; local paths absolute, URIs kept):
    config.data.data_dir, or <workdir>/tensorflow_datasets for synthetic data, or None (TFDS's default)."""
    if config.data.data_dir is not None:
        return os.fspath(paths.as_path(config.data.data_dir))
    if uses_synthetic_faces(config):
        return os.fspath(paths.as_path(workdir) / TFDS_FOLDER)
    return None


def uses_synthetic_faces(config: ml_collections.ConfigDict) -> bool:
    """Whether the run writes its own synthetic faces (config.data.synthetic.num_faces > 0)."""
    return config.data.synthetic.num_faces > 0


def tfds_default_data_dir() -> str:
    import tensorflow_datasets as tfds
    return str(tfds.core.constants.DATA_DIR)


def _builder(config: ml_collections.ConfigDict, workdir: str | os.PathLike):
    import tensorflow_datasets as tfds

    from tfds_celebamask import register
    register()
    return tfds.builder(config.data.name, data_dir=data_dir(config, workdir))


def _config_name(config: ml_collections.ConfigDict) -> str:
    name = config.data.name
    if "/" not in name or not name.startswith("celebamask_hq/"):
        raise ValueError(f"config.data.name: expected 'celebamask_hq/<scheme>_<resolution>', got {name!r}")
    config_name = name.split("/", 1)[1]
    resolution = int(config_name.rsplit("_", 1)[1])
    if resolution != config.resolution:
        raise ValueError(f"config.data.name {name!r} is at {resolution}px but config.resolution is "
                         f"{config.resolution}")
    return config_name


def synthetic_faces_dir(workdir: str | os.PathLike) -> epath.Path:
    """Where the synthetic faces (the build's input) are written: <workdir>/synthetic_faces for a local
    workdir; a local temporary folder for a remote one (the renderer writes with local file I/O, and
    the faces are not needed once the dataset is built)."""
    workdir = paths.as_path(workdir)
    if paths.is_remote(workdir):
        return epath.Path(tempfile.mkdtemp(prefix="maskgan_synthetic_faces_"))
    return workdir / SYNTHETIC_FOLDER


def prepare_dataset(config: ml_collections.ConfigDict, workdir: str | os.PathLike) -> None:
    """Builds the dataset if it is not prepared yet (process 0; the others wait).

    Synthetic: writes `config.data.synthetic.num_faces` faces (see `synthetic_faces_dir`) and builds
    from there into `data_dir`. Real data: builds from config.data.manual_dir (local or a URI), or
    fails with the instructions. The data dir goes to TFDS as given: TFDS's metadata goes through
    etils.epath, its ArrayRecord files through array_record's own file layer (tested here with local
    data dirs only; a gs:// data dir needs TFDS/array_record built with GCS support).
    """
    workdir = paths.as_path(workdir)
    config_name = _config_name(config)
    builder = _builder(config, workdir)
    if builder.is_prepared():
        return
    if jax.process_index() == 0:
        from tfds_celebamask import build
        if uses_synthetic_faces(config):
            from tfds_celebamask import synthetic
            manual_dir = synthetic_faces_dir(workdir)
            faces = manual_dir / synthetic.ROOT_NAME
            if not (faces / synthetic.README_FILE).is_file():
                logging.info("Writing %d synthetic faces to %s", config.data.synthetic.num_faces, faces)
                stats = synthetic.write_dataset(
                    str(faces), num=config.data.synthetic.num_faces, size=config.resolution,
                    seed=config.data.synthetic.seed,
                    rates=synthetic.accessory_rates(config.data.synthetic.accessory_rates.to_dict(),
                                                    where="config.data.synthetic.accessory_rates"))
                logging.info("Synthetic faces: %.0f faces/min", stats.faces_per_minute)
        elif config.data.manual_dir is not None:
            manual_dir = paths.as_path(config.data.manual_dir)
        else:
            raise FileNotFoundError(
                f"Dataset {config.data.name} is not prepared in {builder.data_dir} and config.data.manual_dir "
                f"is not set. Download CelebAMask-HQ by hand (see tfds_celebamask's MANUAL_DOWNLOAD_INSTRUCTIONS), "
                f"then set --config.data.manual_dir=DIR, or build it once with\n  python -m tfds_celebamask.build "
                f"--manual_dir=DIR --data_dir=DATA_DIR --config={config_name}")
        logging.info("Building %s from %s", config.data.name, manual_dir)
        build.build(config_name, manual_dir, data_dir(config, workdir) or tfds_default_data_dir())
        if uses_synthetic_faces(config) and paths.is_remote(workdir):
            shutil.rmtree(manual_dir, ignore_errors=True)  # the local temporary folder
    if jax.process_count() > 1:
        from jax.experimental import multihost_utils
        multihost_utils.sync_global_devices("maskgan_jax dataset prepared")


def pipeline_config(config: ml_collections.ConfigDict, phase: str,
                    workdir: str | os.PathLike) -> ml_collections.ConfigDict:
    """The input pipeline's config for `phase` (its shuffle seed is offset per phase, so phases see
    different orders of the data)."""
    from maskgan_jax import input_pipeline
    pipeline = input_pipeline.default_config()
    pipeline.name = config.data.name
    pipeline.data_dir = data_dir(config, workdir)
    pipeline.split = config.data.split
    pipeline.batch_size = config.data.global_batch_size
    pipeline.shuffle_seed = config.data.shuffle_seed + PHASES.index(phase)
    pipeline.random_flip = config.data.random_flip
    pipeline.worker_count = config.data.worker_count
    pipeline.read_threads = config.data.read_threads
    pipeline.prefetch_buffer_size = config.data.prefetch_buffer_size
    pipeline.cache_decoded = config.data.cache_decoded
    pipeline.num_shards = config.data.num_shards
    return pipeline
