"""TFDS builders for CelebAMask-HQ (and the synthetic faces written in its layout).

Importing this package registers the `celebamask_hq` dataset with TFDS (it imports
tensorflow_datasets, not TensorFlow). `tfds_celebamask.labels` holds the label facts.
"""

from tfds_celebamask.celebamask_hq import celebamask_hq_dataset_builder as _celebamask_hq  # registers

del _celebamask_hq
