"""Metrics, image grids and progress for TensorBoard and the log, without TensorFlow.

`create_writer(logdir)` returns a writer with clu's MetricWriter methods (write_scalars,
write_images, write_hparams, flush, close). It logs scalars through absl and, where `logdir` is
given, appends TensorBoard event files there through etils.epath, so a gs:// logdir works wherever
epath can write (TensorFlow's GCS filesystem when TF is installed, else fsspec with gcsfs). Only
the `tensorboard` package's protocol buffers are used: `clu.metric_writers` imports TensorFlow.

Event files follow TensorFlow's record framing (length, masked CRC32C of the length, payload,
masked CRC32C of the payload). Object stores cannot append, so on remote paths each flush rewrites
the current file (what TensorFlow's own GCS writer does), and a file past `REMOTE_FILE_BYTES` is
closed and the next flush starts another (TensorBoard reads a folder's event files in name order);
locally one file is appended to.
"""

from __future__ import annotations

import io
import socket
import struct
import time
from collections.abc import Mapping
from typing import Any

import numpy as np
from absl import logging
from etils import epath
from PIL import Image

from maskgan_jax import paths

# Remote event files are rewritten whole at each flush; past this size the next flush starts a new one.
REMOTE_FILE_BYTES = 1 << 20


def _event_pb2():
    from tensorboard.compat.proto import event_pb2  # protos only: imports no TensorFlow
    return event_pb2


def _crc32c(data: bytes) -> int:
    """CRC-32C (Castagnoli) of `data`: google-crc32c's C code (a dependency), else tensorboard's pure
    Python (about 1 s per MB, which an image grid at 512x512 would notice)."""
    try:
        import google_crc32c
    except ImportError:
        from tensorboard.compat.tensorflow_stub.pywrap_tensorflow import crc32c
        return crc32c(data)
    return google_crc32c.value(data)


def _masked_crc32c(data: bytes) -> int:
    """TFRecord's masked CRC: rotate right by 15 bits, add a constant (mod 2**32)."""
    crc = _crc32c(data)
    return ((((crc >> 15) | (crc << 17)) & 0xFFFFFFFF) + 0xA282EAD8) & 0xFFFFFFFF


def record(payload: bytes) -> bytes:
    """One TFRecord: uint64 length, masked CRC32C of it, the payload, masked CRC32C of the payload."""
    length = struct.pack("<Q", len(payload))
    return (length + struct.pack("<I", _masked_crc32c(length)) + payload
            + struct.pack("<I", _masked_crc32c(payload)))


def png_bytes(image: np.ndarray) -> bytes:
    """uint8 (H, W, 3) or (H, W) image -> PNG bytes."""
    buffer = io.BytesIO()
    Image.fromarray(np.asarray(image, np.uint8)).save(buffer, format="PNG")
    return buffer.getvalue()


class EventFileWriter:
    """TensorBoard summaries (scalars, images, hparams) in one event file under `logdir`."""

    def __init__(self, logdir: str | epath.Path):
        self._logdir = paths.as_path(logdir)
        self._logdir.mkdir(parents=True, exist_ok=True)
        self._remote = paths.is_remote(self._logdir)
        self._stem = f"events.out.tfevents.{time.time():.0f}.{socket.gethostname()}"
        self._sequence = 0
        self.path = self._logdir / f"{self._stem}.{self._sequence:06d}"
        self._written = bytearray()  # remote: the current file, rewritten on each flush
        self._pending = bytearray()  # local: records not yet appended
        version = _event_pb2().Event(wall_time=time.time(), file_version="brain.Event:2")
        self._add(version)
        self.flush()

    def _add(self, event) -> None:
        self._pending += record(event.SerializeToString())

    def _summary_event(self, step: int, summary) -> None:
        self._add(_event_pb2().Event(wall_time=time.time(), step=int(step), summary=summary))

    def write_scalars(self, step: int, scalars: Mapping[str, float]) -> None:
        summary_pb2 = _summary_pb2()
        values = [summary_pb2.Summary.Value(tag=k, simple_value=float(v)) for k, v in scalars.items()]
        self._summary_event(step, summary_pb2.Summary(value=values))

    def write_images(self, step: int, images: Mapping[str, np.ndarray]) -> None:
        """images: name -> uint8 (N, H, W, 3); the first image of each is written."""
        summary_pb2 = _summary_pb2()
        values = []
        for name, batch in images.items():
            image = np.asarray(batch)[0]
            values.append(summary_pb2.Summary.Value(tag=name, image=summary_pb2.Summary.Image(
                height=image.shape[0], width=image.shape[1], colorspace=image.shape[2] if image.ndim == 3 else 1,
                encoded_image_string=png_bytes(image))))
        self._summary_event(step, summary_pb2.Summary(value=values))

    def write_hparams(self, hparams: Mapping[str, Any]) -> None:
        from tensorboard.plugins.hparams import summary_v2  # protos only: imports no TensorFlow
        self._summary_event(0, summary_v2.hparams_pb(dict(hparams)))

    def flush(self) -> None:
        if not self._pending:
            return
        if self._remote:
            if len(self._written) > REMOTE_FILE_BYTES:
                self._sequence += 1
                self.path = self._logdir / f"{self._stem}.{self._sequence:06d}"
                self._written.clear()
            self._written += self._pending
            self.path.write_bytes(bytes(self._written))
        else:
            with self.path.open("ab") as f:
                f.write(bytes(self._pending))
        self._pending.clear()

    def close(self) -> None:
        self.flush()


