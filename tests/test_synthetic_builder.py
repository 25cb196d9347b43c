"""The TFDS builder reading a synthetic-faces folder gives the renderer's label maps exactly."""

import numpy as np
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
