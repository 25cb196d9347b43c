r"""Builds the CelebAMask-HQ TFDS dataset from a manual directory (no TensorFlow needed).

    python -m tfds_celebamask.build --manual_dir=DIR --data_dir=DIR --config=official_256

`manual_dir` holds CelebAMask-HQ.zip or the unpacked CelebAMask-HQ/ folder (or the synthetic
faces written in that layout). The `tfds build` command-line tool needs TensorFlow and
apache_beam, so build from Python instead. Records are written as ArrayRecord; read them with
`tfds.data_source("celebamask_hq/official_256", data_dir=DIR)`.
"""

from __future__ import annotations

from collections.abc import Sequence

from absl import app
from absl import flags
from etils import epath
import tensorflow_datasets as tfds

from maskgan_jax import paths  # a leaf module: one reading of user paths (local absolute, URIs kept)
from tfds_celebamask.celebamask_hq import celebamask_hq_dataset_builder as celebamask_hq  # registers it


def build(config: str, manual_dir: epath.PathLike, data_dir: epath.PathLike, overwrite: bool = False):
    """Prepares `celebamask_hq/<config>` in `data_dir` from `manual_dir`; returns the builder.

    Raises FileNotFoundError / ValueError naming the offending file when the input is bad; a
    failed build leaves no prepared dataset behind (TFDS writes to a temporary folder and renames
    it only on success).
    """
    builder = celebamask_hq.Builder(config=config, data_dir=paths.as_path(data_dir))
    mode = (tfds.download.GenerateMode.REUSE_CACHE_IF_EXISTS if overwrite
            else tfds.download.GenerateMode.REUSE_DATASET_IF_EXISTS)
    builder.download_and_prepare(
        download_config=tfds.download.DownloadConfig(
            manual_dir=paths.as_path(manual_dir),
            download_mode=mode,
            # Statistics are computed with TensorFlow; the split sizes are recorded anyway.
            compute_stats=tfds.download.ComputeStatsMode.SKIP,
        )
    )
    return builder


def split_sizes(builder) -> dict[str, int]:
    """{split name: number of examples} of a prepared builder."""
    return {name: split.num_examples for name, split in builder.info.splits.items()}


def _define_flags() -> None:
    # Defined only when run as a program, so importing `build` adds no global absl flags.
    flags.DEFINE_string("manual_dir", None, "Folder holding CelebAMask-HQ.zip or CelebAMask-HQ/.", required=True)
    flags.DEFINE_string("data_dir", None, "TFDS data dir to write the dataset to.", required=True)
    flags.DEFINE_enum(
        "config", "official_512", [c.name for c in celebamask_hq.Builder.BUILDER_CONFIGS],
        "Builder config: {official,first28k}_{64,128,256,512}.",
    )
    flags.DEFINE_bool("overwrite", False, "Rebuild even if the dataset is already prepared.")


def main(argv: Sequence[str]) -> None:
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
    values = flags.FLAGS
    existing = celebamask_hq.Builder(config=values.config, data_dir=paths.as_path(values.data_dir))
    reused = not values.overwrite and existing.is_prepared()
    builder = build(values.config, values.manual_dir, values.data_dir, overwrite=values.overwrite)
    verb = "Already prepared (pass --overwrite to rebuild):" if reused else "Wrote"
    print(f"{verb} {builder.info.full_name} ({builder.info.file_format.value}) at {builder.data_dir}")
    for name, count in split_sizes(builder).items():
        print(f"  {name}: {count} examples")


if __name__ == "__main__":
    _define_flags()
    app.run(main)