def _summary_pb2():
    from tensorboard.compat.proto import summary_pb2
    return summary_pb2


class LoggingWriter:
    """Scalars to the absl log (as clu's LoggingWriter); images and hparams are only counted."""

    def write_scalars(self, step: int, scalars: Mapping[str, float]) -> None:
        logging.info("[%d] %s", step, ", ".join(f"{k}={float(v):.6g}" for k, v in sorted(scalars.items())))

    def write_images(self, step: int, images: Mapping[str, np.ndarray]) -> None:
        logging.info("[%d] images %s", step, ", ".join(f"{k} {np.shape(v)}" for k, v in images.items()))

    def write_hparams(self, hparams: Mapping[str, Any]) -> None:
        logging.info("hparams: %d values", len(hparams))

    def flush(self) -> None:
        pass

    def close(self) -> None:
        pass


class MultiWriter:
    """Forwards every call to each writer, in order."""

    def __init__(self, writers: list):
        self.writers = writers

    def write_scalars(self, step: int, scalars: Mapping[str, float]) -> None:
        for w in self.writers:
            w.write_scalars(step, scalars)

    def write_images(self, step: int, images: Mapping[str, np.ndarray]) -> None:
        for w in self.writers:
            w.write_images(step, images)

    def write_hparams(self, hparams: Mapping[str, Any]) -> None:
        for w in self.writers:
            w.write_hparams(hparams)

    def flush(self) -> None:
        for w in self.writers:
            w.flush()

    def close(self) -> None:
        for w in self.writers:
            w.close()


def create_writer(logdir: str | epath.Path | None) -> MultiWriter:
    """The log, plus TensorBoard event files in `logdir` when given (None: the log only, for the
    processes other than the first of a multi-host run)."""
    writers: list = [LoggingWriter()]
    if logdir is not None:
        writers.append(EventFileWriter(logdir))
    return MultiWriter(writers)


class ProgressReporter:
    """Every `every_steps`: steps per second since the last report, to the writer and the log, with
    the time left to `num_steps` (clu's ReportProgress, which imports TensorFlow)."""

    def __init__(self, writer, num_steps: int, every_steps: int, start_step: int):
        self._writer, self._num_steps, self._every = writer, num_steps, every_steps
        self._last_step, self._last_time = start_step, time.monotonic()

    def __call__(self, step: int) -> None:
        if step % self._every and step != self._num_steps:
            return
        now = time.monotonic()
        rate = (step - self._last_step) / max(now - self._last_time, 1e-9)
        self._last_step, self._last_time = step, now
        self._writer.write_scalars(step, {"steps_per_sec": rate})
        left = (self._num_steps - step) / rate if rate > 0 else float("inf")
        logging.info("step %d/%d: %.3g steps/s, %.0f min left", step, self._num_steps, rate, left / 60)


def copy_tree(source: str | epath.Path, destination: str | epath.Path) -> None:
    """Copies the files under `source` to the same relative paths under `destination` (any epath)."""
    source, destination = epath.Path(source), paths.as_path(destination)
    for file in source.rglob("*"):
        if file.is_file():
            target = destination / file.relative_to(source)
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(file.read_bytes())


class TraceSteps:
    """Traces steps (first_step, first_step + num_steps] with JAX's profiler into `logdir`.

    The trace is written to a local temporary folder and then copied, so a remote logdir works
    whatever filesystems the profiler was built with.
    """

    def __init__(self, logdir: str | epath.Path, first_step: int, num_steps: int):
        self._logdir, self._first, self._last = paths.as_path(logdir), first_step, first_step + num_steps
        self._local = None

    def __call__(self, step: int) -> None:
        import tempfile

        import jax

        if step == self._first and self._local is None:
            self._local = tempfile.TemporaryDirectory(prefix="maskgan_trace_")
            jax.profiler.start_trace(self._local.name)
        elif step == self._last and self._local is not None:
            jax.profiler.stop_trace()
            copy_tree(self._local.name, self._logdir)
            self._local.cleanup()
            self._local = None
            logging.info("Profile of steps %d-%d in %s", self._first + 1, self._last, self._logdir)
