"""CelebAMask-HQ for TFDS (and the synthetic faces written in its layout).

Importing this package is light: `tfds_celebamask.labels` (class facts) and the numpy renderer of the
synthetic faces import neither TensorFlow nor TFDS. The `celebamask_hq` TFDS builder registers
itself when its module is imported; code that reads or builds the dataset calls `register()`.
"""


def register() -> None:
    """Registers the `celebamask_hq` builder with TFDS (imports tensorflow_datasets; idempotent)."""
    # Importing the builder module is the registration (TFDS registers builder classes on definition).
    from tfds_celebamask.celebamask_hq import celebamask_hq_dataset_builder  # noqa: F401
