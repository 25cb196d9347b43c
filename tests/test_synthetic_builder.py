"""The TFDS builder reading a synthetic-faces folder gives the renderer's label maps exactly."""

import numpy as np
import pytest
import tensorflow_datasets as tfds

from configs import ebst
from tfds_celebamask import synthetic


def test_builder_label_maps_equal_the_renderer(smoke_data_dir):
    config = ebst.get_config("smoke")
    seed, size = config.data.synthetic.seed, config.resolution
    checked = 0
    for split in ("train", "validation", "test"):
        source = tfds.data_source(config.data.name, split=split, data_dir=str(smoke_data_dir))
        for index in range(len(source)):
            example = source[index]
            geometry, style = synthetic.sample_face(synthetic.face_rng(seed, int(example["image_id"])))
            image, labels = synthetic.render(geometry, style, size)
            np.testing.assert_array_equal(example["mask"][..., 0], labels)
            # The stored image is the JPEG (quality 90) of the render: close, not equal.
            mse = np.mean((example["image"].astype(np.float64) - image) ** 2)
            assert 10 * np.log10(255.0 ** 2 / mse) > 28.0
            checked += 1
    assert checked == config.data.synthetic.num_faces


def test_config_accessory_rates_reach_the_written_faces(tmp_path):
    from maskgan_jax import data

    config = ebst.get_config("smoke")
    config.data.synthetic.num_faces = 10
    config.data.synthetic.accessory_rates.hat = 1.0
    data.prepare_dataset(config, tmp_path)
    faces = data.synthetic_faces_dir(tmp_path) / synthetic.ROOT_NAME
    assert all((faces / synthetic.part_path(i, "hat")).is_file() for i in range(10))
    assert "--accessory_rate=hat=1" in (faces / synthetic.README_FILE).read_text()
    source = tfds.data_source(config.data.name, split="train", data_dir=str(tmp_path / data.TFDS_FOLDER))
    hat = synthetic.labels.CLASS_ID["hat"]
    assert all((source[i]["mask"] == hat).any() for i in range(len(source)))


def test_a_bad_accessory_rate_names_the_config_field(tmp_path):
    from maskgan_jax import data

    config = ebst.get_config("smoke")
    config.data.synthetic.accessory_rates.hat = 1.5
    with pytest.raises(ValueError, match=r"config\.data\.synthetic\.accessory_rates\.hat: 1\.5"):
        data.prepare_dataset(config, tmp_path)
