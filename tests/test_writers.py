"""The TensorFlow-free TensorBoard writer: files TensorBoard reads back, local and on a gs:// bucket."""

import numpy as np
import pytest
from tensorboard.backend.event_processing import event_accumulator

from maskgan_jax import writers


def read_events(logdir):
    accumulator = event_accumulator.EventAccumulator(str(logdir), size_guidance={"images": 0, "scalars": 0})
    accumulator.Reload()
    return accumulator


def write_some(writer):
    writer.write_hparams({"lr": 1e-3, "name": "smoke"})
    writer.write_scalars(1, {"loss": 2.5, "steps_per_sec": 3.0})
    writer.flush()
    writer.write_scalars(2, {"loss": 1.25})
    grid = np.zeros((8, 12, 3), np.uint8)
    grid[:, :6] = 255
    writer.write_images(2, {"dmn/grid": grid[None]})
    writer.close()
    return grid


def check(accumulator, grid):
    assert [(e.step, e.value) for e in accumulator.Scalars("loss")] == [(1, 2.5), (2, 1.25)]
    image = accumulator.Images("dmn/grid")[0]
    assert (image.step, image.width, image.height) == (2, 12, 8)
    from PIL import Image
    import io
    np.testing.assert_array_equal(np.asarray(Image.open(io.BytesIO(image.encoded_image_string))), grid)


def test_event_file_reads_back_in_tensorboard(tmp_path):
    grid = write_some(writers.create_writer(tmp_path / "tb"))
    check(read_events(tmp_path / "tb"), grid)


def test_event_files_on_a_bucket_read_back_and_rotate(tmp_path, monkeypatch):
    from fake_gcs import fake_gcs

    monkeypatch.setattr(writers, "REMOTE_FILE_BYTES", 64)  # the version record and the first scalars fit
    with fake_gcs(tmp_path / "root", monkeypatch) as root:
        grid = write_some(writers.EventFileWriter("gs://bucket/tb"))
    files = sorted(p.name for p in (root / "bucket" / "tb").iterdir())
    assert len(files) == 2 and files == sorted(files, key=lambda n: int(n.rsplit(".", 1)[1])), files
    check(read_events(root / "bucket" / "tb"), grid)


def test_record_framing_uses_masked_crc32c():
    """TFRecord framing of b"abc": length, masked CRC32C of it, payload, masked CRC32C of the payload."""
    crc = 0x364B3FB7  # CRC-32C (Castagnoli) of b"abc", the standard check value
    masked = ((((crc >> 15) | (crc << 17)) & 0xFFFFFFFF) + 0xA282EAD8) & 0xFFFFFFFF  # TensorFlow's mask
    framed = writers.record(b"abc")
    assert framed[:8] == (3).to_bytes(8, "little") and framed[12:15] == b"abc" and len(framed) == 19
    assert int.from_bytes(framed[15:], "little") == masked


@pytest.mark.parametrize("every,calls,expected", [(2, [1, 2, 3, 4, 5], [2, 4, 5])])
def test_progress_reports_every_n_steps_and_the_last(every, calls, expected):
    logged = []

    class Recorder:
        def write_scalars(self, step, scalars):
            logged.append((step, set(scalars)))

    report = writers.ProgressReporter(Recorder(), num_steps=5, every_steps=every, start_step=0)
    for step in calls:
        report(step)
    assert logged == [(s, {"steps_per_sec"}) for s in expected]


def test_training_path_imports_no_tensorflow():
    """The lean install has no TensorFlow: the training loop, its writers and the input pipeline must not
    import it (TFDS imports it only lazily, for features this project does not use)."""
    import subprocess
    import sys
    import textwrap

    code = textwrap.dedent("""
        import sys
        import maskgan_jax.train, maskgan_jax.writers, maskgan_jax.input_pipeline, maskgan_jax.data
        print(sorted(m for m in sys.modules if m.split('.')[0] == 'tensorflow'))
    """)
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]", result.stdout + result.stderr[-2000:]
