"""The training loop end to end on the smoke config: outputs, exact resume, the non-finite guard,
SIGTERM, and a two-process run equal to a one-process run."""

import importlib.util
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import jax
import numpy as np
import pytest

from configs import ebst
from maskgan_jax import checkpoint as ckpt
from maskgan_jax import phases
from maskgan_jax import state as state_lib
from maskgan_jax import train

REPO = Path(__file__).resolve().parents[1]


def smoke_config(data_dir):
    config = ebst.get_config("smoke")
    config.data.data_dir = str(data_dir)
    return config


def final_networks(workdir, phase, names):
    """Every array of the named networks' final checkpoint of `phase`, as NumPy, restored onto this
    process's first device whatever mesh wrote it (orbax needs a target with shardings for that)."""
    directory, step = ckpt.find_latest(workdir, phase)
    device = jax.sharding.SingleDeviceSharding(jax.devices()[0])
    networks = {}
    with ckpt.ocp.StandardCheckpointer() as checkpointer:
        for name in names:
            metadata = checkpointer.metadata(directory / str(step) / name).item_metadata
            target = jax.tree_util.tree_map(
                lambda m: jax.ShapeDtypeStruct(m.shape, m.dtype, sharding=device), metadata)
            restored = checkpointer.restore(directory / str(step) / name, target)
            networks[name] = jax.tree_util.tree_map(np.asarray, restored)
    return step, networks


def assert_trees_equal(a, b):
    leaves_a, leaves_b = jax.tree_util.tree_leaves_with_path(a), jax.tree_util.tree_leaves(b)
    assert len(leaves_a) == len(leaves_b)
    for (path, x), y in zip(leaves_a, leaves_b):
        np.testing.assert_array_equal(x, y, err_msg=jax.tree_util.keystr(path))


