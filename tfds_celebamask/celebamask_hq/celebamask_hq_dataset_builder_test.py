"""TFDS's standard builder checks on dummy_data/ (6 tiny images in the release's layout).

dummy_data/CelebAMask-HQ holds 32x32 JPEGs with 16x16 part PNGs (some 3-channel, many parts
absent) for CelebA-HQ ids 0, 1, 2, 2001, 28000, 29999, whose CelebA indices sit on both sides
of each official boundary: 162769 train, 162770 val, 182636 val, 182637 test, 5 train,
202598 test. DatasetBuilderTestCase reads with `as_dataset` (tf.data), which cannot read
ArrayRecord, so these checks build TFRecord files; the ArrayRecord path is tested in
tests/test_celebamask_builder.py.
"""

import tensorflow_datasets as tfds

from tfds_celebamask.celebamask_hq import celebamask_hq_dataset_builder


class _InstanceOnly:
    """A method seen on instances but reading as None on the class."""

    def __init__(self, function):
        self.function = function

    def __get__(self, instance, owner):
        return None if instance is None else self.function.__get__(instance, owner)


class _TFRecordBuilderTestCase(tfds.testing.DatasetBuilderTestCase):
    DATASET_CLASS = celebamask_hq_dataset_builder.Builder
    # tf.test.TestCase's `test_session` is a session helper (graph-mode subtests use it), not a
    # test: visible on instances, hidden from the class so that collection skips it.
    test_session = _InstanceOnly(tfds.testing.DatasetBuilderTestCase.test_session)

    def _make_builder(self, config=None):
        return self.dataset_class(
            data_dir=self.tmp_dir, config=config, version=self.VERSION, file_format="tfrecord"
        )


class OfficialSplitTest(_TFRecordBuilderTestCase):
    BUILDER_CONFIG_NAMES_TO_TEST = ["official_64"]
    SPLITS = {"train": 2, "validation": 2, "test": 2}


class First28kSplitTest(_TFRecordBuilderTestCase):
    BUILDER_CONFIG_NAMES_TO_TEST = ["first28k_128"]
    SPLITS = {"train": 4, "test": 2}


del _TFRecordBuilderTestCase  # only the concrete cases are collected

if __name__ == "__main__":
    tfds.testing.test_main()