def subprocess_env(compilation_cache, devices):
    env = dict(os.environ)
    env["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={devices}"
    env["JAX_PLATFORMS"] = "cpu"
    env["JAX_COMPILATION_CACHE_DIR"] = str(compilation_cache)
    env["JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS"] = "0"
    env["JAX_DISABLE_MOST_OPTIMIZATIONS"] = "1"
    return env


@pytest.fixture(scope="module")
def full_run(tmp_path_factory, smoke_data_dir, compilation_cache):
    """`main.py --config=configs/ebst.py:smoke` end to end, uninterrupted."""
    workdir = tmp_path_factory.mktemp("full_run")
    # 8 devices, as the in-process runs below get from conftest.
    result = subprocess.run(
        [sys.executable, "main.py", "--config=configs/ebst.py:smoke", f"--workdir={workdir}",
         f"--config.data.data_dir={smoke_data_dir}"],
        cwd=REPO, env=subprocess_env(compilation_cache, 8), capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-4000:]
    return workdir


def test_main_smoke_writes_checkpoints_events_and_grids(full_run):
    config = ebst.get_config("smoke")
    for phase in phases.PHASES:
        last = config.phases[phase].num_steps
        assert (full_run / "checkpoints" / phase / str(last)).is_dir(), phase
        assert list((full_run / "tensorboard" / phase).glob("events.out.tfevents.*")), phase
        assert (full_run / "images" / f"{phase}_{last:07d}.png").is_file(), phase
    items = {p.name for p in (full_run / "checkpoints" / "ebst" / "4").iterdir()}
    assert {"generator", "discriminator", "mask_vae", "blender", "progress", "data", "config"} <= items
    items = {p.name for p in (full_run / "checkpoints" / "parser" / "4").iterdir() if p.is_dir()}
    assert items == {"parser", "progress", "data", "config"}
    assert ckpt.read_config(full_run, "ebst")["resolution"] == 64


def test_resume_is_exact_in_every_phase(full_run, tmp_path, smoke_data_dir, compilation_cache, monkeypatch):
    """Stopping once inside each phase and rerunning gives bit-identical networks to the full run."""
    del compilation_cache
    stops = {("maskvae", 25), ("dmn", 3), ("ebst", 1), ("parser", 3)}
    current = {}

    original_train_phase = train.train_phase

    def tracking_train_phase(phase, *args, **kwargs):
        current["phase"] = phase
        return original_train_phase(phase, *args, **kwargs)

    def requested(self, manager, step, poll_all_processes):
        del self, manager, poll_all_processes
        key = (current["phase"], step)
        if key in stops:
            stops.remove(key)
            return True
        return False

    monkeypatch.setattr(train, "train_phase", tracking_train_phase)
    monkeypatch.setattr(train.StopRequest, "requested", requested)
    config = smoke_config(smoke_data_dir)
    runs = 0
    while True:
        results = train.train(config, tmp_path)
        runs += 1
        if not any(r.preempted for r in results):
            break
        assert runs < 6
    assert runs == 5 and not stops
    for phase, names in (("maskvae", ["mask_vae"]), ("dmn", ["generator", "discriminator"]),
                         ("ebst", ["generator", "discriminator", "blender", "mask_vae"]), ("parser", ["parser"])):
        step_full, full = final_networks(full_run, phase, names)
        step_resumed, resumed = final_networks(tmp_path, phase, names)
        assert step_full == step_resumed == config.phases[phase].num_steps
        assert_trees_equal(full, resumed)


def test_nonfinite_guard_stops_and_keeps_last_good_checkpoint(tmp_path, smoke_data_dir, monkeypatch):
    config = smoke_config(smoke_data_dir)
    config.phases.maskvae.num_steps = 0
    config.phases.ebst.num_steps = 0
    config.phases.dmn.checkpoint_every_steps = 2
    original = train.input_pipeline.create_iterator

    class PoisonedIterator:
        """The real iterator, with NaN images in its third batch (after the checkpoint at step 2)."""

        def __init__(self, iterator):
            self.iterator, self.index = iterator, 0
            self.get_state, self.set_state = iterator.get_state, iterator.set_state

        def __next__(self):
            batch, self.index = next(self.iterator), self.index + 1
            return dict(batch, image=batch["image"] * np.nan) if self.index == 3 else batch

    def poisoned_iterator(*args, **kwargs):
        return PoisonedIterator(original(*args, **kwargs))

    monkeypatch.setattr(train.input_pipeline, "create_iterator", poisoned_iterator)
    with pytest.raises(train.NonFiniteError, match=r"phase dmn: non-finite .*stage1/g_total.* at step 3.*"
                                                   r"last good checkpoint is step 2"):
        train.train(config, tmp_path)
    manager = ckpt.create_manager(tmp_path, "dmn", config.checkpoint, 2)
    assert manager.all_steps() == [2]
    template = jax.eval_shape(lambda: state_lib.create_state(
        "generator", state_lib.build_networks(config), config, state_lib.optimizer(config.phases.dmn),
        train.sharding_lib.create_mesh(config.mesh))[0])
    restored = ckpt.restore_network(tmp_path, "generator", {"params": template.params}, "dmn")
    assert all(np.isfinite(x).all() for x in jax.tree_util.tree_leaves(restored))


def test_sigterm_saves_a_restorable_checkpoint_and_exits_0(tmp_path, smoke_data_dir, compilation_cache):
    args = [sys.executable, "main.py", "--config=configs/ebst.py:smoke", f"--workdir={tmp_path}",
            f"--config.data.data_dir={smoke_data_dir}", "--config.phases.maskvae.num_steps=100000",
            "--config.phases.maskvae.checkpoint_every_steps=1000000"]
    log = open(tmp_path / "run.log", "w")  # noqa: SIM115  (a pipe nobody reads could fill and block it)
    process = subprocess.Popen(args, cwd=REPO, env=subprocess_env(compilation_cache, 1),
                               stdout=subprocess.DEVNULL, stderr=log)
    events = tmp_path / "tensorboard" / "maskvae"
    deadline = time.time() + 300
    while time.time() < deadline and not list(events.glob("events.out.tfevents.*")) and process.poll() is None:
        time.sleep(0.5)
    time.sleep(5)  # let it take a few steps
    process.send_signal(signal.SIGTERM)
    process.wait(timeout=300)
    log.close()
    assert process.returncode == 0, (tmp_path / "run.log").read_text()[-3000:]
    manager = ckpt.create_manager(tmp_path, "maskvae", ebst.get_config("smoke").checkpoint, 1000000)
    step = manager.latest_step()
    assert step is not None and 0 < step < 100000
    restored = manager.restore(step, args=ckpt.ocp.args.Composite(mask_vae=ckpt.ocp.args.StandardRestore()))
    assert all(np.isfinite(np.asarray(x)).all() for x in jax.tree_util.tree_leaves(dict(restored["mask_vae"])))


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _start_two_processes(tmp_path, name, args, compilation_cache):
    """main.py as 2 processes x 4 CPU devices on 127.0.0.1. Logs go to files: a full stderr pipe would
    block one process inside a collective and hang both. Returns [(process, log path)]."""
    port = _free_port()
    started = []
    for i in range(2):
        log_path = tmp_path / f"{name}_{i}.log"
        with open(log_path, "w") as log:
            started.append((subprocess.Popen(
                [sys.executable, "main.py", *args, f"--coordinator_address=127.0.0.1:{port}", "--num_processes=2",
                 f"--process_id={i}"], cwd=REPO, env=subprocess_env(compilation_cache, 4),
                stdout=subprocess.DEVNULL, stderr=log), log_path))
    return started


def _wait_for_success(started):
    for process, log_path in started:
        process.wait(timeout=900)
        assert process.returncode == 0, log_path.read_text()[-3000:]


def _run_two_processes(tmp_path, name, args, compilation_cache):
    _wait_for_success(_start_two_processes(tmp_path, name, args, compilation_cache))


def _assert_close(single, multi, outliers_per_tensor: float = 0.0, outlier_bound: float = 0.0):
    """Parameters and BatchNorm statistics within 1e-3 relative, 1e-4 absolute. The layouts sum gradients
    in different orders (2 x 4 devices reduce across processes, and how XLA groups the all-reduces follows
    the step's HLO, so unrelated edits of the step move the rounding); Adam with the smoke config's lr and
    eps (1e-3 each) passes a gradient's rounding difference to the parameter almost one to one. Measured
    (deterministic, this code): the largest parameter difference after MaskVAE 40 / DMN 4 steps is
    7.2e-5 (generator down/model_4 kernel); 7.7e-5 in a D kernel with an earlier state of the step. A
    wrong batch or shard moves parameters by about the learning rate, 1e-3 per step: 10x above this
    bound. Biases that a following normalisation cancels get pure-noise gradients, hence the absolute
    term. Adam's
    moments, which hold the gradients themselves, within 1e-2 of the largest moment of their network and
    kind (noise-sized moments of those biases pass; the largest ones must agree to 1%). Training on other
    batches moves parameters by about the learning rate (1e-3) per step, and a gradient scaled by another
    batch size scales every moment.

    outliers_per_tensor: the fraction of each tensor's elements (at least one element) allowed outside
    those tolerances, each within `outlier_bound` (parameters) or 10% of its moments' scale (moments).
    For EBST: its first step is each fresh Adam state's first update, lr * g / (|g| + eps), so an element
    whose gradient is rounding noise (|g| near eps) can move by a different fraction of lr in each layout
    (measured: 1 of 1,152 elements of a generator kernel off by 2.3e-4). A wrong batch or shard moves
    most elements by about lr, which the fraction catches."""
    leaves = jax.tree_util.tree_leaves_with_path(single)
    others = jax.tree_util.tree_leaves(multi)
    assert len(leaves) == len(others)

    def moment_kind(path):  # e.g. ('generator', 'mu'), or None for parameters and statistics
        keys = [getattr(k, "key", getattr(k, "idx", None)) for k in path]
        kinds = ("mu", "nu", "count", "hyperparams")  # hyperparams: the learning rate applied, Adam's betas
        return (keys[0], next(k for k in keys if k in kinds)) if "opt_state" in keys else None

    scales = {}
    for path, a in leaves:
        kind = moment_kind(path)
        if kind is not None:
            scales[kind] = max(scales.get(kind, 0.0), float(np.abs(a).max(initial=0.0)))
    for (path, a), b in zip(leaves, others):
        kind = moment_kind(path)
        tolerance = dict(rtol=0, atol=1e-2 * scales[kind]) if kind else dict(rtol=1e-3, atol=1e-4)
        if not outliers_per_tensor:
            np.testing.assert_allclose(b, a, err_msg=jax.tree_util.keystr(path), **tolerance)
            continue
        a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
        outside = np.abs(b - a) > tolerance["atol"] + tolerance["rtol"] * np.abs(a)
        allowed = max(1, int(outliers_per_tensor * a.size))
        bound = 0.1 * scales[kind] if kind else outlier_bound
        assert outside.sum() <= allowed, (jax.tree_util.keystr(path), int(outside.sum()), a.size)
        assert np.all(np.abs(b - a) <= max(bound, tolerance["atol"])), (jax.tree_util.keystr(path),
                                                                       float(np.abs(b - a).max()))


def test_two_processes_equal_one_process(full_run, tmp_path, smoke_data_dir, compilation_cache):
    """2 processes x 4 CPU devices (jax.distributed on 127.0.0.1) end each phase with the networks of the
    1 process x 8 devices run: same global batches (two logical data shards), same steps.

    MaskVAE, DMN and the parser are trained by both layouts from scratch and compared after all their steps. EBST is
    compared after one step (stage 1 and stage 2), started in both layouts from the same networks (the
    one-process run's): adversarial training under Adam amplifies rounding differences fast (stage 2's
    generator gradient already differs by ~1e-4 relative between layouts at its first step, and the
    blender's Adam moments by ~20% of their largest value after four), so more steps would test chaos,
    not the layout."""
    common = ["--config=configs/ebst.py:smoke", f"--config.data.data_dir={smoke_data_dir}"]
    _run_two_processes(tmp_path, "pretrain", [*common, f"--workdir={tmp_path / 'pretrain'}",
                                              "--config.phases.ebst.num_steps=0"], compilation_cache)
    for phase, names in (("maskvae", ["mask_vae"]), ("dmn", ["generator", "discriminator"]), ("parser", ["parser"])):
        _assert_close(final_networks(full_run, phase, names)[1],
                      final_networks(tmp_path / "pretrain", phase, names)[1])

    ebst_only = {"phases.maskvae.num_steps": 0, "phases.dmn.num_steps": 0, "phases.ebst.num_steps": 1,
                 **{f"init_from.{name}": str(full_run) for name in ("mask_vae", "generator", "discriminator")}}
    _run_two_processes(tmp_path, "ebst", [*common, f"--workdir={tmp_path / 'ebst_two'}",
                                          *(f"--config.{k}={v}" for k, v in ebst_only.items())], compilation_cache)
    config = smoke_config(smoke_data_dir)  # the same, in this process on its 8 devices
    config.update_from_flattened_dict(ebst_only)
    train.train(config, tmp_path / "ebst_one")
    names = ["generator", "discriminator", "blender", "mask_vae"]
    lr = config.phases.ebst.learning_rate
    # Two updates of G and D per EBST step (stages 1 and 2), each at most lr: noise elements within 4 lr.
    _assert_close(final_networks(tmp_path / "ebst_one", "ebst", names)[1],
                  final_networks(tmp_path / "ebst_two", "ebst", names)[1], outliers_per_tensor=0.005,
                  outlier_bound=4 * lr)


def test_sigterm_to_one_of_two_processes_stops_both_with_a_checkpoint(tmp_path, smoke_data_dir, compilation_cache):
    """Only process 1 gets SIGTERM; both agree on a step (at the next logging step), save and exit 0."""
    started = _start_two_processes(tmp_path, "run", [
        "--config=configs/ebst.py:smoke", f"--workdir={tmp_path}", f"--config.data.data_dir={smoke_data_dir}",
        "--config.phases.maskvae.num_steps=100000", "--config.phases.maskvae.checkpoint_every_steps=1000000"],
        compilation_cache)
    events = tmp_path / "tensorboard" / "maskvae"
    deadline = time.time() + 300
    while time.time() < deadline and not list(events.glob("events.out.tfevents.*")) and \
            all(p.poll() is None for p, _ in started):
        time.sleep(0.5)
    time.sleep(5)  # let them take a few steps
    started[1][0].send_signal(signal.SIGTERM)
    _wait_for_success(started)
    manager = ckpt.create_manager(tmp_path, "maskvae", ebst.get_config("smoke").checkpoint, 1000000)
    step = manager.latest_step()
    log_every = ebst.get_config("smoke").phases.maskvae.log_every_steps
    assert step is not None and 0 < step < 100000 and step % log_every == 0


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
    """Without TensorFlow's GCS filesystem (EPATH_USE_TF=false here) epath needs gcsfs for gs://."""
    if importlib.util.find_spec("gcsfs") is not None:
        pytest.skip("gcsfs is installed")
    from etils.epath import gpath

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
